"""Grad-CAM saliency of a deep model on the slices its attention weighted most.

For fold model f and horizon j, with feature maps A (K, C, h, w) of the K input slices:
weights w_kc = mean over (h, w) of d risk_j / d A_kc; map_k = ReLU(sum_c w_kc A_kc)
(Selvaraju et al., 2017). An encoder that pools every stage (quick profile, 'multiscale')
gets one map per stage, each scaled to a maximum of 1 and then averaged (a multi-layer fusion
in the spirit of LayerCAM). Maps and attention weights are averaged over the fold models; the
``top`` slices by attention are kept, upsampled to the S x S input and scaled by one common
maximum (so a faint slice stays faint). Stored as a small compressed array per
(model, scan, horizon) in the store's explanation_arrays table.

What it is not: a causal explanation. It shows which pixels the model's output was most
sensitive to, not why the patient is at risk (see :data:`SALIENCY_LEGEND`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sscmort_core import store as st_store
from sscmort_core.deep.infer import load_deep_model, select_device
from sscmort_core.deep.inputs import input_for_volume
from sscmort_core.deep.nets import EnsembleNet, cumulative_risk
from sscmort_core.deep.sampling import slice_indices, square_crop
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.scans import load_scan_with_lungs

METHOD = "grad-cam"
SALIENCY_LEGEND = (
    "Saliency (Grad-CAM): the colour marks where this model's {h}-year risk was most sensitive "
    "to the image, on the slices its attention weighted most. Uncoloured = little or no "
    "contribution; red = some; yellow = strongest on the slices shown. It shows where the "
    "model looked, not why: it is not a causal explanation and not a diagnosis.")


def saliency_kind(horizon_years: int) -> str:
    return f"gradcam-{horizon_years}y"


@dataclass(frozen=True)
class SliceSaliency:
    """One explained slice. image, heatmap: (S, S); heatmap in [0, 1]."""

    position: int  # index among the K sampled slices
    z_index: int | None  # axial index in the volume (None when unknown)
    attention: float  # the model's attention weight on this slice (K weights sum to 1)
    image: np.ndarray  # uint8 lung-window channel of the model input
    heatmap: np.ndarray  # float32


@dataclass(frozen=True)
class Saliency:
    model_id: str
    horizon_years: int
    slices: tuple[SliceSaliency, ...]  # by attention, highest first
    crop_yx_side: tuple[float, float, float] | None  # the input's square crop, volume voxels
    method: str = METHOD

    @property
    def legend(self) -> str:
        return SALIENCY_LEGEND.format(h=self.horizon_years)


def grad_cam(net: EnsembleNet, x: torch.Tensor, *, horizon_index: int, top: int = 3
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (T,), heatmaps (T, S, S) in [0, 1], attention (K,)) for one scan.

    x: (1, K, 3, S, S) float in [0, 1]. Grad-CAM needs d risk / d feature maps only, so the
    backbone runs without a graph (once when the folds share it) and gradients stop at its
    feature maps; the model's weights are not touched.
    """
    net.eval()
    k, s = x.shape[1], x.shape[-1]
    flat = x.reshape(k, *x.shape[2:])  # (K, 3, S, S)
    cams, atts, maps = [], [], None
    for f in range(len(net.heads)):
        encoder, head = net.fold_net(f)
        if maps is None or not net.shared_encoder:
            with torch.no_grad():
                maps = [m.float() for m in encoder.stage_maps(flat)]  # [(K, C_i, h_i, w_i)]
        leaves = [m.detach().requires_grad_(True) for m in maps]
        with torch.enable_grad():
            emb = torch.cat([m.mean(dim=(2, 3)) for m in leaves], dim=1)  # (K, D)
            logits, att = head(emb.reshape(1, k, -1))  # (1, K, D) in
            risk = cumulative_risk(logits)[0, horizon_index]
            grads = torch.autograd.grad(risk, leaves)  # [(K, C_i, h_i, w_i)]
        cams.append(_fused_cam(leaves, grads, s))  # (K, S, S)
        atts.append(att[0].detach().float())  # (K,)
    cam = torch.stack(cams).mean(dim=0).cpu().numpy()  # (K, S, S)
    attention = torch.stack(atts).mean(dim=0).cpu().numpy()  # (K,)
    positions = np.argsort(-attention, kind="stable")[:max(1, min(top, k))]
    chosen = cam[positions]  # (T, S, S)
    peak = float(chosen.max())
    heat = chosen / peak if peak > 0 else np.zeros_like(chosen)
    return positions, heat.astype(np.float32), attention.astype(np.float32)


def _fused_cam(maps: list[torch.Tensor], grads: tuple[torch.Tensor, ...],
               size: int) -> torch.Tensor:
    """Grad-CAM of each pooled stage, upsampled to S x S, each scaled to a maximum of 1 over
    the K slices, then averaged over stages (one stage: plain Grad-CAM). -> (K, S, S)."""
    fused = []
    for fmap, grad in zip(maps, grads):
        weights = grad.mean(dim=(2, 3), keepdim=True)  # (K, C, 1, 1)
        cam = F.relu((weights * fmap.detach()).sum(dim=1, keepdim=True))  # (K, 1, h, w)
        cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
        peak = cam.max()
        fused.append(cam[:, 0] / peak if peak > 0 else cam[:, 0])  # (K, S, S)
    return torch.stack(fused).mean(dim=0)


def saliency_for_volume(hu: np.ndarray, lung_mask: np.ndarray, *, model_id: str,
                        models_dir: Path, device: str = "auto", horizon_years: int = 5,
                        top: int = 3, expected_sha256: str | None = None) -> Saliency:
    """Grad-CAM of a registered deep model on one volume (hu, lung_mask: (z, y, x))."""
    if horizon_years not in HORIZONS_YEARS:
        raise ValueError(f"horizon must be one of {HORIZONS_YEARS}, got {horizon_years}")
    dev = select_device(device)
    loaded = load_deep_model(Path(models_dir), model_id, dev, expected_sha256)
    k, size = int(loaded.card.config["n_slices"]), int(loaded.card.config["image_size"])
    x8 = input_for_volume(hu, lung_mask, k=k, size=size)  # (K, 3, S, S) uint8
    x = torch.from_numpy(x8[None]).float().div_(255.0).to(dev.torch)  # (1, K, 3, S, S)
    positions, heat, attention = grad_cam(loaded.net, x, top=top,
                                          horizon_index=HORIZONS_YEARS.index(horizon_years))
    z = slice_indices(lung_mask.astype(bool), k)
    slices = tuple(SliceSaliency(int(p), int(z[p]), float(attention[p]), x8[p, 0].copy(),
                                 heat[i]) for i, p in enumerate(positions))
    return Saliency(model_id, horizon_years, slices, square_crop(lung_mask.astype(bool)))


# ---------------------------------------------------------------------------------------------
# storage (explanation_arrays); drawing is sscmort_core.views.render's
# ---------------------------------------------------------------------------------------------
def to_payload(sal: Saliency) -> tuple[bytes, dict[str, object]]:
    """Compressed arrays (heatmaps quantised to uint8) and JSON meta for the store."""
    buf = io.BytesIO()
    np.savez_compressed(
        buf, images=np.stack([s.image for s in sal.slices]),  # (T, S, S) uint8
        heatmaps=np.stack([np.rint(s.heatmap * 255) for s in sal.slices]).astype(np.uint8))
    meta = {"method": sal.method, "horizon_years": sal.horizon_years,
            "positions": [s.position for s in sal.slices],
            "z_index": [s.z_index for s in sal.slices],
            "attention": [s.attention for s in sal.slices],
            "crop_yx_side": list(sal.crop_yx_side) if sal.crop_yx_side else None,
            "legend": sal.legend}
    return buf.getvalue(), meta


def from_payload(model_id: str, payload: bytes, meta: dict) -> Saliency:
    arrays = np.load(io.BytesIO(payload))
    slices = tuple(SliceSaliency(int(p), None if z is None else int(z), float(a), img,
                                 hm.astype(np.float32) / 255.0)
                   for p, z, a, img, hm in zip(meta["positions"], meta["z_index"],
                                               meta["attention"], arrays["images"],
                                               arrays["heatmaps"]))
    crop = meta.get("crop_yx_side")
    return Saliency(model_id, int(meta["horizon_years"]), slices,
                    tuple(crop) if crop else None, meta.get("method", METHOD))


def explain_scan(store: st_store.Store, scan_id: str, model_id: str, *, models_dir: Path,
                 device: str = "auto", horizon_years: int = 5, top: int = 3) -> Saliency:
    """Saliency of a stored scan: read from the store when it was computed with these weights
    and ``top``, else computed and written there."""
    kind = saliency_kind(horizon_years)
    row = st_store.model_row(store, model_id)
    sha = row.get("weights_sha256") if row else None
    hit = st_store.explanation_array(store, model_id, scan_id, kind)
    if hit is not None and (hit[1].get("weights_sha256"), hit[1].get("top")) == (sha, top):
        return from_payload(model_id, *hit)
    scan = load_scan_with_lungs(store, scan_id)
    sal = saliency_for_volume(scan.volume.hu, scan.lungs.mask, model_id=model_id,
                              models_dir=models_dir, device=device,
                              horizon_years=horizon_years, top=top, expected_sha256=sha)
    payload, meta = to_payload(sal)
    meta = {**meta, "weights_sha256": sha, "top": top}
    with store.transaction() as cur:
        st_store.put_explanation_array(cur, model_id, scan_id, kind, payload, meta)
    return sal
