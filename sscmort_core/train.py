"""Train a deep survival model per backbone with patient-grouped k-fold cross-validation.

Every scan gets an out-of-fold prediction (split 'oof'); the k fold models together are the
registered model (an ensemble for new scans). Two profiles (:data:`PROFILES`):

* **quick** ("quick: frozen backbone"): 64 px, 8 slices. The backbone is frozen, so each slice
  is embedded once per scan; attention pooling and the hazard head are trained on those
  embeddings. Trains resnet18, densenet121 and swin_tiny on the 2,125-scan demo cohort on a
  2-core CPU in minutes. End-to-end fine-tuning does not fit that budget.
* **full** ("full: fine-tuned end to end"): 224 px, 16 slices, 5 folds, AdamW with warm-up and
  cosine decay, augmentation, early stopping on a patient-grouped validation split of the
  training folds, bf16 autocast and channels_last on CUDA. The paper-scale run, for a GPU.

Both are deterministic from ``seed`` and resumable: a checkpoint after every epoch (and the
quick profile's embeddings) lives in ``models_dir/.runs/<run key>/`` until the model is
registered; a rerun with the same data and settings continues from there.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from sscmort_core import store as st_store
from sscmort_core.dataset import ModelInputs, model_inputs, sampling_version
from sscmort_core.errors import DataError, ModelError
from sscmort_core.folds import grouped_folds
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.losses import BatchTargets, SurvivalTargets, loss_fn, survival_targets
from sscmort_core.nets import (
    UI_BACKBONES,
    EnsembleNet,
    NetConfig,
    SliceHead,
    build_net,
    cumulative_risk,
)
from sscmort_core.registry import ModelCard, default_models_dir, register_in_store, save_model

ProgressFn = Callable[[str, int, int], None]
PROFILE_LABELS = {"quick": "quick: frozen backbone", "full": "full: fine-tuned end to end"}


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


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
    warmup_epochs: int = 1
    backbone_lr_scale: float = 0.1  # fine-tuning: backbone lr = lr * this
    embed_batch: int = 256  # slices per forward pass when embedding or predicting
    grad_clip: float = 1.0


PROFILES: dict[str, TrainConfig] = {
    "quick": TrainConfig(profile="quick", image_size=64, n_slices=8, epochs=40, batch_size=64,
                         lr=2e-3, weight_decay=1e-2, frozen_backbone=True, patience=8,
                         augment=False, dropout=0.2, warmup_epochs=2),
    "full": TrainConfig(profile="full", image_size=224, n_slices=16, epochs=40, batch_size=4,
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
        return dataclasses.replace(PROFILES[profile], **overrides)
    except TypeError as err:
        raise ModelError(f"bad training setting: {err}") from None


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

    def postfix(self) -> str:
        auc = "n/a" if self.val_auc is None else f"{self.val_auc:.3f}"
        vl = "n/a" if self.val_loss is None else f"{self.val_loss:.3f}"
        return f"loss {self.train_loss:.3f} val_loss {vl} val_AUC {auc}"


EpochFn = Callable[[EpochLog], None]


@dataclass(frozen=True)
class _Cohort:
    """Model inputs aligned with outcomes, patients and folds."""

    inputs: ModelInputs
    targets: SurvivalTargets
    patients: np.ndarray  # (N,) patient id per scan
    folds: np.ndarray  # (N,) 0..k-1
    data_hash: str
    synthetic: bool


@dataclass(frozen=True)
class _FoldResult:
    state: dict[str, torch.Tensor]  # best head (quick) or whole net (full) state
    test_risk: np.ndarray  # (n_test, 3)
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def train_backbone(store: st_store.Store, backbone: str, *, profile: str = "quick",
                   models_dir: Path | None = None, device: str = "auto",
                   pretrained: str | Path | None = None, seed: int = 0, folds: int = 5,
                   progress: ProgressFn = _no_progress, on_epoch: EpochFn | None = None,
                   workers: int | None = None, config_overrides: Mapping[str, Any] | None = None,
                   cache_dir: Path | None = None) -> str:
    """Train, register and store OOF predictions of one backbone; returns the model id.

    ``pretrained``: None (random init), ``"hf-cache"`` or a weights file. Raises ModelError
    (bad backbone, weights, settings) or DataError (cohort too small, bad dates).
    """
    from sscmort_core.infer import select_device

    cfg = profile_config(profile, **dict(config_overrides or {}))
    models_dir = Path(models_dir or default_models_dir())
    dev = select_device(device)
    _seed_everything(seed, dev.name)
    cohort = _cohort(store, cfg, folds, seed, workers, progress, cache_dir)
    net_cfg = NetConfig(backbone, cfg.image_size, cfg.n_slices, cfg.attention_dim, cfg.dropout)
    net, source = build_net(net_cfg, pretrained=pretrained, seed=seed)
    run_dir = models_dir / ".runs" / _run_key(backbone, cfg, seed, folds, cohort.data_hash,
                                              source.describe())
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = _RunContext(backbone, cfg, dev.torch, seed, folds, run_dir, progress, on_epoch)
    if cfg.frozen_backbone:
        emb = _cached_embeddings(ctx, net, cohort.inputs.x)
        results = [_run_fold(ctx, cohort, f, emb=emb) for f in range(folds)]
        heads = [_head_from_state(net, r.state) for r in results]
        ensemble = EnsembleNet([net.encoder.cpu()], heads)
    else:
        results = [_run_fold(ctx, cohort, f, net_template=net) for f in range(folds)]
        nets = [_net_from_state(net, r.state) for r in results]
        ensemble = EnsembleNet([n.encoder for n in nets], [n.head for n in nets])
    oof = np.zeros((len(cohort.inputs.scan_ids), len(HORIZONS_YEARS)), np.float64)
    for f, r in enumerate(results):
        oof[cohort.folds == f] = r.test_risk
    card = _register(store, models_dir, ensemble, cohort, ctx, source, oof, results)
    _remove_run_dir(run_dir)
    return card.model_id


def train_quick_backbones(store: st_store.Store, *, models_dir: Path | None = None,
                          progress: ProgressFn = _no_progress,
                          backbones: Sequence[str] = UI_BACKBONES, seed: int = 0,
                          workers: int | None = None, device: str = "auto",
                          cache_dir: Path | None = None) -> list[str]:
    """The demo's deep stage: the quick profile of each UI backbone; returns model ids."""
    ids = []
    for i, name in enumerate(backbones):
        progress("deep backbones", i, len(backbones))
        ids.append(train_backbone(store, name, profile="quick", models_dir=models_dir,
                                  device=device, seed=seed, progress=progress,
                                  workers=workers, cache_dir=cache_dir))
    progress("deep backbones", len(backbones), len(backbones))
    return ids


# ---------------------------------------------------------------------------------------------
# the cohort: inputs, targets, folds
# ---------------------------------------------------------------------------------------------
def _cohort(store: st_store.Store, cfg: TrainConfig, folds: int, seed: int,
            workers: int | None, progress: ProgressFn, cache_dir: Path | None) -> _Cohort:
    inputs = model_inputs(store, k=cfg.n_slices, size=cfg.image_size,
                          workers=workers or max(1, os.cpu_count() or 1), progress=progress,
                          cache_dir=cache_dir)
    if len(inputs.scan_ids) == 0:
        raise DataError("the store has no usable scans to train on", store.path)
    scans = st_store.scans_frame(store).set_index("scan_id").loc[list(inputs.scan_ids)]
    targets = survival_targets(scans["scan_date"], scans["death_date"],
                               scans["last_followup_date"])
    patients = scans["patient_id"].to_numpy(dtype=str)
    if len(np.unique(patients)) < folds:
        raise DataError(f"{len(np.unique(patients))} patients cannot fill {folds} folds",
                        store.path)
    died_5y = targets.positive[:, -1] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fold_of = grouped_folds(patients, folds, seed,
                                stratify=died_5y if died_5y.any() else None)
    h = hashlib.sha256()
    for col in ("patient_id", "scan_date", "death_date", "last_followup_date", "volume_sha256"):
        h.update("|".join(str(v) for v in scans[col].tolist()).encode())
    h.update(("|".join(inputs.scan_ids) + f"|{inputs.k}|{inputs.size}").encode())
    return _Cohort(inputs, targets, patients, fold_of, h.hexdigest(),
                   bool(scans["synthetic"].astype(bool).all()))


def _inner_split(patients: np.ndarray, strat: np.ndarray, val_fraction: float,
                 seed: int) -> np.ndarray:
    """(n,) bool validation mask over whole patients (empty when too few patients)."""
    n_pat = len(np.unique(patients))
    k = min(max(2, round(1.0 / val_fraction)), n_pat)
    if k < 2 or n_pat < 3:
        return np.zeros(len(patients), bool)
    use_strat = strat if strat.any() and (~strat).any() else None
    with warnings.catch_warnings():  # "least populated class" on small cohorts
        warnings.simplefilter("ignore", UserWarning)
        return grouped_folds(patients, k, seed, stratify=use_strat) == 0


# ---------------------------------------------------------------------------------------------
# one training run's shared context, seeds, checkpoints
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _RunContext:
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


def _seed_everything(seed: int, device: str) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    if device == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def _run_key(backbone: str, cfg: TrainConfig, seed: int, folds: int, data_hash: str,
             pretrained: str) -> str:
    blob = json.dumps([backbone, dataclasses.asdict(cfg), seed, folds, data_hash, pretrained,
                       torch.__version__], sort_keys=True, default=str)
    return f"{backbone}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _remove_run_dir(run_dir: Path) -> None:
    for p in run_dir.glob("*"):
        p.unlink(missing_ok=True)
    run_dir.rmdir()


def _autocast(ctx: _RunContext):
    if ctx.cuda:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# ---------------------------------------------------------------------------------------------
# quick profile: embeddings of a frozen backbone
# ---------------------------------------------------------------------------------------------
def _cached_embeddings(ctx: _RunContext, net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    path = ctx.run_dir / "embeddings.npy"
    if path.is_file():
        emb = np.load(path)
        if emb.shape[:2] == x.shape[:2]:
            return emb
    emb = embed_slices(net.encoder, x, device=ctx.device, batch=ctx.cfg.embed_batch,
                       progress=ctx.progress, stage=f"{ctx.backbone}: slice embeddings")
    tmp = ctx.run_dir / f".embeddings.tmp-{os.getpid()}.npy"
    np.save(tmp, emb)
    os.replace(tmp, path)
    return emb


@torch.inference_mode()
def embed_slices(encoder: torch.nn.Module, x: np.ndarray, *, device: torch.device,
                 batch: int = 256, progress: ProgressFn = _no_progress,
                 stage: str = "slice embeddings") -> np.ndarray:
    """(N, K, 3, S, S) uint8 inputs -> (N, K, D) float32 embeddings, batched over slices."""
    n, k = x.shape[:2]
    flat = x.reshape(n * k, *x.shape[2:])  # (N*K, 3, S, S)
    encoder = encoder.to(device).eval()
    cuda = device.type == "cuda"
    if cuda:
        encoder = encoder.to(memory_format=torch.channels_last)
    out = None
    step = max(1, batch // k) * k  # whole scans per batch, for scan-level progress
    progress(stage, 0, n)
    for start in range(0, n * k, step):
        xb = torch.from_numpy(np.ascontiguousarray(flat[start:start + step])).to(device)
        xb = xb.float().div_(255.0)  # (b, 3, S, S) in [0, 1]
        if cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            e = encoder(xb).float().cpu().numpy()  # (b, D)
        if out is None:
            out = np.empty((n * k, e.shape[1]), np.float32)
        out[start:start + len(e)] = e
        progress(stage, min(n, (start + step) // k), n)
    return out.reshape(n, k, -1)  # (N, K, D)


def _head_from_state(net: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> SliceHead:
    cfg = net.config
    head = SliceHead(net.encoder.dim, cfg.attention_dim, cfg.dropout)
    head.load_state_dict(state)
    return head.eval()


def _net_from_state(template: torch.nn.Module,
                    state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    net = _fresh_copy(template)
    net.load_state_dict(state)
    return net.cpu().eval()


# ---------------------------------------------------------------------------------------------
# one fold
# ---------------------------------------------------------------------------------------------
def _run_fold(ctx: _RunContext, cohort: _Cohort, fold: int, *, emb: np.ndarray | None = None,
              net_template: torch.nn.Module | None = None) -> _FoldResult:
    done_path = ctx.run_dir / f"fold{fold}.done.pt"
    if done_path.is_file():
        saved = torch.load(done_path, weights_only=False)
        return _FoldResult(saved["state"], saved["test_risk"], saved["best_epoch"],
                           saved["history"])
    test = cohort.folds == fold
    trainval = np.flatnonzero(~test)
    val_mask = _inner_split(cohort.patients[trainval], cohort.targets.positive[trainval, -1] > 0,
                            ctx.cfg.val_fraction, ctx.seed + 1000 + fold)
    train_idx, val_idx = trainval[~val_mask], trainval[val_mask]
    torch.manual_seed(ctx.seed * 1009 + fold)
    if emb is not None:
        module: torch.nn.Module = SliceHead(emb.shape[-1], ctx.cfg.attention_dim,
                                            ctx.cfg.dropout)
        batches = _EmbeddingBatches(emb)
    else:
        module = _fresh_copy(net_template)
        batches = _ImageBatches(cohort.inputs.x, ctx.cfg.augment)
    _init_hazard_bias(module, cohort.targets.subset(train_idx))
    fit = _Fit(ctx, fold, module.to(ctx.device), batches, cohort.targets)
    best_state, best_epoch, history = fit.run(train_idx, val_idx)
    module.load_state_dict(best_state)
    test_risk = _predict(module, batches, np.flatnonzero(test), ctx)
    result = _FoldResult({k: v.cpu() for k, v in best_state.items()}, test_risk, best_epoch,
                         history)
    _atomic_save({"state": result.state, "test_risk": test_risk, "best_epoch": best_epoch,
                  "history": history}, done_path)
    (ctx.run_dir / f"fold{fold}.ckpt.pt").unlink(missing_ok=True)
    return result


def _fresh_copy(net: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(net)


def _init_hazard_bias(module: torch.nn.Module, targets: SurvivalTargets) -> None:
    """Start each interval's hazard at its empirical rate (events / scans at risk)."""
    head = module.head if hasattr(module, "head") else module
    events = (targets.died_in * targets.informative).sum(axis=0)
    at_risk = np.maximum(targets.informative.sum(axis=0), 1)
    rate = np.clip(events / at_risk, 1e-3, 0.999)
    with torch.no_grad():
        head.hazard.bias.copy_(torch.as_tensor(np.log(rate / (1 - rate)), dtype=torch.float32))


class _EmbeddingBatches:
    """Batches of precomputed slice embeddings (B, K, D)."""

    def __init__(self, emb: np.ndarray) -> None:
        self.emb = torch.from_numpy(np.ascontiguousarray(emb))

    def inputs(self, idx: np.ndarray, device: torch.device, train: bool,
               gen: torch.Generator | None) -> torch.Tensor:
        return self.emb[torch.as_tensor(idx)].to(device)  # (B, K, D)


class _ImageBatches:
    """Batches of uint8 slices -> float (B, K, 3, S, S), augmented when training."""

    def __init__(self, x: np.ndarray, augment: bool) -> None:
        self.x = x
        self.augment = augment

    def inputs(self, idx: np.ndarray, device: torch.device, train: bool,
               gen: torch.Generator | None) -> torch.Tensor:
        xb = torch.from_numpy(np.ascontiguousarray(self.x[idx])).to(device)
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

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen).to(dev)

    angle = u(-math.pi / 18, math.pi / 18)
    scale = u(0.9, 1.1)
    flip = torch.where(torch.rand(b, generator=gen).to(dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u(-0.05, 0.05)], dim=1),
                         torch.stack([sin * flip, cos, u(-0.05, 0.05)], dim=1)], dim=1)  # (B,2,3)
    theta = theta.repeat_interleave(k, dim=0)  # (B*K, 2, 3)
    flat = x.reshape(b * k, c, s, s)  # (B*K, 3, S, S)
    grid = F.affine_grid(theta, list(flat.shape), align_corners=False)
    out = F.grid_sample(flat, grid, padding_mode="zeros", align_corners=False)
    gain = u(0.95, 1.05).repeat_interleave(k)[:, None, None, None]
    shift = u(-0.03, 0.03).repeat_interleave(k)[:, None, None, None]
    return (out * gain + shift).clamp_(0.0, 1.0).reshape(b, k, c, s, s)  # (B, K, 3, S, S)


@torch.no_grad()
def _predict_logits(module: torch.nn.Module, batches: Any, idx: np.ndarray,
                    ctx: _RunContext) -> torch.Tensor:
    """(len(idx), 3) interval hazard logits of a fold model (eval mode, CPU float32)."""
    module.eval()
    out = [torch.zeros(0, len(HORIZONS_YEARS))]
    step = max(1, ctx.cfg.embed_batch // ctx.cfg.n_slices)
    for start in range(0, len(idx), step):
        xb = batches.inputs(idx[start:start + step], ctx.device, False, None)
        with _autocast(ctx):
            logits, _ = module(xb)
        out.append(logits.float().cpu())
    return torch.cat(out)


def _predict(module: torch.nn.Module, batches: Any, idx: np.ndarray,
             ctx: _RunContext) -> np.ndarray:
    """(len(idx), 3) cumulative risks of a fold model."""
    return cumulative_risk(_predict_logits(module, batches, idx, ctx)).numpy()


def mean_auc(risk: np.ndarray, targets: SurvivalTargets) -> tuple[float | None, list]:
    """(mean over horizons, per-horizon list) of AUC on known labels; None where undefined."""
    from sscmort_core.evaluation import auc
    from sscmort_core.errors import MetricInputError

    per = []
    for j in range(len(HORIZONS_YEARS)):
        known = targets.known[:, j]
        try:
            per.append(float(auc(targets.positive[known, j].astype(int), risk[known, j])))
        except MetricInputError:
            per.append(None)
    vals = [a for a in per if a is not None]
    return (float(np.mean(vals)) if vals else None), per


class _Fit:
    """The epoch loop of one fold: AdamW, warm-up + cosine, early stopping, checkpoints."""

    def __init__(self, ctx: _RunContext, fold: int, module: torch.nn.Module, batches: Any,
                 targets: SurvivalTargets) -> None:
        self.ctx, self.fold, self.module, self.batches = ctx, fold, module, batches
        self.targets = targets
        self.loss = loss_fn(ctx.cfg.loss)
        self.opt = torch.optim.AdamW(self._param_groups(), lr=ctx.cfg.lr,
                                     weight_decay=ctx.cfg.weight_decay)
        warm, total = ctx.cfg.warmup_epochs, max(1, ctx.cfg.epochs)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda e: (e + 1) / warm if e < warm else
            0.5 * (1 + math.cos(math.pi * (e - warm) / max(1, total - warm))))
        self.ckpt = ctx.run_dir / f"fold{fold}.ckpt.pt"

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

    def run(self, train_idx: np.ndarray, val_idx: np.ndarray
            ) -> tuple[dict[str, torch.Tensor], int, list[dict[str, Any]]]:
        cfg, ctx = self.ctx.cfg, self.ctx
        state = self._resume()
        start, best, best_loss, bad, history = (state["epoch"], state["best"],
                                                state["best_loss"], state["bad"],
                                                state["history"])
        best_epoch = state.get("best_epoch", 0)
        stage = f"{ctx.backbone} fold {self.fold + 1}/{ctx.folds}"
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
                           val_loss, val_auc, time.perf_counter() - t0)
            history.append(dataclasses.asdict(log))
            _atomic_save({"epoch": epoch, "module": self.module.state_dict(),
                          "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                          "best": best, "best_loss": best_loss, "bad": bad,
                          "best_epoch": best_epoch, "history": history}, self.ckpt)
            if ctx.on_epoch is not None:
                ctx.on_epoch(log)
            if cfg.frozen_backbone:
                ctx.progress(stage, epoch if bad < cfg.patience else cfg.epochs, cfg.epochs)
        return best, best_epoch, history

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
        total, seen = 0.0, 0
        bar = f"{stage} epoch {epoch}/{cfg.epochs}"
        for b in range(n_batches):
            bidx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb = self.batches.inputs(bidx, ctx.device, True, gen)
            with _autocast(ctx):
                logits, _ = self.module(xb)
            loss = self.loss(logits.float(), BatchTargets.of(self.targets, bidx, ctx.device))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.module.parameters(), cfg.grad_clip)
            self.opt.step()
            total += loss.item() * len(bidx)
            seen += len(bidx)
            if not cfg.frozen_backbone:
                ctx.progress(bar, b + 1, n_batches)
        return total / max(1, seen)

    @torch.no_grad()
    def _validate(self, idx: np.ndarray) -> tuple[float, float | None]:
        logits = _predict_logits(self.module, self.batches, idx, self.ctx)
        loss = float(self.loss(logits, BatchTargets.of(self.targets, idx)))
        risk = cumulative_risk(logits).numpy()
        return loss, mean_auc(risk, self.targets.subset(idx))[0]


# ---------------------------------------------------------------------------------------------
# registering the ensemble and its OOF predictions
# ---------------------------------------------------------------------------------------------
def _register(store: st_store.Store, models_dir: Path, ensemble: EnsembleNet, cohort: _Cohort,
              ctx: _RunContext, source: Any, oof: np.ndarray,
              results: list[_FoldResult]) -> ModelCard:
    import timm

    _, per = mean_auc(oof, cohort.targets)
    cfg = ctx.cfg
    config = {**dataclasses.asdict(cfg), "folds": ctx.folds, "seed": ctx.seed,
              "shared_encoder": cfg.frozen_backbone, "device": ctx.device.type,
              "best_epochs": [r.best_epoch for r in results],
              "input_shape": list(cohort.inputs.x.shape[1:]),
              "sampling_version": sampling_version(),
              "n_failed_scans": len(cohort.inputs.failed)}
    notes = [] if source.kind != "random" else [
        "random init: no pretrained weights were available, so the backbone started from "
        "random weights" + (" and stayed frozen (its features are random projections)"
                            if cfg.frozen_backbone else "")]
    card = save_model(
        models_dir, ensemble.state_dict(), backbone=ctx.backbone,
        profile=PROFILE_LABELS[cfg.profile], config=json.loads(json.dumps(config)),
        data_hash=cohort.data_hash, pretrained=source.describe(),
        pretrained_sha256=source.sha256,
        oof_auc={str(h): (None if a is None else round(a, 4))
                 for h, a in zip(HORIZONS_YEARS, per)},
        n_scans=len(cohort.inputs.scan_ids), n_patients=int(len(np.unique(cohort.patients))),
        synthetic=cohort.synthetic, notes=tuple(notes),
        software={"torch": torch.__version__, "timm": timm.__version__})
    import pandas as pd

    rows = [pd.DataFrame({"model_id": card.model_id, "scan_id": list(cohort.inputs.scan_ids),
                          "horizon_years": h, "risk": oof[:, j], "fold": cohort.folds,
                          "split": "oof"}) for j, h in enumerate(HORIZONS_YEARS)]
    try:
        with store.transaction() as cur:
            register_in_store(cur, card, models_dir)
            st_store.delete_predictions(cur, card.model_id)
            st_store.insert_frame(cur, "predictions", pd.concat(rows, ignore_index=True))
    except BaseException:
        from sscmort_core.registry import delete_model

        delete_model(models_dir, card.model_id)
        raise
    return card


# ---------------------------------------------------------------------------------------------
# command line (the `train` subcommand is registered by cli_radiomics; --kind deep lands here)
# ---------------------------------------------------------------------------------------------
class TrainBars:
    """tqdm bars on stderr: one per stage (a fold, or an epoch when fine-tuning), with the
    last epoch's loss and validation AUC as the bar's postfix."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        import sys

        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = tqdm(total=total, desc=stage, file=sys.stderr, dynamic_ncols=True)
            self._bars[stage] = bar
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    def epoch(self, log: EpochLog) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        stage = f"{log.backbone} fold {log.fold + 1}/{log.folds}"
        bar = self._bars.get(stage)
        if bar is not None and not bar.disable and bar.n < bar.total:
            bar.set_postfix_str(log.postfix())
        else:
            tqdm.write(f"{stage} epoch {log.epoch}/{log.epochs}: {log.postfix()}")


def _add(parser: argparse.ArgumentParser, *flags: str, **kwargs: Any) -> None:
    """add_argument unless another stage's options already define the flag."""
    if any(f in parser._option_string_actions for f in flags):
        return
    parser.add_argument(*flags, **kwargs)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``train --kind deep`` (skips flags the parser already has, e.g. --seed)."""
    from sscmort_core.infer import DEVICE_CHOICES
    from sscmort_core.losses import LOSS_NAMES

    _add(parser, "--backbone", default="resnet18",
         help="deep: any timm backbone name, or 'all' for " + ", ".join(UI_BACKBONES))
    _add(parser, "--profile", choices=sorted(PROFILES), default="quick",
         help="deep: quick = frozen backbone, 64 px, 8 slices (CPU, minutes); full = "
              "fine-tuned end to end, 224 px, 16 slices (GPU)")
    _add(parser, "--pretrained", default=None, metavar="PATH",
         help="deep: backbone weights (.safetensors or torch file), or 'hf-cache' for the local "
              "Hugging Face cache; never downloads (default: random init)")
    _add(parser, "--device", choices=DEVICE_CHOICES, default="auto",
         help="deep: auto picks cuda, then mps, then cpu")
    _add(parser, "--models-dir", type=Path, default=None,
         help="deep: model registry folder (default $SSCMORT_MODELS or models/)")
    _add(parser, "--folds", type=int, default=5, help="cross-validation folds (5)")
    _add(parser, "--seed", type=int, default=0, help="random seed (0)")
    _add(parser, "--epochs", type=int, default=None, help="deep: override the profile's epochs")
    _add(parser, "--loss", choices=LOSS_NAMES, default=None,
         help="deep: survival (discrete-time likelihood, default) or bce (per-horizon, as in "
              "the study)")
    _add(parser, "--workers", type=int, default=None,
         help="worker processes for model inputs (all cores)")


def cli_train(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``train --kind deep``: train, register, print a summary; returns the summary."""
    from sscmort_core.cli import _emit
    from sscmort_core.registry import read_card

    quiet = bool(getattr(args, "quiet", False))
    bars = TrainBars(not quiet)
    backbones = list(UI_BACKBONES) if args.backbone == "all" else [args.backbone]
    overrides = {k: v for k, v in (("epochs", getattr(args, "epochs", None)),
                                   ("loss", getattr(args, "loss", None))) if v is not None}
    models_dir = Path(getattr(args, "models_dir", None) or default_models_dir())
    out = []
    with st_store.open_store(args.store) as store:
        for name in backbones:
            t0 = time.perf_counter()
            model_id = train_backbone(
                store, name, profile=args.profile, models_dir=models_dir, device=args.device,
                pretrained=args.pretrained, seed=args.seed, folds=args.folds, progress=bars,
                on_epoch=bars.epoch, workers=getattr(args, "workers", None),
                config_overrides=overrides)
            card = read_card(models_dir, model_id)
            out.append({"model_id": model_id, "backbone": name, "profile": card.profile,
                        "pretrained": card.pretrained, "oof_auc": card.oof_auc,
                        "device": card.config["device"],
                        "seconds": round(time.perf_counter() - t0, 1)})
    summary = {"kind": "deep", "models": out, "models_dir": str(models_dir)}
    text = "\n".join(f"{m['model_id']} ({m['profile']}, {m['pretrained']}, {m['device']}): "
                     f"OOF AUC 1/3/5 y {m['oof_auc']}; {m['seconds']} s" for m in out)
    _emit(args, summary, text)
    return summary
