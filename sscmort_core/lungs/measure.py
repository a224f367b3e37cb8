"""Everything measured on one scan's lungs, from one volume and one mask: QCT, the pattern
map, the regional QCT and the mask's QC (what every batch stage and the ingest store)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sscmort_core.lungs.patterns import PatternMap, classify_patterns
from sscmort_core.lungs.qc import MaskQC, mask_qc
from sscmort_core.lungs.qct import QCTMetrics, ild_voxels, qct_method_version, qct_metrics
from sscmort_core.lungs.regions import RegionalQCT, regional_qct
from sscmort_core.lungs.segmentation import LungMask


@dataclass(frozen=True)
class LungMeasures:
    """QCT, pattern map, zones and QC of one scan, with the version they were measured by."""

    qct: QCTMetrics
    patterns: PatternMap
    regions: RegionalQCT
    qc: MaskQC
    method_version: str

    def features(self) -> dict[str, float]:
        """The QCT model's features of this scan: the QCT metrics and the pattern extents."""
        return {**self.qct.to_dict(), **self.patterns.extents()}


def measure_lungs(hu: np.ndarray, lungs: LungMask,
                  spacing_mm: tuple[float, float, float]) -> LungMeasures:
    """Measure ``hu`` (z, y, x) HU over ``lungs``; spacing (z, y, x) mm. Raises
    EmptyMaskError for an empty mask and ImplausibleHUError for a constant image."""
    spacing = tuple(float(s) for s in spacing_mm)
    patterns = classify_patterns(hu, lungs.mask, spacing)  # type: ignore[arg-type]
    qct = qct_metrics(hu, lungs.mask, spacing, patterns)  # type: ignore[arg-type]
    regions = regional_qct(hu, lungs, spacing, ild_voxels(patterns))  # type: ignore[arg-type]
    return LungMeasures(qct, patterns, regions, mask_qc(hu, lungs, spacing),  # type: ignore
                        qct_method_version())
