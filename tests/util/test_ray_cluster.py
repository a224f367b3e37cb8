"""sscmort pointed at an existing Ray cluster, as the README says: ``ray start --head`` (token
authentication, 2 CPUs, its own temp folder), then a fresh driver with ``--executor ray
--ray-address 127.0.0.1:PORT``. Slow (a cluster start and a driver start, about a minute).

The cluster's processes form one process group this test starts, and it kills that group at
the end (never ``ray stop``, which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from sscmort_core import store as st
from sscmort_core.errors import ExecutorError
from sscmort_core.pipeline.demo import build_demo
from sscmort_core.radiomics.features import load_params
from sscmort_core.radiomics.stage import run_radiomics_stage
from sscmort_core.util.executors import LocalExecutor
from sscmort_core.util.ray_executor import check_address

REPO = Path(__file__).resolve().parents[2]
WHERE = """
import json, sys
from sscmort_core.util.executors import executor_spec, open_executor
with open_executor(executor_spec("ray", sys.argv[1])) as ex:
    files = list(ex.map(lambda _: __import__("sscmort_core").__file__, [0, 1]))
    print(json.dumps({"files": files, **ex.describe()}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def ray_cluster():
    port, temp = _free_port(), tempfile.mkdtemp(prefix="sr", dir="/tmp")  # short socket paths
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    ray_cli = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen(
        [str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats",
         "--block"], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                check_address(f"127.0.0.1:{port}", timeout_s=1)
                break
            except ExecutorError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(1)
        time.sleep(3)  # the raylet registers after the GCS port opens
        yield f"127.0.0.1:{port}", env, temp
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # what TERM left of the group
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.slow
def test_radiomics_on_an_existing_cluster_ships_this_code_and_equals_local(ray_cluster,
                                                                           tmp_path):
    address, env, temp = ray_cluster
    store = tmp_path / "s.duckdb"
    build_demo(store, n_patients=2, seed=5, stages=(), workers=1)
    local = tmp_path / "local.duckdb"
    shutil.copy(store, local)
    # the driver runs this checkout, from another folder (Ray puts a driver's working folder
    # on the path of workers on its own machine, which would hide what was shipped)
    env = {**env, "PYTHONPATH": str(REPO)}
    where = subprocess.run([sys.executable, "-c", WHERE, address], env=env, text=True,
                           capture_output=True, timeout=300, cwd=tmp_path)
    assert where.returncode == 0, where.stderr[-3000:]
    info = json.loads(where.stdout.strip().splitlines()[-1])
    # the workers import the sscmort_core the driver shipped (runtime_env py_modules)
    assert all(f.startswith(temp) for f in info["files"]), info
    assert info["cluster_cpus"] == 2 and info["address"] == address
    out = subprocess.run([sys.executable, "-m", "sscmort_core", "radiomics", "--store",
                          str(store), "--executor", "ray", "--ray-address", address, "--json",
                          "--quiet"], env=env, text=True, capture_output=True, timeout=600,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert (summary["executor"], summary["failed"]) == ("ray", 0) and summary["extracted"] > 0
    params = load_params()
    with st.open_store(local) as s:
        run_radiomics_stage(s, params=params, executor=LocalExecutor(2))
        expected = st.radiomics_long_frame(s, params.param_hash)
    with st.open_store(store, read_only=True) as s:
        got = st.radiomics_long_frame(s, params.param_hash)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
