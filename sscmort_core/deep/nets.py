"""Deep survival networks over K axial CT slices (../shared/DESIGN.md "Models").

A scan enters as ``x`` of shape (B, K, 3, S, S): K axial slices sampled across the lung, each
with three HU windows as channels, values in [0, 1]. A timm backbone (any name; the UI offers
:data:`UI_BACKBONES`) embeds every slice; gated attention (Ilse et al., 2018) pools the K
slice embeddings into one scan embedding; a linear head gives one hazard logit per interval
of :data:`INTERVAL_EDGES_YEARS` (0-1, 1-3, 3-5 years). Risk at the end of interval j is

    risk_j = 1 - prod_{i <= j} (1 - sigmoid(logit_i)),

so 1-, 3- and 5-year risks can never decrease with the horizon, whatever the weights are
(each factor lies in (0, 1)). No weights are ever downloaded: a backbone starts from random
initialisation, a local file, or the local Hugging Face cache (see :func:`create_backbone`).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before timm imports huggingface_hub

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from sscmort_core.errors import ModelError  # noqa: E402
from sscmort_core.labels import HORIZONS_YEARS  # noqa: E402
from sscmort_core.util.hashing import file_sha256  # noqa: E402

INTERVAL_EDGES_YEARS: tuple[int, ...] = (0, *HORIZONS_YEARS)  # (0, 1, 3, 5)
N_INTERVALS = len(HORIZONS_YEARS)
RANDOM_INIT = "random init"


@dataclass(frozen=True)
class NetConfig:
    """Architecture of one survival network (stored in the model card)."""

    backbone: str
    image_size: int  # S: slices are S x S pixels
    n_slices: int  # K
    attention_dim: int = 128
    dropout: float = 0.1
    pooling: str = "last"  # or "multiscale" (see SliceEncoder)


@dataclass(frozen=True)
class PretrainedSource:
    """Where a backbone's starting weights came from: ``kind`` 'random', 'file' or 'hf-cache'."""

    kind: str
    location: str | None = None  # file path, or the HF repo id of a cached checkpoint
    sha256: str | None = None  # of the file that was read (None for random init)

    def describe(self) -> str:
        if self.kind == "random":
            return RANDOM_INIT
        return f"{self.kind}:{self.location}"


# ---------------------------------------------------------------------------------------------
# the slice encoder (any timm backbone)
# ---------------------------------------------------------------------------------------------
def _swin_window(image_size: int) -> int:
    """Largest window <= 7 that tiles every Swin stage for this image size (S/32 per side last)."""
    if image_size % 32:
        raise ModelError(f"Swin backbones need an image size divisible by 32, got {image_size}")
    last = image_size // 32  # side of the last stage's grid; earlier grids are 2x, 4x, 8x
    return max(w for w in range(1, 8) if last % w == 0)


def _size_kwargs(backbone: str, image_size: int) -> dict[str, int]:
    """Extra timm kwargs so that a fixed-size backbone (Swin, ViT) accepts S x S input."""
    if backbone.startswith("swin"):
        return {"img_size": image_size, "window_size": _swin_window(image_size)}
    return {"img_size": image_size}


def _timm_create(backbone: str, image_size: int, pretrained_file: Path | None) -> nn.Module:
    import timm

    if not timm.is_model(backbone.split(".")[0]):
        raise ModelError(f"timm has no backbone called {backbone!r}")
    kwargs: dict[str, object] = {"num_classes": 0}
    if pretrained_file is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)})
    cfg = timm.models.get_pretrained_cfg(backbone.split(".")[0], allow_unregistered=True)
    if not getattr(cfg, "fixed_input_size", False):
        model = timm.create_model(backbone, **kwargs)
        if _accepts(model, image_size):
            return model
    # Fixed-size backbones (Swin, ViT): rebuild for S x S; timm resizes pretrained position
    # tables in its checkpoint filter when weights are loaded.
    model = timm.create_model(backbone, **kwargs, **_size_kwargs(backbone, image_size))
    if not _accepts(model, image_size):
        raise ModelError(f"backbone {backbone} does not accept {image_size} px slices")
    return model


def _accepts(model: nn.Module, image_size: int) -> bool:
    try:
        with torch.no_grad():
            model.eval().forward_features(torch.zeros(1, 3, image_size, image_size))
    except (AssertionError, RuntimeError, ValueError):
        return False
    return True


def hf_cache_file(backbone: str) -> tuple[str, Path] | None:
    """(repo id, local file) of ``backbone``'s pretrained weights in the local HF cache, or None.

    Looks only at the cache on disk (``huggingface_hub.try_to_load_from_cache``); never a
    network request.
    """
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(backbone)
    except (RuntimeError, ValueError):
        cfg = None
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    for name in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str) and Path(hit).is_file():
            return repo, Path(hit)
    return None


def create_backbone(backbone: str, image_size: int, *,
                    pretrained: str | Path | None = None) -> tuple[nn.Module, PretrainedSource]:
    """A timm backbone without its classifier, and where its weights came from.

    ``pretrained``: None -> random initialisation; ``"hf-cache"`` -> the local Hugging Face
    cache (ModelError when the checkpoint is not cached: nothing is downloaded); otherwise a
    path to a .safetensors or torch file holding the backbone's state dict.
    """
    if pretrained is None:
        return _timm_create(backbone, image_size, None), PretrainedSource("random")
    if str(pretrained) == "hf-cache":
        hit = hf_cache_file(backbone)
        if hit is None:
            raise ModelError(f"no pretrained {backbone} checkpoint in the local Hugging Face "
                             "cache (sscmort never downloads; pass --pretrained FILE)")
        repo, path = hit
        model = _timm_create(backbone, image_size, path)
        return model, PretrainedSource("hf-cache", repo, file_sha256(path))
    path = Path(pretrained)
    if not path.is_file():
        raise ModelError("pretrained weights file not found", path)
    try:
        model = _timm_create(backbone, image_size, path)
    except Exception as err:  # any failure to read a user's file (format, keys, shapes)
        raise ModelError(f"cannot load as {backbone} weights: {str(err).splitlines()[0]}",
                         path) from None
    return model, PretrainedSource("file", str(path), file_sha256(path))


POOLINGS: tuple[str, ...] = ("last", "multiscale")


class SliceEncoder(nn.Module):
    """Embeds single slices: (N, 3, S, S) -> (N, D).

    ``pooling='last'``: global average of the last feature map (D = the backbone's width).
    ``pooling='multiscale'``: global averages of every stage's feature map, concatenated
    (timm ``forward_intermediates``; resnet18: D = 64 + 64 + 128 + 256 + 512 = 1024). Early
    stages keep intensity and texture statistics that a frozen, randomly initialised backbone
    loses by its last stage, so the quick profile uses it. :meth:`stage_maps` feeds Grad-CAM.
    """

    def __init__(self, backbone: nn.Module, pooling: str = "last") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ModelError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        if pooling == "multiscale" and not hasattr(backbone, "forward_intermediates"):
            raise ModelError(f"{type(backbone).__name__} has no forward_intermediates, so it "
                             "cannot pool every stage; use pooling 'last'")
        self.backbone = backbone
        self.pooling = pooling
        if pooling == "multiscale":
            self.dim = int(sum(f["num_chs"] for f in backbone.feature_info))
        else:
            self.dim = int(getattr(backbone, "num_features"))
        self.channels_last = False  # set on CUDA: inputs are then made channels_last too

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, C, h, w) last feature maps, channels first for every backbone."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        fmap = self.backbone.forward_features(x)
        if fmap.ndim == 3:  # ViT-style tokens (N, T, C): drop prefix tokens, make a grid
            n_prefix = int(getattr(self.backbone, "num_prefix_tokens", 0))
            tokens = fmap[:, n_prefix:]
            side = int(round(tokens.shape[1] ** 0.5))
            return tokens.transpose(1, 2).reshape(fmap.shape[0], -1, side, side)  # (N, C, h, w)
        width = int(getattr(self.backbone, "num_features"))
        if fmap.ndim == 4 and fmap.shape[-1] == width and fmap.shape[1] != width:
            return fmap.permute(0, 3, 1, 2)  # Swin NHWC -> (N, C, h, w)
        return fmap

    def stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The maps this encoder pools: [(N, C_i, h_i, w_i), ...] (one for 'last')."""
        if self.pooling == "last":
            return [self.feature_maps(x)]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return list(self.backbone.forward_intermediates(x, intermediates_only=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.mean(dim=(2, 3)) for m in self.stage_maps(x)], dim=1)  # (N, D)


# ---------------------------------------------------------------------------------------------
# pooling over slices and the monotone multi-horizon head
# ---------------------------------------------------------------------------------------------
class AttentionPool(nn.Module):
    """Gated attention over slices: (B, K, D) -> pooled (B, D) and weights (B, K), sum 1."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.value = nn.Linear(dim, hidden)
        self.gate = nn.Linear(dim, hidden)
        self.score = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.score(torch.tanh(self.value(h)) * torch.sigmoid(self.gate(h)))  # (B, K, 1)
        weights = torch.softmax(a.squeeze(-1).float(), dim=1)  # (B, K)
        pooled = torch.einsum("bk,bkd->bd", weights.to(h.dtype), h)  # (B, D)
        return pooled, weights


def cumulative_risk(logits: torch.Tensor) -> torch.Tensor:
    """Interval hazard logits (B, J) -> risks (B, J) at the interval ends, non-decreasing in j.

    risk_j = 1 - exp(sum_{i<=j} log(1 - h_i)) with log(1 - sigmoid(l)) = logsigmoid(-l).
    """
    log_survival = torch.cumsum(F.logsigmoid(-logits.float()), dim=-1)  # (B, J), <= 0, falling
    return -torch.expm1(log_survival)


class SliceHead(nn.Module):
    """Everything after the encoder: norm, attention pooling, hazard logits per interval."""

    def __init__(self, dim: int, attention_dim: int, dropout: float) -> None:
        super().__init__()
        # fixed per-feature standardisation (identity unless set from training embeddings)
        self.register_buffer("emb_mean", torch.zeros(dim))
        self.register_buffer("emb_std", torch.ones(dim))
        self.norm = nn.LayerNorm(dim)
        self.pool = AttentionPool(dim, attention_dim)
        self.drop = nn.Dropout(dropout)
        self.hazard = nn.Linear(dim, N_INTERVALS)

    @torch.no_grad()
    def set_input_stats(self, emb: torch.Tensor) -> None:
        """Standardise each embedding feature with the mean and sd of ``emb`` (N, K, D)."""
        flat = emb.reshape(-1, emb.shape[-1]).float()  # (N*K, D)
        self.emb_mean.copy_(flat.mean(dim=0))
        self.emb_std.copy_(flat.std(dim=0).clamp_min(1e-6))

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, K, D) slice embeddings -> (hazard logits (B, J), attention (B, K))."""
        z = (emb - self.emb_mean.to(emb.dtype)) / self.emb_std.to(emb.dtype)
        pooled, weights = self.pool(self.norm(z))
        return self.hazard(self.drop(pooled)).float(), weights


class SurvivalNet(nn.Module):
    """Encoder + head. forward: (B, K, 3, S, S) -> (hazard logits (B, 3), attention (B, K))."""

    def __init__(self, encoder: SliceEncoder, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.head = SliceHead(encoder.dim, config.attention_dim, config.dropout)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]
        flat = x.reshape(b * k, *x.shape[2:])  # (B*K, 3, S, S)
        return self.encoder(flat).reshape(b, k, -1)  # (B, K, D)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.embed(x))


def build_net(config: NetConfig, *, pretrained: str | Path | None = None,
              seed: int = 0) -> tuple[SurvivalNet, PretrainedSource]:
    """A :class:`SurvivalNet` with deterministic random parts (seeded) and its weight source."""
    torch.manual_seed(seed)
    backbone, source = create_backbone(config.backbone, config.image_size, pretrained=pretrained)
    return SurvivalNet(SliceEncoder(backbone, config.pooling), config), source


class EnsembleNet(nn.Module):
    """The fold models of one registered model; forward averages their risks.

    ``encoders`` holds one shared encoder (quick profile: frozen backbone) or one per fold
    (full profile: fine-tuned). forward: (B, K, 3, S, S) -> (fold risks (F, B, 3),
    fold attention (F, B, K)); the ensemble risk is the mean over F, still monotone.
    """

    def __init__(self, encoders: list[SliceEncoder], heads: list[SliceHead]) -> None:
        super().__init__()
        if len(encoders) not in (1, len(heads)):
            raise ModelError(f"{len(encoders)} encoders cannot serve {len(heads)} fold heads")
        self.encoders = nn.ModuleList(encoders)
        self.heads = nn.ModuleList(heads)

    @property
    def shared_encoder(self) -> bool:
        return len(self.encoders) == 1

    def fold_net(self, fold: int) -> tuple[SliceEncoder, SliceHead]:
        return self.encoders[0 if self.shared_encoder else fold], self.heads[fold]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k = x.shape[:2]
        flat = x.reshape(b * k, *x.shape[2:])  # (B*K, 3, S, S)
        risks, attention = [], []
        shared = self.encoders[0](flat).reshape(b, k, -1) if self.shared_encoder else None
        for f, head in enumerate(self.heads):
            emb = shared if shared is not None else self.encoders[f](flat).reshape(b, k, -1)
            logits, weights = head(emb)  # (B, 3), (B, K)
            risks.append(cumulative_risk(logits))
            attention.append(weights)
        return torch.stack(risks), torch.stack(attention)  # (F, B, 3), (F, B, K)
