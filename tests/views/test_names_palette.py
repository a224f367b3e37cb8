"""The naming and colour layer of issue 14 (views.names, views.palette, views.upload)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sscmort_core.predictions import RiskPrediction
from sscmort_core.views import names, palette, radiomics_charts, upload


def test_risks_are_whole_percents_by_one_rule():
    assert [names.format_risk(p) for p in (0.0566, 0.07, 0.135, 0.004, 0.9951, None)] == [
        "6%", "7%", "14%", "<1%", ">99%", "n/a"]
    assert names.risk_percent(0.345) == 35.0  # half up, as shown


def test_volumes_integers_and_geometry_in_one_order():
    assert names.format_volume_ml(5553.6) == "5,554 mL"
    # (z, y, x) in, x x y x z out, for the grid and the spacing alike
    assert names.format_shape((64, 512, 400)) == "400 x 512 x 64"
    assert names.format_spacing((5.0, 0.84, 0.8)) == "0.80 x 0.84 x 5.00"


def test_headers_are_human_and_titles_keep_acronyms():
    df = pd.DataFrame({"scan_id": [1], "n_scans": [2], "model_id": [3], "some_thing": [4]})
    assert list(names.human_columns(df).columns) == ["Scan", "Scans", "Model id",
                                                     "Some thing"]
    assert names.sentence("Baseline ILD extent (QCT, >20% = extensive)") == \
        "baseline ILD extent (QCT, >20% = extensive)"
    assert names.horizon_label(1) == "1 year" and names.horizon_label(5) == "5 years"


def test_compact_table_merges_cis_and_never_prints_none():
    f = pd.DataFrame({"horizon (years)": [1, 3], "model": ["a", "b"], "model_id": ["x", "y"],
                      "AUC": [0.9341, None], "AUC CI low": [0.907, None],
                      "AUC CI high": [0.96, None], "p": [0.0001, 0.2], "events": [3.0, 4.0],
                      "note": [None, "n"]})
    out = names.compact_table(f)
    assert list(out.columns) == ["Horizon (y)", "Model", "AUC (95% CI)", "p", "Deaths", "Note"]
    assert out["AUC (95% CI)"].tolist() == ["0.934 (0.907-0.960)", "n/a"]
    assert out["p"].tolist() == ["<0.001", "0.200"] and out["Deaths"].tolist() == ["3", "4"]
    assert "None" not in out.to_string()


def test_model_colours_do_not_change_when_a_model_is_removed():
    registry = ["deep-b", "oracle", "deep-a", "radiomics-1"]
    colours = palette.model_colours(registry, oracle=["oracle"])
    assert colours["oracle"] == palette.ORACLE_COLOUR
    full = palette.model_scale([("deep-a", "A"), ("deep-b", "B"), ("radiomics-1", "R")],
                               colours).to_dict()
    fewer = palette.model_scale([("deep-b", "B"), ("radiomics-1", "R")], colours).to_dict()
    assert dict(zip(full["domain"], full["range"]))["R"] == \
        dict(zip(fewer["domain"], fewer["range"]))["R"]
    assert len(set(full["range"])) == 3


def test_risk_lines_show_dashes_in_the_legend_and_scale_to_the_data():
    df = pd.DataFrame({"scan_id": ["s1", "s2"] * 3, "model_id": "m", "kind": "deep",
                       "model": "M", "scan_date": pd.to_datetime(["2019-01-01", "2021-01-01"]
                                                                 * 3),
                       "horizon": ["1-year"] * 2 + ["3-year"] * 2 + ["5-year"] * 2,
                       "horizon_years": [1, 1, 3, 3, 5, 5],
                       "risk": [0.01, 0.02, 0.05, 0.06, 0.10, 0.12]})
    spec = radiomics_charts.risk_lines_chart(df).to_dict()
    dash = spec["layer"][0]["encoding"]["strokeDash"]
    assert dash["legend"]["symbolType"] == "stroke"
    assert len({tuple(d) for d in dash["scale"]["range"]}) == 3  # three distinct dashes
    y = spec["layer"][0]["encoding"]["y"]["scale"]["domain"]
    assert y[1] < 0.5  # not a fixed 0-100% axis
    full = radiomics_charts.risk_lines_chart(df, full_scale=True).to_dict()
    assert full["layer"][0]["encoding"]["y"]["scale"]["domain"] == [0.0, 1.0]


def _pred(mid, kind, r):
    return RiskPrediction(mid, kind, mid.upper(), *r, note="random init, frozen backbone")


def test_risk_table_full_notes_and_spread():
    preds = [_pred("a", "deep", (0.05, 0.1, 0.134)), _pred("b", "radiomics", (0.1, 0.2, 0.347)),
             _pred("oracle", "oracle", (0.5, 0.6, 0.9))]
    table = upload.risk_table(preds)
    assert table["Note"].iloc[0] == "random init, frozen backbone"
    assert table["5-year risk"].tolist() == ["90%", "35%", "13%"]
    spread = {s.horizon_years: s for s in upload.risk_spread(preds)}
    assert spread[5].text == "5 years: 13% to 35% (median 24%)" and spread[5].n_models == 2


def test_a_monotone_adjusted_risk_is_noted_once_from_its_flag():
    from sscmort_core.predictions import MONOTONE_NOTE

    plain = RiskPrediction("q", "qct", "Q", 0.1, 0.2, 0.2, monotone_adjusted=True)
    both = RiskPrediction("r", "radiomics", "R", 0.1, 0.2, 0.3, monotone_adjusted=True,
                          note="2 missing feature(s) imputed with training medians")
    table = upload.risk_table([plain, both]).set_index("Model")
    assert table.loc["Q", "Note"] == MONOTONE_NOTE
    assert table.loc["R", "Note"] == f"{both.note}; {MONOTONE_NOTE}"
    assert plain.as_row()["note"] == MONOTONE_NOTE
    assert _pred("a", "deep", (0.1, 0.2, 0.3)).notes_text == "random init, frozen backbone"


class _Slice:
    def __init__(self, z, att):
        self.z_index, self.attention = z, att


class _Sal:
    def __init__(self, slices):
        self.slices = slices


def test_saliency_slices_lie_within_the_lungs_in_scan_order():
    mask = np.zeros((60, 8, 8), dtype=bool)
    mask[10:50, 1:7, 1:7] = True
    mask[10:12] = False
    mask[10:12, 3:4, 3:4] = True  # the lung's tip: a sliver below the share floor
    sal = _Sal([_Slice(52, 0.9), _Slice(11, 0.8), _Slice(40, 0.5), _Slice(20, 0.4),
                _Slice(30, 0.1)])
    # 52 lies outside the lungs and 11 in a sliver: left out; the rest by z
    assert [sal.slices[i].z_index for i in upload.saliency_slices_shown(sal, mask)] == [
        20, 30, 40]
