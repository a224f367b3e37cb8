"""DICOM series reading: group files by series, choose the axial CT, order slices, make HU.

Two passes: headers only (``stop_before_pixels``) for every file, to group them by
SeriesInstanceUID and choose the series; then pixels for the chosen series only. Slices are
ordered by their position along the slice normal (cross(row, column) . ImagePositionPatient),
never by file name or InstanceNumber; the z spacing is the median step between positions, not
SliceThickness. The headers' geometry is checked against the pixel data and a voxel cap before
the volume is allocated; then HU = stored * RescaleSlope + RescaleIntercept, slice by slice
(:mod:`.pixels`).

No identifying value leaves this module: series are described by SeriesDescription (cleaned of
the patient's name and id), never by UID, and log messages carry counts only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from sscmort_core.errors import (
    InconsistentGeometryError,
    InputError,
    NotACTSeriesError,
    NotAxialError,
    SeriesNotFoundError,
    TooFewSlicesError,
    TruncatedFileError,
    UnsupportedFormatError,
)
from sscmort_core.imaging import deid, pixels, validate
from sscmort_core.imaging.volume import (
    IngestReport,
    ReadResult,
    SeriesSummary,
    SkippedFile,
    Volume,
    to_canonical,
)

log = logging.getLogger("sscmort.imaging")

LOCALIZER_WORDS = frozenset({"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW", "SCANOGRAM"})
GEOMETRY_ATOL = 1e-3  # orientation cosines / pixel spacing (mm) equal within this
TILT_TOLERANCE_DEG = 2.0  # slices stacked along the normal within this angle (no gantry tilt)
# Header pass: values over this size (pixel data, big private blobs) are not read; pydicom reads
# them from the file on first access, so the chosen series' pixels are read once, the others never.
DEFER_BYTES = 4096


@dataclass(frozen=True)
class DicomHeader:
    """One file's header (pixels not read). ``name`` is relative to the input, for messages."""

    path: Path
    name: str
    ds: Dataset
    series_key: tuple[str, bool]  # (SeriesInstanceUID, is a localizer); never shown

    @property
    def modality(self) -> str:
        return str(self.ds.get("Modality", "") or "").upper()

    @property
    def description(self) -> str | None:
        text = str(self.ds.get("SeriesDescription", "") or "").strip()
        return text or None


def read_header(path: Path, name: str, source: Path) -> DicomHeader | SkippedFile:
    """Read one header. Non-DICOM files and non-image objects come back as SkippedFile.

    A file with the DICM marker whose header is cut short raises TruncatedFileError.
    """
    try:
        ds = pydicom.dcmread(path, defer_size=DEFER_BYTES)
    except InvalidDicomError:
        return SkippedFile(name, "not a DICOM file (no DICM marker)")
    except Exception as exc:  # pydicom raises many types on a broken header
        raise TruncatedFileError(f"file {name} is a truncated or corrupt DICOM file "
                                 f"({type(exc).__name__})", source) from None
    sop = ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None
    is_image_class = sop is not None and "Image Storage" in getattr(sop, "name", "")
    if "Rows" not in ds or "Columns" not in ds:
        if is_image_class or len(ds) == 0:
            raise TruncatedFileError(f"file {name} is a truncated DICOM image (its header stops "
                                     "before the image size)", source)
        return SkippedFile(name, "a DICOM object without an image (report, index or similar)")
    image_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
    is_localizer = bool(image_type & LOCALIZER_WORDS)
    key = (str(ds.get("SeriesInstanceUID", "") or ""), is_localizer)
    return DicomHeader(path, name, ds, key)


@dataclass(frozen=True)
class SeriesSelector:
    """Which series of a study to read, when a folder or zip holds several (supine / prone,
    inspiration / expiration, kernels): by SeriesInstanceUID, or by SeriesDescription
    (case-insensitive, surrounding spaces ignored). Both None: the default choice (the axial CT
    series with the most files). The values are matched, never shown or stored."""

    series_uid: str | None = None
    series_description: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.series_uid or self.series_description)

    def matches(self, header: "DicomHeader") -> bool:
        if self.series_uid and header.series_key[0].strip() != self.series_uid.strip():
            return False
        if self.series_description:
            wanted = self.series_description.strip().casefold()
            return (header.description or "").strip().casefold() == wanted
        return True


def select_series(groups: Sequence[Sequence["DicomHeader"]], series: SeriesSelector | None,
                  source: Path) -> list[Sequence["DicomHeader"]]:
    """The groups ``series`` picks (all of them without a selector). Raises
    SeriesNotFoundError when it picks none, or several by description alone."""
    if series is None or series.empty:
        return list(groups)
    picked = [g for g in groups if series.matches(g[0])]
    what = "series_uid" if series.series_uid else "series_description"
    if not picked:
        raise SeriesNotFoundError(f"none of the {len(groups)} series matches the given "
                                  f"{what}", source)
    if len(picked) > 1 and not series.series_uid:
        raise SeriesNotFoundError(f"{len(picked)} series match the given series_description; "
                                  "give series_uid to pick one", source)
    return picked


# ---------------------------------------------------------------------------------------------
# series classification
# ---------------------------------------------------------------------------------------------
def _floats(value: object, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def orientation(ds: Dataset) -> np.ndarray | None:
    """(3, 3) direction matrix [row, column, normal] as columns, or None when absent."""
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    if iop is None:
        return None
    row, col = iop[:3], iop[3:]
    if np.linalg.norm(row) < 0.5 or np.linalg.norm(col) < 0.5:
        return None
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    if np.linalg.norm(normal) < 0.5:  # row and column (nearly) parallel: not a valid plane
        return None
    return np.stack([row, col, normal / np.linalg.norm(normal)], axis=1)


def series_problem(headers: Sequence[DicomHeader]) -> tuple[type[InputError], str] | None:
    """Why a series cannot be the CT volume (error class, reason), or None if it can."""
    first = headers[0]
    ds = first.ds
    if first.series_key[1]:
        return NotACTSeriesError, "a localizer (scout) image, not a CT volume"
    if first.modality != "CT":
        return NotACTSeriesError, f"a series of modality {first.modality or 'unknown'}, not CT"
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return (UnsupportedFormatError,
                "a multi-frame (enhanced) DICOM object; export single-frame slices instead")
    direction = orientation(ds)
    if direction is None or _floats(ds.get("ImagePositionPatient"), 3) is None:
        return NotACTSeriesError, "images without slice position or orientation, not a CT stack"
    plane = validate.plane_name(direction)
    if plane != "axial":
        return NotAxialError, f"a {plane} series, not axial; upload the axial reconstruction"
    if len(headers) == 1:
        return TooFewSlicesError, "a single 2D image, not a CT volume"
    return None


def _summary(headers: Sequence[DicomHeader], reason: str | None,
             identifiers: Sequence[str]) -> SeriesSummary:
    desc, _ = deid.clean_free_text(headers[0].description, identifiers)
    positions = set()  # distinct slice positions, to 0.01 mm
    for h in headers:
        p = _floats(h.ds.get("ImagePositionPatient"), 3)
        if p is not None:
            positions.add(tuple(np.round(p, 2)))
    return SeriesSummary(desc, headers[0].modality or None, len(headers),
                         max(1, len(positions)), reason)


def group_series(headers: Sequence[DicomHeader]) -> list[list[DicomHeader]]:
    """Headers grouped by (SeriesInstanceUID, is a localizer), each group and the groups in
    file-name order (a stable order: the choice never depends on how the files were listed)."""
    groups: dict[tuple[str, bool], list[DicomHeader]] = defaultdict(list)
    for h in headers:
        groups[h.series_key].append(h)
    group_list = [sorted(g, key=lambda h: h.name) for g in groups.values()]
    group_list.sort(key=lambda g: g[0].name)
    return group_list


def choose_series(groups: Sequence[Sequence[DicomHeader]], source: Path,
                  ) -> tuple[list[DicomHeader], list[tuple[Sequence[DicomHeader], str]]]:
    """Pick the axial CT series with the most files; return it and (ignored, reason) pairs.

    Raises the error of the largest unusable series when no series is usable.
    """
    problems = [series_problem(g) for g in groups]
    usable = [i for i, p in enumerate(problems) if p is None]
    if not usable:
        worst = max(range(len(groups)), key=lambda i: (not groups[i][0].series_key[1],
                                                       len(groups[i])))
        cls, reason = problems[worst]  # type: ignore[misc]
        extra = "" if len(groups) == 1 else f" (and {len(groups) - 1} other unusable series)"
        raise cls(f"no usable CT series: the input holds {reason}{extra}", source)
    best = max(usable, key=lambda i: (len(groups[i]), -i))
    ignored = []
    for i, g in enumerate(groups):
        if i == best:
            continue
        reason = problems[i][1] if problems[i] else (
            f"fewer slices ({len(g)} files vs {len(groups[best])} in the chosen series)")
        ignored.append((g, reason))
    return list(groups[best]), ignored


# ---------------------------------------------------------------------------------------------
# geometry of the chosen series
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StackGeometry:
    """Sorted slice stack: order (n,) indices into the headers, positions (n,) mm along normal."""

    order: np.ndarray
    positions_mm: np.ndarray
    direction: np.ndarray  # (3, 3) columns row, column, normal
    spacing_mm: tuple[float, float, float]  # (z, y, x)
    origin_mm: tuple[float, float, float]  # (x, y, z) of the first sorted slice
    rows: int
    columns: int


def _check_same(headers: Sequence[DicomHeader], source: Path) -> tuple[int, int, np.ndarray,
                                                                       np.ndarray]:
    ref = headers[0]
    rows, cols = int(ref.ds.Rows), int(ref.ds.Columns)
    ps = _floats(ref.ds.get("PixelSpacing"), 2)
    direction = orientation(ref.ds)
    if ps is None or np.any(ps <= 0):
        raise InconsistentGeometryError(f"file {ref.name} has no valid PixelSpacing", source)
    for h in headers[1:]:
        if (int(h.ds.Rows), int(h.ds.Columns)) != (rows, cols):
            raise InconsistentGeometryError(
                f"file {h.name} is {h.ds.Rows}x{h.ds.Columns} pixels but {ref.name} is "
                f"{rows}x{cols}; all slices of a series must have the same size", source)
        other = _floats(h.ds.get("PixelSpacing"), 2)
        if other is None or not np.allclose(other, ps, atol=GEOMETRY_ATOL):
            raise InconsistentGeometryError(
                f"file {h.name} has a different pixel spacing from {ref.name}", source)
        d = orientation(h.ds)
        if d is None or not np.allclose(d, direction, atol=GEOMETRY_ATOL):
            raise InconsistentGeometryError(
                f"file {h.name} has a different image orientation from {ref.name}", source)
    return rows, cols, ps, direction  # type: ignore[return-value]


def stack_geometry(headers: Sequence[DicomHeader], source: Path) -> StackGeometry:
    """Sort slices along the normal and check them (count, duplicates, gaps, tilt)."""
    rows, cols, ps, direction = _check_same(headers, source)
    validate.check_axial(direction, source)
    ipp = np.stack([_floats(h.ds.get("ImagePositionPatient"), 3) for h in headers])  # (n, 3)
    along = ipp @ direction[:, 2]  # (n,) mm along the normal
    order = np.argsort(along, kind="stable")
    positions = along[order]
    validate.check_slice_count(len(headers), source)
    names = [headers[i].name for i in order]
    dz = validate.check_slice_positions(positions, names, source)
    lateral = (ipp[order[-1]] - ipp[order[0]]) @ direction[:, :2]  # (2,) in-plane drift, mm
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(lateral), positions[-1] - positions[0])))
    if tilt > TILT_TOLERANCE_DEG:
        raise InconsistentGeometryError(
            f"the slices are sheared by about {tilt:.1f} degrees (gantry tilt), which is not "
            "supported; upload a tilt-corrected reconstruction", source)
    origin = ipp[order[0]]
    return StackGeometry(order, positions, direction, (dz, float(ps[0]), float(ps[1])),
                         (float(origin[0]), float(origin[1]), float(origin[2])), rows, cols)


# ---------------------------------------------------------------------------------------------
# metadata (allow-list only)
# ---------------------------------------------------------------------------------------------
def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        value = "/".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _study_date(ds: Dataset) -> dt.date | None:
    text = _text(ds, "StudyDate")
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _float_or_none(ds: Dataset, keyword: str) -> float | None:
    try:
        value = float(ds.get(keyword))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def patient_identifiers(ds: Dataset) -> list[str]:
    """Name and id strings used only to scrub free text; never stored."""
    return [str(v) for v in (ds.get("PatientName"), ds.get("PatientID")) if v]


# ---------------------------------------------------------------------------------------------
# the series reader
# ---------------------------------------------------------------------------------------------
def read_dicom_series(files: Sequence[tuple[Path, str]], *, source: Path, source_format: str,
                      secret: bytes | None = None,
                      prior_skipped: Sequence[SkippedFile] = (),
                      series: SeriesSelector | None = None) -> ReadResult:
    """Read the axial CT series among ``files`` ((path, display name) pairs), or the one
    ``series`` picks.

    ``source`` (the folder, zip or first file) is named in every error.
    """
    headers: list[DicomHeader] = []
    skipped = list(prior_skipped)
    for path, name in files:
        got = read_header(path, name, source)
        (headers if isinstance(got, DicomHeader) else skipped).append(got)  # type: ignore[arg-type]
    if not headers:
        hint = f" ({len(skipped)} files, e.g. {skipped[0].name}: {skipped[0].reason})" if skipped \
            else ""
        raise UnsupportedFormatError(f"no DICOM image files found{hint}", source)
    group_list = group_series(headers)
    picked = select_series(group_list, series, source)
    chosen, ignored = choose_series(picked, source)
    ignored += [(g, "not the series the manifest names") for g in group_list
                if not any(g is p for p in picked)]
    geom = stack_geometry(chosen, source)
    pixels.check_pixel_sizes([(h.name, h.ds) for h in chosen], geom.rows, geom.columns, source)
    integral = pixels.integral_rescale([h.ds for h in chosen])
    lossy = pixels.lossy_warning([h.ds for h in chosen])
    hu = _stack_pixels([chosen[i] for i in geom.order], geom, source, integral)
    n_patients = len({str(h.ds.get("PatientID", "") or "").strip() for h in headers})
    extra = [f"the input holds images of {n_patients} different patient ids; only the chosen "
             "series is used"] if n_patients > 1 else []
    extra += [lossy] if lossy else []
    return _assemble(chosen, ignored, skipped, hu, geom, source, source_format, secret,
                     n_files=len(files) + len(prior_skipped), integral=integral,
                     extra_warnings=extra)


def _stack_pixels(ordered: Sequence[DicomHeader], geom: StackGeometry, source: Path,
                  integral: bool) -> np.ndarray:
    """(z, y, x) HU: when ``integral``, int16 while every value fits (CT's 12 bits always do;
    half the memory of int32, no wider copy to make), else int32; float32 otherwise."""
    dtype = np.int16 if integral else np.float32
    out = np.empty((len(ordered), geom.rows, geom.columns), dtype=dtype)  # (z, y, x)
    small = np.iinfo(np.int16)
    compressed = any(pixels.is_compressed(h.ds) for h in ordered)
    with pixels.quiet_decoders() if compressed else contextlib.nullcontext():  # one for all
        for k, h in enumerate(ordered):
            sl = pixels.slice_hu(h.path, h.name, h.ds, source, integral=integral)
            if sl.shape != (geom.rows, geom.columns):
                raise InconsistentGeometryError(f"file {h.name} holds {sl.shape} pixels, its "
                                                f"header says {geom.rows}x{geom.columns}", source)
            if out.dtype == np.int16 and (int(sl.min()) < small.min or int(sl.max()) > small.max):
                out = out.astype(np.int32)  # this slice does not fit int16; the earlier ones did
            out[k] = sl
    return out


def _assemble(chosen: list[DicomHeader], ignored: list[tuple[Sequence[DicomHeader], str]],
              skipped: list[SkippedFile], hu: np.ndarray, geom: StackGeometry, source: Path,
              source_format: str, secret: bytes | None, n_files: int, integral: bool,
              extra_warnings: Sequence[str] = ()) -> ReadResult:
    ref = chosen[0].ds
    identifiers = patient_identifiers(ref)
    arr, spacing, origin, direction = to_canonical(hu, geom.spacing_mm, geom.origin_mm,
                                                   geom.direction)
    validate.check_hu_plausible(arr, source)
    arr, hu_warning = validate.normalize_hu(arr, integral=integral)
    description, cleaned = deid.clean_free_text(chosen[0].description, identifiers)
    volume = Volume(hu=arr, spacing_mm=spacing, origin_mm=origin,
                    direction=tuple(float(v) for v in direction.ravel()), modality="CT",
                    manufacturer=_text(ref, "Manufacturer"),
                    model=_text(ref, "ManufacturerModelName"),
                    kernel=_text(ref, "ConvolutionKernel"), series_description=description,
                    slice_thickness_mm=_float_or_none(ref, "SliceThickness"),
                    study_date=_study_date(ref))
    warnings = [w for w in (hu_warning, *extra_warnings) if w]
    if cleaned:
        warnings.append("the series description contained the patient's name or id; removed")
    if str(ref.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.append("the images declare burned-in annotation: pixels may show identifying "
                        "text")
    pseudo = None
    if secret is not None:
        pid = str(ref.get("PatientID", "") or "").strip()
        if pid:
            pseudo = deid.pseudonymous_id(secret, pid)
        else:
            warnings.append("no PatientID in the files, so no pseudonymous id was made")
    report = IngestReport(
        source_format=source_format, n_files=n_files,
        chosen_series=_summary(chosen, None, identifiers),
        ignored_series=tuple(_summary(g, r, identifiers) for g, r in ignored),
        skipped_files=tuple(skipped),
        removed_tags=deid.identifying_keywords_present(h.ds for h in chosen),
        removed_private_tags=deid.private_tag_count(ref), warnings=tuple(warnings))
    log.info("read a %d-slice CT series (%d series ignored, %d files skipped)",
             volume.shape[0], len(ignored), len(skipped))
    return ReadResult(volume, report, pseudo)
