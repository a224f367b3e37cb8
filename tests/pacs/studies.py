"""Synthetic studies for the PACS tests: a thorax phantom written as a real DICOM CT series
(fake identifying tags included, to exercise de-identification), optionally compressed, and a
non-CT series to add to a study. Every study is SYNTHETIC; each seed gives its own UIDs."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import MRImageStorage, generate_uid

from sscmort_core.synthetic import DEFAULT_PHI, make_phantom, write_dicom_series
from sscmort_core.synthetic.phantom import Phantom

SHAPE = (32, 128, 128)  # 7.5 mm slices: 240 mm of chest, lungs segment in well under a second


def phantom(seed: int, ild_extent_pct: float = 12.0) -> Phantom:
    return make_phantom(ild_extent_pct=ild_extent_pct, kernel="smooth", noise_hu=15.0,
                        slice_thickness_mm=7.5, seed=seed, shape=SHAPE)


def phi(seed: int) -> dict[str, str]:
    """The generator's fake identifying tags, with a patient id and accession of this seed."""
    return {**DEFAULT_PHI, "PatientID": f"SYN-MRN-{seed:06d}",
            "AccessionNumber": f"SYNACC{seed:06d}"}


def ct_study(folder: Path, seed: int, *, syntax: pydicom.uid.UID | None = None,
             order: str = "shuffled") -> tuple[Phantom, list[Path]]:
    """Write one CT series (seeded UIDs, :func:`phi`) into ``folder``, compressed with
    ``syntax`` if given. Returns the phantom and the paths in slice order."""
    ph = phantom(seed)
    paths = write_dicom_series(ph, folder, seed=seed, instance_order=order, phi=phi(seed))
    if syntax is not None:
        for p in paths:
            ds = pydicom.dcmread(p)
            ds.compress(syntax)
            ds.save_as(p)
    return ph, paths


def mr_series_like(ct_paths: list[Path], folder: Path, n: int = 3) -> str:
    """A small MR series in the same study as ``ct_paths``; returns its Series Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for i, p in enumerate(ct_paths[:n]):
        ds = pydicom.dcmread(p)
        ds.Modality, ds.SOPClassUID = "MR", MRImageStorage
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series_uid, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = "MR localiser"
        ds.save_as(folder / f"mr{i:03d}.dcm")
    return series_uid


def only_mr_study(folder: Path, ct_paths: list[Path], n: int = 3) -> str:
    """MR images in a study of their own; returns its Study Instance UID."""
    study_uid = generate_uid()
    mr_series_like(ct_paths, folder, n)
    for p in folder.iterdir():
        ds = pydicom.dcmread(p)
        ds.StudyInstanceUID = study_uid
        ds.save_as(p)
    return study_uid
