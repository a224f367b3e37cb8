"""Evaluation runs over the store, and the data of the Model comparison page.

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
the reason in ``note``; the run goes on.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sscmort_core import store as st_store
from sscmort_core.errors import MetricInputError, StoreError
from sscmort_core.eval_inputs import (
    DEFAULT_MIN_EVENTS,
    ORACLE_KIND,
    STUDY,
    STUDY_REPORTED_AUCS,
    HorizonData,
    NoPredictionsError,
    ReportedAUC,
    UnknownModelError,
    check_model_ids,
    load_horizon_data,
    model_label,
    reported_aucs,
    too_few_events,
)
from sscmort_core.evaluation import (
    auc,
    auc_with_ci,
    brier_score,
    calibration_curve,
    calibration_intercept_slope,
    compare_models,
    concordance_index,
    decision_curve,
    roc_curve_points,
    time_dependent_auc,
)
from sscmort_core.evaluation.results import PairedComparison
from sscmort_core.labels import HORIZONS_YEARS

ProgressFn = Callable[[str, int, int], None]

METRICS: tuple[str, ...] = ("auc", "brier", "calibration_slope", "calibration_intercept",
                            "c_index", "td_auc")
# Threshold probabilities of the decision curve: mortality risks worth acting on lie low.
DECISION_THRESHOLDS: NDArray[np.float64] = np.round(np.linspace(0.01, 0.60, 60), 2)
DECISION_THRESHOLDS.setflags(write=False)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# computing and storing the metrics
# ---------------------------------------------------------------------------------------------
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
                   progress: ProgressFn = _no_progress) -> EvaluationRun:
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


# ---------------------------------------------------------------------------------------------
# models: choices, what still needs evaluating, the best per horizon
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    """A model the comparison page can offer (it has OOF predictions)."""

    model_id: str
    label: str
    kind: str
    n_predictions: int
    has_metrics: bool


def model_labels(store: st_store.Store) -> dict[str, str]:
    """Readable label of every registered model; a label shared by several models gets the
    model id appended so the pages can tell them apart."""
    models = st_store.models_frame(store)
    labels = {str(r["model_id"]): model_label(r) for _, r in models.iterrows()}
    values = list(labels.values())
    return {m: f"{lab} [{m}]" if values.count(lab) > 1 else lab for m, lab in labels.items()}


def model_choices(store: st_store.Store) -> list[ModelChoice]:
    """Registered models with OOF predictions, sorted by kind with the oracle last."""
    models = st_store.models_frame(store)
    counts = st_store.oof_prediction_summary(store).groupby("model_id")["n_predictions"].sum()
    evaluated = set(st_store.metrics_frame(store)["model_id"])
    labels = model_labels(store)
    out = [ModelChoice(str(r["model_id"]), labels[r["model_id"]], str(r["kind"]),
                       int(counts[r["model_id"]]), r["model_id"] in evaluated)
           for _, r in models.iterrows() if r["model_id"] in counts.index]
    return sorted(out, key=lambda c: (c.kind == ORACLE_KIND, c.kind, c.label))


def data_version(store: st_store.Store, model_ids: Sequence[str]) -> str:
    """A short token that changes when the store file, the models' OOF predictions or
    metrics, or any outcome date change (for app-side caches of the page's computations)."""
    summary = st_store.oof_prediction_summary(store, list(model_ids))
    metrics = st_store.metrics_for_models(store, list(model_ids))
    stamp = metrics["created_at"].max() if len(metrics) else None
    return json.dumps([str(store.path), summary.round(9).to_dict(orient="records"), str(stamp),
                       st_store.outcome_fingerprint(store)], default=str)


@dataclass(frozen=True)
class BestModel:
    """The model with the highest stored AUC at a horizon (the oracle excluded)."""

    horizon_years: int
    model_id: str
    label: str
    kind: str
    auc: float
    ci_low: float | None
    ci_high: float | None
    n_scans: int
    n_events: int


def best_models(store: st_store.Store) -> list[BestModel]:
    """Per horizon with any computed AUC, the best non-oracle model (ties: higher CI low)."""
    rows = st_store.auc_rows_with_models(store)
    rows = rows.loc[rows["kind"] != ORACLE_KIND]
    out = []
    for h, part in rows.groupby("horizon_years", sort=True):
        best = part.sort_values(["value", "ci_low", "model_id"],
                                ascending=[False, False, True]).iloc[0]
        out.append(BestModel(
            horizon_years=int(h), model_id=str(best["model_id"]), label=model_label(best),
            kind=str(best["kind"]), auc=float(best["value"]),
            ci_low=st_store.to_python(best["ci_low"]), ci_high=st_store.to_python(best["ci_high"]),
            n_scans=int(best["n_scans"]), n_events=int(best["n_events"])))
    return out


# ---------------------------------------------------------------------------------------------
# the Model comparison page: curves, paired tests, the metrics table
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CurveSet:
    """Curves of several models at one horizon, long format, for one chart.

    ``frame`` always has columns ``model_id`` and ``model`` (the legend text), then per kind:
    roc: ``fpr``, ``tpr``, ``threshold``; calibration: ``mean_predicted``,
    ``observed_fraction``, ``count``; decision: ``threshold``, ``net_benefit`` (with reference
    rows ``model_id`` None, ``model`` "Treat all" / "Treat none"). ``unavailable`` lists
    (model label, reason) for models drawn nowhere, e.g. too few events at this horizon.
    """

    kind: str
    horizon_years: int
    frame: pd.DataFrame
    unavailable: tuple[tuple[str, str], ...]

    @property
    def empty(self) -> bool:
        return self.frame.empty


@dataclass(frozen=True)
class _CurveInputs:
    """What the curves of one horizon are drawn from, loaded once."""

    horizon: int
    labels: dict[str, str]
    usable: list[HorizonData]  # models with enough events, in the order asked
    unavailable: tuple[tuple[str, str], ...]  # (label, reason)
    metrics: pd.DataFrame  # stored metric rows of the models (AUC CIs for the ROC legend)


def _curve_inputs(store: st_store.Store, model_ids: Sequence[str], horizon: int,
                  min_events: int) -> _CurveInputs:
    ids = check_model_ids(store, model_ids)
    labels = model_labels(store)
    data = load_horizon_data(store, ids, (horizon,))
    usable, unavailable = [], []
    for m in ids:
        d = data[(m, horizon)]
        reason = too_few_events(d.n_labelled, d.n_events, horizon, min_events)
        if reason is None:
            usable.append(d)
        else:
            unavailable.append((labels[m], reason))
    return _CurveInputs(horizon, labels, usable, tuple(unavailable),
                        st_store.metrics_for_models(store, ids))


def _thin_roc(fpr: NDArray[np.float64], tpr: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Keep the corners of an ROC step curve (drops points inside straight runs, as
    ``sklearn.metrics.roc_curve(drop_intermediate=True)``); the area is unchanged."""
    keep = np.ones(len(fpr), dtype=bool)
    if len(fpr) > 2:
        keep[1:-1] = (np.diff(fpr, 2) != 0) | (np.diff(tpr, 2) != 0)
    return keep


def _auc_legend(stored: pd.DataFrame, d: HorizonData, label: str) -> str:
    row = stored.loc[(stored["model_id"] == d.model_id)
                     & (stored["horizon_years"] == d.horizon_years) & (stored["metric"] == "auc")]
    lab = d.labelled
    if len(row) and pd.notna(row["value"].iloc[0]) and pd.notna(row["ci_low"].iloc[0]):
        r = row.iloc[0]
        return f"{label}: AUC {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
    return f"{label}: AUC {auc(d.y[lab], d.risk[lab]):.3f} [CI not computed yet]"


def _roc(inp: _CurveInputs) -> CurveSet:
    parts = []
    for d in inp.usable:
        lab = d.labelled
        roc = roc_curve_points(d.y[lab], d.risk[lab])
        keep = _thin_roc(roc.fpr, roc.tpr)
        parts.append(pd.DataFrame({
            "model_id": d.model_id, "model": _auc_legend(inp.metrics, d, inp.labels[d.model_id]),
            "fpr": roc.fpr[keep], "tpr": roc.tpr[keep],
            "threshold": np.where(np.isinf(roc.thresholds[keep]), np.nan, roc.thresholds[keep])}))
    return CurveSet("roc", inp.horizon, _concat(parts, ["model_id", "model", "fpr", "tpr",
                                                        "threshold"]), inp.unavailable)


def _calibration(inp: _CurveInputs, n_bins: int) -> CurveSet:
    parts, unavailable = [], list(inp.unavailable)
    for d in inp.usable:
        lab = d.labelled
        try:
            rel = calibration_curve(d.y[lab], d.risk[lab], n_bins=n_bins)
        except MetricInputError as err:
            unavailable.append((inp.labels[d.model_id], str(err)))
            continue
        parts.append(pd.DataFrame({
            "model_id": d.model_id, "model": inp.labels[d.model_id],
            "mean_predicted": rel.mean_predicted, "observed_fraction": rel.observed_fraction,
            "count": rel.count}))
    return CurveSet("calibration", inp.horizon, _concat(parts, [
        "model_id", "model", "mean_predicted", "observed_fraction", "count"]), tuple(unavailable))


def _decision(inp: _CurveInputs, thresholds: NDArray[np.float64]) -> CurveSet:
    parts, unavailable = [], list(inp.unavailable)
    for d in inp.usable:
        lab = d.labelled
        try:
            dc = decision_curve(d.y[lab], d.risk[lab], thresholds)
        except MetricInputError as err:
            unavailable.append((inp.labels[d.model_id], str(err)))
            continue
        if not parts:
            for name, nb in (("Treat all", dc.net_benefit_treat_all),
                             ("Treat none", dc.net_benefit_treat_none)):
                parts.append(pd.DataFrame({"model_id": None, "model": name,
                                           "threshold": dc.thresholds, "net_benefit": nb}))
        parts.append(pd.DataFrame({"model_id": d.model_id, "model": inp.labels[d.model_id],
                                   "threshold": dc.thresholds,
                                   "net_benefit": dc.net_benefit_model}))
    return CurveSet("decision", inp.horizon, _concat(parts, [
        "model_id", "model", "threshold", "net_benefit"]), tuple(unavailable))


def roc_frames(store: st_store.Store, model_ids: Sequence[str], horizon: int, *,
               min_events: int = DEFAULT_MIN_EVENTS) -> CurveSet:
    """ROC curves of ``model_ids`` at ``horizon`` on each model's labelled scans; the legend
    carries AUC [95% CI] from the stored metrics (point AUC only if not computed yet)."""
    return _roc(_curve_inputs(store, model_ids, horizon, min_events))


def calibration_frames(store: st_store.Store, model_ids: Sequence[str], horizon: int, *,
                       n_bins: int = 10, min_events: int = DEFAULT_MIN_EVENTS) -> CurveSet:
    """Reliability curves (``n_bins`` quantile bins of predicted risk) at ``horizon``."""
    return _calibration(_curve_inputs(store, model_ids, horizon, min_events), n_bins)


def decision_frames(store: st_store.Store, model_ids: Sequence[str], horizon: int, *,
                    thresholds: NDArray[np.float64] = DECISION_THRESHOLDS,
                    min_events: int = DEFAULT_MIN_EVENTS) -> CurveSet:
    """Net benefit per threshold probability at ``horizon``, with treat-all and treat-none
    computed on the first usable model's labelled scans (the same scans for every model with
    OOF predictions for the whole cohort)."""
    return _decision(_curve_inputs(store, model_ids, horizon, min_events), thresholds)


@dataclass(frozen=True, eq=False)
class HorizonCurves:
    roc: CurveSet
    calibration: CurveSet
    decision: CurveSet


def horizon_curves(store: st_store.Store, model_ids: Sequence[str], horizon: int, *,
                   min_events: int = DEFAULT_MIN_EVENTS) -> HorizonCurves:
    """ROC, calibration and decision curves at ``horizon`` from one load of the predictions
    (what the Model comparison page draws per tab)."""
    inp = _curve_inputs(store, model_ids, horizon, min_events)
    return HorizonCurves(_roc(inp), _calibration(inp, 10), _decision(inp, DECISION_THRESHOLDS))


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


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


def paired_tests_frame(tests: Sequence[PairedTest], labels: dict[str, str]) -> pd.DataFrame:
    """One display row per pair: AUCs, difference with its bootstrap CI, both p-values."""
    rows = []
    for t in tests:
        c = t.comparison
        rows.append({
            "model A": labels.get(t.model_a, t.model_a),
            "model B": labels.get(t.model_b, t.model_b),
            "AUC A": None if c is None else c.delong.auc_a,
            "AUC B": None if c is None else c.delong.auc_b,
            "AUC A - B": None if c is None else c.delong.auc_diff,
            "diff CI low": None if c is None else c.bootstrap.ci_low,
            "diff CI high": None if c is None else c.bootstrap.ci_high,
            "DeLong p": None if c is None else c.delong.p_value,
            "bootstrap p": None if c is None else c.bootstrap.p_value,
            "scans": t.n_scans, "patients": t.n_patients, "events": t.n_events,
            "note": t.note or ""})
    return pd.DataFrame(rows)


TABLE_COLUMNS: tuple[str, ...] = (
    "horizon (years)", "model", "kind", "model_id", "AUC", "AUC CI low", "AUC CI high",
    "Brier", "calibration slope", "calibration intercept", "C-index", "time-dependent AUC",
    "scans", "patients", "events", "note")
_TABLE_METRICS = {"auc": "AUC", "brier": "Brier", "calibration_slope": "calibration slope",
                  "calibration_intercept": "calibration intercept", "c_index": "C-index",
                  "td_auc": "time-dependent AUC"}


def metrics_table(store: st_store.Store, model_ids: Sequence[str], *,
                  horizons: Sequence[int] = HORIZONS_YEARS,
                  include_reference: bool = True) -> pd.DataFrame:
    """Stored metrics of ``model_ids`` as one row per horizon and model (columns
    :data:`TABLE_COLUMNS`; scans/patients/events are those of the AUC row), then the study's
    reported AUCs as rows of kind "reported". Models not evaluated yet get a row whose note
    says so."""
    ids = check_model_ids(store, model_ids)
    labels = model_labels(store)
    kinds = st_store.models_frame(store).set_index("model_id")["kind"].to_dict()
    stored = st_store.metrics_for_models(store, list(ids))
    rows = []
    for h in horizons:
        for m in ids:
            part = stored.loc[(stored["model_id"] == m) & (stored["horizon_years"] == h)]
            rows.append(_table_row(h, m, labels[m], kinds[m], part.set_index("metric")))
        if include_reference:
            rows.extend(_reference_row(r, h) for r in reported_aucs(h))
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _table_row(h: int, model_id: str, label: str, kind: str,
               part: pd.DataFrame) -> dict[str, object]:
    row: dict[str, object] = {"horizon (years)": h, "model": label, "kind": kind,
                              "model_id": model_id}
    if part.empty:
        return row | {"note": "not evaluated yet"}
    for metric, column in _TABLE_METRICS.items():
        row[column] = st_store.to_python(part["value"].get(metric, np.nan))
    auc_row = part.loc["auc"] if "auc" in part.index else None
    if auc_row is not None:
        row |= {"AUC CI low": st_store.to_python(auc_row["ci_low"]),
                "AUC CI high": st_store.to_python(auc_row["ci_high"]),
                "scans": st_store.to_python(auc_row["n_scans"]),
                "patients": st_store.to_python(auc_row["n_patients"]),
                "events": st_store.to_python(auc_row["n_events"])}
    notes = [str(n) for n in dict.fromkeys(part["note"].dropna())]
    row["note"] = "; ".join(notes)
    return row


def _reference_row(r: ReportedAUC, h: int) -> dict[str, object]:
    note = (f"reported range {r.auc_low:.3f}-{r.auc_high:.3f} over radiomics models and "
            "horizons" if r.is_range else "reported point estimate") + f"; {STUDY}"
    return {"horizon (years)": h, "model": r.label, "kind": "reported", "model_id": None,
            "AUC": None if r.is_range else r.auc_low, "scans": r.n_scans,
            "events": r.n_events, "note": note}


__all__ = [
    "DECISION_THRESHOLDS", "DEFAULT_MIN_EVENTS", "METRICS", "ORACLE_KIND", "STUDY",
    "STUDY_REPORTED_AUCS", "TABLE_COLUMNS", "BestModel", "CurveSet", "EvaluationRun",
    "HorizonData", "HorizonMetrics", "MetricValue", "ModelChoice", "NoPredictionsError",
    "PairedTest", "ReportedAUC", "UnknownModelError", "best_models", "calibration_frames",
    "check_model_ids", "data_version", "decision_frames", "evaluate_horizon",
    "HorizonCurves", "horizon_curves",
    "load_horizon_data", "metrics_rows", "metrics_table", "model_choices", "model_label",
    "model_labels", "paired_test", "paired_tests", "paired_tests_frame",
    "reported_aucs", "roc_frames", "run_evaluation", "too_few_events",
]
