"""Chart builders of the Model comparison page: hand-made frames in, Vega-Lite / PNG out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sscmort_core.views import eval_charts as charts_eval
from sscmort_core.views import palette
from sscmort_core.views.study import reported_aucs


def _roc() -> pd.DataFrame:
    return pd.DataFrame({"model_id": ["a"] * 3 + ["b"] * 3,
                         "model": ["A: AUC 0.750 [0.700, 0.800]"] * 3 + ["B: AUC 0.6"] * 3,
                         "fpr": [0, 0.5, 1] * 2, "tpr": [0, 0.9, 1, 0, 0.6, 1],
                         "threshold": [np.nan, 0.3, 0.1] * 2})


def _decision() -> pd.DataFrame:
    t = np.array([0.1, 0.2, 0.3])
    return pd.DataFrame({"model_id": [None] * 6 + ["a"] * 3,
                         "model": ["Treat all"] * 3 + ["Treat none"] * 3 + ["A"] * 3,
                         "threshold": np.tile(t, 3),
                         "net_benefit": [0.05, -0.02, -0.30, 0, 0, 0, 0.06, 0.03, 0.01]})


def test_roc_chart_keeps_legend_text_colours_and_study_reference():
    spec = charts_eval.roc_chart(_roc(), 3, reported_aucs(3)).to_dict()
    colour = spec["layer"][1]["encoding"]["color"]
    assert colour["field"] == "model" and colour["scale"] == {"range": {"field": "colour"}}
    lines = spec["datasets"][spec["layer"][1]["data"]["name"]]
    assert {(row["model"], row["colour"]) for row in lines} == {
        ("A: AUC 0.750 [0.700, 0.800]", charts_eval.PALETTE[0]),
        ("B: AUC 0.6", charts_eval.PALETTE[1])}
    texts = [v for ds in spec["datasets"].values() for row in ds for k, v in row.items()
             if k == "text"]
    assert texts == ["Study reported, deep: AUC 0.801",
                     "Study reported, radiomics: AUC 0.682-0.723"]


def test_decision_chart_leaves_out_points_below_the_floor():
    spec = charts_eval.decision_chart(_decision(), 3, floor=-0.05).to_dict()
    values = [row["net_benefit"] for ds in spec["datasets"].values() for row in ds]
    assert min(values) == -0.02  # treat-all at t=0.3 (-0.30) is dropped


def test_horizon_figure_renders_to_png():
    cal = pd.DataFrame({"model_id": "a", "model": "A", "mean_predicted": [0.1, 0.4],
                        "observed_fraction": [0.12, 0.35], "count": [10, 10]})
    n = 6000  # more rows than altair's default limit (5,000): ROC curves of several models
    big_roc = pd.DataFrame({"model_id": "a", "model": "A", "fpr": np.linspace(0, 1, n),
                            "tpr": np.sqrt(np.linspace(0, 1, n)), "threshold": 0.5})
    fig = charts_eval.horizon_figure(charts_eval.roc_chart(big_roc, 1),
                                     charts_eval.calibration_chart(cal, 1),
                                     charts_eval.decision_chart(_decision(), 1))
    png = charts_eval.chart_png(fig, scale=1.0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_auc_summary_draws_the_reported_range_from_the_references():
    from sscmort_core.views.study import STUDY_REPORTED_AUCS

    table = pd.DataFrame({
        "model_id": ["m", "m", None], "model": ["M", "M", "Study (reported): deep"],
        "kind": ["deep", "deep", "reported"], "horizon (years)": [1, 3, 1],
        "AUC": [0.7, 0.65, 0.769], "AUC CI low": [0.6, 0.55, None],
        "AUC CI high": [0.8, 0.75, None], "events": [20, 30, None], "note": [None, None, "x"]})
    spec = charts_eval.auc_summary_chart(table, STUDY_REPORTED_AUCS).to_dict()
    rects = [layer for layer in spec["layer"] if layer["mark"]["type"] == "rect"]
    assert len(rects) == 1
    values = spec["datasets"][rects[0]["data"]["name"]]
    assert values == [{"low": 0.682, "high": 0.723, "what": "Study reported: radiomics range"}]
    no_refs = charts_eval.auc_summary_chart(table).to_dict()
    assert not [la for la in no_refs["layer"] if la["mark"]["type"] == "rect"]


def test_chart_spec_without_validation_equals_the_validated_spec():
    """The pages build specs unvalidated (issue 13): the builders' specs must pass altair's
    schema check and come out the same either way."""
    charts = [charts_eval.roc_chart(_roc(), 3, reported_aucs(3)),
              charts_eval.decision_chart(_decision(), 3, floor=-0.05)]
    for chart in charts:
        assert charts_eval.chart_spec(chart) == charts_eval.chart_spec(chart, validate=True)


def test_horizon_stack_is_one_view_keeping_each_chart_title_legend_and_colours():
    roc = charts_eval.roc_chart(_roc(), 3, reported_aucs(3))
    dec = charts_eval.decision_chart(_decision(), 3, floor=-0.05)
    spec = charts_eval.chart_spec(charts_eval.horizon_stack([roc, dec]), validate=True)
    parts = spec["vconcat"]
    assert [p["title"] for p in parts] == ["ROC at 3 years", "Decision curve at 3 years"]
    assert all(p["width"] == charts_eval.STACK_WIDTH for p in parts)
    assert spec["resolve"]["scale"] == {"color": "independent", "strokeDash": "independent"}
    colour = parts[0]["layer"][1]["encoding"]["color"]
    assert colour["scale"] == {"range": {"field": "colour"}}
    assert colour["legend"]["labelLimit"] == 0  # legends whole, as in the single charts
    # the single charts keep their own sizes (the PNG figure and other callers use them)
    assert roc.to_dict()["width"] == 420


def _stack_spec(ids: list[str]) -> dict:
    """A horizon's stack (ROC, calibration, decision) of the models ``ids`` among a registry
    of four, as the page builds it."""
    colours = palette.model_colours(["a", "b", "c", "d"])
    roc = pd.concat([pd.DataFrame({"model_id": m, "model": f"{m.upper()}: AUC 0.{7 + i}",
                                   "fpr": [0, 0.5, 1], "tpr": [0, 0.6 + 0.1 * i, 1],
                                   "threshold": [np.nan, 0.3, 0.1]})
                     for i, m in enumerate(ids)])
    cal = pd.concat([pd.DataFrame({"model_id": m, "model": m.upper(),
                                   "mean_predicted": [0.1, 0.2 + 0.1 * i],
                                   "observed_fraction": [0.12, 0.3], "count": [10, 10]})
                     for i, m in enumerate(ids)])
    dec = pd.concat([_decision().iloc[:6]] + [pd.DataFrame({
        "model_id": m, "model": m.upper(), "threshold": [0.1, 0.2, 0.3],
        "net_benefit": [0.06, 0.03 + 0.01 * i, 0.01]}) for i, m in enumerate(ids)])
    charts = charts_eval.horizon_charts(roc, cal, dec, None, 3, reported_aucs(3),
                                        colours=colours)
    return charts_eval.chart_spec(charts_eval.horizon_stack(charts), validate=True)


def test_a_stack_of_other_models_is_the_same_spec_with_other_data():
    """Adding or removing a model changes only the datasets (Streamlit then updates the
    drawn view's data instead of building a new one, issue 13), and a model keeps its colour."""
    three, two = _stack_spec(["a", "b", "c"]), _stack_spec(["a", "c"])
    assert {k: v for k, v in three.items() if k != "datasets"} == \
        {k: v for k, v in two.items() if k != "datasets"}
    assert sorted(three["datasets"]) == sorted(two["datasets"]) == \
        [f"d{i}" for i in range(len(three["datasets"]))]
    assert three["datasets"] != two["datasets"]

    def colour_of(spec: dict) -> dict[str, str]:
        return {row["model_id"]: row["colour"] for rows in spec["datasets"].values()
                for row in rows if row.get("model_id") and row.get("colour")}
    assert colour_of(two) == {m: c for m, c in colour_of(three).items() if m != "b"}


def test_summary_view_spec_does_not_depend_on_the_models_shown():
    def table(ids: list[str]) -> pd.DataFrame:
        return pd.DataFrame({
            "model_id": ids, "model": [m.upper() for m in ids], "kind": "deep",
            "horizon (years)": 1, "AUC": 0.7, "AUC CI low": 0.6, "AUC CI high": 0.8,
            "events": 20, "note": None})

    specs = [charts_eval.chart_spec(charts_eval.summary_view(charts_eval.auc_summary_chart(
        table(ids), colours=palette.model_colours(["a", "b", "c"]))), validate=True)
        for ids in (["a", "b", "c"], ["b"])]
    three, one = ({k: v for k, v in s.items() if k != "datasets"} for s in specs)
    assert three == one
    assert specs[0]["datasets"] != specs[1]["datasets"]
