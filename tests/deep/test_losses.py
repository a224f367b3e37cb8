"""Losses on hand-computed cases; targets from the label rule."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import torch

from sscmort_core.deep.losses import (
    BatchTargets,
    discrete_survival_nll,
    horizon_bce,
    loss_fn,
    survival_targets,
    targets_from_labels,
)

LN2 = math.log(2.0)
D = dt.date


def _targets():
    """Five scans on 2010-01-01, in the order used by every test below:

    0 died 2010-06-01 (interval 0-1); 1 died 2012-06-01 (1-3); 2 censored 2012-01-01
    (alive at 1 y, unknown at 3 y); 3 died 2017-01-01 (after 5 y: survives all);
    4 censored 2010-06-01 (nothing known at any horizon).
    """
    scan = [D(2010, 1, 1)] * 5
    death = [D(2010, 6, 1), D(2012, 6, 1), None, D(2017, 1, 1), None]
    fu = [None, None, D(2012, 1, 1), None, D(2010, 6, 1)]
    return survival_targets(scan, death, fu)


def test_targets_follow_the_label_rule():
    t = _targets()
    np.testing.assert_array_equal(t.died_in, [[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0],
                                              [0, 0, 0]])
    np.testing.assert_array_equal(t.informative, [[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 1],
                                                  [0, 0, 0]])
    np.testing.assert_array_equal(t.positive, [[1, 1, 1], [0, 1, 1], [0, 0, 0], [0, 0, 0],
                                               [0, 0, 0]])
    np.testing.assert_array_equal(t.known, [[1, 1, 1], [1, 1, 1], [1, 0, 0], [1, 1, 1],
                                            [0, 0, 0]])


def test_death_on_the_anniversary_counts_in_the_earlier_interval():
    # label rule: death in (t, t + 1 y] is positive at 1 y, even across a leap day (366 days)
    t = survival_targets([D(2011, 3, 1)], [D(2012, 3, 1)], [None])
    np.testing.assert_array_equal(t.died_in, [[1, 0, 0]])


def _per_scan(fn, logits, t):
    return [float(fn(logits[i:i + 1], *[torch.as_tensor(a[i:i + 1]) for a in t]))
            for i in range(len(logits))]


def test_survival_nll_hand_cases():
    t = _targets()
    logits = torch.zeros(5, 3)  # every hazard 0.5, so each informative interval costs ln 2
    per = _per_scan(discrete_survival_nll, logits, (t.died_in, t.informative))
    # informative interval counts 1, 2, 1, 3, 0 -> ln2 times that; a censored scan (2)
    # contributes only the interval it survived, scan 4 nothing
    assert per == pytest.approx([LN2, 2 * LN2, LN2, 3 * LN2, 0.0])
    total = discrete_survival_nll(logits, torch.as_tensor(t.died_in),
                                  torch.as_tensor(t.informative))
    assert float(total) == pytest.approx(7 * LN2 / 5)  # summed over intervals, mean over scans


def test_survival_nll_hazard_golden():
    # hazards (0.1, 0.2, 0.5); died in interval 1 -> -[log 0.9 + log 0.2]
    h = torch.tensor([[0.1, 0.2, 0.5]])
    loss = discrete_survival_nll(torch.log(h / (1 - h)), torch.tensor([[0.0, 1.0, 0.0]]),
                                 torch.tensor([[True, True, False]]))
    assert float(loss) == pytest.approx(-(math.log(0.9) + math.log(0.2)), rel=1e-6)


def test_horizon_bce_hand_cases():
    t = _targets()
    logits = torch.zeros(5, 3)  # risks 0.5, 0.75, 0.875 at 1, 3, 5 years
    per = _per_scan(horizon_bce, logits, (t.positive, t.known))
    r = (0.5, 0.75, 0.875)
    expect = [
        -(math.log(r[0]) + math.log(r[1]) + math.log(r[2])),  # positive at all three
        -(math.log(1 - r[0]) + math.log(r[1]) + math.log(r[2])),  # negative at 1 y
        -math.log(1 - r[0]),  # known only at 1 y
        -(math.log(1 - r[0]) + math.log(1 - r[1]) + math.log(1 - r[2])),  # negative at all
        0.0,  # censored at every horizon
    ]
    assert per == pytest.approx(expect, rel=1e-6)


def test_horizon_bce_stable_at_extremes():
    logits = torch.tensor([[-40.0, -40.0, -40.0], [40.0, 40.0, 40.0]], requires_grad=True)
    y = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    loss = horizon_bce(logits, y, torch.ones(2, 3, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_targets_from_labels_after_death_intervals_are_skipped():
    t = targets_from_labels(np.array([[True, True, True]]), np.array([[True, True, True]]))
    np.testing.assert_array_equal(t.informative, [[True, False, False]])


def test_loss_fn_dispatch():
    t = _targets()
    bt = BatchTargets.of(t, np.arange(5))
    logits = torch.zeros(5, 3)
    assert float(loss_fn("survival")(logits, bt)) == pytest.approx(7 * LN2 / 5)
    assert float(loss_fn("bce")(logits, bt)) > 0
    with pytest.raises(ValueError):
        loss_fn("hinge")
    # rows taken on the device equal rows gathered from the numpy targets
    idx = np.array([4, 0, 2])
    part, ref = bt.take(torch.as_tensor(idx)), BatchTargets.of(t, idx)
    for name in ("died_in", "informative", "positive", "known"):
        assert torch.equal(getattr(part, name), getattr(ref, name))
