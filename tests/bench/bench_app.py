"""Load benchmark of the app (issue 17, ``make bench-app``): ``sscmort app`` on a free localhost
port over a demo store, N headless Chromium sessions (Debian's, driven by Playwright; one
browser context per session, so N separate Streamlit sessions) visiting every page at once,
session 0 also uploading the real 64-file CT (``../shared/data/real_ct``) on Upload & predict.

Reported per N and page: p50 / p95 of the time from navigation to a settled page (the title
drawn and the script-running indicator gone for ``SETTLE_S``), and p50 / p95 of the
server-side script time of that page's runs, read from the ``sscmort.app.pages`` lines that
``pages._shared.run_page`` writes to the store's log. Also the 1-minute load average before
and after each N (the machine is shared), timeouts, and the upload's time to its metrics.

Usage: ``python tests/bench/bench_app.py [--sessions 1 4 8] [--patients 40 | --store S]
[--json OUT]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.apprun import free_port as _free_port  # noqa: E402
from tests.apprun import wait_healthy  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
REAL_CT = REPO.parent / "shared" / "data" / "real_ct" / "philips_A0001_kernel_L"
PAGES = ("", "cohort_explorer", "patient_timeline", "upload_predict", "radiomics_shap",
         "model_comparison", "models_jobs", "import_cohort", "audit")
SETTLE_S = 1.0
PAGE_TIMEOUT_S = 180.0
LINE = re.compile(r"page=(\S*) seconds=([0-9.]+) end=(\S+)")


async def _settle(page, timeout_s: float = PAGE_TIMEOUT_S, extra: str | None = None) -> None:
    """Until the page title (and ``extra``) is drawn and no script has run for SETTLE_S."""
    ms = int(timeout_s * 1000)
    await page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=ms)
    if extra:
        await page.wait_for_selector(extra, timeout=ms)
    deadline = time.monotonic() + timeout_s
    quiet = None
    while time.monotonic() < deadline:
        if await page.locator('[data-testid="stStatusWidget"]').count():
            quiet = None
        elif quiet is None:
            quiet = time.monotonic()
        elif time.monotonic() - quiet >= SETTLE_S:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the page kept running")


async def _session(browser, url: str, index: int, upload: bool) -> list[dict]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    out = []
    try:
        for name in PAGES:
            t0 = time.perf_counter()
            row = {"session": index, "page": name or "overview"}
            try:
                await page.goto(f"{url}/{name}", timeout=PAGE_TIMEOUT_S * 1000)
                await _settle(page)
                row["settled_s"] = time.perf_counter() - t0
                if upload and name == "upload_predict":
                    files = sorted(str(p) for p in REAL_CT.iterdir() if p.is_file())
                    t1 = time.perf_counter()
                    await page.locator('[data-testid="stFileUploaderDropzoneInput"]') \
                        .set_input_files(files)
                    await _settle(page, 600, 'text="Lung volume"')
                    out.append({"session": index, "page": "upload real CT (64 files)",
                                "settled_s": time.perf_counter() - t1})
            except Exception as err:  # a timeout is a result of the benchmark, not a crash
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
            exc = await page.locator('[data-testid="stException"]').count()
            if exc:
                row["error"] = "Streamlit exception on the page"
            out.append(row)
    finally:
        await context.close()
    return out


async def _drive(url: str, n: int) -> list[dict]:
    from playwright.async_api import async_playwright  # heavy: playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update"])
        try:
            runs = await asyncio.gather(*(_session(browser, url, i, i == 0 and REAL_CT.is_dir())
                                          for i in range(n)))
        finally:
            await browser.close()
    return [r for run in runs for r in run]


def _server_times(log: Path, offset: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    with open(log, "rb") as f:
        f.seek(offset)
        for line in f.read().decode("utf-8", "replace").splitlines():
            if (m := LINE.search(line)) and "sscmort.app.pages" in line:
                times.setdefault(m.group(1), []).append(float(m.group(2)))
    return times


def _pct(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def run(sessions: list[int], patients: int, workdir: Path, source: Path | None = None) -> dict:
    """``source``: an existing store (copied; e.g. a demo with trained models), else a
    ``patients``-patient demo built here (cohort, volumes, QCT and the oracle only)."""
    from sscmort_core.pipeline.demo import build_demo  # heavy: duckdb, pandas
    from sscmort_core.util.logs import log_path_for

    store = workdir / "bench.duckdb"
    t0 = time.perf_counter()
    if source is not None:
        shutil.copy(source, store)
    else:
        build_demo(store, n_patients=patients, seed=0, workers=1, stages=())
    built_s = time.perf_counter() - t0
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    logf = open(workdir / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "sscmort_core", "app", "--address",
                             "127.0.0.1", "--port", str(port), "--store", str(store)],
                            cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
    result = {"patients": patients, "store_build_s": built_s, "cpus": os.cpu_count(),
              "real_ct": REAL_CT.is_dir(), "runs": []}
    try:
        wait_healthy(url, proc, timeout_s=180)
        log = log_path_for(store)
        for n in sessions:
            offset = log.stat().st_size if log.exists() else 0
            load_before = os.getloadavg()[0]
            t1 = time.perf_counter()
            rows = asyncio.run(_drive(url, n))
            wall = time.perf_counter() - t1
            server = _server_times(log, offset) if log.exists() else {}
            pages = {}
            for name in [p or "overview" for p in PAGES] + ["upload real CT (64 files)"]:
                ok = [r["settled_s"] for r in rows if r["page"] == name and "settled_s" in r]
                bad = [r["error"] for r in rows if r["page"] == name and "error" in r]
                p50, p95 = _pct(ok)
                s50, s95 = _pct(server.get(name, []))
                if not ok and not bad:
                    continue
                pages[name] = {"n": len(ok), "errors": bad, "settled_p50_s": p50,
                               "settled_p95_s": p95, "server_runs": len(server.get(name, [])),
                               "server_p50_s": s50, "server_p95_s": s95}
            result["runs"].append({"sessions": n, "wall_s": wall, "load_before": load_before,
                                   "load_after": os.getloadavg()[0], "pages": pages})
            _print_run(result["runs"][-1])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()
    return result


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _print_run(r: dict) -> None:
    print(f"\nN = {r['sessions']} sessions: {r['wall_s']:.0f} s wall, load average "
          f"{r['load_before']:.1f} -> {r['load_after']:.1f}")
    print(f"{'page':28s} {'n':>3s} {'p50 s':>7s} {'p95 s':>7s} {'srv p50':>8s} {'srv p95':>8s}"
          "  errors")
    for name, p in r["pages"].items():
        print(f"{name:28s} {p['n']:3d} {_f(p['settled_p50_s']):>7s} {_f(p['settled_p95_s']):>7s}"
              f" {_f(p['server_p50_s']):>8s} {_f(p['server_p95_s']):>8s}  {len(p['errors'])}"
              + (f" ({p['errors'][0]})" if p["errors"] else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--patients", type=int, default=40, help="demo store size")
    ap.add_argument("--store", type=Path, default=None,
                    help="benchmark over a copy of this store instead of building a demo")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists():
        print("bench-app needs Debian's chromium at /usr/bin/chromium (make install-dev)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="sscmort-bench-app-") as tmp:
        result = run(args.sessions, args.patients, Path(tmp), args.store)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
