"""Manifest checks (pure: frames of text in, problems out) and the per-patient date shift.

Each problem the README lists has a test here at the table level; tests/cli/test_registry_cli.py
drives the same problems through ``sscmort import`` (exit 2, store unchanged).
"""

from __future__ import annotations

import datetime as dt
import os

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from sscmort_core.labels import HORIZONS_YEARS, add_years, label_scan
from sscmort_core.pipeline import dateshift
from sscmort_core.pipeline.manifest import (
    ColumnMapping,
    RawTable,
    horizon_summary,
    parse_mapping,
    validate_manifest,
)

TODAY = dt.date(2025, 1, 1)
SECRET = b"k" * 32
SECRET_VALUES = ("MRN-9911", "MRN-9922", "MRN-9933")


def _tables(patients=None, scans=None, clinical=None):
    patients = patients if patients is not None else [
        {"patient_id": "MRN-9911", "sex": "F", "birth_year": "1960", "subtype": "diffuse",
         "antibody": "Scl-70", "death_date": "2019-05-01", "last_followup_date": ""},
        {"patient_id": "MRN-9922", "sex": "m", "birth_year": "1955", "subtype": "lcSSc",
         "antibody": "ACA", "death_date": "", "last_followup_date": "2022-01-01"}]
    scans = scans if scans is not None else [
        {"patient_id": "MRN-9911", "scan_date": "2017-03-02", "path": "a"},
        {"patient_id": "MRN-9922", "scan_date": "2018-06-01", "path": "b"}]
    clinical = clinical if clinical is not None else [
        {"patient_id": "MRN-9911", "date": "2017-03-02", "fvc_pct_pred": "81.5",
         "dlco_pct_pred": "55"}]
    out = {"patients": RawTable("patients", "patients.csv", pd.DataFrame(patients, dtype=str)),
           "scans": RawTable("scans", "scans.csv", pd.DataFrame(scans, dtype=str))}
    if clinical:
        out["clinical"] = RawTable("clinical", "clinical.csv",
                                   pd.DataFrame(clinical, dtype=str))
    return out


@pytest.fixture()
def root(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    return tmp_path


def _check(root, mapping=ColumnMapping(), **tables):
    manifest, problems = validate_manifest(_tables(**tables), mapping, root, today=TODAY)
    lines = [p.line() for p in problems]
    for line in lines:  # a problem never echoes a cell's value
        assert not any(v in line for v in SECRET_VALUES), line
    return manifest, lines


def test_a_clean_manifest_has_no_problem_and_normalised_values(root):
    manifest, lines = _check(root)
    assert lines == []
    p = manifest.patients.set_index("registry_id")
    assert p.loc["MRN-9911", "antibody"] == "scl70" and p.loc["MRN-9922", "sex"] == "M"
    assert p.loc["MRN-9922", "subtype"] == "limited"
    # the dead patient's empty follow-up is their death date
    assert p.loc["MRN-9911", "last_followup_date"] == dt.date(2019, 5, 1)
    assert manifest.scans["resolved"].tolist() == [(root / "a").resolve(), (root / "b").resolve()]
    # label rule on the manifest: scan 2017-03-02, death 2019-05-01 -> positive at 3 and 5 y
    counts = {h.horizon_years: h for h in horizon_summary(manifest.patients, manifest.scans)}
    assert (counts[1].positive, counts[3].positive, counts[5].positive) == (0, 1, 1)
    assert counts[5].censored == 1  # 2018-06-01 + 5 y is after the 2022 follow-up


@pytest.mark.parametrize("table, change, expected", [
    ("patients", {0: {"patient_id": "MRN-9922"}},
     "patients.csv:3: patient_id: duplicate patient (the same id as row 2)"),
    ("patients", {0: {"sex": "X"}}, "patients.csv:2: sex: not F or M"),
    ("patients", {0: {"birth_year": "19x0"}}, "patients.csv:2: birth_year: not a year"),
    ("patients", {0: {"subtype": "mixed"}}, "patients.csv:2: subtype: not one of"),
    ("patients", {0: {"antibody": "John Smith"}}, "patients.csv:2: antibody: not one of"),
    ("patients", {1: {"last_followup_date": "01/02/2022"}},
     "patients.csv:3: last_followup_date: not an ISO 8601 date"),
    ("patients", {1: {"last_followup_date": ""}},
     "patients.csv:3: last_followup_date: empty, and the patient has no death_date"),
    ("patients", {0: {"death_date": "2017-03-02"}},
     "patients.csv:2: death_date: on or before the scan date of scans.csv:2"),
    ("patients", {1: {"last_followup_date": "2018-05-31"}},
     "patients.csv:3: last_followup_date: before the scan date of scans.csv:3"),
    ("patients", {0: {"death_date": "2030-01-01"}}, "patients.csv:2: death_date: not an ISO"),
    ("scans", {1: {"patient_id": "MRN-9933"}},
     "scans.csv:3: patient_id: no such patient in the patients table"),
    ("scans", {1: {"scan_date": "2018-13-01"}}, "scans.csv:3: scan_date: not an ISO 8601"),
    ("scans", {1: {"path": "../outside"}}, "scans.csv:3: path: leaves the manifest folder"),
    ("scans", {1: {"path": "/etc"}}, "scans.csv:3: path: an absolute path"),
    ("scans", {1: {"path": "missing"}}, "scans.csv:3: path: no such file or folder"),
    ("scans", {1: {"scan_date": "1950-01-01"}},
     "scans.csv:3: scan_date: before the patient's birth year"),
    ("clinical", {0: {"patient_id": "MRN-9933"}},
     "clinical.csv:2: patient_id: no such patient"),
    ("clinical", {0: {"fvc_pct_pred": "lots"}}, "clinical.csv:2: fvc_pct_pred: not a number"),
    ("clinical", {0: {"dlco_pct_pred": "900"}}, "clinical.csv:2: dlco_pct_pred: not a number"),
    ("clinical", {0: {"date": "2019-06-01"}}, "clinical.csv:2: date: after the patient's death"),
])
def test_each_row_problem_names_file_row_and_column(root, table, change, expected):
    tables = {"patients": None, "scans": None, "clinical": None}
    base = _tables()
    frame = base[table].frame.copy()
    for i, cells in change.items():
        for col, value in cells.items():
            frame.loc[i, col] = value
    tables[table] = frame.to_dict(orient="records")
    _, lines = _check(root, **tables)
    assert any(line.startswith(expected) for line in lines), lines


def test_duplicate_scans_and_the_same_series_twice(root):
    scans = [{"patient_id": "MRN-9911", "scan_date": "2017-03-02", "path": "a"},
             {"patient_id": "MRN-9911", "scan_date": "2017-03-02", "path": "a/."},
             {"patient_id": "MRN-9922", "scan_date": "2018-06-01", "path": "a"},
             {"patient_id": "MRN-9922", "scan_date": "2018-06-01", "path": "b",
              "series_uid": "1.2.3"},
             {"patient_id": "MRN-9922", "scan_date": "2018-06-01", "path": "c",
              "series_uid": "1.2.3"}]
    _, lines = _check(root, scans=scans)
    assert "scans.csv:3: scan_date: duplicate scan (the same patient, date and series as " \
           "row 2)" in lines
    assert "scans.csv:4: path: the same series as row 2, for another patient or date" in lines
    assert "scans.csv:6: scan_date: duplicate scan (the same patient, date and series as " \
           "row 5)" in lines


def test_symlink_out_of_the_manifest_folder_is_refused(root, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    os.symlink(outside, root / "link")
    scans = [{"patient_id": "MRN-9911", "scan_date": "2017-03-02", "path": "link"}]
    _, lines = _check(root, scans=scans)
    assert "scans.csv:2: path: a link that leads out of the manifest folder" in lines


def test_missing_and_extra_columns(root):
    patients = [{"patient_id": "MRN-9911", "Name": "Alice Zebra", "death_date": "2019-05-01"}]
    _, lines = _check(root, patients=patients, scans=[], clinical=[])
    assert any(line.startswith("patients.csv: Name: not an accepted column (accepted: "
                               "patient_id, sex,") for line in lines), lines
    assert "patients.csv: last_followup_date: required column is missing" in lines
    assert not any("Alice" in line for line in lines)


def test_a_mapping_renames_and_ignores_registry_columns(root):
    patients = [{"MRN": "MRN-9911", "DOD": "2019-05-01", "FU": "", "notes": "free text"}]
    scans = [{"MRN": "MRN-9911", "scan_date": "2017-03-02", "path": "a"}]
    spec = {"patients": {"patient_id": "MRN", "death_date": "DOD"},
            "scans": {"patient_id": "mrn"}, "ignore": {"patients": ["notes"]}}
    mapping, problems = parse_mapping(spec, ["patients.last_followup_date=FU"])
    assert problems == []
    manifest, lines = _check(root, mapping, patients=patients, scans=scans, clinical=[])
    assert lines == []
    assert manifest.patients["death_date"].tolist() == [dt.date(2019, 5, 1)]


def test_a_bad_mapping_names_what_is_wrong():
    _, problems = parse_mapping({"patients": {"mrn": "MRN"}, "visits": {}},
                                ["nonsense", "scans.path=folder"], "mapping.yaml")
    lines = [p.line() for p in problems]
    assert any(line.startswith("mapping.yaml: patients.mrn: not a manifest column") for line
               in lines), lines
    assert any(line.startswith("mapping.yaml: visits: not a table") for line in lines)
    assert any(line.startswith("--column: give table.column=REGISTRY_NAME") for line in lines)


def test_missing_required_table(root):
    manifest, problems = validate_manifest({}, ColumnMapping(), root, today=TODAY)
    lines = [p.line() for p in problems]
    assert lines[:2] == ["patients.csv: required table is missing (give patients.csv or "
                         "patients.parquet)", "scans.csv: required table is missing (give "
                         "scans.csv or scans.parquet)"]


# ---------------------------------------------------------------------------------------------
# date shifting
# ---------------------------------------------------------------------------------------------
def test_offsets_are_keyed_bounded_nonzero_and_stable():
    draws = [next(dateshift.shift_candidates(SECRET, f"MRN-{i}")) for i in range(400)]
    assert all(1 <= abs(d) <= 365 for d in draws)
    assert len(set(draws)) > 200  # spread over the range, not one constant
    assert min(draws) < -300 and max(draws) > 300
    assert draws[:5] == [next(dateshift.shift_candidates(SECRET, f"MRN-{i}")) for i in range(5)]
    assert next(dateshift.shift_candidates(b"o" * 32, "MRN-0")) != draws[0] or \
        next(dateshift.shift_candidates(b"o" * 32, "MRN-1")) != draws[1]


def test_a_death_on_an_anniversary_keeps_its_label():
    """Scan 2019-03-01, death 2020-03-01: exactly one year later, positive at 1 y. Moved by
    -1 day the scan is 2019-02-28 and the death 2020-02-29, one day after the anniversary
    (2020-02-28): the label would flip, so exact_shift must not use such an offset."""
    scan, death = dt.date(2019, 3, 1), dt.date(2020, 3, 1)
    assert label_scan(scan, death, None, 1).value == "positive"
    assert not dateshift.labels_exact(-1, [scan], death, death)
    days = dateshift.exact_shift(SECRET, "MRN-1", [scan], death, death, previous=-1)
    assert days != -1 and dateshift.labels_exact(days, [scan], death, death)


_days = hst.integers(0, 20 * 365)


@settings(max_examples=150, deadline=None)
@given(start=_days, gaps=hst.lists(hst.integers(1, 900), min_size=1, max_size=6),
       tail=hst.integers(1, 4000), dead=hst.booleans(), exact=hst.booleans(),
       rid=hst.text(min_size=1, max_size=12))
def test_every_label_and_interval_survives_the_shift(start, gaps, tail, dead, exact, rid):
    first = dt.date(2000, 1, 1) + dt.timedelta(days=start)
    scans = [first]
    for g in gaps:
        scans.append(scans[-1] + dt.timedelta(days=g))
    end = scans[-1] + dt.timedelta(days=tail)
    if exact:  # put the outcome on an anniversary of the first scan: the hard case
        end = max(add_years(first, 1 + tail % 5), scans[-1] + dt.timedelta(days=1))
    death = end if dead else None
    days = dateshift.exact_shift(SECRET, rid, scans, death, end)
    assert days != 0 and abs(days) <= 365
    for t in scans:
        for h in HORIZONS_YEARS:
            assert label_scan(t, death, end, h) is label_scan(
                dateshift.shift(t, days), dateshift.shift(death, days),
                dateshift.shift(end, days), h)
