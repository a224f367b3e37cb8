"""Input checks shared by every metric (check first, then compute).

Each check returns clean NumPy arrays (labels as ``int8``, scores as ``float64``) or raises a
named :class:`~sscmort_core.errors.MetricInputError` subclass whose message says what is wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from sscmort_core.errors import (
    InputShapeError,
    MetricInputError,
    NoNegativesError,
    NonFiniteError,
    NoPositivesError,
    NotBinaryError,
    ProbabilityRangeError,
)


def as_1d(values: ArrayLike, name: str) -> NDArray[Any]:
    """``values`` as a 1-D array; anything else raises :class:`InputShapeError`."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InputShapeError(f"{name} must be a 1-D array, got shape {arr.shape}")
    return arr


def same_length(**arrays: NDArray[Any]) -> int:
    """The common length of ``arrays``; differing lengths raise :class:`InputShapeError`."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise InputShapeError(f"inputs differ in length: {listed}")
    return next(iter(lengths.values()))


def check_binary(y: ArrayLike, name: str = "y") -> NDArray[np.int8]:
    """Labels as an ``int8`` array of 0 and 1 (bool, int or float 0.0/1.0 accepted)."""
    arr = as_1d(y, name)
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not np.issubdtype(arr.dtype, np.number):
        raise NotBinaryError(f"{name} must be numeric 0/1 or boolean, got dtype {arr.dtype}")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        examples = np.unique(arr[bad])[:3].tolist()
        raise NotBinaryError(
            f"{name} must hold only 0 and 1; found {int(bad.sum())} other value(s), e.g. {examples}"
        )
    return arr.astype(np.int8)


def check_finite(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Real values as ``float64``; NaN or infinity raises :class:`NonFiniteError`."""
    arr = as_1d(values, name)
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise NonFiniteError(f"{name} must be real numbers, got dtype {arr.dtype}")
    out = arr.astype(np.float64)
    bad = ~np.isfinite(out)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise NonFiniteError(
            f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf), first at index {first}"
        )
    return out


def check_probability(prob: ArrayLike, name: str = "prob") -> NDArray[np.float64]:
    """Finite values in [0, 1]; others raise :class:`ProbabilityRangeError`."""
    out = check_finite(prob, name)
    bad = (out < 0.0) | (out > 1.0)
    if bad.any():
        raise ProbabilityRangeError(
            f"{name} must be probabilities in [0, 1]; {int(bad.sum())} value(s) outside, "
            f"range [{out.min():.4g}, {out.max():.4g}]"
        )
    return out


def require_both_classes(y: NDArray[np.int8], context: str = "") -> tuple[int, int]:
    """``(n_positive, n_negative)``; raises if either is zero.

    ``context`` (e.g. ``" at horizon 5"``) is appended to the message so the reader learns
    where the class went missing.
    """
    n_pos = int(y.sum())
    n_neg = int(len(y) - n_pos)
    if n_pos == 0:
        raise NoPositivesError(
            f"no positives{context} among {len(y)} sample(s): "
            "a discrimination metric needs at least one positive and one negative"
        )
    if n_neg == 0:
        raise NoNegativesError(
            f"no negatives{context} among {len(y)} sample(s): "
            "a discrimination metric needs at least one positive and one negative"
        )
    return n_pos, n_neg


def check_scored_labels(y: ArrayLike, score: ArrayLike, score_name: str = "score") -> tuple[
    NDArray[np.int8], NDArray[np.float64]
]:
    """The common check of a binary-outcome metric: 1-D, same length, 0/1 labels, finite scores."""
    y_arr = check_binary(y)
    s_arr = check_finite(score, score_name)
    same_length(y=y_arr, **{score_name: s_arr})
    return y_arr, s_arr


def check_groups(groups: ArrayLike, n: int) -> tuple[NDArray[np.intp], int]:
    """Patient ids as codes ``0 .. n_groups - 1`` (any hashable, sortable ids) and ``n_groups``."""
    arr = as_1d(groups, "groups")
    same_length(groups=arr, y=np.empty(n))
    missing = pd.isna(arr)
    if missing.any():
        raise MetricInputError(
            f"groups has {int(missing.sum())} missing patient id(s): every scan needs its patient"
        )
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError as err:  # mixed types that do not sort
        raise MetricInputError(f"groups must be ids of one sortable type: {err}") from err
    codes = codes.reshape(-1).astype(np.intp)
    return codes, int(codes.max()) + 1 if n else 0


def check_level(level: float) -> float:
    """A confidence level strictly between 0 and 1."""
    if not 0.0 < float(level) < 1.0:
        raise MetricInputError(f"level must lie strictly between 0 and 1, got {level}")
    return float(level)


def check_positive_int(value: int, name: str) -> int:
    """A count of at least 1 (``n_boot``, ``n_bins``)."""
    if int(value) != value or int(value) < 1:
        raise MetricInputError(f"{name} must be a whole number >= 1, got {value}")
    return int(value)
