"""Radiomics & SHAP: feature browser by outcome, SHAP summary per model, per-scan waterfall."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable

import pandas as pd
import streamlit as st

from pages._shared import (
    app_link,
    audit_view,
    page_setup,
    refuse_unknown,
    show_error,
    still_coming,
)
from sscmort_core import store as st_store
from sscmort_core.errors import SscmortError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.views import radiomics as ex
from sscmort_core.views import radiomics_charts as charts
from sscmort_core.views.names import format_risk, horizon_label

store = page_setup("Radiomics & SHAP")
param_sets = ex.feature_sets(store)  # radiomics parameter sets, then QCT and ILD patterns
models = ex.tabular_models(store)
# an in-app link with ?scan=... (Patient timeline) lands on that scan's explanation
browse, summary, single = st.tabs(
    ["Feature browser", "SHAP summary", "Scan explanation"],
    default="Scan explanation" if st.query_params.get("tab") == "scan" else None)
# every tab body runs on every rerun: the cohort-wide frames are cached per store contents
VERSION = json.dumps([str(store.path), param_sets.to_dict(orient="records"),
                      [(m.model_id, str(m.created)) for m in models],
                      st_store.outcome_fingerprint(store)], default=str)


@st.cache_data(max_entries=16, show_spinner="Ranking the features...")
def _ranking(_store: st_store.Store, version: str, param_hash: str, horizon: int):
    return ex.feature_ranking(_store, param_hash, horizon)


@st.cache_data(max_entries=32, show_spinner=False)
def _feature_frame(_store: st_store.Store, version: str, param_hash: str, feature: str,
                   horizon: int):
    return ex.feature_outcome_frame(_store, param_hash, feature, horizon)


@st.cache_data(max_entries=16, show_spinner="SHAP summary...")
def _shap_frame(_store: st_store.Store, version: str, model_id: str, horizon: int):
    return ex.shap_summary_frame(_store, model_id, horizon)


def _horizon(key: str, where) -> int:
    return where.radio("Horizon", HORIZONS_YEARS, format_func=horizon_label,
                       horizontal=True, index=len(HORIZONS_YEARS) - 1, key=key)



def _guarded(body: Callable[[], None]) -> Callable[[], None]:
    """A tab's body that shows a named error as one sentence (also when the tab reruns alone,
    as a fragment, outside the page's own try)."""
    @functools.wraps(body)
    def run() -> None:
        try:
            body()
        except SscmortError as err:
            show_error(err)
    return run

@st.fragment  # its widgets rerun this tab only
@_guarded
def _feature_browser() -> None:
    if not (param_sets["param_hash"] != ex.QCT_SET).any() and not still_coming("radiomics"):
        st.info("No radiomics features yet: run `sscmort radiomics` on this store"
                + ("; QCT and ILD pattern features can be browsed." if len(param_sets) else "."))
    if param_sets.empty:
        return
    c1, c2 = st.columns([2, 1])
    hashes = param_sets["param_hash"].tolist()
    param_hash = c1.selectbox("Radiomics parameter set", hashes,
                              format_func=lambda h: _param_label(h), key="fb_params")
    horizon = _horizon("fb_horizon", c2)
    ranking = _ranking(store, VERSION, param_hash, horizon)
    labels = {r.feature: f"{r.label} (AUC {r.auc:.2f})" if pd.notna(r.auc) else r.label
              for r in ranking.itertuples()}
    feature = st.selectbox("Feature (strongest univariable association first)", list(labels),
                           format_func=labels.get, key="fb_feature")
    df = _feature_frame(store, VERSION, param_hash, feature, horizon)
    eff = ex.feature_effect(df, feature, horizon)
    m = st.columns(4)
    m[0].metric("Died / alive", f"{eff.n_died} / {eff.n_alive}")
    m[1].metric("Censored (excluded)", eff.n_censored)
    m[2].metric("Cohen's d (died - alive)",
                "n/a" if eff.cohens_d is None else f"{eff.cohens_d:+.2f}")
    m[3].metric("AUC of the feature alone", "n/a" if eff.auc is None else f"{eff.auc:.3f}")
    label = ex.pretty_feature(feature)
    left, right = st.columns(2)
    left.altair_chart(charts.feature_by_outcome_chart(df, label, horizon), width="stretch")
    group = right.radio("Acquisition breakdown", ["kernel", "scanner"], horizontal=True,
                        key="fb_group")
    right.altair_chart(charts.feature_by_group_chart(df, label, group), width="stretch")


def _param_label(h: str) -> str:
    """"Set 1: pyradiomics 3.0.1, 40 scans, 100 features" (the hash stays in the store)."""
    r = param_sets.set_index("param_hash").loc[h]
    if h == ex.QCT_SET:
        return (f"{r['pyradiomics_version']}, {int(r['n_scans'])} scans, "
                f"{int(r['n_features'])} features")
    n = param_sets["param_hash"].tolist().index(h) + 1
    return (f"Set {n}: pyradiomics {r['pyradiomics_version']}, {int(r['n_scans'])} scans, "
            f"{int(r['n_features'])} features")


def _pick_model(key: str, where) -> ex.TabularModelInfo:
    ids = [m.model_id for m in models]
    wanted = st.query_params.get("model")
    choice = where.selectbox("Model", ids, index=ids.index(wanted) if wanted in ids else 0,
                             format_func=lambda i: next(m.display for m in models
                                                        if m.model_id == i), key=key)
    return next(m for m in models if m.model_id == choice)


@st.fragment  # its widgets rerun this tab only
@_guarded
def _shap_summary() -> None:
    c1, c2 = st.columns([2, 1])
    model = _pick_model("sum_model", c1)
    horizon = _horizon("sum_horizon", c2)
    df = _shap_frame(store, VERSION, model.model_id, horizon)
    auc = model.oof_auc[HORIZONS_YEARS.index(horizon)]
    st.altair_chart(charts.shap_beeswarm_chart(
        df, f"{model.label}: top features, {horizon}-year risk"), width="stretch")
    st.caption(f"Out-of-fold AUC at {horizon} years: {'n/a' if pd.isna(auc) else f'{auc:.3f}'}. "
               f"{df['scan_id'].nunique():,} scans shown. SHAP values explain the model's "
               "log-odds before risks are made monotone across horizons.")


@st.fragment  # its widgets rerun this tab only
@_guarded
def _scan_explanation() -> None:
    c1, c2 = st.columns([2, 1])
    model = _pick_model("one_model", c1)
    horizon = _horizon("one_horizon", c2)
    scan_ids = st_store.explained_scan_ids(store, model.model_id)
    if not scan_ids:
        st.info("This model has no stored explanations.")
        return
    wanted = st.query_params.get("scan")
    if wanted is not None and wanted not in scan_ids:
        refuse_unknown("view scan", wanted, "The scan named in the link has no explanation in "
                                            "this store.")
    scan_id = st.selectbox("Scan", scan_ids,
                           index=scan_ids.index(wanted) if wanted in scan_ids else 0,
                           key="one_scan")
    st.query_params["scan"] = scan_id
    audit_view("view scan", (scan_id,))
    w = ex.waterfall(store, model.model_id, scan_id, horizon)
    row = st_store.scan_row(store, scan_id) or {}
    m = st.columns(3)
    m[0].metric("Base risk (cohort)", format_risk(w.base_risk))
    m[1].metric("Model risk for this scan", format_risk(w.output_risk))
    m[2].metric("Stored out-of-fold risk", format_risk(w.stored_risk))
    st.altair_chart(charts.shap_waterfall_chart(w), width="stretch")
    st.caption(f"Scan of {row.get('scan_date')} ({row.get('scanner')}, {row.get('kernel')} "
               "kernel). The model risk comes from the model fit on all labelled scans; the "
               "stored risk is out-of-fold and monotone across horizons, so they can differ.")
    if row.get("patient_id"):
        app_link("pages/patient_timeline.py", "Open the patient timeline",
                 {"patient": row["patient_id"]}, icon=":material/timeline:")


try:
    with browse:
        _feature_browser()
    if not models:
        for tab in (summary, single):
            with tab:
                if still_coming("models", "SHAP explains the radiomics and QCT models. "):
                    continue
            tab.info("No radiomics or QCT model is registered yet: run "
                     "`sscmort train --kind radiomics` (or `--kind qct`).")
    else:
        with summary:
            _shap_summary()
        with single:
            _scan_explanation()
except SscmortError as err:
    show_error(err)
