"""Deep-model inference: device choice, a warm model cache, batched ensemble prediction.

A registered deep model is the ensemble of its k fold models (:class:`~sscmort_core.deep.nets.
EnsembleNet`); its risk is the mean of the fold risks. Across several deep models the
"deep ensemble" is the mean of the models' risks. Means of non-decreasing risk vectors are
non-decreasing, so every prediction stays monotone over the horizons.

All K slices of a scan (and all scans of a batch) go through the backbone in one forward
pass; on CUDA under bf16 autocast with channels_last. Loaded models stay in the process-wide
cache (:data:`sscmort_core.util.cache.MODEL_CACHE`) keyed by (weights file, sha256, device), so
a second prediction skips loading.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from sscmort_core import store as st_store
from sscmort_core.cards import ModelCard
from sscmort_core.deep.config import DEVICE_CHOICES
from sscmort_core.deep.fit import device_autocast
from sscmort_core.deep.inputs import input_for_volume
from sscmort_core.deep.nets import EnsembleNet, cumulative_risk
from sscmort_core.deep.registry import build_ensemble, list_cards, load_weights, read_card
from sscmort_core.errors import ModelError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.predictions import RiskPrediction
from sscmort_core.util.cache import MODEL_CACHE, ModelCache
from sscmort_core.util.paths import default_models_dir

DEEP_ENSEMBLE_ID = "deep-ensemble"


@dataclass(frozen=True)
class DeviceChoice:
    """The device used and why (reported in the CLI's JSON)."""

    name: str  # "cuda", "mps" or "cpu"
    reason: str

    @property
    def torch(self) -> torch.device:
        return torch.device(self.name)


def select_device(requested: str = "auto") -> DeviceChoice:
    """'auto' picks cuda, then mps, then cpu; an unavailable explicit device is a ModelError."""
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if requested == "auto":
        if cuda:
            return DeviceChoice("cuda", f"auto: CUDA available ({torch.cuda.get_device_name(0)})")
        if mps:
            return DeviceChoice("mps", "auto: no CUDA; Apple MPS available")
        return DeviceChoice("cpu", "auto: no CUDA or MPS device")
    if requested == "cuda" and not cuda:
        raise ModelError("--device cuda asked for, but torch sees no CUDA device")
    if requested == "mps" and not mps:
        raise ModelError("--device mps asked for, but torch sees no Apple MPS device")
    if requested not in DEVICE_CHOICES:
        raise ModelError(f"unknown device {requested!r}; choose one of {DEVICE_CHOICES}")
    return DeviceChoice(requested, "requested")


@dataclass(frozen=True)
class LoadedModel:
    card: ModelCard
    net: EnsembleNet
    device: str


def load_deep_model(models_dir: Path, model_id: str, device: DeviceChoice,
                    expected_sha256: str | None = None,
                    cache: ModelCache = MODEL_CACHE) -> LoadedModel:
    """A registered deep ensemble on ``device``, from the cache when these exact weights were
    loaded there before (keyed by file, sha256, modification time and device)."""
    card = read_card(models_dir, model_id)
    if expected_sha256 not in (None, card.weights_sha256):
        load_weights(models_dir, model_id, expected_sha256=expected_sha256)  # raises: mismatch
    wfile = Path(models_dir) / str(card.weights_file)
    stat = wfile.stat() if wfile.is_file() else None
    key = ("deep", str(wfile.resolve()), card.weights_sha256, stat and stat.st_mtime_ns,
           device.name)
    return cache.get_or_load(key, lambda: _load(models_dir, model_id, device, expected_sha256))


def _load(models_dir: Path, model_id: str, device: DeviceChoice,
          expected_sha256: str | None) -> LoadedModel:
    card, state = load_weights(models_dir, model_id, expected_sha256=expected_sha256)
    net = build_ensemble(card, state).to(device.torch)
    if device.name == "cuda":
        net = net.to(memory_format=torch.channels_last)
        for enc in net.encoders:
            enc.channels_last = True
    return LoadedModel(card, net.eval(), device.name)


@dataclass(frozen=True)
class DeepOutput:
    """One model's output for B scans."""

    risk: np.ndarray  # (B, 3) ensemble mean
    fold_risk: np.ndarray  # (F, B, 3)
    attention: np.ndarray  # (B, K) mean over folds


@torch.inference_mode()
def predict_batch(loaded: LoadedModel, x: np.ndarray, precision: str = "bf16") -> DeepOutput:
    """x: (B, K, 3, S, S) uint8 (or float in [0, 1]) -> :class:`DeepOutput`; one forward pass.

    ``precision``: bf16 autocast on CUDA (default) or fp32; the CPU always runs fp32."""
    dev = torch.device(loaded.device)
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    xt = xt.float().div_(255.0) if xt.dtype == torch.uint8 else xt.float()  # (B, K, 3, S, S)
    with device_autocast(dev, precision):
        fold_risk, attention = loaded.net(xt)  # (F, B, 3), (F, B, K)
    fold_risk = fold_risk.float().cpu().numpy()
    return DeepOutput(fold_risk.mean(axis=0), fold_risk,
                      attention.float().mean(dim=0).cpu().numpy())


@torch.inference_mode()
def predict_naive(loaded: LoadedModel, x: np.ndarray) -> np.ndarray:
    """Reference: one slice per forward pass, fp32, no cache of embeddings. (B, 3) risks.

    Same maths as :func:`predict_batch` (tests compare them); used to measure the speed-up.
    """
    xt = torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)  # (B, K, 3, S, S)
    dev = torch.device(loaded.device)
    out = np.zeros((xt.shape[0], len(HORIZONS_YEARS)))
    n_folds = len(loaded.net.heads)
    for b in range(xt.shape[0]):
        for f in range(n_folds):
            encoder, head = loaded.net.fold_net(f)
            emb = torch.stack([encoder(xt[b, k:k + 1].to(dev))[0]
                               for k in range(xt.shape[1])])  # (K, D)
            logits, _ = head(emb[None])  # (1, 3)
            out[b] += cumulative_risk(logits)[0].cpu().numpy() / n_folds
    return out


# ---------------------------------------------------------------------------------------------
# which models
# ---------------------------------------------------------------------------------------------
def available_models(store: st_store.Store | None, models_dir: Path) -> dict[str, str | None]:
    """model_id -> sha256 the store registered (None when only a card on disk knows it).

    With a store: its deep models whose card exists in ``models_dir``. Without: every card.
    """
    if store is not None:
        df = st_store.deep_models_frame(store)
        return {r.model_id: r.weights_sha256 for r in df.itertuples()
                if (Path(models_dir) / f"{r.model_id}.json").is_file()}
    return {c.model_id: None for c in list_cards(models_dir)}


def choose_models(available: dict[str, str | None], wanted: str | Sequence[str] = "all"
                  ) -> dict[str, str | None]:
    if wanted == "all" or wanted is None:
        if not available:
            raise ModelError("no deep models are registered; train one with "
                             "`sscmort train --kind deep --backbone resnet18 --profile quick`")
        return dict(available)
    ids = [wanted] if isinstance(wanted, str) else list(wanted)
    missing = [m for m in ids if m not in available]
    if missing:
        raise ModelError(f"no registered deep model {missing[0]!r}; registered: "
                         f"{', '.join(sorted(available)) or 'none'}")
    return {m: available[m] for m in ids}


# ---------------------------------------------------------------------------------------------
# a whole volume
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumePrediction:
    """Risks of one volume from each chosen deep model and their ensemble."""

    predictions: tuple[RiskPrediction, ...]  # one per model, then the ensemble (if > 1 model)
    outputs: dict[str, DeepOutput]
    device: DeviceChoice
    seconds: float


def _note(card: ModelCard) -> str:
    bits = [card.profile]
    if card.random_init:
        bits.append("random init (no pretrained weights)")
    if card.synthetic:
        bits.append("trained on synthetic data")
    return "; ".join(bits)


def predict_volume(hu: np.ndarray, lung_mask: np.ndarray, *, models: dict[str, str | None],
                   models_dir: Path, device: str = "auto",
                   cache: ModelCache = MODEL_CACHE, precision: str = "bf16"
                   ) -> VolumePrediction:
    """Per-horizon risks of one volume (hu, lung mask: (z, y, x)) from each model."""
    t0 = time.perf_counter()
    dev = select_device(device)
    inputs: dict[tuple[int, int], np.ndarray] = {}
    preds, outputs = [], {}
    for model_id, sha in models.items():
        loaded = load_deep_model(models_dir, model_id, dev, sha, cache)
        cfg = loaded.card.config
        key = (int(cfg["n_slices"]), int(cfg["image_size"]))
        if key not in inputs:
            inputs[key] = input_for_volume(hu, lung_mask, k=key[0], size=key[1])[None]
        out = predict_batch(loaded, inputs[key], precision)  # (1, K, 3, S, S) -> (1, 3)
        outputs[model_id] = out
        preds.append(_risk_prediction(loaded.card.model_id, "deep", loaded.card.label,
                                      out.risk[0], _note(loaded.card)))
    if len(preds) > 1:
        mean = np.mean([[p.risk_1y, p.risk_3y, p.risk_5y] for p in preds], axis=0)
        random = any("random init" in (p.note or "") for p in preds)
        preds.append(_risk_prediction(
            DEEP_ENSEMBLE_ID, "ensemble", f"Deep ensemble (mean of {len(preds)} models)", mean,
            "includes random-init models" if random else None))
    return VolumePrediction(tuple(preds), outputs, dev, time.perf_counter() - t0)


def _risk_prediction(model_id: str, kind: str, label: str, risk: np.ndarray,
                     note: str | None) -> RiskPrediction:
    r = np.clip(np.asarray(risk, dtype=float), 0.0, 1.0)  # monotone by construction
    return RiskPrediction(model_id=model_id, kind=kind, label=label, risk_1y=float(r[0]),
                          risk_3y=float(r[1]), risk_5y=float(r[2]), note=note)


def predict_for_volume(store: st_store.Store | None, hu: np.ndarray, lung_mask: np.ndarray,
                       spacing_mm: tuple[float, float, float], *,
                       models_dir: Path | None = None, device: str = "auto",
                       model: str | Sequence[str] = "all") -> list[RiskPrediction]:
    """Deep-model risks for one volume: each registered deep model, then the deep ensemble.

    hu, lung_mask: (z, y, x); spacing_mm (z, y, x) is accepted for a common signature with
    the tabular models (the deep input is resampled to a fixed grid and does not need it).
    Returns [] when no deep model is registered and ``model`` is 'all'.
    """
    models_dir = Path(models_dir or default_models_dir())
    available = available_models(store, models_dir)
    if model == "all" and not available:
        return []
    chosen = choose_models(available, model)
    return list(predict_volume(hu, lung_mask, models=chosen, models_dir=models_dir,
                               device=device).predictions)
