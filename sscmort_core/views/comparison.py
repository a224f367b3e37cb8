"""Page data of the Model comparison page and the Overview's best model: which models can be
compared, their curves per horizon, the paired tests and the metrics table.

Reads the metrics :func:`sscmort_core.pipeline.evaluate.run_evaluation` stored, and the OOF
predictions with their labels (:func:`sscmort_core.pipeline.eval_data.load_horizon_data`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sscmort_core import store as st_store
from sscmort_core.errors import MetricInputError
from sscmort_core.evaluation import (
    PER_PATIENT,
    PER_SCAN,
    auc,
    calibration_curve,
    decision_curve,
    ipcw_decision_curve,
    km_calibration_curve,
    roc_curve_points,
)
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline.designs import CV_SPLIT, design_auc_rows, design_metrics
from sscmort_core.pipeline.eval_data import (
    DEFAULT_MIN_EVENTS,
    ORACLE_KIND,
    HorizonData,
    check_model_ids,
    load_horizon_data,
    too_few_events,
)
from sscmort_core.pipeline.evaluate import (
    METRIC_ESTIMANDS,
    PairedTest,
    estimand_metrics,
    metrics_rows,
)
from sscmort_core.pipeline.staleness import model_staleness
from sscmort_core.views.names import model_label, model_labels
from sscmort_core.views.study import STUDY, ReportedAUC, reported_aucs

# Threshold probabilities of the decision curve: mortality risks worth acting on lie low.
DECISION_THRESHOLDS: NDArray[np.float64] = np.round(np.linspace(0.01, 0.60, 60), 2)


@dataclass(frozen=True)
class ModelChoice:
    """A model the comparison page can offer (it has OOF predictions)."""

    model_id: str
    label: str
    kind: str
    has_metrics: bool
    stale: bool = False  # outcomes changed since it was trained (pipeline.staleness)

    @property
    def shown(self) -> str:
        """The label with the stale mark, for pickers."""
        return f"{self.label} [stale]" if self.stale else self.label


def model_choices(store: st_store.Store) -> list[ModelChoice]:
    """Registered models with OOF predictions, sorted by kind with the oracle last."""
    models = st_store.models_frame(store)
    counts = st_store.oof_prediction_summary(store).groupby("model_id")["n_predictions"].sum()
    evaluated = set(st_store.metrics_frame(store)["model_id"])
    labels = model_labels(store)
    status = model_staleness(store)
    out = [ModelChoice(str(r["model_id"]), labels[r["model_id"]], str(r["kind"]),
                       r["model_id"] in evaluated,
                       r["model_id"] in status and status[r["model_id"]].stale)
           for _, r in models.iterrows() if r["model_id"] in counts.index]
    return sorted(out, key=lambda c: (c.kind == ORACLE_KIND, c.kind, c.label))


def models_version(store: st_store.Store) -> str:
    """A token that changes when a model is registered, replaced or removed, when any OOF
    prediction or metric changes, or when an outcome date changes: what app-side caches of
    :func:`model_choices` (whose staleness check relabels every model's training scans) are
    keyed on."""
    models = store.query_df("SELECT model_id, created_at FROM models ORDER BY model_id")
    summary = st_store.oof_prediction_summary(store).round(9)
    stamp = store.cursor().execute("SELECT max(created_at), count(*) FROM metrics").fetchone()
    return json.dumps([str(store.path), models.to_dict(orient="records"),
                       summary.to_dict(orient="records"), list(stamp),
                       st_store.outcome_fingerprint(store)], default=str)


def data_versions(store: st_store.Store, model_ids: Sequence[str]) -> dict[str, str]:
    """Per model, a short token that changes when the store file, that model's OOF or
    validation-design predictions, metrics or shown label, or any outcome date change: what
    app-side caches of one model's curves and metric rows are keyed on (two queries for all
    the models)."""
    ids = list(model_ids)
    if not ids:
        return {}
    summary = st_store.prediction_splits(store, ids).round(9)  # OOF and design splits
    stamps = st_store.metrics_for_models(store, ids).groupby("model_id")["created_at"].max()
    labels = model_labels(store)
    outcomes = st_store.outcome_fingerprint(store)
    return {m: json.dumps([str(store.path), m, labels.get(m),
                           summary.loc[summary["model_id"] == m].to_dict(orient="records"),
                           str(stamps.get(m)), outcomes], default=str) for m in ids}


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
    n_candidates: int = 1  # evaluated non-oracle models it was picked from

    @property
    def selection(self) -> str:
        """How it was chosen, for the page: the largest of n OOF AUCs, uncorrected."""
        return (f"highest OOF AUC (per scan, patient-grouped CV) of "
                f"{self.n_candidates} evaluated model(s), the oracle left out; picking the "
                "maximum is optimistic (not corrected for the selection)")


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
            n_scans=int(best["n_scans"]), n_events=int(best["n_events"]),
            n_candidates=int(part.loc[part["value"].notna(), "model_id"].nunique())))
    return out


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
    metrics: pd.DataFrame  # metric rows with the AUC CIs of the ROC legend: stored, or
    # computed on a validation design's test part


# (model_id, horizon) -> labelled predictions, from load_horizon_data: a caller that holds
# them (e.g. a page's cache) passes them in, and they are not read again.
Loaded = Mapping[tuple[str, int], HorizonData]


def _loaded(store: st_store.Store, ids: Sequence[str], horizon: int, split: str,
            data: Loaded | None) -> Loaded:
    if data is not None and all((m, horizon) in data for m in ids):
        return data
    return load_horizon_data(store, ids, (horizon,), split=split)


def _curve_inputs(store: st_store.Store, model_ids: Sequence[str], horizon: int,
                  min_events: int, split: str = CV_SPLIT,
                  data: Loaded | None = None) -> _CurveInputs:
    ids = check_model_ids(store, model_ids)
    labels = model_labels(store)
    data = _loaded(store, ids, horizon, split, data)
    usable, unavailable = [], []
    for m in ids:
        d = data[(m, horizon)]
        reason = too_few_events(d.n_labelled, d.n_events, horizon, min_events)
        if reason is None:
            usable.append(d)
        else:
            unavailable.append((labels[m], reason))
    return _CurveInputs(horizon, labels, usable, tuple(unavailable),
                        st_store.metrics_for_models(store, ids) if split == CV_SPLIT
                        else design_auc_rows(store, ids, split, horizons=(horizon,)))


def _thin_roc(fpr: NDArray[np.float64], tpr: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Keep the corners of an ROC step curve (drops points inside straight runs, as
    ``sklearn.metrics.roc_curve(drop_intermediate=True)``); the area is unchanged."""
    keep = np.ones(len(fpr), dtype=bool)
    if len(fpr) > 2:
        keep[1:-1] = (np.diff(fpr, 2) != 0) | (np.diff(tpr, 2) != 0)
    return keep


def _auc_legend(stored: pd.DataFrame, d: HorizonData, label: str) -> str:
    lab = d.labelled
    row = stored.loc[(stored["model_id"] == d.model_id)
                     & (stored["horizon_years"] == d.horizon_years) & (stored["metric"] == "auc")]
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
    """Net benefit on the labelled scans (censored ones left out)."""
    return _net_benefit_set("decision", inp, lambda d: decision_curve(
        d.y[d.labelled], d.risk[d.labelled], thresholds))


def _net_benefit_set(kind: str, inp: _CurveInputs, curve_of: Callable[[Any], Any]) -> CurveSet:
    """Treat all / treat none (from the first usable model's curve), then one curve per model;
    ``curve_of(data)`` is a decision curve or raises MetricInputError (that model is listed as
    unavailable)."""
    parts, unavailable = [], list(inp.unavailable)
    for d in inp.usable:
        try:
            dc = curve_of(d)
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
    return CurveSet(kind, inp.horizon, _concat(parts, [
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


def _km_calibration(inp: _CurveInputs, n_bins: int) -> CurveSet:
    """Observed risk per risk group as 1 - Kaplan-Meier at the horizon, on every predicted
    scan (censored ones included); ``observed_fraction`` holds it so the calibration chart
    draws it, ``observed_ipcw`` the IPCW estimate beside it."""
    parts, unavailable = [], list(inp.unavailable)
    for d in inp.usable:
        try:
            cur = km_calibration_curve(d.time_years, d.event.astype(int), d.risk,
                                       d.horizon_years, n_bins=n_bins)
        except MetricInputError as err:
            unavailable.append((inp.labels[d.model_id], str(err)))
            continue
        parts.append(pd.DataFrame({
            "model_id": d.model_id, "model": inp.labels[d.model_id],
            "mean_predicted": cur.mean_predicted, "observed_fraction": cur.observed_km,
            "observed_ipcw": cur.observed_ipcw, "count": cur.count, "n_events": cur.n_events,
            "n_censored": cur.n_censored}))
    return CurveSet("km_calibration", inp.horizon, _concat(parts, [
        "model_id", "model", "mean_predicted", "observed_fraction", "observed_ipcw", "count",
        "n_events", "n_censored"]), tuple(unavailable))


def _ipcw_decision(inp: _CurveInputs, thresholds: NDArray[np.float64]) -> CurveSet:
    """Net benefit with IPCW on every predicted scan; treat-all computed the same way on the
    first usable model's scans."""
    return _net_benefit_set("ipcw_decision", inp, lambda d: ipcw_decision_curve(
        d.time_years, d.event.astype(int), d.risk, d.horizon_years, thresholds))


# Split of the tabular models' OOF risks before recalibration (tabular.train writes it).
UNCALIBRATED_SPLIT = "oof_uncalibrated"


def recalibration_frames(store: st_store.Store, model_ids: Sequence[str], horizon: int, *,
                         n_bins: int = 10, split: str = CV_SPLIT, data: Loaded | None = None,
                         uncalibrated: Loaded | None = None) -> CurveSet:
    """Reliability (observed = 1 - Kaplan-Meier per risk group, every predicted scan) of each
    recalibrated model before and after its recalibration at ``horizon``; models without
    risks before recalibration (e.g. deep models) are listed in ``unavailable``. Only the
    cross-validation keeps risks before recalibration: under a design ``split`` it is empty.
    ``data`` / ``uncalibrated``: the OOF predictions after / before recalibration, when the
    caller has loaded them."""
    ids = check_model_ids(store, model_ids)
    labels = model_labels(store)
    if split != CV_SPLIT:
        return CurveSet("recalibration", horizon, _concat([], []),
                        tuple((labels[m], "before / after: cross-validation only") for m in ids))
    before = _loaded(store, ids, horizon, UNCALIBRATED_SPLIT, uncalibrated)
    has = [m for m in ids if len(before[(m, horizon)].risk)]
    missing = tuple((labels[m], "not recalibrated") for m in ids if m not in has)
    if not has:
        return CurveSet("recalibration", horizon, _concat([], []), missing)
    after = _loaded(store, has, horizon, CV_SPLIT, data)
    parts, unavailable = [], list(missing)
    for m in has:
        for name, d in (("before", before[(m, horizon)]), ("after", after[(m, horizon)])):
            try:
                cur = km_calibration_curve(d.time_years, d.event.astype(int), d.risk, horizon,
                                           n_bins=n_bins)
            except MetricInputError as err:
                unavailable.append((labels[m], str(err)))
                break
            parts.append(pd.DataFrame({
                "model_id": m, "model": f"{labels[m]}: {name} recalibration",
                "mean_predicted": cur.mean_predicted, "observed_fraction": cur.observed_km,
                "count": cur.count}))
    return CurveSet("recalibration", horizon, _concat(parts, [
        "model_id", "model", "mean_predicted", "observed_fraction", "count"]),
        tuple(unavailable))


@dataclass(frozen=True, eq=False)
class HorizonCurves:
    """Curves of one horizon. ``calibration`` and ``decision`` use the labelled scans only
    (complete cases); ``km_calibration`` and ``ipcw_decision`` are their censoring-aware
    counterparts on every predicted scan (frames laid out alike, so the same charts draw
    them)."""

    roc: CurveSet
    calibration: CurveSet
    decision: CurveSet
    km_calibration: CurveSet | None = None
    ipcw_decision: CurveSet | None = None


def horizon_curves(store: st_store.Store, model_ids: Sequence[str], horizon: int, *,
                   min_events: int = DEFAULT_MIN_EVENTS, split: str = CV_SPLIT,
                   data: Loaded | None = None) -> HorizonCurves:
    """ROC, calibration and decision curves at ``horizon`` (complete-case and
    censoring-aware) from one load of the predictions of ``split`` (the OOF ones, or a
    validation design's test part): what the Model comparison page draws per tab. ``data``:
    those predictions when the caller has loaded them (:data:`Loaded`)."""
    inp = _curve_inputs(store, model_ids, horizon, min_events, split, data)
    return HorizonCurves(_roc(inp), _calibration(inp, 10), _decision(inp, DECISION_THRESHOLDS),
                         _km_calibration(inp, 10), _ipcw_decision(inp, DECISION_THRESHOLDS))


def combine_sets(sets: Sequence[CurveSet]) -> CurveSet:
    """One chart's curves of several models from each model's own set (in the order given):
    their frames one after the other, the treat-all / treat-none rows of a decision curve
    kept from the first set that has them (as the all-models functions do: from the first
    usable model), and every set's unavailable models."""
    if not sets:
        raise ValueError("combine_sets needs at least one model's curves")
    frames, reference = [], False
    for s in sets:
        f = s.frame
        if "net_benefit" in f.columns:
            ref = f["model_id"].isna()
            if reference:
                f = f.loc[~ref]
            reference = reference or bool(ref.any())
        if len(f):
            frames.append(f)
    frame = (pd.concat(frames, ignore_index=True) if frames
             else sets[0].frame.iloc[0:0].reset_index(drop=True))
    return CurveSet(sets[0].kind, sets[0].horizon_years, frame,
                    tuple(u for s in sets for u in s.unavailable))


def combine_curves(parts: Sequence[HorizonCurves]) -> HorizonCurves:
    """The curves of several models from the curves of each alone (in the order given): what
    :func:`horizon_curves` gives for all of them at once, so a page can cache one model's
    curves and adding or removing a model computes only that model's (issue 17)."""
    if not parts:
        raise ValueError("combine_curves needs at least one model's curves")
    out = {}
    for field in ("roc", "calibration", "decision", "km_calibration", "ipcw_decision"):
        sets = [getattr(p, field) for p in parts if getattr(p, field) is not None]
        out[field] = combine_sets(sets) if sets else None
    return HorizonCurves(**out)


def _concat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def paired_tests_frame(tests: Sequence[PairedTest], labels: dict[str, str]) -> pd.DataFrame:
    """One display row per pair: AUCs, difference with its patient-bootstrap CI and the
    p-values. "p" is the one to report: the clustered DeLong test (Obuchowski 1997; the
    patient bootstrap's where it cannot be computed), named in "p method"; both respect that
    scans cluster in patients, while "DeLong p" treats scans as independent."""
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
            "p": None if c is None else c.p_value,
            "p method": None if c is None else c.p_value_method,
            "clustered DeLong p": None if c is None or c.clustered is None
            else c.clustered.p_value,
            "DeLong p": None if c is None else c.delong.p_value,
            "bootstrap p": None if c is None else c.bootstrap.p_value,
            "estimand": PER_SCAN,
            "scans": t.n_scans, "patients": t.n_patients, "events": t.n_events,
            "note": t.note or ""})
    return pd.DataFrame(rows)


CLINICAL_KINDS: tuple[str, ...] = ("goh", "sadl", "clinical")  # references without imaging
IMAGING_KINDS: tuple[str, ...] = ("radiomics", "qct", "deep", "ensemble", "clinical_qct",
                                  "longitudinal")


def best_clinical(store: st_store.Store, model_ids: Sequence[str], horizon: int) -> str | None:
    """The clinical reference model (kind in :data:`CLINICAL_KINDS`) among ``model_ids`` with
    the highest stored AUC at ``horizon`` (None: none chosen or none evaluated)."""
    kinds = st_store.models_frame(store).set_index("model_id")["kind"].to_dict()
    ids = [m for m in model_ids if kinds.get(m) in CLINICAL_KINDS]
    stored = st_store.metrics_for_models(store, ids) if ids else pd.DataFrame()
    if stored.empty:
        return None
    auc_rows = stored.loc[(stored["metric"] == "auc") & (stored["horizon_years"] == horizon)
                          & stored["value"].notna()]
    if auc_rows.empty:
        return None
    return str(auc_rows.sort_values(["value", "model_id"], ascending=[False, True])
               .iloc[0]["model_id"])


def added_value_frame(tests: Sequence[PairedTest], labels: dict[str, str],
                      kinds: dict[str, str], reference: str) -> pd.DataFrame:
    """Each imaging model's AUC minus the ``reference`` clinical model's, from the paired
    tests already computed (patient-bootstrap CI, clustered p), one row per imaging model."""
    rows = []
    for t in tests:
        if reference not in (t.model_a, t.model_b):
            continue
        other, sign = (t.model_b, -1.0) if t.model_a == reference else (t.model_a, 1.0)
        if kinds.get(other) not in IMAGING_KINDS or t.comparison is None:
            continue
        c = t.comparison
        lo, hi = sorted((sign * c.bootstrap.ci_low, sign * c.bootstrap.ci_high))
        rows.append({"imaging model": labels.get(other, other),
                     "added AUC over " + labels.get(reference, reference):
                     sign * c.delong.auc_diff, "CI low": lo, "CI high": hi,
                     "p (clustered)": c.p_value, "p method": c.p_value_method,
                     "scans": t.n_scans, "patients": t.n_patients, "events": t.n_events,
                     "estimand": PER_SCAN})
    return pd.DataFrame(rows)


# Stored metric -> column of the metrics table (each with "<column> CI low" / "CI high").
_TABLE_METRICS: dict[str, str] = {
    "auc": "AUC", "brier": "Brier", "calibration_slope": "calibration slope",
    "calibration_intercept": "calibration intercept", "c_index": "C-index",
    "td_auc": "time-dependent AUC", "auc_per_patient": "AUC per patient",
    "harrell_c": "Harrell's C to horizon", "uno_c": "Uno's C to horizon",
    "ipcw_brier": "IPCW Brier", "calibration_oe": "observed / expected",
    "ipcw_calibration_slope": "IPCW calibration slope",
    "ipcw_calibration_intercept": "IPCW calibration intercept"}
# How censored scans enter each metric (the long table's "censoring" column).
METRIC_CENSORING: dict[str, str] = {
    **dict.fromkeys(("auc", "auc_per_patient", "brier", "calibration_slope",
                     "calibration_intercept"), "censored scans left out (complete cases)"),
    "c_index": "all scans; Harrell's C depends on the censoring",
    "harrell_c": "all scans, deaths before the horizon; depends on the censoring",
    **dict.fromkeys(("uno_c", "td_auc", "ipcw_brier", "ipcw_calibration_slope",
                     "ipcw_calibration_intercept"),
                    "all scans, inverse probability of censoring weights"),
    "calibration_oe": "all scans, observed = 1 - Kaplan-Meier"}
_ESTIMAND_NOTE = f"{PER_SCAN}; AUC per patient: {PER_PATIENT}"
TABLE_COLUMNS: tuple[str, ...] = (
    "horizon (years)", "model", "kind", "model_id",
    *[c for label in _TABLE_METRICS.values() for c in (label, f"{label} CI low",
                                                         f"{label} CI high")],
    "estimand", "scans", "patients", "events", "note")
LONG_COLUMNS: tuple[str, ...] = (
    "horizon (years)", "model", "kind", "model_id", "metric", "value", "CI low", "CI high",
    "estimand", "censoring", "scans", "patients", "events", "note")


def metrics_table(store: st_store.Store, model_ids: Sequence[str], *,
                  horizons: Sequence[int] = HORIZONS_YEARS, include_reference: bool = True,
                  split: str = CV_SPLIT, n_boot: int = 2000) -> pd.DataFrame:
    """Stored metrics of ``model_ids`` as one row per horizon and model (columns
    :data:`TABLE_COLUMNS`; scans/patients/events are those of the AUC row), then the study's
    reported AUCs as rows of kind "reported". Models not evaluated yet get a row whose note
    says so. Under a validation design ``split`` only the AUC [CI] is filled, computed on the
    test part (``n_boot`` resamples; the long table has every metric)."""
    ids = check_model_ids(store, model_ids)
    labels = model_labels(store)
    kinds = st_store.models_frame(store).set_index("model_id")["kind"].to_dict()
    stored = st_store.metrics_for_models(store, list(ids)) if split == CV_SPLIT else \
        design_auc_rows(store, ids, split, n_boot=n_boot, horizons=horizons)
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
        for suffix, field in (("", "value"), (" CI low", "ci_low"), (" CI high", "ci_high")):
            row[column + suffix] = st_store.to_python(part[field].get(metric, np.nan))
    row["estimand"] = _ESTIMAND_NOTE
    auc_row = part.loc["auc"] if "auc" in part.index else None
    if auc_row is not None:
        row |= {"scans": st_store.to_python(auc_row["n_scans"]),
                "patients": st_store.to_python(auc_row["n_patients"]),
                "events": st_store.to_python(auc_row["n_events"])}
    notes = [str(n) for n in dict.fromkeys(part["note"].dropna())]
    row["note"] = "; ".join(notes)
    return row


def metrics_long(store: st_store.Store, model_ids: Sequence[str], *,
                 horizons: Sequence[int] = HORIZONS_YEARS, estimand: str = PER_SCAN,
                 n_boot: int = 2000, include_reference: bool = False,
                 split: str = CV_SPLIT) -> pd.DataFrame:
    """Metrics of ``model_ids`` as one row per horizon, model and metric (columns
    :data:`LONG_COLUMNS`): value with its patient-bootstrap CI, the estimand, how censored
    scans enter, and the scans, patients and events that metric used.

    :data:`PER_SCAN` reads the stored rows; :data:`PER_PATIENT` computes every metric with
    each patient weighted equally (:func:`~sscmort_core.pipeline.evaluate.estimand_metrics`,
    ``n_boot`` resamples; not stored). ``include_reference`` appends the study's reported AUCs
    as rows of kind "reported". Under a validation design ``split`` every metric is computed
    on its test part (:func:`~sscmort_core.pipeline.designs.design_metrics`, not stored)."""
    ids = check_model_ids(store, model_ids)
    labels = model_labels(store)
    kinds = st_store.models_frame(store).set_index("model_id")["kind"].to_dict()
    if split != CV_SPLIT:
        stored = metrics_rows(design_metrics(store, ids, split, estimand=estimand,
                                             n_boot=n_boot, horizons=horizons))
    elif estimand == PER_SCAN:
        stored = st_store.metrics_for_models(store, list(ids))
    else:
        stored = metrics_rows(estimand_metrics(store, ids, estimand, n_boot=n_boot,
                                               horizons=horizons))
    stored = stored.loc[stored["horizon_years"].isin(list(horizons))
                        & stored["metric"].isin(list(_TABLE_METRICS))]
    order = {m: i for i, m in enumerate(_TABLE_METRICS)}
    rows = [{"horizon (years)": int(r["horizon_years"]), "model": labels[r["model_id"]],
             "kind": kinds[r["model_id"]], "model_id": r["model_id"],
             "metric": _TABLE_METRICS[r["metric"]],
             "value": st_store.to_python(r["value"]), "CI low": st_store.to_python(r["ci_low"]),
             "CI high": st_store.to_python(r["ci_high"]),
             "estimand": METRIC_ESTIMANDS.get(r["metric"], PER_SCAN)
             if estimand == PER_SCAN else estimand,
             "censoring": METRIC_CENSORING[r["metric"]],
             "scans": int(r["n_scans"]), "patients": int(r["n_patients"]),
             "events": int(r["n_events"]), "note": r["note"] if pd.notna(r["note"]) else "",
             "_order": (int(r["horizon_years"]), ids.index(r["model_id"]),
                        order[r["metric"]])}
            for _, r in stored.iterrows()]
    if include_reference:
        rows += [_reference_long(r, h, i) for h in horizons
                 for i, r in enumerate(reported_aucs(h))]
    frame = pd.DataFrame(rows, columns=[*LONG_COLUMNS, "_order"])
    return _numeric(frame.sort_values("_order", kind="mergesort").drop(columns="_order")
                    .reset_index(drop=True))


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    """Value and CI columns as floats (a metric not computable is NaN, an empty cell on the
    page, never the text "None")."""
    return frame.astype({c: float for c in ("value", "CI low", "CI high")})


def combine_long(parts: Sequence[pd.DataFrame], *, include_reference: bool = False,
                 horizons: Sequence[int] = HORIZONS_YEARS) -> pd.DataFrame:
    """:func:`metrics_long` of several models from each model's own frame (in the order
    given, each from ``metrics_long(store, [model_id], include_reference=False)``): the same
    rows in the same order, so a page can cache one model's rows (issue 17)."""
    frames = [p.assign(_pos=i) for i, p in enumerate(parts) if len(p)]
    if include_reference:
        ref = pd.DataFrame([_reference_long(r, h, i) for h in horizons
                            for i, r in enumerate(reported_aucs(h))])
        frames.append(ref.assign(_pos=[o[1] for o in ref.pop("_order")]))
    if not frames:
        return pd.DataFrame(columns=list(LONG_COLUMNS))
    frame = pd.concat(frames, ignore_index=True).reindex(columns=[*LONG_COLUMNS, "_pos"])
    return _numeric(frame.sort_values(["horizon (years)", "_pos"], kind="mergesort")
                    .drop(columns="_pos").reset_index(drop=True))


def _reference_long(r: ReportedAUC, h: int, i: int) -> dict[str, object]:
    wide = _reference_row(r, h)
    return {"horizon (years)": h, "model": r.label, "kind": "reported", "model_id": None,
            "metric": "AUC", "value": wide["AUC"], "estimand": PER_SCAN,
            "censoring": "reported by the study", "scans": r.n_scans, "events": r.n_events,
            "note": wide["note"], "_order": (h, 10_000 + i, 0)}


def _reference_row(r: ReportedAUC, h: int) -> dict[str, object]:
    note = (f"reported range {r.auc_low:.3f}-{r.auc_high:.3f} over radiomics models and "
            "horizons" if r.is_range else "reported point estimate") + f"; {STUDY}"
    return {"horizon (years)": h, "model": r.label, "kind": "reported", "model_id": None,
            "AUC": None if r.is_range else r.auc_low, "scans": r.n_scans,
            "events": r.n_events, "note": note}
