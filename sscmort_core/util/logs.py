"""Where log lines go: sscmort's own log and every library's warnings into one file beside the
store (``<store folder>/<store name>_files/sscmort.log``), never onto the user's terminal or
page. The user sees sscmort's one-line messages; the file keeps the detail for whoever runs
the installation.

:func:`configure_logging` is called once by the CLI (``cli.main``) and by the app
(``pages/_shared``). Calling it again with another store moves the file handler there.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

LOG_NAME = "sscmort.log"
# Libraries that log tracebacks or chatter at WARNING when given a hard file: their records
# go to the file only (level WARNING), never to stderr.
QUIET_LIBRARIES = ("pydicom", "PIL", "shap", "numba", "radiomics", "pykwalify", "matplotlib",
                   "urllib3", "fsspec", "h5py", "timm", "huggingface_hub", "py.warnings")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_TAG = "_sscmort_file_handler"


def log_path_for(store_path: Path) -> Path:
    """The log file that belongs to a store (beside its de-identified volumes)."""
    store_path = Path(store_path)
    return store_path.parent / f"{store_path.stem}_files" / LOG_NAME


def configure_logging(store_path: Path | None, *, level: int = logging.INFO) -> Path | None:
    """Send every log record (and Python warnings) to the store's log file; nothing to stderr.

    Returns the file's path, or None when it cannot be written (then records are dropped:
    a log must never stop a command). Identifying data is never logged by sscmort itself.
    """
    root = logging.getLogger()
    for h in list(root.handlers):  # basicConfig / earlier calls: no stream to stderr
        if getattr(h, _HANDLER_TAG, False) or isinstance(h, logging.StreamHandler):
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    warnings.simplefilter("default")  # each distinct warning once, into the log
    _quiet_simpleitk()
    path = None if store_path is None else log_path_for(store_path)
    handler: logging.Handler = (logging.NullHandler() if path is None
                                 else _LazyFileHandler(path, Path(store_path)))
    handler.setFormatter(logging.Formatter(_FORMAT))
    setattr(handler, _HANDLER_TAG, True)
    root.addHandler(handler)
    logging.lastResort = None  # no fallback printing of records to stderr
    return path


def only_a_log_beside(store_path: Path) -> bool:
    """True when the store's file folder is absent or holds nothing but the log (no key, no
    volume: what a refused or dry-run command may leave)."""
    folder = log_path_for(store_path).parent
    return not folder.exists() or [p.name for p in folder.rglob("*")] == [LOG_NAME]


class _LazyFileHandler(logging.FileHandler):
    """A file handler that creates its folder and file only when a record arrives and the store
    exists (a command that logs nothing, or writes no store, e.g. a dry run, leaves nothing
    behind); records before the store exists wait in memory (at most ``MAX_PENDING``), and
    records it cannot write are dropped."""

    MAX_PENDING = 1000

    def __init__(self, path: Path, store_path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self._store_path = Path(store_path)
        self._pending: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        folder = Path(self.baseFilename).parent
        if not folder.exists() and not self._store_path.exists():
            if len(self._pending) < self.MAX_PENDING:
                self._pending.append(record)
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        pending, self._pending = self._pending, []
        for r in (*pending, record):
            super().emit(r)

    def close(self) -> None:
        """Write the records still waiting when the store came to exist after the last one."""
        if self._pending and self._store_path.exists():
            self.emit(self._pending.pop())
        self._pending = []
        super().close()

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging API)
        return None  # never print a logging traceback to the user


def _quiet_simpleitk() -> None:
    """SimpleITK/ITK print warnings straight to stderr from C++ unless told not to: told now
    when SimpleITK is loaded, else the moment anything imports it (a command that never reads
    an image through SimpleITK, e.g. ``qct`` on a DICOM folder, does not pay its import)."""
    module = sys.modules.get("SimpleITK")
    if module is not None:
        module.ProcessObject.SetGlobalWarningDisplay(False)
    elif not any(isinstance(f, _QuietOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietOnImport())


class _QuietOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: on the first import of SimpleITK it steps aside, lets the other
    finders locate the package, and wraps its loader so the warnings are switched off as soon
    as the module has run."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "SimpleITK":
            return None
        sys.meta_path.remove(self)  # one use; the real finders do the finding
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            module.ProcessObject.SetGlobalWarningDisplay(False)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
