"""Native thread pools of the numeric libraries, for commands that do not need them.

May import: the standard library only (it must run before numpy is imported)."""

from __future__ import annotations

import os
import sys

# OpenBLAS starts one thread per core when numpy is imported, and those threads spin for a
# while each time they are woken: on the 2-core machine of issue 13 that was 0.2-0.4 s of CPU
# for ``sscmort qct`` / ``ingest``, whose numerics never call a multi-threaded BLAS routine
# (the pattern map's QDA already runs on one BLAS thread: lungs/patterns.py).
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_blas() -> bool:
    """Ask for one BLAS thread, unless the user set the variables or numpy is already loaded
    (its pool is started then). True when the request can take effect. The variables are
    left to child processes too (a worker pool of this command does the same work)."""
    if "numpy" in sys.modules:
        return False
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
    return True
