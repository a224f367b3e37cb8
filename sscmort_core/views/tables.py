"""Small tables as one HTML fragment (issue 13): a page that shows a table of a few dozen
cells draws it as plain HTML instead of a data grid, which costs the browser about a tenth of
the drawing and wraps its cells to the page's width (no sideways scrolling, issue 14).

The HTML is escaped cell by cell; numbers are formatted in Python, so what the page shows is
what :func:`html_table` returns (tests/views).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping

import pandas as pd

TABLE_CLASS = "sscmort-table"
CSS = (f"<style>table.{TABLE_CLASS}{{border-collapse:collapse;width:100%;table-layout:auto;"
       "font-size:0.8rem;margin:0 0 0.75rem 0}"
       f"table.{TABLE_CLASS} th,table.{TABLE_CLASS} td{{border-bottom:1px solid "
       "rgba(49,51,63,0.12);padding:0.2rem 0.4rem;text-align:left;vertical-align:top;"
       "overflow-wrap:break-word}"
       f"table.{TABLE_CLASS} th{{font-weight:600;color:rgba(49,51,63,0.75)}}"
       f"table.{TABLE_CLASS} td.n{{text-align:right;font-variant-numeric:tabular-nums;"
       "white-space:nowrap}</style>")


def format_cell(value: object, fmt: str | None, missing: str) -> tuple[str, bool]:
    """``value`` as shown, and whether it is a number (right-aligned). ``fmt`` is a Python
    format spec for numbers (``".3f"``, ``".3g"``); None, NaN and empty text show ``missing``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing, False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if fmt is None:
            return (f"{value:,}" if isinstance(value, int) else f"{value:.4g}"), True
        return format(value, fmt), True
    if hasattr(value, "item"):  # numpy scalars
        return format_cell(value.item(), fmt, missing)
    text = str(value)
    return (text if text else missing), False


def html_table(frame: pd.DataFrame, formats: Mapping[str, str] | None = None, *,
               missing: str = "–", headers: Mapping[str, str] | None = None,
               with_css: bool = True) -> str:
    """``frame`` as one escaped HTML table: ``formats`` maps a column to a number format,
    ``headers`` renames columns for display; missing values show ``missing``."""
    formats, headers = dict(formats or {}), dict(headers or {})
    head = "".join(f"<th>{html.escape(str(headers.get(c, c)))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False, name=None):
        cells = []
        for col, value in zip(frame.columns, row):
            text, numeric = format_cell(value, formats.get(col), missing)
            cls = ' class="n"' if numeric else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    table = (f'<table class="{TABLE_CLASS}"><thead><tr>{head}</tr></thead><tbody>'
             + "".join(rows) + "</tbody></table>")
    return (CSS + table) if with_css else table


def number_formats(frame: pd.DataFrame, fmt: str) -> dict[str, str]:
    """``fmt`` for each float column of ``frame`` (counts keep their integer format)."""
    return {c: fmt for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
