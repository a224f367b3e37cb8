"""HTML tables of small frames (views.tables): escaped, formatted, missing cells marked."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sscmort_core.views.tables import TABLE_CLASS, format_cell, html_table, number_formats


def test_cells_are_escaped_formatted_and_missing_marked():
    frame = pd.DataFrame({"model": ["<b>A</b> & B", "C"], "AUC": [0.71234, np.nan],
                          "p": [0.000412, 0.5], "scans": np.array([1200, 7], dtype=np.int64),
                          "note": ["", "few events"]})
    out = html_table(frame, {"AUC": ".3f", "p": ".3g"}, missing="–")
    assert out.startswith("<style>") and f'<table class="{TABLE_CLASS}">' in out
    assert "<b>A</b>" not in out and "&lt;b&gt;A&lt;/b&gt; &amp; B" in out
    body = out.split("<tbody>")[1]
    assert '<td class="n">0.712</td>' in body and '<td class="n">0.000412</td>' in body
    assert '<td class="n">1,200</td>' in body and '<td class="n">7</td>' in body
    assert body.count("<td>–</td>") == 2  # the NaN AUC and the empty note
    assert body.count("<tr>") == 2 and out.count("<th>") == 5
    assert html_table(frame, with_css=False).startswith("<table")


def test_headers_rename_and_formats_pick_float_columns():
    frame = pd.DataFrame({"a": [1.5], "n": [3], "t": ["x"]})
    assert number_formats(frame, ".2f") == {"a": ".2f"}
    assert "<th>alpha</th>" in html_table(frame, headers={"a": "alpha"})
    assert format_cell(np.float64(0.25), ".1%", "-") == ("25.0%", True)
    assert format_cell(None, None, "-") == ("-", False)
    assert format_cell(True, None, "-") == ("yes", False)
