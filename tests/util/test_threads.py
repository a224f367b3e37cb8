"""util/threads: qct and ingest ask for one BLAS thread before numpy starts its pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from sscmort_core.util.threads import BLAS_THREAD_VARS

_PROBE = """
import json, os, sys
from sscmort_core.util.threads import single_threaded_blas
first = single_threaded_blas()
import numpy
second = single_threaded_blas()
print(json.dumps({"first": first, "second": second,
                  "env": {v: os.environ.get(v) for v in %r}}))
""" % (BLAS_THREAD_VARS,)


def _probe(env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARS}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_one_blas_thread_is_asked_for_before_numpy_loads():
    got = _probe({})
    assert got["first"] is True and got["second"] is False  # too late once numpy is loaded
    assert got["env"] == {v: "1" for v in BLAS_THREAD_VARS}


def test_a_user_setting_is_kept():
    got = _probe({"OPENBLAS_NUM_THREADS": "2"})
    assert got["env"]["OPENBLAS_NUM_THREADS"] == "2"


_COMMAND = """
import json, os, sys
from sscmort_core.cli import main
code = main([%r, "/nonexistent/series", "--quiet"] + %r)
print(json.dumps({"code": code, "numpy": "numpy" in sys.modules,
                  "env": os.environ.get("OPENBLAS_NUM_THREADS")}))
"""


def test_qct_and_ingest_ask_for_it_before_numpy_loads(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARS}
    for command, extra in (("qct", []), ("ingest", ["--store", str(tmp_path / "s.duckdb")])):
        out = subprocess.run([sys.executable, "-c", _COMMAND % (command, extra)], env=env,
                             capture_output=True, text=True, check=True)
        got = json.loads(out.stdout)
        assert got == {"code": 2, "numpy": True, "env": "1"}, command
