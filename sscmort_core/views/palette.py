"""One colour layer for every chart (issue 14): models, horizons and Kaplan-Meier groups.

- Models: a colour is keyed on the model id within the *registry* (every model the page can
  offer, sorted by id), so removing a model from a selection never recolours the others. The
  synthetic oracle is always black; further oracles (the imaging-only one) are greys.
- Horizons: one dash per horizon, with legend symbols drawn as strokes so the dash shows.
- KM groups: solid legend swatches in the line colour (bands stay pale, the key does not).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import altair as alt

from sscmort_core.labels import HORIZONS_YEARS

# Colour-blind-aware categorical palette (Tableau 10 order, then Paul Tol's "muted").
MODEL_PALETTE: tuple[str, ...] = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#332288", "#117733", "#44aa99", "#882255", "#aa4499", "#999933")
ORACLE_COLOUR = "#111111"
ORACLE_SHADES: tuple[str, ...] = (ORACLE_COLOUR, "#707070", "#a8a8a8")  # oracles by id
# dash per horizon (1, 3, 5 years): solid, long dash, dots
HORIZON_DASHES: dict[int, list[int]] = {1: [1, 0], 3: [8, 4], 5: [2, 3]}
KM_PALETTE: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e",
                               "#8c564b")


def model_colours(registry: Iterable[str], oracle: Iterable[str] = ()) -> dict[str, str]:
    """{model id: colour} for every id in ``registry`` (sorted, so the mapping depends only on
    which models exist, not on which are shown); ids in ``oracle`` (and the demo's "oracle")
    are black, then greys, in id order."""
    oracle = set(oracle)
    out: dict[str, str] = {}
    i = j = 0
    for m in sorted(set(registry)):
        if m in oracle or m == "oracle":  # the demo's synthetic oracles
            out[m] = ORACLE_SHADES[min(j, len(ORACLE_SHADES) - 1)]
            j += 1
            continue
        out[m] = MODEL_PALETTE[i % len(MODEL_PALETTE)]
        i += 1
    return out


def model_scale(shown: Sequence[tuple[str, str]],
                colours: Mapping[str, str] | None = None) -> alt.Scale:
    """A colour scale over legend texts: ``shown`` is (model id, legend text) in legend order;
    colours from ``colours`` (see :func:`model_colours`), else from the shown ids alone."""
    known = colours_for([m for m, _ in shown], colours)
    return alt.Scale(domain=[t for _, t in shown], range=[known[m] for m, _ in shown])


def colours_for(ids: Iterable[str], colours: Mapping[str, str] | None = None
                ) -> dict[str, str]:
    """{id: colour} for ``ids``: from ``colours`` (see :func:`model_colours`), and ids outside
    it (outside the registry, or no registry given) coloured among themselves."""
    known = dict(colours or {})
    missing = [m for m in dict.fromkeys(ids) if m not in known]
    if missing:
        known.update(model_colours(missing))
    return known


def horizon_text(years: int) -> str:
    return f"{int(years)}-year"


def horizon_dash(legend: bool = True, orient: str = "bottom") -> alt.StrokeDash:
    """strokeDash on a ``horizon`` field holding "1-year" / "3-year" / "5-year", whose legend
    symbols are line strokes (so the dash is visible, not three identical dots)."""
    leg = alt.Legend(title="Horizon", orient=orient, symbolType="stroke", symbolSize=500,
                     symbolStrokeWidth=2.5, symbolStrokeColor="#333333",
                     direction="horizontal") if legend else None
    return alt.StrokeDash("horizon:N", legend=leg, scale=alt.Scale(
        domain=[horizon_text(h) for h in HORIZONS_YEARS],
        range=[HORIZON_DASHES[h] for h in HORIZONS_YEARS]))


def km_colour(groups: Sequence[str], title: str = "Group") -> alt.Color:
    """Colour per KM group with solid square swatches (opacity 1) in a bottom legend. Every
    layer of a chart passes the same legend: a layer with a null legend drops the merged key
    in the browser's Vega-Lite."""
    leg = alt.Legend(title=title, orient="bottom", direction="vertical", symbolType="square",
                     symbolOpacity=1.0, symbolSize=160, labelLimit=0)
    return alt.Color("group:N", legend=leg, scale=alt.Scale(
        domain=list(groups), range=[KM_PALETTE[i % len(KM_PALETTE)]
                                    for i in range(len(groups))]))


def legend_rows_height(n_rows: int, row_px: int = 20) -> int:
    """Pixels a bottom vertical legend of ``n_rows`` entries needs (with its title)."""
    return 24 + row_px * n_rows
