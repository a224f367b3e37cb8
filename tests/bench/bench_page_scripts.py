"""Server-side script time of each page, cold and warm, for this checkout against a baseline
checkout, in the same run (issue 17 "make the pages cheaper"; not collected by pytest).

    python tests/bench/bench_page_scripts.py --store STORE --baseline /path/to/old/checkout \
        [--pages model_comparison patient_timeline ...] [--warm 3] [--rounds 2]

Each measurement is a fresh process (``python -c``, the checkout first on ``sys.path``) that
opens the app with Streamlit's AppTest over a copy of ``STORE``, switches to the page and runs
it: the first run is "cold" (imports, store reads, caches filled), the next ``--warm`` reruns
are "warm" (what a widget change on cached data costs). Baseline and current alternate page by
page and round by round, so both see the same machine load. Prints per page the median cold and
warm seconds of each checkout and the ratio current / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = ("overview", "cohort_explorer", "patient_timeline", "upload_predict", "radiomics_shap",
         "model_comparison", "models_jobs")

CHILD = """
import json, os, sys, time
from streamlit.testing.v1 import AppTest
app, page, warm = sys.argv[1], sys.argv[2], int(sys.argv[3])
at = AppTest.from_file(app, default_timeout=900)
at.run()
times = []
for i in range(warm + 1):
    if i == 0 and page != "overview":
        at.switch_page(f"pages/{page}.py")
    t = time.perf_counter()
    at.run()
    times.append(time.perf_counter() - t)
title = [t.value for t in at.title]
print(json.dumps({"times": times, "title": title,
                  "exception": [str(e.value)[:200] for e in at.exception]
                  + ([] if title else ["no page title: the page did not render"])}))
"""


def _measure(checkout: Path, store: Path, page: str, warm: int, workdir: Path,
             models_dir: str | None) -> dict:
    copy = workdir / "store.duckdb"
    shutil.copy(store, copy)
    env = dict(os.environ, PYTHONPATH=str(checkout), SSCMORT_STORE=str(copy))
    if models_dir:
        env["SSCMORT_MODELS"] = models_dir
    out = subprocess.run([sys.executable, "-c", CHILD, str(checkout / "app.py"), page,
                          str(warm)], env=env, capture_output=True, text=True, cwd=checkout,
                         timeout=1800)  # cwd: the checkout's .streamlit/config.toml applies
    last = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not last:
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return json.loads(last[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--baseline", type=Path, required=True, help="the older checkout")
    ap.add_argument("--pages", nargs="+", default=list(PAGES))
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models-dir", default=os.environ.get("SSCMORT_MODELS"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory(prefix="sscmort-bench-scripts-") as tmp:
        for _ in range(args.rounds):
            for page in args.pages:
                for name, checkout in (("baseline", args.baseline), ("current", REPO)):
                    r = _measure(checkout, args.store, page, args.warm, Path(tmp),
                                 args.models_dir)
                    results.setdefault(page, {}).setdefault(name, []).append(r)
    load = os.getloadavg()[0]
    print(f"{'page':<18} {'cold base':>9} {'cold now':>9} {'ratio':>6} {'warm base':>9} "
          f"{'warm now':>9} {'ratio':>6}   (seconds, medians; load average {load:.1f})")
    summary = {}
    for page, by in results.items():
        row = {}
        for name in ("baseline", "current"):
            ok = [r for r in by[name] if "times" in r]
            row[name] = {"cold": statistics.median(r["times"][0] for r in ok) if ok else None,
                         "warm": statistics.median(t for r in ok for t in r["times"][1:])
                         if ok else None,
                         "errors": [r.get("error") or r.get("exception") for r in by[name]
                                    if "error" in r or r.get("exception")]}
        summary[page] = row
        b, c = row["baseline"], row["current"]

        def f(x):
            return "-" if x is None else f"{x:.2f}"

        def ratio(k):
            return "-" if not (b[k] and c[k]) else f"{c[k] / b[k]:.2f}"

        print(f"{page:<18} {f(b['cold']):>9} {f(c['cold']):>9} {ratio('cold'):>6} "
              f"{f(b['warm']):>9} {f(c['warm']):>9} {ratio('warm'):>6}")
        for name in ("baseline", "current"):
            for e in row[name]["errors"]:
                print(f"  {name} error: {e}")
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "pages": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
