"""What the Upload & predict page shows of an analysis: the risk table with the spread across
models, the saliency slices worth showing, the scan's geometry line. Pure (no Streamlit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from sscmort_core.cards import KIND_NAMES
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.predictions import RiskPrediction
from sscmort_core.views.names import format_risk, horizon_label

if TYPE_CHECKING:
    from sscmort_core.deep.saliency import Saliency

# a saliency slice is shown only where the lungs cover at least this share of their
# largest axial cross-section (so no slice of liver or neck under the top-attention mark)
MIN_LUNG_SHARE = 0.25


def risk_table(predictions: Sequence[RiskPrediction]) -> pd.DataFrame:
    """One row per model: Model, Kind, "1-year risk" ... as whole-percent text (one rule:
    :func:`format_risk`), Note (full text). Rows by 5-year risk, highest first."""
    rows = []
    for p in sorted(predictions, key=lambda p: -p.risk(HORIZONS_YEARS[-1])):
        rows.append({"Model": p.label, "Kind": KIND_NAMES.get(p.kind, p.kind.capitalize()),
                     **{f"{h}-year risk": format_risk(p.risk(h)) for h in HORIZONS_YEARS},
                     "Note": p.notes_text})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class RiskSpread:
    horizon_years: int
    low: float
    high: float
    median: float
    n_models: int

    @property
    def text(self) -> str:
        return (f"{horizon_label(self.horizon_years)}: {format_risk(self.low)} to "
                f"{format_risk(self.high)} (median {format_risk(self.median)})")


def risk_spread(predictions: Sequence[RiskPrediction],
                kinds_left_out: tuple[str, ...] = ("oracle",)) -> list[RiskSpread]:
    """Per horizon, the lowest, highest and median risk over the models (the oracle, which
    only exists for synthetic scans, left out)."""
    used = [p for p in predictions if p.kind not in kinds_left_out]
    if not used:
        return []
    out = []
    for h in HORIZONS_YEARS:
        r = np.array([p.risk(h) for p in used], dtype=float)
        out.append(RiskSpread(h, float(r.min()), float(r.max()), float(np.median(r)), len(r)))
    return out


def saliency_slices_shown(sal: Saliency, lung_mask: np.ndarray, n: int = 3) -> list[int]:
    """Indices into ``sal.slices`` to draw: the ``n`` highest-attention slices that lie within
    the lungs (lung area >= MIN_LUNG_SHARE of the largest; lung_mask: (z, y, x)), in caudal
    to cranial order (z ascending), so the row reads like the scan."""
    area = np.asarray(lung_mask, dtype=bool).sum(axis=(1, 2))  # (z,)
    floor = MIN_LUNG_SHARE * float(area.max()) if area.size else 0.0
    inside = [i for i, s in enumerate(sal.slices)
              if s.z_index is not None and 0 <= s.z_index < area.size
              and area[s.z_index] >= floor]
    best = sorted(inside, key=lambda i: -sal.slices[i].attention)[:n]
    return sorted(best, key=lambda i: sal.slices[i].z_index)
