"""``sscmort import`` / ``export`` end to end on registry-like folders written by the synthetic
generator (registry-style ids, DICOM with identifying tags, identifying folder names).

One module-scoped import (8 patients, 22 small scans, ``--shift-dates``) is copied into each
test that builds on it. Every manifest problem has a test that the import is refused (exit 2,
the named row on stderr) and the store left as it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from sscmort_core import store as st
from sscmort_core.cli import main
from sscmort_core.imaging import pseudonymous_id
from sscmort_core.imaging.volume import STORED_SUFFIX
from sscmort_core.labels import HORIZONS_YEARS, label_scan
from sscmort_core.pipeline.staleness import model_staleness
from sscmort_core.store.audit import JOURNAL_NAME
from sscmort_core.synthetic import generate_cohort, phantom_for_scan, write_dicom_series
from sscmort_core.synthetic.registry import write_registry_folder
from sscmort_core.util.logs import LOG_NAME

REPO = Path(__file__).resolve().parents[2]
# 22 scans; deaths within 1, 3 and 5 years (checked below). Seed 3: the issue-16 generator
# gives 22 scans and 2 / 8 / 8 positives (seed 12 gave 23 with the generator before)
SEED, N_PATIENTS, N_SCANS = 3, 8, 22


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "--quiet"] if argv[0] in ("import", "export", "radiomics",
                                                       "train", "evaluate", "measure")
                    else list(argv))
    return code, out.getvalue(), err.getvalue()


def _plain_bytes(f: Path) -> bytes:
    """A file's bytes with compression undone: gzip, or a MetaImage's zlib-compressed voxels
    (the stored volumes) after its text header, so identifying text could not hide in them."""
    data = f.read_bytes()
    if f.name.endswith(".gz"):
        return gzip.decompress(data)
    if f.name.endswith(".mha"):
        header, sep, body = data.partition(b"ElementDataFile = LOCAL\n")
        if sep and b"CompressedData = True" in header:
            return header + zlib.decompress(body)
    return data


def _no_key_or_volume(store: Path) -> None:
    """Nothing was written beside the store: no key, no volume; the store's log file (image
    reads are logged) and its audit journal at most."""
    files = Path(store).parent / f"{Path(store).stem}_files"
    assert not files.exists() or {p.name for p in files.iterdir()} <= {LOG_NAME, JOURNAL_NAME}


def _copy_store(src: Path, dest_dir: Path) -> Path:
    dest = dest_dir / src.name
    shutil.copy(src, dest)
    files = src.parent / f"{src.stem}_files"
    if files.exists():
        shutil.copytree(files, dest_dir / f"{src.stem}_files")
    return dest


def _manifest_labels(folder: Path) -> dict[str, list[tuple]]:
    """Per registry id, the (1, 3, 5)-year labels of its scans in date order, by the label rule
    on the manifest's own dates."""
    pats = pd.read_csv(folder / "patients.csv", dtype=str, keep_default_na=False)
    scans = pd.read_csv(folder / "scans.csv", dtype=str, keep_default_na=False)
    day = lambda s: dt.date.fromisoformat(s) if s else None  # noqa: E731
    out: dict[str, list[tuple]] = {}
    for p in pats.itertuples():
        death, fu = day(p.death_date), day(p.last_followup_date) or day(p.death_date)
        dates = sorted(day(s) for s in scans.loc[scans["patient_id"] == p.patient_id,
                                                 "scan_date"])
        out[p.patient_id] = [(t, tuple(label_scan(t, death, fu, h) for h in HORIZONS_YEARS))
                             for t in dates]
    return out


def _labels_match_the_manifest(folder: Path, scans: pd.DataFrame, clinical: pd.DataFrame,
                               secret: bytes) -> None:
    """Every stored scan's 1/3/5-year label equals the label rule on the manifest's dates, and
    every date of a patient (scans and clinical visits) moved by one nonzero offset of at most
    365 days. (A moved date may by chance fall on another real date of the patient; that
    reveals nothing, so the check is the shift itself, not an empty intersection.)"""
    visits = pd.read_csv(folder / "clinical.csv", dtype=str, keep_default_na=False)
    for rid, rows in _manifest_labels(folder).items():
        pid = pseudonymous_id(secret, rid)
        mine = scans.loc[scans["patient_id"] == pid].sort_values("scan_date")
        got = [tuple(label_scan(t, d, f, h) for h in HORIZONS_YEARS) for t, d, f in
               zip(mine["scan_date"], mine["death_date"], mine["last_followup_date"])]
        assert got == [labels for _, labels in rows], rid
        offsets = {(t - real).days for t, (real, _) in zip(mine["scan_date"], rows)}
        assert len(offsets) == 1, rid
        shift = dt.timedelta(days=offsets.pop())
        assert 0 < abs(shift.days) <= 365, rid
        real_visits = sorted(dt.date.fromisoformat(d)
                             for d in visits.loc[visits["patient_id"] == rid, "date"])
        stored_visits = sorted(clinical.loc[clinical["patient_id"] == pid, "date"])
        assert [d - shift for d in stored_visits] == real_visits, rid


class _Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The registry folder, a store it was imported into with --shift-dates, and what the
    import printed and logged."""
    base = tmp_path_factory.mktemp("registry")
    reg = write_registry_folder(base / "reg", n_patients=N_PATIENTS, seed=SEED)
    logs = _Logs()
    root = logging.getLogger()
    level = root.level
    root.addHandler(logs)
    root.setLevel(logging.DEBUG)
    try:
        code, out, err = _run("import", str(reg.root), "--store", str(base / "s.duckdb"),
                              "--shift-dates", "--workers", "2", "--json")
    finally:
        root.removeHandler(logs)
        root.setLevel(level)
    assert code == 0, err
    return {"reg": reg, "store": base / "s.duckdb", "out": out, "err": err,
            "logs": "\n".join(logs.lines)}


@pytest.fixture()
def store_copy(imported, tmp_path):
    return _copy_store(imported["store"], tmp_path)


# ---------------------------------------------------------------------------------------------
# the import
# ---------------------------------------------------------------------------------------------
def test_import_counts_labels_and_nothing_identifying_stored(imported):
    reg, summary = imported["reg"], json.loads(imported["out"])
    assert (summary["patients"], summary["new_patients"]) == (N_PATIENTS, N_PATIENTS)
    assert summary["scans"] == summary["imported"] == reg.n_scans == N_SCANS
    assert summary["failed"] == 0 and summary["dates_shifted"] is True
    assert all(summary["horizons"][str(h)]["positive"] >= 2 for h in HORIZONS_YEARS)
    path = imported["store"]
    with st.open_store(path, read_only=True) as s:
        counts = st.table_counts(s)
        assert (counts["patients"], counts["scans"], counts["qct"]) == (8, N_SCANS, N_SCANS)
        assert counts["clinical"] == len(pd.read_csv(reg.root / "clinical.csv"))
        patients, scans = st.patients_frame(s), st.scans_frame(s)
        clinical = st.clinical_frame(s)
        flags = st.registry_patients_frame(s)
        secret = bytes.fromhex((s.data_dir / "pseudonym.secret").read_text())
        files = [p for p in s.data_dir.rglob("*") if p.is_file()]
    assert not patients["synthetic"].any() and set(patients["source"]) == {"registry"}
    assert not scans["synthetic"].any() and flags["dates_shifted"].all()
    _labels_match_the_manifest(reg.root, scans, clinical, secret)
    # nothing identifying: registry ids, names, DICOM identifiers, real dates as text
    haystacks = {"store file": path.read_bytes(), "stdout": imported["out"].encode(),
                 "stderr": imported["err"].encode(), "logs": imported["logs"].encode()}
    for f in files:
        haystacks[str(f)] = _plain_bytes(f)
    assert any(str(f).endswith(STORED_SUFFIX) for f in files)
    needles = [*reg.registry_ids, *reg.names, *reg.phi_values,
               *(n.replace("^", " ") for n in reg.names)]
    for needle in needles:
        for name, blob in haystacks.items():
            assert needle.encode() not in blob, f"{needle!r} found in {name}"
    for day in reg.real_dates:
        for name in ("stdout", "stderr", "logs"):
            assert day.isoformat().encode() not in haystacks[name], f"{day} in {name}"


def test_imported_scans_get_zones_patterns_and_mask_qc(imported, store_copy):
    """The import measures each scan as ingest does: QCT, zones, pattern extents and the QC
    checks, all of the current method version, so the measure stage finds nothing to do."""
    from sscmort_core.lungs import CHECKS, LUNGS, ZONES, qct_method_version

    with st.open_store(imported["store"], read_only=True) as s:
        scans = st.scans_frame(s)["scan_id"].tolist()
        regions, pats, qc = st.regions_frame(s), st.patterns_frame(s), st.mask_qc_frame(s)
        whole = st.qct_frame(s).set_index("scan_id")
        assert st.scans_missing_qct(s, qct_method_version()) == []
    assert len(scans) == N_SCANS and len(regions) == N_SCANS * len(LUNGS) * len(ZONES)
    assert sorted(pats["scan_id"]) == sorted(scans) and len(qc) == N_SCANS * len(CHECKS)
    for frame in (regions, pats, qc, whole):
        assert set(frame["method_version"]) == {qct_method_version()}
    cols = [c for c in pats.columns if c.endswith("_pct")]
    np.testing.assert_allclose(pats[cols].sum(axis=1), 100.0)
    both = regions[(regions["lung"] == "both") & (regions["zone"] == "whole")].set_index(
        "scan_id")
    np.testing.assert_allclose(both.loc[whole.index, "volume_ml"], whole["lung_volume_ml"])
    code, out, err = _run("measure", "--store", str(store_copy), "--workers", "1", "--json")
    assert code == 0, err
    assert json.loads(out)["measured"] == 0  # the import left nothing stale


def test_dry_run_reports_and_changes_nothing(imported, tiny_store):
    before = Path(tiny_store).read_bytes()
    code, out, err = _run("import", str(imported["reg"].root), "--store", str(tiny_store),
                          "--dry-run", "--workers", "1")
    assert code == 0, err
    assert out.splitlines()[0].startswith(
        f"dry run: would import {N_SCANS} scans of 8 patients (8 new")
    assert "5 y:" in out and "positive" in out
    assert Path(tiny_store).read_bytes() == before
    _no_key_or_volume(tiny_store)


def test_rerun_skips_what_is_in(store_copy, imported):
    before = {t: len(f) for t, f in _tables(store_copy).items()}
    code, out, err = _run("import", str(imported["reg"].root), "--store", str(store_copy),
                          "--shift-dates", "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["imported"], s["already_in"], s["new_patients"], s["outcome_changes"]) == \
        (0, N_SCANS, 0, 0)
    assert {t: len(f) for t, f in _tables(store_copy).items()} == before


def _tables(path: Path) -> dict[str, pd.DataFrame]:
    with st.open_store(path, read_only=True) as s:
        return {t: s.query_df(f"SELECT * FROM {t}") for t in (
            "patients", "scans", "qct", "clinical", "outcome_changes", "import_scan_keys",
            "registry_patients", "import_failures")}


def test_stages_run_on_the_imported_cohort(store_copy, imported, tmp_path, monkeypatch):
    monkeypatch.setenv("SSCMORT_MODELS", str(tmp_path / "models"))
    assert _run("radiomics", "--store", str(store_copy), "--workers", "1")[0] == 0
    trained = []
    for kind in ("qct", "radiomics"):
        code, out, err = _run("train", "--kind", kind, "--store", str(store_copy), "--json")
        assert code == 0, err
        ids = [m["model_id"] for m in json.loads(out)["models"]]
        assert ids and all(m.startswith(kind) for m in ids)
        trained += ids
    code, out, err = _run("evaluate", "--store", str(store_copy), "--n-boot", "100", "--json")
    assert code == 0, err
    evaluated = json.loads(out)["models"]
    assert sorted(evaluated) == sorted(trained)  # survival and complete-case models alike
    for horizons in evaluated.values():
        auc5 = horizons["5"]["auc"]
        assert auc5["value"] is not None and auc5["n_events"] >= 5  # 5-year AUC computed
    with st.open_store(store_copy, read_only=True) as s:
        models = st.models_frame(s)
        assert not models["synthetic"].any()  # trained on real (non-synthetic) rows
        status = model_staleness(s)
    assert {m.status for m in status.values()} == {"current"}
    from sscmort_core.pipeline.export import COLUMN_DOCS

    for fmt in ("csv", "parquet"):
        out_dir = tmp_path / f"export-{fmt}"
        for what in ("cohort", "predictions", "metrics"):
            code, out, err = _run("export", "--what", what, "--format", fmt, "--store",
                                  str(store_copy), str(out_dir), "--json")
            assert code == 0, err
            readme = (out_dir / "README.md").read_text()
            for name, rows in json.loads(out)["files"].items():
                table = name.split(".")[0]
                frame = st.read_table_file(out_dir / name) if fmt == "parquet" else \
                    pd.read_csv(out_dir / name, dtype=str, keep_default_na=False)
                assert list(frame.columns) == list(COLUMN_DOCS[table]) and len(frame) == rows
                for col in frame.columns:  # a README row per column
                    assert f"| {col} |" in readme, (table, col)
        scans = pd.read_csv(out_dir / "scans.csv") if fmt == "csv" else None
        if scans is not None:
            assert len(scans) == N_SCANS and set(scans["label_5y"]) <= {"positive", "negative",
                                                                    "censored"}
        for f in out_dir.iterdir():  # pseudonyms only
            assert not any(rid.encode() in f.read_bytes() for rid in imported["reg"].registry_ids)


@pytest.mark.slow
def test_a_few_dozen_patients_through_every_stage(tmp_path, monkeypatch):
    """30 patients (about 100 scans of 32 x 96 x 96 voxels) imported with shifted dates, then
    radiomics, the radiomics / QCT models, a quick deep backbone and the evaluation."""
    monkeypatch.setenv("SSCMORT_MODELS", str(tmp_path / "models"))
    reg = write_registry_folder(tmp_path / "reg", n_patients=30, seed=1, shape=(32, 96, 96))
    store = tmp_path / "big.duckdb"
    code, out, err = _run("import", str(reg.root), "--store", str(store), "--shift-dates",
                          "--workers", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["imported"] == reg.n_scans >= 90
    with st.open_store(store, read_only=True) as s:
        secret = bytes.fromhex((s.data_dir / "pseudonym.secret").read_text())
        _labels_match_the_manifest(reg.root, st.scans_frame(s), st.clinical_frame(s), secret)
    assert _run("radiomics", "--store", str(store), "--workers", "2")[0] == 0
    for kind in ("qct", "radiomics"):
        assert _run("train", "--kind", kind, "--store", str(store))[0] == 0
    code, out, err = _run("train", "--kind", "deep", "--backbone", "resnet18", "--profile",
                          "quick", "--device", "cpu", "--store", str(store), "--json")
    assert code == 0, err
    assert json.loads(out)["models"][0]["pretrained"] == "random init"
    code, out, err = _run("evaluate", "--store", str(store), "--n-boot", "200", "--json")
    assert code == 0, err
    models = json.loads(out)["models"]
    with st.open_store(store, read_only=True) as s:
        trained = set(st.models_frame(s)["model_id"])
    # every trained model is evaluated (the QCT and radiomics kinds train several each, plus
    # the deep backbone)
    assert set(models) == trained and len(trained) >= 4
    for horizons in models.values():
        for h in HORIZONS_YEARS:
            assert horizons[str(h)]["auc"]["value"] is not None, (h, horizons[str(h)]["auc"])
    for what in ("cohort", "predictions", "metrics"):
        assert _run("export", "--what", what, "--store", str(store), str(tmp_path / "x"))[0] == 0
    exported = pd.read_csv(tmp_path / "x" / "predictions.csv")
    assert set(exported["label"]) <= {"positive", "negative", "censored"}
    assert set(exported["model_id"]) == trained  # one row per scan and horizon, per split
    per_split = exported.groupby(["model_id", "split"]).size()
    assert (per_split == 3 * reg.n_scans).all(), per_split
    assert set(exported.loc[exported["split"] == "oof", "model_id"]) == trained


def test_outcome_update_relabels_audits_and_marks_models_stale(store_copy, imported,
                                                               tmp_path, monkeypatch):
    monkeypatch.setenv("SSCMORT_MODELS", str(tmp_path / "models"))
    assert _run("train", "--kind", "qct", "--store", str(store_copy))[0] == 0
    with st.open_store(store_copy, read_only=True) as s:
        model_ids = list(st.models_frame(s)["model_id"])  # survival and complete-case QCT
        assert model_ids and all(model_staleness(s)[m].status == "current" for m in model_ids)
    folder = tmp_path / "reg"
    shutil.copytree(imported["reg"].root, folder, symlinks=True)
    pats = pd.read_csv(folder / "patients.csv", dtype=str, keep_default_na=False)
    scans = pd.read_csv(folder / "scans.csv", dtype=str, keep_default_na=False)
    alive = pats.index[pats["death_date"] == ""]
    first, second = alive[0], alive[1]
    last_scan = scans.loc[scans["patient_id"] == pats.loc[first, "patient_id"], "scan_date"].max()
    death = dt.date.fromisoformat(last_scan) + dt.timedelta(days=200)
    pats.loc[first, ["death_date", "last_followup_date"]] = [death.isoformat(), ""]
    fu = dt.date.fromisoformat(pats.loc[second, "last_followup_date"])
    pats.loc[second, "last_followup_date"] = (fu + dt.timedelta(days=30)).isoformat()
    pats.to_csv(folder / "patients.csv", index=False)
    before = _tables(store_copy)
    code, out, err = _run("import", str(folder), "--store", str(store_copy), "--shift-dates",
                          "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["imported"], s["updated_patients"]) == (0, 2)
    after = _tables(store_copy)
    audit = after["outcome_changes"]
    # the new death: death_date set, last follow-up moved to it; the other: follow-up moved
    assert sorted(zip(audit["field"], audit["change"])) == [
        ("death_date", "set"), ("last_followup_date", "changed"),
        ("last_followup_date", "changed")]
    assert set(audit.columns) == {"patient_id", "field", "change", "source", "changed_at"}
    assert len(after["scans"]) == len(before["scans"])
    with st.open_store(store_copy, read_only=True) as s:
        scans_now = st.scans_frame(s)
        statuses = [model_staleness(s)[m] for m in model_ids]
    from sscmort_core.views.cohort import horizon_counts

    assert horizon_counts(scans_now) != horizon_counts(st_scans(before))
    assert all(x.stale and "outcomes" in x.reason for x in statuses)
    assert _run("train", "--kind", "qct", "--store", str(store_copy))[0] == 0
    with st.open_store(store_copy, read_only=True) as s:
        fresh = [m for m in st.models_frame(s)["model_id"] if m not in model_ids]
        assert fresh and all(model_staleness(s)[m].status == "current" for m in fresh)


def st_scans(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return tables["scans"].merge(tables["patients"][["patient_id", "death_date",
                                                     "last_followup_date"]], on="patient_id")


def test_a_later_upload_of_the_same_patient_links_unless_dates_are_shifted(tmp_path):
    """``ingest`` pseudonymises DICOM PatientID with the store's key, as ``import`` does the
    registry id: an upload of an imported patient joins them. A date-shifted patient refuses
    an upload (its real date would not get the patient's shift)."""
    reg = write_registry_folder(tmp_path / "reg", n_patients=3, seed=4)
    row = generate_cohort(n_patients=3, seed=99).scans.to_dict(orient="records")[0]
    upload = tmp_path / "upload"
    rid = reg.registry_ids[0]
    write_dicom_series(phantom_for_scan(row, shape=(24, 64, 64)), upload,
                       phi={"PatientID": rid, "PatientName": "LATER^UPLOAD"})
    for shifted in (False, True):
        store = tmp_path / f"s{shifted}.duckdb"
        flags = ["--shift-dates"] if shifted else []
        assert _run("import", str(reg.root), "--store", str(store), "--workers", "1",
                    *flags)[0] == 0
        code, out, err = _run("ingest", str(upload), "--store", str(store), "--json",
                              "--scan-date", "2024-07-01", "--quiet")
        with st.open_store(store, read_only=True) as s:
            pid = pseudonymous_id(bytes.fromhex((s.data_dir / "pseudonym.secret").read_text()),
                                  rid)
        if shifted:
            assert code == 2 and "shifted by a registry import" in err and rid not in err
        else:
            assert code == 0, err
            got = json.loads(out)
            assert got["patient_id"] == pid and got["new_patient"] is False


# ---------------------------------------------------------------------------------------------
# one test per manifest problem: refused, exit 2, the named row, the store unchanged
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_registry(tmp_path_factory):
    return write_registry_folder(tmp_path_factory.mktemp("small") / "reg", n_patients=4,
                                 seed=3, shape=(12, 32, 32))


def _edit(table: str, fn):
    def apply(folder: Path) -> None:
        frame = pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)
        fn(frame, folder).to_csv(folder / f"{table}.csv", index=False)
    return apply


def _set(table, row, column, value):
    def fn(frame, folder):
        frame.loc[row, column] = value(frame, folder) if callable(value) else value
        return frame
    return _edit(table, fn)


def _death_before_scan(frame, folder):
    scans = pd.read_csv(folder / "scans.csv", dtype=str)
    first = scans.loc[scans["patient_id"] == frame.loc[0, "patient_id"], "scan_date"].min()
    frame.loc[0, ["death_date", "last_followup_date"]] = [first, first]
    return frame


def _fu_before_scan(frame, folder):
    scans = pd.read_csv(folder / "scans.csv", dtype=str)
    last = scans.loc[scans["patient_id"] == frame.loc[0, "patient_id"], "scan_date"].max()
    frame.loc[0, ["death_date", "last_followup_date"]] = \
        ["", (dt.date.fromisoformat(last) - dt.timedelta(days=1)).isoformat()]
    return frame


def _symlink_out(folder: Path) -> None:
    os.symlink("/tmp", folder / "escape")
    _set("scans", 1, "path", "escape")(folder)


def _not_an_image(folder: Path) -> None:
    scans = pd.read_csv(folder / "scans.csv", dtype=str)
    target = folder / scans.loc[2, "path"]
    shutil.rmtree(target)
    target.mkdir()
    (target / "notes.txt").write_text("exported report, not DICOM")


PROBLEMS = {
    "extra column": (_edit("patients", lambda f, _: f.assign(name="Someone")),
                     "patients.csv: name: not an accepted column (accepted:"),
    "missing column": (_edit("scans", lambda f, _: f.drop(columns=["scan_date"])),
                       "scans.csv: scan_date: required column is missing"),
    "unparseable date": (_set("scans", 1, "scan_date", "3/4/2019"),
                         "scans.csv:3: scan_date: not an ISO 8601 date"),
    "death before a scan": (_edit("patients", _death_before_scan),
                            "patients.csv:2: death_date: on or before the scan date of "
                            "scans.csv:"),
    "follow-up before a scan": (_edit("patients", _fu_before_scan),
                                "patients.csv:2: last_followup_date: before the scan date of "
                                "scans.csv:"),
    "scan of an unknown patient": (_set("scans", 2, "patient_id", "MRN-000001"),
                                   "scans.csv:4: patient_id: no such patient"),
    "clinical of an unknown patient": (_set("clinical", 0, "patient_id", "MRN-000001"),
                                       "clinical.csv:2: patient_id: no such patient"),
    "duplicate patient": (_edit("patients", lambda f, _: pd.concat([f, f.iloc[[1]]])),
                          "patients.csv:6: patient_id: duplicate patient (the same id as row 3)"),
    "duplicate scan": (_edit("scans", lambda f, _: pd.concat([f, f.iloc[[0]]])),
                       "scan_date: duplicate scan (the same patient, date and series as row 2)"),
    "missing path": (_set("scans", 1, "path", "images/nowhere"),
                     "scans.csv:3: path: no such file or folder"),
    "path with ..": (_set("scans", 1, "path", "../reg/images"),
                     "scans.csv:3: path: leaves the manifest folder (..)"),
    "absolute path": (_set("scans", 1, "path", "/tmp"), "scans.csv:3: path: an absolute path"),
    "symlink out": (_symlink_out, "scans.csv:3: path: a link that leads out of the manifest"),
    "image fails the ingest checks": (_not_an_image, "scans.csv:4: path: no DICOM image files "
                                                     "found"),
}


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_each_manifest_problem_is_refused_and_changes_nothing(name, small_registry, tiny_store,
                                                              tmp_path):
    mutate, expected = PROBLEMS[name]
    folder = tmp_path / "reg"
    shutil.copytree(small_registry.root, folder, symlinks=True)
    mutate(folder)
    before = Path(tiny_store).read_bytes()
    code, out, err = _run("import", str(folder), "--store", str(tiny_store), "--workers", "1")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert any(expected in line for line in lines), err
    assert lines[-1].startswith(f"error: {folder}: ") and "nothing was written" in lines[-1]
    assert "Traceback" not in err
    for rid in small_registry.registry_ids:
        assert rid not in err
    assert Path(tiny_store).read_bytes() == before
    _no_key_or_volume(tiny_store)


def test_a_refused_import_into_no_store_creates_none(small_registry, tmp_path):
    folder = tmp_path / "reg"
    shutil.copytree(small_registry.root, folder)
    _set("scans", 1, "scan_date", "yesterday")(folder)
    store = tmp_path / "new.duckdb"
    code, _, err = _run("import", str(folder), "--store", str(store), "--workers", "1")
    assert code == 2 and "scans.csv:3: scan_date" in err
    assert not store.exists()
    _no_key_or_volume(store)


def test_mapping_file_column_options_and_parquet(small_registry, tmp_path):
    folder = tmp_path / "reg"
    shutil.copytree(small_registry.root, folder)
    pats = pd.read_csv(folder / "patients.csv", dtype=str, keep_default_na=False)
    pats = pats.rename(columns={"patient_id": "MRN", "death_date": "DOD"})
    pats["free_notes"] = "never stored"
    (folder / "patients.csv").unlink()
    st.write_table_file(pats, folder / "patients.parquet", "parquet")
    scans = pd.read_csv(folder / "scans.csv", dtype=str).rename(columns={"patient_id": "MRN"})
    scans.to_csv(folder / "scans.csv", index=False)
    (folder / "mapping.yaml").write_text("patients:\n  patient_id: MRN\n  death_date: DOD\n"
                                         "ignore:\n  patients: [free_notes]\n")
    store = tmp_path / "m.duckdb"
    code, _, err = _run("import", str(folder), "--store", str(store), "--dry-run")
    assert code == 2 and "scans.csv: MRN: not an accepted column" in err
    code, out, err = _run("import", str(folder), "--store", str(store), "--workers", "1",
                          "--column", "scans.patient_id=MRN", "--json")
    assert code == 0, err
    assert json.loads(out)["imported"] == small_registry.n_scans
    assert b"never stored" not in store.read_bytes()


# ---------------------------------------------------------------------------------------------
# failures and interruptions
# ---------------------------------------------------------------------------------------------
def _write_lungless(row: dict, folder: Path, rid: str) -> None:
    """A series that passes the ingest checks (air outside the body) but has no lung: its
    import fails in segmentation."""
    ph = phantom_for_scan(row, shape=(24, 64, 64))
    hu = ph.hu.copy()
    body = ndimage.binary_fill_holes(hu > -300, structure=np.ones((1, 3, 3)))
    hu[body & (hu < -300)] = 40
    import dataclasses

    shutil.rmtree(folder)
    write_dicom_series(dataclasses.replace(ph, hu=hu), folder, phi={"PatientID": rid})


def test_a_failing_scan_is_recorded_the_rest_imported_and_retried(tmp_path):
    reg = write_registry_folder(tmp_path / "reg", n_patients=3, seed=4)
    scans = pd.read_csv(reg.root / "scans.csv", dtype=str)
    bad = reg.root / scans.loc[1, "path"]
    row = generate_cohort(n_patients=3, seed=4).scans.to_dict(orient="records")[1]
    _write_lungless(row, bad, scans.loc[1, "patient_id"])
    store = tmp_path / "f.duckdb"
    code, out, err = _run("import", str(reg.root), "--store", str(store), "--workers", "1",
                          "--json")
    assert code == 0, err
    s = json.loads(out)
    assert (s["imported"], s["failed"]) == (reg.n_scans - 1, 1)
    (failure,) = s["failures"]
    assert failure["row"] == 3 and "no lung found" in failure["reason"]
    assert failure["path"].startswith("images/P-") and scans.loc[1, "patient_id"] not in \
        failure["path"]  # the registry id in the folder name is replaced by the pseudonym
    assert "warning: scans.csv:3: path images/P-" in err
    code, out, _ = _run("import", str(reg.root), "--store", str(store), "--json")
    assert json.loads(out)["failed"] == 1
    with st.open_store(store, read_only=True) as s:
        table = st.import_failures_frame(s)
    assert table["attempts"].tolist() == [2] and table["manifest_row"].tolist() == [3]
    shutil.rmtree(bad)
    write_dicom_series(phantom_for_scan(row, shape=(24, 64, 64)), bad)
    code, out, _ = _run("import", str(reg.root), "--store", str(store), "--json")
    assert (json.loads(out)["imported"], json.loads(out)["failed"]) == (1, 0)
    with st.open_store(store, read_only=True) as s:
        assert st.import_failures_frame(s).empty
        assert st.table_counts(s)["scans"] == reg.n_scans


def _whole_scans_only(store_path: Path) -> int:
    """Open the store and check every scan is whole (volume file with its sha256, QCT row,
    import key, patient); no volume file without its scan. Returns the number of scans."""
    from sscmort_core.util.hashing import file_sha256

    with st.open_store(store_path) as s:  # opens (and recovers) after the kill
        scans = s.query_df("SELECT * FROM scans")
        qct = set(s.query_df("SELECT scan_id FROM qct")["scan_id"])
        keys = set(s.query_df("SELECT scan_id FROM import_scan_keys")["scan_id"])
        pats = set(s.query_df("SELECT patient_id FROM patients")["patient_id"])
        for r in scans.itertuples():
            assert r.scan_id in qct and r.scan_id in keys and r.patient_id in pats
            assert file_sha256(s.data_dir / r.volume_path) == r.volume_sha256
        return len(scans)


def _import_and_kill(folder: Path, store: Path, after_files: int, workers: int,
                     batch: int) -> None:
    """Run ``sscmort import`` in a subprocess and SIGKILL it once ``after_files`` volume files
    are in place (mid-import: some batches committed, maybe one moved in but not yet)."""
    volumes = store.parent / f"{store.stem}_files" / "volumes" / "registry"
    cmd = [sys.executable, "-m", "sscmort_core", "import", str(folder), "--store", str(store),
           "--workers", str(workers), "--batch", str(batch), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if volumes.is_dir() and len(list(volumes.glob(f"*{STORED_SUFFIX}"))) >= after_files:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the import ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _rerun_completes(folder: Path, store: Path, n_scans: int, n_before: int) -> None:
    code, out, err = _run("import", str(folder), "--store", str(store), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["imported"] == n_scans - n_before and s["already_in"] == n_before
    assert _whole_scans_only(store) == n_scans
    files = store.parent / f"{store.stem}_files"
    stored = list((files / "volumes" / "registry").glob(f"*{STORED_SUFFIX}"))
    assert len(stored) == n_scans  # no orphan
    assert not (files / "import-staging").exists()


def test_kill_9_mid_import_leaves_whole_scans_and_the_rerun_completes(tmp_path):
    reg = write_registry_folder(tmp_path / "reg", n_patients=3, seed=3)  # 13 scans
    store = tmp_path / "k.duckdb"
    _import_and_kill(reg.root, store, after_files=3, workers=1, batch=2)
    n_before = _whole_scans_only(store)
    assert 0 < n_before < reg.n_scans
    _rerun_completes(reg.root, store, reg.n_scans, n_before)


@pytest.mark.slow
def test_repeated_kills_at_any_moment_then_completion(imported, tmp_path):
    """Kill -9 the 22-scan import (two workers, batches of 3) at several points, each run
    resuming the last; every interrupted store holds only whole scans."""
    folder, store = imported["reg"].root, tmp_path / "r.duckdb"
    n = 0
    for after in (1, 4, 9, 15):
        _import_and_kill(folder, store, after_files=after, workers=2, batch=3)
        n_now = _whole_scans_only(store)
        assert n <= n_now < N_SCANS
        n = n_now
    _rerun_completes(folder, store, N_SCANS, n)


def test_the_export_format_choices_are_the_stores():
    """The CLI keeps its own copy of the formats so --help loads no pandas; it must not drift."""
    from sscmort_core.cli import registry
    from sscmort_core.store import TABLE_FORMATS

    assert registry.TABLE_FORMATS == TABLE_FORMATS


# ---------------------------------------------------------------------------------------------
# the audit trail of the CLI (issue 17): import and export record the OS user
# ---------------------------------------------------------------------------------------------
def test_import_and_export_are_audited_with_the_os_user(store_copy, imported, tmp_path):
    from sscmort_core.access import os_user

    code, _, err = _run("import", str(imported["reg"].root), "--store", str(store_copy),
                        "--shift-dates", "--workers", "1")
    assert code == 0, err
    assert _run("export", "--what", "cohort", "--store", str(store_copy),
                str(tmp_path / "out"))[0] == 0
    code, out, err = _run("audit", "--store", str(store_copy), "--json")
    assert code == 0, err
    rows = json.loads(out)["rows"]
    assert json.loads(out)["source"] == "store"
    mine = [(r["who"], r["role"], r["channel"], r["action"], r["outcome"]) for r in rows]
    assert mine[-2:] == [(os_user(), "cli", "cli", "import", "ok"),
                         (os_user(), "cli", "cli", "export", "ok")]
    assert "already_in" in rows[-2]["detail"] and "patients.csv" in rows[-1]["detail"]
    reg_ids = imported["reg"].registry_ids
    assert not any(rid in json.dumps(rows) for rid in reg_ids)  # counts only, never an id
    assert st.read_journal(store_copy)["audit_id"].tolist() == [r["audit_id"] for r in rows]
