"""A de-identified CT series made from a stored volume, for SEG and SR to reference when the
original series' UIDs were not kept (the reader drops them: de-identification).

New UIDs throughout (study, series, instances, frame of reference), the pseudonymous patient
id as PatientID and PatientName, and technical attributes only: no birth date, no institution,
no accession. PatientIdentityRemoved = YES says so to every viewer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from sscmort_core.imaging.volume import Volume

MANUFACTURER = "sscmort"
CT_SERIES_NUMBER = 9001
RESEARCH = "research use only"


@dataclass(frozen=True)
class NewStudy:
    """Who a de-identified export belongs to: the pseudonymous patient and a new study."""

    patient_id: str
    study_date: dt.date
    study_uid: str
    frame_of_reference_uid: str
    synthetic: bool

    @classmethod
    def create(cls, patient_id: str, study_date: dt.date, synthetic: bool) -> NewStudy:
        return cls(patient_id, study_date, generate_uid(), generate_uid(), synthetic)


def description(what: str, synthetic: bool) -> str:
    """A series description (at most 64 characters) that says research use only."""
    text = f"{'SYNTHETIC ' if synthetic else ''}sscmort {what} - {RESEARCH}"
    assert len(text) <= 64, text
    return text


def _patient_and_study(ds: Dataset, study: NewStudy) -> None:
    ds.PatientName = f"{study.patient_id}^"  # one name component: the pseudonymous id
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "sscmort: new UIDs, pseudonymous id, technical attributes only"
    ds.StudyInstanceUID = study.study_uid
    ds.StudyDate = study.study_date.strftime("%Y%m%d")
    ds.StudyTime = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""


def deidentified_ct(volume: Volume, study: NewStudy) -> list[Dataset]:
    """One CT Image Storage dataset per axial slice of ``volume`` (z, y, x HU, canonical
    orientation), slice k at origin + k * spacing_z along the volume's z axis; int16, rescale
    1 / 0 (float volumes are rounded to whole HU)."""
    hu = np.rint(volume.hu).astype(np.int16) if volume.hu.dtype.kind == "f" \
        else volume.hu.astype(np.int16)
    d = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)  # columns: x, y, z axes
    origin = np.asarray(volume.origin_mm, dtype=np.float64)
    dz, dy, dx = volume.spacing_mm
    series_uid = generate_uid()
    out = []
    for k in range(hu.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        _patient_and_study(ds, study)
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = CT_SERIES_NUMBER
        ds.SeriesDescription = description("de-identified CT", study.synthetic)
        ds.FrameOfReferenceUID = study.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.Manufacturer = MANUFACTURER
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        ds.BurnedInAnnotation = "NO"
        position = origin + k * dz * d[:, 2]
        ds.ImagePositionPatient = [float(round(v, 4)) for v in position]
        ds.ImageOrientationPatient = [float(round(v, 6)) for v in (*d[:, 0], *d[:, 1])]
        ds.PixelSpacing = [float(dy), float(dx)]
        ds.SliceThickness = float(dz)
        ds.SpacingBetweenSlices = float(dz)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        ds.KVP = ""
        ds.AcquisitionNumber = ""
        ds.PixelData = np.ascontiguousarray(hu[k]).tobytes()
        out.append(ds)
    return out
