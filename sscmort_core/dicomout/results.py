"""The DICOM objects of one scan's results, built together: SEG, SR and (for a de-identified
export) the CT series they reference.

Two cases (DESIGN.md "Real cohorts", issue 15):

* ``source`` given: the scan came from a PACS in this process and the user asks to send the
  results back there. SEG and SR reference the original series by its UIDs and carry its
  patient and study attributes, so the PACS files them with the original study.
* no ``source``: the original UIDs were not kept (de-identification drops them). A new study
  under the pseudonymous id, with a de-identified CT series made from the stored volume as the
  SEG's and SR's source; :attr:`DicomResults.note` says why the original is not referenced.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset

from sscmort_core.dicomout.ct import NewStudy, deidentified_ct
from sscmort_core.dicomout.seg import lung_segments, segmentation
from sscmort_core.dicomout.sr import measurement_report
from sscmort_core.imaging.source import SourceSeries
from sscmort_core.imaging.volume import Volume
from sscmort_core.lungs import QCTMetrics
from sscmort_core.predictions import RiskPrediction

NOT_REFERENCED = ("the original series' UIDs were not kept (de-identification drops them; they "
                  "are kept only for a scan fetched from a PACS in this session whose results "
                  "are sent back there), so SEG and SR reference a de-identified copy of the "
                  "CT written beside them, under the pseudonymous patient id")
REFERENCED = ("SEG and SR reference the original series by its UIDs and join its study on the "
              "PACS (the patient's identifiers come from that study)")


def software_version() -> str:
    try:
        return version("sscmort")
    except PackageNotFoundError:
        return "0"


@dataclass(frozen=True)
class DicomResults:
    """seg, sr: the objects; ct: the de-identified CT series they reference (empty when they
    reference the original); note: what they reference and why."""

    seg: Dataset
    sr: Dataset
    ct: tuple[Dataset, ...]
    references_source: bool
    note: str

    def datasets(self) -> list[Dataset]:
        """Everything to store, the referenced CT first."""
        return [*self.ct, self.seg, self.sr]

    def files(self) -> list[tuple[str, Dataset]]:
        """(relative file name, dataset) for writing: ct/0001.dcm ..., seg.dcm, sr.dcm."""
        return ([(f"ct/{i + 1:04d}.dcm", ds) for i, ds in enumerate(self.ct)]
                + [("seg.dcm", self.seg), ("sr.dcm", self.sr)])


def build_results(volume: Volume, lung_mask: np.ndarray, ild_mask: np.ndarray | None,
                  qct: QCTMetrics, predictions: Sequence[RiskPrediction], *,
                  patient_id: str, scan_date: dt.date, synthetic: bool,
                  prediction_note: str, source: SourceSeries | None = None) -> DicomResults:
    """SEG + SR (+ CT) of one scan. volume: canonical (z, y, x) HU with its geometry; masks:
    (z, y, x) bool on the same grid; ``patient_id``: the pseudonymous id (used only without
    ``source``)."""
    sw = software_version()
    if source is not None:
        images, ct, note = list(source.headers), (), REFERENCED
    else:
        study = NewStudy.create(patient_id, scan_date, synthetic)
        ct = tuple(deidentified_ct(volume, study))
        images, note = list(ct), NOT_REFERENCED
    seg = segmentation(images, volume, lung_segments(lung_mask, ild_mask), synthetic=synthetic,
                       software_version=sw)
    sr = measurement_report(images, seg, qct, predictions, prediction_note=prediction_note,
                            synthetic=synthetic, software_version=sw)
    return DicomResults(seg, sr, ct, source is not None, note)


def write_results(results: DicomResults, out_dir: Path) -> list[Path]:
    """Write every object as a DICOM Part-10 file under ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    paths = []
    for name, ds in results.files():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def results_zip(results: DicomResults) -> bytes:
    """The same files in one zip (for a download button)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, ds in results.files():
            one = io.BytesIO()
            ds.save_as(one, enforce_file_format=True)
            zf.writestr(name, one.getvalue())
    return buf.getvalue()
