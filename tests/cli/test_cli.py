"""CLI contract: JSON summaries, exit status 2 with one line naming the file, store unchanged;
end-to-end ingest with PHI in every identifying tag that must appear nowhere afterwards."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from sscmort_core import store as st
from sscmort_core.cli import main
from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.dicom import write_dicom_series
from sscmort_core.synthetic.phantom import phantom_for_scan

PHI = {
    "PatientName": "ZZTOPSECRET^ALICE", "PatientID": "MRN-77341-XQ", "PatientBirthDate": "19511224",
    "PatientAddress": "42 Hidden Lane Secretville", "PatientTelephoneNumbers": "+44 7700 900123",
    "OtherPatientIDs": "OTHER-99812-ZQ", "InstitutionName": "Quietwater Royal Infirmary",
    "InstitutionAddress": "9 Harbour Road Quietwater", "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "QUINN^MICHAELA", "OperatorsName": "OPERATOR^JANUS",
    "AccessionNumber": "ACC884215", "StudyID": "STUDY55811", "StationName": "CTSTATION-QW7",
    "DeviceSerialNumber": "SERIAL-5531-PX",
}


def _run(capsys, *argv):
    code = main(list(argv) if "--quiet" in argv or argv[0] == "demo" else [*argv, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def phi_series(tmp_path_factory):
    row = generate_cohort(n_patients=3, seed=11).scans.to_dict(orient="records")[0]
    folder = tmp_path_factory.mktemp("phi") / "series"
    write_dicom_series(phantom_for_scan(row), folder, phi=PHI, instance_order="shuffled")
    return folder


def test_demo_json_summary(tmp_path, capsys):
    path = tmp_path / "d.duckdb"
    code, out, _ = _run(capsys, "demo", "--patients", "4", "--seed", "2", "--workers", "1",
                        "--store", str(path), "--json", "--quiet",
                        "--skip", "tabular", "deep", "evaluate")
    assert code == 0
    s = json.loads(out)
    assert s["patients"] == 4 and s["synthetic"] is True and s["scans"] >= 4
    assert set(s["positives"]) == set(s["censored"]) == {"1", "3", "5"}
    assert s["positives"]["1"] <= s["positives"]["3"] <= s["positives"]["5"]
    with st.open_store(path, read_only=True) as store:
        counts = st.table_counts(store)
        assert counts["qct"] == s["scans"]
        n_feat = store.con.execute(
            "SELECT count(DISTINCT scan_id) FROM radiomics_features").fetchone()[0]
        assert n_feat == s["scans"]  # the radiomics stage ran; the skipped ones did not
        kinds = [r[0] for r in store.con.execute("SELECT kind FROM models").fetchall()]
        assert kinds == ["oracle", "oracle"]  # only the two oracle references (honest, imaging)
    assert not list(tmp_path.glob(".*building*"))


def test_demo_into_a_directory_fails_cleanly(tmp_path, capsys):
    code, out, err = _run(capsys, "demo", "--patients", "2", "--store", str(tmp_path), "--quiet")
    assert code == 2 and out == ""
    assert "is a directory" in _one_error_line(err) and str(tmp_path) in err
    assert list(tmp_path.iterdir()) == []


def test_demo_on_a_locked_store_fails_and_leaves_it_intact(tiny_store, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom sscmort_core.store import open_store\n"
         f"s = open_store({str(tiny_store)!r})\nprint('ready', flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        code, _, err = _run(capsys, "demo", "--patients", "2", "--store", str(tiny_store),
                            "--quiet")
        assert code == 2
        line = _one_error_line(err)
        assert str(tiny_store) in line and "another process" in line
    finally:
        holder.kill()
        holder.wait()
    with st.open_store(tiny_store, read_only=True) as s:
        assert st.table_counts(s)["patients"] == 12


def test_demo_refuses_to_replace_a_store_with_real_patients(tiny_store, phi_series, capsys):
    assert _run(capsys, "ingest", str(phi_series), "--store", str(tiny_store),
                "--scan-date", "2020-02-02")[0] == 0
    code, _, err = _run(capsys, "demo", "--patients", "2", "--store", str(tiny_store), "--quiet")
    assert code == 2 and "non-synthetic" in _one_error_line(err)
    with st.open_store(tiny_store, read_only=True) as s:
        assert st.table_counts(s)["patients"] == 13


def test_store_from_newer_schema_is_refused(tiny_store, phi_series, capsys):
    with st.open_store(tiny_store) as s:
        s.con.execute("INSERT INTO schema_version (version) VALUES (?)", [st.SCHEMA_VERSION + 1])
    code, _, err = _run(capsys, "ingest", str(phi_series), "--store", str(tiny_store))
    assert code == 2 and "schema version" in _one_error_line(err)


def test_ingest_keeps_no_phi_anywhere(tmp_path, phi_series, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    store_path = tmp_path / "phi.duckdb"
    code, out, err = _run(capsys, "ingest", str(phi_series), "--store", str(store_path),
                          "--scan-date", "2021-05-06", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["patient_id"].startswith("P-") and result["shape"][0] >= 10
    assert set(result["qct"]) == {"lung_volume_ml", "mean_lung_density_hu", "skewness",
                                  "kurtosis", "haa_pct", "ild_extent_pct"}
    with st.open_store(store_path, read_only=True) as s:
        row = st.scan_row(s, result["scan_id"])
        volume = s.data_dir / row["volume_path"]
        dump = "\n".join(str(s.query_df(f"SELECT * FROM {t}").to_dict())
                         for t in ("patients", "scans", "qct", "meta"))
    import zlib

    assert volume.suffix == ".mha"  # header text + raw voxels (zlib data: decompressed)
    header, _, data = volume.read_bytes().partition(b"ElementDataFile = LOCAL\n")
    if b"CompressedData = True" in header:
        data = zlib.decompress(data)
    haystacks = {"store file": store_path.read_bytes(),
                 "volume": header + data,
                 "stdout+stderr": (out + err).encode(), "logs": caplog.text.encode(),
                 "tables": dump.encode()}
    for keyword, value in PHI.items():
        for name, blob in haystacks.items():
            for variant in {value, value.replace("^", " ")}:
                assert variant.encode() not in blob, f"{keyword} found in {name}"


def test_ingest_same_patient_twice_reuses_the_pseudonym(tmp_path, phi_series, capsys):
    store_path = tmp_path / "two.duckdb"
    code, out, _ = _run(capsys, "ingest", str(phi_series), "--store", str(store_path), "--json",
                        "--scan-date", "2019-01-01")
    assert code == 0
    first = json.loads(out)
    assert first["new_patient"] is True
    code, _, err = _run(capsys, "ingest", str(phi_series), "--store", str(store_path),
                        "--scan-date", "2019-01-01")
    assert code == 2 and "already in the store" in _one_error_line(err)
    # a later, different scan of the same person (same identifying tags): same pseudonym
    row = generate_cohort(n_patients=3, seed=11).scans.to_dict(orient="records")[1]
    later = tmp_path / "later"
    write_dicom_series(phantom_for_scan(row), later, phi=PHI)
    code, out, err = _run(capsys, "ingest", str(later), "--store", str(store_path), "--json",
                          "--scan-date", "2020-06-01")
    assert code == 0, err
    second = json.loads(out)
    assert second["patient_id"] == first["patient_id"] and second["new_patient"] is False
    assert second["scan_id"] != first["scan_id"]


def test_ingest_bad_input_exits_2_and_changes_nothing(tiny_store, tmp_path, capsys):
    bad = tmp_path / "notes.dcm"
    bad.write_bytes(b"this is not a DICOM file at all" * 10)
    with st.open_store(tiny_store, read_only=True) as s:
        before = st.table_counts(s)
    code, out, err = _run(capsys, "ingest", str(bad), "--store", str(tiny_store))
    assert code == 2 and out == ""
    assert str(bad) in _one_error_line(err)
    with st.open_store(tiny_store, read_only=True) as s:
        assert st.table_counts(s) == before


def test_ingest_rejects_a_bad_patient_id(tiny_store, phi_series, capsys):
    code, _, err = _run(capsys, "ingest", str(phi_series), "--store", str(tiny_store),
                        "--patient-id", "John Smith; DROP TABLE", "--scan-date", "2020-01-01")
    assert code == 2 and "patient id" in _one_error_line(err)


def test_qct_on_the_real_ct(real_ct, capsys):
    code, out, _ = _run(capsys, "qct", str(real_ct / "philips_A0001_kernel_B"), "--json",
                        "--quiet")
    assert code == 0
    q = json.loads(out)
    assert 2500 <= q["lung_volume_ml"] <= 8000
    assert -950 <= q["mean_lung_density_hu"] <= -600


@pytest.mark.parametrize("argv, message", [
    (("train", "--kind", "deep", "--folds", "1"), "--folds must be at least 2"),
    (("evaluate", "--seed", "-1"), "must be at least 0"),
])
def test_bad_numbers_exit_2_with_one_line(tiny_store, capsys, argv, message):
    before = Path(tiny_store).read_bytes()
    try:
        code, _, err = _run(capsys, *argv, "--store", str(tiny_store))
    except SystemExit as exit_:  # argparse rejects the value itself
        code, err = exit_.code, capsys.readouterr().err
    assert code == 2 and message in err
    assert "Traceback" not in err
    assert Path(tiny_store).read_bytes() == before  # the store is unchanged


def test_qct_and_ingest_load_only_what_they_use(phi_series, tmp_path):
    """Issue 13's quick CLI: ``qct`` on a DICOM folder needs neither the store (pandas,
    duckdb) nor SimpleITK; ``ingest`` writes one scan's rows without pandas and its volume
    without SimpleITK; neither loads scipy.stats (the synthetic generator's), torch or
    scikit-learn."""
    unwanted = ["pandas", "pyarrow", "duckdb", "SimpleITK", "scipy.stats", "torch", "sklearn"]
    for argv, allowed in ((["qct", str(phi_series)], set()),
                          (["ingest", str(phi_series), "--scan-date", "2020-01-01",
                            "--store", str(tmp_path / "s.duckdb")], {"duckdb"})):
        code = ("import sys\nfrom sscmort_core.cli import main\n"
                f"assert main({[*argv, '--quiet']!r}) == 0\n"
                f"print(sorted(m for m in {unwanted!r} if m in sys.modules))\n")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300, cwd=Path(__file__).resolve().parents[2])
        assert out.returncode == 0, out.stderr[-2000:]
        loaded = set(json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')))
        assert loaded == allowed, (argv[0], loaded)
