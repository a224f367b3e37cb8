"""Altair charts of the Model comparison page (pure: frames in, charts or PNG bytes out).

Inputs are the frames of :mod:`sscmort_core.views.comparison` (:class:`CurveSet` frames and the
:func:`~sscmort_core.views.comparison.metrics_table`). A model keeps its colour across charts:
colours follow the order in which models first appear in a frame (``model_id`` column).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import altair as alt
import pandas as pd

from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.views import palette
from sscmort_core.views.study import ReportedAUC

PALETTE: tuple[str, ...] = palette.MODEL_PALETTE  # kept for callers; see views.palette
# bottom legend, labels never cut (the chart's height grows with its rows, see _height)
_LEGEND = alt.Legend(orient="bottom", direction="vertical", labelLimit=0, title=None)
_WIDTH = 420
_PLOT_HEIGHT = 280


def _height(n_legend_rows: int) -> int:
    """Total height with room for the title, the x axis and a bottom legend: Streamlit fits
    the whole chart (legend included) into ``height``."""
    return _PLOT_HEIGHT + 80 + 20 * n_legend_rows


def _n_models(frame: pd.DataFrame) -> int:
    return int(frame["model_id"].dropna().nunique())


def _with_colours(frame: pd.DataFrame, colours: Mapping[str, str] | None = None
                  ) -> pd.DataFrame:
    """``frame`` with a ``colour`` column: each model's colour keyed on its id
    (:func:`palette.model_colours` of every model the page offers, so removing one never
    recolours the others; without ``colours``, keyed among the frame's ids); rows without a
    model (references) get none."""
    ids = frame["model_id"].where(frame["model_id"].isna(), frame["model_id"].astype(str))
    known = palette.colours_for(ids.dropna().unique(), colours)
    colour = ids.map(known).astype(object)
    return frame.assign(colour=colour.where(colour.notna(), None))  # None: JSON null


def _colour() -> alt.Color:
    """Colour by the legend text (legend in its alphabetical order), each text's colour taken
    from its rows' ``colour`` column (:func:`_with_colours`): the spec names no model, so it
    is the same whichever models are shown and the page updates the drawn chart's data in
    place instead of building a new view (issue 13)."""
    return alt.Color("model:N", scale=alt.Scale(range=alt.FieldRange("colour")),
                     legend=_LEGEND)


def _diagonal(label: str, upto: float = 1.0) -> alt.Chart:
    line = pd.DataFrame({"x": [0.0, upto], "y": [0.0, upto], "what": label})
    return alt.Chart(line).mark_line(color="#9e9e9e", strokeDash=[5, 4]).encode(
        x="x:Q", y="y:Q", tooltip=["what:N"])


def roc_chart(frame: pd.DataFrame, horizon_years: int,
              references: Sequence[ReportedAUC] = (), *,
              colours: Mapping[str, str] | None = None) -> alt.LayerChart:
    """ROC overlay (``fpr``, ``tpr`` per ``model``; legend text carries AUC [95% CI]) with the
    chance line and, in the lower right, the study's reported AUCs at this horizon."""
    frame = _with_colours(frame, colours)
    lines = alt.Chart(frame).mark_line(interpolate="linear", strokeWidth=2).encode(
        x=alt.X("fpr:Q", title="1 - specificity (false-positive rate)",
                scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("tpr:Q", title="Sensitivity (true-positive rate)",
                scale=alt.Scale(domain=[0, 1])),
        color=_colour(), order="fpr:Q",
        tooltip=["model:N", alt.Tooltip("fpr:Q", format=".3f"),
                 alt.Tooltip("tpr:Q", format=".3f"), alt.Tooltip("threshold:Q", format=".3f")])
    layers: list[alt.Chart] = [_diagonal("chance (AUC 0.5)"), lines]
    if references:
        text = pd.DataFrame({"x": 0.98, "y": [0.04 + 0.07 * i for i in range(len(references))],
                             "text": [_reference_text(r) for r in references]})
        layers.append(alt.Chart(text).mark_text(align="right", fontSize=11, color="#424242")
                      .encode(x="x:Q", y="y:Q", text="text:N"))
    return alt.layer(*layers).properties(
        title=f"ROC at {horizon_years} year{'s' if horizon_years != 1 else ''}",
        width=_WIDTH, height=_height(_n_models(frame)))


def _reference_text(r: ReportedAUC) -> str:
    value = f"{r.auc_low:.3f}-{r.auc_high:.3f}" if r.is_range else f"{r.auc_low:.3f}"
    return f"Study reported, {r.group}: AUC {value}"


def calibration_chart(frame: pd.DataFrame, horizon_years: int, note: str = "", *,
                      colours: Mapping[str, str] | None = None) -> alt.LayerChart:
    """Reliability curves: observed fraction of deaths against mean predicted risk per bin;
    ``note`` follows the title (e.g. how "observed" is estimated). Both axes run from 0 to
    where the perfect-calibration line ends, just past the largest value: the line is data,
    so the spec does not change with the models shown."""
    frame = _with_colours(frame, colours)
    top = float(max(frame["mean_predicted"].max(), frame["observed_fraction"].max(), 0.05))
    upto = min(1.0, round(top * 1.1 + 0.005, 2))
    square = alt.Scale(zero=True, nice=False)
    curve = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("mean_predicted:Q", title="Mean predicted risk", scale=square),
        y=alt.Y("observed_fraction:Q", title="Observed fraction died", scale=square),
        color=_colour(),
        tooltip=["model:N", alt.Tooltip("mean_predicted:Q", format=".3f"),
                 alt.Tooltip("observed_fraction:Q", format=".3f"), "count:Q"])
    return alt.layer(_diagonal("perfect calibration", upto), curve).properties(
        title=f"Calibration at {horizon_years} year{'s' if horizon_years != 1 else ''}{note}",
        width=_WIDTH, height=_height(_n_models(frame)))


def decision_chart(frame: pd.DataFrame, horizon_years: int,
                   floor: float = -0.05, note: str = "", *,
                   colours: Mapping[str, str] | None = None) -> alt.LayerChart:
    """Net benefit per threshold probability; treat-all (dashed) and treat-none (solid grey)
    as references. Points below ``floor`` are left out so treat-all does not swamp the axis
    (the net-benefit axis starts at ``floor``)."""
    shown = _with_colours(frame.loc[frame["net_benefit"] >= floor], colours)
    models = shown.loc[shown["model_id"].notna()]
    refs = shown.loc[shown["model_id"].isna()]
    y = alt.Y("net_benefit:Q", title="Net benefit", scale=alt.Scale(domainMin=floor))
    x = alt.X("threshold:Q", title="Threshold probability of death")
    tooltip = ["model:N", alt.Tooltip("threshold:Q", format=".2f"),
               alt.Tooltip("net_benefit:Q", format=".4f")]
    ref_lines = alt.Chart(refs).mark_line(color="#757575").encode(
        x=x, y=y, strokeDash=alt.StrokeDash("model:N", legend=alt.Legend(
            orient="top-right", title=None, fillColor="white"),
            scale=alt.Scale(domain=["Treat all", "Treat none"], range=[[5, 4], [1, 0]])),
        tooltip=tooltip)
    lines = alt.Chart(models).mark_line(strokeWidth=2).encode(
        x=x, y=y, color=_colour(), tooltip=tooltip)
    return alt.layer(ref_lines, lines).resolve_scale(color="independent").properties(
        title=f"Decision curve at {horizon_years} year{'s' if horizon_years != 1 else ''}"
              f"{note}",
        width=_WIDTH, height=_height(_n_models(frame)))


def auc_summary_chart(table: pd.DataFrame, references: Sequence[ReportedAUC] = (), *,
                      colours: Mapping[str, str] | None = None) -> alt.LayerChart:
    """AUC with 95% CI per model and horizon (rows of ``metrics_table`` with an AUC), the
    study's reported deep AUC per horizon (table rows of kind "reported") as a black tick and
    each reported range in ``references`` (``ReportedAUC`` with ``is_range``) as a band, and
    chance (AUC 0.5) as a dashed line."""
    models = table.loc[(table["kind"] != "reported") & table["AUC"].notna()].copy()
    reported = table.loc[table["kind"] == "reported"]
    deep = reported.loc[reported["AUC"].notna()]
    order = [f"{h} y" for h in HORIZONS_YEARS]  # 1, 3, 5 y whichever have AUCs
    x = alt.X("horizon:N", title="Horizon", sort=order, scale=alt.Scale(domain=order),
              axis=alt.Axis(labelAngle=0))
    # from chance (or the lowest CI bound below it) to 1: the chance line is data, so the
    # spec does not change with the models shown
    auc_scale = alt.Scale(domainMax=1.0, zero=False)
    chance = pd.DataFrame({"AUC": [0.5], "what": ["chance (AUC 0.5)"]})
    layers: list[alt.Chart] = [alt.Chart(chance).mark_rule(
        color="#9e9e9e", strokeDash=[5, 4]).encode(y=alt.Y("AUC:Q", scale=auc_scale),
                                                   tooltip=["what:N"])]
    ranges = [r for r in references if r.is_range]
    if ranges:
        band = pd.DataFrame({"low": [r.auc_low for r in ranges],
                             "high": [r.auc_high for r in ranges],
                             "what": [f"Study reported: {r.group} range" for r in ranges]})
        layers.append(alt.Chart(band).mark_rect(color="#bdbdbd", opacity=0.35).encode(
            y=alt.Y("low:Q", scale=auc_scale), y2="high:Q", tooltip=["what:N", "low:Q", "high:Q"]))
    models["horizon"] = models["horizon (years)"].astype(str) + " y"
    models["model_id"] = models["model_id"].astype(str)
    models = _with_colours(models, colours)
    colour = _colour()
    offset = alt.XOffset("model:N")
    layers.append(alt.Chart(models).mark_rule(strokeWidth=2).encode(
        x=x, xOffset=offset, y=alt.Y("AUC CI low:Q", title="AUC (95% CI)", scale=auc_scale),
        y2="AUC CI high:Q", color=colour))
    layers.append(alt.Chart(models).mark_point(filled=True, size=70).encode(
        x=x, xOffset=offset, y=alt.Y("AUC:Q", scale=auc_scale), color=colour,
        tooltip=["model:N", "horizon:N", alt.Tooltip("AUC:Q", format=".3f"),
                 alt.Tooltip("AUC CI low:Q", format=".3f"),
                 alt.Tooltip("AUC CI high:Q", format=".3f"), "events:Q"]))
    if len(deep):
        d = deep.assign(horizon=deep["horizon (years)"].astype(str) + " y",
                        what="Study reported: deep")
        layers.append(alt.Chart(d).mark_tick(color="black", thickness=3, size=40).encode(
            x=x, y=alt.Y("AUC:Q", scale=auc_scale),
            tooltip=["what:N", alt.Tooltip("AUC:Q", format=".3f")]))
    return alt.layer(*layers).properties(
        title="AUC by horizon (black tick: study's deep AUC; grey band: its radiomics range)",
        width=640, height=_height(_n_models(models)))


def summary_view(chart: alt.LayerChart) -> alt.VConcatChart:
    """:func:`auc_summary_chart` as the page draws it: in a concatenation, whose ``height`` is
    the plot's alone (the legend goes below it), so the spec does not change with the number
    of models either (issue 13)."""
    return alt.vconcat(chart.properties(height=_PLOT_HEIGHT))


def horizon_charts(roc: pd.DataFrame, km_calibration: pd.DataFrame | None,
                   ipcw_decision: pd.DataFrame | None, recalibration: pd.DataFrame | None,
                   horizon_years: int, references: Sequence[ReportedAUC] = (), *,
                   colours: Mapping[str, str] | None = None) -> list[alt.TopLevelMixin]:
    """The charts of one horizon on Model comparison, in the page's order: ROC, calibration
    against Kaplan-Meier, IPCW decision curve, reliability before / after recalibration (each
    left out when its frame is empty)."""
    charts: list[alt.TopLevelMixin] = [roc_chart(roc, horizon_years, references,
                                                 colours=colours)]
    if km_calibration is not None and len(km_calibration):
        charts.append(calibration_chart(km_calibration, horizon_years, " (observed: 1 - KM)",
                                        colours=colours))
    if ipcw_decision is not None and len(ipcw_decision):
        charts.append(decision_chart(ipcw_decision, horizon_years, note=" (IPCW)",
                                     colours=colours))
    if recalibration is not None and len(recalibration):
        charts.append(calibration_chart(recalibration, horizon_years,
                                        ": before / after recalibration"))
    return charts


STACK_WIDTH = 600  # px of each plot in a horizon's stack: axes and legends fit a 1280 px page


def horizon_stack(charts: Sequence[alt.TopLevelMixin], width: int = STACK_WIDTH
                  ) -> alt.VConcatChart:
    """The charts of one horizon (:func:`horizon_charts`) as one Vega view, one a row, each
    keeping its title, colours and legend (issue 13: the browser builds, lays out and paints
    one view instead of four; a horizon tab drew in 0.34 s instead of 0.51 s in an A/B run).
    In a concatenation ``height`` is the plot's alone, the legend goes below it."""
    return alt.vconcat(*(c.properties(width=width, height=_PLOT_HEIGHT) for c in charts),
                       spacing=36).resolve_scale(color="independent",
                                                 strokeDash="independent")


def stable_names(spec: dict) -> dict:
    """``spec`` with its datasets named by order of first use ("d0", "d1", ...) instead of
    altair's hash of their values: a spec whose data changed but whose charts did not is the
    same spec, so Streamlit updates the drawn view's data in place rather than building a new
    view (issue 13). A dataset used by several marks keeps one name."""
    datasets = spec.get("datasets")
    if not datasets:
        return spec
    names: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            return {k: ({**v, "name": names.setdefault(v["name"], f"d{len(names)}")}
                        if k == "data" and isinstance(v, dict) and v.get("name") in datasets
                        else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    body = walk({k: v for k, v in spec.items() if k != "datasets"})
    return {**body, "datasets": {names[n]: datasets[n] for n in names}}


def chart_spec(chart: alt.TopLevelMixin, validate: bool = False) -> dict:
    """The chart's Vega-Lite spec, built once: a page that caches it draws the chart on later
    reruns without rebuilding it. Not schema-validated by default (about a third of
    ``to_dict``'s time, issue 13): these builders' specs are validated in tests/views, which
    check that the unvalidated spec equals the validated one."""
    with alt.data_transformers.disable_max_rows():
        return stable_names(chart.to_dict(validate=validate))


def horizon_figure(*charts: alt.TopLevelMixin) -> alt.HConcatChart:
    """Charts of one horizon side by side (for the PNG download); colours kept per chart."""
    return alt.hconcat(*charts).resolve_scale(color="independent", strokeDash="independent")


def chart_png(chart: alt.TopLevelMixin, scale: float = 2.0) -> bytes:
    """The chart rendered to PNG bytes with vl-convert (no browser, no network)."""
    import vl_convert

    with alt.data_transformers.disable_max_rows():  # ROC curves of many models pass 5,000 rows
        spec = chart.to_json()
    return vl_convert.vegalite_to_png(spec, scale=scale)
