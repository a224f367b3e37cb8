"""Benchmarks (``sscmort bench`` / ``make bench``): each result is a ratio against a named
baseline measured in the same run, plus peak traced memory. Never asserted in unit tests.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sscmort_core.imaging import read_volume
from sscmort_core.lungs import measure_lungs, segment_lungs
from sscmort_core.pipeline.ingest import ingest_path
from sscmort_core.store import open_store
from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.phantom import make_phantom, phantom_for_scan

DEFAULT_REAL_CT = Path(__file__).resolve().parents[3] / "shared" / "data" / "real_ct"
# Commands are timed as ``python -m sscmort_core`` run from the checkout this module is in:
# ``-m`` imports from the working directory first, so from elsewhere another checkout's
# sscmort_core could be the one measured.
CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BenchResult:
    name: str
    seconds: float  # median over repeats
    baseline: str | None
    baseline_seconds: float | None
    ratio: float | None  # seconds / baseline_seconds
    peak_traced_mb: float | None
    repeats: int
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def baseline_threshold_mask(series_dir: Path) -> np.ndarray:
    """The baseline: SimpleITK ImageSeriesReader, then a plain threshold (< -320 HU) and the
    two largest connected components that do not touch the volume border."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series_dir)))
    img = reader.Execute()
    air = sitk.BinaryThreshold(img, -2000, -320, 1, 0)
    cc = sitk.ConnectedComponent(air)
    arr = sitk.GetArrayViewFromImage(cc)
    border = np.unique(np.concatenate([arr[0].ravel(), arr[-1].ravel(), arr[:, 0].ravel(),
                                       arr[:, -1].ravel(), arr[:, :, 0].ravel(),
                                       arr[:, :, -1].ravel()]))
    labels, counts = np.unique(arr[arr > 0], return_counts=True)
    keep = [lab for lab, _ in sorted(zip(labels, counts), key=lambda x: -x[1])
            if lab not in border][:2]
    return np.isin(arr, keep)


def bench_ingest_real(series_dir: Path, repeats: int = 5) -> BenchResult:
    """Whole ingest of a real DICOM series (read, validate, de-identify, segment, QCT, store)
    against :func:`baseline_threshold_mask` on the same series."""
    def ingest_once() -> None:
        with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "b.duckdb") as s:
            ingest_path(s, series_dir, scan_date=None)

    ingest_once()  # warm imports and caches
    base = _median_time(lambda: baseline_threshold_mask(series_dir), repeats)
    ours = _median_time(ingest_once, repeats)
    return BenchResult(f"ingest {series_dir.name}", ours,
                       "SimpleITK series read + threshold + largest components", base,
                       ours / base, _peak_mb(ingest_once), repeats)


def bench_phantom(n: int = 20) -> BenchResult:
    """Generating one synthetic volume (median of n), against writing it as NIfTI."""
    rows = generate_cohort(n_patients=max(4, n // 3), seed=0).scans.to_dict(orient="records")[:n]
    def make_all() -> None:
        for r in rows:
            phantom_for_scan(r)

    gen_t = _median_time(make_all, 1) / len(rows)
    ph = phantom_for_scan(rows[0])
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory() as tmp:
        img = sitk.GetImageFromArray(ph.hu)
        write_t = _median_time(lambda: sitk.WriteImage(img, f"{tmp}/v.nii.gz", True), 3)
    return BenchResult("generate one synthetic volume", gen_t,
                       "write the same volume as compressed NIfTI", write_t, gen_t / write_t,
                       _peak_mb(lambda: phantom_for_scan(rows[0])), len(rows),
                       f"shape {tuple(ph.hu.shape)}")


def _segmentation_results(name: str, hu: np.ndarray, spacing: tuple[float, float, float],
                          baseline: Callable[[], object], baseline_name: str, repeats: int
                          ) -> list[BenchResult]:
    """The lung mask (LUNG_MASK_VERSION), the threshold mask it replaced (lungmask-1: costal=False)
    and the lung measures (zones, pattern map, QC), each against ``baseline`` timed in the
    same run."""
    segment_lungs(hu, spacing)  # warm imports and caches
    base = _median_time(baseline, repeats)
    new = _median_time(lambda: segment_lungs(hu, spacing), repeats)
    old = _median_time(lambda: segment_lungs(hu, spacing, costal=False), repeats)
    lungs = segment_lungs(hu, spacing)
    measure = _median_time(lambda: measure_lungs(hu, lungs, spacing), repeats)
    shape = f"shape {tuple(hu.shape)}"
    return [
        BenchResult(f"lung mask ({name})", new, baseline_name, base, new / base,
                    _peak_mb(lambda: segment_lungs(hu, spacing)), repeats, shape),
        BenchResult(f"threshold mask before the costal step ({name})", old, baseline_name, base,
                    old / base, None, repeats, f"lung mask / threshold mask = {new / old:.2f}"),
        BenchResult(f"zones + pattern map + QC + QCT ({name})", measure, "the lung mask", new,
                    measure / new, _peak_mb(lambda: measure_lungs(hu, lungs, spacing)),
                    repeats, shape)]


def bench_lungs_real(series_dir: Path, repeats: int = 3) -> list[BenchResult]:
    """Segmentation and lung measures of a real series, against the SimpleITK baseline."""
    vol = read_volume(series_dir).volume
    return _segmentation_results(series_dir.name, vol.hu, vol.spacing_mm,
                                 lambda: baseline_threshold_mask(series_dir),
                                 "SimpleITK series read + threshold + largest components",
                                 repeats)


def bench_lungs_phantom(repeats: int = 5) -> list[BenchResult]:
    """The same on a dense-fibrosis phantom (25 % ILD), against a plain threshold + largest
    components in SimpleITK on the same array."""
    p = make_phantom(ild_extent_pct=25.0, kernel="sharp", noise_hu=30.0, slice_thickness_mm=5.0,
                     seed=7, progressor=True)
    return _segmentation_results("synthetic, dense fibrosis", p.hu, p.spacing_mm,
                                 lambda: _sitk_threshold_mask(p.hu),
                                 "SimpleITK threshold + largest components", repeats)


def _sitk_threshold_mask(hu: np.ndarray) -> np.ndarray:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(hu)
    cc = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.BinaryThreshold(img, -2000, -320,
                                                                            1, 0)))
    return sitk.GetArrayViewFromImage(cc) == 2  # 1 is the room air around the body
# The baseline of whole commands: what any tool must do with a DICOM series (SimpleITK read,
# threshold, connected components), as its own process.
_BASELINE_SCRIPT = """
import sys
import SimpleITK as sitk
from scipy import ndimage
r = sitk.ImageSeriesReader()
r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))
a = sitk.GetArrayFromImage(r.Execute())
lab, n = ndimage.label(a < -320)
"""


@dataclass(frozen=True)
class ProcessCost:
    cpu_seconds: float  # user + system of the process and its children
    wall_seconds: float
    peak_rss_mb: float


def process_cost(argv: list[str]) -> ProcessCost:
    """Run a command to completion; its CPU time, wall time and peak resident memory.

    Measured by GNU time (``/usr/bin/time``) around the command when present: Linux keeps a
    process's RSS high-water mark across fork and exec, so a child of this (large) Python
    process would report at least this process's own peak; GNU time is a small C program.
    Without it, ``os.wait4``'s rusage (CPU right, peak RSS an upper bound)."""
    gnu_time = Path("/usr/bin/time")
    t0 = time.perf_counter()
    if gnu_time.is_file():
        with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
            code = subprocess.call([str(gnu_time), "-f", "%U %S %M", "-o", out.name, *argv],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd=CHECKOUT)
            wall = time.perf_counter() - t0
            fields = out.read().split()[-3:]
        if code != 0:
            raise RuntimeError(f"{argv[:4]} exited with {code}")
        user, system, kb = (float(x) for x in fields)
        return ProcessCost(user + system, wall, kb / 1024)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=CHECKOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:4]} exited with {os.waitstatus_to_exitcode(status)}")
    return ProcessCost(usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024)


def _median_cost(argv: list[str], repeats: int) -> ProcessCost:
    runs = [process_cost(argv) for _ in range(repeats)]
    return ProcessCost(*(statistics.median(getattr(r, f) for r in runs)
                         for f in ("cpu_seconds", "wall_seconds", "peak_rss_mb")))


def bench_cli(series_dir: Path, repeats: int = 3) -> list[BenchResult]:
    """Whole commands as a user runs them, CPU time against same-run baselines: ``sscmort
    --help`` against ``python -c pass``; ``sscmort qct`` and ``sscmort ingest`` against the
    SimpleITK read + threshold + components script on the same series. The memory ratio
    (peak RSS) is in ``detail``."""
    series_dir = Path(series_dir).resolve()  # the commands run from CHECKOUT
    py = [sys.executable]
    empty = _median_cost(py + ["-c", "pass"], repeats)
    base = _median_cost(py + ["-c", _BASELINE_SCRIPT, str(series_dir)], repeats)
    cli = py + ["-m", "sscmort_core"]
    out = []
    runs = [("sscmort --help", cli + ["--help"], "python -c pass", empty)]
    with tempfile.TemporaryDirectory() as tmp:
        runs.append((f"sscmort qct {series_dir.name}", cli + ["qct", str(series_dir), "--quiet"],
                     "SimpleITK read + threshold + components", base))
        ingest = cli + ["ingest", str(series_dir), "--quiet", "--scan-date", "2020-01-01",
                        "--store", f"{tmp}/s.duckdb"]
        runs.append((f"sscmort ingest {series_dir.name}", ingest,
                     "SimpleITK read + threshold + components", base))
        for i, (name, argv, base_name, b) in enumerate(runs):
            if i == 2:  # ingest refuses a duplicate scan: a fresh store every run
                costs = []
                for r in range(repeats):
                    argv_r = argv[:-1] + [f"{tmp}/s{r}.duckdb"]
                    costs.append(process_cost(argv_r))
                c = ProcessCost(*(statistics.median(getattr(x, f) for x in costs)
                                  for f in ("cpu_seconds", "wall_seconds", "peak_rss_mb")))
            else:
                c = _median_cost(argv, repeats)
            out.append(BenchResult(
                f"{name} (CPU s)", c.cpu_seconds, f"{base_name} (CPU s)", b.cpu_seconds,
                c.cpu_seconds / b.cpu_seconds, None, repeats,
                f"wall {c.wall_seconds:.2f} s vs {b.wall_seconds:.2f} s; peak RSS "
                f"{c.peak_rss_mb:.0f} MB vs {b.peak_rss_mb:.0f} MB "
                f"({c.peak_rss_mb / b.peak_rss_mb:.2f} x)"))
    return out


def run_benchmarks(real_ct: Path | None = DEFAULT_REAL_CT, only: tuple[str, ...] = ()
                   ) -> list[BenchResult]:
    out = []
    if not only or "phantom" in only:
        out.append(bench_phantom())
    series = (sorted(p for p in real_ct.iterdir() if p.is_dir())
              if real_ct is not None and real_ct.is_dir() else [])
    if not only or "ingest" in only:
        out.extend(bench_ingest_real(s) for s in series)
    if (not only or "cli" in only) and series:
        out.extend(bench_cli(series[0]))
    if not only or "lungs" in only:
        out.extend(bench_lungs_phantom())
        for s in series:
            out.extend(bench_lungs_real(s))
    return out
