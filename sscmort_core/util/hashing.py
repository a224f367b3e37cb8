"""sha256 of files (model weights, stored volumes) and of voxel arrays (regenerated volumes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks (model weights, stored volumes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def array_sha256(hu: np.ndarray) -> str:
    """sha256 of a volume's int16 voxels in C order (how regenerated volumes are checked)."""
    return hashlib.sha256(np.ascontiguousarray(hu, dtype=np.int16).tobytes()).hexdigest()
