"""ILD pattern map: every lung voxel classified as normal, emphysema, ground glass,
reticulation, honeycombing or consolidation from its local density histogram.

Features (per lung voxel of the mask, on a working grid of about :data:`TARGET_INPLANE_MM`
in-plane, from lung voxels only so the chest wall never leaks in; :data:`FEATURES`): in-plane
means over 3, 5 and 7 pixels (relative to the scan's median lung density), standard
deviations over 3 and 5 pixels (relative to the scan's noise), the shares of air
(< -910 HU) over 3 and 5 pixels, of ground-glass density (-750..-300 HU) and of dense tissue
(> -250 HU) over 5 pixels, the share of the 5-pixel window inside the lung (rim voxels see
less lung) and the scan's noise - the local-histogram subtyping of the Chest Imaging
Platform, reduced to eleven numbers.

Classifier: quadratic discriminant analysis (a Gaussian per class, closed form: means,
covariances, priors) over the six patterns plus vessels (shown as normal lung), fitted on the
synthetic phantoms' true patterns by :mod:`sscmort_core.pipeline.pattern_fit` and shipped as
``params/patterns.json`` (the file records the phantoms, samples and code it was made from; a
test refits it and compares). Each voxel takes the pattern of largest posterior, and
honeycombing also where it has the largest posterior averaged over the lung voxels of a
:data:`SMOOTH_WINDOW` window (patterns-2: honeycombing is a cluster of cysts and walls, and
one voxel of it reads as air or as a line; patterns-7: 3 x 3 x 3 voxels, the slices above and
below included, where patterns-2 to -6 averaged 5 x 5 in-plane). Emphysema is the classic
density rule instead: a 3-pixel mean below :data:`EMPHYSEMA_HU` with little dense tissue
around (cysts with walls are honeycombing).

Extents (patterns-7): honeycombing and consolidation keep only their 26-connected 3-D
clusters larger than the largest false cluster of them the map finds in the training
phantoms without them (``min_cluster_pct``, :func:`drop_small_clusters`); a voxel of a
dropped cluster takes the most probable of normal, ground glass and reticulation by its own
posterior. A true honeycomb or consolidation is a lump while false calls are scattered
specks, so the rule keeps small true extents that a flat floor would zero (patterns-6 zeroed
honeycombing up to 1.26 % of the lung). Every other pattern's extent at or below its
detection floor (the most the map finds of it in training phantoms without it, at least
:data:`MIN_FLOOR_PCT`) is reported as 0; the clustered patterns' floors are measured after the
cluster rule (0 on the training phantoms, by construction) and are not raised to
MIN_FLOOR_PCT.

Labels: 0 outside the lung, 1.. in the order of :data:`PATTERNS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from scipy import ndimage as ndi
from threadpoolctl import threadpool_limits

from sscmort_core.errors import EmptyMaskError
from sscmort_core.lungs.segmentation import block_count, block_mean

PATTERNS: tuple[str, ...] = ("normal", "emphysema", "ground glass", "reticulation",
                             "honeycombing", "consolidation")
CLASSES: tuple[str, ...] = PATTERNS + ("vessel",)  # what the classifier tells apart
CLASS_PATTERN = np.array([0, 1, 2, 3, 4, 5, 0])  # (k,) the pattern of each class
ILD_PATTERNS: tuple[str, ...] = ("ground glass", "reticulation", "honeycombing", "consolidation")
PATTERN_COLORS: tuple[tuple[int, int, int], ...] = (  # RGB per pattern, for overlays
    (120, 200, 120), (80, 170, 255), (255, 225, 60), (255, 140, 20), (220, 30, 30),
    (190, 60, 200))
FEATURES: tuple[str, ...] = ("mean3_rel", "mean5_rel", "mean7_rel", "std3_rel", "std5_rel",
                             "air3", "air5", "ggo5", "dense5", "lung5", "noise_hu")
PARAMS_FILE = Path(__file__).with_name("params") / "patterns.json"
TARGET_INPLANE_MM = 1.5  # the same working grid as the lung mask
AIR_HU, GGO_HU, DENSE_HU = -910.0, (-750.0, -300.0), -250.0
EMPHYSEMA_HU, EMPHYSEMA_MAX_DENSE = -930.0, 0.1  # the emphysema rule (3-pixel mean, dense5)
MIN_FLOOR_PCT = 0.5  # no pattern is reported below this share of the lung
SMOOTH_WINDOW = (3, 3, 3)  # (z, y, x) voxels: honeycombing's posterior averaged over lung
# Voxels classified at a time: a chunk's (rows, k*f) products stay in cache, and a multiple of
# the SIMD width gives the same values as one pass. One BLAS thread: a threaded product of
# this size costs several times the CPU (threads spinning) for no gain on a busy machine.
ROW_CHUNK = 8192
CLUSTER_STRUCTURE = np.ones((3, 3, 3), dtype=bool)  # 26-connected 3-D clusters
# what a voxel of a dropped cluster becomes: the most probable of these (by its own posterior;
# emphysema is a density rule, and the clustered patterns are not offered)
FALLBACK_PATTERNS: tuple[str, ...] = ("normal", "ground glass", "reticulation")


_FALLBACK = np.array([PATTERNS.index(n) for n in FALLBACK_PATTERNS])


@dataclass(frozen=True)
class PatternModel:
    """A fitted QDA over :data:`CLASSES`: ``means`` (k, f), ``precisions_chol`` (k, f, f)
    with precision = L @ L.T, ``log_det`` (k,) = log |precision| / 2, ``log_prior`` (k,),
    ``floors_pct`` (6,) the detection floor of each pattern and ``min_cluster_pct`` (6,) the
    cluster rule's threshold (% of the lung; 0: no cluster rule for that pattern)."""

    version: str
    means: np.ndarray = field(repr=False)
    precisions_chol: np.ndarray = field(repr=False)
    log_det: np.ndarray = field(repr=False)
    log_prior: np.ndarray = field(repr=False)
    floors_pct: np.ndarray = field(repr=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)
    min_cluster_pct: np.ndarray = field(default_factory=lambda: np.zeros(len(PATTERNS)),
                                        repr=False)

    @staticmethod
    def fit(x: np.ndarray, y: np.ndarray, priors: np.ndarray, *, version: str,
            ridge: float = 1e-3, provenance: Mapping[str, Any] | None = None) -> PatternModel:
        """Closed-form QDA on features ``x`` (n, f) and class indices ``y`` (n,) into
        CLASSES; ``priors`` (k,) class shares; each covariance gets ``ridge`` x its mean
        variance on the diagonal (a class with few samples stays invertible). Floors start
        at MIN_FLOOR_PCT (:meth:`with_floors` sets them from data)."""
        k, f = len(CLASSES), x.shape[1]
        means, chols, log_det = np.zeros((k, f)), np.zeros((k, f, f)), np.zeros(k)
        for c in range(k):
            xc = x[y == c].astype(np.float64)
            if len(xc) < f + 1:
                raise ValueError(f"class {CLASSES[c]!r} has {len(xc)} samples; "
                                 f"need at least {f + 1}")
            means[c] = xc.mean(axis=0)
            cov = np.cov(xc, rowvar=False)
            cov += ridge * np.trace(cov) / f * np.eye(f)
            prec = np.linalg.inv(cov)
            chols[c] = np.linalg.cholesky(0.5 * (prec + prec.T))
            log_det[c] = float(np.sum(np.log(np.diag(chols[c]))))
        p = np.asarray(priors, dtype=np.float64)
        return PatternModel(version, means, chols, log_det, np.log(p / p.sum()),
                            np.full(len(PATTERNS), MIN_FLOOR_PCT), dict(provenance or {}))

    def with_clusters(self, min_cluster_pct: np.ndarray) -> PatternModel:
        """This model with cluster-rule thresholds ``min_cluster_pct`` (6,) (0: no rule)."""
        mc = np.asarray(min_cluster_pct, dtype=np.float64)
        if mc.shape != (len(PATTERNS),) or (mc < 0).any() or mc[0] != 0:
            raise ValueError("min_cluster_pct must be 6 shares >= 0, none for normal")
        return PatternModel(self.version, self.means, self.precisions_chol, self.log_det,
                            self.log_prior, self.floors_pct, self.provenance, mc)

    def with_floors(self, floors_pct: np.ndarray) -> PatternModel:
        """This model with detection floors ``floors_pct`` (6,), each at least MIN_FLOOR_PCT
        except for the patterns under a cluster rule (their floors are taken as given)."""
        floors = np.asarray(floors_pct, dtype=np.float64)
        floors = np.where(self.min_cluster_pct > 0, floors, np.maximum(floors, MIN_FLOOR_PCT))
        return PatternModel(self.version, self.means, self.precisions_chol, self.log_det,
                            self.log_prior, floors, self.provenance, self.min_cluster_pct)

    def log_posterior(self, x: np.ndarray) -> np.ndarray:
        """(n, k) unnormalised log posterior of each class for features ``x`` (n, f)."""
        x = np.asarray(x, dtype=np.float32)
        stacked, shift, const = self._stacked()
        out = np.empty((x.shape[0], self.means.shape[0]), np.float32)
        with threadpool_limits(1, user_api="blas"):  # see ROW_CHUNK
            for lo in range(0, x.shape[0], ROW_CHUNK):
                out[lo:lo + ROW_CHUNK] = self._log_posterior_rows(x[lo:lo + ROW_CHUNK],
                                                                  stacked, shift, const)
        return out

    def _stacked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(f, k*f) every class's Cholesky factor side by side (one product for all), the
        (k*f,) shift of the means and the (k,) constant, all float32."""
        chol = self.precisions_chol.astype(np.float32)  # (k, f, f)
        stacked = np.concatenate(list(chol), axis=1)
        shift = np.einsum("kf,kfg->kg", self.means.astype(np.float32), chol).reshape(-1)
        return stacked, shift, (self.log_det + self.log_prior).astype(np.float32)

    def _log_posterior_rows(self, x: np.ndarray, stacked: np.ndarray, shift: np.ndarray,
                            const: np.ndarray) -> np.ndarray:
        k, f = self.means.shape
        d = x @ stacked  # (n, k*f)
        d -= shift
        np.square(d, out=d)
        quad = d.reshape(x.shape[0], k, f).sum(axis=2)  # (n, k)
        return const - 0.5 * quad

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n,) pattern index (into PATTERNS; vessels are normal) of each row of ``x``, voxel
        by voxel (no smoothing), before the emphysema rule."""
        return CLASS_PATTERN[np.argmax(self.log_posterior(x), axis=1)]

    def pattern_posterior(self, x: np.ndarray) -> np.ndarray:
        """(n, 6) posterior probability of each pattern (PATTERNS) for features ``x``
        (n, f): the classes' posteriors summed per pattern."""
        x = np.asarray(x, dtype=np.float32)
        stacked, shift, const = self._stacked()
        out = np.zeros((x.shape[0], len(PATTERNS)), np.float32)
        with threadpool_limits(1, user_api="blas"):  # see ROW_CHUNK
            for lo in range(0, x.shape[0], ROW_CHUNK):
                self._posterior_rows(x[lo:lo + ROW_CHUNK], stacked, shift, const,
                                     out[lo:lo + ROW_CHUNK])
        return out

    def _posterior_rows(self, x: np.ndarray, stacked: np.ndarray, shift: np.ndarray,
                        const: np.ndarray, out: np.ndarray) -> None:
        """Add the pattern posteriors of the rows ``x`` (n, f) into ``out`` (n, 6), zeros."""
        logp = self._log_posterior_rows(x, stacked, shift, const)
        logp -= logp.max(axis=1, keepdims=True)
        post = np.exp(logp)
        post /= post.sum(axis=1, keepdims=True)
        for c, pat in enumerate(CLASS_PATTERN):
            out[:, pat] += post[:, c]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "classes": list(CLASSES), "features": list(FEATURES),
                "means": self.means.tolist(), "precisions_chol": self.precisions_chol.tolist(),
                "log_det": self.log_det.tolist(), "log_prior": self.log_prior.tolist(),
                "floors_pct": self.floors_pct.tolist(),
                "min_cluster_pct": self.min_cluster_pct.tolist(),
                "provenance": dict(self.provenance)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> PatternModel:
        if list(data["classes"]) != list(CLASSES) or list(data["features"]) != list(FEATURES):
            raise ValueError("pattern model file was made for other classes or features")
        return PatternModel(str(data["version"]), np.asarray(data["means"]),
                            np.asarray(data["precisions_chol"]), np.asarray(data["log_det"]),
                            np.asarray(data["log_prior"]), np.asarray(data["floors_pct"]),
                            dict(data.get("provenance", {})),
                            np.asarray(data.get("min_cluster_pct", np.zeros(len(PATTERNS))),
                                       dtype=np.float64))


@lru_cache(maxsize=1)
def default_model() -> PatternModel:
    """The shipped model (``params/patterns.json``), read once."""
    return PatternModel.from_json(json.loads(PARAMS_FILE.read_text()))


def pattern_model_version() -> str:
    """The shipped model's version (what stored pattern extents are keyed on)."""
    return default_model().version


class _LungWindows:
    """In-plane w x w means over the lung voxels ``lung`` (z, y, x) only (or any (z, y, x)
    window given as a tuple); each window's shares (how much of it is lung) are filtered once
    for every mean over that window."""

    def __init__(self, lung: np.ndarray) -> None:
        self.lung = lung
        self._share: dict[int, np.ndarray] = {}
        self._denominator: dict[int, np.ndarray] = {}

    def share(self, w: int | tuple[int, int, int]) -> np.ndarray:
        """(z, y, x) float32: the share of the w x w window (or the (z, y, x) window ``w``)
        around each voxel inside the lung."""
        if w not in self._share:
            self._share[w] = ndi.uniform_filter(self.lung.astype(np.float32), size=_size(w),
                                                mode="constant")
        return self._share[w]

    def mean(self, values: np.ndarray, w: int | tuple[int, int, int]) -> np.ndarray:
        """(z, y, x) float32 w x w (or (z, y, x) window ``w``) mean of ``values`` over the
        lung voxels."""
        if w not in self._denominator:
            self._denominator[w] = np.maximum(self.share(w), np.float32(1e-6))
        inside = ((values & self.lung).astype(np.float32) if values.dtype == bool
                  else np.where(self.lung, values, 0.0).astype(np.float32, copy=False))
        total = ndi.uniform_filter(inside, size=_size(w), mode="constant")
        total /= self._denominator[w]
        return total


def _size(w: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (1, w, w) if isinstance(w, int) else tuple(int(v) for v in w)  # type: ignore


def _lung_box_mean(values: np.ndarray, m: np.ndarray, w: int) -> np.ndarray:
    """In-plane w x w mean of ``values`` over lung voxels ``m`` only: (z, y, x) float32."""
    return _LungWindows(m).mean(values, w)


def noise_hu(hu: np.ndarray, lung: np.ndarray) -> float:
    """The scan's noise: robust SD (1.4826 MAD) of each lung voxel's difference from its
    3 x 3 lung mean, scaled for the mean's share of the voxel (x 9/8 in variance)."""
    h = hu.astype(np.float32, copy=False)
    return _noise(h[lung], _LungWindows(lung).mean(h, 3)[lung])


def _noise(h_lung: np.ndarray, mean3_lung: np.ndarray) -> float:
    """:func:`noise_hu` from the lung voxels' values and 3 x 3 lung means (float32)."""
    resid = h_lung - mean3_lung
    return float(1.4826 * np.median(np.abs(resid - np.median(resid))) * np.sqrt(9.0 / 8.0))


def voxel_features(hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """(n, 11) float32 features (:data:`FEATURES`) of the lung voxels of ``lung``
    (z, y, x) in C order, from ``hu`` (z, y, x) on the working grid."""
    return _features(hu, _LungWindows(lung))[0]


def _features(hu: np.ndarray, win: _LungWindows) -> tuple[np.ndarray, np.ndarray]:
    """:func:`voxel_features`, and the lung voxels' 3-pixel means (the emphysema rule's)."""
    lung = win.lung
    h = hu.astype(np.float32, copy=False)
    mean = {w: win.mean(h, w)[lung] for w in (3, 5, 7)}  # each (n,): the lung voxels only
    hh = h * h
    std = {w: np.sqrt(np.maximum(win.mean(hh, w)[lung] - mean[w] ** 2, 0.0)) for w in (3, 5)}
    del hh
    air = h < AIR_HU
    share = {w: win.mean(air, w)[lung] for w in (3, 5)}
    ggo = win.mean((h >= GGO_HU[0]) & (h <= GGO_HU[1]), 5)[lung]
    dense = win.mean(h > DENSE_HU, 5)[lung]
    inside = win.share(5)[lung]
    med = float(np.median(mean[5]))
    noise = max(_noise(h[lung], mean[3]), 1.0)
    cols = [mean[3] - med, mean[5] - med, mean[7] - med, std[3] / noise, std[5] / noise,
            share[3], share[5], ggo, dense, inside]
    x = np.empty((len(inside), len(FEATURES)), np.float32)
    for j, c in enumerate(cols):
        x[:, j] = c
    x[:, -1] = noise
    return x, mean[3]


def emphysema_rule(x: np.ndarray, hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """(n,) bool of the lung voxels (C order): 3-pixel mean below EMPHYSEMA_HU and dense
    share (feature dense5) at most EMPHYSEMA_MAX_DENSE."""
    return _emphysema(x, _lung_box_mean(hu.astype(np.float32), lung, 3)[lung])


def _emphysema(x: np.ndarray, mean3_lung: np.ndarray) -> np.ndarray:
    return (mean3_lung < EMPHYSEMA_HU) & (x[:, FEATURES.index("dense5")] <= EMPHYSEMA_MAX_DENSE)


def smoothed_patterns(post: np.ndarray, lung: np.ndarray,
                      w: int | tuple[int, int, int]) -> np.ndarray:
    """(n,) the pattern (PATTERNS) of largest posterior ``post`` (n, 6) voxel by voxel, and
    honeycombing also where it has the largest posterior once every pattern's posterior is
    averaged over the lung voxels of a w x w in-plane window (or the (z, y, x) window ``w``):
    a honeycomb cluster is cysts and walls together, and one voxel alone reads as air or as a
    line."""
    return _smoothed(post, _LungWindows(lung), w)


def _smoothed(post: np.ndarray, win: _LungWindows, w: int | tuple[int, int, int]) -> np.ndarray:
    pred = np.argmax(post, axis=1)
    if max(_size(w)) <= 1:
        return pred
    lung = win.lung
    avg = np.empty_like(post)
    vol = np.zeros(lung.shape, np.float32)
    for j in range(post.shape[1]):
        vol[lung] = post[:, j]
        avg[:, j] = win.mean(vol, w)[lung]
    honey = PATTERNS.index("honeycombing")
    pred[np.argmax(avg, axis=1) == honey] = honey
    return pred


def predict_patterns(model: PatternModel, hu: np.ndarray, lung: np.ndarray) -> np.ndarray:
    """(n,) pattern index (PATTERNS) of each lung voxel of ``lung`` (C order), working grid:
    the largest posterior, honeycombing also where its posterior smoothed over SMOOTH_WINDOW
    is the largest (:func:`smoothed_patterns`), then the emphysema rule."""
    return predict_with_fallback(model, hu, lung)[0]


def predict_with_fallback(model: PatternModel, hu: np.ndarray,
                          lung: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`predict_patterns` and (n,) each voxel's fallback: the pattern of largest
    posterior among :data:`FALLBACK_PATTERNS` (what a voxel of a dropped cluster becomes)."""
    win = _LungWindows(lung)
    x, mean3 = _features(hu, win)
    post = model.pattern_posterior(x)
    pred = _smoothed(post, win, SMOOTH_WINDOW)
    emph = PATTERNS.index("emphysema")
    pred = np.where(pred == emph, 0, pred)
    fallback = _FALLBACK[np.argmax(post[:, _FALLBACK], axis=1)]
    return np.where(_emphysema(x, mean3), emph, pred), fallback


def cluster_sizes_pct(labels: np.ndarray, weights: np.ndarray, pattern: int,
                      total: float) -> tuple[np.ndarray, np.ndarray]:
    """The 26-connected 3-D clusters of ``pattern`` (index into PATTERNS) in ``labels``
    (z, y, x) uint8 (0 outside the lung, 1.. PATTERNS): (z, y, x) int32 cluster ids (0 none)
    and (m + 1,) float64 each cluster's size in % of ``total``, where a voxel counts as its
    ``weights`` (z, y, x) (the input voxels of lung it stands for); entry 0 is unused."""
    ids, m = ndi.label(labels == pattern + 1, structure=CLUSTER_STRUCTURE)
    sizes = np.bincount(ids.ravel(), weights=weights.ravel(), minlength=m + 1)
    return ids, 100.0 * sizes / total


def largest_cluster_pct(labels: np.ndarray, weights: np.ndarray, pattern: int,
                        total: float) -> float:
    """The largest 26-connected cluster of ``pattern`` in % of ``total`` (0 if none)."""
    sizes = cluster_sizes_pct(labels, weights, pattern, total)[1]
    return float(sizes[1:].max()) if sizes.size > 1 else 0.0


def drop_small_clusters(labels: np.ndarray, weights: np.ndarray,
                        min_cluster_pct: np.ndarray,
                        fallback: np.ndarray | None = None) -> np.ndarray:
    """``labels`` (z, y, x) uint8 (0 outside, 1.. PATTERNS) with every 26-connected 3-D
    cluster of a pattern k of at most ``min_cluster_pct[k]`` % of the lung relabelled with
    ``fallback`` (z, y, x) uint8 labels there (None: normal) (patterns with a threshold of 0
    untouched). ``weights`` (z, y, x): the input voxels of lung
    each voxel stands for (block counts on the working grid); the lung is their sum over
    ``labels > 0``. Deterministic; returns a new array."""
    out = labels.copy()
    total = float(weights[labels > 0].sum())
    for k in np.flatnonzero(np.asarray(min_cluster_pct) > 0):
        if not (labels == k + 1).any():
            continue
        ids, sizes = cluster_sizes_pct(labels, weights, int(k), total)
        small = sizes <= min_cluster_pct[k]
        small[0] = False
        drop = small[ids]
        out[drop] = 1 if fallback is None else fallback[drop]
    return out


@dataclass(frozen=True)
class PatternMap:
    """Pattern labels (z, y, x) uint8 on the input grid (0 outside the lung mask, 1.. in
    PATTERNS order) and the extent of each pattern in % of the lung mask."""

    labels: np.ndarray = field(repr=False)
    normal_pct: float
    emphysema_pct: float
    ground_glass_pct: float
    reticulation_pct: float
    honeycombing_pct: float
    consolidation_pct: float
    model_version: str

    def __post_init__(self) -> None:
        self.labels.flags.writeable = False

    @property
    def ild_pct(self) -> float:
        """ILD extent from the map: ground glass + reticulation + honeycombing + consolidation."""
        return (self.ground_glass_pct + self.reticulation_pct + self.honeycombing_pct
                + self.consolidation_pct)

    def extents(self) -> dict[str, float]:
        """Exactly the qct_patterns columns: normal_pct ... consolidation_pct."""
        return {"normal_pct": self.normal_pct, "emphysema_pct": self.emphysema_pct,
                "ground_glass_pct": self.ground_glass_pct,
                "reticulation_pct": self.reticulation_pct,
                "honeycombing_pct": self.honeycombing_pct,
                "consolidation_pct": self.consolidation_pct}


EXTENT_KEYS: tuple[str, ...] = ("normal_pct", "emphysema_pct", "ground_glass_pct",
                                "reticulation_pct", "honeycombing_pct", "consolidation_pct")


def _bbox(mask: np.ndarray) -> tuple[slice, slice, slice]:
    idx = [np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != ax)))[0] for ax in range(3)]
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)  # type: ignore[return-value]


def classify_patterns(hu: np.ndarray, lung_mask: np.ndarray,
                      spacing_mm: tuple[float, float, float],
                      model: PatternModel | None = None) -> PatternMap:
    """The pattern map of ``hu`` (z, y, x) HU over ``lung_mask`` (z, y, x) bool.

    Works on the lung mask's working grid (block means to about 1.5 mm in-plane); labels
    return to the input grid by nearest neighbour and are cut to the mask. Raises
    EmptyMaskError for an empty mask, ValueError for mismatched shapes.
    """
    if hu.shape != lung_mask.shape or hu.ndim != 3:
        raise ValueError(f"hu {hu.shape} and lung_mask {lung_mask.shape} must be the same "
                         "(z, y, x) shape")
    mask = lung_mask.astype(bool, copy=False)
    n = int(np.count_nonzero(mask))
    if n == 0:
        raise EmptyMaskError("the lung mask is empty, so no pattern map can be made")
    model = model or default_model()
    f = max(1, int(round(TARGET_INPLANE_MM / min(spacing_mm[1], spacing_mm[2]))))
    box = _bbox(mask)
    sub_hu, sub_mask = hu[box], mask[box]
    small = block_mean(sub_hu, f)  # (z, Y, X)
    weights = block_count(sub_mask, f, pad="constant")  # input lung voxels per block
    small_mask = weights > 0  # blocks holding lung
    classes = np.zeros(small.shape, dtype=np.uint8)
    if small_mask.any():
        pred, fallback = predict_with_fallback(model, small, small_mask)
        classes[small_mask] = pred.astype(np.uint8) + 1
        if (model.min_cluster_pct > 0).any():
            instead = np.zeros(small.shape, dtype=np.uint8)
            instead[small_mask] = fallback.astype(np.uint8) + 1
            classes = drop_small_clusters(classes, weights, model.min_cluster_pct, instead)
    up = np.repeat(np.repeat(classes, f, axis=1), f, axis=2)[:, :sub_hu.shape[1],
                                                             :sub_hu.shape[2]]
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[box] = np.where(sub_mask, up, 0)
    counts = np.bincount(labels[mask], minlength=len(PATTERNS) + 1)[1:]
    pct = 100.0 * counts / n
    below = np.flatnonzero(pct[1:] <= model.floors_pct[1:]) + 1  # not detected: normal
    if below.size:
        to_normal = np.arange(256, dtype=np.uint8)  # one look-up per voxel (uint8 labels)
        to_normal[below + 1] = 1
        labels = to_normal[labels]
        pct[below] = 0.0
        pct[0] = 100.0 - pct[1:].sum()
    return PatternMap(labels, *(float(v) for v in pct), model_version=model.version)
