"""AppTest of the Radiomics & SHAP page on a tiny store with trained tabular models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages._shared import RESEARCH_NOTICE, SYNTHETIC_NOTICE
from sscmort_core import store as st
from sscmort_core.tabular.train import train_tabular
from tests.tabular.test_tabular import FAKE_FEATURES, add_fake_radiomics

PAGE = "pages/radiomics_shap.py"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page_store(tiny_store_template, tmp_path_factory):
    root = tmp_path_factory.mktemp("page_radiomics")
    path = root / "store.duckdb"
    shutil.copy(tiny_store_template, path)
    add_fake_radiomics(path, seed=1)
    with st.open_store(path) as s:
        ids = train_tabular(s, "qct", models_dir=root / "models", folds=3)
        ids += train_tabular(s, "radiomics", models_dir=root / "models", folds=3)
        scan_id = st.scans_frame(s)["scan_id"].iloc[4]
    return path, ids, scan_id


def _charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart")) + list(at.get("arrow_vega_lite_chart"))


def _run(path, monkeypatch, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(path))
    at = AppTest.from_file(str(REPO / PAGE), default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_draws_browser_summary_and_waterfall(page_store, monkeypatch):
    path, ids, _ = page_store
    at = _run(path, monkeypatch)
    assert at.title[0].value == "Radiomics & SHAP"
    assert any(RESEARCH_NOTICE in w.value for w in at.markdown)
    assert any(SYNTHETIC_NOTICE in i.value for i in at.markdown)
    assert not at.error
    assert len(_charts(at)) == 4  # outcome box, kernel box, beeswarm, waterfall
    assert all("(AUC " in o for o in at.selectbox(key="fb_feature").options)
    assert len(at.selectbox(key="fb_feature").options) == len(FAKE_FEATURES)
    metrics = {m.label: m.value for m in at.metric}
    died, alive = (int(v) for v in metrics["Died / alive"].split(" / "))
    assert died > 0 and alive > 0
    at.selectbox(key="fb_feature").set_value("original_firstorder_Median").run()
    at.radio(key="fb_group").set_value("scanner").run()
    at.radio(key="sum_horizon").set_value(1).run()
    at.selectbox(key="sum_model").set_value(ids[0]).run()  # the QCT model
    assert not at.exception, [e.value for e in at.exception]
    assert len(_charts(at)) == 4


def test_scan_link_opens_its_explanation(page_store, monkeypatch):
    """The patient timeline links scans as radiomics_shap?scan=<id> (and model=<id>)."""
    path, ids, scan_id = page_store
    at = _run(path, monkeypatch, {"scan": scan_id, "model": ids[-1]})
    assert at.selectbox(key="one_scan").value == scan_id
    assert at.selectbox(key="one_model").value == ids[-1]
    assert any("patient_timeline?patient=" in m.value for m in at.markdown)


def test_page_without_features_or_models_says_what_to_run(tiny_store, monkeypatch):
    at = _run(tiny_store, monkeypatch)
    infos = " ".join(i.value for i in at.info)
    assert "sscmort radiomics" in infos and "sscmort train --kind radiomics" in infos


def test_page_in_app_navigation(page_store, monkeypatch):
    assert PAGE in (REPO / "app.py").read_text()
    path, _, _ = page_store
    monkeypatch.setenv("SSCMORT_STORE", str(path))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Radiomics & SHAP" and _charts(at)
