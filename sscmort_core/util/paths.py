"""Where sscmort keeps its files by default: the store, the model registry (read at call time,
so a changed environment is seen). No heavy imports: the command line reads these to build
its parser."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE_PATH = Path("data/sscmort.duckdb")


def default_models_dir() -> Path:
    """The model registry folder: ``$SSCMORT_MODELS``, else ``models`` (read at call time)."""
    return Path(os.environ.get("SSCMORT_MODELS", "models"))
