"""Issue 15's "done when", in process: a scan stored in a (local, real) PACS as JPEG 2000 is
found, fetched, analysed and stored, and its lung mask and QCT / risk report go back to the
PACS as DICOM SEG and SR that highdicom and pydicom read back from it, referencing the
original study; a stored scan exports under its pseudonymous id with new UIDs. Failures
leave the store as it was.

The store is the session's tiny synthetic store with a QCT model trained on it (3 folds), so
the SR carries real per-horizon risks: fresh ones for the fetched scan, out-of-fold ones for
a stored scan.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from sscmort_core import store as st
from sscmort_core.errors import DataError, NotACTSeriesError, PacsResponseError, StoreError
from sscmort_core.imaging import read_volume
from sscmort_core.pacs import PacsClient, fetch_series
from sscmort_core.pipeline.export_dicom import export_scan, stored_predictions
from sscmort_core.pipeline.ingest import analyse_path, store_secret
from sscmort_core.pipeline.pacs import fetch_and_ingest, query, send_back
from sscmort_core.pipeline.predict import predict_all
from tests.pacs.orthanc import truncating_proxy, upload_folder
from tests.pacs.studies import ct_study, mr_series_like, phi


@dataclass(frozen=True)
class Trained:
    path: Path
    models_dir: Path
    model_ids: tuple[str, ...]


@pytest.fixture(scope="module")
def qct_store(tiny_store_template, tmp_path_factory) -> Trained:
    from sscmort_core.tabular.train import train_tabular

    root = tmp_path_factory.mktemp("qct-store")
    path = root / "store.duckdb"
    shutil.copy(tiny_store_template, path)
    with st.open_store(path) as s:
        ids = train_tabular(s, "qct", models_dir=root / "models", folds=3, seed=0)
    return Trained(path, root / "models", tuple(ids))


@pytest.fixture()
def store_copy(qct_store, tmp_path) -> Path:
    dest = tmp_path / "store.duckdb"
    shutil.copy(qct_store.path, dest)
    return dest


@pytest.fixture(scope="module")
def j2k_study(orthanc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("j2k")
    ph, paths = ct_study(folder / "ct", seed=301, syntax=JPEG2000Lossless)
    mr_uid = mr_series_like(paths, folder / "mr")
    upload_folder(orthanc, folder / "ct")
    upload_folder(orthanc, folder / "mr")
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return {"folder": folder / "ct", "phantom": ph, "study": str(ds.StudyInstanceUID),
            "series": str(ds.SeriesInstanceUID), "mr": mr_uid, "n": len(paths)}


def _pacs_temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("sscmort-pacs-*")}


def _series_of(client: PacsClient, study_uid: str) -> dict[str, list]:
    by_modality: dict[str, list] = {}
    for s in client.series_of(study_uid):
        by_modality.setdefault(s.modality or "?", []).append(s)
    return by_modality


def test_j2k_scan_found_fetched_analysed_and_results_sent_back(orthanc, j2k_study, qct_store,
                                                               store_copy, tmp_path):
    before_temp = _pacs_temp_folders()
    with orthanc.client() as client:
        rows = query(client, patient_id=phi(301)["PatientID"])  # found
        assert [r.series_uid for r in rows] == [j2k_study["series"]]
        with st.open_store(store_copy) as s:
            got = fetch_and_ingest(s, client, rows[0].study_uid, rows[0].series_uid,
                                   keep_source=True)
            row = st.scan_row(s, got.result.scan_id)
            report = predict_all(s, got.fetched.analysis, models_dir=qct_store.models_dir)
        assert _pacs_temp_folders() <= before_temp  # the temporary folder is gone
        assert row["source"] == "pacs" and not row["synthetic"]
        # analysed exactly as the same files read from disk
        local = analyse_path(j2k_study["folder"], secret=None)
        np.testing.assert_array_equal(got.fetched.analysis.volume.hu, local.volume.hu)
        np.testing.assert_array_equal(local.volume.hu, j2k_study["phantom"].hu)
        assert got.result.qct == local.qct
        preds = [p for p in report.predictions if p.kind == "qct"]
        assert sorted(p.model_id for p in preds) == sorted(qct_store.model_ids)
        results, sent = send_back(client, got.fetched, preds, patient_id=got.result.patient_id,
                                  scan_date=got.result.scan_date)
        assert results.references_source and sent.n_stored == 2
        series = _series_of(client, j2k_study["study"])  # the original study on the PACS
        assert sorted(series) == ["CT", "MR", "SEG", "SR"]
        assert all("research use only" in s.description for s in series["SEG"] + series["SR"])
        objects = {}
        for modality in ("SEG", "SR"):
            with fetch_series(client, j2k_study["study"], series[modality][0].series_uid) as f:
                objects[modality] = pydicom.dcmread(next(f.iterdir()))
    seg = hd.seg.Segmentation.from_dataset(objects["SEG"])
    sr = hd.sr.Comprehensive3DSR.from_dataset(objects["SR"])
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == j2k_study["series"]
    assert seg.PatientID == phi(301)["PatientID"] == sr.PatientID  # back in the patient's study
    originals = [pydicom.dcmread(p, stop_before_pixels=True)
                 for p in sorted(j2k_study["folder"].iterdir())]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[str(d.SOPInstanceUID) for d in originals], segment_numbers=[1],
        assert_missing_frames_are_empty=True)[..., 0].astype(bool)  # (n, rows, cols)
    vol, lungs = got.fetched.analysis.volume, got.fetched.analysis.lungs
    for i, d in enumerate(originals):
        k = int(round((float(d.ImagePositionPatient[2]) - vol.origin_mm[2]) / vol.spacing_mm[0]))
        np.testing.assert_array_equal(frames[i], lungs.mask[k])
    assert sr.SOPClassUID == objects["SR"].SOPClassUID  # highdicom parses it as a 3D SR
    numbers = _numbers(objects["SR"])
    assert numbers["Volume"] == pytest.approx(got.result.qct.lung_volume_ml)
    assert numbers["Estimated ILD extent"] == pytest.approx(got.result.qct.ild_extent_pct)
    # one measurement group per model: every model's 5-year risk reads back
    assert sorted(_all_numbers(sr, "5-year mortality risk")) == pytest.approx(
        sorted(100 * p.risk_5y for p in preds))
    assert f"{preds[0].model_id}: registered model" in _texts(objects["SR"])


def _items(sr: pydicom.Dataset) -> list[pydicom.Dataset]:
    out: list[pydicom.Dataset] = []

    def walk(items) -> None:
        for item in items:
            out.append(item)
            walk(getattr(item, "ContentSequence", []))

    walk(sr.ContentSequence)
    return out


def _numbers(sr: pydicom.Dataset) -> dict[str, float]:
    """Concept meaning -> value of every NUM item of the SR's content tree."""
    return {str(i.ConceptNameCodeSequence[0].CodeMeaning):
            float(i.MeasuredValueSequence[0].NumericValue)
            for i in _items(sr) if getattr(i, "ValueType", "") == "NUM"}


def _all_numbers(sr: pydicom.Dataset, meaning: str) -> list[float]:
    """Every NUM value of the SR named ``meaning`` (one per model for a risk)."""
    return [float(i.MeasuredValueSequence[0].NumericValue) for i in _items(sr)
            if getattr(i, "ValueType", "") == "NUM"
            and str(i.ConceptNameCodeSequence[0].CodeMeaning) == meaning]


def _texts(sr: pydicom.Dataset) -> set[str]:
    return {str(i.TextValue) for i in _items(sr) if getattr(i, "ValueType", "") == "TEXT"}


def test_failures_leave_the_store_and_no_temporary_folder(orthanc, j2k_study, store_copy):
    before_temp = _pacs_temp_folders()
    with st.open_store(store_copy) as s:
        counts = st.table_counts(s)
        with orthanc.client() as client:
            with pytest.raises(NotACTSeriesError):
                fetch_and_ingest(s, client, j2k_study["study"], j2k_study["mr"])
        with truncating_proxy(orthanc.rest) as proxy:
            client = PacsClient(proxy + "/dicom-web", orthanc.credentials())
            with pytest.raises(PacsResponseError, match="cut short"):
                fetch_and_ingest(s, client, j2k_study["study"], j2k_study["series"])
        assert st.table_counts(s) == counts
    assert _pacs_temp_folders() <= before_temp


def test_a_stored_scan_exports_with_new_uids_and_its_out_of_fold_risks(orthanc, qct_store,
                                                                      store_copy, tmp_path):
    with st.open_store(store_copy) as s:
        scan_id = str(st.scans_frame(s)["scan_id"].iloc[0])
        pid = str(st.scan_row(s, scan_id)["patient_id"])
        oof = stored_predictions(s, scan_id, pid)
        with orthanc.client() as client:
            got = export_scan(s, scan_id, tmp_path / "out", send_to=client,
                              models_dir=qct_store.models_dir)
            on_pacs = {s.study_uid: s for s in client.search_studies(patient_id=pid)}
    assert sorted(p.model_id for p in oof) == sorted(qct_store.model_ids)  # no oracle
    assert got.prediction_source == "out-of-fold" and sorted(got.models) == sorted(
        qct_store.model_ids)
    assert not got.references_source and "UIDs were not kept" in got.note
    assert got.sent is not None and got.sent.n_stored == len(got.files)
    sr = pydicom.dcmread(tmp_path / "out" / "sr.dcm")
    assert sorted(on_pacs[str(sr.StudyInstanceUID)].modalities) == ["CT", "SEG", "SR"]
    seg = hd.seg.segread(tmp_path / "out" / "seg.dcm")
    assert sr.PatientID == pid and seg.PatientID == pid
    assert sr.SeriesDescription.startswith("SYNTHETIC") and "research use only" in \
        sr.SeriesDescription
    assert sorted(_all_numbers(sr, "1-year mortality risk")) == pytest.approx(
        sorted(100 * p.risk_1y for p in oof))
    ct = read_volume(tmp_path / "out" / "ct").volume  # the de-identified CT reads back
    with st.open_store(store_copy) as s:
        from sscmort_core.scans import load_scan_volume
        np.testing.assert_array_equal(ct.hu, load_scan_volume(s, scan_id).hu)


def test_export_refuses_a_used_folder_and_an_unknown_scan(qct_store, store_copy, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    with st.open_store(store_copy) as s:
        scan_id = str(st.scans_frame(s)["scan_id"].iloc[0])
        with pytest.raises(DataError, match="not empty"):
            export_scan(s, scan_id, tmp_path / "used")
        with pytest.raises(StoreError, match="no scan"):
            export_scan(s, "S-nope", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_the_fetched_scan_uses_the_stores_pseudonym(orthanc, j2k_study, store_copy):
    with st.open_store(store_copy) as s, orthanc.client() as client:
        secret = store_secret(s)
        got = fetch_and_ingest(s, client, j2k_study["study"])  # largest CT series by default
    from sscmort_core.imaging import pseudonymous_id
    assert got.result.patient_id == pseudonymous_id(secret, phi(301)["PatientID"])
    assert got.fetched.source is None  # not asked to send back: no source headers kept


def test_a_stored_scan_exports_its_stored_qct_without_measuring_again(qct_store, store_copy,
                                                                      monkeypatch):
    """The store holds the scan's QCT and pattern extents (measured by the current method):
    the export reads them instead of classifying the lungs again; a row measured by another
    method version is measured afresh."""
    from sscmort_core.pipeline import export_dicom

    with st.open_store(store_copy) as s:
        scan_id = str(st.scans_frame(s)["scan_id"].iloc[0])
        stored = st.qct_features_row(s, scan_id)
        calls = []
        real = export_dicom.classify_patterns
        monkeypatch.setattr(export_dicom, "classify_patterns",
                            lambda *a, **k: calls.append(1) or real(*a, **k))
        got = export_dicom.results_for_scan(s, scan_id, models_dir=qct_store.models_dir)
        assert calls == []
        sr = got.results.sr
        assert _numbers(sr)["Volume"] == pytest.approx(stored["lung_volume_ml"])
        assert _numbers(sr)["Estimated ILD extent"] == pytest.approx(stored["ild_extent_pct"])
        with s.transaction() as cur:
            cur.execute("UPDATE qct SET method_version = 'older' WHERE scan_id = ?", [scan_id])
        again = export_dicom.results_for_scan(s, scan_id, models_dir=qct_store.models_dir)
    assert calls == [1]
    assert _numbers(again.results.sr)["Volume"] == pytest.approx(
        stored["lung_volume_ml"], rel=1e-9)  # the same mask and method give the same number
