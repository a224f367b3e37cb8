"""Results of a scan as DICOM SEG + SR (``sscmort export-dicom``, the download buttons, the
send-back to a PACS): chains load -> lungs -> ILD mask -> QCT -> risks -> DICOM objects.

A stored scan is exported under its pseudonymous id with new UIDs (the store keeps no source
UIDs, by design: :data:`sscmort_core.dicomout.results.NOT_REFERENCED` says why). Only an
analysis fetched from a PACS in this process, with its :class:`SourceSeries`, is exported
referencing the original study (:func:`results_for_analysis` with ``source``).

Risks: a stored scan's out-of-fold predictions when the store has them (what the dashboard
shows; the synthetic oracle is left out, being the generator's truth, not a model); else a
fresh prediction by every registered model.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from sscmort_core import store as st_store
from sscmort_core.cards import model_labels
from sscmort_core.dicomout.results import DicomResults, build_results, write_results
from sscmort_core.errors import DataError, StoreError
from sscmort_core.imaging.source import SourceSeries
from sscmort_core.imaging.volume import Volume
from sscmort_core.lungs import PATTERNS, QCTMetrics, classify_patterns, qct_metrics
from sscmort_core.lungs.qct import ild_mask, qct_method_version
from sscmort_core.pacs import PacsClient, StoreResult
from sscmort_core.pipeline.ingest import ScanAnalysis
from sscmort_core.pipeline.predict import predict_volume_all
from sscmort_core.predictions import RiskPrediction
from sscmort_core.scans import load_scan_with_lungs

OOF_NOTE = "out-of-fold"
FRESH_NOTE = "registered model"


@dataclass(frozen=True)
class DicomExport:
    """What one export wrote (and sent)."""

    scan_id: str | None
    files: tuple[Path, ...]
    references_source: bool
    note: str
    models: tuple[str, ...]
    prediction_source: str
    problems: tuple[tuple[str, str], ...] = ()
    sent: StoreResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {"scan_id": self.scan_id, "files": [str(p) for p in self.files],
                "references_source": self.references_source, "note": self.note,
                "models": list(self.models), "prediction_source": self.prediction_source,
                "problems": [{"model": m, "problem": p} for m, p in self.problems],
                "sent": None if self.sent is None else self.sent.n_stored,
                "research_use_only": True}


def stored_predictions(store: st_store.Store, scan_id: str, patient_id: str
                       ) -> list[RiskPrediction]:
    """The scan's out-of-fold risks per model (every horizon present), oracle left out."""
    frame = st_store.patient_predictions_frame(store, patient_id)
    frame = frame[(frame["scan_id"] == scan_id) & (frame["kind"] != "oracle")]
    labels = model_labels(st_store.models_frame(store).to_dict("records"))  # as the pages
    out = []
    for model_id, rows in frame.groupby("model_id", sort=True):
        risk = dict(zip(rows["horizon_years"].astype(int), rows["risk"].astype(float)))
        if not {1, 3, 5} <= set(risk):
            continue
        first = rows.iloc[0]
        out.append(RiskPrediction(str(model_id), str(first["kind"]),
                                  labels.get(str(model_id), str(model_id)), risk[1], risk[3],
                                  risk[5]))
    return out


@dataclass(frozen=True)
class ScanResults:
    """A stored scan's DICOM objects, the risks they hold and where those came from
    (``prediction_source``: out-of-fold, or registered model), and the models that could not
    predict (model, reason)."""

    results: DicomResults
    predictions: tuple[RiskPrediction, ...]
    prediction_source: str
    problems: tuple[tuple[str, str], ...] = ()


def results_for_scan(store: st_store.Store, scan_id: str, *,
                     models_dir: Path | None = None) -> ScanResults:
    """SEG + SR (+ de-identified CT) of a stored scan."""
    row = st_store.scan_row(store, scan_id)
    if row is None:
        raise StoreError(f"no scan {scan_id!r} in the store", store.path)
    scan = load_scan_with_lungs(store, scan_id)
    hu, spacing, mask = scan.volume.hu, scan.volume.spacing_mm, scan.lungs.mask
    qct, extents = _stored_or_measured_qct(store, scan_id, hu, mask, spacing)
    preds: Sequence[RiskPrediction] = stored_predictions(store, scan_id, str(row["patient_id"]))
    source, problems = OOF_NOTE, ()
    if not preds:
        report = predict_volume_all(store, hu, mask, spacing, qct={**qct.to_dict(), **extents},
                                    models_dir=models_dir)
        preds, problems, source = report.predictions, report.problems, FRESH_NOTE
    scan_date = row["scan_date"]
    if not isinstance(scan_date, dt.date):
        scan_date = dt.date.fromisoformat(str(scan_date))
    results = build_results(Volume(hu=hu, spacing_mm=spacing), mask, ild_mask(hu, mask, spacing),
                            qct, preds, patient_id=str(row["patient_id"]), scan_date=scan_date,
                            synthetic=bool(row["synthetic"]), prediction_note=source)
    return ScanResults(results, tuple(preds), source, tuple(problems))


def _stored_or_measured_qct(store: st_store.Store, scan_id: str, hu, mask, spacing
                            ) -> tuple[QCTMetrics, dict[str, float]]:
    """The scan's stored QCT and pattern extents when they were measured by the current
    method (lung mask, pattern model, QC: :func:`qct_method_version`), else measured now."""
    row = st_store.qct_features_row(store, scan_id)
    extent_keys = [f"{p.replace(' ', '_')}_pct" for p in PATTERNS]
    qct_keys = [f.name for f in fields(QCTMetrics)]
    if row is not None and row.get("method_version") == qct_method_version() and all(
            row.get(k) is not None for k in (*qct_keys, *extent_keys)):
        return (QCTMetrics(**{k: float(row[k]) for k in qct_keys}),
                {k: float(row[k]) for k in extent_keys})
    patterns = classify_patterns(hu, mask, spacing)
    return qct_metrics(hu, mask, spacing, patterns), patterns.extents()


def results_for_analysis(analysis: ScanAnalysis, predictions: Sequence[RiskPrediction], *,
                         patient_id: str, scan_date: dt.date,
                         source: SourceSeries | None = None,
                         synthetic: bool = False) -> DicomResults:
    """SEG + SR of an analysed scan (an upload, or a PACS fetch). With ``source`` (the
    fetched series' headers) they reference the original study; else a new one under
    ``patient_id``. ``synthetic`` labels the objects SYNTHETIC (an analysis cannot tell: the
    reader keeps no identifying text that would say so)."""
    vol, mask = analysis.volume, analysis.lungs.mask
    return build_results(vol, mask, ild_mask(vol.hu, mask, vol.spacing_mm), analysis.qct,
                         predictions, patient_id=patient_id, scan_date=scan_date,
                         synthetic=synthetic, prediction_note=FRESH_NOTE, source=source)


def _empty_folder(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError("the output folder exists and is not empty; name a new or empty "
                        "folder", out_dir)
    return out_dir


def export_scan(store: st_store.Store, scan_id: str, out_dir: Path, *,
                send_to: PacsClient | None = None,
                models_dir: Path | None = None) -> DicomExport:
    """``sscmort export-dicom``: build every object first, then write them into ``out_dir``
    (new or empty), then store them on ``send_to`` when given."""
    out_dir = _empty_folder(out_dir)
    got = results_for_scan(store, scan_id, models_dir=models_dir)
    files = tuple(write_results(got.results, out_dir))
    sent = send_to.store(got.results.datasets()) if send_to is not None else None
    return DicomExport(scan_id, files, got.results.references_source, got.results.note,
                       tuple(p.model_id for p in got.predictions), got.prediction_source,
                       got.problems, sent)
