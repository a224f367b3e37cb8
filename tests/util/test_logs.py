"""Library chatter goes to the store's log file, never to the user's terminal."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from sscmort_core.util.logs import configure_logging, log_path_for

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


def test_library_warnings_and_logs_reach_the_file_not_stderr(tmp_path):
    store = tmp_path / "s.duckdb"
    store.touch()  # the store exists (records wait for it otherwise: test below)
    out = _run(f"""
import logging, warnings
from pathlib import Path
from sscmort_core.util.logs import configure_logging
configure_logging(Path({str(store)!r}))
logging.getLogger("pydicom").warning("Stream too short")
logging.getLogger("pydicom").exception("a traceback from a decoder")
logging.getLogger("sscmort").info("stored scan S-1")
warnings.warn("a library warning")
""")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and out.stdout == ""
    text = log_path_for(store).read_text()
    for line in ("Stream too short", "a traceback from a decoder", "stored scan S-1",
                 "a library warning"):
        assert line in text


def test_a_command_that_logs_nothing_leaves_no_log_folder(tmp_path):
    store = tmp_path / "none.duckdb"
    out = _run(f"from pathlib import Path\nfrom sscmort_core.util.logs import configure_logging\n"
               f"configure_logging(Path({str(store)!r}))\n")
    assert out.returncode == 0 and out.stderr == ""
    assert list(tmp_path.iterdir()) == []


def test_records_wait_until_the_store_exists_and_nothing_is_left_without_one(tmp_path):
    """A command that writes no store (a dry run) leaves no folder behind; once the store file
    exists, the records logged before it are written, in order."""
    store = tmp_path / "s.duckdb"
    path = configure_logging(store)
    try:
        logging.getLogger("sscmort").info("first")
        assert not path.parent.exists()
        store.write_bytes(b"")
        logging.getLogger("sscmort").info("second")
        lines = path.read_text().splitlines()
        assert [ln.rsplit(": ", 1)[1] for ln in lines] == ["first", "second"]
    finally:
        configure_logging(None)


def test_simpleitk_is_quieted_when_loaded_later_and_not_loaded_for_it():
    """configure_logging does not import SimpleITK (``qct`` on DICOM never needs it), yet
    SimpleITK's C++ warnings are off once anything imports it, and off at once when it was
    already loaded."""
    out = _run("""
import sys
from sscmort_core.util.logs import configure_logging
configure_logging(None)
configure_logging(None)
print('SimpleITK' in sys.modules)
import SimpleITK as sitk
print(sitk.ProcessObject.GetGlobalWarningDisplay())
""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
    out = _run("""
import SimpleITK as sitk
from sscmort_core.util.logs import configure_logging
print(sitk.ProcessObject.GetGlobalWarningDisplay())
configure_logging(None)
print(sitk.ProcessObject.GetGlobalWarningDisplay())
""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"]
