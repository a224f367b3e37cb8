import numpy as np
import pytest

from sscmort_core.folds import grouped_folds


@pytest.mark.parametrize("stratify", [False, True])
def test_no_patient_in_two_folds_and_every_fold_used(stratify):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(120), rng.integers(1, 6, 120))
    y = rng.random(len(groups)) < 0.2 if stratify else None
    folds = grouped_folds(groups, 5, seed=1, stratify=y)
    for g in np.unique(groups):
        assert len(set(folds[groups == g])) == 1
    assert set(folds) == set(range(5))
    assert (grouped_folds(groups, 5, seed=1, stratify=y) == folds).all()


def test_too_few_patients():
    with pytest.raises(ValueError, match="cannot fill"):
        grouped_folds(np.array([1, 1, 2]), 3, seed=0)
