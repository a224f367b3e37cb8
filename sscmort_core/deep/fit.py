"""One fold's epoch loop: AdamW with warm-up and cosine decay, early stopping, checkpoints.

Used by :mod:`sscmort_core.deep.train` for both profiles. A fold trains either the head on
precomputed slice embeddings (quick: frozen backbone, :class:`EmbeddingBatches`) or the whole
network on images (full: fine-tuned, :class:`ImageBatches`, with :func:`augment_batch`).
Every epoch is seeded from (seed, fold, epoch), so a run resumed from its last checkpoint ends
exactly where an uninterrupted one would; on CUDA under bf16 autocast with channels_last.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sscmort_core.deep.config import PRECISIONS, TrainConfig
from sscmort_core.deep.losses import BatchTargets, SurvivalTargets, loss_fn
from sscmort_core.deep.nets import cumulative_risk
from sscmort_core.errors import MetricInputError
from sscmort_core.evaluation import auc
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.util.progress import ProgressFn


@dataclass(frozen=True)
class EpochLog:
    """One finished epoch of one fold (what the progress bar and the job row show)."""

    backbone: str
    fold: int  # 0-based
    folds: int
    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float | None
    val_auc: float | None  # mean over horizons with both classes in the validation split
    seconds: float
    candidate: int = 0  # 0-based entry of the head grid this epoch trained (train.py)
    candidates: int = 1

    @property
    def stage(self) -> str:
        """The fold's progress stage, e.g. "resnet18 fold 2/5 head 1/3"."""
        return fold_stage(self.backbone, self.fold, self.folds, self.candidate,
                          self.candidates)

    def postfix(self) -> str:
        auc = "n/a" if self.val_auc is None else f"{self.val_auc:.3f}"
        vl = "n/a" if self.val_loss is None else f"{self.val_loss:.3f}"
        return f"loss {self.train_loss:.3f} val_loss {vl} val_AUC {auc}"


EpochFn = Callable[[EpochLog], None]


def fold_stage(backbone: str, fold: int, folds: int, candidate: int = 0,
               candidates: int = 1) -> str:
    """A fold's stage name, e.g. "resnet18 fold 2/5" (" head 1/3" added when the fold trains
    several head candidates)."""
    head = f" head {candidate + 1}/{candidates}" if candidates > 1 else ""
    return f"{backbone} fold {fold + 1}/{folds}{head}"


@dataclass(frozen=True)
class FitOutcome:
    """What one fold's epoch loop ends with: the best epoch's state (lowest validation loss),
    that epoch (1-based; 0 when none ran), its validation loss, and every epoch's log."""

    state: dict[str, torch.Tensor]
    best_epoch: int
    best_loss: float
    history: list[dict[str, Any]]


@dataclass(frozen=True)
class RunContext:
    """What every fold of one training run shares (checkpoints live in ``run_dir``)."""

    backbone: str
    cfg: TrainConfig
    device: torch.device
    seed: int
    folds: int
    run_dir: Path
    progress: ProgressFn
    on_epoch: EpochFn | None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def checkpoint_path(run_dir: Path, fold: int, candidate: int = 0, candidates: int = 1) -> Path:
    """The epoch checkpoint of one fold (and head candidate, when the fold trains several)."""
    head = f".head{candidate}" if candidates > 1 else ""
    return run_dir / f"fold{fold}{head}.ckpt.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, then rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)




def device_autocast(device: torch.device | str, precision: str = "bf16") -> torch.autocast:
    """bf16 autocast on CUDA when ``precision`` is bf16; a disabled context otherwise (fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cuda" if on_cuda else "cpu", enabled=False)


def autocast(ctx: RunContext) -> torch.autocast:
    """The run's precision on CUDA (bf16 autocast unless the config says fp32); fp32 elsewhere."""
    return device_autocast(ctx.device, ctx.cfg.precision)


def init_hazard_bias(module: torch.nn.Module, targets: SurvivalTargets) -> None:
    """Start each interval's hazard at its empirical rate (events / scans at risk)."""
    head = module.head if hasattr(module, "head") else module
    events = (targets.died_in * targets.informative).sum(axis=0)
    at_risk = np.maximum(targets.informative.sum(axis=0), 1)
    rate = np.clip(events / at_risk, 1e-3, 0.999)
    with torch.no_grad():
        head.hazard.bias.copy_(torch.as_tensor(np.log(rate / (1 - rate)), dtype=torch.float32))


class EmbeddingBatches:
    """Batches of precomputed slice embeddings (B, K, D)."""

    def __init__(self, emb: np.ndarray) -> None:
        self.emb = torch.from_numpy(np.ascontiguousarray(emb))

    def inputs(self, idx: np.ndarray, device: torch.device, train: bool,
               gen: torch.Generator | None) -> torch.Tensor:
        return self.emb[torch.as_tensor(idx)].to(device)  # (B, K, D)


class ImageBatches:
    """Batches of uint8 slices -> float (B, K, 3, S, S), augmented when training."""

    def __init__(self, x: np.ndarray, augment: bool) -> None:
        self.x = x
        self.augment = augment

    def inputs(self, idx: np.ndarray, device: torch.device, train: bool,
               gen: torch.Generator | None) -> torch.Tensor:
        xb = torch.from_numpy(np.ascontiguousarray(self.x[idx]))
        if device.type == "cuda":
            xb = xb.pin_memory()
        xb = xb.to(device, non_blocking=True)
        xb = xb.float().div_(255.0)  # (B, K, 3, S, S)
        if train and self.augment:
            xb = augment_batch(xb, gen)
        return xb


def augment_batch(x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Random flip, small affine (+-10 deg, 0.9-1.1 zoom, +-5 % shift), intensity jitter.

    One transform per scan, the same for its K slices. x: (B, K, 3, S, S) in [0, 1].
    """
    import torch.nn.functional as F

    b, k, c, s, _ = x.shape
    dev = x.device

    r = torch.rand(7, b, generator=gen).to(dev)  # every draw of the batch: one copy

    def u(i: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * r[i]

    angle = u(0, -math.pi / 18, math.pi / 18)
    scale = u(1, 0.9, 1.1)
    flip = torch.where(r[2] < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u(3, -0.05, 0.05)], dim=1),
                         torch.stack([sin * flip, cos, u(4, -0.05, 0.05)], dim=1)], dim=1)  # (B,2,3)
    theta = theta.repeat_interleave(k, dim=0)  # (B*K, 2, 3)
    flat = x.reshape(b * k, c, s, s)  # (B*K, 3, S, S)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, padding_mode="zeros", align_corners=False)
    gain = u(5, 0.95, 1.05).repeat_interleave(k)[:, None, None, None]
    shift = u(6, -0.03, 0.03).repeat_interleave(k)[:, None, None, None]
    return (out * gain + shift).clamp_(0.0, 1.0).reshape(b, k, c, s, s)  # (B, K, 3, S, S)


@torch.no_grad()
def predict_logits(module: torch.nn.Module, batches: Any, idx: np.ndarray,
                    ctx: RunContext) -> torch.Tensor:
    """(len(idx), 3) interval hazard logits of a fold model (eval mode, CPU float32)."""
    module.eval()
    out = [torch.zeros(0, len(HORIZONS_YEARS))]
    step = max(1, ctx.cfg.embed_batch // ctx.cfg.n_slices)
    for start in range(0, len(idx), step):
        xb = batches.inputs(idx[start:start + step], ctx.device, False, None)
        with autocast(ctx):
            logits, _ = module(xb)
        out.append(logits.float().cpu())
    return torch.cat(out)


def predict_risk(module: torch.nn.Module, batches: Any, idx: np.ndarray,
             ctx: RunContext) -> np.ndarray:
    """(len(idx), 3) cumulative risks of a fold model."""
    return cumulative_risk(predict_logits(module, batches, idx, ctx)).numpy()


def mean_auc(risk: np.ndarray, targets: SurvivalTargets) -> tuple[float | None, list]:
    """(mean over horizons, per-horizon list) of AUC on known labels; None where undefined."""

    per = []
    for j in range(len(HORIZONS_YEARS)):
        known = targets.known[:, j]
        try:
            per.append(float(auc(targets.positive[known, j].astype(int), risk[known, j])))
        except MetricInputError:
            per.append(None)
    vals = [a for a in per if a is not None]
    return (float(np.mean(vals)) if vals else None), per


class Fit:
    """The epoch loop of one fold: AdamW, warm-up + cosine, early stopping, checkpoints."""

    def __init__(self, ctx: RunContext, fold: int, module: torch.nn.Module, batches: Any,
                 targets: SurvivalTargets, candidate: int = 0, candidates: int = 1) -> None:
        self.ctx, self.fold, self.module, self.batches = ctx, fold, module, batches
        self.targets = targets
        self.candidate, self.candidates = candidate, candidates
        self.loss = loss_fn(ctx.cfg.loss)
        self.opt = torch.optim.AdamW(self._param_groups(), lr=ctx.cfg.lr,
                                     weight_decay=ctx.cfg.weight_decay)
        warm, total = ctx.cfg.warmup_epochs, max(1, ctx.cfg.epochs)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda e: (e + 1) / warm if e < warm else
            0.5 * (1 + math.cos(math.pi * (e - warm) / max(1, total - warm))))
        self.ckpt = checkpoint_path(ctx.run_dir, fold, candidate, candidates)

    def _param_groups(self) -> list[dict[str, Any]]:
        m = self.module
        if not hasattr(m, "encoder"):
            return [{"params": list(m.parameters())}]
        if self.ctx.cuda:
            m.encoder.to(memory_format=torch.channels_last)
            m.encoder.channels_last = True
        return [{"params": list(m.encoder.parameters()),
                 "lr": self.ctx.cfg.lr * self.ctx.cfg.backbone_lr_scale},
                {"params": list(m.head.parameters())}]

    def run(self, train_idx: np.ndarray, val_idx: np.ndarray) -> FitOutcome:
        cfg, ctx = self.ctx.cfg, self.ctx
        state = self._resume()
        start, best, best_loss, bad, history = (state["epoch"], state["best"],
                                                state["best_loss"], state["bad"],
                                                state["history"])
        best_epoch = state.get("best_epoch", 0)
        stage = fold_stage(ctx.backbone, self.fold, ctx.folds, self.candidate, self.candidates)
        for epoch in range(start + 1, cfg.epochs + 1):
            if bad >= cfg.patience:
                break
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(ctx.seed * 7919 + self.fold * 101 + epoch)
            torch.manual_seed(ctx.seed * 7919 + self.fold * 101 + epoch)
            train_loss = self._train_epoch(train_idx, gen, stage, epoch)
            val_loss, val_auc = self._validate(val_idx if len(val_idx) else train_idx)
            self.sched.step()
            if val_loss < best_loss - 1e-4 or best is None:
                best_loss, bad, best_epoch = val_loss, 0, epoch
                best = {k: v.detach().clone().cpu() for k, v in self.module.state_dict().items()}
            else:
                bad += 1
            log = EpochLog(ctx.backbone, self.fold, ctx.folds, epoch, cfg.epochs, train_loss,
                           val_loss, val_auc, time.perf_counter() - t0, self.candidate,
                           self.candidates)
            history.append(dataclasses.asdict(log))
            atomic_save({"epoch": epoch, "module": self.module.state_dict(),
                          "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                          "best": best, "best_loss": best_loss, "bad": bad,
                          "best_epoch": best_epoch, "history": history}, self.ckpt)
            if ctx.on_epoch is not None:
                ctx.on_epoch(log)
            if cfg.frozen_backbone:
                ctx.progress(stage, epoch if bad < cfg.patience else cfg.epochs, cfg.epochs)
        return FitOutcome(best, best_epoch, float(best_loss), history)

    def _resume(self) -> dict[str, Any]:
        fresh = {"epoch": 0, "best": None, "best_loss": math.inf, "bad": 0, "history": []}
        if not self.ckpt.is_file():
            return fresh
        saved = torch.load(self.ckpt, weights_only=False, map_location="cpu")
        self.module.load_state_dict(saved["module"])
        self.opt.load_state_dict(saved["opt"])
        self.sched.load_state_dict(saved["sched"])
        return saved

    def _train_epoch(self, idx: np.ndarray, gen: torch.Generator, stage: str,
                     epoch: int) -> float:
        cfg, ctx = self.ctx.cfg, self.ctx
        self.module.train()
        order = idx[torch.randperm(len(idx), generator=gen).numpy()]
        n_batches = max(1, math.ceil(len(order) / cfg.batch_size))
        # every scan's targets on the device once per epoch; each step indexes them there
        on_device = BatchTargets.of(self.targets, np.arange(len(self.targets)), ctx.device)
        # summed on the device: one host sync per epoch, so the CPU can queue the next step's
        # kernels while the GPU runs this one
        total, seen = torch.zeros((), device=ctx.device), 0
        bar = f"{stage} epoch {epoch}/{cfg.epochs}"
        for b in range(n_batches):
            bidx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb = self.batches.inputs(bidx, ctx.device, True, gen)
            with autocast(ctx):
                logits, _ = self.module(xb)
            yb = on_device.take(torch.as_tensor(bidx).to(ctx.device))
            loss = self.loss(logits.float(), yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.grad_clip)
            self.opt.step()
            total += loss.detach() * len(bidx)
            seen += len(bidx)
            if not cfg.frozen_backbone:
                ctx.progress(bar, b + 1, n_batches)
        return float(total) / max(1, seen)

    @torch.no_grad()
    def _validate(self, idx: np.ndarray) -> tuple[float, float | None]:
        logits = predict_logits(self.module, self.batches, idx, self.ctx)
        loss = float(self.loss(logits, BatchTargets.of(self.targets, idx)))
        risk = cumulative_risk(logits).numpy()
        return loss, mean_auc(risk, self.targets.subset(idx))[0]
