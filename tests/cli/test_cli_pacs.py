"""``sscmort pacs query|fetch`` and ``sscmort export-dicom`` through
:func:`sscmort_core.cli.main` against a real Orthanc: JSON summaries on success; every PACS
failure (down, timeout, 401, 403, 404, non-CT series, truncated body) one line on stderr,
exit 2, the store unchanged. Credentials come from the environment, as a user sets them."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from sscmort_core import store as st
from sscmort_core.cli import main
from tests.pacs.orthanc import (
    PASSWORD,
    USER,
    VIEWER,
    VIEWER_PASSWORD,
    free_port,
    silent_server,
    truncating_proxy,
    upload_folder,
)
from tests.pacs.studies import ct_study, mr_series_like, phi


@pytest.fixture()
def creds(monkeypatch):
    monkeypatch.setenv("SSCMORT_PACS_USERNAME", USER)
    monkeypatch.setenv("SSCMORT_PACS_PASSWORD", PASSWORD)
    monkeypatch.delenv("SSCMORT_PACS_TOKEN", raising=False)
    monkeypatch.delenv("SSCMORT_PACS_CA_BUNDLE", raising=False)
    monkeypatch.chdir(Path(__file__).resolve().parent)  # no .streamlit/secrets.toml here


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-study")
    _, paths = ct_study(folder / "ct", seed=401, syntax=JPEG2000Lossless)
    mr = mr_series_like(paths, folder / "mr")
    upload_folder(orthanc, folder / "ct")
    upload_folder(orthanc, folder / "mr")
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return {"study": str(ds.StudyInstanceUID), "series": str(ds.SeriesInstanceUID), "mr": mr,
            "n": len(paths)}


def _ok(capsys, argv: list[str]) -> dict:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _refused(capsys, argv: list[str], *words: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert PASSWORD not in err and VIEWER_PASSWORD not in err
    for word in words:
        assert word in err, err
    return err


def _counts(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    with st.open_store(path, read_only=True) as s:
        return st.table_counts(s)


def test_query_json(orthanc, study, creds, capsys):
    got = _ok(capsys, ["pacs", "query", "--url", orthanc.url, "--patient-id",
                       phi(401)["PatientID"], "--study-date", "2000-01-01..", "--json"])
    assert [(r["study_uid"], r["series_uid"], r["n_instances"]) for r in got["series"]] == [
        (study["study"], study["series"], study["n"])]
    assert phi(401)["PatientID"] not in json.dumps(got)


def test_fetch_ingests_and_sends_back(orthanc, study, creds, capsys, tiny_store, tmp_path):
    models = tmp_path / "no-models"
    got = _ok(capsys, ["pacs", "fetch", "--url", orthanc.url, "--study", study["study"],
                       "--series", study["series"], "--store", str(tiny_store), "--send-back",
                       "--models-dir", str(models), "--json", "--quiet"])
    with st.open_store(tiny_store, read_only=True) as s:
        row = st.scan_row(s, got["scan_id"])
    assert row["source"] == "pacs" and row["shape_z"] == study["n"]
    assert got["sent_back"]["n_stored"] == 2 and "original series" in got["sent_back"]["note"]
    with orthanc.client() as client:
        kinds = sorted(s.modality for s in client.series_of(study["study"]))
    assert kinds.count("SEG") >= 1 and kinds.count("SR") >= 1


def test_export_dicom_writes_and_sends(orthanc, creds, capsys, tiny_store, tmp_path):
    with st.open_store(tiny_store, read_only=True) as s:
        scan_id = str(st.scans_frame(s)["scan_id"].iloc[0])
    got = _ok(capsys, ["export-dicom", scan_id, str(tmp_path / "out"), "--store",
                       str(tiny_store), "--send", orthanc.url,
                       "--models-dir", str(tmp_path / "none"), "--json"])
    names = {Path(p).name for p in got["files"]}
    assert {"seg.dcm", "sr.dcm"} <= names and got["sent"] == len(got["files"])
    assert got["references_source"] is False and "not kept" in got["note"]
    assert got["research_use_only"] is True


def test_export_dicom_text_says_why_it_cannot_reference_the_source(capsys, tiny_store,
                                                                  tmp_path):
    with st.open_store(tiny_store, read_only=True) as s:
        scan_id = str(st.scans_frame(s)["scan_id"].iloc[0])
    assert main(["export-dicom", scan_id, str(tmp_path / "out"), "--store", str(tiny_store),
                 "--models-dir", str(tmp_path / "none")]) == 0
    out = capsys.readouterr().out
    assert "UIDs were not kept" in out and "research use only" in out


# ---------------------------------------------------------------------------------------------
# failures: one line, exit 2, store unchanged
# ---------------------------------------------------------------------------------------------
def _fetch(url: str, store: Path, study_uid: str, series_uid: str | None = None,
           *extra: str) -> list[str]:
    argv = ["pacs", "fetch", "--url", url, "--study", study_uid, "--store", str(store),
            "--quiet", *extra]
    return argv + (["--series", series_uid] if series_uid else [])


def test_fetch_failures_are_one_line_and_keep_the_store(orthanc, study, creds, capsys,
                                                        tiny_store, monkeypatch):
    before = _counts(tiny_store)
    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    _refused(capsys, _fetch(down, tiny_store, study["study"]), "nothing answers")
    with silent_server() as slow:
        _refused(capsys, _fetch(slow, tiny_store, study["study"], None, "--timeout", "1"),
                 "did not answer within 1 s")
    _refused(capsys, _fetch(orthanc.rest + "/wrong", tiny_store, study["study"]), "404")
    _refused(capsys, _fetch(orthanc.url, tiny_store, "1.2.3.424242"), "no study")
    _refused(capsys, _fetch(orthanc.url, tiny_store, study["study"], study["mr"]), "MR",
             "not CT")
    with truncating_proxy(orthanc.rest) as proxy:
        _refused(capsys, _fetch(proxy + "/dicom-web", tiny_store, study["study"]), "cut short")
    monkeypatch.setenv("SSCMORT_PACS_PASSWORD", "wrong")
    _refused(capsys, _fetch(orthanc.url, tiny_store, study["study"]), "401")
    assert _counts(tiny_store) == before


def test_send_back_with_a_read_only_account_is_403(orthanc, study, creds, capsys, tiny_store,
                                                   monkeypatch, tmp_path):
    monkeypatch.setenv("SSCMORT_PACS_USERNAME", VIEWER)
    monkeypatch.setenv("SSCMORT_PACS_PASSWORD", VIEWER_PASSWORD)
    with st.open_store(tiny_store, read_only=True) as s:
        scan_id = str(st.scans_frame(s)["scan_id"].iloc[0])
    _refused(capsys, ["export-dicom", scan_id, str(tmp_path / "out"), "--store",
                      str(tiny_store), "--send", orthanc.url, "--models-dir",
                      str(tmp_path / "none")], "403")


def test_secrets_file_supplies_the_credentials(orthanc, study, capsys, monkeypatch, tmp_path):
    for key in ("USERNAME", "PASSWORD", "TOKEN", "CA_BUNDLE"):
        monkeypatch.delenv(f"SSCMORT_PACS_{key}", raising=False)
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(
        f'[pacs]\nusername = "{USER}"\npassword = "{PASSWORD}"\n')
    monkeypatch.chdir(tmp_path)
    got = _ok(capsys, ["pacs", "query", "--url", orthanc.url, "--accession",
                       phi(401)["AccessionNumber"], "--json"])
    assert got["n_series"] == 1
    shutil.rmtree(tmp_path / ".streamlit")
    _refused(capsys, ["pacs", "query", "--url", orthanc.url], "401")


def _pacs_manifest(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A manifest whose scans rows name (scan_date, study_uid, series_uid) on the PACS."""
    folder.mkdir(parents=True)
    (folder / "patients.csv").write_text(
        "patient_id,sex,birth_year,subtype,antibody,death_date,last_followup_date\n"
        "REG-9001,F,1961,diffuse,scl70,2024-06-01,2024-06-01\n")
    lines = ["patient_id,scan_date,study_uid,series_uid"]
    lines += [f"REG-9001,{day},{study},{series}" for day, study, series in rows]
    (folder / "scans.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_import_retrieves_manifest_rows_that_name_a_pacs_series(orthanc, study, creds, capsys,
                                                                 tmp_path):
    """A scans row with study_uid + series_uid instead of a path is retrieved from the PACS,
    measured and labelled like a folder row; its UIDs never reach the store; the retrieved
    files are removed when the import ends; a re-run skips it without retrieving again."""
    manifest = _pacs_manifest(tmp_path / "m", [("2022-01-10", study["study"], study["series"])])
    store = tmp_path / "s.duckdb"
    argv = ["import", str(manifest), "--store", str(store), "--pacs", orthanc.url,
            "--workers", "1", "--json"]
    got = _ok(capsys, argv)
    assert (got["patients"], got["imported"]) == (1, 1)
    with st.open_store(store, read_only=True) as s:
        scans = st.scans_frame(s)
        counts = st.table_counts(s)
    assert len(scans) == 1 and counts["qct"] == 1 and not scans["synthetic"].any()
    assert int(scans["shape_z"].iloc[0]) == study["n"]
    blob = store.read_bytes()
    for uid in (study["study"], study["series"]):
        assert uid.encode() not in blob
    assert not list(Path(tempfile.gettempdir()).glob("sscmort-pacs-import-*"))
    again = _ok(capsys, argv)
    assert again["imported"] == 0


def test_import_refuses_pacs_rows_without_a_pacs_or_unknown_to_it(orthanc, study, creds,
                                                                   capsys, tmp_path):
    """Without --pacs, and for a series the PACS does not hold, the manifest is refused with
    one line per row (naming the row, never the UIDs) and no store is created."""
    manifest = _pacs_manifest(tmp_path / "m", [
        ("2022-01-10", study["study"], study["series"]),
        ("2023-01-10", study["study"], "1.2.826.0.1.3680043.8.498.999999")])
    store = tmp_path / "s.duckdb"
    code = main(["import", str(manifest), "--store", str(store), "--workers", "1"])
    _, err = capsys.readouterr()
    assert code == 2 and "scans.csv:2: study_uid: names a series on a PACS" in err
    assert "scans.csv:3: study_uid" in err and study["study"] not in err
    code = main(["import", str(manifest), "--store", str(store), "--pacs", orthanc.url,
                 "--workers", "1"])
    _, err = capsys.readouterr()
    assert code == 2 and "scans.csv:3: series_uid: no such study / series on the PACS" in err
    assert "scans.csv:2:" not in err and study["study"] not in err
    assert not store.exists()
