"""Page data of the Import cohort page: the manifest check as tables (problems, what the import
would do), the import job, the failures and the outcome-change audit; and the source
breakdown other pages show (which rows of a store are synthetic, uploaded or imported)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import DataError
from sscmort_core.pipeline import jobs
from sscmort_core.pipeline.cohort_import import (
    ImportOptions,
    ImportPlan,
    plan_import,
    start_import_job,
)
from sscmort_core.pipeline.ingest import read_secret
from sscmort_core.util.progress import ProgressFn, no_progress

JOB_KIND = "import"
_LINE = re.compile(r"^(?P<file>[^:]+?)(?::(?P<row>\d+))?: (?:(?P<column>[\w.]+): )?"
                   r"(?P<problem>.+)$")


@dataclass(frozen=True)
class ManifestCheck:
    """The check of a manifest folder, as the page shows it."""

    ok: bool
    problems: pd.DataFrame  # file, row, column, problem
    summary: pd.DataFrame  # what, count
    horizons: pd.DataFrame  # horizon (years), died within horizon, known alive, censored
    images_checked: bool


def problems_frame(lines: Sequence[str]) -> pd.DataFrame:
    """``file:row: column: problem`` lines as a table (lines that do not parse: problem only)."""
    rows = []
    for line in lines:
        m = _LINE.match(line)
        rows.append({"file": m["file"], "row": int(m["row"]) if m["row"] else None,
                     "column": m["column"], "problem": m["problem"]} if m else
                    {"file": None, "row": None, "column": None, "problem": line})
    return pd.DataFrame(rows, columns=["file", "row", "column", "problem"])


def check_manifest(store: st_store.Store, folder: str, options: ImportOptions, *,
                   progress: ProgressFn = no_progress) -> ManifestCheck:
    """Check ``folder`` (a path on the server) as ``sscmort import --dry-run`` does; images
    are read only when ``options.check_images``. Writes nothing."""
    path = Path(folder.strip()).expanduser()
    if not folder.strip() or not path.is_dir():
        raise DataError("no such folder on the server", folder.strip() or "(empty)")
    # the store's key, or a throwaway one when it has none (no stored patient can match)
    secret = read_secret(store) or b"\0" * 32
    plan = plan_import(store, path, options, secret, progress)
    return ManifestCheck(not plan.problems, problems_frame(plan.problem_lines),
                         plan_summary(plan), _horizons(plan), plan.images_checked)


def plan_summary(plan: ImportPlan) -> pd.DataFrame:
    rows = [("patients in the manifest", len(plan.patients)),
            ("new patients", sum(p.new for p in plan.patients)),
            ("patients with changed fields", sum(bool(p.changes) for p in plan.patients)),
            ("patients with changed lung function", len(plan.clinical_changed)),
            ("scans in the manifest", len(plan.scans)),
            ("scans to import", plan.count("new")),
            ("scans to retry (failed before)", plan.count("retry")),
            ("scans already in the store", plan.count("in store")),
            ("scans whose images are already stored (linked)", plan.count("linked")),
            ("scan dates corrected", sum(s.date_changed for s in plan.scans)),
            ("lung-function rows", len(plan.clinical))]
    return pd.DataFrame(rows, columns=["what", "count"])


def _horizons(plan: ImportPlan) -> pd.DataFrame:
    return pd.DataFrame([{"horizon (years)": h.horizon_years,
                          "died within horizon": h.positive, "known alive": h.negative,
                          "censored": h.censored} for h in plan.horizons])


def start_import(store: st_store.Store, folder: str, options: ImportOptions) -> str:
    """Start the import as a background job of the app (one at a time)."""
    if import_running(store):
        raise DataError("an import is already running; wait for it to finish")
    path = Path(folder.strip()).expanduser()
    if not path.is_dir():
        raise DataError("no such folder on the server", folder.strip() or "(empty)")
    return start_import_job(store, path, options, jobs.start_job)


def import_running(store: st_store.Store) -> bool:
    return any(jobs.is_alive(j) and j.startswith(JOB_KIND + "-")
               for j in st_store.running_job_ids(store))


def import_jobs(store: st_store.Store) -> pd.DataFrame:
    history = st_store.jobs_frame(store)
    return history.loc[history["kind"] == JOB_KIND].reset_index(drop=True)


def failures_frame(store: st_store.Store) -> pd.DataFrame:
    """Scans that failed to import (a re-run retries them), without the internal keys."""
    return st_store.import_failures_frame(store).drop(columns=["row_key"])


def source_table(store: st_store.Store) -> pd.DataFrame:
    """Patients and scans per source, for the Overview: which rows are which."""
    counts = st_store.source_counts(store)
    return pd.DataFrame({
        "source": counts["source"],
        "synthetic": counts["synthetic"].map({True: "yes (simulated)", False: "no"}),
        "patients": counts["patients"], "scans": counts["scans"],
        "patients with shifted dates": counts["date_shifted_patients"]})
