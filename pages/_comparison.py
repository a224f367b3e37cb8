"""App-side page data of Model comparison (issue 17): the page's computations cached per
model, so adding or removing a model computes only that model's curves, metric rows and pairs,
and a rerun on cached data only reads each model's data version (two queries); plus the
tables' column layout (fits 1280 px without sideways scrolling, issue 14)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import streamlit as st

from pages._shared import arrow_spec
from sscmort_core import store as st_store
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline import evaluate
from sscmort_core.pipeline.eval_data import load_horizon_data
from sscmort_core.views import comparison as ev
from sscmort_core.views import eval_charts as charts_eval
from sscmort_core.views import study


@st.cache_data(show_spinner=False, max_entries=256)
def _loaded_of(_store: st_store.Store, version: str, model_id: str, split: str) -> ev.Loaded:
    """One model's labelled predictions of ``split`` at every horizon, read once: the curves,
    recalibration and pairs below are computed from it, not from a read each."""
    return load_horizon_data(_store, [model_id], HORIZONS_YEARS, split=split)


@st.cache_data(show_spinner=False, max_entries=512)
def _pair(_store: st_store.Store, version_a: str, version_b: str, a: str, b: str,
          horizon: int, boot: int, split: str, _data: ev.Loaded) -> evaluate.PairedTest:
    return evaluate.paired_tests(_store, [a, b], horizon, n_boot=boot, split=split,
                                 data=_data)[0]


@st.cache_data(show_spinner=False, max_entries=512)
def _curves_of(_store: st_store.Store, version: str, model_id: str,
               horizon: int, split: str, _data: ev.Loaded) -> ev.HorizonCurves:
    return ev.horizon_curves(_store, [model_id], horizon, split=split, data=_data)


@st.cache_data(show_spinner=False, max_entries=256)
def _long_of(_store: st_store.Store, version: str, model_id: str, estimand: str,
             boot: int, split: str) -> pd.DataFrame:
    return ev.metrics_long(_store, [model_id], estimand=estimand, n_boot=boot, split=split)


@st.cache_data(show_spinner=False, max_entries=512)
def _recal_of(_store: st_store.Store, version: str, model_id: str, horizon: int, split: str,
              _data: ev.Loaded, _uncalibrated: ev.Loaded | None) -> ev.CurveSet:
    return ev.recalibration_frames(_store, [model_id], horizon, split=split, data=_data,
                                   uncalibrated=_uncalibrated)


@dataclass(frozen=True)
class TabCharts:
    """What one horizon tab draws before its tests: the models without a curve there (label,
    reason) and its charts stacked in one Vega-Lite spec, data as Arrow bytes (None without a
    ROC curve)."""

    unavailable: tuple[tuple[str, str], ...]
    spec: dict | None


@dataclass(frozen=True)
class TabTests:
    """One horizon tab's paired tests table, the best clinical reference among the models
    (None without one) and the added value over it."""

    paired: pd.DataFrame
    reference: str | None
    added_value: pd.DataFrame | None

    def csv(self) -> str:
        """Every column of the paired tests as CSV (the page shows ten: the clustered DeLong
        and bootstrap p, estimand, scans, patients, events and notes are here too)."""
        return self.paired.to_csv(index=False)


@st.cache_data(show_spinner="Curves...", max_entries=64)
def _tab_charts(_page: PageData, key: tuple[str, ...], ids: tuple[str, ...], horizon: int,
                colours: tuple[tuple[str, str], ...], split: str) -> TabCharts:
    """A horizon tab's charts, one cache entry per (models' versions, horizon, colours,
    design): a rerun on cached data is one look-up, not one per model and piece (issue 13).
    Built from the per-model caches, so a new model set computes only the new model's
    curves."""
    curves = _page.curves(ids, horizon)
    if curves.roc.empty:
        return TabCharts(tuple(curves.roc.unavailable), None)
    recal = _page.recal(ids, horizon)
    return TabCharts(tuple(curves.roc.unavailable), arrow_spec(charts_eval.chart_spec(
        charts_eval.horizon_stack(horizon_charts(curves, recal, horizon, dict(colours))))))


@st.cache_data(show_spinner="Paired tests (clustered DeLong and patient bootstrap)...",
               max_entries=64)
def _tab_tests(_page: PageData, key: tuple[str, ...], ids: tuple[str, ...], horizon: int,
               boot: int, split: str, labels: tuple[tuple[str, str], ...],
               kinds: tuple[tuple[str, str], ...]) -> TabTests:
    """A horizon tab's tests (one cache entry per models' versions, horizon, resamples and
    design; the pairs themselves are cached per pair)."""
    tests = _page.paired(ids, horizon, boot)
    names = dict(labels)
    ref = ev.best_clinical(_page.store, list(ids), horizon)
    return TabTests(ev.paired_tests_frame(tests, names), ref,
                    None if ref is None else ev.added_value_frame(tests, names, dict(kinds),
                                                                  ref))


@st.cache_data(show_spinner="Metrics...", max_entries=64)
def _long_all(_page: PageData, key: tuple[str, ...], ids: tuple[str, ...], estimand: str,
              boot: int, split: str) -> pd.DataFrame:
    return ev.combine_long([_long_of(_page.store, _page.versions[m], m, estimand, boot, split)
                            for m in ids], include_reference=True)


def horizon_charts(curves: ev.HorizonCurves, recal: ev.CurveSet, horizon: int,
                   colours: dict[str, str]) -> list:
    km, dec = curves.km_calibration, curves.ipcw_decision
    return charts_eval.horizon_charts(
        curves.roc.frame, None if km is None else km.frame, None if dec is None else dec.frame,
        recal.frame, horizon, study.reported_aucs(horizon), colours=colours)


@st.cache_data(show_spinner=False, max_entries=8)
def _choices(_store: st_store.Store, version: str) -> list[ev.ModelChoice]:
    return ev.model_choices(_store)


def model_choices(store: st_store.Store) -> list[ev.ModelChoice]:
    """:func:`sscmort_core.views.comparison.model_choices`, cached on the store's models
    version (its staleness check relabels every model's training scans: seconds)."""
    return _choices(store, ev.models_version(store))


@st.cache_data(show_spinner=False, max_entries=32)
def _summary(_store: st_store.Store, key: tuple[str, ...], ids: tuple[str, ...],
             colours: tuple[tuple[str, str], ...], split: str,
             boot: int) -> tuple[pd.DataFrame, dict | None]:
    table = ev.metrics_table(_store, list(ids), split=split, n_boot=boot)
    spec = arrow_spec(charts_eval.chart_spec(charts_eval.summary_view(
        charts_eval.auc_summary_chart(table, study.STUDY_REPORTED_AUCS,
                                      colours=dict(colours))))) \
        if table["AUC"].notna().any() else None
    return table, spec


class PageData:
    """The page's data for the models offered, each piece cached on its model's data version
    (:func:`sscmort_core.views.comparison.data_versions`: predictions, metrics, label,
    outcomes); the combined results equal the all-models functions' (tests/views). ``split``
    is the validation design the numbers come from (the OOF predictions, or a design's test
    part: :mod:`sscmort_core.views.designs`)."""

    def __init__(self, store: st_store.Store, model_ids: Sequence[str],
                 split: str = "oof") -> None:
        self.store = store
        self.split = split
        self.versions = ev.data_versions(store, model_ids)

    def loaded(self, model_id: str, split: str | None = None) -> ev.Loaded:
        """The model's labelled predictions (this design's, or ``split``'s), read once."""
        return _loaded_of(self.store, self.versions[model_id], model_id, split or self.split)

    def key(self, ids: Sequence[str]) -> tuple[str, ...]:
        """The cache key of a model set: each model's data version."""
        return tuple(self.versions[m] for m in ids)

    def curves(self, ids: Sequence[str], horizon: int) -> ev.HorizonCurves:
        return ev.combine_curves([_curves_of(self.store, self.versions[m], m, horizon,
                                             self.split, self.loaded(m)) for m in ids])

    def recal(self, ids: Sequence[str], horizon: int) -> ev.CurveSet:
        cv = self.split == ev.CV_SPLIT
        return ev.combine_sets([_recal_of(
            self.store, self.versions[m], m, horizon, self.split, self.loaded(m),
            self.loaded(m, ev.UNCALIBRATED_SPLIT) if cv else None) for m in ids])

    def long(self, ids: Sequence[str], estimand: str, boot: int) -> pd.DataFrame:
        return _long_all(self, self.key(ids), tuple(ids), estimand, boot, self.split)

    def summary(self, ids: Sequence[str], colours: dict[str, str], boot: int
                ) -> tuple[pd.DataFrame, dict | None]:
        """The metrics table of ``ids`` under this design and the AUC summary chart's spec
        (None without AUCs)."""
        return _summary(self.store, self.key(ids), tuple(ids),
                        tuple(sorted(colours.items())), self.split, boot)

    def tab_charts(self, ids: Sequence[str], horizon: int, colours: dict[str, str]
                   ) -> TabCharts:
        """The horizon's Vega-Lite specs (cached on the models' versions and colours)."""
        return _tab_charts(self, self.key(ids), tuple(ids), horizon,
                           tuple(sorted(colours.items())), self.split)

    def tab_tests(self, ids: Sequence[str], horizon: int, boot: int,
                  labels: dict[str, str], kinds: dict[str, str]) -> TabTests:
        return _tab_tests(self, self.key(ids), tuple(ids), horizon, boot, self.split,
                          tuple((m, labels[m]) for m in ids), tuple((m, kinds[m]) for m in ids))

    def paired(self, ids: Sequence[str], horizon: int, boot: int) -> list[evaluate.PairedTest]:
        return [_pair(self.store, self.versions[a], self.versions[b], a, b, horizon, boot,
                      self.split, {**self.loaded(a), **self.loaded(b)})
                for a, b in itertools.combinations(ids, 2)]


LONG_SHOWN = ("horizon (years)", "model", "metric", "value", "CI low", "CI high", "estimand",
              "scans", "patients", "events")
_W = {"horizon (years)": 44, "model": 170, "metric": 140, "value": 58, "CI low": 58,
      "CI high": 58, "estimand": 104, "scans": 50, "patients": 56, "events": 50}  # px
LONG_CONFIG = {c: (st.column_config.NumberColumn(c, format="%.3f", width=w)
                   if c in ("value", "CI low", "CI high")
                   else st.column_config.Column("h (y)" if c == "horizon (years)" else c,
                                                width=w))
               for c, w in _W.items()}
NOT_COMPUTED = "–"  # a table cell whose metric cannot be computed (not Streamlit's "None")
PAIRED_SHOWN = ("model A", "model B", "AUC A", "AUC B", "AUC A - B", "diff CI low",
                "diff CI high", "p", "p method", "DeLong p")  # the CSV has every column
PAIRED_FORMATS = {"AUC A": ".3f", "AUC B": ".3f", "AUC A - B": ".3f", "diff CI low": ".3f",
                  "diff CI high": ".3f", "p": ".3g", "DeLong p": ".3g"}
