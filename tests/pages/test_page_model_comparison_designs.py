"""AppTest of Model comparison's validation-design switch: the store holds a temporal design
(run here); switching to it shows which design the numbers come from, leaves out the deep
model with the reason, and every metric row is the test part's, with CI, counts, estimand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from sscmort_core import store as st
from sscmort_core.pipeline import designs as ds
from tests.pipeline.design_store import (
    build_design_store,
    register_oracle_and_deep,
    register_recipe,
)

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "pages/model_comparison.py"
DESIGN = ds.ValidationDesign("temporal", before=dt.date(2015, 1, 1))


@pytest.fixture()
def page_store(tmp_path):
    path = build_design_store(tmp_path / "designs.duckdb")
    register_oracle_and_deep(path)
    register_recipe(path)
    with st.open_store(path) as s:
        run = ds.run_design(s, DESIGN, n_boot=10)
    return path, run


def _design_box(at: AppTest):
    return next(b for b in at.selectbox if b.label.startswith("Validation design"))


def test_switching_to_a_temporal_design(page_store, monkeypatch):
    path, run = page_store
    monkeypatch.setenv("SSCMORT_STORE", str(path))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    box = _design_box(at)
    assert box.value == ds.CV_SPLIT and len(box.options) == 2
    assert any(c.value.startswith("Design: patient-grouped k-fold") for c in at.caption)

    box.set_value(DESIGN.split)
    for s in at.select_slider:  # fewer resamples: the page computes the design's metrics
        if s.label.startswith("Bootstrap"):
            s.set_value(200)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith(f"Design: {DESIGN.describe()}; refit on the training part")
               for c in at.caption)
    assert any("Not scored under this design" in i.value and "deep models have only" in
               i.value for i in at.info)
    long = at.dataframe[0].value
    computed = long.loc[long["kind"] == "oracle"]
    assert computed["model"].nunique() == 1 and "deep" not in set(long["kind"])
    auc = computed.loc[computed["metric"] == "AUC"].set_index("horizon (years)")
    for r in run.results:
        if r.model_id == "oracle":
            m = r.get("auc")  # the same test part: same scans and events
            assert (auc.loc[r.horizon_years, "scans"], auc.loc[r.horizon_years, "events"]) \
                == (m.n_scans, m.n_events)
    assert auc["CI low"].notna().all() and set(auc["estimand"]) == {"per scan"}
