"""Radiomics features inside the lung mask of one volume (pure: arrays in, features out).

The parameters live in a versioned YAML file (:data:`PARAMS_PATH`, with the reasons for every
setting); features are stored under one hash of its parsed content, the pyradiomics version,
sscmort's own pre-processing version (:data:`PREPROCESS_VERSION`) and the lung mask's version
(:data:`sscmort_core.lungs.LUNG_MASK_VERSION`), so a later change of any of them never mixes
with earlier features: the stage extracts again, training refuses a mix.

* :func:`load_params` -> :class:`RadiomicsParams`
* :func:`extract_features` (one volume + mask) -> :class:`RadiomicsFeatures`
* :func:`extract_outcome`: the same, returning the reason instead of raising (batch workers),
  for :func:`sscmort_core.radiomics.stage.write_outcomes`. The demo build's QCT workers
  regenerate and segment every synthetic scan anyway, so extracting there saves the ~0.14 s
  per scan that :func:`sscmort_core.radiomics.stage.run_radiomics_stage` spends regenerating
  and segmenting again (docs/BENCHMARKS.md "Radiomics").
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import yaml

from sscmort_core.errors import EmptyMaskError, InputError, RadiomicsParamsError
from sscmort_core.lungs import lung_mask_version

PARAMS_PATH = Path(__file__).resolve().parent / "params" / "radiomics.yaml"
PYRADIOMICS_SECTIONS = ("imageType", "featureClass", "setting", "voxelSetting")
FEATURE_PREFIX = "original_"  # pyradiomics names features <imageType>_<class>_<name>


def pyradiomics_version() -> str:
    import radiomics

    return str(radiomics.__version__)


@dataclass(frozen=True)
class RadiomicsParams:
    """A parsed parameter file.

    ``param_hash``: first 16 hex digits of the sha256 of the parsed content as canonical JSON
    (comments and formatting do not count). ``pyradiomics`` holds the sections handed to
    pyradiomics; ``antialias_target_mm`` (in-plane block averaging) and ``resegment_hu``
    (closed HU range the mask is cut to) are sscmort's own pre-processing, None = off.
    """

    text: str = field(repr=False)
    param_hash: str
    pyradiomics: Mapping[str, Any] = field(repr=False)
    antialias_target_mm: float | None
    resegment_hu: tuple[float, float] | None
    source: str

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.pyradiomics.get("setting", {})

    @property
    def feature_classes(self) -> tuple[str, ...]:
        return tuple(self.pyradiomics.get("featureClass", {}))


# Bump when the pre-processing before pyradiomics changes (block averaging, resegmentation,
# the bin-edge patch): features of another version must not mix with these.
PREPROCESS_VERSION = "1"


def params_hash(content: Mapping[str, Any]) -> str:
    """Hash of the parsed parameters together with what else decides the feature values."""
    keyed = {"params": content, "pyradiomics": pyradiomics_version(),
             "sscmort_preprocess": PREPROCESS_VERSION, "lung_mask": lung_mask_version()}
    canonical = json.dumps(keyed, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def params_from_text(text: str, source: str = "<text>") -> RadiomicsParams:
    """Parse and check a parameter file's text (see :data:`PARAMS_PATH` for the layout)."""
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RadiomicsParamsError(f"not valid YAML: {str(err).splitlines()[0]}", source) from None
    if not isinstance(content, dict):
        raise RadiomicsParamsError("expected a mapping with imageType / featureClass / setting",
                                   source)
    unknown = sorted(set(content) - set(PYRADIOMICS_SECTIONS) - {"sscmort"})
    if unknown:
        raise RadiomicsParamsError(f"unknown top-level keys {unknown}", source)
    py = {k: v for k, v in content.items() if k in PYRADIOMICS_SECTIONS}
    own = content.get("sscmort") or {}
    extra = sorted(set(own) - {"antialias_target_mm", "resegment_hu"})
    if extra:
        raise RadiomicsParamsError(f"unknown sscmort keys {extra}", source)
    target = own.get("antialias_target_mm")
    if target is not None and (not isinstance(target, (int, float)) or target <= 0):
        raise RadiomicsParamsError("sscmort.antialias_target_mm must be a positive number", source)
    reseg = own.get("resegment_hu")
    if reseg is not None and (not isinstance(reseg, list) or len(reseg) != 2
                              or not all(isinstance(v, (int, float)) for v in reseg)
                              or reseg[0] >= reseg[1]):
        raise RadiomicsParamsError("sscmort.resegment_hu must be [low, high] HU with low < high",
                                   source)
    params = RadiomicsParams(text=text, param_hash=params_hash(content), pyradiomics=py,
                             antialias_target_mm=None if target is None else float(target),
                             resegment_hu=None if reseg is None else
                             (float(reseg[0]), float(reseg[1])),
                             source=source)
    _extractor(params)  # pyradiomics validates the sections (raises RadiomicsParamsError)
    return params


_PARAMS_CACHE: dict[tuple[str, int, int, str], RadiomicsParams] = {}


def load_params(path: str | Path | None = None) -> RadiomicsParams:
    """Read a parameter file (default :data:`PARAMS_PATH`); cached per path, size, mtime and
    lung-mask version (which the parameter hash includes)."""
    path = Path(path) if path is not None else PARAMS_PATH
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, lung_mask_version())
        if key in _PARAMS_CACHE:
            return _PARAMS_CACHE[key]
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RadiomicsParamsError(f"cannot read the parameter file: {err.strerror}", path) \
            from None
    params = params_from_text(text, str(path))
    _PARAMS_CACHE[key] = params
    return params


_EXTRACTORS: dict[str, Any] = {}  # per process, by param hash


def _quiet_pyradiomics() -> None:
    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)


def _extractor(params: RadiomicsParams) -> Any:
    """The (cached) pyradiomics extractor of these parameters."""
    ex = _EXTRACTORS.get(params.param_hash)
    if ex is not None:
        return ex
    _quiet_pyradiomics()
    _install_fast_bin_edges()
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    try:
        ex = RadiomicsFeatureExtractor(dict(params.pyradiomics))
    except Exception as err:  # pykwalify SchemaError and friends
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RadiomicsParamsError(f"pyradiomics rejects the parameters: {first}",
                                   params.source) from None
    _EXTRACTORS[params.param_hash] = ex
    return ex


_ORIGINAL_GET_BIN_EDGES: Callable[..., Any] | None = None


def _fast_bin_edges(parameterValues: Any, **kwargs: Any) -> Any:  # noqa: N803 (pyradiomics)
    """pyradiomics' getBinEdges with numpy min/max instead of Python's builtins.

    pyradiomics 3.0.1 calls the builtin ``min`` / ``max`` on the array of ROI voxels, a Python
    loop that costs ~25% of a whole-lung extraction. Same arithmetic otherwise (fixed bin width);
    a fixed bin count goes to the original. tests/radiomics/test_radiomics.py checks the two agree.
    """
    if kwargs.get("binCount") is not None or _ORIGINAL_GET_BIN_EDGES is None:
        return _ORIGINAL_GET_BIN_EDGES(parameterValues, **kwargs)  # type: ignore[misc]
    values = np.asarray(parameterValues)
    width = kwargs.get("binWidth", 25)
    minimum, maximum = values.min(), values.max()
    low = minimum - (minimum % width)
    edges = np.arange(low, maximum + 2 * width, width)
    if len(edges) == 1:  # flat region: one bin
        return [edges[0] - 0.5, edges[0] + 0.5]
    return edges


def _install_fast_bin_edges() -> None:
    global _ORIGINAL_GET_BIN_EDGES
    from radiomics import imageoperations

    if _ORIGINAL_GET_BIN_EDGES is None:
        _ORIGINAL_GET_BIN_EDGES = imageoperations.getBinEdges
    imageoperations.getBinEdges = _fast_bin_edges


@dataclass(frozen=True)
class RadiomicsFeatures:
    """Features of one scan: ``names[i]`` has value ``values[i]`` (NaN when pyradiomics gives
    none). Names are pyradiomics' (``original_glcm_Contrast``)."""

    names: tuple[str, ...]
    values: tuple[float, ...]
    param_hash: str
    pyradiomics_version: str
    seconds: float

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, self.values))


def antialias_factor(spacing_yx_mm: tuple[float, float], target_mm: float | None) -> int:
    """In-plane block size that brings the finer pixel size to at most ``target_mm``."""
    if target_mm is None:
        return 1
    return max(1, int(np.floor(target_mm / min(spacing_yx_mm) + 1e-6)))


def block_average(hu: np.ndarray, mask: np.ndarray, f: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(z, y//f, x//f) float32 block means of ``hu`` and the majority vote of ``mask``.

    Edge rows / columns that do not fill a block are dropped (they hold no lung in a chest CT
    field of view; a mask voxel there is lost, never moved).
    """
    if f == 1:
        return hu, mask
    z, y, x = hu.shape
    ny, nx = y // f, x // f
    h = hu[:, : ny * f, : nx * f].astype(np.float32).reshape(z, ny, f, nx, f)
    m = mask[:, : ny * f, : nx * f].reshape(z, ny, f, nx, f)
    return h.mean(axis=(2, 4)), m.sum(axis=(2, 4)) * 2 > f * f  # (z, ny, nx) each


def _check_volume(hu: np.ndarray, lung_mask: np.ndarray,
                  spacing_mm: Sequence[float]) -> None:
    if hu.ndim != 3:
        raise InputError(f"radiomics needs a 3-D (z, y, x) volume, got shape {hu.shape}")
    if lung_mask.shape != hu.shape:
        raise InputError(f"lung mask shape {lung_mask.shape} differs from volume {hu.shape}")
    if len(spacing_mm) != 3 or min(spacing_mm) <= 0:
        raise InputError(f"spacing_mm must be 3 positive numbers (z, y, x), got {spacing_mm}")
    if not np.any(lung_mask):
        raise EmptyMaskError("the lung mask is empty: no radiomics features can be computed")


def to_sitk_pair(hu: np.ndarray, mask: np.ndarray, spacing_mm: Sequence[float]) -> tuple[Any, Any]:
    """(image, mask) SimpleITK images of a (z, y, x) volume; spacing given as (z, y, x)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(hu))  # size (x, y, z)
    img.SetSpacing(tuple(float(s) for s in spacing_mm[::-1]))  # (x, y, z)
    msk = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    msk.CopyInformation(img)
    return img, msk


def preprocess(hu: np.ndarray, lung_mask: np.ndarray, spacing_mm: Sequence[float],
               params: RadiomicsParams
               ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """sscmort's steps before pyradiomics: in-plane block averaging, then resegmentation.

    Returns (hu, mask, spacing_mm), all (z, y, x), as pyradiomics receives them.
    """
    f = antialias_factor((spacing_mm[1], spacing_mm[2]), params.antialias_target_mm)
    hu_in, mask_in = block_average(hu, lung_mask.astype(bool, copy=False), f)
    spacing_in = (float(spacing_mm[0]), float(spacing_mm[1]) * f, float(spacing_mm[2]) * f)
    if params.resegment_hu is not None:
        low, high = params.resegment_hu
        mask_in = mask_in & (hu_in >= low) & (hu_in <= high)
    if not mask_in.any():
        raise EmptyMaskError("no lung voxel is left after block averaging and resegmentation "
                             f"to {params.resegment_hu} HU")
    return hu_in, mask_in, spacing_in


def extract_features(hu: np.ndarray, lung_mask: np.ndarray, spacing_mm: Sequence[float],
                     params: RadiomicsParams | None = None) -> RadiomicsFeatures:
    """pyradiomics features of the lung.

    hu: (z, y, x) HU; lung_mask: (z, y, x) bool; spacing_mm: (z, y, x). Raises EmptyMaskError
    for an empty mask, InputError for mismatched inputs, and InputError naming pyradiomics'
    reason when it refuses the region (e.g. too small after resegmentation).
    """
    params = params or load_params()
    _check_volume(hu, lung_mask, spacing_mm)
    t0 = time.perf_counter()
    hu_in, mask_in, spacing_in = preprocess(hu, lung_mask, spacing_mm, params)
    img, msk = to_sitk_pair(hu_in, mask_in, spacing_in)
    try:
        result = _extractor(params).execute(img, msk)
    except ValueError as err:  # pyradiomics' way of refusing an ROI
        raise InputError(f"pyradiomics refused the lung region: {str(err).splitlines()[0]}") \
            from None
    names = tuple(k for k in result if k.startswith(FEATURE_PREFIX))
    values = tuple(_as_float(result[k]) for k in names)
    return RadiomicsFeatures(names=names, values=values, param_hash=params.param_hash,
                             pyradiomics_version=pyradiomics_version(),
                             seconds=time.perf_counter() - t0)


def _as_float(value: Any) -> float:
    try:
        out = float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return float("nan")
    return out if np.isfinite(out) else float("nan")


@dataclass(frozen=True)
class RadiomicsOutcome:
    """What extracting one scan gave: features, or the reason it failed (one line)."""

    scan_id: str
    features: RadiomicsFeatures | None
    reason: str | None
    seconds: float


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def extract_outcome(scan_id: str, hu: np.ndarray, lung_mask: np.ndarray,
                    spacing_mm: Sequence[float],
                    params: RadiomicsParams | None = None) -> RadiomicsOutcome:
    """:func:`extract_features` that returns a failure instead of raising (batch workers).

    For a pass that already has the volume and its lung mask (e.g. the demo build, which
    segments every scan for QCT): hand the outcomes to :func:`write_outcomes`.
    """
    t0 = time.perf_counter()
    try:
        feats = extract_features(hu, lung_mask, spacing_mm, params)
    except Exception as err:  # noqa: BLE001 - a failed scan is recorded, the batch goes on
        return RadiomicsOutcome(scan_id, None, _reason(err), time.perf_counter() - t0)
    return RadiomicsOutcome(scan_id, feats, None, time.perf_counter() - t0)
