"""Altair charts of the Radiomics & SHAP page and the timeline's risk lines (pure builders)."""

from __future__ import annotations

from typing import Mapping

import altair as alt
import numpy as np
import pandas as pd

from sscmort_core.views import palette
from sscmort_core.views.names import format_risk
from sscmort_core.views.radiomics import Waterfall

OUTCOME_COLOURS = alt.Scale(domain=["died", "alive", "censored"],
                            range=["#c0392b", "#2e86c1", "#b3b6b7"])


def feature_by_outcome_chart(df: pd.DataFrame, feature_label: str,
                             horizon_years: int) -> alt.Chart:
    """Box plots of a feature by outcome at the horizon (censored shown, grey, for context).

    df: :func:`sscmort_core.views.radiomics.feature_outcome_frame`."""
    return alt.Chart(df.dropna(subset=["value"])).mark_boxplot(extent="min-max", size=40).encode(
        x=alt.X("outcome:N", title=f"Outcome within {horizon_years} y",
                sort=["died", "alive", "censored"]),
        y=alt.Y("value:Q", title=feature_label, scale=alt.Scale(zero=False)),
        color=alt.Color("outcome:N", scale=OUTCOME_COLOURS, legend=None),
    ).properties(height=300, title=f"{feature_label} by outcome ({horizon_years}-year horizon)")


def feature_by_group_chart(df: pd.DataFrame, feature_label: str, group: str) -> alt.Chart:
    """Box plots of a feature by ``group`` ("kernel" or "scanner"): acquisition sensitivity.
    One row per group, every row labelled (never thinned), and a colour key below."""
    data = df.dropna(subset=["value"])
    groups = sorted(data[group].dropna().astype(str).unique())
    return alt.Chart(data).mark_boxplot(extent="min-max", size=22).encode(
        y=alt.Y(f"{group}:N", title=group.capitalize(), sort=groups,
                scale=alt.Scale(domain=groups, paddingInner=0.4),
                axis=alt.Axis(labelOverlap=False, labelLimit=0)),
        x=alt.X("value:Q", title=feature_label, scale=alt.Scale(zero=False)),
        color=alt.Color(f"{group}:N", sort=groups, scale=alt.Scale(domain=groups),
                        legend=alt.Legend(orient="bottom", title=group.capitalize(),
                                          labelLimit=0, columns=2)),
    ).properties(  # fit-x: the height is the rows' own (Streamlit's default "fit" would
        # squeeze the axis, title and legend into it and stack the rows on one line)
        height=40 * max(len(groups), 2), title=f"{feature_label} by {group}",
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


def shap_beeswarm_chart(df: pd.DataFrame, title: str) -> alt.Chart:
    """Beeswarm-like SHAP summary: one dot per scan and feature, jittered within its row,
    coloured by the feature's value rank (blue low, red high).

    df: :func:`sscmort_core.views.radiomics.shap_summary_frame`."""
    order = df.drop_duplicates("label").sort_values("order")["label"].tolist()
    n = len(order)
    return alt.Chart(df).mark_circle(size=14, opacity=0.7).encode(
        x=alt.X("value:Q", title="SHAP value (log-odds of death; right = higher risk)"),
        y=alt.Y("label:N", sort=order, title=None,
                axis=alt.Axis(labelLimit=0, labelOverlap=False)),
        yOffset=alt.YOffset("jitter:Q", scale=alt.Scale(domain=[-0.5, 0.5])),
        color=alt.Color("value_rank:Q", title="Feature value (rank)",
                        scale=alt.Scale(scheme="redblue", reverse=True, domain=[0, 1])),
        tooltip=["label", "scan_id", alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("feature_value:Q", format=".4g")],
    ).properties(height=max(200, 26 * n), title=title)


def shap_waterfall_chart(w: Waterfall) -> alt.LayerChart:
    """From the base value (top) to the scan's log-odds (bottom), one bar per feature."""
    steps = w.steps.copy()
    steps["direction"] = steps["value"].map(lambda v: "raises risk" if v > 0 else "lowers risk")
    steps["text"] = steps["value"].map(lambda v: f"{v:+.3f}")
    order = steps["label"].tolist()
    y_axis = alt.Axis(labelLimit=0, labelOverlap=False)  # every bar keeps its own label
    bars = alt.Chart(steps).mark_bar().encode(
        y=alt.Y("label:N", sort=order, title=None, axis=y_axis),
        x=alt.X("start:Q", title="log-odds of death", scale=alt.Scale(zero=False)),
        x2="end:Q",
        color=alt.Color("direction:N", scale=alt.Scale(domain=["raises risk", "lowers risk"],
                                                       range=["#c0392b", "#2e86c1"]),
                        title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["label", alt.Tooltip("value:Q", format="+.4f"),
                 alt.Tooltip("feature_value:Q", format=".4g")])
    text = alt.Chart(steps).mark_text(align="left", dx=4, fontSize=10).encode(
        y=alt.Y("label:N", sort=order), x=alt.X("end:Q"), text="text:N")
    marks = pd.DataFrame({"x": [w.base_value, w.output_logit],
                          "what": [f"base {w.base_value:.2f} "
                                   f"(risk {format_risk(w.base_risk)})",
                                   f"this scan {w.output_logit:.2f} "
                                   f"(risk {format_risk(w.output_risk)})"]})
    rules = alt.Chart(marks).mark_rule(strokeDash=[4, 3]).encode(
        x="x:Q", color=alt.Color("what:N", title=None, legend=alt.Legend(orient="bottom"),
                                 scale=alt.Scale(range=["#7f8c8d", "#111111"])),
        tooltip=["what"])
    return alt.layer(bars, text, rules).resolve_scale(color="independent").properties(
        height=max(200, 28 * len(steps)) + 70,
        title=f"Why {w.scan_id}: {w.horizon_years}-year risk")


def risk_lines_chart(df: pd.DataFrame, title: str = "Predicted risk per scan "
                     "(out-of-fold)", *, colours: Mapping[str, str] | None = None,
                     full_scale: bool = False) -> alt.LayerChart:
    """Risk over scan dates, one line per model and horizon (dash = horizon, legend symbols
    drawn as strokes); colours keyed on model id (:mod:`palette`); the risk axis spans the
    data (or 0-100% with ``full_scale``); both legends sit below the plot, sized to fit.

    Points of a longitudinal model scored without an earlier scan (``fallback``) get a ring.

    df: :func:`sscmort_core.views.radiomics.risk_lines_frame`."""
    shown = list(df[["model_id", "model"]].drop_duplicates("model_id").itertuples(
        index=False, name=None))
    if full_scale:
        domain = [0.0, 1.0]
    else:
        top = float(df["risk"].max()) if len(df) else 1.0
        low = float(df["risk"].min()) if len(df) else 0.0
        domain = [max(0.0, np.floor(low * 20) / 20 - 0.05), min(1.0, np.ceil(top * 20) / 20
                                                                 + 0.05)]
    x = alt.X("scan_date:T", title="Scan date", axis=alt.Axis(  # as charts.DATE_AXIS
        format="%b %Y", labelAngle=0, labelFlush=True, labelOverlap=True, labelBound=True))
    y = alt.Y("risk:Q", title="Risk of death", scale=alt.Scale(domain=domain, nice=False),
              axis=alt.Axis(format="%"))
    colour = alt.Color("model:N", title="Model", scale=palette.model_scale(shown, colours),
                       legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0,
                                         symbolType="circle"))
    lines = alt.Chart(df).mark_line(strokeWidth=2).encode(
        x=x, y=y, color=colour, strokeDash=palette.horizon_dash(),
        detail="horizon:N")
    points = alt.Chart(df).mark_point(filled=True, size=40).encode(
        x=x, y=y, color=alt.Color("model:N", scale=palette.model_scale(shown, colours),
                                  legend=None),
        tooltip=[alt.Tooltip("model", title="Model"), alt.Tooltip("horizon", title="Horizon"),
                 alt.Tooltip("scan_date:T", title="Scan date"),
                 alt.Tooltip("scan_id", title="Scan"),
                 alt.Tooltip("risk:Q", format=".0%", title="Risk")])
    layers = [lines, points]
    flagged = df.loc[df["fallback"]] if "fallback" in df.columns else df.iloc[:0]
    if len(flagged):  # a ring: the longitudinal model had no earlier scan here
        ring = flagged.assign(flag="no earlier scan: cross-sectional fallback")
        layers.append(alt.Chart(ring).mark_point(shape="circle", filled=False, size=190,
                                                 strokeWidth=1.5, color="#212121").encode(
            x=x, y=y, tooltip=[alt.Tooltip("model", title="Model"),
                               alt.Tooltip("scan_date:T", title="Scan date"),
                               alt.Tooltip("flag", title="Flag")]))
    return alt.layer(*layers).properties(
        height=280 + palette.legend_rows_height(len(shown)) + 40, title=title)
