"""``sscmort import``: bring a registry (manifest folder: patients, scans, clinical) into the
store as a cohort with its outcomes, de-identified, resumable, with failures recorded.

1. :func:`plan_import` reads the tables (CSV or Parquet, :mod:`.manifest_io`), checks them
   (:mod:`sscmort_core.pipeline.manifest`), compares them with the store, and reads every image
   not yet imported with the ingest checks; the plan lists every problem found.
2. :func:`run_import` refuses a plan with problems (ManifestError, nothing written), else
   writes patients, outcome changes (one audit row per changed field) and lung function in one
   transaction, then the scans in bulk (:mod:`sscmort_core.pipeline.import_scans`).

De-identification: a registry id becomes the pseudonym :func:`~sscmort_core.imaging.
pseudonymous_id` makes with the store's key (the one ``ingest`` uses for DICOM PatientID, so a
later upload of the same patient links), identifying DICOM tags are dropped by the reader, and
with ``shift_dates`` every date of a patient moves by one keyed offset
(:mod:`sscmort_core.pipeline.dateshift`). Registry ids, real dates of shifted patients and cell
values never reach the store, a log line or a message. Re-running the same manifest skips
scans already in (by a keyed hash of the row: registry id, path, series), links a scan whose
voxels are already stored for the patient, and retries the failures.

A scans row may name a series on a PACS (study_uid + series_uid instead of a path): with
``ImportOptions.pacs`` (a :class:`sscmort_core.pacs.PacsClient`), each such row not yet in
the store is retrieved (WADO-RS) into a temporary folder that is removed when the import
ends, then read like a DICOM folder. Its UIDs enter only the row's keyed hash, never the
store; a failure names the row, not the UIDs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import DataError, ManifestError, PacsNotFoundError
from sscmort_core.imaging import pseudonymous_id
from sscmort_core.pipeline import import_scans as bulk
from sscmort_core.pipeline.dateshift import exact_shift, shift
from sscmort_core.pipeline.ingest import persist_secret, read_secret
from sscmort_core.pipeline.manifest import (
    HorizonSummary,
    Manifest,
    Problem,
    horizon_summary,
    validate_manifest,
)
from sscmort_core.pipeline.manifest_io import read_tables
from sscmort_core.util.progress import ProgressFn, no_progress
from sscmort_core.util.workers import default_workers

SOURCE_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
WRITE_BATCH_SCANS = 16
PATIENT_FIELDS = ("sex", "birth_year", "subtype", "antibody", "death_date",
                  "last_followup_date")


@dataclass(frozen=True)
class ImportOptions:
    """How to import. ``columns``: ``table.column=REGISTRY_NAME`` renames (win over the
    mapping file, default ``MANIFEST_DIR/mapping.yaml``); ``source`` labels the rows."""

    shift_dates: bool = False
    workers: int | None = None
    source: str = "registry"
    mapping_file: Path | None = None
    columns: tuple[str, ...] = ()
    batch_scans: int = WRITE_BATCH_SCANS
    check_images: bool = True
    pacs: Any = None  # a sscmort_core.pacs.PacsClient for rows naming a study_uid
    executor: Any = None  # a sscmort_core.util.executors.Executor (None: the local pool)

    def __post_init__(self) -> None:
        if not SOURCE_PATTERN.match(self.source) or self.source == "synthetic":
            raise DataError("--source must be 1-40 letters, digits, '.', '_' or '-' and not "
                            "'synthetic' (it labels the imported rows)")
        if self.batch_scans < 1:
            raise DataError(f"--batch must be at least 1, got {self.batch_scans}")
        if self.workers is not None and self.workers < 1:
            raise DataError(f"--workers must be at least 1, got {self.workers}")


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatientPlan:
    row: int
    patient_id: str  # pseudonymous
    values: Mapping[str, Any]  # PATIENT_FIELDS as they will be stored
    new: bool
    changes: tuple[tuple[str, str], ...]  # (field, "set" | "changed" | "cleared")
    offset_days: int  # 0 without shifting; in memory only, never stored


@dataclass(frozen=True)
class ScanPlan:
    row: int
    row_key: str
    patient_id: str
    scan_id: str
    scan_date: dt.date  # as stored
    status: str  # "new", "retry", "in store", "linked"
    date_changed: bool
    job: bulk.ImageJob


@dataclass(frozen=True)
class ImportPlan:
    """What an import would do, and every problem that stops it."""

    folder: Path
    options: ImportOptions
    files: Mapping[str, str]
    patients: tuple[PatientPlan, ...]
    scans: tuple[ScanPlan, ...]
    clinical: pd.DataFrame  # rows to store (clinical columns), for the manifest's patients
    clinical_changed: frozenset[str]  # existing patients whose lung function changes
    problems: tuple[Problem, ...]
    horizons: tuple[HorizonSummary, ...]
    images_checked: bool

    @property
    def problem_lines(self) -> tuple[str, ...]:
        return tuple(p.line() for p in self.problems)

    def count(self, status: str) -> int:
        return sum(1 for s in self.scans if s.status == status)


def row_key(secret: bytes, registry_id: str, resolved: Path | None, root: Path,
            uid: str | None, desc: str | None, study_uid: str | None = None) -> str:
    """Keyed hash of a scans row's identity (registry id, path or PACS study, series): what
    lets a re-run skip it. Reveals none of its parts."""
    rel = f"pacs:{study_uid}" if study_uid else \
        Path(resolved).relative_to(root.resolve()).as_posix()  # type: ignore[arg-type]
    text = f"scan-row|{registry_id.strip()}|{rel}|{uid or ''}|{(desc or '').casefold()}"
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def _scan_id(key: str) -> str:
    return "S-" + hashlib.sha256(f"scan|{key}".encode()).hexdigest()[:12]


def _needles(registry_id: str, patient_id: str, real_dates: Sequence[dt.date]
             ) -> tuple[tuple[str, str], ...]:
    out = [(registry_id, patient_id)]
    for d in real_dates:
        out += [(d.isoformat(), "<date>"), (d.strftime("%Y%m%d"), "<date>"),
                (d.strftime("%Y_%m_%d"), "<date>")]
    return tuple(out)


@dataclass
class _Store:
    """What the plan needs from the store (empty when there is no store yet)."""

    patients: pd.DataFrame
    flags: dict[str, bool]
    scans: pd.DataFrame  # patient_scans of the manifest's patients
    failed: set[str]
    clinical: pd.DataFrame

    @classmethod
    def read(cls, store: st_store.Store | None, pids: Sequence[str], source: str) -> "_Store":
        if store is None:
            return cls(pd.DataFrame(columns=list(PATIENT_FIELDS)), {},
                       pd.DataFrame(columns=["scan_id", "patient_id", "scan_date",
                                             "voxel_sha256", "row_key"]), set(),
                       pd.DataFrame(columns=["patient_id", "date", "fvc_pct_pred",
                                             "dlco_pct_pred"]))
        return cls(st_store.patients_by_ids(store, pids), st_store.registry_flags(store, pids),
                   st_store.patient_scans(store, pids), st_store.failed_row_keys(store),
                   st_store.clinical_of(store, pids, source))


def plan_import(store: st_store.Store | None, folder: Path, options: ImportOptions,
                secret: bytes, progress: ProgressFn = no_progress,
                staging: Path | None = None) -> ImportPlan:
    """Check the manifest in ``folder`` against itself, the store (None: no store yet) and
    the images; return what an import would do and every problem found. ``staging``: where
    PACS rows are retrieved to (a temporary folder when None; :func:`run_import` passes one
    that lives until its scans are written)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("no such manifest folder", folder)
    tables, mapping, problems = read_tables(folder, options.mapping_file, options.columns)
    manifest, found = validate_manifest(tables, mapping, folder, pacs=options.pacs is not None)
    problems += found
    pats = manifest.patients.dropna(subset=["registry_id"]).drop_duplicates("registry_id")
    pid_of = {rid: pseudonymous_id(secret, rid) for rid in pats["registry_id"]}
    stored = _Store.read(store, list(pid_of.values()), options.source)
    scan_rows = _scan_rows(manifest, pid_of, secret)
    bad = {p.row for p in found if p.file == manifest.files["patients"]}
    patients, offsets, found = _patient_plans(manifest, pats, pid_of, stored, scan_rows,
                                              options, secret, bad)
    problems += found
    scans = _scan_plans(manifest, scan_rows, pid_of, offsets, stored, options)
    clinical, changed = _clinical_plan(manifest, pid_of, offsets, stored, options.source)
    checked = False
    if options.check_images:
        with contextlib.ExitStack() as stack:
            if staging is None and options.pacs is not None:
                staging = Path(stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="sscmort-pacs-import-")))
            scans, found = _retrieve_pacs_rows(manifest, scans, options, staging, progress)
            problems += found
            scans, found = _check_images(store, manifest, scans, options, progress)
        problems += found
        checked = True
    horizons = horizon_summary(manifest.patients, manifest.scans) if not problems else ()
    return ImportPlan(folder, options, manifest.files, tuple(patients), tuple(scans), clinical,
                      frozenset(changed), tuple(problems), tuple(horizons), checked)


def _scan_rows(manifest: Manifest, pid_of: Mapping[str, str], secret: bytes
               ) -> pd.DataFrame:
    """The scans rows that can be planned (known patient, date and path), with their keys."""
    s = manifest.scans
    pacs_row = s["study_uid"].notna() & ~s["row"].isin(manifest.bad_scan_rows)
    ok = s["registry_id"].isin(list(pid_of)) & s["scan_date"].notna() \
        & (s["resolved"].notna() | pacs_row)
    s = s.loc[ok].copy()
    s["row_key"] = [row_key(secret, r.registry_id, r.resolved, manifest.root, r.series_uid,
                            r.series_description, r.study_uid) for r in s.itertuples()]
    return s


def _retrieve_pacs_rows(manifest: Manifest, scans: list[ScanPlan], options: ImportOptions,
                        staging: Path | None, progress: ProgressFn
                        ) -> tuple[list[ScanPlan], list[Problem]]:
    """Retrieve the series of every PACS row still to import into ``staging`` and point its
    image job there; a series the PACS does not have is a problem of its row. Other PACS
    failures (down, refused credentials, timeout) stop the import with their one line."""
    pacs_rows = manifest.scans.dropna(subset=["study_uid"]).set_index("row")
    todo = [s for s in scans if s.row in pacs_rows.index and s.status in ("new", "retry")
            and s.row not in manifest.bad_scan_rows]
    if not todo:
        return scans, []
    assert staging is not None and options.pacs is not None
    problems, fetched = [], {}
    for i, s in enumerate(todo):
        progress("import: retrieve from PACS", i, len(todo))
        row = pacs_rows.loc[s.row]
        target = Path(staging) / s.row_key
        try:
            options.pacs.retrieve_series(str(row["study_uid"]), str(row["series_uid"]), target)
        except PacsNotFoundError:
            problems.append(Problem(manifest.files["scans"], s.row, "series_uid",
                                    "no such study / series on the PACS"))
            continue
        fetched[s.row_key] = str(target)
    progress("import: retrieve from PACS", len(todo), len(todo))
    out = [dataclasses.replace(s, job=dataclasses.replace(s.job, path=fetched[s.row_key]))
           if s.row_key in fetched else s for s in scans]
    return out, problems


def _previous_offset(pid: str, rows: pd.DataFrame, stored: _Store) -> int | None:
    """The offset an earlier shifted import of this patient used: stored minus real scan
    date of its rows already in (the most common one)."""
    mine = stored.scans.loc[(stored.scans["patient_id"] == pid) & stored.scans["row_key"].notna()]
    if mine.empty:
        return None
    date_of = dict(zip(mine["row_key"], mine["scan_date"]))
    diffs = [(date_of[k] - d).days for k, d in zip(rows["row_key"], rows["scan_date"])
             if k in date_of]
    return max(set(diffs), key=diffs.count) if diffs else None


def _patient_plans(manifest: Manifest, pats: pd.DataFrame, pid_of: Mapping[str, str],
                   stored: _Store, scan_rows: pd.DataFrame, options: ImportOptions,
                   secret: bytes, bad_rows: set[int]
                   ) -> tuple[list[PatientPlan], dict[str, int], list[Problem]]:
    file = manifest.files["patients"]
    plans, offsets, problems = [], {}, []
    keys_here = set(scan_rows["row_key"])
    for p in pats.itertuples():
        pid = pid_of[p.registry_id]
        rows = scan_rows.loc[scan_rows["registry_id"] == p.registry_id]
        exists = pid in stored.patients.index
        flag = stored.flags.get(pid)
        if exists and flag is not None and flag != options.shift_dates:
            problems.append(Problem(file, p.row, "patient_id", "imported before "
                                    f"{'with' if flag else 'without'} --shift-dates; import it "
                                    "the same way"))
        elif exists and flag is None and options.shift_dates:
            problems.append(Problem(file, p.row, "patient_id", "already in the store with real "
                                    "dates (an uploaded scan); import without --shift-dates"))
        offset = 0
        if options.shift_dates and p.row not in bad_rows:
            try:
                offset = exact_shift(secret, p.registry_id, list(rows["scan_date"]),
                                     _date(p.death_date), _date(p.last_followup_date),
                                     _previous_offset(pid, rows, stored))
            except DataError as err:  # the manifest's own problems are reported already
                problems.append(Problem(file, p.row, "death_date", err.reason))
        offsets[p.registry_id] = offset
        others = stored.scans.loc[(stored.scans["patient_id"] == pid)
                                  & ~stored.scans["row_key"].isin(keys_here)]
        values = {"sex": p.sex, "birth_year": _int(p.birth_year), "subtype": p.subtype,
                  "antibody": p.antibody, "death_date": shift(_date(p.death_date), offset),
                  "last_followup_date": shift(_date(p.last_followup_date), offset)}
        last_other = max(others["scan_date"], default=None)
        if last_other is not None and values["death_date"] is not None \
                and values["death_date"] <= last_other:
            problems.append(Problem(file, p.row, "death_date", "on or before a scan of this "
                                    "patient already in the store (not in this manifest)"))
        elif last_other is not None and values["death_date"] is None \
                and values["last_followup_date"] is not None \
                and values["last_followup_date"] < last_other:
            values["last_followup_date"] = last_other  # a stored scan proves them alive then
        changes = _changes(stored.patients.loc[pid], values) if exists else ()
        plans.append(PatientPlan(int(p.row), pid, values, not exists, changes, offset))
    return plans, offsets, problems


def _date(value: Any) -> dt.date | None:
    return None if value is None or pd.isna(value) else value


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _changes(row: pd.Series, values: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out = []
    for f in PATIENT_FIELDS:
        old, new = st_store.to_python(row.get(f)), values[f]
        old = None if old is None or (isinstance(old, float) and pd.isna(old)) else old
        if f == "birth_year" and old is not None:
            old = int(old)
        if old != new:
            out.append((f, "set" if old is None else "cleared" if new is None else "changed"))
    return tuple(out)


def _scan_plans(manifest: Manifest, scan_rows: pd.DataFrame, pid_of: Mapping[str, str],
                offsets: Mapping[str, int], stored: _Store, options: ImportOptions
                ) -> list[ScanPlan]:
    in_store = stored.scans.dropna(subset=["row_key"]).set_index("row_key")
    real_dates = manifest.scans.groupby("registry_id")["scan_date"].apply(list).to_dict()
    patients = manifest.patients.set_index("registry_id", drop=False)
    out = []
    for r in scan_rows.itertuples():
        pid, offset = pid_of[r.registry_id], offsets.get(r.registry_id, 0)
        date = shift(r.scan_date, offset)
        dates = real_dates.get(r.registry_id, []) if options.shift_dates else []
        if options.shift_dates and r.registry_id in patients.index:
            p = patients.loc[r.registry_id]
            dates = [*dates, *(d for d in (p["death_date"], p["last_followup_date"])
                               if d is not None and not pd.isna(d))]
        job = bulk.ImageJob(r.row_key, str(r.resolved), r.series_uid, r.series_description,
                            _needles(r.registry_id, pid, [d for d in dates if d is not None]))
        if r.row_key in in_store.index:
            have = in_store.loc[r.row_key]
            out.append(ScanPlan(int(r.row), r.row_key, pid, str(have["scan_id"]), date,
                                "in store", have["scan_date"] != date, job))
            continue
        status = "retry" if r.row_key in stored.failed else "new"
        out.append(ScanPlan(int(r.row), r.row_key, pid, _scan_id(r.row_key), date, status,
                            False, job))
    return out


def _clinical_plan(manifest: Manifest, pid_of: Mapping[str, str], offsets: Mapping[str, int],
                   stored: _Store, source: str) -> tuple[pd.DataFrame, set[str]]:
    c = manifest.clinical
    c = c.loc[c["registry_id"].isin(list(pid_of)) & c["date"].notna()]
    rows = pd.DataFrame({
        "patient_id": [pid_of[r] for r in c["registry_id"]],
        "date": [shift(d, offsets.get(r, 0)) for r, d in zip(c["registry_id"], c["date"])],
        "fvc_pct_pred": c["fvc_pct_pred"].astype(float), "dlco_pct_pred":
        c["dlco_pct_pred"].astype(float), "source": source, "synthetic": False})
    changed = set()
    existing = set(stored.patients.index)
    for pid in set(pid_of.values()) & existing:
        def rows_of(frame: pd.DataFrame) -> set[tuple]:
            part = frame.loc[frame["patient_id"] == pid]
            return {(d, _num(f), _num(g)) for d, f, g in zip(
                part["date"], part["fvc_pct_pred"], part["dlco_pct_pred"])}
        if rows_of(rows) != rows_of(stored.clinical):
            changed.add(pid)
    return rows.reset_index(drop=True), changed


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 6)


def _check_images(store: st_store.Store | None, manifest: Manifest, scans: list[ScanPlan],
                  options: ImportOptions, progress: ProgressFn
                  ) -> tuple[list[ScanPlan], list[Problem]]:
    """Read the images of every row not yet in; refuse bad images and the same images twice;
    link rows whose voxels are already stored for their patient."""
    file = manifest.files["scans"]
    todo = [s for s in scans if s.status in ("new", "retry") and s.row not in
            manifest.bad_scan_rows]
    workers = options.workers or default_workers()
    checks = {c.row_key: c for c in bulk.check_images([s.job for s in todo], workers, progress,
                                                      options.executor)}
    shas = [c.voxel_sha256 for c in checks.values() if c.voxel_sha256]
    stored = st_store.scans_with_voxels(store, shas) if store is not None and shas else \
        pd.DataFrame(columns=["scan_id", "patient_id", "voxel_sha256", "scan_date"])
    owner = {r.voxel_sha256: r for r in stored.itertuples()}
    problems, first, out = [], {}, []
    for s in scans:
        c = checks.get(s.row_key)
        if c is None:
            out.append(s)
            continue
        if c.reason:
            problems.append(Problem(file, s.row, "path", c.reason))
        elif c.voxel_sha256 in first:
            problems.append(Problem(file, s.row, "path", "the same images as row "
                                    f"{first[c.voxel_sha256]}"))
        elif c.voxel_sha256 in owner:
            have = owner[c.voxel_sha256]
            if have.patient_id != s.patient_id:
                problems.append(Problem(file, s.row, "path", "these images are already in the "
                                        "store for another patient"))
            else:
                s = dataclasses.replace(s, status="linked", scan_id=str(have.scan_id),
                                        date_changed=have.scan_date != s.scan_date)
        first.setdefault(c.voxel_sha256, s.row)
        out.append(s)
    return out, problems


# ---------------------------------------------------------------------------------------------
# running it
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportFailure:
    file: str
    row: int
    path: str  # relative to the manifest folder, registry id and real dates redacted
    reason: str


@dataclass(frozen=True)
class ImportResult:
    """What :func:`run_import` did (or, for a dry run, would do)."""

    dry_run: bool
    source: str
    dates_shifted: bool
    patients: int
    new_patients: int
    updated_patients: int
    changes: int  # audit rows written (or that would be)
    scans: int  # scans rows of the manifest
    imported: int
    already_in: int
    linked: int
    failures: tuple[ImportFailure, ...]
    horizons: tuple[HorizonSummary, ...]
    images_checked: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "source": self.source, "dates_shifted": self.dates_shifted,
            "patients": self.patients, "new_patients": self.new_patients,
            "updated_patients": self.updated_patients, "outcome_changes": self.changes,
            "scans": self.scans, "imported": self.imported, "already_in": self.already_in,
            "linked": self.linked, "failed": len(self.failures),
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "horizons": {str(h.horizon_years): {"positive": h.positive, "negative": h.negative,
                                                "censored": h.censored} for h in self.horizons},
            "images_checked": self.images_checked, "seconds": round(self.seconds, 1)}


def run_import(store: st_store.Store | None, folder: Path,
               options: ImportOptions = ImportOptions(), *, dry_run: bool = False,
               progress: ProgressFn = no_progress) -> ImportResult:
    """Check the manifest and, unless ``dry_run``, import it. ``store`` may be None only for a
    dry run (no store yet). Raises ManifestError, with every problem, when anything is wrong:
    then nothing is written (not even the pseudonymisation key)."""
    t0 = time.perf_counter()
    if store is None and not dry_run:
        raise ValueError("an import needs a store")
    secret = read_secret(store) or secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="sscmort-pacs-import-") as staging:
        plan = plan_import(store, folder, options, secret, progress, Path(staging))
        if plan.problems:
            n = len(plan.problems)
            raise ManifestError(f"{n} problem{'s' if n > 1 else ''} in the manifest; nothing "
                                "was written", folder, problems=plan.problem_lines)
        if dry_run or store is None:
            return _result(plan, True, 0, (), time.perf_counter() - t0)
        persist_secret(store, secret)
        bulk.remove_orphans(store)
        changes = write_patients(store, plan)
        imported, failures = _write_scans(store, plan, progress)
        bulk.remove_orphans(store)
    return _result(plan, False, imported, failures, time.perf_counter() - t0, changes)


def write_patients(store: st_store.Store, plan: ImportPlan) -> int:
    """Patients, outcome changes (audited), lung function, corrected scan dates and linked
    scans, in one transaction. Returns the number of audit rows."""
    src = plan.options.source
    new = pd.DataFrame([{**p.values, "patient_id": p.patient_id, "source": src,
                         "synthetic": False} for p in plan.patients if p.new],
                       columns=list(st_store.PATIENT_COLUMNS))
    audit = [(p.patient_id, f, c) for p in plan.patients for f, c in p.changes]
    audit += [(pid, "clinical", "changed") for pid in sorted(plan.clinical_changed)]
    audit += [(s.patient_id, "scan_date", "changed") for s in plan.scans if s.date_changed]
    flags = pd.DataFrame({"patient_id": [p.patient_id for p in plan.patients], "source": src,
                          "dates_shifted": plan.options.shift_dates})
    replace = {p.patient_id for p in plan.patients if p.new} | set(plan.clinical_changed)
    linked = [s for s in plan.scans if s.status == "linked"]
    with store.transaction() as cur:
        st_store.insert_frame(cur, "patients", new)
        for p in plan.patients:
            if p.changes:
                st_store.update_patient(cur, p.patient_id, {f: p.values[f] for f, _ in p.changes})
        st_store.upsert_registry_patients(cur, flags)
        st_store.replace_clinical(cur, sorted(replace), src,
                                  plan.clinical.loc[plan.clinical["patient_id"].isin(replace)])
        for s in plan.scans:
            if s.date_changed:
                st_store.update_scan_date(cur, s.scan_id, s.scan_date)
        st_store.insert_import_keys(cur, pd.DataFrame(
            [{"row_key": s.row_key, "patient_id": s.patient_id, "scan_id": s.scan_id}
             for s in linked], columns=list(st_store.IMPORT_KEY_COLUMNS)))
        st_store.clear_import_failures(cur, [s.row_key for s in linked])
        st_store.record_outcome_changes(cur, pd.DataFrame(
            audit, columns=["patient_id", "field", "change"]).assign(source=src))
    return len(audit)


def _write_scans(store: st_store.Store, plan: ImportPlan, progress: ProgressFn
                 ) -> tuple[int, tuple[ImportFailure, ...]]:
    todo = [s for s in plan.scans if s.status in ("new", "retry")]
    if not todo:
        return 0, ()
    staging = bulk.staging_dir(store)
    staging.mkdir(parents=True, exist_ok=True)
    file = plan.files["scans"]
    shown = {s.row_key: bulk.redact(_relative(s.job.path, plan.folder), s.job.redact)
             for s in todo}
    targets = {s.row_key: bulk.Target(s.row_key, s.patient_id, s.scan_id, s.scan_date, file,
                                      s.row, shown[s.row_key]) for s in todo}
    jobs = [bulk.ScanJob(s.job, s.scan_id, str(staging)) for s in todo]
    results = bulk.import_scans(store, jobs, targets, source=plan.options.source,
                                workers=plan.options.workers or default_workers(),
                                batch_scans=plan.options.batch_scans, progress=progress,
                                executor=plan.options.executor)
    imported = sum(len(r.imported) + len(r.linked) for r in results)
    failures = tuple(ImportFailure(file, targets[k].manifest_row, targets[k].shown_path, reason)
                     for r in results for k, reason in r.failed)
    return imported, failures


def _relative(path: str, folder: Path) -> str:
    """A row's path as shown and recorded: relative to the manifest folder (a PACS row's
    retrieved folder is not: it shows as "PACS series", never its UIDs)."""
    p = Path(path)
    return p.relative_to(Path(folder).resolve()).as_posix() \
        if p.is_relative_to(Path(folder).resolve()) else "PACS series"


def _result(plan: ImportPlan, dry_run: bool, imported: int,
            failures: tuple[ImportFailure, ...], seconds: float,
            changes: int | None = None) -> ImportResult:
    n_changes = sum(len(p.changes) for p in plan.patients) + len(plan.clinical_changed) + \
        sum(1 for s in plan.scans if s.date_changed)
    return ImportResult(
        dry_run=dry_run, source=plan.options.source, dates_shifted=plan.options.shift_dates,
        patients=len(plan.patients), new_patients=sum(p.new for p in plan.patients),
        updated_patients=sum(bool(p.changes) for p in plan.patients),
        changes=n_changes if changes is None else changes, scans=len(plan.scans),
        imported=imported, already_in=plan.count("in store"), linked=plan.count("linked"),
        failures=failures, horizons=plan.horizons, images_checked=plan.images_checked,
        seconds=seconds)


def start_import_job(store: st_store.Store, folder: Path, options: ImportOptions,
                     start_job: Callable[..., str]) -> str:
    """A background import in the app (``start_job`` is :func:`sscmort_core.pipeline.jobs.
    start_job`): the app's thread writes, its workers only compute. A refused manifest fails
    the job with every problem line in its error."""
    params = {"folder": str(folder), "shift_dates": options.shift_dates,
              "source": options.source}

    def work(progress: ProgressFn) -> ImportResult:
        try:
            return run_import(store, folder, options, progress=progress)
        except ManifestError as err:
            raise ManifestError("\n".join((err.reason, *err.problems)), None,
                                err.problems) from None

    return start_job(store, "import", params, work, describe=describe)


def describe(result: ImportResult) -> str:
    """One sentence about an import (the job's final message, the CLI's text line)."""
    if result.dry_run:
        todo = result.scans - result.already_in - result.linked
        head = f"dry run: would import {todo} scans"
    else:
        head = f"imported {result.imported} scans"
    return (f"{head} of {result.patients} patients ({result.new_patients} new, "
            f"{result.updated_patients} with changed fields, {result.changes} audit rows); "
            f"{result.already_in} already in, {result.linked} linked to stored images, "
            f"{len(result.failures)} failed")
