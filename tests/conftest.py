"""Shared fixtures: a tiny synthetic store built by the real pipeline, the real CT folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "real_ct"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="session")
def tiny_store_template(tmp_path_factory) -> Path:
    """A 12-patient synthetic demo store, built once per session (seed 3, one worker): cohort,
    volumes, lungs and QCT, plus the oracle reference model. Tests that need radiomics or
    trained models run those stages on their own copy (they cost tens of seconds)."""
    from sscmort_core.pipeline.demo import build_demo

    path = tmp_path_factory.mktemp("store") / "tiny.duckdb"
    build_demo(path, n_patients=12, seed=3, workers=1, stages=())
    return path


@pytest.fixture()
def tiny_store(tiny_store_template, tmp_path) -> Path:
    """A private copy of the tiny store (tests may write to it or hold its lock)."""
    dest = tmp_path / "tiny.duckdb"
    shutil.copy(tiny_store_template, dest)
    return dest


@pytest.fixture(scope="session")
def real_ct() -> Path:
    if not REAL_CT.is_dir():
        pytest.skip(f"real CT folder {REAL_CT} is absent (it lives in ../shared beside the repo)")
    return REAL_CT


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_configure(config):
    """No test may download anything or write into the repository's models/ folder."""
    import tempfile

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["SSCMORT_MODELS"] = tempfile.mkdtemp(prefix="sscmort-test-models-")


# issue 15: one real Orthanc (DICOMweb) per session for the PACS tests, wherever they live
from tests.pacs.orthanc import orthanc  # noqa: E402, F401


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs, no dashboard) for the whole session, started as the ray
    executor starts one (sscmort_core on the workers' path, driver kept quiet) and shut down
    at the end; executors opened meanwhile use it and leave it running. Ray is a dev
    requirement (requirements-dev.txt): missing, this fixture errors rather than skips."""
    import ray

    from sscmort_core.util.ray_executor import start_local_ray

    if ray.is_initialized():  # pragma: no cover - a leak from elsewhere; start clean
        ray.shutdown()
    start_local_ray(2)
    yield ray
    ray.shutdown()
