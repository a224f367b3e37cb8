"""One AppTest per page on a tiny generated store: no exception, and real content."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from pages._shared import RESEARCH_NOTICE, SYNTHETIC_NOTICE

APP = Path(__file__).resolve().parents[2] / "app.py"


def _app(store_path, monkeypatch, page: str | None = None, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store_path))
    at = AppTest.from_file(str(APP), default_timeout=120)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.warning] + \
            [i.value for i in at.info] + [t.value for t in at.title] + \
            [c.value for c in at.caption] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


def _banners_present(at: AppTest) -> None:
    assert any(RESEARCH_NOTICE in w.value for w in at.markdown)
    assert any(SYNTHETIC_NOTICE in i.value for i in at.markdown)


def test_overview(tiny_store, monkeypatch):
    at = _app(tiny_store, monkeypatch)
    _banners_present(at)
    assert at.title[0].value == "Overview"
    labels = {m.label: m.value for m in at.metric}
    assert labels["Patients"] == "12"
    assert int(labels["Scans"]) >= 12
    table = at.dataframe[0].value
    assert list(table["Horizon (y)"]) == [1, 3, 5]
    assert (table["Died within horizon"] + table["Known alive"] + table["Censored"]
            == int(labels["Scans"])).all()
    assert len(at.get("vega_lite_chart")) == 3


def test_cohort_explorer_filters_and_km(tiny_store, monkeypatch):
    at = _app(tiny_store, monkeypatch, "pages/cohort_explorer.py")
    _banners_present(at)
    assert "12 of 12 patients" in _texts(at)
    at.selectbox[0].set_value("Sex").run()
    assert not at.exception
    assert any("log-rank p" in str(c.proto) for c in at.get("vega_lite_chart"))
    at.multiselect[0].set_value(["F"]).run()  # Sex filter
    assert not at.exception
    text = _texts(at)
    n_f = int(text.split(" of 12 patients")[0].split()[-1])
    assert 0 < n_f <= 12
    patients_table = at.dataframe[-1].value
    assert len(patients_table) == n_f and set(patients_table["sex"]) == {"F"}
    assert patients_table["patient_id"].str.startswith("patient_timeline?patient=").all()


def test_patient_timeline_with_query_param(tiny_store, tiny_store_template, monkeypatch):
    from sscmort_core import store as st_store

    with st_store.open_store(tiny_store_template, read_only=True) as s:
        pid = st_store.patients_frame(s)["patient_id"].iloc[2]
    at = _app(tiny_store, monkeypatch, "pages/patient_timeline.py", {"patient": pid})
    _banners_present(at)
    assert at.selectbox[0].value == pid
    assert len(at.get("vega_lite_chart")) >= 1
    images = at.get("image")
    assert images, "slice viewer drew no image"
    at.slider[0].set_value(0).run()
    assert not at.exception
