"""Paired comparison of two models on the same scans: DeLong, the patient-level bootstrap and
the clustered DeLong test (Obuchowski 1997), whose p-value is the one to show.

:func:`compare_models` takes the labels of *all* scans at a horizon: ``y`` is 1 (positive),
0 (negative) or NaN (censored at this horizon, ../shared/DESIGN.md "Labels"); censored scans
are left out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sscmort_core.errors import MetricInputError, NotBinaryError
from sscmort_core.evaluation._checks import as_1d, check_finite, same_length
from sscmort_core.evaluation.bootstrap import Seed, paired_bootstrap_auc_difference
from sscmort_core.evaluation.clustered import clustered_delong_test
from sscmort_core.evaluation.discrimination import delong_test
from sscmort_core.evaluation.results import PairedComparison


def compare_models(
    y: ArrayLike,
    score_a: ArrayLike,
    score_b: ArrayLike,
    groups: ArrayLike,
    n_boot: int = 2000,
    seed: Seed = 0,
    level: float = 0.95,
) -> PairedComparison:
    """DeLong test, patient-level paired bootstrap and clustered DeLong test of
    ``AUC(a) - AUC(b)`` on the same scans (``clustered`` is None when fewer than two patients
    hold a positive, or a negative, scan).

    ``y``: 1 / 0 / NaN (censored, left out); scores of shape (n,).
    """
    labelled, y_bin = _labelled(y)
    a_arr = check_finite(score_a, "score_a")
    b_arr = check_finite(score_b, "score_b")
    g_arr = as_1d(groups, "groups")
    same_length(y=labelled, score_a=a_arr, score_b=b_arr, groups=g_arr)
    a_lab, b_lab, g_lab = a_arr[labelled], b_arr[labelled], g_arr[labelled]
    delong = delong_test(y_bin, a_lab, b_lab)
    bootstrap = paired_bootstrap_auc_difference(
        y_bin, a_lab, b_lab, g_lab, n_boot=n_boot, seed=seed, level=level
    )
    try:
        clustered = clustered_delong_test(y_bin, a_lab, b_lab, g_lab)
    except MetricInputError:  # too few patients per class: the bootstrap p stands
        clustered = None
    return PairedComparison(delong=delong, bootstrap=bootstrap, clustered=clustered)


# --- checks ------------------------------------------------------------------------------------
def _labelled(y: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.int8]]:
    """(mask of labelled scans over all n, 0/1 labels of the labelled ones)."""
    arr = as_1d(y, "y")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise NotBinaryError(f"y must be numeric 0/1 (NaN = censored), got dtype {arr.dtype}")
    values = arr.astype(np.float64)
    labelled = ~np.isnan(values)
    bad = labelled & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        examples = np.unique(values[bad])[:3].tolist()
        raise NotBinaryError(f"y must hold 0, 1 or NaN (censored); found e.g. {examples}")
    return labelled, values[labelled].astype(np.int8)
