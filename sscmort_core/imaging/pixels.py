"""Pixel data of one DICOM slice: size checks before anything is allocated, decoding (native
or compressed) and the HU rescale.

Before the series' voxels are allocated, :func:`check_pixel_sizes` compares each header's
geometry (Rows x Columns x BitsAllocated) with the length of its pixel data element (native
syntaxes), and the whole series with :data:`MAX_VOXELS`: a header claiming 65535 x 65535
pixels is one clear error, never a MemoryError.

Compressed frames are decoded by pydicom's plugins (pylibjpeg, pyjpegls, its own RLE) when one
is installed for the syntax; a frame those decoders refuse is corrupt
(:class:`~sscmort_core.errors.CorruptPixelDataError`). Only a syntax no installed plugin
handles goes to GDCM (through SimpleITK); when GDCM cannot either, the syntax cannot be decoded
here. Decoders report failures through pydicom's logger and, from C, on the process's stderr:
:func:`quiet_decoders` keeps both away from the user (the reason is logged at DEBUG, without
identifying values).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pydicom.encaps
from pydicom.dataset import Dataset
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
)

from sscmort_core.errors import (
    CorruptPixelDataError,
    NotACTSeriesError,
    PixelDataSizeError,
    TruncatedFileError,
    UnsupportedFormatError,
    VoxelLimitError,
)

log = logging.getLogger("sscmort.imaging")

PIXEL_DATA_TAG = 0x7FE00010
# 2**29 voxels: about 2,000 slices of 512 x 512 (a 0.3 mm whole-chest scan is about 1,200), or
# 2 GiB as int32 while the slices are stacked.
MAX_VOXELS = 2**29
# Syntaxes whose pixels were (or may have been) compressed with loss: the ingest report warns.
LOSSY_SYNTAXES: frozenset[str] = frozenset({JPEGBaseline8Bit, JPEGExtended12Bit,
                                            JPEGLSNearLossless, JPEG2000, HTJ2K})
# The plugin tried first where several decode a syntax (measured on the real 512 x 512 series,
# per slice: JPEG-LS pyjpegls 12 ms vs pylibjpeg 31 ms; JPEG 2000 pylibjpeg 53 ms vs pillow
# 64 ms); the others still try when it refuses a frame.
PREFERRED_PLUGINS: dict[str, str] = {JPEGLSLossless: "pyjpegls", JPEGLSNearLossless: "pyjpegls",
                                     JPEG2000Lossless: "pylibjpeg", JPEG2000: "pylibjpeg"}


# ---------------------------------------------------------------------------------------------
# size checks (headers only; nothing is decoded or allocated)
# ---------------------------------------------------------------------------------------------
def transfer_syntax(ds: Dataset) -> UID | None:
    return ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None


def expected_bytes(ds: Dataset) -> int:
    """Bytes of native (uncompressed) pixel data that Rows x Columns x samples x bits need."""
    bits = int(ds.get("BitsAllocated", 16) or 16)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    return (int(ds.Rows) * int(ds.Columns) * spp * bits + 7) // 8


def declared_pixel_bytes(ds: Dataset) -> int | None:
    """Length of the pixel data element as the file declares it, without reading the value;
    None when absent or encapsulated (undefined length)."""
    if PIXEL_DATA_TAG not in ds:
        return None
    elem = ds.get_item(PIXEL_DATA_TAG)
    length = getattr(elem, "length", None)
    if length is None:  # an element already read: its value is there
        value = elem.value
        length = len(value) if value is not None else None
    return None if length is None or length == 0xFFFFFFFF else int(length)


def _size_text(n_bytes: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes} bytes"


def check_pixel_sizes(headers: Sequence[tuple[str, Dataset]], rows: int, columns: int,
                      source: Path) -> None:
    """Refuse, before any allocation, a series whose header geometry cannot be right.

    headers: (file name, header) of every slice of the chosen series. A native-syntax slice
    must hold the pixel bytes its Rows x Columns x BitsAllocated need (plus padding shorter than
    one row), else :class:`PixelDataSizeError`; the series as a whole at most
    :data:`MAX_VOXELS` voxels, else :class:`VoxelLimitError`.
    """
    for name, ds in headers:
        ts = transfer_syntax(ds)
        if ts is not None and ts.is_compressed:
            continue
        declared = declared_pixel_bytes(ds)
        need = expected_bytes(ds)
        row_bytes = need // max(1, int(ds.Rows))
        if declared is not None and (declared < need or declared >= need + max(2, row_bytes)):
            raise PixelDataSizeError(
                f"file {name}: its header says {ds.Rows} x {ds.Columns} pixels of "
                f"{ds.get('BitsAllocated', 16)} bits ({_size_text(need)}), but its pixel data "
                f"holds {_size_text(declared)}; the header does not describe the image", source)
    n_voxels = len(headers) * rows * columns
    if n_voxels > MAX_VOXELS:
        raise VoxelLimitError(
            f"the headers describe {len(headers)} slices of {rows} x {columns} pixels "
            f"({n_voxels:,} voxels), over the limit of {MAX_VOXELS:,} voxels", source)


def lossy_warning(headers: Sequence[Dataset]) -> str | None:
    """A sentence for the ingest report when the pixels were (or may have been) compressed with
    loss: a lossy transfer syntax, or LossyImageCompression = 01."""
    for ds in headers:
        ts = transfer_syntax(ds)
        declared = str(ds.get("LossyImageCompression", "") or "").strip() == "01"
        if declared or (ts is not None and ts in LOSSY_SYNTAXES):
            what = ts.name if ts is not None else "an earlier step"
            return (f"the pixels were stored with lossy compression ({what}); HU values may "
                    "differ slightly from the scanner's, so QCT and risks may shift a little")
    return None


# ---------------------------------------------------------------------------------------------
# keeping decoder noise off the screen
# ---------------------------------------------------------------------------------------------
_QUIET = threading.local()


class _DropWhileQuiet(logging.Filter):
    """Drops pydicom's records in a thread that is inside :func:`quiet_decoders`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_QUIET, "depth", 0):
            _QUIET.dropped = getattr(_QUIET, "dropped", 0) + 1
            return False
        return True


_FILTER = _DropWhileQuiet()
# pydicom's decoders log under their module names (a parent logger's filter does not see them)
for _name in ("pydicom", "pydicom.pixels.decoders.base", "pydicom.pixels.utils"):
    logging.getLogger(_name).addFilter(_FILTER)


@contextlib.contextmanager
def quiet_decoders() -> Iterator[None]:
    """Inside: pydicom's log records from this thread are dropped, and what native decoders
    (GDCM, openjpeg) print on file descriptor 2 goes to a scratch file, logged at DEBUG.

    The descriptor is the process's, so another thread's stderr output during a decode lands
    in the scratch file too (the span is one series' decode). Re-entrant: an inner use inside
    an outer one costs nothing.
    """
    _QUIET.depth = getattr(_QUIET, "depth", 0) + 1
    try:
        if _QUIET.depth > 1:  # already quiet (a whole series is being decoded): nothing to add
            yield
            return
        with tempfile.TemporaryFile(prefix="sscmort-decoder-") as scratch:
            try:
                saved = os.dup(2)
            except OSError:  # no stderr descriptor at all: nothing to keep quiet
                yield
                return
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                scratch.seek(0)
                said = scratch.read(2000)
                if said:
                    log.debug("decoder output suppressed (%d bytes)", len(said))
    finally:
        _QUIET.depth -= 1


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------
def _rescale(ds: Dataset) -> tuple[float, float]:
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return slope, intercept


def integral_rescale(datasets: Sequence[Dataset]) -> bool:
    """True when every slice has an integer RescaleSlope and RescaleIntercept."""
    return all(float(s).is_integer() and float(i).is_integer()
               for s, i in (_rescale(ds) for ds in datasets))


def has_decoder(ts: UID) -> bool:
    """Whether an installed pydicom plugin decodes this transfer syntax."""
    try:
        from pydicom.pixels import get_decoder
        return bool(get_decoder(ts).is_available)
    except (NotImplementedError, ValueError):
        return False


def slice_hu(path: Path, name: str, ds: Dataset, source: Path, *,
             integral: bool) -> np.ndarray:
    """(rows, columns) HU of one slice: int32 when ``integral`` (integer slope and intercept),
    else float32. ``name`` (relative to the input) names the file in errors."""
    ts = transfer_syntax(ds)
    try:
        pixel_bytes = len(ds.PixelData) if "PixelData" in ds else 0
    except Exception as exc:
        raise TruncatedFileError(f"file {name} cannot be read ({type(exc).__name__})",
                                 source) from None
    if pixel_bytes == 0:
        raise TruncatedFileError(f"file {name} has no pixel data (truncated?)", source)
    if ts is not None and not ts.is_compressed and pixel_bytes < expected_bytes(ds):
        raise TruncatedFileError(f"file {name} has truncated pixel data ({pixel_bytes} "
                                 f"of {expected_bytes(ds)} bytes)", source)
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise NotACTSeriesError(f"file {name} is a colour image, not CT", source)
    if ts is not None and ts.is_compressed:
        if not has_decoder(ts):
            return _slice_hu_gdcm(path, name, ts, source)
        stored = _decode_compressed(ds, name, ts, source)
    else:
        try:
            stored = ds.pixel_array
        except Exception:
            raise TruncatedFileError(f"file {name} has unreadable pixel data", source) from None
    slope, intercept = _rescale(ds)
    if integral:
        hu = stored.astype(np.int32)
        if slope != 1.0:
            hu *= int(slope)
        hu += int(intercept)
    else:
        hu = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    padding = ds.get("PixelPaddingValue")
    if padding is not None:
        hu[stored == padding] = -1024
    return hu


def frames_end_whole(ds: Dataset, ts: UID) -> bool:
    """For JPEG, JPEG-LS and JPEG 2000 frames: whether each ends with its end marker (FF D9,
    EOI / EOC; trailing zero padding allowed). Some decoders (CharLS for JPEG-LS, libjpeg for
    JPEG lossless) return an image from a cut-short frame without complaint. Other syntaxes
    (RLE) carry no end marker: True."""
    if not str(ts).startswith("1.2.840.10008.1.2.4."):
        return True
    try:
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        frames = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=n_frames)
        return all(bytes(f).rstrip(b"\x00").endswith(b"\xff\xd9") for f in frames)
    except Exception:  # the encapsulation itself is broken
        return False


def _decode_compressed(ds: Dataset, name: str, ts: UID, source: Path) -> np.ndarray:
    """Stored values of a compressed slice through pydicom's plugins; a refusal (or a frame cut
    short) means the compressed data is corrupt, since a plugin for the syntax is installed."""
    corrupt = CorruptPixelDataError(
        f"file {name}: the compressed pixel data ({ts.name}) is corrupt and cannot be "
        "decoded; the file is damaged (copy it again from the scanner or PACS)", source)
    if not frames_end_whole(ds, ts):
        raise corrupt
    plugin = PREFERRED_PLUGINS.get(str(ts))
    with quiet_decoders():
        if plugin is not None and plugin in _plugins(ts):
            try:
                ds.pixel_array_options(decoding_plugin=plugin)
                return ds.pixel_array
            except Exception:  # let every installed plugin try before calling it corrupt
                ds.pixel_array_options(decoding_plugin="")
        try:
            return ds.pixel_array
        except Exception as exc:
            log.debug("compressed frame refused by the decoders (%s)", type(exc).__name__)
            raise corrupt from None


def is_compressed(ds: Dataset) -> bool:
    ts = transfer_syntax(ds)
    return ts is not None and ts.is_compressed


def _plugins(ts: UID) -> tuple[str, ...]:
    from pydicom.pixels import get_decoder
    return tuple(get_decoder(ts).available_plugins)


def _slice_hu_gdcm(path: Path, name: str, ts: UID, source: Path) -> np.ndarray:
    """Decode a compressed slice that no pydicom plugin handles, through GDCM (which applies
    the rescale)."""
    import SimpleITK as sitk

    try:
        with quiet_decoders():
            img = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(img).astype(np.float32)  # (1, rows, columns)
    except RuntimeError:
        raise UnsupportedFormatError(
            f"file {name} is compressed with {ts.name} ({ts}), which cannot be decoded here; "
            "export the series uncompressed", source) from None
    return arr.reshape(arr.shape[-2:])

