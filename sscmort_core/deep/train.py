"""Train a deep survival model per backbone with patient-grouped k-fold cross-validation.

Every scan gets an out-of-fold prediction (split 'oof'); the k fold models together are the
registered model (an ensemble for new scans). Two profiles (:data:`PROFILES`):

* **quick** ("quick: frozen backbone"): 64 px, 8 slices. The backbone is frozen, so each slice
  is embedded once per scan (global averages of every stage's feature maps, "multiscale":
  a frozen random-init backbone keeps intensity statistics in its early stages and loses them
  by the last); attention pooling and the hazard head are trained on those embeddings. Trains
  resnet18, densenet121 and swin_tiny on the ~2,100-scan demo cohort on a 2-core CPU in
  minutes. End-to-end fine-tuning does not fit that budget. The head's lr, weight decay and
  dropout are chosen per outer fold (nested): each candidate of the profile's ``head_grid``
  trains on the fold's training patients with early stopping on its inner validation
  patients, and the one with the lowest inner validation loss is kept; the held-out fold
  never enters the choice. The model card's ``settings`` and ``head_selection`` record the
  grid, each fold's choice and the losses.
* **full** ("full: fine-tuned end to end"): 224 px, 16 slices, 5 folds, AdamW with warm-up and
  cosine decay, augmentation, early stopping on a patient-grouped validation split of the
  training folds, bf16 autocast and channels_last on CUDA. The paper-scale run, for a GPU.
  Its lr, weight decay and dropout are fixed before looking (no grid; the card says so).

Both are deterministic from ``seed`` and resumable: a checkpoint after every epoch (and the
quick profile's embeddings) lives in ``models_dir/.runs/<run key>/`` until the model is
registered; a rerun with the same data and settings continues from there.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from sscmort_core import store as st_store
from sscmort_core.cards import ModelCard
from sscmort_core.deep.config import (
    HEAD_SETTING,
    PROFILE_LABELS,
    QUICK_HEAD_GRID,
    UI_BACKBONES,
    TrainConfig,
    describe_head,
    head_candidates,
    profile_config,
)
from sscmort_core.deep.fit import (
    EmbeddingBatches,
    EpochFn,
    Fit,
    ImageBatches,
    RunContext,
    atomic_save,
    checkpoint_path,
    device_autocast,
    init_hazard_bias,
    mean_auc,
    predict_risk,
)
from sscmort_core.deep.infer import select_device
from sscmort_core.deep.inputs import ModelInputs, model_inputs, sampling_version
from sscmort_core.deep.losses import SurvivalTargets, survival_targets
from sscmort_core.deep.nets import EnsembleNet, NetConfig, SliceHead, build_net
from sscmort_core.deep.registry import delete_model, register_in_store, save_model
from sscmort_core.errors import DataError
from sscmort_core.folds import grouped_folds
from sscmort_core.labels import HORIZONS_YEARS, label_fingerprint
from sscmort_core.util.executors import Executor
from sscmort_core.util.paths import default_models_dir
from sscmort_core.util.progress import ProgressFn, no_progress


@dataclass(frozen=True)
class _Cohort:
    """Model inputs aligned with outcomes, patients and folds."""

    inputs: ModelInputs
    targets: SurvivalTargets
    patients: np.ndarray  # (N,) patient id per scan
    folds: np.ndarray  # (N,) 0..k-1
    data_hash: str
    synthetic: bool
    label_fingerprint: str


@dataclass(frozen=True)
class _FoldResult:
    state: dict[str, torch.Tensor]  # best head (quick) or whole net (full) state
    test_risk: np.ndarray  # (n_test, 3)
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    chosen: int = 0  # index of the head candidate kept (head_candidates)
    val_losses: tuple[float, ...] = ()  # best inner validation loss of each candidate
    n_val_patients: int = 0  # patients in the inner validation split


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def train_backbone(store: st_store.Store, backbone: str, *, profile: str = "quick",
                   models_dir: Path | None = None, device: str = "auto",
                   pretrained: str | Path | None = None, seed: int = 0, folds: int = 5,
                   progress: ProgressFn = no_progress, on_epoch: EpochFn | None = None,
                   workers: int | None = None, config_overrides: Mapping[str, Any] | None = None,
                   cache_dir: Path | None = None, executor: Executor | None = None) -> str:
    """Train, register and store OOF predictions of one backbone; returns the model id.

    ``pretrained``: None (random init), ``"hf-cache"`` or a weights file. Raises ModelError
    (bad backbone, weights, settings) or DataError (cohort too small, bad dates). Model inputs
    not yet cached are computed on ``executor`` (default: ``workers`` local processes).
    """
    cfg = profile_config(profile, **dict(config_overrides or {}))
    models_dir = Path(models_dir or default_models_dir())
    dev = select_device(device)
    _seed_everything(seed, dev.name)
    cohort = _cohort(store, cfg, folds, seed, workers, progress, cache_dir, executor)
    net_cfg = NetConfig(backbone, cfg.image_size, cfg.n_slices, cfg.attention_dim, cfg.dropout,
                        cfg.pooling)
    net, source = build_net(net_cfg, pretrained=pretrained, seed=seed)
    run_dir = models_dir / ".runs" / _run_key(backbone, cfg, seed, folds, cohort.data_hash,
                                              source.describe())
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(backbone, cfg, dev.torch, seed, folds, run_dir, progress, on_epoch)
    if cfg.frozen_backbone:
        emb = _cached_embeddings(ctx, net, cohort.inputs.x)
        # the head's small matrices gain nothing from more threads, and on a shared CPU
        # extra threads spin-wait: one thread is the fastest and the most predictable
        with _torch_threads(1 if dev.name == "cpu" else None):
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
                          progress: ProgressFn = no_progress,
                          backbones: Sequence[str] = UI_BACKBONES, seed: int = 0,
                          workers: int | None = None, device: str = "auto",
                          cache_dir: Path | None = None,
                          executor: Executor | None = None) -> list[str]:
    """The demo's deep stage: the quick profile of each UI backbone; returns model ids."""
    ids = []
    for i, name in enumerate(backbones):
        progress("deep backbones", i, len(backbones))
        ids.append(train_backbone(store, name, profile="quick", models_dir=models_dir,
                                  device=device, seed=seed, progress=progress,
                                  workers=workers, cache_dir=cache_dir,
                                  executor=executor))
    progress("deep backbones", len(backbones), len(backbones))
    return ids


# ---------------------------------------------------------------------------------------------
# the cohort: inputs, targets, folds
# ---------------------------------------------------------------------------------------------
def _cohort(store: st_store.Store, cfg: TrainConfig, folds: int, seed: int,
            workers: int | None, progress: ProgressFn, cache_dir: Path | None,
            executor: Executor | None = None) -> _Cohort:
    flagged = st_store.training_excluded_scan_ids(store)  # masks failing QC, not accepted
    wanted = [s for s in st_store.scans_frame(store)["scan_id"] if s not in flagged]
    inputs = model_inputs(store, k=cfg.n_slices, size=cfg.image_size,
                          workers=workers or max(1, os.cpu_count() or 1), progress=progress,
                          cache_dir=cache_dir, scan_ids=wanted if flagged else None,
                          executor=executor)
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
    fingerprint = label_fingerprint(list(inputs.scan_ids), scans["scan_date"],
                                    scans["death_date"], scans["last_followup_date"])
    return _Cohort(inputs, targets, patients, fold_of, h.hexdigest(),
                   bool(scans["synthetic"].astype(bool).all()), fingerprint)


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


def _remove_run_dir(run_dir: Path) -> None:
    for p in run_dir.glob("*"):
        p.unlink(missing_ok=True)
    run_dir.rmdir()


# ---------------------------------------------------------------------------------------------
# quick profile: embeddings of a frozen backbone
# ---------------------------------------------------------------------------------------------
def _cached_embeddings(ctx: RunContext, net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    path = ctx.run_dir / "embeddings.npy"
    if path.is_file():
        emb = np.load(path)
        if emb.shape[:2] == x.shape[:2]:
            return emb
    emb = embed_slices(net.encoder, x, device=ctx.device, batch=ctx.cfg.embed_batch,
                       progress=ctx.progress, stage=f"{ctx.backbone}: slice embeddings",
                       precision=ctx.cfg.precision)
    tmp = ctx.run_dir / f".embeddings.tmp-{os.getpid()}.npy"
    np.save(tmp, emb)
    os.replace(tmp, path)
    return emb


@torch.inference_mode()
def embed_slices(encoder: torch.nn.Module, x: np.ndarray, *, device: torch.device,
                 batch: int = 256, progress: ProgressFn = no_progress,
                 stage: str = "slice embeddings", precision: str = "bf16") -> np.ndarray:
    """(N, K, 3, S, S) uint8 inputs -> (N, K, D) float32 embeddings, batched over slices.

    channels_last on CUDA, and on CPU for convolutional backbones (densenet121 at 64 px and
    256 slices a batch: about 1.8x faster on this machine's AVX-512 CPU); transformers
    (a ``patch_embed``) stay channels-first. The encoder is returned to its layout after.
    """
    n, k = x.shape[:2]
    flat = x.reshape(n * k, *x.shape[2:])  # (N*K, 3, S, S)
    encoder = encoder.to(device).eval()
    cuda = device.type == "cuda"
    was_cl = getattr(encoder, "channels_last", False)
    cl = cuda or not hasattr(getattr(encoder, "backbone", encoder), "patch_embed")
    if cl:
        encoder.to(memory_format=torch.channels_last)
        encoder.channels_last = True
    out = None
    step = max(1, batch // k) * k  # whole scans per batch, for scan-level progress
    progress(stage, 0, n)
    try:
        for start in range(0, n * k, step):
            xb = torch.from_numpy(np.ascontiguousarray(flat[start:start + step])).to(device)
            xb = xb.float().div_(255.0)  # (b, 3, S, S) in [0, 1]
            with device_autocast(device, precision):
                e = encoder(xb).float().cpu().numpy()  # (b, D)
            if out is None:
                out = np.empty((n * k, e.shape[1]), np.float32)
            out[start:start + len(e)] = e
            progress(stage, min(n, (start + step) // k), n)
    finally:
        if cl and not was_cl and not cuda:
            encoder.to(memory_format=torch.contiguous_format)
            encoder.channels_last = False
    return out.reshape(n, k, -1)  # (N, K, D)


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily run torch's CPU ops on ``n`` threads (None: unchanged)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
def _fold_split(cohort: _Cohort, fold: int, val_fraction: float, seed: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, inner validation, held-out test) scan rows of outer ``fold``: the validation
    rows are whole patients of the training folds (early stopping and the head's selection);
    the held-out fold's patients are in neither of the other two."""
    test = cohort.folds == fold
    trainval = np.flatnonzero(~test)
    val_mask = _inner_split(cohort.patients[trainval], cohort.targets.positive[trainval, -1] > 0,
                            val_fraction, seed + 1000 + fold)
    return trainval[~val_mask], trainval[val_mask], np.flatnonzero(test)


def _fold_module(ctx: RunContext, cohort: _Cohort, fold: int, train_idx: np.ndarray,
                 emb: np.ndarray | None, net_template: torch.nn.Module | None
                 ) -> tuple[torch.nn.Module, Any]:
    """A fresh, seeded fold model for ``ctx.cfg`` (its dropout) and its batches: the head on
    the embeddings (quick), or a copy of the whole net (full)."""
    torch.manual_seed(ctx.seed * 1009 + fold)
    if emb is not None:
        head = SliceHead(emb.shape[-1], ctx.cfg.attention_dim, ctx.cfg.dropout)
        head.set_input_stats(torch.from_numpy(emb[train_idx]))  # training folds only
        module: torch.nn.Module = head
        batches: Any = EmbeddingBatches(emb)
    else:
        module = _fresh_copy(net_template)
        module.head.drop.p = ctx.cfg.dropout
        batches = ImageBatches(cohort.inputs.x, ctx.cfg.augment)
    init_hazard_bias(module, cohort.targets.subset(train_idx))
    return module.to(ctx.device), batches


def choose_candidate(val_losses: Sequence[float], has_validation: bool) -> int:
    """The head candidate with the lowest inner validation loss (the first among ties; a
    non-finite loss never wins; the first when the fold had no inner validation split)."""
    losses = np.asarray(val_losses, dtype=float)
    if not has_validation or not len(losses) or not np.isfinite(losses).any():
        return 0
    return int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))


def _run_fold(ctx: RunContext, cohort: _Cohort, fold: int, *, emb: np.ndarray | None = None,
              net_template: torch.nn.Module | None = None) -> _FoldResult:
    """Train outer ``fold``: every head candidate (:func:`head_candidates`) on the training
    patients with early stopping on the inner validation patients, the one with the lowest
    validation loss kept (nested: the held-out fold never enters the choice), then the
    held-out fold predicted by it."""
    done_path = ctx.run_dir / f"fold{fold}.done.pt"
    if done_path.is_file():
        saved = torch.load(done_path, weights_only=False)
        return _FoldResult(saved["state"], saved["test_risk"], saved["best_epoch"],
                           saved["history"], saved.get("chosen", 0),
                           tuple(saved.get("val_losses", ())),
                           saved.get("n_val_patients", 0))
    train_idx, val_idx, test_idx = _fold_split(cohort, fold, ctx.cfg.val_fraction, ctx.seed)
    candidates = head_candidates(ctx.cfg)
    outcomes, best_module = [], None
    for c, cand in enumerate(candidates):
        cctx = dataclasses.replace(ctx, cfg=cand)
        module, batches = _fold_module(cctx, cohort, fold, train_idx, emb, net_template)
        outcomes.append(Fit(cctx, fold, module, batches, cohort.targets, c,
                            len(candidates)).run(train_idx, val_idx))
        # keep only the module of the lowest inner loss so far (a full net is large)
        if choose_candidate([o.best_loss for o in outcomes], len(val_idx) > 0) == c:
            best_module = (module, batches, cctx)
        del module
    chosen = choose_candidate([o.best_loss for o in outcomes], len(val_idx) > 0)
    best = outcomes[chosen]
    module, batches, cctx = best_module
    module.load_state_dict(best.state)
    test_risk = predict_risk(module, batches, test_idx, cctx)
    history = [h for o in outcomes for h in o.history]
    result = _FoldResult({k: v.cpu() for k, v in best.state.items()}, test_risk,
                         best.best_epoch, history, chosen,
                         tuple(o.best_loss for o in outcomes),
                         len(np.unique(cohort.patients[val_idx])))
    atomic_save({"state": result.state, "test_risk": test_risk, "best_epoch": best.best_epoch,
                  "history": history, "chosen": chosen, "val_losses": result.val_losses,
                  "n_val_patients": result.n_val_patients}, done_path)
    for c in range(len(candidates)):
        checkpoint_path(ctx.run_dir, fold, c, len(candidates)).unlink(missing_ok=True)
    return result


def _fresh_copy(net: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(net)


# ---------------------------------------------------------------------------------------------
# registering the ensemble and its OOF predictions
# ---------------------------------------------------------------------------------------------
# How each loss treats censored scans (the card's "likelihood", as the tabular cards say it)
LOSS_LIKELIHOOD = {
    "survival": "survival likelihood: discrete-time hazard over (0,1], (1,3], (3,5] years; a "
                "censored scan counts for the intervals it is known to have survived",
    "bce": "complete cases: per horizon, binary cross-entropy on the labelled scans "
           "(censored scans excluded)"}


def _cv_card(ctx: RunContext) -> dict[str, Any]:
    survival = ctx.cfg.loss == "survival"
    return {"folds": ctx.folds, "seed": ctx.seed, "grouped_by": "patient",
            "stratified_by": "death within 5 years",
            "censored": "counted by the survival likelihood for the intervals it is known "
                        "to have survived" if survival else
                        "excluded per horizon (label rule)"}


def _candidate_setting(cfg: TrainConfig, index: int) -> tuple[float, float, float]:
    cand = head_candidates(cfg)[index]
    return float(cand.lr), float(cand.weight_decay), float(cand.dropout)


def _head_selection(cfg: TrainConfig, results: Sequence[_FoldResult]) -> dict[str, Any]:
    """The card's machine-readable record of how each fold's head settings were chosen."""
    if not cfg.head_grid:
        return {"method": "fixed before looking",
                "setting": list(_candidate_setting(cfg, 0))}
    return {"method": "nested", "criterion": "inner validation loss (lowest over epochs)",
            "grid": [list(map(float, c)) for c in cfg.head_grid],
            "chosen_index": [r.chosen for r in results],
            "chosen": [list(_candidate_setting(cfg, r.chosen)) for r in results],
            "inner_val_loss": [[round(v, 5) for v in r.val_losses] for r in results],
            "inner_validation": {"share_of_training_patients": cfg.val_fraction,
                                 "grouped_by": "patient", "stratified_by":
                                 "death within 5 years",
                                 "patients_per_fold": [r.n_val_patients for r in results]}}


def settings_provenance(cfg: TrainConfig, results: Sequence[_FoldResult]) -> dict[str, str]:
    """How each setting of a deep run was chosen (the card's ``settings``, as the tabular
    cards have them): nested inside each outer training fold, or fixed before looking."""
    fixed = "fixed before looking"
    inner = (f"a patient-grouped {cfg.val_fraction:.0%} of each outer training fold's "
             "patients; the held-out fold never enters the choice")
    out: dict[str, str] = {}
    if cfg.head_grid:
        grid = "; ".join(describe_head(*c) for c in cfg.head_grid)
        chosen = "; ".join(f"fold {f + 1}: {describe_head(*_candidate_setting(cfg, r.chosen))}"
                           for f, r in enumerate(results))
        out[HEAD_SETTING] = (f"nested: grid [{grid}], chosen per fold: {chosen}, by inner "
                             f"validation loss ({inner})")
        out["head grid"] = (fixed + " at this selection's results (config.QUICK_HEAD_GRID): "
                            "the earlier setting, which was picked on the demo cohort's "
                            "resnet18 OOF AUC, one lighter and one more regularised"
                            if cfg.head_grid == QUICK_HEAD_GRID else
                            "given with the run (not the profile's grid)")
    else:
        out[HEAD_SETTING] = (f"{fixed}: {describe_head(cfg.lr, cfg.weight_decay, cfg.dropout)}"
                             " (the profile's values, never compared on any validation or "
                             "out-of-fold performance)")
    out["epoch kept (early stopping)"] = (f"chosen per fold by the same inner validation loss "
                                          f"(patience {cfg.patience}; {inner})")
    out["epochs, patience, warm-up, attention size, slices, image size"] = fixed
    out["batch size"] = fixed + (" (from GPU throughput, BENCHMARKS.md; never from "
                                 "performance)" if not cfg.frozen_backbone else "")
    if cfg.pooling == "multiscale":
        out["slice pooling (multiscale)"] = (
            "chosen during development on the demo cohort, not nested: the last stage of a "
            "frozen random-init backbone carried no signal (a ridge probe of the generator's "
            "true ILD extent, R^2 0.27 vs 0.97 for every stage; a last-stage fold's validation "
            "AUC 0.50-0.53; BENCHMARKS.md)")
    else:
        out[f"slice pooling ({cfg.pooling})"] = fixed
    return out


def _register(store: st_store.Store, models_dir: Path, ensemble: EnsembleNet, cohort: _Cohort,
              ctx: RunContext, source: Any, oof: np.ndarray,
              results: list[_FoldResult]) -> ModelCard:
    import timm

    _, per = mean_auc(oof, cohort.targets)
    cfg = ctx.cfg
    config = {**dataclasses.asdict(cfg), "folds": ctx.folds, "seed": ctx.seed,
              "shared_encoder": cfg.frozen_backbone, "device": ctx.device.type,
              # what ran: bf16 autocast exists on CUDA only
              "precision": cfg.precision if ctx.cuda else "fp32",
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
        data_hash=cohort.data_hash, label_fingerprint=cohort.label_fingerprint,
        pretrained=source.describe(),
        pretrained_sha256=source.sha256,
        oof_auc={str(h): (None if a is None else round(a, 4))
                 for h, a in zip(HORIZONS_YEARS, per)},
        n_scans=len(cohort.inputs.scan_ids), n_patients=int(len(np.unique(cohort.patients))),
        synthetic=cohort.synthetic, notes=tuple(notes),
        software={"torch": torch.__version__, "timm": timm.__version__},
        extra={"cv": _cv_card(ctx), "likelihood": LOSS_LIKELIHOOD.get(cfg.loss),
               "settings": settings_provenance(cfg, results),
               "head_selection": _head_selection(cfg, results)})
    rows = [pd.DataFrame({"model_id": card.model_id, "scan_id": list(cohort.inputs.scan_ids),
                          "horizon_years": h, "risk": oof[:, j], "fold": cohort.folds,
                          "split": "oof"}) for j, h in enumerate(HORIZONS_YEARS)]
    try:
        with store.transaction() as cur:
            register_in_store(cur, card, models_dir)
            # a re-used id (emptied models folder) must not keep the old model's metrics
            # or cached saliency
            st_store.delete_model_outputs(cur, card.model_id)
            st_store.insert_frame(cur, "predictions", pd.concat(rows, ignore_index=True))
    except BaseException:
        delete_model(models_dir, card.model_id)
        raise
    return card

