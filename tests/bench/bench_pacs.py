"""Compressed DICOM and PACS benchmarks behind docs/BENCHMARKS.md "## Hospital integration"
(not collected by pytest).

    .venv/bin/python tests/bench/bench_pacs.py [--repeats 5] [--kernel L] [--out results.json]

1. read time of the real 64-slice series (../shared/data/real_ct) as stored (uncompressed),
   transcoded to JPEG 2000 lossless and to JPEG-LS lossless (pydicom encoders), each the median
   of ``--repeats`` reads with sscmort's reader; HU checked identical; ratio against the
   uncompressed read of the same run;
2. fetch + ingest of the JPEG 2000 series from a local Orthanc (tests/pacs/orthanc.py: the real
   server, DICOMweb plugin, on localhost) against ingest of the same files from disk, each into
   a fresh store, median of ``--repeats`` interleaved runs; the retrieve alone is timed too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
REAL_CT = REPO.parent / "shared" / "data" / "real_ct"


def _median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _transcode(src: Path, dest: Path, syntax) -> float:
    dest.mkdir(parents=True)
    t0 = time.perf_counter()
    for p in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(p)
        ds.compress(syntax)
        ds.save_as(dest / p.name)
    return time.perf_counter() - t0


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e6


def bench_read(series: Path, work: Path, repeats: int) -> dict:
    from sscmort_core.imaging import read_volume
    from sscmort_core.lungs import segment_lungs

    folders = {"uncompressed": series}
    transcode = {}
    for name, syntax in (("jpeg2000-lossless", JPEG2000Lossless),
                         ("jpegls-lossless", JPEGLSLossless)):
        folders[name] = work / name
        transcode[name] = round(_transcode(series, folders[name], syntax), 2)
    rows, ref = {}, None
    for name, folder in folders.items():
        seconds, result = _median_time(lambda f=folder: read_volume(f), repeats)
        hu = result.volume.hu
        if ref is None:
            ref = hu
            lungs_ref = segment_lungs(hu, result.volume.spacing_mm).volume_ml
        rows[name] = {"read_s": round(seconds, 3), "size_mb": round(_size_mb(folder), 1),
                      "identical_hu": bool(np.array_equal(hu, ref)),
                      "transcode_s": transcode.get(name)}
    base = rows["uncompressed"]["read_s"]
    for row in rows.values():
        row["ratio"] = round(row["read_s"] / base, 2)
    return {"series": series.name, "lung_volume_ml": round(lungs_ref, 1), "reads": rows,
            "folders": {k: str(v) for k, v in folders.items()}}


def bench_fetch(folder: Path, work: Path, repeats: int) -> dict:
    from sscmort_core.pacs import fetch_series
    from sscmort_core.pipeline.ingest import ingest_path
    from sscmort_core.pipeline.pacs import fetch_and_ingest
    from sscmort_core.store import open_store
    from tests.pacs.orthanc import running_orthanc, upload_folder

    first = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    counter = iter(range(10_000))

    def fresh_store() -> Path:
        return work / f"store-{next(counter)}" / "s.duckdb"

    def from_disk() -> object:
        path = fresh_store()
        with open_store(path) as s:
            return ingest_path(s, folder)

    with running_orthanc(work / "orthanc") as server:
        upload_folder(server, folder)
        with server.client() as client:
            def from_pacs() -> object:
                path = fresh_store()
                with open_store(path) as s:
                    return fetch_and_ingest(s, client, study, series).result

            def retrieve_only() -> int:
                with fetch_series(client, study, series) as f:
                    return len(list(f.iterdir()))

            runs: dict[str, list[float]] = {"disk": [], "pacs": [], "retrieve": []}
            for _ in range(repeats):  # interleaved, so a change of machine load hits both
                for name, fn in (("disk", from_disk), ("pacs", from_pacs),
                                 ("retrieve", retrieve_only)):
                    t0 = time.perf_counter()
                    out = fn()
                    runs[name].append(time.perf_counter() - t0)
                    if name == "disk":
                        disk = out
                    elif name == "pacs":
                        pacs = out
                    else:
                        n = out
            disk_s, pacs_s, retrieve_s = (statistics.median(runs[k])
                                          for k in ("disk", "pacs", "retrieve"))
    return {"syntax": str(first.file_meta.TransferSyntaxUID.name), "instances": n,
            "ingest_from_disk_s": round(disk_s, 2), "fetch_and_ingest_s": round(pacs_s, 2),
            "retrieve_only_s": round(retrieve_s, 2), "ratio": round(pacs_s / disk_s, 2),
            "same_qct": disk.qct == pacs.qct}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kernel", default="L", choices=["L", "B"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    series = REAL_CT / f"philips_A0001_kernel_{args.kernel}"
    if not series.is_dir():
        sys.exit(f"{series} is absent (the real CT lives in ../shared beside the repo)")
    with tempfile.TemporaryDirectory(prefix="sscmort-bench-pacs-") as tmp:
        work = Path(tmp)
        read = bench_read(series, work, args.repeats)
        fetch = bench_fetch(Path(read["folders"]["jpeg2000-lossless"]), work, args.repeats)
    out = {"read": read, "fetch": fetch}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
