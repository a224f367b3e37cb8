"""Upload & predict page (AppTest): a real upload of a small synthetic DICOM zip, save to the
cohort, and a bad file that must give one readable error and no traceback."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.dicom import write_dicom_series
from sscmort_core.synthetic.phantom import phantom_for_scan

APP = Path(__file__).resolve().parents[2] / "app.py"


@pytest.fixture(scope="module")
def series_zip(tmp_path_factory) -> bytes:
    row = generate_cohort(n_patients=3, seed=21).scans.to_dict(orient="records")[0]
    folder = tmp_path_factory.mktemp("up") / "series"
    files = write_dicom_series(phantom_for_scan(row), folder, instance_order="shuffled")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f"series/{f.name}")
    return buf.getvalue()


def _upload_page(store_path, monkeypatch) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store_path))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.run()
    at.switch_page("pages/upload_predict.py")
    at.run()
    assert not at.exception
    return at


def test_upload_a_synthetic_series_and_save_it(tiny_store, series_zip, monkeypatch):
    at = _upload_page(tiny_store, monkeypatch)
    assert any("Waiting for a scan" in i.value for i in at.info)
    at.file_uploader[0].set_value(("scan.zip", series_zip, "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    text = "\n".join(m.value for m in at.markdown)
    assert "Identifying tags removed" in text and "PatientName" in text
    assert "SYNTHETIC^PATIENT" not in text
    assert at.get("image"), "no slice image drawn"
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Lung volume"].replace(",", "").split()[0]) > 1000
    assert "ILD extent (%)" in metrics
    save = next(b for b in at.button if b.label == "Save to cohort")  # the form's (new patient)
    save.click().run()
    assert not at.exception
    assert any("Saved as scan" in s.value for s in at.success), [e.value for e in at.error]
    # The app process owns the store; read it through the app's own cached connection.
    from pages._shared import _open

    app_store = _open(str(tiny_store))
    uploaded = app_store.query_df("SELECT * FROM scans WHERE NOT synthetic")
    assert len(uploaded) == 1 and uploaded["volume_sha256"].iloc[0]
    assert (app_store.data_dir / uploaded["volume_path"].iloc[0]).exists()


def test_upload_a_bad_file_gives_one_readable_error(tiny_store, monkeypatch):
    at = _upload_page(tiny_store, monkeypatch)
    at.file_uploader[0].set_value(("notes.txt", b"definitely not a CT scan\n" * 20,
                                   "text/plain")).run()
    assert not at.exception
    assert len(at.error) == 1
    assert "notes.txt" in at.error[0].value
    assert "Traceback" not in at.error[0].value
