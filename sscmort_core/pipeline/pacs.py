"""Scans from a PACS (``sscmort pacs query|fetch``, the upload page's "From PACS" tab): search,
fetch one CT series into a temporary folder (always removed), and run the usual ingest chain
on it; and results back to the PACS as DICOM SEG + SR referencing the original study.

Nothing reaches the store unless the whole series arrived and read: a PACS failure (down,
timeout, 401 / 403 / 404, truncated body) or a non-CT series is raised before
:func:`~sscmort_core.pipeline.ingest.save_analysis`, which writes in one transaction.

What is shown of a PACS listing: study and series dates, descriptions (scrubbed of the
patient's name and id), modality, instance counts, and the UIDs the CLI needs to fetch; never
the patient's name, id, birth date or accession number.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Sequence

from sscmort_core import store as st_store
from sscmort_core.dicomout.results import DicomResults
from sscmort_core.errors import InputError
from sscmort_core.imaging import deid
from sscmort_core.imaging.source import SourceSeries, read_source_series
from sscmort_core.pacs import PacsClient, SeriesInfo, StoreResult, StudyInfo, fetch_series
from sscmort_core.pipeline.export_dicom import results_for_analysis
from sscmort_core.pipeline.ingest import (
    IngestResult,
    ScanAnalysis,
    analyse_path,
    save_analysis,
    store_secret,
)
from sscmort_core.predictions import RiskPrediction
from sscmort_core.util.progress import ProgressFn, no_progress

SOURCE_NAME = "pacs"


@dataclass(frozen=True)
class SeriesRow:
    """One series of a PACS listing, as shown (descriptions scrubbed, no patient identifier)."""

    study_uid: str
    series_uid: str
    study_date: dt.date | None
    study_description: str | None
    modality: str | None
    series_description: str | None
    series_number: int | None
    n_instances: int | None

    def label(self) -> str:
        """What a picker shows: date, modality, description, instances (no UID)."""
        return " · ".join(str(x) for x in (
            self.study_date or "no date", self.modality or "?",
            self.series_description or self.study_description or "no description",
            f"{self.n_instances or '?'} images") if x)

    def to_json(self) -> dict[str, Any]:
        return {"study_uid": self.study_uid, "series_uid": self.series_uid,
                "study_date": self.study_date.isoformat() if self.study_date else None,
                "study_description": self.study_description, "modality": self.modality,
                "series_description": self.series_description,
                "series_number": self.series_number, "n_instances": self.n_instances}


def _rows(study: StudyInfo, ct_only: bool) -> list[SeriesRow]:
    def clean(text: str | None) -> str | None:
        return deid.clean_free_text(text, study.identifiers)[0]

    return [SeriesRow(study.study_uid, s.series_uid, study.study_date, clean(study.description),
                      s.modality, clean(s.description), s.series_number, s.n_instances)
            for s in study.series if not ct_only or (s.modality or "").upper() == "CT"]


def query(client: PacsClient, *, patient_id: str | None = None, accession: str | None = None,
          study_date: str | None = None, ct_only: bool = True) -> list[SeriesRow]:
    """The (CT) series of every matching study, newest study first."""
    studies = client.search_studies(patient_id=patient_id, accession=accession,
                                    study_date=study_date)
    rows = [r for st in studies for r in _rows(client.with_series(st), ct_only)]
    rows.sort(key=lambda r: (r.study_date or dt.date.min, r.series_number or 0), reverse=True)
    return rows


@dataclass(frozen=True)
class PacsAnalysis:
    """An analysed series fetched from a PACS. ``source``: its original headers (identifying,
    memory only), kept only when the caller will send results back."""

    analysis: ScanAnalysis
    series: SeriesInfo
    source: SourceSeries | None

    def __repr__(self) -> str:
        return f"PacsAnalysis({self.analysis.volume!r}, kept source: {self.source is not None})"


def fetch_and_analyse(client: PacsClient, study_uid: str, series_uid: str | None = None, *,
                      secret: bytes | None, keep_source: bool = False,
                      progress: ProgressFn = no_progress) -> PacsAnalysis:
    """Check the series is CT, retrieve it (streamed into a temporary folder that is always
    removed), then read, validate, de-identify, segment and measure it."""
    series = client.ct_series(study_uid, series_uid)
    total = series.n_instances or 0
    label = f"series from {client.shown_url}"
    with fetch_series(client, study_uid, series.series_uid,
                      progress=lambda n: progress("retrieve", n, max(total, n))) as folder:
        try:
            analysis = analyse_path(folder, secret=secret, progress=progress)
            source = read_source_series(folder) if keep_source else None
        except InputError as err:  # name the PACS series, not the temporary folder
            raise type(err)(err.reason, label) from None
    return PacsAnalysis(analysis, series, source)


@dataclass(frozen=True)
class PacsIngest:
    result: IngestResult
    fetched: PacsAnalysis


def fetch_and_ingest(store: st_store.Store, client: PacsClient, study_uid: str,
                     series_uid: str | None = None, *, patient_id: str | None = None,
                     scan_date: dt.date | None = None, keep_source: bool = False,
                     progress: ProgressFn = no_progress) -> PacsIngest:
    """``sscmort pacs fetch``: fetch and analyse, then store (one transaction)."""
    fetched = fetch_and_analyse(client, study_uid, series_uid, secret=store_secret(store),
                                keep_source=keep_source, progress=progress)
    result = save_analysis(store, fetched.analysis, patient_id=patient_id, scan_date=scan_date,
                           source_name=SOURCE_NAME)
    return PacsIngest(result, fetched)


def send_back(client: PacsClient, fetched: PacsAnalysis,
              predictions: Sequence[RiskPrediction], *, patient_id: str,
              scan_date: dt.date) -> tuple[DicomResults, StoreResult]:
    """SEG + SR of a fetched series stored back on ``client`` (STOW-RS): referencing the
    original study when its headers were kept, else a new study under ``patient_id``."""
    results = results_for_analysis(fetched.analysis, predictions, patient_id=patient_id,
                                   scan_date=scan_date, source=fetched.source)
    return results, client.store(results.datasets())

