"""Reading the lock files (requirements*.lock) and their inputs (requirements*.txt).

The locks are written by ``uv pip compile --generate-hashes`` (`make lock`): one
``name==version \\`` line per package, then its ``--hash`` lines and ``# via`` comments.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = REPO / "requirements.lock"
DEV_LOCK = REPO / "requirements-dev.lock"
PYRADIOMICS_LOCK = REPO / "requirements-pyradiomics.lock"
BUILD_LOCK = REPO / "requirements-build.lock"  # setuptools, wheel for the sdists
RUNTIME_INPUT = REPO / "requirements.txt"
DEV_INPUT = REPO / "requirements-dev.txt"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalised project name (``PyWavelets`` -> ``pywavelets``, ``ruamel.yaml`` ->
    ``ruamel-yaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: Path) -> dict[str, str]:
    """{canonical name: exact version} of every package pinned in a lock file."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def lock_hashes(path: Path) -> dict[str, int]:
    """{canonical name: number of ``--hash`` lines} of every package in a lock file."""
    counts: dict[str, int] = {}
    current = None
    for line in path.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            current = canonical(m.group(1))
            counts[current] = 0
        elif current and line.strip().startswith("--hash=sha256:"):
            counts[current] += 1
    return counts


def input_names(path: Path) -> list[str]:
    """Canonical names of the requirements listed in an input file (extras dropped)."""
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = _NAME.match(line)
        if m:
            names.append(canonical(m.group(1)))
    return names


def input_requirements(path: Path) -> list[str]:
    """The requirement strings of an input file (comments and blank lines dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]
