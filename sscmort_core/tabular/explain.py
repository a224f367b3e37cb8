"""SHAP explanations of the tabular models (pure: a fitted model and feature rows in, values out).

SHAP values are in log-odds (the models' decision function before the sigmoid and before the
monotone running maximum): for every scan and horizon, ``base_value + sum(values)`` equals the
model's log-odds. Logistic models use shap's LinearExplainer (independent masker over a
training background), boosted trees its TreeExplainer (path-dependent, exact). The frames the
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
