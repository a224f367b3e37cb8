"""Write phantoms as real files: a CT DICOM series (pydicom), a scout image, NIfTI (SimpleITK).

The DICOM files carry fake identifying values on purpose (``DEFAULT_PHI``) so that
de-identification can be exercised end to end; nothing here is a real person.

Geometry: DICOM patient coordinates (LPS) in mm, the phantom's own convention. Slice ``k``
of ``phantom.hu`` (z, y, x) is stored at ImagePositionPatient
``(x0, y0, z0 + k * dz)`` with ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``: rows run
along +y (posterior), columns along +x (patient left), and z increases with slice index
(towards the head). Pixels are stored unsigned, ``stored = HU + 1024`` (RescaleSlope 1,
RescaleIntercept -1024, 12 bits stored).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from sscmort_core.synthetic.phantom import HU_MAX, HU_MIN, Phantom
from sscmort_core.synthetic.protocol import SYNTHETIC_SERIES_DESCRIPTION, manufacturer_and_model

RESCALE_INTERCEPT = -1024
INSTANCE_ORDERS = ("normal", "shuffled", "reversed")
DEFAULT_STUDY_DATE = dt.date(2020, 1, 1)
PRIVATE_GROUP = 0x0099
PRIVATE_CREATOR = "SSCMORT SYNTHETIC"

# Fake identifying values written into every file unless ``phi`` says otherwise.
DEFAULT_PHI: Mapping[str, str] = {
    "PatientName": "SYNTHETIC^PATIENT",
    "PatientID": "SYN-MRN-000001",
    "PatientBirthDate": "19600101",
    "PatientSex": "F",
    "PatientAge": "060Y",
    "PatientAddress": "1 Phantom Street, Nowhere, ZZ 00000",
    "PatientTelephoneNumbers": "+00 000 000 0000",
    "OtherPatientIDs": "SYN-OTHER-000001",
    "InstitutionName": "Synthetic General Hospital",
    "InstitutionAddress": "2 Fiction Road, Nowhere, ZZ 00000",
    "ReferringPhysicianName": "REFERRER^FAKE",
    "PerformingPhysicianName": "PERFORMER^FAKE",
    "OperatorsName": "OPERATOR^FAKE",
    "AccessionNumber": "SYNACC0001",
    "StudyID": "SYNSTUDY1",
    "StationName": "SYNSTATION01",
    "DeviceSerialNumber": "SYN-SN-0001",
}


def _uid(seed: int, purpose: str, index: int = 0) -> str:
    """A DICOM UID ``2.25.<128-bit int>`` hashed from (seed, purpose, index): distinct for
    every seed and purpose, identical when the same series is written again. (pydicom's
    ``generate_uid(prefix=None)`` ignores its entropy sources, so it cannot be seeded.)"""
    digest = hashlib.sha256(f"sscmort-synthetic|{seed}|{purpose}|{index}".encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def _check_phi(phi: Mapping[str, str]) -> None:
    for keyword in phi:
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"{keyword!r} is not a DICOM keyword")


def _file_meta(sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _put_phi(ds: Dataset, phi: Mapping[str, str]) -> None:
    """Identifying tags from ``phi``, plus a private tag echoing the patient's name and ID
    (real scanners hide identifiers in private tags too)."""
    for keyword, value in phi.items():
        setattr(ds, keyword, value)
    if phi:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(0x01, "LO", f"{phi.get('PatientName', '')} {phi.get('PatientID', '')}"
                      .strip()[:64])


def _base_dataset(phantom: Phantom | None, *, phi: Mapping[str, str], study_date: dt.date,
                  seed: int) -> Dataset:
    """Tags shared by every image of the study (patient, study, equipment)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.StudyInstanceUID = _uid(seed, "study")
    ds.FrameOfReferenceUID = _uid(seed, "frame")
    day = study_date.strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = day
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "100000"
    manufacturer, model = manufacturer_and_model(None if phantom is None else phantom.scanner)
    ds.Manufacturer, ds.ManufacturerModelName = manufacturer, model
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.KVP = "120"
    ds.StudyDescription = "SYNTHETIC CT CHEST"
    _put_phi(ds, phi)
    return ds


def _pixel_module(ds: Dataset, stored: np.ndarray) -> None:
    """Image pixel tags and data for a (rows, columns) uint16 array of HU + 1024."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = str(RESCALE_INTERCEPT)
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()


def _stored(hu: np.ndarray) -> np.ndarray:
    if hu.min() < HU_MIN or hu.max() > HU_MAX:
        raise ValueError(f"HU outside [{HU_MIN}, {HU_MAX}] cannot be stored in 12 bits")
    return (hu.astype(np.int32) - RESCALE_INTERCEPT).astype(np.uint16)


def _file_order(n: int, instance_order: str, seed: int) -> np.ndarray:
    """(n,) file number of each slice: 0..n-1, a seeded permutation, or reversed."""
    if instance_order == "normal":
        return np.arange(n)
    if instance_order == "reversed":
        return np.arange(n)[::-1].copy()
    if instance_order == "shuffled":
        return np.random.default_rng([seed, 7]).permutation(n)
    raise ValueError(f"instance_order must be one of {INSTANCE_ORDERS}, got {instance_order!r}")


def write_dicom_series(phantom: Phantom, out_dir: Path, *, phi: Mapping[str, str] | None = None,
                       series_description: str = SYNTHETIC_SERIES_DESCRIPTION,
                       study_date: dt.date | None = None, seed: int = 0,
                       instance_order: str = "normal") -> list[Path]:
    """Write ``phantom`` as one CT Image Storage file per slice into ``out_dir`` (created).

    ``phi``: DICOM keyword -> value for identifying tags; None writes :data:`DEFAULT_PHI`,
    ``{}`` writes none. ``seed`` fixes the UIDs (same seed, same UIDs; the study UID is
    shared with :func:`write_localizer` for the same seed). ``study_date`` defaults to
    :data:`DEFAULT_STUDY_DATE`. ``instance_order``: ``"normal"`` names files in slice order,
    ``"shuffled"`` in a seeded random order, ``"reversed"`` backwards (InstanceNumber
    reversed too, as some scanners number head first), so readers must sort by position.

    Returns the paths in slice order (index k holds slice ``phantom.hu[k]``).
    """
    phi = DEFAULT_PHI if phi is None else phi
    _check_phi(phi)
    order = _file_order(phantom.shape[0], instance_order, seed)
    stored = _stored(phantom.hu)  # (z, y, x) uint16
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = _base_dataset(phantom, phi=phi, study_date=study_date or DEFAULT_STUDY_DATE,
                         seed=seed)
    z0, y0, x0 = phantom.origin_mm
    dz, dy, dx = phantom.spacing_mm
    paths = []
    for k in range(phantom.shape[0]):
        ds = base.copy()
        ds.SOPInstanceUID = _uid(seed, "axial-image", k)
        ds.file_meta = _file_meta(ds.SOPInstanceUID)
        ds.SeriesInstanceUID = _uid(seed, "axial-series")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesDescription = series_description
        ds.SeriesNumber, ds.AcquisitionNumber = 2, 1
        ds.InstanceNumber = int(order[k]) + 1 if instance_order == "reversed" else k + 1
        ds.ImagePositionPatient = [f"{x0:.4f}", f"{y0:.4f}", f"{z0 + k * dz:.4f}"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = f"{z0 + k * dz:.4f}"
        ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{phantom.slice_thickness_mm:.6g}"
        ds.SpacingBetweenSlices = f"{dz:.6g}"
        ds.ConvolutionKernel = phantom.kernel.upper()
        ds.WindowCenter, ds.WindowWidth = "-600", "1500"
        _pixel_module(ds, stored[k])
        path = out_dir / f"IM{int(order[k]) + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_localizer(out_dir: Path, *, phantom: Phantom | None = None,
                    phi: Mapping[str, str] | None = None, study_date: dt.date | None = None,
                    seed: int = 0, file_name: str = "LOCALIZER.dcm") -> Path:
    """Write one 2-D scout (ImageType ORIGINAL\\PRIMARY\\LOCALIZER, coronal) into ``out_dir``.

    Same study (for the same ``seed``) as :func:`write_dicom_series` but its own
    SeriesInstanceUID, so it can be mixed into a series folder to test that readers skip
    it. With a phantom it shows the phantom's mean HU along y (an AP projection), head up;
    without one, a plain gradient.
    """
    phi = DEFAULT_PHI if phi is None else phi
    _check_phi(phi)
    if phantom is not None:
        image = phantom.hu.mean(axis=1)[::-1]  # (z, x), head at the top row
        dz, _, dx = phantom.spacing_mm
        z_top, x0 = phantom.origin_mm[0] + dz * (phantom.shape[0] - 1), phantom.origin_mm[2]
    else:
        image = np.tile(np.linspace(-1000.0, 200.0, 64), (64, 1))
        dz, dx, z_top, x0 = 5.0, 5.0, 150.0, -160.0
    ds = _base_dataset(phantom, phi=phi, study_date=study_date or DEFAULT_STUDY_DATE,
                       seed=seed)
    ds.SOPInstanceUID = _uid(seed, "localizer-image")
    ds.file_meta = _file_meta(ds.SOPInstanceUID)
    ds.SeriesInstanceUID = _uid(seed, "localizer-series")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesDescription = "SYNTHETIC SCOUT"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ImagePositionPatient = [f"{x0:.4f}", "0", f"{z_top:.4f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # rows go down towards the feet
    ds.PixelSpacing = [f"{dz:.6g}", f"{dx:.6g}"]
    _pixel_module(ds, _stored(np.rint(image).astype(np.int16)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name
    ds.save_as(path, enforce_file_format=True)
    return path


def write_nifti(phantom: Phantom, path: Path, *, array: np.ndarray | None = None) -> Path:
    """Write ``phantom.hu`` (or ``array``, same (z, y, x) shape, e.g. a mask as uint8) as
    NIfTI (``.nii`` or ``.nii.gz``) with the phantom's spacing and origin.

    SimpleITK indexes (x, y, z) where NumPy has (z, y, x): ``GetImageFromArray`` takes the
    (z, y, x) array, while spacing and origin are given reversed, as (x, y, z).
    """
    import SimpleITK as sitk  # heavy import, only needed here

    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"{path}: a NIfTI file name ends in .nii or .nii.gz")
    data = phantom.hu if array is None else np.asarray(array)
    if data.shape != phantom.shape:
        raise ValueError(f"array shape {data.shape} differs from the phantom's {phantom.shape}")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data))  # (z, y, x) -> image (x, y, z)
    image.SetSpacing(tuple(float(s) for s in phantom.spacing_mm[::-1]))  # (x, y, z)
    image.SetOrigin(tuple(float(o) for o in phantom.origin_mm[::-1]))  # (x, y, z), LPS
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))
    return path
