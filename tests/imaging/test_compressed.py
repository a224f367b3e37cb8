"""Compressed DICOM stays solid (issue 15, item 1; issue 13's clean refusals).

* one synthetic series written in each lossless syntax reads back to identical HU;
* lossy syntaxes read, with a warning in the ingest report;
* a corrupt compressed frame, a header whose image size does not match its pixel data, and a
  header claiming more voxels than the cap are one line on stderr naming the file, exit 2,
  for ``ingest`` and ``qct`` through :func:`sscmort_core.cli.main`, with nothing logged by
  pydicom and nothing printed by native decoders (``capfd`` sees the real file descriptors).

The series are the 12-slice 32 x 32 chest of ``test_imaging`` (written with pydicom); JPEG
lossless has no pydicom encoder, so those files come from GDCM's ``gdcmconv`` (Debian
libgdcm-tools, installed by ``make test``), and that case skips, saying so, without it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from sscmort_core.cli import main
from sscmort_core.errors import CorruptPixelDataError, PixelDataSizeError, VoxelLimitError
from sscmort_core.imaging import read_volume
from sscmort_core.imaging.pixels import MAX_VOXELS
from tests.imaging.test_imaging import chest_hu, write_series

GDCMCONV = shutil.which("gdcmconv")
LOSSLESS = [JPEG2000Lossless, JPEGLSLossless, RLELossless, JPEGLosslessSV1]


def _compress(path: Path, ts: pydicom.uid.UID, **kw) -> None:
    if ts == JPEGLosslessSV1:  # no pydicom encoder: GDCM writes process 14, selection value 1
        if GDCMCONV is None:
            pytest.skip("gdcmconv (Debian libgdcm-tools) is not installed: no JPEG lossless "
                        "encoder here")
        subprocess.run([GDCMCONV, "--jpeg", str(path), str(path)], check=True,
                       capture_output=True)
        return
    ds = pydicom.dcmread(path)
    ds.compress(ts, **kw)
    ds.save_as(path)


def compressed_series(folder: Path, ts: pydicom.uid.UID, **kw) -> tuple[Path, list[Path]]:
    paths = write_series(folder, chest_hu())
    for p in paths:
        _compress(p, ts, **kw)
    return folder, paths


@pytest.fixture(scope="module")
def reference_hu(tmp_path_factory) -> np.ndarray:
    """HU of the uncompressed series as the reader returns them (canonical order)."""
    folder = tmp_path_factory.mktemp("plain")
    write_series(folder, chest_hu())
    return read_volume(folder).volume.hu


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda t: t.keyword)
def test_each_lossless_syntax_reads_identical_hu(tmp_path, ts, reference_hu):
    folder, paths = compressed_series(tmp_path / "ct", ts)
    assert {pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID
            for p in paths} == {ts}  # really compressed in this syntax
    result = read_volume(folder)
    np.testing.assert_array_equal(result.volume.hu, reference_hu)
    assert not any("lossy" in w for w in result.report.warnings)


@pytest.mark.parametrize("ts, kw, max_err", [(JPEG2000, {"j2k_cr": [4]}, None),
                                             (JPEGLSNearLossless, {"jls_error": 2}, 2)],
                         ids=["JPEG2000", "JPEGLSNearLossless"])
def test_lossy_syntaxes_read_with_a_warning(tmp_path, ts, kw, max_err, reference_hu):
    folder, _ = compressed_series(tmp_path / "ct", ts, **kw)
    result = read_volume(folder)
    warnings = [w for w in result.report.warnings if "lossy" in w]
    assert len(warnings) == 1 and ts.name in warnings[0], result.report.warnings
    diff = np.abs(result.volume.hu.astype(np.int32) - reference_hu)
    if max_err is not None:  # JPEG-LS near-lossless bounds every error by NEAR
        assert 0 < diff.max() <= max_err
    assert float(diff.mean()) < 50.0


def test_lossy_flag_in_the_header_warns_too(tmp_path):
    paths = write_series(tmp_path / "ct", chest_hu())
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.LossyImageCompression = "01"
        ds.save_as(p)
    assert any("lossy" in w for w in read_volume(tmp_path / "ct").report.warnings)


# ---------------------------------------------------------------------------------------------
# corrupt frames and impossible headers: one line, exit 2, no noise
# ---------------------------------------------------------------------------------------------
def _cut_first_frame(path: Path) -> None:
    ds = pydicom.dcmread(path)
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = pydicom.encaps.encapsulate([frame[: len(frame) // 2]])
    ds.save_as(path)


def _set_header(paths: list[Path], **values) -> None:
    for p in paths:
        ds = pydicom.dcmread(p)
        for key, value in values.items():
            setattr(ds, key, value)
        ds.save_as(p)


def _one_line_exit_2(capfd, caplog, argv: list[str], *words: str) -> str:
    caplog.set_level(logging.DEBUG)
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for word in words:
        assert word in err, err
    noisy = [r for r in caplog.records if r.name.startswith("pydicom")
             or r.levelno >= logging.WARNING]
    assert noisy == [], [r.getMessage() for r in noisy]
    assert "Traceback" not in err and "Stream too short" not in err
    return err


def _store_unchanged(store: Path) -> None:
    if store.exists():
        from sscmort_core.store import open_store, table_counts
        with open_store(store, read_only=True) as s:
            counts = table_counts(s)
        assert counts.get("scans", 0) == 0 and counts.get("patients", 0) == 0


@pytest.mark.parametrize("ts", LOSSLESS, ids=lambda t: t.keyword)
@pytest.mark.parametrize("command", ["ingest", "qct"])
def test_corrupt_frame_is_one_line_naming_the_file(tmp_path, capfd, caplog, ts, command):
    folder, paths = compressed_series(tmp_path / "ct", ts)
    victim = paths[3]
    _cut_first_frame(victim)
    store = tmp_path / "s.duckdb"
    argv = [command, str(folder), "--quiet"] + (["--store", str(store)] if command == "ingest"
                                                else [])
    err = _one_line_exit_2(capfd, caplog, argv, victim.name, "corrupt", str(folder))
    assert "export the series uncompressed" not in err
    _store_unchanged(store)
    with pytest.raises(CorruptPixelDataError):
        read_volume(folder)


def test_corrupt_frame_leaves_a_real_process_quiet(tmp_path):
    """The same through a real ``python -m sscmort_core`` process: its stderr holds one line."""
    folder, paths = compressed_series(tmp_path / "ct", JPEG2000Lossless)
    _cut_first_frame(paths[0])
    out = subprocess.run([sys.executable, "-m", "sscmort_core", "qct", str(folder), "--quiet"],
                         capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and "corrupt" in out.stderr, out.stderr


@pytest.mark.parametrize("command", ["ingest", "qct"])
def test_header_claiming_65535_pixels_is_refused_before_allocation(tmp_path, capfd, caplog,
                                                                    command):
    paths = write_series(tmp_path / "ct", chest_hu())
    _set_header(paths, Rows=65535, Columns=65535)
    store = tmp_path / "s.duckdb"
    argv = [command, str(tmp_path / "ct"), "--quiet"] + (
        ["--store", str(store)] if command == "ingest" else [])
    _one_line_exit_2(capfd, caplog, argv, "65535 x 65535", "pixel data", "im0")
    _store_unchanged(store)
    with pytest.raises(PixelDataSizeError):
        read_volume(tmp_path / "ct")


@pytest.mark.parametrize("command", ["ingest", "qct"])
def test_too_many_voxels_is_refused_before_allocation(tmp_path, capfd, caplog, command,
                                                      monkeypatch):
    """A compressed series (no pixel length to compare) whose headers claim 65535 x 65535
    pixels: the voxel cap refuses it before anything is decoded or allocated."""
    folder, paths = compressed_series(tmp_path / "ct", RLELossless)
    _set_header(paths, Rows=65535, Columns=65535)
    store = tmp_path / "s.duckdb"
    argv = [command, str(folder), "--quiet"] + (["--store", str(store)] if command == "ingest"
                                                else [])
    _one_line_exit_2(capfd, caplog, argv, f"{MAX_VOXELS:,}", "65535 x 65535", "voxels")
    _store_unchanged(store)
    with pytest.raises(VoxelLimitError):
        read_volume(folder)


def test_header_smaller_than_its_pixel_data_is_refused(tmp_path):
    paths = write_series(tmp_path / "ct", chest_hu())
    _set_header(paths, Rows=16)
    with pytest.raises(PixelDataSizeError, match="16 x 32 pixels"):
        read_volume(tmp_path / "ct")
