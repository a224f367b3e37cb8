"""First start (issue 13): ``sscmort app`` with no store serves at once and builds the demo as
a background job in the app process; a restart continues the build where it stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sscmort_core.cli import main
from sscmort_core.pipeline.demo import demo_plan
from sscmort_core.util.logs import log_path_for
from tests.apprun import free_port, http_status, wait_healthy

REPO = Path(__file__).resolve().parents[2]
STARTED = re.compile(r"demo build started \(\S+\): (\d+) of (\d+) steps to run")


def test_dry_run_says_a_missing_store_is_built_in_the_background(tmp_path, capsys):
    store = tmp_path / "none.duckdb"
    assert main(["app", "--store", str(store), "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["demo"] == "built in the background on first start"
    assert "--server.scriptHealthCheckEnabled" in out["command"]  # the build starts at once
    assert not store.exists()  # the app creates it, never the launcher
    assert main(["app", "--store", str(store), "--dry-run", "--no-demo"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["demo"] == "off (--no-demo)"
    assert "--server.scriptHealthCheckEnabled" not in out["command"]


def _start(store: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sscmort_core", "app", "--store", str(store),
             "--address", "127.0.0.1", "--port", str(port), "--demo-patients", "5"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    """The app and its build's worker processes (one process group)."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_log(store: Path, pattern: str, timeout_s: float, after: int = 0) -> str:
    log, t0 = log_path_for(store), time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        text = log.read_text()[after:] if log.exists() else ""
        if re.search(pattern, text):
            return text
        time.sleep(0.5)
    raise TimeoutError(f"no {pattern!r} in {log} after {timeout_s:.0f} s")


@pytest.mark.slow
def test_app_serves_at_once_with_no_store_and_a_restart_continues_the_build(tmp_path):
    store, port = tmp_path / "sscmort.duckdb", free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(store, port, tmp_path / "app.log")
    try:
        wait_healthy(url, proc, timeout_s=60)
        assert http_status(url + "/") == 200
        # no browser has opened a page: the app started the build with the server
        text = _wait_log(store, r"step scans started", timeout_s=60)
        steps = str(len(demo_plan(5).steps))  # the plan the app builds (--demo-patients 5)
        assert STARTED.search(text).groups() == (steps, steps)
        assert "step cohort done" in text and "step evaluate" not in text  # still building
    finally:
        _stop(proc)
    offset = log_path_for(store).stat().st_size
    proc = _start(store, port, tmp_path / "app.log")
    try:
        wait_healthy(url, proc, timeout_s=60)
        text = _wait_log(store, STARTED.pattern, timeout_s=60, after=offset)
        left, total = map(int, STARTED.search(text).groups())
        assert total == len(demo_plan(5).steps) and left < total  # the cohort was kept, not built again
        assert "step cohort started" not in text
    finally:
        _stop(proc)
