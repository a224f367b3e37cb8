"""The report of one model (``sscmort report``, the Model comparison page's download): a
TRIPOD+AI-style summary built from what the store holds.

Every number comes from the code the Model comparison page uses: the stored metric rows
(:func:`~sscmort_core.views.comparison.metrics_long`, per scan, with their patient-bootstrap
CIs, estimands and counts), the curves (:func:`~sscmort_core.views.comparison.horizon_curves`,
:func:`~sscmort_core.views.comparison.recalibration_frames`), the clinical references
(:func:`~sscmort_core.views.comparison.best_clinical`, the paired tests of
:func:`~sscmort_core.pipeline.evaluate.paired_tests` and
:func:`~sscmort_core.views.comparison.added_value_frame`), the label rule
(:func:`~sscmort_core.pipeline.eval_data.load_horizon_data`) and the model card. Nothing is
recomputed another way. :mod:`.report_render` writes the document (Markdown or HTML).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.cards import ModelCard
from sscmort_core.errors import ModelError, UnknownModelError
from sscmort_core.evaluation import PER_SCAN
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline.eval_data import load_horizon_data
from sscmort_core.pipeline.evaluate import paired_tests
from sscmort_core.pipeline.staleness import model_staleness
from sscmort_core.views import comparison as cmp
from sscmort_core.views.cohort import HorizonCount, horizon_counts

REPORT_VERSION = "1"  # bump when what the report holds or how it is built changes


@dataclass(frozen=True, eq=False)
class CohortSection:
    """Who the model was scored on: the store's cohort and its sources."""

    patients: int
    scans: int
    synthetic_patients: int
    median_followup_years: float | None
    first_scan: dt.date | None
    last_scan: dt.date | None
    sources: pd.DataFrame  # source, synthetic, patients, scans (store.source_counts)
    labels: tuple[HorizonCount, ...]  # every stored scan, by the label rule

    @property
    def synthetic(self) -> bool:
        return self.synthetic_patients > 0

    @property
    def all_synthetic(self) -> bool:
        return self.synthetic_patients == self.patients


@dataclass(frozen=True)
class ScoredLabels:
    """The scans a model was scored on at one horizon (its OOF predictions), by the label
    rule: positives died within the horizon, negatives known alive at it, censored neither
    (left out of the binary metrics, kept by the censoring-aware ones)."""

    horizon_years: int
    scans: int
    patients: int
    positive: int
    negative: int
    censored: int


@dataclass(frozen=True, eq=False)
class ClinicalBaseline:
    """The best clinical reference at one horizon and this model's added value over it."""

    horizon_years: int
    reference_id: str | None  # None: no evaluated clinical reference in the store
    reference_label: str | None
    added_value: pd.DataFrame  # added_value_frame rows (empty when not computable)
    note: str  # what was compared, or why nothing was


@dataclass(frozen=True, eq=False)
class HorizonCharts:
    """The curves of one horizon (frames laid out as the page's charts expect)."""

    horizon_years: int
    roc: cmp.CurveSet
    calibration: cmp.CurveSet  # observed = 1 - Kaplan-Meier per risk group, every scan
    recalibration: cmp.CurveSet  # before / after recalibration (empty: not recalibrated)


@dataclass(frozen=True, eq=False)
class ModelReport:
    """Everything the report says about one model (see the module docstring)."""

    model_id: str
    label: str
    kind: str
    stale: bool
    created_utc: str
    cohort: CohortSection
    scored: tuple[ScoredLabels, ...]
    n_folds: int | None  # distinct folds of the OOF predictions
    card: ModelCard
    metrics: pd.DataFrame  # metrics_long of the model (per scan, stored rows)
    reference_metrics: pd.DataFrame  # metrics_long rows (AUC) of the clinical references
    clinical: tuple[ClinicalBaseline, ...]
    charts: tuple[HorizonCharts, ...]
    n_boot: int

    @property
    def synthetic(self) -> bool:
        return self.cohort.synthetic or self.card.synthetic


def _model_row(store: st_store.Store, model_id: str) -> dict:
    row = st_store.model_row(store, model_id)
    if row is None:
        ids = st_store.models_frame(store)["model_id"].tolist()
        shown = ", ".join(ids[:12]) + (f" and {len(ids) - 12} more" if len(ids) > 12 else "")
        raise UnknownModelError(
            f"unknown model id {model_id!r}; registered: {shown or 'none'} (all of them: "
            "`sscmort evaluate --json` or the Models & jobs page)", store.path)
    return row


def check_reportable(store: st_store.Store, model_id: str) -> None:
    """Refuse (ModelError) a model that is not registered or has no stored metrics."""
    _model_row(store, model_id)
    metrics = st_store.metrics_for_models(store, [model_id])
    if metrics.empty:
        raise ModelError(f"model {model_id!r} has no stored metrics; compute them first with "
                         f"`sscmort evaluate --models {model_id}`", store.path)


def _cohort(store: st_store.Store) -> CohortSection:
    summary = st_store.cohort_summary(store)
    sources = st_store.source_counts(store)[["source", "synthetic", "patients", "scans"]]
    return CohortSection(
        patients=summary.patients, scans=summary.scans,
        synthetic_patients=summary.synthetic_patients,
        median_followup_years=summary.median_followup_years, first_scan=summary.first_scan,
        last_scan=summary.last_scan, sources=sources.reset_index(drop=True),
        labels=tuple(horizon_counts(st_store.scans_frame(store))))


def _scored(store: st_store.Store, model_id: str,
            horizons: Sequence[int]) -> tuple[ScoredLabels, ...]:
    data = load_horizon_data(store, [model_id], tuple(horizons))
    out = []
    for h in horizons:
        d = data[(model_id, h)]
        out.append(ScoredLabels(h, len(d.risk), int(pd.unique(d.patient_id).size),
                                d.n_events, d.n_labelled - d.n_events,
                                len(d.risk) - d.n_labelled))
    return tuple(out)


def _n_folds(store: st_store.Store, model_id: str) -> int | None:
    folds = st_store.predictions_frame(store, [model_id])["fold"].dropna()
    return int(folds.nunique()) if len(folds) else None


def _clinical(store: st_store.Store, model_id: str, kind: str, horizons: Sequence[int],
              n_boot: int, seed: int, labels: dict[str, str],
              kinds: dict[str, str]) -> tuple[ClinicalBaseline, ...]:
    """Per horizon the best clinical reference (highest stored AUC) and, for an imaging
    model, its paired AUC difference over it."""
    references = [m for m, k in kinds.items() if k in cmp.CLINICAL_KINDS]
    out = []
    for h in horizons:
        ref = cmp.best_clinical(store, references, h)
        if ref is None:
            out.append(ClinicalBaseline(h, None, None, pd.DataFrame(), (
                f"no clinical reference model has a stored AUC at {h} y (too few events, "
                "or not evaluated)" if references else
                "no clinical reference model in the store (`sscmort train --kind goh` / "
                "`--kind clinical`, then `sscmort evaluate`)")))
            continue
        if ref == model_id or kind not in cmp.IMAGING_KINDS:
            out.append(ClinicalBaseline(h, ref, labels[ref], pd.DataFrame(),
                                        "this model is itself a clinical reference"
                                        if ref == model_id or kind in cmp.CLINICAL_KINDS else
                                        f"added value is shown for imaging models only "
                                        f"(this model is of kind {kind})"))
            continue
        tests = paired_tests(store, [model_id, ref], h, n_boot=n_boot, seed=seed)
        added = cmp.added_value_frame(tests, labels, kinds, ref)
        note = "paired on the labelled scans both models predicted; CI: patient bootstrap " \
               f"({n_boot} resamples); p respects clustering in patients"
        if added.empty:
            note = tests[0].note if tests and tests[0].note else "not computable"
        out.append(ClinicalBaseline(h, ref, labels[ref], added, note))
    return tuple(out)


def _charts(store: st_store.Store, model_id: str,
            horizons: Sequence[int]) -> tuple[HorizonCharts, ...]:
    out = []
    for h in horizons:
        curves = cmp.horizon_curves(store, [model_id], h)
        recal = cmp.recalibration_frames(store, [model_id], h)
        km = curves.km_calibration or curves.calibration
        out.append(HorizonCharts(h, curves.roc, km, recal))
    return tuple(out)


def build_report(store: st_store.Store, model_id: str, *, n_boot: int = 2000, seed: int = 0,
                 horizons: Sequence[int] = HORIZONS_YEARS) -> ModelReport:
    """The report of ``model_id``. Raises UnknownModelError (not registered) or ModelError
    (no stored metrics: run ``sscmort evaluate`` first). ``n_boot`` and ``seed`` drive the
    paired tests against the best clinical reference (computed, as on the page)."""
    check_reportable(store, model_id)
    row = _model_row(store, model_id)
    card = ModelCard.from_store(row.get("card"), model_id=model_id, kind=str(row["kind"]),
                                version=row.get("version"))
    labels = cmp.model_labels(store)
    kinds = st_store.models_frame(store).set_index("model_id")["kind"].astype(str).to_dict()
    status = model_staleness(store).get(model_id)
    horizons = tuple(horizons)
    clinical = _clinical(store, model_id, kinds[model_id], horizons, n_boot, seed, labels,
                         kinds)
    evaluated = set(st_store.metrics_frame(store)["model_id"])
    refs = [m for m, k in kinds.items() if k in cmp.CLINICAL_KINDS and m in evaluated]
    ref_rows = cmp.metrics_long(store, refs, horizons=horizons) if refs else \
        pd.DataFrame(columns=list(cmp.LONG_COLUMNS))
    ref_rows = ref_rows.loc[ref_rows["metric"] == "AUC"].reset_index(drop=True)
    metrics = cmp.metrics_long(store, [model_id], horizons=horizons, estimand=PER_SCAN)
    return ModelReport(
        model_id=model_id, label=labels[model_id], kind=kinds[model_id],
        stale=bool(status is not None and status.stale),
        created_utc=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        cohort=_cohort(store), scored=_scored(store, model_id, horizons),
        n_folds=_n_folds(store, model_id), card=card, metrics=metrics,
        reference_metrics=ref_rows, clinical=clinical,
        charts=_charts(store, model_id, horizons), n_boot=n_boot)


def auc_of(report: ModelReport, horizon: int) -> pd.Series | None:
    """The stored AUC row (metrics_long columns) of the report's model at ``horizon``."""
    rows = report.metrics.loc[(report.metrics["metric"] == "AUC")
                              & (report.metrics["horizon (years)"] == horizon)]
    return None if rows.empty else rows.iloc[0]


def summary_json(report: ModelReport) -> dict[str, object]:
    """A short machine-readable summary (the CLI's ``--json``)."""
    aucs = {}
    for h in (s.horizon_years for s in report.scored):
        r = auc_of(report, h)
        aucs[str(h)] = None if r is None else {
            "value": _py(r["value"]), "ci_low": _py(r["CI low"]), "ci_high": _py(r["CI high"]),
            "estimand": r["estimand"], "n_scans": int(r["scans"]),
            "n_patients": int(r["patients"]), "n_events": int(r["events"])}
    return {"model_id": report.model_id, "label": report.label, "kind": report.kind,
            "stale": report.stale, "synthetic": report.synthetic,
            "research_use_only": True, "report_version": REPORT_VERSION,
            "metric_rows": len(report.metrics), "auc": aucs,
            "clinical_references": sorted({c.reference_id for c in report.clinical
                                           if c.reference_id})}


def _py(v: object) -> float | None:
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) \
        or pd.isna(v) else float(v)
