"""App-side page data of Model comparison (issue 17): the page's computations cached per
model, so adding or removing a model computes only that model's curves, metric rows and pairs,
and a rerun on cached data only reads each model's data version (two queries); plus the
tables' column layout (fits 1280 px without sideways scrolling, issue 14)."""

from __future__ import annotations

import itertools
from typing import Sequence

import pandas as pd
import streamlit as st

from sscmort_core import store as st_store
from sscmort_core.pipeline import evaluate
from sscmort_core.views import comparison as ev
from sscmort_core.views import eval_charts as charts_eval
from sscmort_core.views import study


@st.cache_data(show_spinner=False, max_entries=512)
def _pair(_store: st_store.Store, version_a: str, version_b: str, a: str, b: str,
          horizon: int, boot: int) -> evaluate.PairedTest:
    return evaluate.paired_tests(_store, [a, b], horizon, n_boot=boot)[0]


@st.cache_data(show_spinner=False, max_entries=512)
def _curves_of(_store: st_store.Store, version: str, model_id: str,
               horizon: int) -> ev.HorizonCurves:
    return ev.horizon_curves(_store, [model_id], horizon)


@st.cache_data(show_spinner=False, max_entries=256)
def _long_of(_store: st_store.Store, version: str, model_id: str, estimand: str,
             boot: int) -> pd.DataFrame:
    return ev.metrics_long(_store, [model_id], estimand=estimand, n_boot=boot)


@st.cache_data(show_spinner=False, max_entries=512)
def _recal_of(_store: st_store.Store, version: str, model_id: str,
              horizon: int) -> ev.CurveSet:
    return ev.recalibration_frames(_store, [model_id], horizon)


@st.cache_data(show_spinner=False, max_entries=128)
def _specs(_curves: ev.HorizonCurves, _recal: ev.CurveSet, key: tuple[str, ...], horizon: int,
           colours: tuple[tuple[str, str], ...]) -> list[dict]:
    """The horizon's chart specs, built and validated once per (models' versions, horizon,
    colours): ``key`` determines the curves passed in unhashed."""
    return [charts_eval.chart_spec(c) for c in horizon_charts(_curves, _recal, horizon,
                                                              dict(colours))]


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
             colours: tuple[tuple[str, str], ...]) -> tuple[pd.DataFrame, dict | None]:
    table = ev.metrics_table(_store, list(ids))
    spec = charts_eval.chart_spec(charts_eval.auc_summary_chart(
        table, study.STUDY_REPORTED_AUCS, colours=dict(colours))) \
        if table["AUC"].notna().any() else None
    return table, spec


class PageData:
    """The page's data for the models offered, each piece cached on its model's data version
    (:func:`sscmort_core.views.comparison.data_versions`: predictions, metrics, label,
    outcomes); the combined results equal the all-models functions' (tests/views)."""

    def __init__(self, store: st_store.Store, model_ids: Sequence[str]) -> None:
        self.store = store
        self.versions = ev.data_versions(store, model_ids)

    def curves(self, ids: Sequence[str], horizon: int) -> ev.HorizonCurves:
        with st.spinner("Curves..."):
            return ev.combine_curves([_curves_of(self.store, self.versions[m], m, horizon)
                                      for m in ids])

    def recal(self, ids: Sequence[str], horizon: int) -> ev.CurveSet:
        return ev.combine_sets([_recal_of(self.store, self.versions[m], m, horizon)
                                for m in ids])

    def long(self, ids: Sequence[str], estimand: str, boot: int) -> pd.DataFrame:
        with st.spinner("Metrics..."):
            return ev.combine_long([_long_of(self.store, self.versions[m], m, estimand, boot)
                                    for m in ids], include_reference=True)

    def summary(self, ids: Sequence[str], colours: dict[str, str]
                ) -> tuple[pd.DataFrame, dict | None]:
        """The metrics table of ``ids`` and the AUC summary chart's spec (None without AUCs)."""
        return _summary(self.store, tuple(self.versions[m] for m in ids), tuple(ids),
                        tuple(sorted(colours.items())))

    def chart_specs(self, ids: Sequence[str], horizon: int, curves: ev.HorizonCurves,
                    recal: ev.CurveSet, colours: dict[str, str]) -> list[dict]:
        """The horizon's Vega-Lite specs (cached on the models' versions and colours)."""
        return _specs(curves, recal, tuple(self.versions[m] for m in ids), horizon,
                      tuple(sorted(colours.items())))

    def paired(self, ids: Sequence[str], horizon: int, boot: int) -> list[evaluate.PairedTest]:
        with st.spinner("Paired tests (clustered DeLong and patient bootstrap)..."):
            return [_pair(self.store, self.versions[a], self.versions[b], a, b, horizon, boot)
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
PAIRED_W = {"model A": 140, "model B": 140, "AUC A": 52, "AUC B": 52, "AUC A - B": 60,
            "diff CI low": 60, "diff CI high": 60, "p": 52, "p method": 120, "DeLong p": 60}
