"""Nested selection of the quick profile's head settings (issue 16, "validation without
optimism"): each outer fold chooses its lr / weight decay / dropout among the head grid by the
validation loss of an inner patient-grouped split of its own training patients, so the
held-out fold's patients never enter the split and their labels never change the choice.

Runs the real fold routine (:func:`sscmort_core.deep.train._run_fold`) on a small synthetic
cohort of precomputed embeddings (no store, no backbone): about a second on one CPU core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sscmort_core.deep import train as train_mod
from sscmort_core.deep.config import PROFILES, QUICK_HEAD_GRID, head_candidates, profile_config
from sscmort_core.deep.fit import RunContext
from sscmort_core.deep.losses import targets_from_labels
from sscmort_core.errors import ModelError
from sscmort_core.folds import grouped_folds
from sscmort_core.util.progress import no_progress


@pytest.fixture(autouse=True)
def one_thread():
    """Head training on one thread, as train_backbone runs it on a CPU."""
    with train_mod._torch_threads(1):
        yield


GRID = ((5e-4, 0.1, 0.5), (5e-3, 0.0, 0.0), (1e-4, 0.3, 0.5))
FOLDS = 3


def _cohort(seed: int = 0, n_patients: int = 45) -> tuple[train_mod._Cohort, np.ndarray]:
    """Patients with 1-3 scans; embeddings (N, 3, 16) whose first feature carries the risk;
    per-horizon labels drawn from it (about a third censored at 5 years)."""
    rng = np.random.default_rng(seed)
    patients = np.repeat([f"P{i:03d}" for i in range(n_patients)],
                         rng.integers(1, 4, n_patients))
    n = len(patients)
    frailty = dict(zip(np.unique(patients), rng.normal(0, 1, n_patients)))
    score = np.array([frailty[p] for p in patients]) + rng.normal(0, 0.3, n)
    emb = rng.normal(0, 1, (n, 3, 16)).astype(np.float32)
    emb[:, :, 0] += score[:, None].astype(np.float32)
    p_death = 1 / (1 + np.exp(-(score[:, None] + np.array([-2.0, -1.0, -0.5]))))  # (N, 3)
    death = rng.random(n)[:, None] < p_death
    positive = np.maximum.accumulate(death, axis=1)
    censor_at = rng.integers(1, 5, n)  # 1: all known ... 4: none censored
    known = positive | (np.arange(3)[None, :] < censor_at[:, None])
    folds = grouped_folds(patients, FOLDS, seed, stratify=positive[:, -1] & known[:, -1])
    cohort = train_mod._Cohort(inputs=None, targets=targets_from_labels(positive, known),
                               patients=patients, folds=folds, data_hash="test",
                               synthetic=True, label_fingerprint="test")
    return cohort, emb


def _with_labels(cohort: train_mod._Cohort, rows: np.ndarray, seed: int) -> train_mod._Cohort:
    """The same cohort (same folds) with the labels of ``rows`` replaced by random ones."""
    rng = np.random.default_rng(seed)
    t = cohort.targets
    positive, known = t.positive.astype(bool).copy(), t.known.copy()
    new = np.maximum.accumulate(rng.random((len(rows), 3)) < 0.5, axis=1)
    positive[rows], known[rows] = new, True
    return train_mod._Cohort(cohort.inputs, targets_from_labels(positive, known),
                             cohort.patients, cohort.folds, cohort.data_hash, cohort.synthetic,
                             cohort.label_fingerprint)


def _cfg(**over):
    return profile_config("quick", **{"epochs": 4, "batch_size": 16, "attention_dim": 8,
                                      "patience": 10, "head_grid": GRID, **over})


def _fold(tmp_path, name: str, cohort, emb, fold: int = 0, cfg=None) -> train_mod._FoldResult:
    run_dir = tmp_path / name
    run_dir.mkdir()
    ctx = RunContext("resnet18", cfg or _cfg(), torch.device("cpu"), 0, FOLDS, run_dir,
                     no_progress, None)
    return train_mod._run_fold(ctx, cohort, fold, emb=emb)


def test_the_held_out_fold_is_never_in_the_inner_split():
    cohort, _ = _cohort()
    cfg = _cfg()
    for fold in range(FOLDS):
        train, val, test = train_mod._fold_split(cohort, fold, cfg.val_fraction, seed=0)
        assert len(train) and len(val) and len(test)
        assert np.array_equal(np.sort(np.concatenate([train, val, test])),
                              np.arange(len(cohort.patients)))  # each scan in one part
        held_out = set(cohort.patients[cohort.folds == fold])
        assert set(cohort.patients[test]) == held_out
        assert not held_out & set(cohort.patients[val])  # selection split: training patients
        assert not held_out & set(cohort.patients[train])
        assert not set(cohort.patients[train]) & set(cohort.patients[val])  # grouped


def test_held_out_labels_do_not_change_the_chosen_head(tmp_path):
    cohort, emb = _cohort()
    test_rows = np.flatnonzero(cohort.folds == 0)
    ref = _fold(tmp_path, "ref", cohort, emb)
    # the candidates really differ on the inner validation loss, and the lowest one is kept
    assert len(ref.val_losses) == len(GRID) and len(set(ref.val_losses)) == len(GRID)
    assert ref.chosen == int(np.argmin(ref.val_losses)) and ref.n_val_patients > 0
    relabelled = _fold(tmp_path, "relabelled", _with_labels(cohort, test_rows, seed=1), emb)
    assert relabelled.chosen == ref.chosen
    assert relabelled.val_losses == ref.val_losses  # exactly: those labels are never read
    for k, v in ref.state.items():
        assert torch.equal(v, relabelled.state[k]), k
    np.testing.assert_array_equal(relabelled.test_risk, ref.test_risk)
    # the check has teeth: the training patients' labels do move the validation losses
    train_rows = np.flatnonzero((cohort.folds != 0))[:40]
    moved = _fold(tmp_path, "moved", _with_labels(cohort, train_rows, seed=1), emb)
    assert moved.val_losses != ref.val_losses


def test_an_empty_grid_trains_the_fixed_setting_once(tmp_path):
    cohort, emb = _cohort()
    fixed = _fold(tmp_path, "fixed", cohort, emb, cfg=_cfg(head_grid=()))
    first = _fold(tmp_path, "first", cohort, emb, cfg=_cfg(head_grid=GRID[:1]))
    assert fixed.chosen == 0 and len(fixed.val_losses) == 1
    # a grid of one is the same run as the fixed setting it holds
    assert fixed.val_losses == first.val_losses
    np.testing.assert_array_equal(fixed.test_risk, first.test_risk)


def test_choose_candidate_and_the_grid_in_the_run_key():
    assert train_mod.choose_candidate([0.5, 0.4, 0.4], True) == 1  # lowest; first of ties
    assert train_mod.choose_candidate([0.5, 0.4], False) == 0  # no inner split: the first
    assert train_mod.choose_candidate([float("nan"), 0.6, 0.5], True) == 2
    quick = PROFILES["quick"]
    assert quick.head_grid == QUICK_HEAD_GRID and len(QUICK_HEAD_GRID) == 3
    assert (quick.lr, quick.weight_decay, quick.dropout) == QUICK_HEAD_GRID[0]
    assert PROFILES["full"].head_grid == ()  # fixed before looking
    assert [(c.lr, c.weight_decay, c.dropout) for c in head_candidates(quick)] == \
        list(QUICK_HEAD_GRID)
    key = train_mod._run_key("resnet18", quick, 0, 5, "h", "random init")
    other = profile_config("quick", head_grid=QUICK_HEAD_GRID[:2])
    assert train_mod._run_key("resnet18", other, 0, 5, "h", "random init") != key
    with pytest.raises(ModelError, match="head_grid"):
        profile_config("quick", head_grid=((1e-3, 0.1, 1.5),))
