"""Evaluation runs over the store: every metric of every model and horizon, stored.

Every model kind (deep, radiomics, QCT, ensemble, the synthetic oracle) is treated alike: what
counts is its out-of-fold predictions (``predictions.split = 'oof'``). For each model and
horizon the scans it predicted are labelled by the one label rule
(:func:`sscmort_core.labels.label_scans`); censored scans are left out of the binary metrics
(AUC, Brier, calibration) and kept, with follow-up time from
:func:`sscmort_core.labels.time_to_event_years`, for the censoring-aware metrics: Harrell's C
(whole follow-up, ``c_index``, and truncated at the horizon, ``harrell_c``), Uno's C truncated
at the horizon (``uno_c``), the time-dependent AUC, and by inverse probability of censoring
weighting (IPCW) the Brier score (``ipcw_brier``), observed / expected risk
(``calibration_oe``, observed = 1 - Kaplan-Meier) and the calibration intercept and slope
(``ipcw_calibration_*``). Every row carries a patient-bootstrap CI (all resamples of one
horizon shared; the censoring distribution re-estimated in each) and its estimand
(:data:`METRIC_ESTIMANDS`: per scan, except ``auc_per_patient``, each patient weighted
equally).

Counts on each stored metric row describe the scans that metric used: for ``auc``,
``auc_per_patient``, ``brier`` and the ``calibration_*`` rows the labelled scans (``n_events``
= deaths within the horizon by the label rule); for ``c_index`` all predicted scans
(``n_events`` = all observed deaths); for ``harrell_c`` and ``uno_c`` all predicted scans
(``n_events`` = deaths before the horizon, the ones that open pairs); for ``td_auc`` and the
IPCW rows all predicted scans (``n_events`` = deaths at or before the horizon in years of
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
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import MetricInputError, StoreError
from sscmort_core.evaluation import (
    PER_PATIENT,
    PER_SCAN,
    BatchMetric,
    auc_metric,
    auc_with_ci,
    bootstrap_cis,
    brier_metric,
    calibration_metric,
    compare_models,
    harrell_c_metric,
    ipcw_brier_metric,
    ipcw_calibration_metric,
    observed_expected_metric,
    patient_clusters,
    td_auc_metric,
    uno_c_metric,
)
from sscmort_core.evaluation.results import MetricCI, PairedComparison
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
                            "c_index", "td_auc", "auc_per_patient", "harrell_c", "uno_c",
                            "ipcw_brier", "calibration_oe", "ipcw_calibration_slope",
                            "ipcw_calibration_intercept")
# What each stored metric estimates: the population its scans are weighted to.
METRIC_ESTIMANDS: dict[str, str] = {m: PER_PATIENT if m == "auc_per_patient" else PER_SCAN
                                    for m in METRICS}
_LABELLED_METRICS = ("auc", "auc_per_patient", "brier", "calibration_slope",
                     "calibration_intercept")


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
    estimand: str = PER_SCAN


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
        return {"models": metrics_json(self.model_ids, self.results), "horizons": list(self.horizons), "n_boot": self.n_boot,
                "seed": self.seed, "rows_written": self.rows_written,
                "seconds": round(self.seconds, 2)}


def metrics_json(model_ids: Sequence[str], results: Sequence[HorizonMetrics]
                 ) -> dict[str, dict[str, Any]]:
    """``{model_id: {"1": {"auc": {"value", "ci_low", "ci_high", counts, note, estimand}}}}``
    of evaluated horizons (the JSON of ``sscmort evaluate``, with or without a design)."""
    models: dict[str, dict[str, Any]] = {m: {} for m in model_ids}
    for r in results:
        models[r.model_id][str(r.horizon_years)] = {
            m.metric: {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high,
                       "n_scans": m.n_scans, "n_patients": m.n_patients,
                       "n_events": m.n_events, "note": m.note, "estimand": m.estimand}
            for m in r.metrics}
    return models


def _row_counts(data: HorizonData) -> dict[str, dict[str, int]]:
    """Per metric, the scans, patients and events it uses (see the module docstring)."""
    lab = data.labelled
    binary = dict(n_scans=int(lab.sum()), n_patients=data.n_labelled_patients,
                  n_events=data.n_events)
    n_all = dict(n_scans=len(data.risk), n_patients=int(pd.unique(data.patient_id).size))
    died_by_h = int((data.event & (data.time_years <= data.horizon_years)).sum())
    died_before_h = int((data.event & (data.time_years < data.horizon_years)).sum())
    counts = {m: binary for m in _LABELLED_METRICS}
    counts |= {m: {**n_all, "n_events": died_by_h} for m in METRICS if m not in counts}
    counts["c_index"] = {**n_all, "n_events": int(data.event.sum())}
    counts["harrell_c"] = counts["uno_c"] = {**n_all, "n_events": died_before_h}
    return counts


def evaluate_horizon(data: HorizonData, *, n_boot: int = 2000, seed: int = 0,
                     min_events: int = DEFAULT_MIN_EVENTS,
                     estimand: str = PER_SCAN) -> HorizonMetrics:
    """Every metric of :data:`METRICS` for one model at one horizon (never raises for
    MetricInputError: the metric's value is None and its note holds the reason).

    ``auc`` is :func:`~sscmort_core.evaluation.auc_with_ci` on the labelled scans; the other
    labelled-scan metrics share its resamples (same seed and patients), and the metrics over
    all predicted scans share one patient bootstrap of their own. ``estimand``
    :data:`~sscmort_core.evaluation.PER_PATIENT` weights every metric (``auc`` included, then
    bootstrapped with the others) so that each patient counts once; what the stored rows
    hold is :data:`~sscmort_core.evaluation.PER_SCAN` (:data:`METRIC_ESTIMANDS`)."""
    if estimand == PER_PATIENT:
        return _evaluate_per_patient(data, n_boot=n_boot, seed=seed, min_events=min_events)
    lab = data.labelled
    y, risk, groups = data.y[lab].astype(np.int8), data.risk[lab], data.patient_id[lab]
    counts = _row_counts(data)
    reason = too_few_events(data.n_labelled, data.n_events, data.horizon_years, min_events)
    if reason is not None:
        rows = tuple(MetricValue(m, None, None, None, note=reason, estimand=METRIC_ESTIMANDS[m],
                                 **counts[m]) for m in METRICS)
        return HorizonMetrics(data.model_id, data.horizon_years, rows)

    values: dict[str, MetricValue] = {}
    try:
        a = auc_with_ci(y, risk, groups, n_boot=n_boot, seed=seed)
        note = None if a.n_boot_dropped == 0 else \
            f"{a.n_boot_dropped} of {n_boot} resamples held one class and were left out"
        values["auc"] = MetricValue("auc", a.auc, a.ci_low, a.ci_high, note=note,
                                    **counts["auc"])
    except MetricInputError as err:
        values["auc"] = MetricValue("auc", None, None, None, note=str(err), **counts["auc"])
    lab_c = patient_clusters(groups)
    values |= _bootstrapped({
        "auc_per_patient": lambda: auc_metric(y, risk, patient_clusters(groups, PER_PATIENT),
                                              name="auc_per_patient"),
        "brier": lambda: brier_metric(y, risk, lab_c),
        "calibration_slope": lambda: calibration_metric(y, risk, lab_c, "slope"),
        "calibration_intercept": lambda: calibration_metric(y, risk, lab_c, "intercept"),
    }, counts, n_boot, seed)
    values |= _bootstrapped(_survival_metrics(data, patient_clusters(data.patient_id)),
                            counts, n_boot, seed)
    return HorizonMetrics(data.model_id, data.horizon_years, tuple(values[m] for m in METRICS))


def _survival_metrics(data: HorizonData, clusters: Any) -> dict[str, Callable[[], Any]]:
    """The metrics over every predicted scan (censored ones enter by their follow-up), each a
    thunk over ``clusters`` (patient clusters of ``data``'s scans, per-scan or per-patient
    weighted) for :func:`_bootstrapped`."""
    t, e, r, h = data.time_years, data.event.astype(np.int8), data.risk, data.horizon_years
    return {
        "c_index": lambda: harrell_c_metric(t, e, r, clusters),
        "td_auc": lambda: td_auc_metric(t, e, r, h, clusters),
        "harrell_c": lambda: harrell_c_metric(t, e, r, clusters, tau=h),
        "uno_c": lambda: uno_c_metric(t, e, r, h, clusters),
        "ipcw_brier": lambda: ipcw_brier_metric(t, e, r, h, clusters),
        "calibration_oe": lambda: observed_expected_metric(t, e, r, h, clusters),
        "ipcw_calibration_slope": lambda: ipcw_calibration_metric(t, e, r, h, clusters,
                                                                  "slope"),
        "ipcw_calibration_intercept":
            lambda: ipcw_calibration_metric(t, e, r, h, clusters, "intercept"),
    }


def _evaluate_per_patient(data: HorizonData, *, n_boot: int, seed: int,
                          min_events: int) -> HorizonMetrics:
    """:func:`evaluate_horizon` with every scan weighted 1 / (its patient's scans used)."""
    lab = data.labelled
    y, risk, groups = data.y[lab].astype(np.int8), data.risk[lab], data.patient_id[lab]
    counts = _row_counts(data)
    reason = too_few_events(data.n_labelled, data.n_events, data.horizon_years, min_events)
    if reason is not None:
        rows = tuple(MetricValue(m, None, None, None, note=reason, estimand=PER_PATIENT,
                                 **counts[m]) for m in METRICS)
        return HorizonMetrics(data.model_id, data.horizon_years, rows)
    lab_c = patient_clusters(groups, PER_PATIENT)
    values = _bootstrapped({
        "auc": lambda: auc_metric(y, risk, lab_c),
        "auc_per_patient": lambda: auc_metric(y, risk, lab_c, name="auc_per_patient"),
        "brier": lambda: brier_metric(y, risk, lab_c),
        "calibration_slope": lambda: calibration_metric(y, risk, lab_c, "slope"),
        "calibration_intercept": lambda: calibration_metric(y, risk, lab_c, "intercept"),
    }, counts, n_boot, seed, PER_PATIENT)
    values |= _bootstrapped(
        _survival_metrics(data, patient_clusters(data.patient_id, PER_PATIENT)),
        counts, n_boot, seed, PER_PATIENT)
    return HorizonMetrics(data.model_id, data.horizon_years, tuple(values[m] for m in METRICS))


def _bootstrapped(makers: dict[str, Callable[[], BatchMetric]],
                  counts: dict[str, dict[str, int]], n_boot: int,
                  seed: int, estimand: str | None = None) -> dict[str, MetricValue]:
    """Rows of the metrics ``makers`` prepare, bootstrapped together; a metric whose inputs
    are unusable gets a NULL row with the reason."""
    ready: list[BatchMetric] = []
    out: dict[str, MetricValue] = {}
    for name, make in makers.items():
        try:
            metric = make()
            if not np.isfinite(metric.point()):
                raise MetricInputError(f"{name} is undefined on these scans")
            ready.append(metric)
        except MetricInputError as err:
            out[name] = MetricValue(name, None, None, None, note=str(err),
                                    estimand=estimand or METRIC_ESTIMANDS[name], **counts[name])
    if ready:
        out |= {ci.metric: _row(ci, n_boot) for ci in bootstrap_cis(ready, n_boot=n_boot,
                                                                      seed=seed)}
    return out


def _row(ci: MetricCI, n_boot: int) -> MetricValue:
    note = None if ci.n_boot_dropped == 0 else \
        f"{ci.n_boot_dropped} of {n_boot} resamples left it undefined and were left out"
    return MetricValue(ci.metric, ci.value, ci.ci_low, ci.ci_high, n_scans=ci.n,
                       n_patients=ci.n_groups, n_events=ci.n_events, note=note,
                       estimand=ci.estimand)


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


def estimand_metrics(store: st_store.Store, model_ids: Sequence[str], estimand: str, *,
                     n_boot: int = 2000, seed: int = 0, min_events: int = DEFAULT_MIN_EVENTS,
                     horizons: Sequence[int] = HORIZONS_YEARS) -> list[HorizonMetrics]:
    """Every metric of ``model_ids`` under ``estimand``, computed and not stored (what the
    Model comparison page shows when switched to per patient; the store holds per scan)."""
    ids = check_model_ids(store, model_ids)
    data = load_horizon_data(store, ids, tuple(horizons))
    return [evaluate_horizon(data[(m, h)], n_boot=n_boot, seed=seed, min_events=min_events,
                             estimand=estimand) for m in ids for h in horizons]


@dataclass(frozen=True)
class PairedTest:
    """Two models compared at one horizon on the labelled scans both predicted.

    ``comparison`` (DeLong, patient-level paired bootstrap and clustered DeLong of
    AUC(a) - AUC(b); its ``p_value`` respects clustering) is None when it cannot be computed;
    ``note`` says why.
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
                 n_boot: int = 2000, seed: int = 0, min_events: int = DEFAULT_MIN_EVENTS,
                 split: str = "oof",
                 data: Mapping[tuple[str, int], HorizonData] | None = None) -> list[PairedTest]:
    """DeLong, patient bootstrap and clustered DeLong of the AUC difference for every pair of
    ``model_ids`` (in the order given: a before b), each on the labelled scans both models
    predicted (in ``split``: the OOF predictions, or a validation design's test part);
    ``data``: those predictions when the caller has loaded them."""
    ids = check_model_ids(store, model_ids)
    if data is None or not all((m, horizon) in data for m in ids):  # else: the caller's load
        data = load_horizon_data(store, ids, (horizon,), split=split)
    return [paired_test(data[(a, horizon)], data[(b, horizon)], n_boot=n_boot, seed=seed,
                        min_events=min_events) for a, b in itertools.combinations(ids, 2)]
