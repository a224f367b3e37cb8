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


@st.cache_data(show_spinner=False, max_entries=128)
def _specs(_curves: ev.HorizonCurves, _recal: ev.CurveSet, key: tuple[str, ...], horizon: int,
           colours: tuple[tuple[str, str], ...], split: str) -> list[dict]:
    """The horizon's chart specs, built and validated once per (models' versions, horizon,
    colours, design split): ``key`` and ``split`` determine the curves passed in unhashed."""
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
             colours: tuple[tuple[str, str], ...], split: str,
             boot: int) -> tuple[pd.DataFrame, dict | None]:
    table = ev.metrics_table(_store, list(ids), split=split, n_boot=boot)
    spec = charts_eval.chart_spec(charts_eval.auc_summary_chart(
        table, study.STUDY_REPORTED_AUCS, colours=dict(colours))) \
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

    def curves(self, ids: Sequence[str], horizon: int) -> ev.HorizonCurves:
        with st.spinner("Curves..."):
            return ev.combine_curves([_curves_of(self.store, self.versions[m], m, horizon,
                                                 self.split, self.loaded(m)) for m in ids])

    def recal(self, ids: Sequence[str], horizon: int) -> ev.CurveSet:
        cv = self.split == ev.CV_SPLIT
        return ev.combine_sets([_recal_of(
            self.store, self.versions[m], m, horizon, self.split, self.loaded(m),
            self.loaded(m, ev.UNCALIBRATED_SPLIT) if cv else None) for m in ids])

    def long(self, ids: Sequence[str], estimand: str, boot: int) -> pd.DataFrame:
        with st.spinner("Metrics..."):
            return ev.combine_long([_long_of(self.store, self.versions[m], m, estimand, boot,
                                             self.split) for m in ids],
                                   include_reference=True)

    def summary(self, ids: Sequence[str], colours: dict[str, str], boot: int
                ) -> tuple[pd.DataFrame, dict | None]:
        """The metrics table of ``ids`` under this design and the AUC summary chart's spec
        (None without AUCs)."""
        return _summary(self.store, tuple(self.versions[m] for m in ids), tuple(ids),
                        tuple(sorted(colours.items())), self.split, boot)

    def chart_specs(self, ids: Sequence[str], horizon: int, curves: ev.HorizonCurves,
                    recal: ev.CurveSet, colours: dict[str, str]) -> list[dict]:
        """The horizon's Vega-Lite specs (cached on the models' versions and colours)."""
        return _specs(curves, recal, tuple(self.versions[m] for m in ids), horizon,
                      tuple(sorted(colours.items())), self.split)

    def paired(self, ids: Sequence[str], horizon: int, boot: int) -> list[evaluate.PairedTest]:
        with st.spinner("Paired tests (clustered DeLong and patient bootstrap)..."):
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
PAIRED_W = {"model A": 140, "model B": 140, "AUC A": 52, "AUC B": 52, "AUC A - B": 60,
            "diff CI low": 60, "diff CI high": 60, "p": 52, "p method": 120, "DeLong p": 60}
