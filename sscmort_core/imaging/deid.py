"""De-identification: what identifying DICOM attributes were present, and pseudonymous ids.

The reader builds a :class:`~sscmort_core.imaging.volume.Volume` from an allow-list of technical
attributes only, so identifying values never leave the DICOM headers. This module names what
was dropped (attribute keywords, never values) and makes keyed pseudonyms.

IDENTIFYING_KEYWORDS follows DICOM PS3.15 Annex E, Table E.1-1 (Basic Application Level
Confidentiality Profile): patient names, IDs, birth date, addresses and contacts, institution
and department, physicians and operators, accession and study ids, every UID that can link
back, dates and times other than the study date, and device serial numbers. Private
(odd-group) elements are dropped as a whole and counted.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Iterable

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

IDENTIFYING_KEYWORDS: frozenset[str] = frozenset({
    # patient
    "PatientName", "PatientID", "IssuerOfPatientID", "OtherPatientIDs", "OtherPatientNames",
    "OtherPatientIDsSequence", "PatientBirthName", "PatientMotherBirthName", "PatientBirthDate",
    "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation",
    "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "PatientInsurancePlanCodeSequence",
    "PatientReligiousPreference", "CountryOfResidence", "RegionOfResidence", "EthnicGroup",
    "Occupation", "AdditionalPatientHistory", "PatientComments", "ResponsiblePerson",
    "ResponsibleOrganization", "PatientState", "MedicalAlerts", "Allergies", "PregnancyStatus",
    "LastMenstrualDate", "SmokingStatus", "PatientSexNeutered", "PatientAge", "PatientSize",
    "PatientWeight", "PatientSex",
    # study / visit / request
    "AccessionNumber", "StudyID", "StudyDescription", "RequestAttributesSequence",
    "RequestedProcedureID", "RequestedProcedureDescription", "ScheduledProcedureStepID",
    "PerformedProcedureStepID", "PerformedProcedureStepDescription", "AdmissionID",
    "AdmittingDiagnosesDescription", "ReasonForStudy", "RequestingPhysician", "RequestingService",
    "OrderEnteredBy", "OrderEntererLocation", "OrderCallbackPhoneNumber", "ImageComments",
    "StudyComments", "InterpretationText", "ProtocolName", "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest", "ConsultingPhysicianName",
    # people and places
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
    "InstitutionCodeSequence", "ReferringPhysicianName", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorsName",
    "OperatorIdentificationSequence", "StationName", "ScheduledPerformingPhysicianName",
    "PersonName", "VerifyingObserverName", "ContentCreatorName",
    # device
    "DeviceSerialNumber", "DetectorID", "DeviceUID", "GantryID", "PlateID", "GeneratorID",
    # identifiers that can link back
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "MediaStorageSOPInstanceUID",
    "FrameOfReferenceUID", "SynchronizationFrameOfReferenceUID", "ReferencedSOPInstanceUID",
    "ReferencedFrameOfReferenceUID", "IrradiationEventUID", "StorageMediaFileSetUID",
    "ReferencedImageSequence", "ReferencedStudySequence", "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence", "SourceImageSequence", "UID",
    # dates and times other than the study date
    "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionDateTime", "ContentDate", "ContentTime", "InstanceCreationDate",
    "InstanceCreationTime", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "OverlayDate",
    "OverlayTime", "CurveDate", "CurveTime", "DateOfLastCalibration", "TimeOfLastCalibration",
    "AdmittingDate", "AdmittingTime", "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepEndDate", "StudyVerifiedDate", "StudyReadDate",
})


def identifying_keywords_present(datasets: Iterable[Dataset]) -> tuple[str, ...]:
    """Sorted keywords of identifying attributes with a non-empty value.

    The first dataset is searched at every nesting depth; the others (slices of the same
    series, which repeat the same attributes) at the top level, without decoding values.
    """
    found: set[str] = set()
    for k, ds in enumerate(datasets):
        if k == 0:
            for elem in ds.iterall():
                if elem.keyword in IDENTIFYING_KEYWORDS and not _is_empty(elem.value):
                    found.add(elem.keyword)
            continue
        for tag in ds.keys():
            kw = keyword_for_tag(tag)
            if kw in IDENTIFYING_KEYWORDS and kw not in found \
                    and not _is_empty(ds.get_item(tag).value):
                found.add(kw)
    return tuple(sorted(found))


def private_tag_count(ds: Dataset) -> int:
    """Number of private (odd-group) elements at the top level of one header."""
    return sum(1 for elem in ds if elem.tag.is_private)


def _is_empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, bytes):  # an undecoded value
        return value.strip(b"\x00 ") == b""
    try:
        return len(value) == 0 or str(value).strip() == ""  # type: ignore[arg-type]
    except TypeError:
        return False


def pseudonymous_id(secret: bytes, original_id: str) -> str:
    """Keyed pseudonym "P-" + 12 hex digits of HMAC-SHA256(secret, stripped original id).

    Deterministic for one secret, so re-uploads of a patient join up; without the secret the
    original id cannot be recovered or confirmed by guessing.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
        raise ValueError("the pseudonymisation secret must be at least 16 bytes")
    digest = hmac.new(bytes(secret), original_id.strip().encode("utf-8"), hashlib.sha256)
    return "P-" + digest.hexdigest()[:12]


def clean_free_text(text: str | None, identifiers: Iterable[str]) -> tuple[str | None, bool]:
    """Remove every occurrence of the given identifying strings (names, ids) from ``text``.

    Returns (cleaned text or None when nothing is left, whether anything was removed). Name
    parts shorter than 3 characters are ignored to avoid mangling ordinary words.
    """
    if text is None:
        return None, False
    cleaned = text
    for ident in identifiers:
        for part in re.split(r"[\^\s,]+", ident or ""):
            if len(part) >= 3:
                cleaned = re.sub(re.escape(part), "", cleaned, flags=re.IGNORECASE)
    changed = cleaned != text
    cleaned = re.sub(r"\s{2,}", " ", cleaned).strip(" _-^")
    return (cleaned or None), changed
