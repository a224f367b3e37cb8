"""Settings of the deep models that the CLI, the pages and the pipeline need without importing
torch: the training profiles (:class:`TrainConfig`), and the choices of backbone, loss, device
and precision.

May import: the ground floor only (no torch: ``sscmort --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sscmort_core.errors import ModelError

UI_BACKBONES: tuple[str, ...] = ("resnet18", "densenet121", "swin_tiny_patch4_window7_224")
LOSS_NAMES: tuple[str, ...] = ("survival", "bce")
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cuda", "mps", "cpu")
PRECISIONS: tuple[str, ...] = ("bf16", "fp32")
PROFILE_LABELS = {"quick": "quick: frozen backbone", "full": "full: fine-tuned end to end"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (stored in the model card)."""

    profile: str
    image_size: int
    n_slices: int
    epochs: int
    batch_size: int  # scans per step
    lr: float
    weight_decay: float
    frozen_backbone: bool
    patience: int  # epochs without a better validation loss before stopping
    augment: bool
    loss: str = "survival"  # or "bce" (per-horizon BCE, the study's set-up)
    val_fraction: float = 0.15  # of the training folds' patients, for early stopping
    attention_dim: int = 128
    dropout: float = 0.1
    pooling: str = "last"  # slice embedding: last stage, or every stage ("multiscale")
    warmup_epochs: int = 1
    backbone_lr_scale: float = 0.1  # fine-tuning: backbone lr = lr * this
    embed_batch: int = 256  # slices per forward pass when embedding or predicting
    grad_clip: float = 1.0
    precision: str = "bf16"  # on CUDA: bf16 autocast, or fp32 (CPU always runs fp32)
    # (lr, weight_decay, dropout) candidates for the head, chosen per outer fold by the inner
    # validation loss (nested); empty: lr / weight_decay / dropout above, fixed before looking
    head_grid: tuple[tuple[float, float, float], ...] = ()


# The model card's ``settings`` key for the head's lr / weight decay / dropout (pages show it)
HEAD_SETTING = "head lr / weight decay / dropout"


def head_candidates(cfg: TrainConfig) -> list[TrainConfig]:
    """The configs one fold trains and chooses among: one per :attr:`TrainConfig.head_grid`
    entry (its lr, weight decay and dropout), or ``cfg`` itself when the grid is empty."""
    if not cfg.head_grid:
        return [cfg]
    return [dataclasses.replace(cfg, lr=float(lr), weight_decay=float(wd), dropout=float(d))
            for lr, wd, d in cfg.head_grid]


def describe_head(lr: float, weight_decay: float, dropout: float) -> str:
    """E.g. "lr 5e-04, weight decay 0.1, dropout 0.5"."""
    return f"lr {lr:.0e}, weight decay {weight_decay:g}, dropout {dropout:g}"


# The quick profile's head grid, fixed before this selection looked at any result: the
# earlier hand-picked setting, a lighter one (faster, less regularised) and a stronger one.
QUICK_HEAD_GRID: tuple[tuple[float, float, float], ...] = (
    (5e-4, 0.1, 0.5), (2e-3, 0.01, 0.2), (2e-4, 0.3, 0.5))

PROFILES: dict[str, TrainConfig] = {
    # quick: head-only training on frozen multiscale embeddings. Its lr / weight decay /
    # dropout are chosen per outer fold among QUICK_HEAD_GRID by the inner validation loss
    # (nested, train.py); lr, weight_decay and dropout here are the grid's first entry.
    "quick": TrainConfig(profile="quick", image_size=64, n_slices=8, epochs=30, batch_size=64,
                         lr=5e-4, weight_decay=0.1, frozen_backbone=True, patience=8,
                         augment=False, dropout=0.5, warmup_epochs=2, pooling="multiscale",
                         head_grid=QUICK_HEAD_GRID),
    # full: lr / weight decay / dropout fixed before looking (common AdamW fine-tuning values,
    # never compared on any performance); 16 scans (256 slices) a step, fixed from throughput:
    # on an H100 that trains 1.8-2.3x more slices/s than 4 scans a step (launch-bound), with
    # 16 GB peak for densenet121 in bf16 (BENCHMARKS.md)
    "full": TrainConfig(profile="full", image_size=224, n_slices=16, epochs=40, batch_size=16,
                        lr=3e-4, weight_decay=0.05, frozen_backbone=False, patience=6,
                        augment=True, dropout=0.2, warmup_epochs=2, embed_batch=64),
}


def quick_input_shape() -> tuple[int, int]:
    """(K slices, S pixels) of the quick profile's inputs (build_demo can precompute them)."""
    return PROFILES["quick"].n_slices, PROFILES["quick"].image_size


def profile_config(profile: str, **overrides: Any) -> TrainConfig:
    """The named profile, with fields replaced by ``overrides`` (tests use tiny sizes)."""
    if profile not in PROFILES:
        raise ModelError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    try:
        cfg = dataclasses.replace(PROFILES[profile], **overrides)
    except TypeError as err:
        raise ModelError(f"bad training setting: {err}") from None
    for name in ("epochs", "batch_size", "n_slices", "image_size"):
        if int(getattr(cfg, name)) < 1:
            raise ModelError(f"bad training setting: {name} must be at least 1, "
                             f"got {getattr(cfg, name)}")
    for cand in cfg.head_grid:
        if len(cand) != 3 or not (cand[0] > 0 and cand[1] >= 0 and 0 <= cand[2] < 1):
            raise ModelError(f"bad training setting: head_grid entries are (lr > 0, "
                             f"weight_decay >= 0, 0 <= dropout < 1), got {cand}")
    if cfg.precision not in PRECISIONS:
        raise ModelError(f"unknown precision {cfg.precision!r}; choose one of {PRECISIONS}")
    return cfg
