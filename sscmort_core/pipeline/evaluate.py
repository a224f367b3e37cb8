"""Evaluation runs over the store: every metric of every model and horizon, stored.

Every model kind (deep, radiomics, QCT, ensemble, the synthetic oracle) is treated alike: what
counts is its out-of-fold predictions (``predictions.split = 'oof'``). For each model and
horizon the scans it predicted are labelled by the one label rule
(:func:`sscmort_core.labels.label_scans`); censored scans are left out of the binary metrics
(AUC, Brier, calibration) and kept, with follow-up time from
:func:`sscmort_core.labels.time_to_event_years`, for Harrell's C and the time-dependent AUC.

Counts on each stored metric row describe the scans that metric used: for ``auc``, ``brier``
and the calibration rows the labelled scans (``n_events`` = deaths within the horizon by the
label rule); for ``c_index`` all predicted scans (``n_events`` = all observed deaths); for
``td_auc`` all predicted scans (``n_events`` = deaths at or before the horizon in years of
365.25 days, which can differ from the calendar label rule by a day).

A horizon with fewer than ``min_events`` positives (or negatives), or a metric whose inputs
are unusable (a :class:`~sscmort_core.errors.MetricInputError`), gets rows with value NULL and
the reason in ``note``; the run goes on. The page data built on these rows (curves, tables,
the best model) is in :mod:`sscmort_core.views.comparison`.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import MetricInputError, StoreError
from sscmort_core.evaluation import (
    auc_with_ci,
    brier_score,
    calibration_intercept_slope,
    compare_models,
    concordance_index,
    time_dependent_auc,
)
from sscmort_core.evaluation.results import PairedComparison
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline.eval_data import (
    DEFAULT_MIN_EVENTS,
    HorizonData,
    check_model_ids,
    load_horizon_data,
    too_few_events,
)
from sscmort_core.util.progress import ProgressFn, no_progress

METRICS: tuple[str, ...] = ("auc", "brier", "calibration_slope", "calibration_intercept",
                            "c_index", "td_auc")


@dataclass(frozen=True)
class MetricValue:
    """One stored metric row. ``value`` is None when not computable; ``note`` says why."""

    metric: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n_scans: int
    n_patients: int
    n_events: int
    note: str | None = None


@dataclass(frozen=True)
class HorizonMetrics:
    """Every metric of one model at one horizon."""

    model_id: str
    horizon_years: int
    metrics: tuple[MetricValue, ...]

    def get(self, metric: str) -> MetricValue:
        for m in self.metrics:
            if m.metric == metric:
                return m
        raise KeyError(metric)


@dataclass(frozen=True)
class EvaluationRun:
    """What :func:`run_evaluation` computed and stored."""

    model_ids: tuple[str, ...]
    horizons: tuple[int, ...]
    results: tuple[HorizonMetrics, ...]
    n_boot: int
    seed: int
    rows_written: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """``{"models": {model_id: {"1": {"auc": {"value": ..., "ci_low": ...}}}}, ...}``."""
        models: dict[str, dict[str, Any]] = {m: {} for m in self.model_ids}
        for r in self.results:
            models[r.model_id][str(r.horizon_years)] = {
                m.metric: {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high,
                           "n_scans": m.n_scans, "n_patients": m.n_patients,
                           "n_events": m.n_events, "note": m.note} for m in r.metrics}
        return {"models": models, "horizons": list(self.horizons), "n_boot": self.n_boot,
                "seed": self.seed, "rows_written": self.rows_written,
                "seconds": round(self.seconds, 2)}


def _row_counts(data: HorizonData) -> dict[str, dict[str, int]]:
    """Per metric, the scans, patients and events it uses (see the module docstring)."""
    lab = data.labelled
    binary = dict(n_scans=int(lab.sum()), n_patients=data.n_labelled_patients,
                  n_events=data.n_events)
    n_all = dict(n_scans=len(data.risk), n_patients=int(pd.unique(data.patient_id).size))
    died_by_h = data.event & (data.time_years <= data.horizon_years)
    return {"auc": binary, "brier": binary, "calibration_slope": binary,
            "calibration_intercept": binary,
            "c_index": {**n_all, "n_events": int(data.event.sum())},
            "td_auc": {**n_all, "n_events": int(died_by_h.sum())}}


def evaluate_horizon(data: HorizonData, *, n_boot: int = 2000, seed: int = 0,
                     min_events: int = DEFAULT_MIN_EVENTS) -> HorizonMetrics:
    """Every metric of :data:`METRICS` for one model at one horizon (never raises for
    MetricInputError: the metric's value is None and its note holds the reason)."""
    lab = data.labelled
    y, risk, groups = data.y[lab].astype(np.int8), data.risk[lab], data.patient_id[lab]
    counts = _row_counts(data)
    reason = too_few_events(data.n_labelled, data.n_events, data.horizon_years, min_events)
    if reason is not None:
        rows = tuple(MetricValue(m, None, None, None, note=reason, **counts[m]) for m in METRICS)
        return HorizonMetrics(data.model_id, data.horizon_years, rows)

    values: dict[str, tuple[float | None, float | None, float | None, str | None]] = {}
    try:
        a = auc_with_ci(y, risk, groups, n_boot=n_boot, seed=seed)
        note = None if a.n_boot_dropped == 0 else \
            f"{a.n_boot_dropped} of {n_boot} resamples held one class and were left out"
        values["auc"] = (a.auc, a.ci_low, a.ci_high, note)
    except MetricInputError as err:
        values["auc"] = (None, None, None, str(err))
    values["brier"] = _try(lambda: brier_score(y, risk))
    try:
        cal = calibration_intercept_slope(y, risk)
        values["calibration_slope"] = (cal.slope, None, None, None)
        values["calibration_intercept"] = (cal.intercept, None, None, None)
    except MetricInputError as err:
        values["calibration_slope"] = values["calibration_intercept"] = (None, None, None,
                                                                         str(err))
    values["c_index"] = _try(lambda: concordance_index(data.time_years, data.event, data.risk))
    values["td_auc"] = _try(lambda: time_dependent_auc(data.time_years, data.event, data.risk,
                                                       data.horizon_years))
    rows = tuple(MetricValue(m, *values[m][:3], note=values[m][3], **counts[m])
                 for m in METRICS)
    return HorizonMetrics(data.model_id, data.horizon_years, rows)


def _try(fn: Callable[[], float]) -> tuple[float | None, None, None, str | None]:
    try:
        return float(fn()), None, None, None
    except MetricInputError as err:
        return None, None, None, str(err)


def metrics_rows(results: Iterable[HorizonMetrics]) -> pd.DataFrame:
    """Results as rows of the metrics table (columns of ``store.METRIC_COLUMNS``)."""
    rows = [{"model_id": r.model_id, "horizon_years": r.horizon_years, "metric": m.metric,
             "value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n_scans": m.n_scans,
             "n_patients": m.n_patients, "n_events": m.n_events, "note": m.note}
            for r in results for m in r.metrics]
    frame = pd.DataFrame(rows, columns=list(st_store.METRIC_COLUMNS))
    for col in ("value", "ci_low", "ci_high"):
        frame[col] = frame[col].astype(float)
    return frame


def run_evaluation(store: st_store.Store, *, model_ids: Sequence[str] | None = None,
                   n_boot: int = 2000, seed: int = 0, min_events: int = DEFAULT_MIN_EVENTS,
                   horizons: Sequence[int] = HORIZONS_YEARS,
                   progress: ProgressFn = no_progress) -> EvaluationRun:
    """Compute every metric for every model and horizon and store them in one transaction.

    ``model_ids`` None means every registered model with OOF predictions. Earlier metric rows of
    the evaluated models are replaced (all of them, so no stale row survives). ``seed`` drives
    the patient bootstrap; every model sees the same resamples of the same patients.
    Raises UnknownModelError, NoPredictionsError, StoreError (read-only store) and DataError
    (inconsistent dates of a predicted scan); nothing is written then.
    """
    t0 = time.perf_counter()
    if store.read_only:
        raise StoreError("opened read-only; an evaluation writes the metrics table", store.path)
    ids = check_model_ids(store, model_ids)
    horizons = tuple(horizons)
    data = load_horizon_data(store, ids, horizons)
    total = len(ids) * len(horizons)
    progress("evaluate", 0, total)
    results = []
    for i, (m, h) in enumerate(itertools.product(ids, horizons), 1):
        results.append(evaluate_horizon(data[(m, h)], n_boot=n_boot, seed=seed,
                                        min_events=min_events))
        progress("evaluate", i, total)
    frame = metrics_rows(results)
    with store.transaction() as cur:
        for m in ids:
            st_store.delete_metrics(cur, m)
        written = st_store.insert_frame(cur, "metrics", frame, replace=True)
    return EvaluationRun(model_ids=ids, horizons=horizons, results=tuple(results),
                         n_boot=n_boot, seed=seed, rows_written=written,
                         seconds=time.perf_counter() - t0)


@dataclass(frozen=True)
class PairedTest:
    """Two models compared at one horizon on the labelled scans both predicted.

    ``comparison`` (DeLong and patient-level paired bootstrap of AUC(a) - AUC(b)) is None when
    it cannot be computed; ``note`` says why.
    """

    horizon_years: int
    model_a: str
    model_b: str
    n_scans: int
    n_patients: int
    n_events: int
    comparison: PairedComparison | None
    note: str | None = None


def paired_test(data_a: HorizonData, data_b: HorizonData, *, n_boot: int = 2000,
                seed: int = 0, min_events: int = DEFAULT_MIN_EVENTS) -> PairedTest:
    """Compare two models' predictions at the same horizon on their common labelled scans."""
    a = pd.DataFrame({"scan_id": data_a.scan_id, "y": data_a.y, "patient": data_a.patient_id,
                      "risk_a": data_a.risk})
    b = pd.DataFrame({"scan_id": data_b.scan_id, "risk_b": data_b.risk})
    both = a.merge(b, on="scan_id").dropna(subset=["y"]).sort_values("scan_id")
    n, n_ev = len(both), int(both["y"].sum())
    base = dict(horizon_years=data_a.horizon_years, model_a=data_a.model_id,
                model_b=data_b.model_id, n_scans=n, n_patients=int(both["patient"].nunique()),
                n_events=n_ev)
    reason = too_few_events(n, n_ev, data_a.horizon_years, min_events)
    if reason is not None:
        return PairedTest(**base, comparison=None, note=f"scans both models predicted: {reason}")
    try:
        comp = compare_models(both["y"].to_numpy(), both["risk_a"].to_numpy(),
                              both["risk_b"].to_numpy(), both["patient"].to_numpy(),
                              n_boot=n_boot, seed=seed)
    except MetricInputError as err:
        return PairedTest(**base, comparison=None, note=str(err))
    return PairedTest(**base, comparison=comp)


def paired_tests(store: st_store.Store, model_ids: Sequence[str], horizon: int, *,
                 n_boot: int = 2000, seed: int = 0,
                 min_events: int = DEFAULT_MIN_EVENTS) -> list[PairedTest]:
    """DeLong and patient bootstrap of the AUC difference for every pair of ``model_ids`` (in
    the order given: a before b), each on the labelled scans both models predicted."""
    ids = check_model_ids(store, model_ids)
    data = load_horizon_data(store, ids, (horizon,))
    return [paired_test(data[(a, horizon)], data[(b, horizon)], n_boot=n_boot, seed=seed,
                        min_events=min_events) for a, b in itertools.combinations(ids, 2)]
