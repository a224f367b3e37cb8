"""CLI commands of the imaging stages: ``ingest`` (store a scan), ``qct`` (measure only) and
``measure`` (QCT, zones, patterns and mask QC of every stored scan missing them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import (
    Command,
    Progress,
    add_common,
    add_executor,
    add_store,
    cli_executor,
    emit,
    existing_store,
    iso_date,
)
from sscmort_core.errors import DataError
from sscmort_core.util.threads import single_threaded_blas


def cmd_ingest(args: argparse.Namespace) -> None:
    single_threaded_blas()  # before numpy loads (util/threads.py)
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
                     f"{q['ild_extent_pct']:.1f}%" + (f"; {result.mask_review}"
                                                      if result.mask_review else ""))


def cmd_qct(args: argparse.Namespace) -> None:
    single_threaded_blas()  # before numpy loads (util/threads.py)
    from sscmort_core.pipeline.analyse import (  # heavy: SimpleITK, pydicom
        analyse_path,
        write_label_volume,
    )

    for out in (args.mask_out, args.patterns_out):  # refuse a bad target before the work
        if out is not None and not Path(out).parent.is_dir():
            raise DataError("the output's folder does not exist", Path(out))
    analysis = analyse_path(Path(args.path), secret=None, progress=Progress(not args.quiet))
    m = analysis.measures
    if args.mask_out:
        write_label_volume(analysis, analysis.lungs.mask, Path(args.mask_out))
    if args.patterns_out:
        write_label_volume(analysis, m.patterns.labels, Path(args.patterns_out))
    q = m.qct.to_dict()
    summary = {**q, "patterns": m.patterns.extents(), "regions": m.regions.to_list(),
               "mask_qc": {"flagged": m.qc.flagged, "review": m.qc.summary() or None,
                           "checks": [{"name": c.name, "passed": c.passed, "value": c.value,
                                       "expected": c.expected} for c in m.qc.checks]},
               "method_version": m.method_version}
    text = [f"{k}: {v:.2f}" for k, v in q.items()]
    text += [f"{k}: {v:.2f}" for k, v in m.patterns.extents().items()]
    text.append(m.qc.summary() or "mask QC: every check passed")
    emit(args, summary, "\n".join(text))


def cmd_measure(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.measure import run_measure_stage  # heavy: SimpleITK, scipy
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    if args.workers is not None and args.workers < 1:
        raise DataError(f"--workers must be at least 1, got {args.workers}")
    with open_store(existing_store(args.store)) as store, cli_executor(args) as executor:
        result = run_measure_stage(store, progress=Progress(not args.quiet), executor=executor)
        record_cli(store, "measure", (result.method_version,),
                   detail=f"sscmort measure: {result.measured} scans, {len(result.failed)} "
                          "failed")
    for scan_id, reason in result.failed:
        print(f"warning: scan {scan_id}: lung measures failed: {reason}", file=sys.stderr)
    s = result.to_json()
    emit(args, s, f"lung measures ({s['method_version']}): {s['measured']} scans measured, "
                  f"{s['flagged']} with a mask that needs review, {len(s['failed'])} failed; "
                  f"{s['seconds']} s with {s['workers']} worker(s) ({s['executor']})")


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

    p = sub.add_parser("qct", help="measure quantitative CT (whole lung, by zone, ILD patterns, "
                                   "mask QC) of a scan without storing it")
    p.add_argument("path", help="DICOM folder or zip, or a NIfTI/NRRD/MHA file")
    p.add_argument("--mask-out", default=None, metavar="MASK.nii.gz",
                   help="write the lung mask (1 = lung) on the input grid")
    p.add_argument("--patterns-out", default=None, metavar="PAT.nii.gz",
                   help="write the ILD pattern labels on the input grid (0 outside the lung, "
                        "1 normal, 2 emphysema, 3 ground glass, 4 reticulation, "
                        "5 honeycombing, 6 consolidation)")
    add_common(p)
    commands["qct"] = cmd_qct

    p = sub.add_parser("measure", help="QCT, zones, ILD patterns and mask QC of every stored "
                                       "scan whose rows are missing or from another method "
                                       "version")
    add_store(p)
    add_common(p)
    p.add_argument("--workers", type=int, default=None, help="worker processes (all cores)")
    add_executor(p)
    commands["measure"] = cmd_measure
