"""Model comparison: per-horizon ROC, calibration and decision curves, metrics, paired tests."""

from __future__ import annotations

import streamlit as st

from pages._comparison import (
    LONG_CONFIG,
    LONG_SHOWN,
    NOT_COMPUTED,
    PAIRED_FORMATS,
    PAIRED_SHOWN,
    PageData,
    horizon_charts,
    model_choices,
)
from pages._shared import audit, export_button, page_setup, require, show_error, still_coming
from sscmort_core.errors import SscmortError
from sscmort_core.evaluation import ESTIMANDS
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline import evaluate
from sscmort_core.pipeline.eval_data import ORACLE_KIND
from sscmort_core.views import designs as dv
from sscmort_core.views import eval_charts as charts_eval
from sscmort_core.views import palette, study, tables
from sscmort_core.views.report_render import report_document

store = page_setup("Model comparison")
st.caption("Every model is scored on the predictions of the validation design chosen below "
           "(default: its out-of-fold predictions). Censored scans are left out "
           "of AUC, Brier and calibration at that horizon and kept, with inverse probability "
           "of censoring weights, for Uno's C, the IPCW Brier score and calibration and the "
           "time-dependent AUC. CIs: patient-level bootstrap (scans of one patient resampled "
           "together). Each row names its estimand and how censored scans enter.")

choices = {c.model_id: c for c in model_choices(store)}
building = still_coming("models") or still_coming("evaluation")
if not choices or (building and all(c.kind == ORACLE_KIND for c in choices.values())):
    if building:
        st.stop()
    st.info("No model has out-of-fold predictions yet: train one first (`sscmort train`).")
    st.stop()
HORIZON_TABS = {f"{h} year{'s' if h > 1 else ''}": h for h in HORIZONS_YEARS}


@st.fragment
def _comparison() -> None:
    """Everything the model choice decides, as one fragment: adding or removing a model, or
    choosing a design or the resamples, reruns this and not the page's guard, sidebar,
    banners and navigation (issue 13)."""
    others = [m for m, c in choices.items() if c.kind != ORACLE_KIND]
    default = others[:4] + [m for m, c in choices.items() if c.kind == ORACLE_KIND]
    chosen = st.multiselect("Models to compare (any kind or version)", list(choices),
                            default=default, format_func=lambda m: choices[m].shown)
    if not chosen:
        st.info("Choose two or more models.")
        st.stop()
    picked = set(chosen)  # in the offered order, not the click order: a model added back finds
    chosen = [m for m in choices if m in picked]  # its cached pairs, summary and chart specs
    stale = [choices[m].label for m in chosen if choices[m].stale]
    if stale:
        st.warning("Stale: " + ", ".join(stale) + ". Outcomes of their training scans changed "
                   "since they were trained (the curves below use the new labels; the models "
                   "learnt the old ones). Retrain them on Models & jobs or with `sscmort train`, "
                   "then recompute the metrics.", icon=":material/update:")
    designs = {d.split: d for d in dv.design_choices(store)}
    design = st.selectbox("Validation design (where the numbers below come from)", list(designs),
                          format_func=lambda s: designs[s].label,
                          help="Temporal and external designs are run with `sscmort evaluate "
                          "--design temporal --before DATE` or `--design external --train-source A "
                          "--test-source B`; deep models have only the cross-validation design.")
    st.caption(f"Design: {designs[design].description}.")
    chosen, not_scored = dv.scored_models(store, chosen, design)
    if not_scored:
        st.info("Not scored under this design (deep models have only the cross-validation "
                "design): " + ", ".join(choices[m].label for m in not_scored) + ".")
    if not chosen:
        st.stop()
    with st.expander("Settings"):
        n_boot = st.select_slider("Bootstrap resamples (CIs and paired tests)",
                                  [200, 500, 1000, 2000, 5000], value=2000)
        recompute = st.button("Recompute the metrics of the chosen models")

    def _evaluate(model_ids: list[str]) -> None:
        if not require("evaluate", model_ids):
            return
        bar = st.progress(0.0, text="Computing metrics...")
        try:
            evaluate.run_evaluation(
                store, model_ids=model_ids, n_boot=n_boot, progress=lambda _s, d, t:
                bar.progress(d / max(t, 1), text=f"Computing metrics: {d}/{t}"))
        except SscmortError as err:
            show_error(err)
            st.stop()
        audit("evaluate", model_ids, detail=f"{n_boot} bootstrap resamples")
        st.rerun()

    missing = [m for m in chosen if not choices[m].has_metrics and design == dv.CV_SPLIT]
    if recompute:
        _evaluate(chosen)
    if missing:
        st.warning("Metrics are not computed yet for: "
                   + ", ".join(choices[m].label for m in missing) + ".")
        if st.button(f"Compute metrics for {len(missing)} model(s)", type="primary"):
            _evaluate(missing)

    labels = {m: c.label for m, c in choices.items()}
    kinds = {m: c.kind for m, c in choices.items()}
    data = PageData(store, chosen, split=design)
    # a model's colour is keyed on its id among every model offered: stable as the choice changes
    colours = palette.model_colours(list(choices), oracle=[m for m, c in choices.items()
                                                            if c.kind == ORACLE_KIND])
    table, summary_spec = data.summary(chosen, colours, n_boot)
    st.subheader("Metrics")
    if summary_spec is not None:
        st.vega_lite_chart(summary_spec, width="content")

    @st.fragment  # the estimand reruns the table only
    def _metrics_table() -> None:
        estimand = st.radio("Estimand (the population the scans are weighted to)", ESTIMANDS,
                            horizontal=True, help="Per scan: every scan weighs 1, so patients "
                            "scanned more often weigh more. Per patient: a patient's k scans weigh "
                            "1/k each (computed on demand, not stored).")
        long = data.long(chosen, estimand, n_boot)
        st.dataframe(long.drop(columns=["model_id"]), hide_index=True, width="stretch",
                     column_order=LONG_SHOWN, column_config=LONG_CONFIG,  # fits 1280 px
                     placeholder=NOT_COMPUTED)
        st.caption("One row per horizon, model and metric: value with its patient-bootstrap 95% "
                   "CI, the estimand, and the scans, patients and events it used (hover a cell "
                   f"for its full text; {NOT_COMPUTED} = not computable there, e.g. too few "
                   "events; the CSV has how censored scans enter and notes).")
        export_button("Download the table (CSV)", long.to_csv(index=False),
                      file_name="sscmort_model_comparison.csv", mime="text/csv",
                      object_ids=chosen, icon=":material/download:")

    @st.fragment  # picking the report's model reruns this picker only
    def _report_picker() -> None:
        reportable = [m for m in chosen if choices[m].has_metrics]
        if not reportable:
            return
        report_of = st.selectbox("Report of one model", reportable,
                                 format_func=lambda m: choices[m].shown)
        export_button("Download report (HTML)", lambda m=report_of: report_document(
            store, m, "html", n_boot=n_boot), file_name=f"sscmort_report_{report_of}.html",
            mime="text/html", object_ids=(report_of,), icon=":material/description:")

    _metrics_table()
    st.caption(f'Rows of kind "reported" are the AUCs published by the study ({study.STUDY}) on '
               "its own registry cohort, for reference; they are not computed here.")
    _report_picker()  # a TRIPOD+AI-style summary of one model, built only when clicked

    def _horizon_tab(h: int) -> None:
        """One horizon's charts and tests (inside :func:`_horizon_tabs`' fragment, so its own
        widgets, the PNG download, rerun only the tabs)."""
        try:
            tab = data.tab_charts(chosen, h, colours)
        except SscmortError as err:  # e.g. a scan's dates contradict each other
            show_error(err)
            return
        for label, reason in tab.unavailable:
            st.info(f"{label}: no curve at {h} y, {reason}.")
        if tab.spec is None:
            return
        # one view, a chart a row: legends name each model with its AUC and CI in full
        st.vega_lite_chart(tab.spec, width="content")
        export_button(
            "Download these charts (PNG)", key=f"png_{h}", mime="image/png",
            data=lambda: charts_eval.chart_png(charts_eval.horizon_figure(*horizon_charts(
                data.curves(chosen, h), data.recal(chosen, h), h, colours))),
            file_name=f"sscmort_model_comparison_{h}y.png", icon=":material/image:",
            object_ids=chosen)
        if len(chosen) < 2:
            return
        st.markdown(f"**Paired tests at {h} y** (on the scans both models predicted)")
        try:
            tests = data.tab_tests(chosen, h, n_boot, labels, kinds)
        except SscmortError as err:
            show_error(err)
            return
        # HTML, not a data grid: wraps, draws faster
        st.html(tables.html_table(tests.paired[list(PAIRED_SHOWN)], PAIRED_FORMATS,
                                  missing=NOT_COMPUTED))
        if tests.reference is not None:
            st.markdown(f"**Added value over the best clinical model at {h} y**: "
                        f"{labels[tests.reference]} (highest stored AUC among the clinical "
                        "references)")
            st.html(tables.html_table(tests.added_value, tables.number_formats(
                tests.added_value, ".3g"), missing=NOT_COMPUTED))
        export_button("Download the paired tests (CSV)", lambda: tests.csv(), key=f"pairs_{h}",
                      file_name=f"sscmort_paired_tests_{h}y.csv", mime="text/csv",
                      object_ids=chosen, icon=":material/download:")
        st.caption(f"p (the one to report) respects that scans cluster in patients: the "
                   f"clustered DeLong test (Obuchowski 1997), else the patient bootstrap "
                   f"({n_boot} resamples; 0 means below 1/{n_boot}). \"DeLong p\" treats scans "
                   "as independent, for reference. Estimand of the paired tests: per scan.")

    @st.fragment
    def _horizon_tabs() -> None:
        """The per-horizon tabs, lazily: only the open tab's charts and tests are computed and
        sent, so a page rerun (a model added or removed) draws 4 charts, not 12; switching tabs
        reruns this fragment alone (issue 13)."""
        tabs = st.tabs(list(HORIZON_TABS), key="mc_horizon", on_change="rerun")
        for tab, h in zip(tabs, HORIZON_TABS.values()):
            if tab.open:
                with tab:
                    _horizon_tab(h)

    _horizon_tabs()


_comparison()
