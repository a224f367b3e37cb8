"""A registry manifest (README "Use your own registry"): the tables, their columns, and every
check made before anything is written. Pure: frames of text in (as read from the CSV or
Parquet files), a cleaned :class:`Manifest` and a list of :class:`Problem` out; the only
outside look is at the paths the scans table names (do they exist, do they stay inside the
manifest folder). Images are read by :mod:`sscmort_core.pipeline.cohort_import`.

Tables (``<name>.csv`` or ``<name>.parquet`` in the manifest folder):

* ``patients``: patient_id, sex (F/M), birth_year or birth_date (kept as the year),
  subtype (limited / diffuse / sine), antibody (scl70 / centromere / rnapol3 / other /
  negative), death_date (empty when alive), last_followup_date (may be empty for the dead).
* ``scans``: patient_id, scan_date, path (a DICOM folder, a zip, or a NIfTI / NRRD / MHA
  file, relative to the manifest folder), optional series_uid or series_description; or,
  instead of a path, study_uid and series_uid of a series on a PACS (the import is then run
  with a PACS client, ``sscmort import --pacs URL``, which retrieves it).
* ``clinical`` (optional): patient_id, date, fvc_pct_pred, dlco_pct_pred.

Dates are ISO 8601. A :class:`ColumnMapping` renames a registry's own column names; any other
column is refused (free text may hold identifiers), unless the mapping lists it to ignore.

A problem names its file, its row as a spreadsheet shows it (the header is row 1, the first
data row is row 2), the column and what is wrong, and never a cell's value: identifiers and
real dates must not reach the screen or a log.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from sscmort_core.labels import HORIZONS_YEARS, label_scans

TABLES: tuple[str, ...] = ("patients", "scans", "clinical")
REQUIRED_TABLES: tuple[str, ...] = ("patients", "scans")
COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id", "sex", "birth_year", "birth_date", "subtype", "antibody",
                 "death_date", "last_followup_date"),
    "scans": ("patient_id", "scan_date", "path", "series_uid", "series_description",
              "study_uid"),
    "clinical": ("patient_id", "date", "fvc_pct_pred", "dlco_pct_pred"),
}
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_id", "death_date", "last_followup_date"),
    "scans": ("patient_id", "scan_date"),  # and path, or study_uid (checked per row)
    "clinical": ("patient_id", "date"),
}
FIRST_DATA_ROW = 2  # spreadsheet numbering: the header is row 1

SEXES = {"f": "F", "female": "F", "m": "M", "male": "M"}
SUBTYPES = {"limited": "limited", "lcssc": "limited", "diffuse": "diffuse",
            "dcssc": "diffuse", "sine": "sine", "sinescleroderma": "sine",
            "sscsinescleroderma": "sine", "sssc": "sine"}
ANTIBODIES = {"scl70": "scl70", "antiscl70": "scl70", "ata": "scl70", "topoisomerasei": "scl70",
              "antitopoisomerasei": "scl70", "centromere": "centromere", "aca": "centromere",
              "anticentromere": "centromere", "rnapol3": "rnapol3", "rnapoliii": "rnapol3",
              "antirnapolymeraseiii": "rnapol3", "rnapolymeraseiii": "rnapol3",
              "other": "other", "negative": "negative", "none": "negative"}
FVC_RANGE_PCT = (10.0, 200.0)
DLCO_RANGE_PCT = (5.0, 200.0)
GRID_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a manifest, shown as ``file:row: column: problem``."""

    file: str
    row: int | None
    column: str | None
    problem: str

    def line(self) -> str:
        where = self.file if self.row is None else f"{self.file}:{self.row}"
        return f"{where}: {self.column}: {self.problem}" if self.column \
            else f"{where}: {self.problem}"


@dataclass(frozen=True)
class ColumnMapping:
    """Registry column names -> manifest column names, per table, and columns to ignore."""

    renames: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # registry -> ours
    ignore: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RawTable:
    """A manifest table as read: every cell text ("" when empty), columns as in the file."""

    name: str  # "patients", "scans" or "clinical"
    file: str  # the file's name as problems show it, e.g. "patients.csv"
    frame: pd.DataFrame


@dataclass(frozen=True)
class Manifest:
    """The cleaned tables (one row per file row; a value that failed its check is None).

    patients: row, registry_id, sex, birth_year, subtype, antibody, death_date,
    last_followup_date (the death date when empty for the dead). scans: row, registry_id,
    scan_date, path (as given), resolved (Path or None; None for a PACS row until its series
    is retrieved), series_uid, series_description, study_uid (a PACS row's study, else None).
    clinical: row, registry_id, date, fvc_pct_pred, dlco_pct_pred. Dates are datetime.date.
    ``bad_scan_rows``: rows of the scans file with a problem (their images are not read).
    """

    root: Path
    files: Mapping[str, str]
    patients: pd.DataFrame
    scans: pd.DataFrame
    clinical: pd.DataFrame
    bad_scan_rows: frozenset[int] = frozenset()


# ---------------------------------------------------------------------------------------------
# the column mapping
# ---------------------------------------------------------------------------------------------
def _norm_header(name: str) -> str:
    return str(name).strip().lower()


def parse_mapping(spec: Any, options: Sequence[str] = (), source: str = "mapping"
                  ) -> tuple[ColumnMapping, list[Problem]]:
    """A mapping from a YAML document's data (``{table: {our_column: their_column}, ignore:
    {table: [their_column, ...]}}``) and ``--column table.our_column=their_column`` options
    (which win). ``source`` names the YAML file in problems."""
    problems: list[Problem] = []
    renames: dict[str, dict[str, str]] = {t: {} for t in TABLES}
    ignore: dict[str, set[str]] = {t: set() for t in TABLES}
    spec = spec or {}
    if not isinstance(spec, Mapping):
        return ColumnMapping(), [Problem(source, None, None, "not a mapping of table names")]
    for table, cols in spec.items():
        if table == "ignore":
            for t, names in (cols or {}).items() if isinstance(cols, Mapping) else ():
                if t not in TABLES or not isinstance(names, (list, tuple)):
                    problems.append(Problem(source, None, "ignore", f"{t!s}: give a list of "
                                            f"column names for one of {', '.join(TABLES)}"))
                    continue
                ignore[t].update(_norm_header(n) for n in names)
            continue
        if table not in TABLES or not isinstance(cols, Mapping):
            problems.append(Problem(source, None, None, f"{table!s}: not a table (accepted: "
                                    f"{', '.join(TABLES)}, ignore)"))
            continue
        for ours, theirs in cols.items():
            problems += _add_rename(renames, table, str(ours), theirs, source)
    for opt in options:
        m = re.fullmatch(r"\s*(\w+)\.(\w+)\s*=\s*(.+?)\s*", opt)
        if m is None:
            problems.append(Problem("--column", None, None, "give table.column=REGISTRY_NAME, "
                                    "e.g. patients.patient_id=MRN"))
            continue
        problems += _add_rename(renames, m[1], m[2], m[3], "--column")
    return (ColumnMapping({t: dict(r) for t, r in renames.items()},
                          {t: frozenset(i) for t, i in ignore.items()}), problems)


def _add_rename(renames: dict[str, dict[str, str]], table: str, ours: str, theirs: Any,
                source: str) -> list[Problem]:
    if table not in TABLES:
        return [Problem(source, None, None, f"{table}: not a table (accepted: "
                        f"{', '.join(TABLES)})")]
    if ours not in COLUMNS[table]:
        return [Problem(source, None, f"{table}.{ours}", "not a manifest column (accepted: "
                        f"{', '.join(COLUMNS[table])})")]
    if not isinstance(theirs, str) or not theirs.strip():
        return [Problem(source, None, f"{table}.{ours}", "give the registry's column name")]
    table_map = renames[table]
    for k in [k for k, v in table_map.items() if v == ours]:
        del table_map[k]  # a later rule for the same column wins
    table_map[_norm_header(theirs)] = ours
    return []


def apply_mapping(table: RawTable, mapping: ColumnMapping) -> tuple[pd.DataFrame, list[Problem]]:
    """The table with manifest column names (every accepted column present, "" when absent),
    and the column problems: unknown columns, missing required ones, duplicates."""
    problems: list[Problem] = []
    renames = mapping.renames.get(table.name, {})
    ignored = mapping.ignore.get(table.name, frozenset())
    accepted = COLUMNS[table.name]
    out: dict[str, pd.Series] = {}
    for col in table.frame.columns:
        key = _norm_header(col)
        if key in ignored:
            continue
        ours = renames.get(key, key if key in accepted else None)
        if ours is None:
            problems.append(Problem(table.file, None, str(col).strip(), "not an accepted column "
                                    f"(accepted: {', '.join(accepted)}); rename it with the "
                                    "mapping or --column, or list it under ignore"))
            continue
        if ours in out:
            problems.append(Problem(table.file, None, ours, "given by two columns"))
            continue
        out[ours] = table.frame[col].astype(str).str.strip()
    for col in REQUIRED_COLUMNS[table.name]:
        if col not in out:
            theirs = [k for k, v in renames.items() if v == col]
            hint = f" (mapped from {theirs[0]})" if theirs else ""
            problems.append(Problem(table.file, None, col, f"required column is missing{hint}"))
    if table.name == "patients" and "birth_year" in out and "birth_date" in out:
        problems.append(Problem(table.file, None, "birth_date", "give birth_year or "
                                "birth_date, not both"))
    frame = pd.DataFrame({c: out.get(c, pd.Series([""] * len(table.frame), dtype=object))
                          for c in accepted})
    frame.index = pd.RangeIndex(FIRST_DATA_ROW, FIRST_DATA_ROW + len(frame))
    return frame, problems


# ---------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------
class _Bad:
    """A value that failed its check (the problem is recorded; the cleaned cell is None)."""


BAD = _Bad()


def parse_date(text: str, today: dt.date) -> dt.date | None | _Bad:
    """ISO 8601 date (or date-time, reduced to the date); None when empty; BAD otherwise."""
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text) if len(text) <= 10 else \
            dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return BAD
    return BAD if day.year < 1900 or day > today else day


def _vocab(text: str, table: Mapping[str, str]) -> str | None | _Bad:
    if not text:
        return None
    return table.get(re.sub(r"[^a-z0-9]", "", text.lower()), BAD)


def _number(text: str, lo: float, hi: float) -> float | None | _Bad:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return BAD
    return value if np.isfinite(value) and lo <= value <= hi else BAD


class _Rows:
    """Collects cleaned cells and problems of one table."""

    def __init__(self, file: str, today: dt.date) -> None:
        self.file, self.today, self.problems = file, today, []

    def add(self, row: int, column: str, problem: str) -> None:
        self.problems.append(Problem(self.file, row, column, problem))

    def value(self, row: int, column: str, parsed: Any, problem: str) -> Any:
        if parsed is BAD:
            self.add(row, column, problem)
            return None
        return parsed

    def date(self, row: int, column: str, text: str, required: bool = False) -> dt.date | None:
        if required and not text:
            self.add(row, column, "empty; give the date (YYYY-MM-DD)")
            return None
        parsed = parse_date(text, self.today)
        if parsed is BAD:
            self.add(row, column, "not an ISO 8601 date (YYYY-MM-DD) between 1900 and today")
            return None
        return parsed  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------------
def resolve_path(root: Path, text: str) -> tuple[Path | None, str | None]:
    """(the file or folder a scans row names, None) or (None, why it cannot be used)."""
    if not text:
        return None, "empty; give the DICOM folder, zip or image file"
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() \
            or PureWindowsPath(text).drive:
        return None, "an absolute path; give it relative to the manifest folder"
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if ".." in parts:
        return None, "leaves the manifest folder (..)"
    root_real = root.resolve()
    real = (root / Path(*parts)).resolve()
    if not real.is_relative_to(root_real):
        return None, "a link that leads out of the manifest folder"
    if real == root_real:
        return None, "the manifest folder itself; name the scan's folder or file"
    if not real.exists():
        return None, "no such file or folder in the manifest folder"
    return real, None


def _is_grid_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and any(name.endswith(s) for s in GRID_SUFFIXES)


# ---------------------------------------------------------------------------------------------
# the tables
# ---------------------------------------------------------------------------------------------
def _patients(frame: pd.DataFrame, rows: _Rows) -> pd.DataFrame:
    seen: dict[str, int] = {}
    out = []
    for r, rec in zip(frame.index, frame.to_dict(orient="records")):
        rid = rec["patient_id"]
        if not rid:
            rows.add(r, "patient_id", "empty")
        elif rid in seen:
            rows.add(r, "patient_id", f"duplicate patient (the same id as row {seen[rid]})")
        else:
            seen[rid] = r
        birth = rows.value(r, "birth_year", _birth_year(rec["birth_year"], rows.today),
                           f"not a year between 1900 and {rows.today.year}")
        if rec["birth_date"]:
            day = rows.date(r, "birth_date", rec["birth_date"])
            birth = None if day is None else day.year
        death = rows.date(r, "death_date", rec["death_date"])
        fu = rows.date(r, "last_followup_date", rec["last_followup_date"])
        if death is None and fu is None and not rec["death_date"] \
                and not rec["last_followup_date"]:
            rows.add(r, "last_followup_date", "empty, and the patient has no death_date "
                     "(a living patient needs the date last known alive)")
        if death is not None and fu is not None and fu > death:
            rows.add(r, "last_followup_date", "after death_date")
        out.append({
            "row": r, "registry_id": rid or None,
            "sex": rows.value(r, "sex", _vocab(rec["sex"], SEXES), "not F or M"),
            "birth_year": birth,
            "subtype": rows.value(r, "subtype", _vocab(rec["subtype"], SUBTYPES),
                                  "not one of limited, diffuse, sine"),
            "antibody": rows.value(r, "antibody", _vocab(rec["antibody"], ANTIBODIES),
                                   "not one of scl70, centromere, rnapol3, other, negative"),
            "death_date": death, "last_followup_date": fu if fu is not None else death})
    return pd.DataFrame(out, columns=["row", "registry_id", "sex", "birth_year", "subtype",
                                      "antibody", "death_date", "last_followup_date"])


def _birth_year(text: str, today: dt.date) -> int | None | _Bad:
    if not text:
        return None
    try:
        year = float(text)
    except ValueError:
        return BAD
    return int(year) if year.is_integer() and 1900 <= year <= today.year else BAD


def _scan_source(rows: _Rows, r: int, rec: Mapping[str, Any], root: Path, pacs: bool
                 ) -> Path | None:
    """The row's image path (None when it has a problem, or names a PACS series: then its
    study_uid is set and it is fetched later)."""
    study, uid = rec.get("study_uid") or "", rec["series_uid"]
    if study:
        if rec["path"]:
            rows.add(r, "path", "give a path or a study_uid, not both")
        elif not uid:
            rows.add(r, "series_uid", "empty; a row naming a PACS study names its series too")
        elif rec["series_description"]:
            rows.add(r, "series_description", "a PACS row picks its series by series_uid")
        elif not pacs:
            rows.add(r, "study_uid", "names a series on a PACS; run the import with a PACS "
                     "(sscmort import --pacs URL)")
        return None
    resolved, why = resolve_path(root, rec["path"])
    if why:
        rows.add(r, "path", why)
    elif (uid or rec["series_description"]) and _is_grid_file(resolved):  # type: ignore
        rows.add(r, "series_uid" if uid else "series_description",
                 "picks a series of a DICOM folder or zip; this path is an image file")
    return resolved


def _scans(frame: pd.DataFrame, rows: _Rows, root: Path, patients: pd.DataFrame,
           pacs: bool = False) -> pd.DataFrame:
    known = _first_rows(patients)
    birth = dict(zip(patients["registry_id"], patients["birth_year"]))
    seen: dict[tuple, tuple[int, str | None, dt.date | None]] = {}
    out = []
    for r, rec in zip(frame.index, frame.to_dict(orient="records")):
        rid, uid, desc = rec["patient_id"], rec["series_uid"], rec["series_description"]
        if not rid:
            rows.add(r, "patient_id", "empty")
        elif rid not in known:
            rows.add(r, "patient_id", "no such patient in the patients table")
        day = rows.date(r, "scan_date", rec["scan_date"], required=True)
        by = birth.get(rid)
        if day is not None and by is not None and not pd.isna(by) and day.year < int(by):
            rows.add(r, "scan_date", "before the patient's birth year")
        resolved = _scan_source(rows, r, rec, root, pacs)
        # one series: the same UID, or the same path and description
        keys = [("uid", uid)] if uid else []
        if resolved is not None:
            keys.append(("images", str(resolved), uid, desc.casefold()))
        for key in keys:
            if key in seen:
                first, first_id, first_day = seen[key]
                if first_id == rid and first_day == day:
                    rows.add(r, "scan_date", "duplicate scan (the same patient, date and "
                             f"series as row {first})")
                else:
                    rows.add(r, "path", f"the same series as row {first}, for another "
                             "patient or date")
                break
        for key in keys:
            seen.setdefault(key, (r, rid, day))
        out.append({"row": r, "registry_id": rid or None, "scan_date": day,
                    "path": rec["path"], "resolved": resolved,
                    "series_uid": uid or None, "series_description": desc or None,
                    "study_uid": rec.get("study_uid") or None})
    return pd.DataFrame(out, columns=["row", "registry_id", "scan_date", "path", "resolved",
                                      "series_uid", "series_description", "study_uid"])


def _first_rows(patients: pd.DataFrame) -> dict[str, int]:
    out: dict[str, int] = {}
    for rid, r in zip(patients["registry_id"], patients["row"]):
        if rid is not None:
            out.setdefault(rid, int(r))
    return out


def _clinical(frame: pd.DataFrame, rows: _Rows, patients: pd.DataFrame) -> pd.DataFrame:
    known = _first_rows(patients)
    death = dict(zip(patients["registry_id"], patients["death_date"]))
    birth = dict(zip(patients["registry_id"], patients["birth_year"]))
    seen: dict[tuple, int] = {}
    out = []
    for r, rec in zip(frame.index, frame.to_dict(orient="records")):
        rid = rec["patient_id"]
        if not rid:
            rows.add(r, "patient_id", "empty")
        elif rid not in known:
            rows.add(r, "patient_id", "no such patient in the patients table")
        day = rows.date(r, "date", rec["date"], required=True)
        fvc = rows.value(r, "fvc_pct_pred", _number(rec["fvc_pct_pred"], *FVC_RANGE_PCT),
                         f"not a number from {FVC_RANGE_PCT[0]:g} to {FVC_RANGE_PCT[1]:g}")
        dlco = rows.value(r, "dlco_pct_pred", _number(rec["dlco_pct_pred"], *DLCO_RANGE_PCT),
                          f"not a number from {DLCO_RANGE_PCT[0]:g} to {DLCO_RANGE_PCT[1]:g}")
        if not rec["fvc_pct_pred"] and not rec["dlco_pct_pred"]:
            rows.add(r, "fvc_pct_pred", "no fvc_pct_pred or dlco_pct_pred value")
        if day is not None and rid in known:
            d, by = death.get(rid), birth.get(rid)
            if d is not None and not pd.isna(d) and day > d:
                rows.add(r, "date", "after the patient's death_date")
            if by is not None and not pd.isna(by) and day.year < int(by):
                rows.add(r, "date", "before the patient's birth year")
            if (rid, day) in seen:
                rows.add(r, "date", f"duplicate measurement (the same patient and date as row "
                         f"{seen[(rid, day)]})")
            seen.setdefault((rid, day), r)
        out.append({"row": r, "registry_id": rid or None, "date": day,
                    "fvc_pct_pred": fvc, "dlco_pct_pred": dlco})
    return pd.DataFrame(out, columns=["row", "registry_id", "date", "fvc_pct_pred",
                                      "dlco_pct_pred"])


def _outcome_order(patients: pd.DataFrame, scans: pd.DataFrame, rows: _Rows,
                   scans_file: str) -> None:
    """A death on or before, or a last follow-up before, one of the patient's scan dates."""
    by_id = {p.registry_id: p for p in patients.itertuples() if p.registry_id is not None}
    for s in scans.itertuples():
        p = by_id.get(s.registry_id)
        if p is None or s.scan_date is None:
            continue
        if p.death_date is not None and not pd.isna(p.death_date) and p.death_date <= s.scan_date:
            rows.add(p.row, "death_date", f"on or before the scan date of {scans_file}:{s.row}")
        elif p.last_followup_date is not None and not pd.isna(p.last_followup_date) \
                and p.last_followup_date < s.scan_date:
            rows.add(p.row, "last_followup_date",
                     f"before the scan date of {scans_file}:{s.row}")


def validate_manifest(tables: Mapping[str, RawTable], mapping: ColumnMapping, root: Path, *,
                      today: dt.date | None = None, pacs: bool = False
                      ) -> tuple[Manifest, list[Problem]]:
    """Check every table (columns, then every row) and the paths; return the cleaned
    manifest and every problem, sorted by file and row. ``tables``: the tables read (patients
    and scans required, clinical optional); ``pacs``: the import has a PACS to retrieve rows
    naming a study_uid from (without one, such a row is a problem)."""
    today = today or dt.date.today()
    problems: list[Problem] = []
    frames: dict[str, pd.DataFrame] = {}
    files = {name: tables[name].file if name in tables else f"{name}.csv" for name in TABLES}
    for name in TABLES:
        if name not in tables:
            if name in REQUIRED_TABLES:
                problems.append(Problem(f"{name}.csv", None, None, "required table is missing "
                                        f"(give {name}.csv or {name}.parquet)"))
            frames[name] = pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS[name]})
            continue
        frames[name], found = apply_mapping(tables[name], mapping)
        problems += found
    pat_rows = _Rows(files["patients"], today)
    patients = _patients(frames["patients"], pat_rows)
    scan_rows = _Rows(files["scans"], today)
    scans = _scans(frames["scans"], scan_rows, root, patients, pacs)
    clin_rows = _Rows(files["clinical"], today)
    clinical = _clinical(frames["clinical"], clin_rows, patients)
    _outcome_order(patients, scans, pat_rows, files["scans"])
    bad_patients = {p.row for p in pat_rows.problems}
    bad_ids = set(patients.loc[patients["row"].isin(bad_patients), "registry_id"])
    bad_scans = {p.row for p in scan_rows.problems} | set(
        scans.loc[scans["registry_id"].isin(bad_ids), "row"].astype(int))
    problems += pat_rows.problems + scan_rows.problems + clin_rows.problems
    manifest = Manifest(root=root, files=files, patients=patients, scans=scans,
                        clinical=clinical, bad_scan_rows=frozenset(int(r) for r in bad_scans))
    return manifest, sorted(set(problems), key=_problem_order)


def _problem_order(p: Problem) -> tuple:
    return (TABLES.index(p.file.split(".")[0]) if p.file.split(".")[0] in TABLES else -1,
            p.file, p.row or 0, p.column or "", p.problem)


# ---------------------------------------------------------------------------------------------
# the dry run's summary
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HorizonSummary:
    horizon_years: int
    positive: int
    negative: int
    censored: int


def horizon_summary(patients: pd.DataFrame, scans: pd.DataFrame,
                    horizons: Sequence[int] = HORIZONS_YEARS) -> list[HorizonSummary]:
    """Scans positive / known alive / censored at each horizon by the label rule (frames with
    registry_id; patients with death_date and last_followup_date; scans with scan_date)."""
    joined = scans[["registry_id", "scan_date"]].merge(
        patients[["registry_id", "death_date", "last_followup_date"]], on="registry_id",
        how="inner")
    out = []
    for h in horizons:
        if joined.empty:
            out.append(HorizonSummary(h, 0, 0, 0))
            continue
        lab = label_scans(joined["scan_date"], joined["death_date"],
                          joined["last_followup_date"], h)
        known = int(lab.known.sum())
        out.append(HorizonSummary(h, lab.n_positive, known - lab.n_positive, lab.n_censored))
    return out
