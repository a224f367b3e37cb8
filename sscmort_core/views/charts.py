"""Altair chart builders shared by the pages (pure: DataFrames in, altair charts out)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from sscmort_core.views import palette
from sscmort_core.views.cohort import HorizonCount, KaplanMeierResult

# date axes always carry the year ("Apr 2019"), never bare month names
# labelBound: a label that would run past the axis end (and be cut by the frame) is left out
DATE_AXIS = alt.Axis(format="%b %Y", labelOverlap=True, labelAngle=0, labelFlush=True,
                     labelBound=True)


def horizon_counts_chart(counts: list[HorizonCount]) -> alt.Chart:
    rows = []
    for c in counts:
        for status, n in (("died within horizon", c.positive), ("known alive", c.negative),
                          ("censored (excluded)", c.censored)):
            rows.append({"horizon": f"{c.horizon_years} y", "status": status, "scans": n})
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("horizon:N", title="Horizon"),
        y=alt.Y("scans:Q", title="Scans", stack="zero"),
        color=alt.Color("status:N", scale=alt.Scale(
            domain=["died within horizon", "known alive", "censored (excluded)"],
            range=["#c0392b", "#2e86c1", "#b3b6b7"])),
        tooltip=["horizon", "status", "scans"],
    ).properties(height=260, title="Scan labels per horizon")


def simple_bar(df: pd.DataFrame, x: str, y: str, title: str, x_type: str = "O") -> alt.Chart:
    return alt.Chart(df).mark_bar(color="#1f5f8b").encode(
        x=alt.X(f"{x}:{x_type}", title=x), y=alt.Y(f"{y}:Q", title=y), tooltip=[x, y],
    ).properties(height=240, title=title)


def kaplan_meier_chart(km: KaplanMeierResult, title: str, bands: bool = True) -> alt.LayerChart:
    """Step curves per group with pale CI bands (``bands``); the legend's swatches are solid
    line colours (:func:`palette.km_colour`), below the plot so long group names fit."""
    frames = []
    for g in km.groups:
        df = g.curve.copy()
        df["group"] = f"{g.name} (n={g.n}, deaths={g.events})"
        frames.append(df)
    data = pd.concat(frames, ignore_index=True)
    groups = list(dict.fromkeys(data["group"]))
    x = alt.X("time_years:Q", title="Years since first scan")
    y_scale = alt.Scale(domain=[0, 1])
    line = alt.Chart(data).mark_line(interpolate="step-after", strokeWidth=2).encode(
        x=x, y=alt.Y("survival:Q", title="Survival probability", scale=y_scale,
                     axis=alt.Axis(format="%")),
        color=palette.km_colour(groups),
        tooltip=["group", alt.Tooltip("time_years:Q", format=".2f", title="years"),
                 alt.Tooltip("survival:Q", format=".0%")])
    layers: list[alt.Chart] = []
    if bands:  # fainter the more groups overlap, so four bands do not turn muddy
        band = alt.Chart(data).mark_area(opacity=0.2 if len(groups) <= 2 else 0.08,
                                         interpolate="step-after").encode(
            x=x, y=alt.Y("ci_low:Q", scale=y_scale), y2="ci_high:Q",
            color=palette.km_colour(groups))
        layers.append(band)
    layers.append(line)
    return alt.layer(*layers).properties(
        height=320 + palette.legend_rows_height(len(groups)), title=title)


def at_risk_table(km: KaplanMeierResult) -> pd.DataFrame:
    rows = {}
    for g in km.groups:
        rows[g.name] = {f"{t:g} y": int(n) for t, n in zip(g.at_risk["time_years"],
                                                          g.at_risk["at_risk"])}
    return pd.DataFrame.from_dict(rows, orient="index")


def patient_timeline_chart(clinical: pd.DataFrame, scans: pd.DataFrame,
                           end_date: object, died: bool) -> alt.LayerChart:
    """FVC and DLCO (% predicted) over time, scans as rules, death / last follow-up marker."""
    long = clinical.melt(id_vars=["date"], value_vars=["fvc_pct_pred", "dlco_pct_pred"],
                         var_name="measure", value_name="pct_predicted").dropna()
    long["measure"] = long["measure"].map({"fvc_pct_pred": "FVC % predicted",
                                           "dlco_pct_pred": "DLCO % predicted"})
    long["date"] = pd.to_datetime(long["date"])
    lines = alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("date:T", title="Date", axis=DATE_AXIS),
        y=alt.Y("pct_predicted:Q", title="% predicted", scale=alt.Scale(zero=False)),
        color=alt.Color("measure:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("date:T"), "measure", alt.Tooltip("pct_predicted:Q", format=".1f")])
    sc = pd.DataFrame({"date": pd.to_datetime(scans["scan_date"]),
                       "scan": scans["scan_id"], "what": "CT scan"})
    rules = alt.Chart(sc).mark_rule(color="#7f8c8d", strokeDash=[4, 3]).encode(
        x="date:T", tooltip=["scan", alt.Tooltip("date:T")])
    end = pd.DataFrame({"date": [pd.to_datetime(end_date)],
                        "event": ["death" if died else "last follow-up (alive)"]})
    marker = alt.Chart(end).mark_rule(color="#c0392b" if died else "#27ae60",
                                      strokeWidth=3).encode(x="date:T", tooltip=["event"])
    label = alt.Chart(end).mark_text(align="right", dx=-4, baseline="top",
                                     fontWeight="bold").encode(
        x="date:T", y=alt.value(4), text="event:N")  # inside the plot, by its rule
    return (lines + rules + marker + label).properties(height=330,
                                                       title="Lung function and scans")


def trend_chart(df: pd.DataFrame, date_col: str, value_cols: dict[str, str], title: str,
                y_title: str) -> alt.Chart:
    long = df.melt(id_vars=[date_col], value_vars=list(value_cols), var_name="measure",
                   value_name="value").dropna()
    long["measure"] = long["measure"].map(value_cols)
    long[date_col] = pd.to_datetime(long[date_col])
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X(f"{date_col}:T", title="Scan date", axis=DATE_AXIS),
        y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=alt.Color("measure:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip(f"{date_col}:T"), "measure", alt.Tooltip("value:Q", format=".2f")],
    ).properties(height=290, title=title, padding={"left": 5, "top": 5, "right": 24,
                                                     "bottom": 5})  # room for the last date


def distribution_with_marker(values: np.ndarray, marker: float | None, title: str,
                             x_title: str) -> alt.LayerChart:
    """Histogram of a cohort distribution with a vertical rule at this scan's value."""
    df = pd.DataFrame({x_title: np.asarray(values, dtype=float)})
    hist = alt.Chart(df).mark_bar(color="#aab7c4").encode(
        x=alt.X(f"{x_title}:Q", bin=alt.Bin(maxbins=30), title=x_title),
        y=alt.Y("count():Q", title="Scans"))
    layers = [hist]
    if marker is not None and np.isfinite(marker):
        m = pd.DataFrame({x_title: [marker], "label": ["this scan"]})
        layers.append(alt.Chart(m).mark_rule(color="#c0392b", strokeWidth=3).encode(
            x=f"{x_title}:Q", tooltip=["label", alt.Tooltip(f"{x_title}:Q", format=".1f")]))
    return alt.layer(*layers).properties(height=160, title=title)


def zone_map_chart(cells: pd.DataFrame, metric_label: str, *, domain: tuple[float, float]
                   | None = None) -> alt.LayerChart:
    """The zone map: rows upper / middle / lower third, columns right subpleural ... left
    subpleural (the patient's right on the left, as on a coronal view), each cell coloured by
    its value and labelled with it (cells from :func:`sscmort_core.views.lungs.zone_map_frame`;
    empty zones are grey with "-")."""
    df = cells.copy()
    df["label"] = [("-" if v is None or pd.isna(v) else f"{v:.1f}") for v in df["value"]]
    columns = list(dict.fromkeys(df["column"]))
    scale = alt.Scale(scheme="orangered", domain=list(domain)) if domain else \
        alt.Scale(scheme="orangered")
    base = alt.Chart(df).encode(
        x=alt.X("column:N", sort=columns, title=None, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("third:N", sort=["upper", "middle", "lower"], title=None))
    cells_ = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color("value:Q", scale=scale, title=metric_label,
                        legend=None),  # every cell is labelled with its value
        tooltip=["third", "column", alt.Tooltip("value:Q", format=".1f", title=metric_label),
                 alt.Tooltip("volume_ml:Q", format=".0f", title="volume (mL)")])
    text = base.mark_text(fontSize=13, fontWeight="bold").encode(text="label:N")
    return (cells_ + text).properties(  # padding: row labels and legend stay inside the view
        height=150, title=f"Zone map: {metric_label}",
        padding={"left": 12, "top": 5, "right": 12, "bottom": 12})
