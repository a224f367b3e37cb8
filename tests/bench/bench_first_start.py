"""First start (issue 13): seconds from ``make run`` (environment installed, no store) to the
first page served: the app's health endpoint ``/_stcore/health`` and the page ``/`` answering
HTTP 200. Run it on two checkouts in the same session to compare the old flow (the demo built
before the app starts) with the new one (the app serves at once and builds the demo as a
background job).

Usage (the shared virtualenv's stamps are taken as up to date, ``make -o``, so nothing is
installed):
    python tests/bench/bench_first_start.py --checkout DIR [--venv /work/main/.venv]
        [--observe S] [--json OUT]

``--observe S`` keeps the app running S seconds after the first page and then reports the
demo build's lines from the store's log (stages done, time left). The app, the demo build and
its workers are one process group, stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.apprun import free_port, http_status  # noqa: E402


def _load() -> float:
    return os.getloadavg()[0]


def measure(checkout: Path, venv: Path, observe_s: float, timeout_s: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix="sscmort-first-start-"))
    store, port = work / "sscmort.duckdb", free_port()
    cmd = ["make", "-C", str(checkout), "run", f"VENV={venv}", f"STORE={store}",
           f"PORT={port}", "-o", f"{venv}/.runtime-stamp"]
    env = dict(os.environ, PYTHONPATH=str(checkout))
    log = open(work / "make.log", "w")
    load0, t0 = _load(), time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://localhost:{port}"
    health = page = None
    try:
        while time.monotonic() - t0 < timeout_s and proc.poll() is None:
            if health is None and http_status(url + "/_stcore/health") == 200:
                health = time.monotonic() - t0
            if health is not None and http_status(url + "/") == 200:
                page = time.monotonic() - t0
                break
            time.sleep(0.25)
        load1 = _load()
        time.sleep(observe_s if page is not None else 0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    app_log = work / "sscmort_files" / "sscmort.log"
    build = [ln.split(": ", 1)[-1].strip() for ln in
             (app_log.read_text().splitlines() if app_log.exists() else [])
             if "sscmort.pipeline.demo_job" in ln]
    return {"checkout": str(checkout), "health_s": health, "page_s": page,
            "load_start": load0, "load_at_page": load1, "exit": proc.returncode,
            "build_log": build, "work": str(work)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkout", type=Path, required=True)
    ap.add_argument("--venv", type=Path, default=Path("/work/main/.venv"))
    ap.add_argument("--observe", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    result = measure(args.checkout.resolve(), args.venv, args.observe, args.timeout)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
