"""Discrimination of a binary outcome: ROC curve, AUC (Mann-Whitney) and the DeLong test.

The AUC is the Mann-Whitney probability that a random positive scores above a random negative,
with ties counted 1/2; it equals the trapezoidal area under :func:`roc_curve_points`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.stats import rankdata

from sscmort_core.errors import MetricInputError, SingleClassError
from sscmort_core.evaluation._checks import (
    check_finite,
    check_scored_labels,
    require_both_classes,
    same_length,
)
from sscmort_core.evaluation.results import DeLongResult, RocCurve

# A standard error below this is treated as exactly zero (floating-point noise of
# var_a + var_b - 2 cov_ab on identical or near-identical scores).
_SE_ZERO = 1e-12


# --- public ------------------------------------------------------------------------------------
def roc_curve_points(y: ArrayLike, score: ArrayLike) -> RocCurve:
    """Empirical ROC curve of ``score`` (higher = more likely positive) against 0/1 labels ``y``.

    Matches ``sklearn.metrics.roc_curve(y, score, drop_intermediate=False)``.
    Raises :class:`~sscmort_core.errors.SingleClassError` unless both classes are present.
    """
    y_arr, s_arr = check_scored_labels(y, score)
    n_pos, n_neg = require_both_classes(y_arr)
    return _roc_points(y_arr, s_arr, n_pos, n_neg)


def auc(y: ArrayLike, score: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2."""
    y_arr, s_arr = check_scored_labels(y, score)
    n_pos, n_neg = require_both_classes(y_arr)
    return _auc_from_ranks(y_arr, s_arr, n_pos, n_neg)


def auc_or_none(y: ArrayLike, score: ArrayLike) -> float | None:
    """:func:`auc`, or None where it is not defined (``y`` lacks positives or negatives)."""
    try:
        return auc(y, score)
    except SingleClassError:
        return None


def delong_test(y: ArrayLike, score_a: ArrayLike, score_b: ArrayLike) -> DeLongResult:
    """DeLong, DeLong & Clarke-Pearson (1988) test of ``AUC(a) == AUC(b)`` on the same scans.

    Uses the fast midrank algorithm of Sun & Xu (2014). Two-sided p-value from the normal
    approximation. Needs at least two positives and two negatives (the variance of the
    structural components is undefined otherwise). Scans are treated as independent.
    """
    y_arr, a_arr = check_scored_labels(y, score_a, "score_a")
    b_arr = check_finite(score_b, "score_b")
    same_length(y=y_arr, score_b=b_arr)
    n_pos, n_neg = require_both_classes(y_arr)
    if n_pos < 2 or n_neg < 2:
        raise MetricInputError(
            f"the DeLong test needs at least 2 positives and 2 negatives, got {n_pos} and {n_neg}"
        )
    return _delong_from_components(_delong_components(y_arr, np.vstack([a_arr, b_arr])))


def auc_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(p,) AUC of every column of x (n, p) as a score for y (n,) 0/1 (Mann-Whitney with
    average ranks for ties, as roc_auc_score); NaN rows are left out per column; NaN where
    a column lacks one of the classes."""
    y = np.asarray(y).astype(bool)
    out = np.full(x.shape[1], np.nan)
    finite = np.isfinite(x)
    full = finite.all(axis=0)
    groups = [(np.flatnonzero(full), np.ones(len(y), dtype=bool))]
    groups += [(np.array([j]), finite[:, j]) for j in np.flatnonzero(~full)]
    for cols, rows in groups:
        if len(cols) == 0:
            continue
        yy = y[rows]
        n1, n0 = int(yy.sum()), int((~yy).sum())
        if n1 == 0 or n0 == 0:
            continue
        ranks = rankdata(x[np.ix_(rows, cols)], axis=0)  # (m, c) average ranks
        out[cols] = (ranks[yy].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return out


# --- computation ---------------------------------------------------------------------------------
def _roc_points(
    y: NDArray[np.int8], score: NDArray[np.float64], n_pos: int, n_neg: int
) -> RocCurve:
    order = np.argsort(-score, kind="mergesort")
    s_desc = score[order]
    # last index of each run of equal scores, in decreasing score order
    ends = np.r_[np.flatnonzero(np.diff(s_desc)), len(s_desc) - 1]
    tps = np.cumsum(y[order], dtype=np.int64)[ends]
    fps = ends + 1 - tps
    return RocCurve(
        fpr=np.r_[0.0, fps / n_neg],
        tpr=np.r_[0.0, tps / n_pos],
        thresholds=np.r_[np.inf, s_desc[ends]],
    )


def _auc_from_ranks(
    y: NDArray[np.int8], score: NDArray[np.float64], n_pos: int, n_neg: int
) -> float:
    """Mann-Whitney U / (n_pos * n_neg) from midranks (ties share the mean rank)."""
    ranks = stats.rankdata(score)
    u_stat = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_stat / (n_pos * n_neg))


@dataclass(frozen=True, eq=False)
class _DeLongComponents:
    """Structural components of k AUCs on the same m positives and n negatives.

    ``v_pos[r, i]`` = mean over negatives j of psi(x_ri, y_rj) (DeLong's V10), shape (k, m);
    ``v_neg[r, j]`` = mean over positives i of psi(x_ri, y_rj) (DeLong's V01), shape (k, n);
    psi(x, y) = 1 if x > y, 1/2 if x == y, else 0. ``aucs`` has shape (k,).
    """

    aucs: NDArray[np.float64]
    v_pos: NDArray[np.float64]
    v_neg: NDArray[np.float64]


def _delong_components(y: NDArray[np.int8], scores: NDArray[np.float64]) -> _DeLongComponents:
    """Sun & Xu (2014) midrank algorithm; ``scores`` has shape (k, n_samples)."""
    is_pos = y == 1
    pos = scores[:, is_pos]  # (k, m)
    neg = scores[:, ~is_pos]  # (k, n)
    m, n = pos.shape[1], neg.shape[1]
    rank_pos = stats.rankdata(pos, axis=1)  # midranks within positives
    rank_neg = stats.rankdata(neg, axis=1)  # midranks within negatives
    rank_all = stats.rankdata(np.hstack([pos, neg]), axis=1)  # (k, m + n)
    v_pos = (rank_all[:, :m] - rank_pos) / n
    v_neg = 1.0 - (rank_all[:, m:] - rank_neg) / m
    aucs = v_pos.mean(axis=1)
    return _DeLongComponents(aucs=aucs, v_pos=v_pos, v_neg=v_neg)


def _delong_from_components(comp: _DeLongComponents) -> DeLongResult:
    """Test AUC_0 == AUC_1 from the components of two scores (k = 2)."""
    m, n = comp.v_pos.shape[1], comp.v_neg.shape[1]
    cov = np.cov(comp.v_pos) / m + np.cov(comp.v_neg) / n  # (2, 2)
    var = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
    se = float(np.sqrt(max(var, 0.0)))
    diff = float(comp.aucs[0] - comp.aucs[1])
    if se <= _SE_ZERO:
        se = 0.0
        if abs(diff) <= _SE_ZERO:
            z, p_value = 0.0, 1.0
        else:
            z, p_value = float(np.copysign(np.inf, diff)), 0.0
    else:
        z = diff / se
        p_value = float(2.0 * stats.norm.sf(abs(z)))
    return DeLongResult(
        auc_a=float(comp.aucs[0]),
        auc_b=float(comp.aucs[1]),
        auc_diff=diff,
        se=se,
        z=z,
        p_value=p_value,
        n=m + n,
        n_events=m,
    )
