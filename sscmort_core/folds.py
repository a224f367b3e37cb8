"""Patient-grouped cross-validation folds: no patient's scans ever sit in two folds."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold


def grouped_folds(groups: np.ndarray, k: int, seed: int,
                  stratify: np.ndarray | None = None) -> np.ndarray:
    """Fold index 0..k-1 for every row, constant within a group (patient).

    ``stratify`` (optional, per row, e.g. "died within 5 years") balances events across folds
    with scikit-learn's StratifiedGroupKFold; otherwise groups are shuffled and dealt evenly.
    Deterministic from ``seed``.
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if k < 2:
        raise ValueError(f"need at least 2 folds, got {k}")
    if n_groups < k:
        raise ValueError(f"{n_groups} patients cannot fill {k} folds")
    folds = np.full(len(groups), -1, dtype=np.int64)
    if stratify is not None:
        y = np.asarray(stratify).astype(int)
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        for i, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            folds[test] = i
        return folds
    rng = np.random.default_rng(seed)
    uniq = np.unique(groups)
    order = rng.permutation(len(uniq))
    group_fold = {uniq[g]: i % k for i, g in enumerate(order)}
    return np.array([group_fold[g] for g in groups], dtype=np.int64)
