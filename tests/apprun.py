"""Starting the app on a free localhost port and waiting for it: one helper for the browser
tests, the first-start tests and the app benchmarks (tests/bench/)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request


def free_port() -> int:
    """A TCP port nothing listens on now (bound once to 127.0.0.1:0, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The HTTP status of a GET of ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return r.status
    except OSError:
        return None


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> float:
    """Poll ``url``/_stcore/health until it answers 200; returns the seconds waited. Raises
    RuntimeError when ``proc`` exits first, TimeoutError after ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited early with {proc.returncode}")
        if http_status(url + "/_stcore/health") == 200:
            return time.monotonic() - t0
        time.sleep(0.25)
    raise TimeoutError(f"the app at {url} did not become healthy in {timeout_s:.0f} s")


def stop(proc: subprocess.Popen, timeout_s: float = 20) -> None:
    """Terminate ``proc`` (SIGTERM, then SIGKILL after ``timeout_s``)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
