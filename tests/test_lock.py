"""Locked installs: the locks cover their inputs with exact, hashed pins, the dev lock agrees with
the runtime lock, and what is installed is what the locks pin."""

from importlib import metadata

import duckdb
import pytest
from packaging.requirements import Requirement

from tests.lockfile import (
    BUILD_LOCK,
    DEV_INPUT,
    DEV_LOCK,
    PYRADIOMICS_LOCK,
    RUNTIME_INPUT,
    RUNTIME_LOCK,
    canonical,
    input_names,
    input_requirements,
    lock_hashes,
    lock_pins,
)

RUNTIME = lock_pins(RUNTIME_LOCK)
DEV = lock_pins(DEV_LOCK)
PYRADIOMICS = lock_pins(PYRADIOMICS_LOCK)
TOP_LEVEL = sorted(set(input_names(RUNTIME_INPUT)) | set(input_names(DEV_INPUT)))


def test_every_input_is_pinned_in_its_lock():
    assert "duckdb" in RUNTIME and "torch" in RUNTIME
    missing_runtime = [n for n in input_names(RUNTIME_INPUT) if n not in RUNTIME]
    missing_dev = [n for n in TOP_LEVEL if n not in DEV]
    assert missing_runtime == [] and missing_dev == []


def test_every_pin_satisfies_its_input():
    """An input edited without `make lock` (a raised floor, a new cap) shows up here."""
    stale = []
    for path, pins in ((RUNTIME_INPUT, RUNTIME), (DEV_INPUT, DEV)):
        for line in input_requirements(path):
            req = Requirement(line)
            pin = pins.get(canonical(req.name))
            if pin is None or not req.specifier.contains(pin, prereleases=True):
                stale.append(f"{path.name}: {line} (locked {pin})")
    assert stale == [], "run make lock"


def test_dev_lock_holds_the_runtime_lock_unchanged():
    differ = {n: (v, DEV.get(n)) for n, v in RUNTIME.items() if DEV.get(n) != v}
    assert differ == {}
    assert len(DEV) > len(RUNTIME)


def test_every_pin_has_a_sha256_hash():
    for path in (RUNTIME_LOCK, DEV_LOCK, PYRADIOMICS_LOCK, BUILD_LOCK):
        unhashed = [n for n, k in lock_hashes(path).items() if k == 0]
        assert unhashed == [], path.name
    assert list(PYRADIOMICS) == ["pyradiomics"]
    # pyradiomics's own dependencies are in the hashed runtime lock (it installs with --no-deps)
    needs = {canonical(Requirement(r).name) for r in metadata.requires("pyradiomics") or []}
    assert needs and needs <= set(RUNTIME)


def test_installed_duckdb_is_the_locked_one():
    assert duckdb.__version__ == RUNTIME["duckdb"]


@pytest.mark.parametrize("name", TOP_LEVEL + ["pyradiomics"])
def test_installed_top_level_packages_are_the_locked_versions(name):
    pin = {**DEV, **PYRADIOMICS}[name]
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is locked at {pin} but not installed (make install-dev)")
    assert installed == pin, f"{name}: installed {installed}, locked {pin}; run make install-dev"


def test_build_tools_of_the_sdists_are_the_runtime_locks_pins():
    """The sdists in the locks build with --no-build-isolation against setuptools and wheel
    installed first from requirements-build.lock: the same hashed pins as the runtime lock."""
    build = lock_pins(BUILD_LOCK)
    assert {"setuptools", "wheel"} <= set(build)
    assert {n: v for n, v in build.items() if RUNTIME.get(n) != v} == {}
    assert lock_hashes(BUILD_LOCK) == {n: k for n, k in lock_hashes(RUNTIME_LOCK).items()
                                       if n in build}
