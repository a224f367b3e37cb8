"""AppTest of the Model comparison page on the tiny store with the oracle and a noisy model."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages._comparison import NOT_COMPUTED, PAIRED_SHOWN
from pages._shared import RESEARCH_NOTICE, SYNTHETIC_NOTICE
from sscmort_core import store as st
from sscmort_core.evaluation import PER_PATIENT, PER_SCAN
from sscmort_core.pipeline import evaluate as ev
from tests.pipeline.test_evaluate import add_noisy_model

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/model_comparison.py"


def _open(store_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store_path))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


class _Rows(HTMLParser):
    """The body rows of each HTML table, as cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._in_body = self._in_cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[-1].append([])
        elif tag == "td" and self._in_body:
            self._in_cell = True
            self.tables[-1][-1].append("")

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.tables[-1][-1][-1] += data


def _html_tables(at: AppTest) -> list[list[list[str]]]:
    parser = _Rows()
    for el in at.get("html"):
        parser.feed(el.proto.body)
    return parser.tables


def _titles(spec: dict) -> list[str]:
    """Titles of a chart and of its layers / concatenated parts."""
    out = [spec.get("title")] if isinstance(spec.get("title"), str) else []
    for part in spec.get("layer", []) + spec.get("hconcat", []) + spec.get("vconcat", []):
        out += _titles(part)
    return out


@pytest.fixture()
def page_store(tiny_store):
    add_noisy_model(tiny_store)
    return tiny_store


def test_page_offers_to_compute_then_draws_rocs_table_and_downloads(page_store, monkeypatch):
    at = _open(page_store, monkeypatch)
    assert at.title[0].value == "Model comparison"
    assert any(RESEARCH_NOTICE in w.value for w in at.markdown)
    assert any(SYNTHETIC_NOTICE in i.value for i in at.markdown)
    assert any("not computed yet" in w.value for w in at.warning)
    # noisy and both oracles (the honest and the imaging-only one)
    compute = [b for b in at.button if b.label.startswith("Compute metrics for 3 model")]
    assert compute, [b.label for b in at.button]
    compute[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("not computed yet" in w.value for w in at.warning)

    table = at.dataframe[0].value  # long: one row per horizon, model and metric
    # every stored metric is shown with its CI, counts, estimand and censoring
    assert {"Uno's C to horizon", "IPCW Brier", "observed / expected", "AUC per patient",
            "IPCW calibration slope"} <= set(table["metric"])
    computed = table.loc[(table["kind"] != "reported") & table["value"].notna()]
    assert computed["CI low"].notna().all() and computed["events"].notna().all()
    assert set(computed["estimand"]) == {PER_SCAN, PER_PATIENT}  # AUC per patient's own
    # curves are drawn where the metrics could be computed (same too-few-events rule)
    noisy = table.loc[(table["kind"] == "deep") & (table["metric"] == "AUC")]
    drawable = noisy.loc[noisy["value"].notna(), "horizon (years)"].tolist()
    assert drawable, "the tiny cohort should have enough events at some horizon"
    assert "reported" in set(table["kind"])
    assert (table.loc[(table["kind"] == "reported") & (table["horizon (years)"] == 3), "value"]
            .dropna().tolist() == [0.801])
    oracle = table.loc[table["kind"] == "oracle", "model"]
    assert oracle.str.startswith(("Oracle (risk given what is knowable",
                                  "Imaging-only oracle")).all()
    assert oracle.str.startswith("Imaging-only oracle").any()
    assert "Download the table (CSV)" in [d.proto.label for d in at.get("download_button")]

    # the horizon tabs are lazy: only the open tab's charts and tests are on the page
    for h in (1, 3, 5):
        at.session_state["mc_horizon"] = f"{h} year{'s' if h > 1 else ''}"
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        titles = [t for spec in _chart_specs(at) for t in _titles(spec)]
        assert not [t for t in titles if t.startswith(("ROC at", "Calibration at", "Decision"))
                    and not t.startswith((f"ROC at {h} y", f"Calibration at {h} y",
                                          f"Decision curve at {h} y"))], titles
        pngs = [d.proto.label for d in at.get("download_button")].count(
            "Download these charts (PNG)")
        if h in drawable:
            assert any(t.startswith(f"ROC at {h} year") for t in titles)
            assert any(t.startswith(f"Calibration at {h} year") for t in titles)
            assert any(t.startswith(f"Decision curve at {h} year") for t in titles)
            assert pngs == 1
            # paired tests: a row per pair of the 3 models
            assert len(at.dataframe) == 1
            paired = _html_tables(at)[0]  # drawn as plain HTML (issue 13)
            assert len(paired) == 3 and paired[0][:2] != paired[1][:2]
            assert all(row[PAIRED_SHOWN.index("p method")] != NOT_COMPUTED for row in paired)
        else:  # says so instead of drawing
            assert any(f"no curve at {h} y, too few" in i.value for i in at.info)
            assert pngs == 0 and len(at.dataframe) == 1 and not _html_tables(at)

    # the per-patient switch recomputes every metric with each patient weighted equally
    at.radio[0].set_value(PER_PATIENT).run()
    assert not at.exception, [e.value for e in at.exception]
    per_patient = at.dataframe[0].value
    rows = per_patient.loc[per_patient["kind"] != "reported"]
    assert set(rows["estimand"]) == {PER_PATIENT}
    auc_pp = rows.loc[(rows["metric"] == "AUC") & rows["value"].notna()].set_index(
        ["model", "horizon (years)"])["value"]
    stored_pp = computed.loc[computed["metric"] == "AUC per patient"].set_index(
        ["model", "horizon (years)"])["value"]
    assert len(auc_pp) and (auc_pp - stored_pp.loc[auc_pp.index]).abs().max() < 1e-12


def test_page_without_models_says_so(tiny_store, monkeypatch):
    with st.open_store(tiny_store) as s:
        with s.transaction() as cur:
            cur.execute("DELETE FROM predictions")
    at = _open(tiny_store, monkeypatch)
    assert any("No model has out-of-fold predictions" in i.value for i in at.info)


def test_overview_shows_best_model_per_horizon(page_store, monkeypatch):
    with st.open_store(page_store) as s:
        ev.run_evaluation(s, n_boot=200, min_events=1)
    monkeypatch.setenv("SSCMORT_STORE", str(page_store))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert {"1-year AUC", "3-year AUC", "5-year AUC"} <= set(metrics)
    assert any(c.value.startswith("Deep: resnet18 v1 [95% CI") for c in at.caption)
    # the selection it came from: one evaluated candidate here (the oracle left out)
    assert any("Selection: highest OOF AUC (per scan, patient-grouped CV) of 1 evaluated"
               in c.value for c in at.caption)


def test_contradictory_dates_are_one_error_per_tab_not_a_traceback(page_store, monkeypatch):
    with st.open_store(page_store) as s:
        scan = st.scans_frame(s).iloc[0]
        s.con.execute("UPDATE patients SET death_date = ? WHERE patient_id = ?",
                      [scan["scan_date"] - __import__("datetime").timedelta(days=1),
                       scan["patient_id"]])
    at = _open(page_store, monkeypatch)  # asserts no exception
    errors = [e.value for e in at.error]
    assert errors and all("is not after scan date" in e for e in errors), errors
    assert any(f"scan {scan['scan_id']}" in e for e in errors)
