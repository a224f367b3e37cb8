"""CLI commands of hospital integration: ``pacs query``, ``pacs fetch`` (DICOMweb) and
``export-dicom`` (results as DICOM SEG + SR, optionally stored on a PACS).

Credentials come from the environment (``SSCMORT_PACS_USERNAME`` / ``_PASSWORD`` or
``_TOKEN``, ``SSCMORT_PACS_CA_BUNDLE``) or ``.streamlit/secrets.toml``; never from the command
line, where they would land in the shell history. A PACS failure is one line on stderr and
exit 2, with nothing in the store.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sscmort_core.cli.audit import record_cli
from sscmort_core.cli.output import (
    Command,
    Progress,
    add_common,
    add_models_dir,
    add_store,
    emit,
    existing_store,
    iso_date,
)
from sscmort_core.errors import DataError, PacsError


def study_date_range(text: str) -> str:
    """An argparse type: a date or range (see :func:`sscmort_core.pacs.dicom_date_range`)."""
    from sscmort_core.pacs import dicom_date_range  # heavy: pydicom

    try:
        return dicom_date_range(text)
    except DataError as err:
        raise argparse.ArgumentTypeError(err.reason) from None


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _client(args: argparse.Namespace, url: str | None = None) -> Any:
    from sscmort_core.pacs import connect  # heavy: pydicom

    return connect(url or args.url, timeout_s=args.timeout)


def cmd_pacs_query(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.pacs import query  # heavy: pydicom, SimpleITK

    with _client(args) as client:
        rows = query(client, patient_id=args.patient_id, accession=args.accession,
                     study_date=args.study_date, ct_only=not args.all_modalities)
    lines = [f"{r.study_date or 'no date'}  {r.modality or '?':<3} {r.n_instances or '?':>5} "
             f"images  {r.series_description or r.study_description or '':<32.32}  study "
             f"{r.study_uid}  series {r.series_uid}" for r in rows]
    emit(args, {"url": client.shown_url, "n_series": len(rows),
                "series": [r.to_json() for r in rows]},
         "\n".join(lines) if lines else "no matching series")


def cmd_pacs_fetch(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.pacs import fetch_and_ingest, send_back  # heavy: pydicom, scipy
    from sscmort_core.pipeline.predict import predict_all  # heavy: pydicom, scipy
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    progress = Progress(not args.quiet)
    with _client(args) as client, open_store(args.store) as store:
        got = fetch_and_ingest(store, client, args.study, args.series,
                               patient_id=args.patient_id, scan_date=args.scan_date,
                               keep_source=args.send_back, progress=progress)
        out = {**got.result.to_json(), "series_instances": got.fetched.series.n_instances,
               "sent_back": None}
        record_cli(store, "save", (out["patient_id"], out["scan_id"]),
                   detail="sscmort pacs fetch")
        text = (f"stored scan {out['scan_id']} for patient {out['patient_id']} from "
                f"{client.shown_url}: lung volume {out['qct']['lung_volume_ml']:.0f} mL, "
                f"ILD extent {out['qct']['ild_extent_pct']:.1f}%")
        if args.send_back:
            report = predict_all(store, got.fetched.analysis, models_dir=args.models_dir)
            try:
                results, sent = send_back(client, got.fetched, report.predictions,
                                          patient_id=got.result.patient_id,
                                          scan_date=got.result.scan_date)
            except PacsError as err:  # the scan is stored: say so with the failure
                raise type(err)(f"stored scan {out['scan_id']}, but sending the results back "
                                f"failed: {err.reason}", err.path) from None
            record_cli(store, "export", (out["scan_id"],),
                       detail=f"sscmort pacs fetch --send-back: {sent.n_stored} objects")
            out["sent_back"] = {"n_stored": sent.n_stored, "note": results.note,
                                "models": [p.model_id for p in report.predictions],
                                "problems": [{"model": m, "problem": p}
                                             for m, p in report.problems]}
            text += (f"\nsent back {sent.n_stored} objects (SEG + SR, research use only) "
                     "referencing the original study")
    emit(args, out, text)


def cmd_export_dicom(args: argparse.Namespace) -> None:
    from sscmort_core.pipeline.export_dicom import export_scan  # heavy: SimpleITK, pydicom
    from sscmort_core.store import open_store  # heavy: duckdb, pandas

    client = _client(args, args.send) if args.send else None
    try:
        with open_store(existing_store(args.store)) as store:
            got = export_scan(store, args.scan_id, Path(args.out), send_to=client,
                              models_dir=args.models_dir)
            record_cli(store, "export", (args.scan_id,), detail="sscmort export-dicom" + (
                " --send" if client is not None else ""))
    finally:
        if client is not None:
            client.close()
    text = [f"wrote {len(got.files)} files to {args.out} (SEG + SR"
            f"{' + de-identified CT' if not got.references_source else ''}; research use only)",
            f"risks ({got.prediction_source}): {', '.join(got.models) or 'no model'}",
            f"note: {got.note}"]
    text += [f"{m}: {p}" for m, p in got.problems]
    if got.sent is not None:
        text.append(f"stored {got.sent.n_stored} objects on {client.shown_url}")
    emit(args, got.to_json(), "\n".join(text))


def _add_pacs_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True,
                   help="the PACS's DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    _add_timeout(p)


def _add_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="SECONDS",
                   help="give up on a PACS request after this long without data (default 60)")


def register(sub: Any, commands: dict[str, Command]) -> None:
    pacs = sub.add_parser("pacs", help="search and fetch CT series from a PACS (DICOMweb)")
    psub = pacs.add_subparsers(dest="pacs_command", required=True)
    q = psub.add_parser("query", help="list the CT series of matching studies")
    _add_pacs_connection(q)
    q.add_argument("--patient-id", default=None, help="the PACS's patient id to search for")
    q.add_argument("--accession", default=None, help="accession number to search for")
    q.add_argument("--study-date", type=study_date_range, default=None, metavar="RANGE",
                   help="a date or range: 2020-01-15, 2020-01-01..2020-12-31, 2020-01-01..")
    q.add_argument("--all-modalities", action="store_true",
                   help="list every series, not only CT")
    add_common(q)
    q.set_defaults(pacs_run=cmd_pacs_query)

    f = psub.add_parser("fetch", help="retrieve a CT series and ingest it (de-identified)")
    _add_pacs_connection(f)
    f.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    f.add_argument("--series", default=None, metavar="UID",
                   help="Series Instance UID (default: the study's largest CT series)")
    f.add_argument("--patient-id", default=None,
                   help="existing or new pseudonymous patient id (default: a keyed hash of "
                        "the DICOM PatientID)")
    f.add_argument("--scan-date", type=iso_date, default=None,
                   help="scan date YYYY-MM-DD (default: the DICOM StudyDate)")
    f.add_argument("--send-back", action="store_true",
                   help="then store DICOM SEG + SR of the results on the same PACS, in the "
                        "original study (its UIDs are kept in memory for this only)")
    add_models_dir(f)
    add_store(f)
    add_common(f)
    f.set_defaults(pacs_run=cmd_pacs_fetch)
    commands["pacs"] = lambda args: args.pacs_run(args)

    e = sub.add_parser("export-dicom", help="write a stored scan's lung mask and QCT / risk "
                                            "report as DICOM SEG + SR")
    e.add_argument("scan_id", help="a scan id of the store (S-... or the demo's ids)")
    e.add_argument("out", help="output folder (new or empty)")
    e.add_argument("--send", default=None, metavar="URL",
                   help="also store the objects on this PACS (DICOMweb root, STOW-RS)")
    _add_timeout(e)
    add_models_dir(e)
    add_store(e)
    add_common(e)
    commands["export-dicom"] = cmd_export_dicom
