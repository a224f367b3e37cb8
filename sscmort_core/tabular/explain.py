"""SHAP explanations of the tabular models (pure: a fitted model and feature rows in, values out).

SHAP values are in log-odds (the models' decision function before the sigmoid and before the
monotone running maximum): for every scan and horizon, ``base_value + sum(values)`` equals the
model's log-odds. Logistic models use shap's LinearExplainer (independent masker over a
training background), boosted trees its TreeExplainer (path-dependent, exact). The
discrete-time survival model's log-odds of death by a horizon is a monotone function ``g`` of
one linear predictor ``eta = beta . z``; its values are the linear contributions
``beta_i (z_i - mean_i)`` (over the same background) rescaled by
``(g(eta) - g(eta_bg)) / (eta - eta_bg)`` (the rescale rule of DeepLIFT, Shrikumar et al.
2017), so they add up exactly and keep the linear model's signs and proportions. The frames the
Radiomics & SHAP page draws are in :mod:`sscmort_core.views.radiomics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sscmort_core.labels import HORIZONS_YEARS

SHAP_KIND = "shap"


@dataclass(frozen=True)
class ShapValues:
    """values: (3, n, p) log-odds contributions; base: (3,) base values; logits: (3, n)."""

    explainer: str
    values: np.ndarray = field(repr=False)
    base: np.ndarray = field(repr=False)
    logits: np.ndarray = field(repr=False)

    @property
    def max_additivity_error(self) -> float:
        recon = self.base[:, None] + self.values.sum(axis=2)  # (3, n)
        return float(np.max(np.abs(recon - self.logits))) if self.logits.size else 0.0

    def rows(self, model_id: str, scan_ids: Sequence[str], feature_names: Sequence[str],
             x: np.ndarray) -> pd.DataFrame:
        """Long rows for the explanations table (x: (n, p) raw feature values)."""
        n_h, n, p = self.values.shape
        ids = np.asarray(scan_ids, dtype=object)
        frames = []
        for j in range(n_h):
            frames.append(pd.DataFrame({
                "model_id": model_id, "scan_id": np.repeat(ids, p),
                "horizon_years": HORIZONS_YEARS[j], "kind": SHAP_KIND,
                "feature": np.tile(np.asarray(feature_names, dtype=object), n),
                "value": self.values[j].reshape(-1),  # (n * p,) scan-major
                "feature_value": x.reshape(-1), "base_value": float(self.base[j])}))
        return pd.concat(frames, ignore_index=True)


def _explain_horizon(hm: Any, z: np.ndarray) -> tuple[np.ndarray, float, str]:
    """((n, p) SHAP values, base value, explainer name) of one fitted horizon model."""
    import shap  # heavy: numba, scikit-learn

    if hm.estimator is None:
        return np.zeros_like(z), float(hm.constant_logit), "constant"
    if hm.algorithm == "discrete_time":
        return _rescaled_linear(hm, z)
    if hm.algorithm == "logistic":
        masker = shap.maskers.Independent(hm.background, max_samples=len(hm.background))
        ex = shap.LinearExplainer(hm.estimator, masker)
        values = np.asarray(ex.shap_values(z), dtype=float)
        return values, float(np.ravel(ex.expected_value)[0]), "LinearExplainer"
    ex = shap.TreeExplainer(hm.estimator)
    values = np.asarray(ex.shap_values(z), dtype=float)
    if values.ndim == 3:  # (n, p, classes) in some shap versions: keep the positive class
        values = values[..., -1]
    base = float(np.ravel(ex.expected_value)[-1])
    return values, base, "TreeExplainer"


def _rescaled_linear(hm: Any, z: np.ndarray) -> tuple[np.ndarray, float, str]:
    """Rescale-rule attributions of a discrete-time survival horizon (module docstring)."""
    est = hm.estimator
    beta, j = est.hazard.beta, est.horizon_index
    mean = hm.background.mean(axis=0) if len(hm.background) else np.zeros(len(beta))
    linear = (z - mean) * beta  # (n, p)
    eta, eta_bg = linear.sum(axis=1) + float(mean @ beta), float(mean @ beta)
    g = est.hazard.cumulative_logit(eta, j)
    g_bg = float(est.hazard.cumulative_logit(np.array([eta_bg]), j)[0])
    d = eta - eta_bg
    tiny = np.abs(d) < 1e-9
    h = 1e-6  # slope at the background where eta is (almost) eta_bg
    slope_bg = float((est.hazard.cumulative_logit(np.array([eta_bg + h]), j)[0]
                      - est.hazard.cumulative_logit(np.array([eta_bg - h]), j)[0]) / (2 * h))
    ratio = np.where(tiny, slope_bg, (g - g_bg) / np.where(tiny, 1.0, d))
    return linear * ratio[:, None], g_bg, "rescaled linear (discrete-time survival)"


def shap_values(model: Any, x: np.ndarray) -> ShapValues:
    """SHAP values of a :class:`~sscmort_core.tabular.TabularModel` for raw rows x (n, p)."""
    values, bases, logits, names = [], [], [], set()
    for hm in model.horizons:
        z = hm.standardise(x)  # (n, p)
        v, b, name = _explain_horizon(hm, z)
        values.append(v)
        bases.append(b)
        logits.append(hm.logit(x))
        names.add(name)
    return ShapValues(explainer=" / ".join(sorted(names)), values=np.stack(values),
                      base=np.asarray(bases), logits=np.stack(logits))
