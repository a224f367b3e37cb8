"""CLI commands of the imaging stages: ``ingest`` (store a scan) and ``qct`` (measure only)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import Command, Progress, add_common, add_store, emit, iso_date
from sscmort_core.errors import DataError


def cmd_ingest(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.ingest import ingest_path  # heavy: SimpleITK, pydicom
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    path = Path(args.path)
    if not path.exists():
        raise DataError("no such file or folder", path)
    with open_store(args.store) as store:
        result = ingest_path(store, path, patient_id=args.patient_id, scan_date=args.scan_date,
                             progress=Progress(not args.quiet))
        record_cli(store, "save", (result.patient_id, result.scan_id), detail="sscmort ingest")
    out = result.to_json()
    q = out["qct"]
    emit(args, out, f"stored scan {out['scan_id']} for patient {out['patient_id']}: "
                     f"lung volume {q['lung_volume_ml']:.0f} mL, ILD extent "
                     f"{q['ild_extent_pct']:.1f}%")


def cmd_qct(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.analyse import analyse_path  # heavy: SimpleITK, pydicom

    analysis = analyse_path(Path(args.path), secret=None, progress=Progress(not args.quiet))
    q = analysis.qct.to_dict()
    emit(args, q, "\n".join(f"{k}: {v:.2f}" for k, v in q.items()))


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("ingest", help="add a chest CT (DICOM folder/zip, NIfTI, NRRD, MHA) "
                                      "to the store, de-identified, with lungs and QCT")
    p.add_argument("path", help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    p.add_argument("--patient-id", default=None,
                   help="existing or new pseudonymous patient id (default: a keyed hash of "
                        "the DICOM PatientID, never the ID itself)")
    p.add_argument("--scan-date", type=iso_date, default=None,
                   help="scan date YYYY-MM-DD (default: the DICOM StudyDate)")
    add_store(p)
    add_common(p)
    commands["ingest"] = cmd_ingest

    p = sub.add_parser("qct", help="measure quantitative CT of a scan without storing it")
    p.add_argument("path", help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    add_common(p)
    commands["qct"] = cmd_qct
