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
