"""The coded concepts of sscmort's DICOM objects.

Standard codes where one fits (SNOMED CT, DCM, UCUM); the QCT shape measures and the
mortality risks have none, so they use sscmort's local scheme ``99SSCMORT`` (a "99" scheme
designator is the standard's way to mark private codes, PS3.16 section 8.2).
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

LOCAL_SCHEME = "99SSCMORT"

LUNG = codes.SCT.Lung
ANATOMICAL_STRUCTURE = codes.SCT.AnatomicalStructure
ABNORMAL_STRUCTURE = codes.SCT.MorphologicallyAbnormalStructure
ILD = CodedConcept("233703007", "SCT", "Interstitial lung disease")
CT_OF_CHEST = CodedConcept("169069000", "SCT", "Computed tomography of chest")
MORPHOLOGICAL_OPERATIONS = codes.cid7162.MorphologicalOperations
ARTIFICIAL_INTELLIGENCE = codes.cid7162.ArtificialIntelligence

ML = CodedConcept("mL", "UCUM", "milliliter")
HU = codes.UCUM.HounsfieldUnit
PERCENT = codes.UCUM.Percent
NO_UNITS = codes.UCUM.NoUnits


def local(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value, LOCAL_SCHEME, meaning)


# QCT metric key (QCTMetrics.to_dict) -> (concept, unit)
QCT_CONCEPTS: dict[str, tuple[CodedConcept, CodedConcept]] = {
    "lung_volume_ml": (codes.SCT.Volume, ML),
    "mean_lung_density_hu": (codes.SCT.Mean, HU),
    "skewness": (local("QCT-SKEW", "Lung density skewness"), NO_UNITS),
    "kurtosis": (local("QCT-KURT", "Lung density excess kurtosis"), NO_UNITS),
    "haa_pct": (local("QCT-HAA", "High-attenuation area (-600 to -250 HU)"), PERCENT),
    "ild_extent_pct": (local("QCT-ILD", "Estimated ILD extent"), PERCENT),
}


def risk_concept(horizon_years: int) -> CodedConcept:
    return local(f"RISK-{horizon_years}Y", f"{horizon_years}-year mortality risk")
