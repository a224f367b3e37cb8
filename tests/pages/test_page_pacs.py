"""Upload & predict's "From PACS" tab and the DICOM downloads (AppTest) against a real Orthanc:
search, pick a series, analyse, send SEG + SR back into the original study; a PACS that is
down is one error box; the timeline prepares a stored scan's SEG + SR for download."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless
from streamlit.testing.v1 import AppTest

from tests.pacs.orthanc import PASSWORD, USER, free_port, upload_folder
from tests.pacs.studies import ct_study, phi

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("page-study")
    _, paths = ct_study(folder / "ct", seed=501, syntax=JPEG2000Lossless)
    upload_folder(orthanc, folder / "ct")
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return {"study": str(ds.StudyInstanceUID), "series": str(ds.SeriesInstanceUID)}


def _page(store, monkeypatch, url: str, page: str = "pages/upload_predict.py") -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store))
    monkeypatch.setenv("SSCMORT_PACS_URL", url)
    monkeypatch.setenv("SSCMORT_PACS_USERNAME", USER)
    monkeypatch.setenv("SSCMORT_PACS_PASSWORD", PASSWORD)
    at = AppTest.from_file(str(APP), default_timeout=240)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _no_trouble(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_search_pick_analyse_and_send_back(orthanc, study, tiny_store, monkeypatch):
    at = _page(tiny_store, monkeypatch, orthanc.url)
    assert at.text_input(key="pacs_url").value == orthanc.url
    at.text_input(key="pacs_patient").set_value(phi(501)["PatientID"])
    at.button(key="pacs_search").click().run()
    _no_trouble(at)
    pick = at.selectbox(key="pacs_pick")
    assert len(pick.options) == 1 and "CT" in pick.options[0]
    assert phi(501)["PatientID"] not in pick.options[0] and study["study"] not in pick.options[0]
    at.checkbox(key="pacs_keep").check()
    at.button(key="pacs_analyse").click().run()
    _no_trouble(at)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Lung volume"].replace(",", "").split()[0]) > 1000
    text = "\n".join(m.value for m in at.markdown)
    assert "SYNTHETIC^PATIENT" not in text and phi(501)["PatientID"] not in text
    at.button(key="pacs_send_back").click().run()
    _no_trouble(at)
    assert any("original study" in s.value for s in at.success)
    with orthanc.client() as client:
        kinds = sorted(s.modality for s in client.series_of(study["study"]))
    assert kinds == ["CT", "SEG", "SR"]
    at.button(key=next(b.key for b in at.button if b.label == "Prepare DICOM SEG + SR")).click()
    at.run()
    _no_trouble(at)
    assert at.get("download_button"), "no download button after preparing"


def test_a_pacs_that_is_down_is_one_error_box(tiny_store, monkeypatch):
    at = _page(tiny_store, monkeypatch, f"http://127.0.0.1:{free_port()}/dicom-web")
    at.button(key="pacs_search").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "nothing answers" in at.error[0].value
    assert "Traceback" not in at.error[0].value


def test_timeline_prepares_a_stored_scans_dicom(orthanc, tiny_store, monkeypatch):
    at = _page(tiny_store, monkeypatch, orthanc.url, "pages/patient_timeline.py")
    prepare = next(b for b in at.button if b.label == "Prepare DICOM SEG + SR")
    prepare.click().run()
    _no_trouble(at)
    assert at.get("download_button")
    assert any("UIDs were not kept" in c.value for c in at.caption)
