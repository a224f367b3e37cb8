"""Import cohort page (AppTest): check a manifest folder, see its problems, run the import as a
job of the app, see failures; then the source filters of Overview and Cohort explorer on the
mixed store, and the stale marks of Models & jobs and Model comparison."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from pages._shared import SYNTHETIC_NOTICE
from sscmort_core import store as st_store
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline import jobs
from sscmort_core.synthetic.registry import write_registry_folder
from sscmort_core.tabular.io import training_label_fingerprint

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app.py"


def _page(store_path, monkeypatch, page: str) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store_path))
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _app_page(store_path, monkeypatch, page: str) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store_path))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    return write_registry_folder(tmp_path_factory.mktemp("reg") / "reg", n_patients=4, seed=21)


def _check(at: AppTest, folder: Path, read_images: bool = False) -> AppTest:
    at.text_input(key="folder").set_value(str(folder))
    if read_images:
        next(c for c in at.checkbox if c.label.startswith("Also read every image")).check()
    next(b for b in at.button if b.label == "Check manifest").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _wait_for_jobs() -> None:
    deadline = time.monotonic() + 180
    while jobs._THREADS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not jobs._THREADS


def test_problems_are_a_table_and_a_bad_image_fails_the_job(registry, tiny_store, tmp_path,
                                                             monkeypatch):
    folder = tmp_path / "reg"
    shutil.copytree(registry.root, folder)
    scans = pd.read_csv(folder / "scans.csv", dtype=str)
    real_date = scans.loc[1, "scan_date"]
    scans.loc[1, "scan_date"] = real_date.replace("-", "/")
    scans.to_csv(folder / "scans.csv", index=False)
    before = Path(tiny_store).read_bytes()
    # through app.py: the job's worker processes re-import the main script (see app.py)
    at = _check(_app_page(tiny_store, monkeypatch, "pages/import_cohort.py"), folder)
    assert at.title[-1].value == "Import cohort"
    assert any("problem(s)" in e.value for e in at.error)
    problems = at.dataframe[0].value
    row = problems.iloc[0]
    assert (row["file"], row["row"], row["column"]) == ("scans.csv", 3, "scan_date")
    assert not any(rid in str(problems) for rid in registry.registry_ids)
    assert real_date.replace("-", "/") not in str(problems)
    assert next(b for b in at.button if b.label == "Start import").disabled
    # fixed date, but one series is not DICOM: the quick check passes, the job refuses
    scans.loc[1, "scan_date"] = real_date
    scans.to_csv(folder / "scans.csv", index=False)
    target = folder / scans.loc[2, "path"]
    shutil.rmtree(target)
    target.mkdir()
    (target / "report.txt").write_text("not an image")
    at = _check(at, folder)
    assert any("passed every check" in s.value for s in at.success), \
        [e.value for e in at.error] + [str(d.value) for d in at.dataframe]
    next(b for b in at.button if b.label == "Start import").click().run()
    _wait_for_jobs()
    at.run()
    assert any("nothing was written" in e.value for e in at.error)
    table = next(d.value for d in at.dataframe if "problem" in d.value.columns)
    assert (table["row"].tolist(), table["column"].tolist()) == ([4], ["path"])
    with st_store.open_store(tiny_store) as s:  # the app's own configuration (it is open)
        counts = st_store.table_counts(s)
        assert counts["patients"] == 12 and counts["jobs"] == 1  # the demo's, and the job row
        assert s.query_df("SELECT * FROM registry_patients").empty
    files = Path(tiny_store).parent / "tiny_files"  # no key, no volume: the journal, the log
    assert {p.name for p in files.rglob("*")} <= {"audit.jsonl", "sscmort.log"}
    del before


def test_import_job_then_sources_on_overview_and_cohort_explorer(registry, tiny_store,
                                                                 monkeypatch):
    at = _check(_app_page(tiny_store, monkeypatch, "pages/import_cohort.py"), registry.root,
                read_images=True)
    assert any("passed every check" in s.value for s in at.success)
    summary = at.dataframe[0].value.set_index("what")["count"]
    assert summary["scans to import"] == registry.n_scans > registry.n_patients == 4
    next(b for b in at.button if b.label == "Start import").click().run()
    assert any("Started job" in s.value for s in at.success)
    _wait_for_jobs()
    at.run()
    assert not at.exception
    assert any(f"Last import: imported {registry.n_scans} scans of 4 patients" in i.value
               for i in at.info), (
        [i.value for i in at.info], [e.value for e in at.error])
    assert any("No scan is waiting" in c.value for c in at.caption)

    at = _app_page(tiny_store, monkeypatch, "pages/overview.py")
    assert any(SYNTHETIC_NOTICE in i.value for i in at.markdown)
    assert any("also 4 real patients" in i.value for i in at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Patients"] == "16"
    by_source = next(d.value for d in at.dataframe if "Source" in d.value.columns)
    assert dict(zip(by_source["Source"], by_source["Patients"])) == {"registry": 4,
                                                                      "synthetic": 12}
    at.multiselect[0].set_value(["registry"]).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Patients"] == "4"
    assert {m.label: m.value for m in at.metric}["Scans"] == str(registry.n_scans)

    at = _app_page(tiny_store, monkeypatch, "pages/cohort_explorer.py")
    source = next(m for m in at.multiselect if m.label == "Source")
    source.set_value(["registry"]).run()
    assert not at.exception
    table = at.dataframe[-1].value
    assert len(table) == 4 and set(table["source"]) == {"registry"}


def _fake_model(store_path: Path) -> str:
    """A QCT-kind model registered with the label fingerprint of every stored scan and an OOF
    risk for each (what train_tabular records), so the staleness check has something real to
    compare."""
    with st_store.open_store(store_path) as s:
        scan_ids = st_store.scans_frame(s)["scan_id"].tolist()
        fp = training_label_fingerprint(s, scan_ids)
        with s.transaction() as cur:
            st_store.upsert_model(cur, model_id="qct-test", kind="qct", backbone=None,
                                  version="1", config={}, data_hash="d", weights_path=None,
                                  weights_sha256=None,
                                  card={"label": "QCT test model", "label_fingerprint": fp},
                                  synthetic=True)
            st_store.insert_frame(cur, "predictions", pd.DataFrame(
                [{"model_id": "qct-test", "scan_id": sid, "horizon_years": h, "risk": 0.1 * h,
                  "fold": 0, "split": "oof"} for sid in scan_ids for h in HORIZONS_YEARS]))
    return "qct-test"


def test_stale_marks_on_models_and_comparison(tiny_store, monkeypatch, tmp_path):
    monkeypatch.setenv("SSCMORT_MODELS", str(tmp_path))
    model_id = _fake_model(tiny_store)
    at = _page(tiny_store, monkeypatch, "models_jobs.py")
    status = at.dataframe[0].value.set_index("model_id")["status"]
    assert status[model_id] == "current" and status["oracle"].startswith("unknown")
    with st_store.open_store(tiny_store) as s:
        pats = st_store.patients_frame(s)
        pid = pats.loc[~pats["died"], "patient_id"].iloc[0]
        fu = st_store.patient_row(s, pid)["last_followup_date"]
        with s.transaction() as cur:  # as a registry re-import would: a new death
            st_store.update_patient(cur, pid, {"death_date": fu, "last_followup_date": fu})
    at = _page(tiny_store, monkeypatch, "models_jobs.py")
    status = at.dataframe[0].value.set_index("model_id")["status"]
    assert status[model_id].startswith("stale: outcomes of its training scans changed")
    assert any("Stale" in w.value and "QCT test model" in w.value for w in at.warning)
    at = _page(tiny_store, monkeypatch, "model_comparison.py")
    picker = at.multiselect[0]
    assert "QCT test model [stale]" in picker.format_func(model_id)
    assert any(w.value.startswith("Stale: QCT test model") for w in at.warning)


CORE_PAGES = ("pages/overview.py", "pages/cohort_explorer.py", "pages/patient_timeline.py",
              "pages/model_comparison.py")
OTHER_PAGES = ("pages/upload_predict.py", "pages/radiomics_shap.py", "pages/models_jobs.py",
               "pages/import_cohort.py")


@pytest.fixture(scope="module")
def registry_only_store(registry, tmp_path_factory):
    from sscmort_core.cli import main

    store = tmp_path_factory.mktemp("real") / "real.duckdb"
    assert main(["import", str(registry.root), "--store", str(store), "--workers", "1",
                 "--quiet"]) == 0
    return store


def _no_synthetic_label(store: Path, pages: tuple[str, ...], monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SSCMORT_MODELS", str(tmp_path / "models"))
    for page in pages:
        at = _app_page(store, monkeypatch, page)
        assert not any(SYNTHETIC_NOTICE in i.value for i in at.markdown), page
        assert not any("SYNTHETIC" in m.value for m in at.markdown), page
        if page == "pages/overview.py":
            assert {m.label: m.value for m in at.metric}["Patients"] == "4"
            assert not at.multiselect  # one source: no source picker
        if page == "pages/patient_timeline.py":
            assert at.get("image"), "the slice viewer drew no image of the stored volume"


def test_pages_on_a_registry_only_store(registry_only_store, monkeypatch, tmp_path):
    """A store holding only an imported registry: the cohort pages run, none says synthetic."""
    _no_synthetic_label(registry_only_store, CORE_PAGES, monkeypatch, tmp_path)


@pytest.mark.slow
def test_the_other_pages_on_a_registry_only_store(registry_only_store, monkeypatch, tmp_path):
    _no_synthetic_label(registry_only_store, OTHER_PAGES, monkeypatch, tmp_path)
