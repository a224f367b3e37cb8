"""Write tests/data/locked_store.duckdb: a tiny sscmort store (2 synthetic patients, 3 scans,
4 clinical rows, no images) written through sscmort's store API by the DuckDB that
requirements.lock pins. tests/store/test_locked_store.py reads it back with the installed
DuckDB, so a lock refresh that moves DuckDB to a release that cannot read the stores users
already have fails there.

Run it (it refuses unless the installed duckdb is the locked one) only after `make lock` moved
DuckDB and the old file was shown to open:

    PYTHONPATH=. .venv/bin/python tests/data/make_locked_store.py

The file is ours (synthetic rows typed in below), not patient data.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import duckdb
import pandas as pd

from tests.lockfile import RUNTIME_LOCK, lock_pins

STORE_FILE = Path(__file__).resolve().parent / "locked_store.duckdb"
WRITER_KEY = "fixture_written_by_duckdb"

PATIENTS = pd.DataFrame({
    "patient_id": ["LOCK-P1", "LOCK-P2"], "sex": ["F", "M"], "birth_year": [1958, 1966],
    "subtype": ["diffuse", "limited"], "antibody": ["scl70", "aca"],
    "death_date": [dt.date(2021, 3, 4), None],
    "last_followup_date": [dt.date(2021, 3, 4), dt.date(2023, 6, 30)],
    "source": "locked-fixture", "synthetic": True})

SCANS = pd.DataFrame({
    "scan_id": ["LOCK-S1", "LOCK-S2", "LOCK-S3"],
    "patient_id": ["LOCK-P1", "LOCK-P1", "LOCK-P2"],
    "scan_date": [dt.date(2018, 1, 15), dt.date(2019, 2, 20), dt.date(2020, 5, 1)],
    "scanner": "synthetic", "kernel": ["B70f", "B30f", "B70f"], "series_description": "fixture",
    "slice_thickness_mm": [1.0, 1.0, 1.25], "spacing_z_mm": [1.0, 1.0, 1.25],
    "spacing_y_mm": 0.7, "spacing_x_mm": 0.7, "shape_z": [30, 30, 24], "shape_y": 64,
    "shape_x": 64, "volume_path": None, "volume_sha256": None, "voxel_sha256": None,
    "volume_seed": [11, 12, 13], "noise_hu": [20.0, 25.0, 30.0],
    "source": "locked-fixture", "synthetic": True})

CLINICAL = pd.DataFrame({
    "patient_id": ["LOCK-P1", "LOCK-P1", "LOCK-P2", "LOCK-P2"],
    "date": [dt.date(2018, 1, 10), dt.date(2019, 2, 25), dt.date(2020, 4, 28),
             dt.date(2021, 5, 2)],
    "fvc_pct_pred": [71.5, 64.0, 92.0, 90.5], "dlco_pct_pred": [48.0, 41.5, 77.0, None],
    "source": "locked-fixture", "synthetic": True})


def write(path: Path) -> None:
    """Write the fixture store at ``path`` (replacing any file there)."""
    from sscmort_core import store as st

    path.unlink(missing_ok=True)
    with st.open_store(path) as s:
        with s.transaction() as cur:
            st.insert_frame(cur, "patients", PATIENTS)
            st.insert_frame(cur, "scans", SCANS)
            st.insert_frame(cur, "clinical", CLINICAL)
            st.set_meta(cur, WRITER_KEY, duckdb.__version__)
        s.con.execute("CHECKPOINT")


def main() -> int:
    locked = lock_pins(RUNTIME_LOCK)["duckdb"]
    if duckdb.__version__ != locked:
        print(f"installed duckdb {duckdb.__version__} is not the locked {locked} "
              f"({RUNTIME_LOCK.name}); install the lock first (make install)", file=sys.stderr)
        return 2
    write(STORE_FILE)
    print(f"wrote {STORE_FILE} with duckdb {duckdb.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
