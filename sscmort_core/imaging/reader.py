"""``read_volume``: one entry point for a DICOM folder, zip or file list, NIfTI, NRRD, MetaImage.

Size limits are checked before anything is decoded: the bytes on disk (a folder's total), the
uncompressed size of a zip, and the decoded size of a (possibly gzip-compressed) image file.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sscmort_core.errors import (
    FileTooLargeError,
    NonFiniteHUError,
    NotACTSeriesError,
    TooFewSlicesError,
    TruncatedFileError,
    UnsafeArchiveError,
    UnsupportedFormatError,
)
from sscmort_core.imaging import validate
from sscmort_core.imaging.archive import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_RATIO,
    extract_zip_safely,
    format_bytes,
)
from sscmort_core.imaging.dicom import SeriesSelector, read_dicom_series
from sscmort_core.imaging.volume import (
    IngestReport,
    ReadResult,
    SeriesSummary,
    SkippedFile,
    Volume,
    direction_matrix,
    to_canonical,
)

log = logging.getLogger("sscmort.imaging")

DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: a 1,500-slice 512x512 CT is about 0.8 GB
GRID_SUFFIXES: dict[str, str] = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd",
                                 ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage"}
_IGNORED_NAMES = ("__MACOSX/", "._", ".DS_Store", "Thumbs.db")
# header fields of grid formats that describe geometry or encoding (everything else is dropped
# and reported by name, because free-text fields such as NIfTI descrip may hold identifiers)
_GEOMETRY_KEYS = re.compile(
    r"^(ITK_|NRRD_(space|kinds|sizes|dimension|type|encoding|endian|thicknesses|centerings|"
    r"measurement frame|labels|units)|dim\[|pixdim\[|qform|sform|qto_|sto_|srow_|quatern_|qoffset|"
    r"datatype|bitpix|vox_offset|scl_|xyzt_units|dim_info|intent_|cal_m|slice_|toffset|"
    r"magic|sizeof_hdr|nifti_type|ElementSpacing|Offset|TransformMatrix|CenterOfRotation|"
    r"AnatomicalOrientation|NDims|DimSize|ElementType|BinaryData|CompressedData|ObjectType)",
    re.IGNORECASE)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def _check_size(n_bytes: int, max_bytes: int, path: Path, what: str = "is") -> None:
    if n_bytes > max_bytes:
        raise FileTooLargeError(f"{what} {format_bytes(n_bytes)}, over the "
                                f"{format_bytes(max_bytes)} limit", path)


def read_volume(path: Path, *, secret: bytes | None = None,
                max_bytes: int = DEFAULT_MAX_BYTES,
                series: SeriesSelector | None = None) -> ReadResult:
    """Read a chest CT from a DICOM folder, a zip of DICOM, a single DICOM file, NIfTI
    (.nii/.nii.gz), NRRD (.nrrd/.nhdr) or MetaImage (.mha/.mhd).

    Returns the de-identified, validated :class:`Volume` in canonical orientation (see
    :mod:`sscmort_core.imaging.volume`), an :class:`IngestReport`, and the pseudonymous patient id
    (HMAC of PatientID with ``secret``; None without a secret or for non-DICOM inputs).
    ``series`` picks one series of a DICOM study (a grid image file refuses a selector).
    Raises a subclass of :class:`~sscmort_core.errors.InputError` naming ``path`` on bad input.
    """
    path = Path(path)
    if not path.exists():
        raise UnsupportedFormatError("no such file or folder", path)
    if path.is_dir():
        return _read_folder(path, secret=secret, max_bytes=max_bytes, series=series)
    _check_size(path.stat().st_size, max_bytes, path, "the file is")
    if _suffix(path) in GRID_SUFFIXES:
        _no_selector(series, path)
        return read_grid_image(path, max_bytes=max_bytes)
    if _is_zip(path):
        return _read_zip(path, secret=secret, max_bytes=max_bytes, series=series)
    return read_dicom_files([path], secret=secret, max_bytes=max_bytes, source=path,
                            series=series)


def _no_selector(series: SeriesSelector | None, source: Path) -> None:
    if series is not None and not series.empty:
        raise UnsupportedFormatError("series_uid / series_description pick a series of a DICOM "
                                     "study; this input is a single image file", source)


def read_dicom_files(paths: Sequence[Path], *, secret: bytes | None = None,
                     max_bytes: int = DEFAULT_MAX_BYTES, source: Path | None = None,
                     series: SeriesSelector | None = None) -> ReadResult:
    """Read the axial CT series among a list of DICOM files (e.g. a multi-file upload).

    ``source`` names the input in errors (default: the first file's folder).
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise UnsupportedFormatError("no files given", source)
    source = source or paths[0].parent
    _check_size(sum(p.stat().st_size for p in paths), max_bytes, source, "the files total")
    fmt = "dicom-files" if len(paths) > 1 else "dicom-file"
    return read_dicom_series([(p, p.name) for p in paths], source=source, source_format=fmt,
                             secret=secret, series=series)


def list_folder(folder: Path) -> tuple[list[tuple[Path, str]], list[SkippedFile]]:
    files, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            name = p.relative_to(folder).as_posix()
            if p.is_symlink() or not p.is_file():
                skipped.append(SkippedFile(name, "a link or special file, not read"))
            elif any(name.startswith(x) or fn.startswith(x) or fn == x for x in _IGNORED_NAMES) \
                    or fn.upper() == "DICOMDIR":
                skipped.append(SkippedFile(name, "operating-system or index file"))
            else:
                files.append((p, name))
    return files, skipped


def _read_folder(folder: Path, *, secret: bytes | None, max_bytes: int,
                 source: Path | None = None, source_format: str = "dicom-folder",
                 series: SeriesSelector | None = None) -> ReadResult:
    source = source or folder
    files, skipped = list_folder(folder)
    _check_size(sum(p.stat().st_size for p, _ in files), max_bytes, source, "the files total")
    grid = [(p, n) for p, n in files if _suffix(p) in GRID_SUFFIXES]
    if len(grid) == 1 and len(files) <= 2:  # a lone NIfTI / MetaImage (plus its .raw) inside
        _no_selector(series, source)
        return read_grid_image(grid[0][0], max_bytes=max_bytes, source=source)
    if not files:
        raise UnsupportedFormatError("the folder holds no files to read", source)
    return read_dicom_series(files, source=source, source_format=source_format, secret=secret,
                             prior_skipped=skipped, series=series)


def _read_zip(zip_path: Path, *, secret: bytes | None, max_bytes: int,
              series: SeriesSelector | None = None) -> ReadResult:
    """Extract into a temporary folder that is always removed, then read it as a folder."""
    with tempfile.TemporaryDirectory(prefix="sscmort-zip-") as tmp:
        extract_zip_safely(zip_path, Path(tmp), max_total_bytes=max_bytes,
                           max_ratio=DEFAULT_MAX_RATIO, max_members=DEFAULT_MAX_MEMBERS)
        result = _read_folder(Path(tmp), secret=secret, max_bytes=max_bytes, source=zip_path,
                              source_format="dicom-zip", series=series)
    log.info("read a zip archive (%d members)", result.report.n_files)
    return result


# ---------------------------------------------------------------------------------------------
# NIfTI / NRRD / MetaImage through SimpleITK
# ---------------------------------------------------------------------------------------------
def _check_detached_data(path: Path, source: Path) -> None:
    """A .mhd / .nhdr may name its data file: only a plain name in the same folder is allowed."""
    if _suffix(path) not in (".mhd", ".nhdr"):
        return
    with open(path, "rb") as fh:
        head = fh.read(65536).decode("latin-1", errors="replace")
    for key in ("ElementDataFile", "data file", "datafile"):
        m = re.search(rf"^\s*{key}\s*[:=]\s*(.+?)\s*$", head, re.IGNORECASE | re.MULTILINE)
        if m is None:
            continue
        target = m.group(1).strip()
        if target.upper() == "LOCAL":  # the voxels follow the header in the same file
            continue
        if target.upper().startswith("LIST") or "%" in target or " " in target:
            raise UnsupportedFormatError("voxel data split over several files is not supported",
                                         source)
        if "/" in target or "\\" in target or target.startswith("."):
            raise UnsafeArchiveError(f"the header points to a data file outside its folder "
                                     f"({key})", source)


def _image_info(path: Path, source: Path, fmt: str, max_bytes: int) -> Any:
    """Read the header only and check dimensionality, components and decoded size (a
    SimpleITK ImageFileReader)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise UnsupportedFormatError(f"cannot be read as a {fmt} image (corrupt or not {fmt})",
                                     source) from None
    size = reader.GetSize()
    if reader.GetNumberOfComponents() != 1:
        raise NotACTSeriesError(f"has {reader.GetNumberOfComponents()} values per voxel "
                                "(colour or vector image), not a CT", source)
    if len(size) == 2 or size[2] == 1:
        raise TooFewSlicesError(f"a single 2D image, not a CT volume of at least "
                                f"{validate.MIN_SLICES} slices", source)
    if len(size) > 4 or (len(size) == 4 and size[3] > 1):
        raise UnsupportedFormatError(f"a {len(size)}-D image (time series?), not a 3-D CT", source)
    per_voxel = np.dtype(_numpy_dtype(reader.GetPixelID())).itemsize
    n_bytes = int(np.prod(size, dtype=np.int64)) * per_voxel
    _check_size(n_bytes, max_bytes, source, "the decoded image would be")
    return reader


def nifti_nonfinite_count(path: Path) -> int:
    """Number of NaN / infinite voxels stored in a float NIfTI-1 or NIfTI-2 file (.nii(.gz)).

    Needed because ITK's NIfTI reader silently turns NaN into 0. Integer files give 0.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        head = fh.read(540)
        if len(head) < 348:
            return 0
        for endian in "<>":
            size = struct.unpack(endian + "i", head[:4])[0]
            if size in (348, 540):
                break
        else:
            return 0
        if size == 348:
            datatype = struct.unpack(endian + "h", head[70:72])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
        else:
            datatype = struct.unpack(endian + "h", head[12:14])[0]
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
        code = {16: "f4", 64: "f8"}.get(datatype)
        if code is None:
            return 0
        dtype = np.dtype(endian + code)
        fh.seek(max(offset, size))
        bad, rest = 0, b""
        while chunk := fh.read(1 << 22):
            chunk = rest + chunk
            usable = len(chunk) - len(chunk) % dtype.itemsize
            bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(chunk[:usable], dtype))))
            rest = chunk[usable:]
    return bad


def _numpy_dtype(pixel_id: int) -> type:
    import SimpleITK as sitk

    table = {sitk.sitkInt8: np.int8, sitk.sitkUInt8: np.uint8, sitk.sitkInt16: np.int16,
             sitk.sitkUInt16: np.uint16, sitk.sitkInt32: np.int32, sitk.sitkUInt32: np.uint32,
             sitk.sitkInt64: np.int64, sitk.sitkUInt64: np.uint64, sitk.sitkFloat32: np.float32,
             sitk.sitkFloat64: np.float64}
    return table.get(pixel_id, np.float64)


def read_grid_image(path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    source: Path | None = None) -> ReadResult:
    """Read a NIfTI / NRRD / MetaImage CT volume (values taken as HU after the file's scaling)."""
    import SimpleITK as sitk

    path = Path(path)
    source = source or path
    fmt = GRID_SUFFIXES[_suffix(path)]
    _check_detached_data(path, source)
    reader = _image_info(path, source, fmt, max_bytes)
    dropped = sorted(k for k in reader.GetMetaDataKeys()
                     if not _GEOMETRY_KEYS.match(k) and reader.GetMetaData(k).strip())
    if fmt == "nifti":
        n_bad = nifti_nonfinite_count(path)
        if n_bad:
            raise NonFiniteHUError(f"{n_bad} voxels are NaN or infinite; a CT holds finite HU",
                                   source)
    try:
        img = reader.Execute()
    except RuntimeError:
        raise TruncatedFileError(f"the {fmt} voxel data cannot be read (truncated?)",
                                 source) from None
    if img.GetDimension() == 4:
        img = img[:, :, :, 0]
    hu = sitk.GetArrayFromImage(img)  # (z, y, x)
    direction = direction_matrix(img.GetDirection())
    validate.check_slice_count(hu.shape[0], source)
    validate.check_axial(direction, source)
    sx, sy, sz = img.GetSpacing()
    arr, spacing, origin, direction = to_canonical(hu, (sz, sy, sx), img.GetOrigin(), direction)
    validate.check_finite(arr, source)
    validate.check_hu_plausible(arr, source)
    integral = np.issubdtype(arr.dtype, np.integer)
    arr, hu_warning = validate.normalize_hu(arr, integral=integral)
    volume = Volume(hu=arr, spacing_mm=spacing, origin_mm=origin,
                    direction=tuple(float(v) for v in direction.ravel()), modality="CT")
    warnings = [f"the modality is not recorded in a {fmt} file; taken as CT because its values "
                "are plausible Hounsfield units"]
    if hu_warning:
        warnings.append(hu_warning)
    report = IngestReport(source_format=fmt, n_files=1,
                          chosen_series=SeriesSummary(None, "CT", 1, int(arr.shape[0])),
                          removed_tags=tuple(dropped), warnings=tuple(warnings))
    log.info("read a %d-slice %s volume", arr.shape[0], fmt)
    return ReadResult(volume, report, None)
