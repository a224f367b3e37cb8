"""Censoring-aware losses over the intervals 0-1, 1-3 and 3-5 years (../shared/DESIGN.md "Labels").

Targets come from the one label rule (:func:`sscmort_core.labels.label_scans`), so the loss and
the binary metrics agree to the day. For interval j = (h_{j-1}, h_j] (h_0 = 0):

* the scan is **at risk** in j when it is known alive at h_{j-1} (always for j = 0);
* it **died in** j when it is positive at h_j and was not positive at h_{j-1};
* it **survived** j when it is negative (known alive) at h_j;
* otherwise (censored inside j, or dead before j) interval j says nothing.

Discrete-time survival likelihood (default, ``"survival"``): with interval hazards
p_j = sigmoid(logit_j), a scan contributes sum over informative j of
``-[d_j log p_j + (1 - d_j) log(1 - p_j)]``: a censored scan contributes exactly the intervals
it survived. Per-horizon BCE (``"bce"``, the study's set-up): binary cross-entropy of the
cumulative risk r_j = 1 - prod_{i<=j}(1 - p_i) against the label at h_j, censored horizons
left out. Both are summed over intervals and averaged over the scans of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sscmort_core.deep.config import LOSS_NAMES
from sscmort_core.labels import HORIZONS_YEARS, label_scans


@dataclass(frozen=True)
class SurvivalTargets:
    """Per-scan, per-interval targets. All arrays (N, 3), column j = horizon HORIZONS_YEARS[j]."""

    died_in: np.ndarray  # float32 1 = died in interval j (meaningful where informative)
    informative: np.ndarray  # bool: interval j enters the survival likelihood
    positive: np.ndarray  # float32 1 = died within horizon j (meaningful where known)
    known: np.ndarray  # bool: horizon j's binary label is known (not censored)

    def __len__(self) -> int:
        return int(self.died_in.shape[0])

    def subset(self, idx: np.ndarray) -> "SurvivalTargets":
        return SurvivalTargets(self.died_in[idx], self.informative[idx], self.positive[idx],
                               self.known[idx])


def survival_targets(scan_dates: Sequence[object], death_dates: Sequence[object],
                     last_followup_dates: Sequence[object]) -> SurvivalTargets:
    """Targets from dates by the label rule (raises DataError on inconsistent dates)."""
    labs = [label_scans(scan_dates, death_dates, last_followup_dates, h)
            for h in HORIZONS_YEARS]
    positive = np.stack([lab.positive & lab.known for lab in labs], axis=1)  # (N, 3)
    known = np.stack([lab.known for lab in labs], axis=1)  # (N, 3)
    return targets_from_labels(positive, known)


def targets_from_labels(positive: np.ndarray, known: np.ndarray) -> SurvivalTargets:
    """Interval targets from per-horizon labels (positive, known), both (N, 3) bool."""
    positive = np.asarray(positive, dtype=bool) & np.asarray(known, dtype=bool)
    known = np.asarray(known, dtype=bool)
    n = positive.shape[0]
    alive_before = np.concatenate([np.ones((n, 1), bool), known[:, :-1] & ~positive[:, :-1]],
                                  axis=1)  # (N, 3) known alive at the start of interval j
    died_in = positive & alive_before
    survived = known & ~positive
    informative = alive_before & (died_in | survived)
    return SurvivalTargets(died_in=died_in.astype(np.float32), informative=informative,
                           positive=positive.astype(np.float32), known=known)


def discrete_survival_nll(logits: torch.Tensor, died_in: torch.Tensor,
                          informative: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of interval hazards; logits, died_in, informative: (B, J)."""
    terms = F.binary_cross_entropy_with_logits(logits.float(), died_in.float(),
                                               reduction="none")  # (B, J)
    return (terms * informative.float()).sum() / max(1, logits.shape[0])


def horizon_bce(logits: torch.Tensor, positive: torch.Tensor,
                known: torch.Tensor) -> torch.Tensor:
    """BCE of cumulative risks at each horizon against known labels; all (B, J)."""
    log_surv = torch.cumsum(F.logsigmoid(-logits.float()), dim=-1)  # log(1 - r_j), (B, J)
    log_risk = _log1mexp(log_surv)  # log(r_j)
    y = positive.float()
    terms = -(y * log_risk + (1.0 - y) * log_surv)  # (B, J)
    return (terms * known.float()).sum() / max(1, logits.shape[0])


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, stable at both ends (Maechler 2012)."""
    x = torch.clamp(x, max=-1e-7)
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def loss_fn(name: str) -> Callable[[torch.Tensor, "BatchTargets"], torch.Tensor]:
    """The loss called as ``fn(logits, batch_targets)``; name in :data:`LOSS_NAMES`."""
    if name == "survival":
        return lambda logits, t: discrete_survival_nll(logits, t.died_in, t.informative)
    if name == "bce":
        return lambda logits, t: horizon_bce(logits, t.positive, t.known)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSS_NAMES}")


@dataclass(frozen=True)
class BatchTargets:
    """:class:`SurvivalTargets` of one batch as tensors (B, 3) on the model's device."""

    died_in: torch.Tensor
    informative: torch.Tensor
    positive: torch.Tensor
    known: torch.Tensor

    @classmethod
    def of(cls, targets: SurvivalTargets, idx: np.ndarray,
           device: torch.device | str = "cpu") -> "BatchTargets":
        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a[idx]).to(device)

        return cls(t(targets.died_in), t(targets.informative), t(targets.positive),
                   t(targets.known))

    def take(self, idx: torch.Tensor) -> "BatchTargets":
        """Rows ``idx`` (a tensor on the same device): no host copy per training step."""
        return BatchTargets(self.died_in[idx], self.informative[idx], self.positive[idx],
                            self.known[idx])
