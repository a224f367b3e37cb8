"""A registry-like manifest folder made from the synthetic cohort: what a hospital's export
looks like, for the import's tests and benchmarks (never a real registry).

Layout (README "Use your own registry")::

    ROOT/patients.csv  patient_id (registry-style, e.g. "MRN-483920"), sex, birth_year,
                       subtype, antibody, death_date, last_followup_date
    ROOT/scans.csv     patient_id, scan_date, path
    ROOT/clinical.csv  patient_id, date, fvc_pct_pred, dlco_pct_pred
    ROOT/images/<registry id>/<scan date>/IM00001.dcm ...   one DICOM series per scan

The folder names hold the registry id and the real scan date, and every DICOM file carries
fake identifying tags (the patient's name, the registry id as PatientID, birth date, address,
hospital, physicians), as real exports do: the import must keep all of it out of the store.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.dicom import DEFAULT_PHI, write_dicom_series
from sscmort_core.synthetic.phantom import phantom_for_scan

_SURNAMES = ("HALVORSEN", "OKONKWO", "VANTERPOOL", "MACREADIE", "ZIELINSKA", "FAIRWEATHER",
             "DELACROIX", "NAKASHIMA", "ABERNATHY", "QUILLFEATHER")
_GIVEN = ("MIRABEL", "THADDEUS", "OCTAVIA", "LEOPOLD", "ROSALIND", "CASIMIR", "ELOWEN",
          "BARNABY")


@dataclass(frozen=True)
class RegistryFolder:
    """What :func:`write_registry_folder` wrote: the folder, and every identifying value put
    into it (registry ids, names, other DICOM identifiers, real dates), for tests to search
    the store for."""

    root: Path
    registry_ids: tuple[str, ...]
    names: tuple[str, ...]
    phi_values: tuple[str, ...]  # every fake identifying DICOM value except dates
    real_dates: tuple[dt.date, ...]  # every date of the manifest
    n_patients: int
    n_scans: int


def _registry_ids(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    numbers = rng.choice(np.arange(100_000, 1_000_000), size=n, replace=False)
    return [f"{prefix}{int(k)}" for k in numbers]


def write_registry_folder(root: Path, *, n_patients: int = 8, seed: int = 0,
                          shape: tuple[int, int, int] | None = (24, 64, 64),
                          id_prefix: str = "MRN-", clinical: bool = True) -> RegistryFolder:
    """Write a registry-like manifest folder for ``generate_cohort(n_patients, seed)``.

    ``shape`` (z, y, x) of every phantom (None: the generator's default size, ~50 x 128 x
    128); small volumes keep tests fast. Deterministic for identical arguments.
    """
    root = Path(root)
    cohort = generate_cohort(n_patients=n_patients, seed=seed)
    rng = np.random.default_rng([seed, 11])
    ids = dict(zip(cohort.patients["patient_id"], _registry_ids(rng, n_patients, id_prefix)))
    names = {pid: f"{_SURNAMES[i % len(_SURNAMES)]}{i:03d}^{_GIVEN[i % len(_GIVEN)]}"
             for i, pid in enumerate(cohort.patients["patient_id"])}
    phi_values: set[str] = set()
    scan_rows = []
    used: set[Path] = set()
    for row in cohort.scans.to_dict(orient="records"):
        rid = ids[row["patient_id"]]
        rel = Path("images") / rid / row["scan_date"].isoformat()
        while rel in used:  # two scans on one day: a second series folder
            rel = rel.with_name(rel.name + "b")
        used.add(rel)
        phi = {**DEFAULT_PHI, "PatientName": names[row["patient_id"]], "PatientID": rid,
               "OtherPatientIDs": f"OTHER-{rid}", "AccessionNumber": f"ACC{row['volume_seed']}"}
        phi_values.update(v for k, v in phi.items() if k not in ("PatientBirthDate",
                                                                  "PatientSex", "PatientAge"))
        write_dicom_series(phantom_for_scan(row, shape=shape), root / rel, phi=phi,
                           study_date=row["scan_date"], seed=int(row["volume_seed"]))
        scan_rows.append({"patient_id": rid, "scan_date": row["scan_date"].isoformat(),
                          "path": rel.as_posix()})
    patients = cohort.patients.assign(patient_id=cohort.patients["patient_id"].map(ids))
    patients = patients[["patient_id", "sex", "birth_year", "subtype", "antibody",
                         "death_date", "last_followup_date"]]
    root.mkdir(parents=True, exist_ok=True)
    patients.to_csv(root / "patients.csv", index=False)
    pd.DataFrame(scan_rows).to_csv(root / "scans.csv", index=False)
    dates = set(cohort.scans["scan_date"]) | set(patients["last_followup_date"]) | {
        d for d in patients["death_date"] if d is not None}
    if clinical:
        lung = cohort.clinical.assign(patient_id=cohort.clinical["patient_id"].map(ids))
        lung.to_csv(root / "clinical.csv", index=False)
        dates |= set(lung["date"])
    return RegistryFolder(root, tuple(ids.values()), tuple(names.values()),
                          tuple(sorted(phi_values)), tuple(sorted(dates)), n_patients,
                          len(scan_rows))
