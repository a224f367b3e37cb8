"""Page and interaction benchmark against a trivial-page floor (issue 13 item 3; not collected by
pytest).

    python tests/bench/bench_pages.py [--store STORE | --patients 40] [--repeats 5] [--json OUT]
        [--pages "Model comparison" ...]

Starts ``sscmort app`` over a demo store and, on another free localhost port, a trivial
Streamlit page (a title, a slider, a radio and one Altair chart of the slider's points), and
drives one headless Chromium session (Debian's, through Playwright) through both, in the same
run, interleaved repeat by repeat:

- page load: navigation to the page's title drawn, the script run finished
  (``stApp[data-test-script-state]`` back to ``notRunning``) and two animation frames;
- the main interactions of each page (a slider step on the slice viewer, a model removed from /
  added back to Model comparison, a horizon tab, a filter, a radio): from the action to the
  same settled state (an action that starts no script run settles after the frames alone).

Each step is timed twice: to that settled state ("run finished") and to the page's last DOM
change once nothing has changed for QUIET_S ("page drawn": charts laid out and painted after
the run, which is what the user waits for). Every step starts on a drawn page, so no step
carries the drawing of the one before (a first interaction right after a load used to).

The trivial page has one widget of each kind the app's steps use (slider, radio, selectbox,
multiselect, lazy tabs), so each interaction is compared with the same kind of interaction on
it (a selectbox choice is two clicks, a multiselect add three). Reports p50 / p95 per step and
the ratio of the p50 to its floor: the trivial page's load for loads, its interaction of the
same kind for interactions. The issue's goal: interactions on cached data settle within 2x of
the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.apprun import free_port, wait_healthy  # noqa: E402
from tests.bench.bench_app import CHROMIUM, REPO  # noqa: E402

TRIVIAL = textwrap.dedent("""
    import altair as alt
    import numpy as np
    import pandas as pd
    import streamlit as st

    st.title("Trivial page")
    n = st.slider("Points", 10, 200, 50)
    kind = st.radio("Mark", ["line", "points"], horizontal=True)
    wave = st.selectbox("Wave", ["sin", "cos"])
    shown = st.multiselect("Series", ["a", "b", "c"], default=["a", "b", "c"])
    tab_names = ["First", "Second"]
    tabs = st.tabs(tab_names, key="trivial_tab", on_change="rerun")
    x = np.arange(n)
    df = pd.concat([pd.DataFrame({"x": x, "y": getattr(np, wave)(x / 5 + i), "series": s})
                    for i, s in enumerate(shown)] or [pd.DataFrame({"x": x, "y": 0.0,
                                                                    "series": "none"})])
    for tab, name in zip(tabs, tab_names):
        if tab.open:
            with tab:
                chart = alt.Chart(df).mark_line() if kind == "line" else alt.Chart(df).mark_point()
                st.altair_chart(chart.encode(x="x", y="y", color="series"), width="stretch")
""")

# The floor of each kind of interaction: the trivial page doing the same kind (a selectbox
# choice takes two clicks, a multiselect add three: each is compared with its own kind).
FLOOR_OF = {"slider": "Trivial page: slider step", "radio": "Trivial page: radio",
            "select": "Trivial page: select", "remove": "Trivial page: multiselect remove",
            "add": "Trivial page: multiselect add", "tab": "Trivial page: tab"}

STATE = '() => document.querySelector(\'[data-testid="stApp"]\')?.dataset.testScriptState'
FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
# Counts the script runs the page has finished (each switch of stApp's script state away from
# "running", seen by its old value), so that a run shorter than one poll of the state is still
# seen: polling alone missed it and then waited out the whole started_timeout_s, and reading
# the state inside the observer's callback missed a run already over when the callback ran.
COUNT_RUNS = """
window.__sscmortRuns = 0;
new MutationObserver((records) => {
  for (const r of records) {
    if (r.oldValue === "running" && r.target.dataset.testScriptState !== "running")
      window.__sscmortRuns++;
  }
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ["data-test-script-state"]});
window.__sscmortLastChange = 0;
new MutationObserver(() => { window.__sscmortLastChange = performance.now(); })
  .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
"""
RUNS = "() => window.__sscmortRuns || 0"
NOW = "() => performance.now()"
LAST_CHANGE = "() => window.__sscmortLastChange || 0"
QUIET_S = 0.3  # a page is drawn when its DOM has not changed for this long


def _settled(page, started_timeout_s: float = 1.5, timeout_s: float = 300,
             runs_before: int | None = None) -> None:
    """Until a script run that the action started (if one starts within
    ``started_timeout_s``; with ``runs_before``, a run is known to have started, and ended,
    once the page's count of finished runs passes it) has finished, then two animation
    frames."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < started_timeout_s:
        if page.evaluate(STATE) == "running" or (
                runs_before is not None and page.evaluate(RUNS) > runs_before):
            break
        page.wait_for_timeout(20)
    while time.monotonic() - t0 < timeout_s:
        if page.evaluate(STATE) != "running":
            break
        page.wait_for_timeout(20)
    else:
        raise TimeoutError("the script kept running")
    page.evaluate(FRAMES)


def _drawn(page, js_t0_ms: float, timeout_s: float = 60) -> float:
    """Seconds from ``js_t0_ms`` (the page's clock) to the page's last DOM change, once
    nothing has changed for QUIET_S: what the user sees finished (charts laid out and
    painted by Vega after the script run ended), not only the run."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        now, last = page.evaluate(NOW), page.evaluate(LAST_CHANGE)
        if now - last >= QUIET_S * 1000:
            return max(last - js_t0_ms, 0.0) / 1000
        page.wait_for_timeout(50)
    raise TimeoutError("the page kept changing")


def _load(page, url: str) -> tuple[float, float]:
    """(finished, drawn) seconds of a navigation; the next step starts on a drawn page (a
    step started while the load's charts were still drawing would carry their cost)."""
    t0 = time.perf_counter()
    page.goto(url, timeout=300_000)
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=300_000)
    _settled(page, started_timeout_s=0)  # the title is drawn: the page's run has begun
    finished = time.perf_counter() - t0
    return finished, _drawn(page, 0.0)  # the new document's clock starts at navigation


def _timed(page, action, started_timeout_s: float = 1.5) -> tuple[float, float]:
    """(finished, drawn) seconds from the action: to its script run finished (and two
    frames), and to the page drawn. ``started_timeout_s`` 0 for an action the browser
    handles alone."""
    runs = page.evaluate(RUNS)
    js_t0 = page.evaluate(NOW)
    t0 = time.perf_counter()
    action()
    _settled(page, started_timeout_s=started_timeout_s, runs_before=runs)
    finished = time.perf_counter() - t0
    return finished, _drawn(page, js_t0)


def _slider_step(page, label: str, key: str = "ArrowRight"):
    thumb = page.locator('[data-testid="stSlider"]', has_text=label).first \
        .locator('input[type="range"]')
    return lambda: (thumb.focus(), thumb.press(key))


def _radio(page, group: str, option: str):
    box = page.locator('[data-testid="stRadio"]', has_text=group).first
    return lambda: box.get_by_text(option, exact=True).click()


def _tab(page, name: str):
    return lambda: page.get_by_role("tab", name=name).click()


def _remove_first_choice(page, removed: list[str]):
    """Removes the first chosen option's chip (after a page load, the first of the defaults:
    each repeat removes the same one) and records its label in ``removed``."""
    def act() -> None:
        chip = page.locator('[data-testid="stMultiSelect"]').first \
            .locator('.react-aria-ComboBox button[aria-label^="Remove"]').first
        removed[:] = [chip.get_attribute("aria-label").removeprefix("Remove ")]
        chip.click()
    return act


def _add_back(page, removed: list[str]):
    """Adds the option :func:`_remove_first_choice` removed, by its name (the list's first
    option is "Select all", which would add every model)."""
    def act() -> None:
        page.locator('[data-testid="stMultiSelect"]').first \
            .locator('.react-aria-ComboBox input[role="combobox"]').click()
        page.get_by_role("option", name=removed[0], exact=True).click()
        page.keyboard.press("Escape")
    return act


def _select(page, label: str, nth_option: int = 1):
    def act() -> None:
        page.locator('[data-testid="stSelectbox"]', has_text=label).first \
            .locator('input[role="combobox"]').click()
        page.locator('[role="option"]').nth(nth_option).click()
    return act


def _sscmort_steps(page, url: str) -> list[tuple[str, object]]:
    """(step name, callable returning seconds) for the app's pages, in the order driven."""
    removed: list[str] = []  # the model the remove step took out, which the add step adds
    return [
        ("Overview: load", lambda: _load(page, f"{url}/")),
        ("Cohort explorer: load", lambda: _load(page, f"{url}/cohort_explorer")),
        ("Cohort explorer: group by another column",
         lambda: _timed(page, _select(page, "Group", 1)), "select"),
        ("Cohort explorer: group back", lambda: _timed(page, _select(page, "Group", 0)),
         "select"),
        ("Patient timeline: load", lambda: _load(page, f"{url}/patient_timeline")),
        ("Patient timeline: slice slider step",
         lambda: _timed(page, _slider_step(page, "Axial slice")), "slider"),
        ("Model comparison: load", lambda: _load(page, f"{url}/model_comparison")),
        ("Model comparison: horizon tab", lambda: _timed(page, _tab(page, "3 years")), "tab"),
        ("Model comparison: horizon tab back", lambda: _timed(page, _tab(page, "1 year")), "tab"),
        ("Model comparison: estimand per patient", lambda: _timed(page, _radio(
            page, "Estimand", "per patient (each patient weighted equally)")), "radio"),
        ("Model comparison: estimand per scan", lambda: _timed(page, _radio(
            page, "Estimand", "per scan")), "radio"),
        ("Model comparison: remove a model",
         lambda: _timed(page, _remove_first_choice(page, removed)), "remove"),
        ("Model comparison: add it back", lambda: _timed(page, _add_back(page, removed)), "add"),
        ("Radiomics & SHAP: load", lambda: _load(page, f"{url}/radiomics_shap")),
        ("Radiomics & SHAP: horizon radio", lambda: _timed(page, _radio(page, "Horizon",
                                                                         "1 year")), "radio"),
        ("Radiomics & SHAP: horizon back", lambda: _timed(page, _radio(page, "Horizon",
                                                                        "5 years")), "radio"),
        ("Models & jobs: load", lambda: _load(page, f"{url}/models_jobs")),
        ("Upload & predict: load", lambda: _load(page, f"{url}/upload_predict")),
        ("Import cohort: load", lambda: _load(page, f"{url}/import_cohort")),
        ("Audit: load", lambda: _load(page, f"{url}/audit")),
    ]


def _trivial_steps(page, url: str) -> list[tuple[str, object]]:
    removed: list[str] = []
    return [("Trivial page: load", lambda: _load(page, url)),
            ("Trivial page: slider step", lambda: _timed(page, _slider_step(page, "Points"))),
            ("Trivial page: radio", lambda: _timed(page, _radio(page, "Mark", "points"))),
            ("Trivial page: radio back", lambda: _timed(page, _radio(page, "Mark", "line"))),
            ("Trivial page: select", lambda: _timed(page, _select(page, "Wave", 1))),
            ("Trivial page: select back", lambda: _timed(page, _select(page, "Wave", 0))),
            ("Trivial page: multiselect remove",
             lambda: _timed(page, _remove_first_choice(page, removed))),
            ("Trivial page: multiselect add", lambda: _timed(page, _add_back(page, removed))),
            ("Trivial page: tab", lambda: _timed(page, _tab(page, "Second"))),
            ("Trivial page: tab back", lambda: _timed(page, _tab(page, "First")))]


def _serve(args: list[str], port: int, workdir: Path, name: str) -> subprocess.Popen:
    log = open(workdir / f"{name}.log", "w")
    return subprocess.Popen(args, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=log, stderr=subprocess.STDOUT)


def run(store: Path, repeats: int, workdir: Path, pages: tuple[str, ...] = ()) -> dict:
    from playwright.sync_api import sync_playwright  # heavy: playwright

    trivial = workdir / "trivial_page.py"
    trivial.write_text(TRIVIAL)
    p_app, p_triv = free_port(), free_port()
    procs = [
        _serve([sys.executable, "-m", "sscmort_core", "app", "--address", "127.0.0.1",
                "--port", str(p_app), "--store", str(store)], p_app, workdir, "app"),
        _serve([sys.executable, "-m", "streamlit", "run", str(trivial), "--server.port",
                str(p_triv), "--server.address", "127.0.0.1", "--server.headless", "true",
                "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"],
               p_triv, workdir, "trivial")]
    times: dict[str, list[float]] = {}
    drawn: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    kinds: dict[str, str | None] = {}
    try:
        url_app, url_triv = f"http://127.0.0.1:{p_app}", f"http://127.0.0.1:{p_triv}"
        wait_healthy(url_app, procs[0], timeout_s=300)
        wait_healthy(url_triv, procs[1], timeout_s=300)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update"])
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.add_init_script(COUNT_RUNS)
            page = context.new_page()
            for r in range(repeats + 1):  # repeat 0 warms every cache; not reported
                for name, step, *kind in (_trivial_steps(page, url_triv) + [
                        s for s in _sscmort_steps(page, url_app)
                        if not pages or s[0].split(":")[0] in pages]):
                    kinds[name] = kind[0] if kind else None
                    try:
                        seconds, seconds_drawn = step()
                    except Exception as err:  # a step that cannot run is a result, not a crash
                        errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
                        continue
                    if r:
                        times.setdefault(name, []).append(seconds)
                        drawn.setdefault(name, []).append(seconds_drawn)
            browser.close()
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return _summary(times, drawn, errors, repeats, kinds)


def _summary(times: dict[str, list[float]], drawn: dict[str, list[float]],
             errors: dict[str, str], repeats: int, kinds: dict[str, str | None]) -> dict:
    """p50 / p95 per step, to the run finished and to the page drawn, and the ratio of each
    p50 to its floor's: the trivial page's load for a load, the trivial page's interaction
    of the same kind for an interaction."""
    p50 = {k: float(np.percentile(v, 50)) for k, v in times.items()}
    p50_drawn = {k: float(np.percentile(v, 50)) for k, v in drawn.items()}
    rows = []
    for name, values in times.items():
        if name.startswith("Trivial page"):
            floor_name = "Trivial page: load" if name.endswith(": load") else None
        else:
            floor_name = ("Trivial page: load" if name.endswith(": load")
                          else FLOOR_OF.get(kinds.get(name) or ""))
        floor = p50.get(floor_name) if floor_name else None
        floor_drawn = p50_drawn.get(floor_name) if floor_name else None
        rows.append({"step": name, "n": len(values), "p50_s": p50[name],
                     "p95_s": float(np.percentile(values, 95)),
                     "floor": floor_name.removeprefix("Trivial page: ") if floor_name else "-",
                     "ratio": p50[name] / floor if floor else None,
                     "p50_drawn_s": p50_drawn[name],
                     "p95_drawn_s": float(np.percentile(drawn[name], 95)),
                     "ratio_drawn": p50_drawn[name] / floor_drawn if floor_drawn else None,
                     "values_s": values, "values_drawn_s": drawn[name]})
    return {"repeats": repeats, "cpus": os.cpu_count(), "load_average": os.getloadavg()[0],
            "quiet_s": QUIET_S, "rows": rows, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="an existing store (default: build a demo)")
    ap.add_argument("--patients", type=int, default=40, help="demo size when building")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--pages", nargs="*", default=(), metavar="PAGE",
                    help='only these pages\' steps (e.g. "Model comparison"); the trivial '
                    "page always runs")
    ap.add_argument("--log-out", type=Path, help="keep the app's log (sscmort.log: each page "
                    "run's script time) at this path")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sscmort-bench-pages-") as tmp:
        store = Path(tmp) / "bench.duckdb"
        if args.store is not None:  # a copy: the app writes (audit rows, migrations)
            shutil.copy(args.store, store)
        else:
            from sscmort_core.pipeline.demo import build_demo  # heavy: duckdb, pandas

            build_demo(store, n_patients=args.patients, seed=0, workers=1,
                       stages=("radiomics", "tabular", "evaluate"), models_dir=Path(tmp))
        result = run(store, args.repeats, Path(tmp), tuple(args.pages))
        app_log = store.parent / f"{store.stem}_files" / "sscmort.log"
        if args.log_out is not None and app_log.is_file():
            shutil.copy(app_log, args.log_out)
    print(f"{'':<48} {'run finished':^26} {'page drawn':^26}")
    print(f"{'step':<48} {'p50 (s)':>8} {'p95 (s)':>8} {'x floor':>8} "
          f"{'p50 (s)':>8} {'p95 (s)':>8} {'x floor':>8}")
    for r in result["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        ratio_drawn = "-" if r["ratio_drawn"] is None else f"{r['ratio_drawn']:.2f}"
        print(f"{r['step']:<48} {r['p50_s']:>8.2f} {r['p95_s']:>8.2f} {ratio:>8} "
              f"{r['p50_drawn_s']:>8.2f} {r['p95_drawn_s']:>8.2f} {ratio_drawn:>8}  "
              f"({r['floor']})")
    for name, err in result["errors"].items():
        print(f"could not run {name}: {err}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
