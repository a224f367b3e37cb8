"""The progress callback every long-running stage takes (one definition, imported everywhere).

A stage calls ``progress(stage, done, total)`` as it goes: the CLI draws tqdm bars on stderr,
the app's jobs write the job row, and tests collect the calls.
"""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """The default :data:`ProgressFn`: report nothing."""
    return None


def offset_progress(progress: ProgressFn, offset: int, total: int) -> ProgressFn:
    """``progress`` for one chunk of a longer run: the chunk's (done, chunk total) reported as
    (offset + done, total)."""
    def report(stage: str, done: int, chunk_total: int) -> None:
        progress(stage, offset + done, total)
    return report
