"""Per-horizon recalibration of a tabular model's risks (pure: risks and follow-up in, a map
out).

At each horizon ``h`` the map is ``logit p' = a_h + b_h logit p``, fitted by IPCW-weighted
logistic recalibration (:func:`sscmort_core.evaluation.ipcw_calibration_intercept_slope`:
deaths by ``h`` weighted ``1 / G(T-)``, scans known alive at ``h`` weighted ``1 / G(h)``), so
censored scans neither count as survivors nor bias the map. The recalibrated risks of a scan
are then made monotone across horizons by the running maximum (as every tabular risk is).

Fitting is the caller's business and must never see the scans being scored: training
(:mod:`.train`) fits each outer fold's map on inner out-of-fold risks of that fold's training
scans only, and the map stored with the final model on the outer out-of-fold risks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from sscmort_core.errors import MetricInputError
from sscmort_core.evaluation import ipcw_calibration_intercept_slope
from sscmort_core.labels import HORIZONS_YEARS

_P_CLIP = 1e-6


@dataclass(frozen=True)
class Recalibration:
    """Intercepts a (3,) and slopes b (3,), one per horizon of :data:`HORIZONS_YEARS`;
    ``identity`` (3,) bool marks horizons left as they were (the fit was impossible: its
    reason in ``notes``)."""

    intercepts: tuple[float, ...]
    slopes: tuple[float, ...]
    identity: tuple[bool, ...]
    n_scans: int
    notes: tuple[str, ...] = ()

    def apply(self, risks: np.ndarray) -> np.ndarray:
        """(n, 3) risks -> (n, 3) recalibrated risks (not yet monotone)."""
        lp = logit(np.clip(np.asarray(risks, dtype=float), _P_CLIP, 1 - _P_CLIP))
        return expit(np.asarray(self.intercepts) + np.asarray(self.slopes) * lp)

    def describe(self) -> list[dict[str, object]]:
        """Per horizon: intercept, slope, and whether it was left unchanged (model cards)."""
        return [{"horizon_years": h, "intercept": a, "slope": b, "unchanged": i}
                for h, a, b, i in zip(HORIZONS_YEARS, self.intercepts, self.slopes,
                                      self.identity)]


def fit_recalibration(time_years: np.ndarray, event: np.ndarray,
                      risks: np.ndarray) -> Recalibration:
    """Fit the per-horizon maps on out-of-fold ``risks`` (n, 3) of scans with follow-up
    ``time_years`` (n,) and ``event`` (n,) (module docstring)."""
    a, b, ident, notes = [], [], [], []
    for j, h in enumerate(HORIZONS_YEARS):
        try:
            cal = ipcw_calibration_intercept_slope(time_years, np.asarray(event, int),
                                                   risks[:, j], h)
            if not (np.isfinite(cal.slope) and cal.slope > 0):
                raise MetricInputError(f"slope {cal.slope:.3g} is not positive")
            a.append(float(cal.slope_intercept))
            b.append(float(cal.slope))
            ident.append(False)
        except MetricInputError as err:
            a.append(0.0)
            b.append(1.0)
            ident.append(True)
            notes.append(f"{h} y left unchanged: {err}")
    return Recalibration(tuple(a), tuple(b), tuple(ident), int(len(risks)), tuple(notes))


def monotone_recalibrated(recalibration: Recalibration | None,
                          risks: np.ndarray) -> np.ndarray:
    """(n, 3) risks through ``recalibration`` (None: unchanged) and the running maximum."""
    out = risks if recalibration is None else recalibration.apply(risks)
    return np.maximum.accumulate(out, axis=1)
