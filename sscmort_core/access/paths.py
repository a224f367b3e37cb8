"""Paths a user types into a form (an import manifest folder): they must lie inside one of
the allowed roots (setting ``sscmort.import_roots``), after symbolic links and ``..`` are
resolved, so a form cannot reach another store's files or the system's.

Without the setting, a localhost app (one user, on their own machine) may name any path, as
the CLI can; a logged-in deployment refuses every typed path until roots are configured.
"""

from __future__ import annotations

import os
from pathlib import Path

from sscmort_core.errors import PathNotAllowedError


def check_import_path(text: str | Path, roots: tuple[Path, ...] | None, *,
                      unrestricted_without_roots: bool) -> Path:
    """The real (resolved) path of ``text`` when it is allowed; PathNotAllowedError naming the
    typed path otherwise. ``roots`` None means the setting is absent."""
    typed = str(text).strip()
    if not typed or "\x00" in typed:
        raise PathNotAllowedError("not a path", typed or None)
    if roots is None:
        if unrestricted_without_roots:
            return Path(os.path.realpath(typed))
        raise PathNotAllowedError("no import folders are allowed on this server (setting "
                                  "sscmort.import_roots in .streamlit/secrets.toml)", typed)
    if not Path(typed).is_absolute():
        raise PathNotAllowedError("give an absolute path inside an allowed import folder",
                                  typed)
    real = Path(os.path.realpath(typed))
    for root in roots:
        if real.is_relative_to(Path(os.path.realpath(root))):
            return real
    raise PathNotAllowedError("outside the allowed import folders (sscmort.import_roots: "
                              f"{', '.join(str(r) for r in roots)})", typed)
