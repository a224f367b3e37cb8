"""DeLong's test for scans clustered in patients (Obuchowski, Biometrics 1997;53:567-578).

DeLong's structural components (``V10`` per positive scan, ``V01`` per negative scan,
:mod:`sscmort_core.evaluation.discrimination`) are summed per patient: ``V10_i`` over patient
i's m_i positive scans, ``V01_i`` over its n_i negatives. With M positives, N negatives, I
patients, I_10 of them with a positive and I_01 with a negative, and AUC ``theta``::

    S10 = I_10 / ((I_10 - 1) M) * sum_i (V10_i - m_i theta)^2
    S01 = I_01 / ((I_01 - 1) N) * sum_i (V01_i - n_i theta)^2
    S11 = I / (I - 1) * sum_i (V10_i - m_i theta) (V01_i - n_i theta)
    var(theta) = S10 / M + S01 / N + 2 S11 / (M N)

and the covariance of two AUCs on the same scans uses the cross products of their centred
sums (``S11`` symmetrised). With one scan per patient, S11 = 0 and S10, S01 are DeLong's
sample variances, so the test is DeLong's exactly. The estimand is per scan.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from sscmort_core.errors import MetricInputError
from sscmort_core.evaluation._checks import (
    check_finite,
    check_groups,
    check_scored_labels,
    require_both_classes,
    same_length,
)
from sscmort_core.evaluation.discrimination import _SE_ZERO, _delong_components
from sscmort_core.evaluation.results import ClusteredDeLongResult


# --- public ------------------------------------------------------------------------------------
def clustered_delong_test(y: ArrayLike, score_a: ArrayLike, score_b: ArrayLike,
                          groups: ArrayLike) -> ClusteredDeLongResult:
    """Test ``AUC(a) == AUC(b)`` on the same scans, with ``groups`` (n,) their patient ids.

    Two-sided p-value from the normal approximation. Needs at least two patients with a
    positive scan and two with a negative one (the cluster variances are undefined
    otherwise). Scores of shape (n,), higher = more likely positive.
    """
    y_arr, a_arr = check_scored_labels(y, score_a, "score_a")
    b_arr = check_finite(score_b, "score_b")
    same_length(y=y_arr, score_b=b_arr)
    n_pos, n_neg = require_both_classes(y_arr)
    codes, n_groups = check_groups(groups, len(y_arr))
    _require_two_clusters_per_class(y_arr, codes)
    comp = _delong_components(y_arr, np.vstack([a_arr, b_arr]))
    cov = obuchowski_covariance(comp.aucs, comp.v_pos, comp.v_neg, codes[y_arr == 1],
                                codes[y_arr == 0], n_groups)  # (2, 2)
    var = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
    se = float(np.sqrt(max(var, 0.0)))
    diff = float(comp.aucs[0] - comp.aucs[1])
    z, p_value = _z_and_p(diff, se)
    return ClusteredDeLongResult(
        auc_a=float(comp.aucs[0]), auc_b=float(comp.aucs[1]), auc_diff=diff,
        se_a=float(np.sqrt(max(cov[0, 0], 0.0))), se_b=float(np.sqrt(max(cov[1, 1], 0.0))),
        se=0.0 if se <= _SE_ZERO else se, z=z, p_value=p_value, n=len(y_arr),
        n_events=n_pos, n_groups=int(np.unique(codes).size))


def obuchowski_covariance(aucs: NDArray[np.float64], v_pos: NDArray[np.float64],
                          v_neg: NDArray[np.float64], pos_codes: NDArray[np.intp],
                          neg_codes: NDArray[np.intp], n_groups: int) -> NDArray[np.float64]:
    """Covariance matrix (k, k) of k AUCs from DeLong components ``v_pos`` (k, M) and
    ``v_neg`` (k, N), the patients of the positive / negative scans ``pos_codes`` (M,) and
    ``neg_codes`` (N,) (module docstring)."""
    m, n = v_pos.shape[1], v_neg.shape[1]
    m_i = np.bincount(pos_codes, minlength=n_groups).astype(np.float64)  # (I,)
    n_i = np.bincount(neg_codes, minlength=n_groups).astype(np.float64)
    v10 = np.stack([np.bincount(pos_codes, weights=v, minlength=n_groups) for v in v_pos])
    v01 = np.stack([np.bincount(neg_codes, weights=v, minlength=n_groups) for v in v_neg])
    d10 = v10 - aucs[:, None] * m_i  # (k, I): 0 for patients without a positive
    d01 = v01 - aucs[:, None] * n_i
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    i_all = int(((m_i + n_i) > 0).sum())
    s10 = i10 / ((i10 - 1) * m) * (d10 @ d10.T)
    s01 = i01 / ((i01 - 1) * n) * (d01 @ d01.T)
    s11 = i_all / (i_all - 1) * (d10 @ d01.T)  # [a, b] = sum_i d10_a,i d01_b,i
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


# --- checks and helpers --------------------------------------------------------------------------
def _require_two_clusters_per_class(y: NDArray[np.int8], codes: NDArray[np.intp]) -> None:
    with_pos = np.unique(codes[y == 1]).size
    with_neg = np.unique(codes[y == 0]).size
    if with_pos < 2 or with_neg < 2:
        raise MetricInputError(
            "the clustered DeLong test needs at least 2 patients with a positive scan and 2 "
            f"with a negative one, got {with_pos} and {with_neg}")


def _z_and_p(diff: float, se: float) -> tuple[float, float]:
    if se <= _SE_ZERO:
        if abs(diff) <= _SE_ZERO:
            return 0.0, 1.0
        return float(np.copysign(np.inf, diff)), 0.0
    z = diff / se
    return z, float(2.0 * stats.norm.sf(abs(z)))
