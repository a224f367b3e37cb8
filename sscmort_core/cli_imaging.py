"""CLI commands of the imaging stages: ``ingest`` (store a scan) and ``qct`` (measure only)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any, Callable

from sscmort_core.errors import DataError


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def cmd_ingest(args: argparse.Namespace) -> None:
    from sscmort_core.cli import _emit, _Progress
    from sscmort_core.ingest import ingest_path
    from sscmort_core.store import open_store

    path = Path(args.path)
    if not path.exists():
        raise DataError("no such file or folder", path)
    with open_store(args.store) as store:
        result = ingest_path(store, path, patient_id=args.patient_id, scan_date=args.scan_date,
                             progress=_Progress(not args.quiet))
    out = result.to_json()
    q = out["qct"]
    _emit(args, out, f"stored scan {out['scan_id']} for patient {out['patient_id']}: "
                     f"lung volume {q['lung_volume_ml']:.0f} mL, ILD extent "
                     f"{q['ild_extent_pct']:.1f}%")


def cmd_qct(args: argparse.Namespace) -> None:
    from sscmort_core.cli import _emit, _Progress
    from sscmort_core.ingest import analyse_path

    analysis = analyse_path(Path(args.path), secret=None, progress=_Progress(not args.quiet))
    q = analysis.qct.to_dict()
    _emit(args, q, "\n".join(f"{k}: {v:.2f}" for k, v in q.items()))


def register(sub: Any, commands: dict[str, Callable[[argparse.Namespace], None]],
             add_store: Callable[[argparse.ArgumentParser], None],
             add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("ingest", help="add a chest CT (DICOM folder/zip, NIfTI, NRRD, MHA) "
                                      "to the store, de-identified, with lungs and QCT")
    p.add_argument("path", help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    p.add_argument("--patient-id", default=None,
                   help="existing or new pseudonymous patient id (default: a keyed hash of "
                        "the DICOM PatientID, never the ID itself)")
    p.add_argument("--scan-date", type=_date, default=None,
                   help="scan date YYYY-MM-DD (default: the DICOM StudyDate)")
    add_store(p)
    add_common(p)
    commands["ingest"] = cmd_ingest

    p = sub.add_parser("qct", help="measure quantitative CT of a scan without storing it")
    p.add_argument("path", help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    add_common(p)
    commands["qct"] = cmd_qct
