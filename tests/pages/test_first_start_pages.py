"""First start (issue 13): every page opens without an exception on a demo store built up to
each intermediate step (the background build fills the store step by step while the app
serves), shows the build panel, and says what is still coming where it needs it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from sscmort_core import store as st
from sscmort_core.pipeline.demo import demo_plan, demo_state, record_plan, run_demo_steps
from sscmort_core.util.executors import LocalExecutor

APP = Path(__file__).resolve().parents[2] / "app.py"
PAGES = ("overview", "cohort_explorer", "patient_timeline", "upload_predict",
         "radiomics_shap", "model_comparison", "models_jobs", "import_cohort", "audit")
# the store after these steps -> a page that must say that this part is still coming
SNAPSHOTS = {
    None: {"overview": "cohort", "cohort_explorer": "cohort", "patient_timeline": "cohort",
           "model_comparison": "models"},
    "cohort": {"overview": "lung masks and QCT", "radiomics_shap": "radiomics features",
               "model_comparison": "models"},
    "scans": {"model_comparison": "models", "radiomics_shap": "models"},
    "tabular:radiomics": {"model_comparison": "models", "models_jobs": "models"},
    "tabular:clinical_qct": {"model_comparison": "models"},  # the longitudinal model next
    "tabular:longitudinal": {"model_comparison": "model metrics"},
}


@pytest.fixture(scope="module")
def staged_stores(tmp_path_factory) -> dict[str | None, Path]:
    """A 5-patient demo (radiomics, tabular models, evaluation; no deep backbones, which would
    cost minutes) built step by step, copied after each step of SNAPSHOTS."""
    folder = tmp_path_factory.mktemp("staged")
    path = folder / "build.duckdb"
    plan = demo_plan(5, 3, ("radiomics", "tabular", "evaluate"))
    out: dict[str | None, Path] = {}
    with st.open_store(path) as store:
        record_plan(store, plan)
    shutil.copy(path, folder / "plan.duckdb")
    out[None] = folder / "plan.duckdb"
    for step in plan.steps:
        with st.open_store(path) as store:
            assert run_demo_steps(store, executor=LocalExecutor(1), stop_after=step) == (step,)
        if step in SNAPSHOTS or step == plan.steps[-1]:
            out[step] = folder / f"after-{step.replace(':', '-')}.duckdb"
            shutil.copy(path, out[step])
    return out


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.warning] + \
            [i.value for i in at.info] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("after", list(SNAPSHOTS), ids=lambda s: f"after-{s or 'plan'}")
def test_every_page_works_on_a_partly_built_store(staged_stores, after, tmp_path,
                                                   monkeypatch):
    store = tmp_path / "store.duckdb"
    shutil.copy(staged_stores[after], store)
    monkeypatch.setenv("SSCMORT_STORE", str(store))
    monkeypatch.delenv("SSCMORT_DEMO_BUILD", raising=False)  # no background build here
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    for page in PAGES:
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        text = _texts(at)
        assert "The demo build is incomplete" in text, page  # the panel, on every page
        part = SNAPSHOTS[after].get(page)
        if part:
            assert f"Still coming: {part}:" in text, (page, text)


def test_a_complete_store_shows_no_panel(staged_stores, tmp_path, monkeypatch):
    last = max((k for k in staged_stores if k), key=lambda k: staged_stores[k].stat().st_mtime)
    store = tmp_path / "store.duckdb"
    shutil.copy(staged_stores[last], store)
    with st.open_store(store, read_only=True) as s:
        assert demo_state(s).complete
    monkeypatch.setenv("SSCMORT_STORE", str(store))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    for page in ("overview", "model_comparison"):
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert "demo build" not in _texts(at) and "Still coming" not in _texts(at)


def test_the_panel_follows_a_running_build_and_goes_when_it_is_done(staged_stores, tmp_path,
                                                                      monkeypatch):
    """The app asked to build (as ``sscmort app`` asks it) continues the build in its own
    process: the panel shows the step, % and time left; when the build is done it is gone."""
    from pages._shared import _open
    from sscmort_core.pipeline import demo_job, jobs

    store = tmp_path / "store.duckdb"
    shutil.copy(staged_stores["scans"], store)
    monkeypatch.setenv("SSCMORT_STORE", str(store))
    monkeypatch.setenv("SSCMORT_DEMO_BUILD", "5:3")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    text = _texts(at) + "\n".join(str(p.proto) for p in at.get("progress"))
    n_steps = len(demo_state(_open(str(store))).plan.steps)  # the app's own handle
    assert "Building the demo cohort**: step" in text and f" of {n_steps}, " in text, text
    assert " left." in text and "Still coming: " in text
    job_id = demo_job.ensure_demo_build(_open(str(store)))  # the app's build, not a second one
    assert job_id is not None and jobs.wait(job_id, timeout_s=300)
    assert len(st.jobs_frame(_open(str(store)))) == 1
    at.switch_page("pages/model_comparison.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "demo build" not in _texts(at) and "Still coming" not in _texts(at)
    assert any("AUC" in str(c.proto) for c in at.get("vega_lite_chart"))
