"""Model comparison offers the report of one evaluated model as a download (built on click)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from sscmort_core import store as st
from sscmort_core.pipeline.evaluate import run_evaluation
from sscmort_core.views.report_render import report_document
from tests.pipeline.test_evaluate import add_noisy_model

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_download_report_for_the_chosen_model(tiny_store, monkeypatch):
    add_noisy_model(tiny_store)
    with st.open_store(tiny_store) as s:
        run_evaluation(s, model_ids=["noisy"], n_boot=50)
        page = report_document(s, "noisy", "html", n_boot=50)  # what the button sends
    monkeypatch.setenv("SSCMORT_STORE", str(tiny_store))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("pages/model_comparison.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    picker = [s for s in at.selectbox if s.label == "Report of one model"]
    assert picker and picker[0].options == ["Deep: resnet18 v1"]  # only evaluated models
    labels = [d.proto.label for d in at.get("download_button")]
    assert "Download report (HTML)" in labels
    # the button sends the report of the chosen model, built only when clicked
    assert page.startswith("<!DOCTYPE html>") and "Model report: Deep: resnet18 v1" in page
    assert "Research use only" in page
