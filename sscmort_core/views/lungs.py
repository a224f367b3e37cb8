"""Page data of a scan's lungs: the zone map's cells, pattern extents as a table, the pattern
overlay and its legend, and the mask's QC review state (upload page, patient timeline,
Overview). Pure of Streamlit; images are RGB uint8 arrays.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.lungs import PATTERNS, LungMeasures
from sscmort_core.lungs.patterns import EXTENT_KEYS, PATTERN_COLORS
from sscmort_core.pipeline.measure import accept_flagged_mask
from sscmort_core.views.render import LUNG_WINDOW, window_to_uint8

# the zone map's columns, as a radiologist looks at a coronal view: patient's right on the left
ZONE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("right", "rind", "R subpleural"), ("right", "core", "R core"),
    ("left", "core", "L core"), ("left", "rind", "L subpleural"))
THIRD_ROWS: tuple[str, ...] = ("upper", "middle", "lower")
ZONE_METRICS: dict[str, str] = {
    "ild_extent_pct": "ILD extent (%)", "haa_pct": "HAA -600..-250 HU (%)",
    "laa950_pct": "LAA-950 (%)", "mean_lung_density_hu": "Mean lung density (HU)",
    "p15_hu": "15th percentile density (HU)", "volume_ml": "Volume (mL)"}
PATTERN_LABELS: dict[str, str] = dict(zip(EXTENT_KEYS, (p.capitalize() for p in PATTERNS)))


def regions_of(measures: LungMeasures) -> pd.DataFrame:
    """The zone rows of an analysed (not stored) scan, as the qct_regions table has them."""
    return pd.DataFrame(measures.regions.to_list())


def zone_map_frame(regions: pd.DataFrame, metric: str = "ild_extent_pct") -> pd.DataFrame:
    """(12 rows) the zone map's cells: third, column (ZONE_COLUMNS' labels), value of
    ``metric`` (None for an empty zone) and the cell's volume, from zone rows (lung, zone,
    ...) of one scan."""
    if metric not in ZONE_METRICS:
        raise ValueError(f"metric must be one of {sorted(ZONE_METRICS)}, got {metric!r}")
    by = regions.set_index(["lung", "zone"])
    rows = []
    for third in THIRD_ROWS:
        for lung, part, label in ZONE_COLUMNS:
            key = (lung, f"{third} {part}")
            value = by.loc[key, metric] if key in by.index else None
            volume = by.loc[key, "volume_ml"] if key in by.index else 0.0
            rows.append({"third": third, "column": label,
                         "value": None if value is None or pd.isna(value) else float(value),
                         "volume_ml": float(volume)})
    return pd.DataFrame(rows)


def basal_subpleural_ratio(regions: pd.DataFrame, metric: str = "ild_extent_pct"
                           ) -> float | None:
    """``metric`` in the lower subpleural zone over the upper core zone (both lungs): above 1
    when disease is basal and subpleural; None when either is empty or zero."""
    by = regions.set_index(["lung", "zone"])
    try:
        low, high = by.loc[("both", "lower rind"), metric], by.loc[("both", "upper core"), metric]
    except KeyError:
        return None
    if low is None or high is None or pd.isna(low) or pd.isna(high) or high == 0:
        return None
    return float(low) / float(high)


def pattern_table(extents: dict[str, float] | pd.Series) -> pd.DataFrame:
    """pattern, extent (% of lung) rows in PATTERNS order."""
    return pd.DataFrame({"pattern": list(PATTERN_LABELS.values()),
                         "extent_pct": [float(extents[k]) for k in PATTERN_LABELS]})


def pattern_overlay_rgb(hu: np.ndarray, labels: np.ndarray, *, alpha: float = 0.45,
                        upscale: int = 1, show_normal: bool = False,
                        window: tuple[float, float] = LUNG_WINDOW) -> np.ndarray:
    """(y, x, 3) uint8: the slice ``hu`` (y, x) in ``window`` with every lung voxel of
    ``labels`` (y, x; 0 outside, 1.. PATTERNS) blended in its pattern's colour (normal lung
    only when ``show_normal``). One table look-up per pixel (the blend of each grey level with
    each label, :func:`_overlay_lut`): a slice-slider step on a 512 x 512 scan costs a few ms,
    not the tens a per-pixel float blend took (the same numbers; a test compares them)."""
    grey = window_to_uint8(hu, *window)  # (y, x) uint8
    lab = np.clip(np.asarray(labels), 0, len(PATTERNS)).astype(np.intp)
    out = _overlay_lut(float(alpha), bool(show_normal))[lab, grey]  # (y, x, 3)
    if upscale > 1:
        out = np.repeat(np.repeat(out, upscale, axis=0), upscale, axis=1)
    return out


@lru_cache(maxsize=8)
def _overlay_lut(alpha: float, show_normal: bool) -> np.ndarray:
    """(1 + len(PATTERNS), 256, 3) uint8: grey level g under label l as the overlay draws it,
    (1 - alpha) * g + alpha * colour for a shown label, g itself otherwise (read-only)."""
    grey = np.arange(256, dtype=np.float32)[None, :, None]  # (1, 256, 1)
    colours = np.asarray(PATTERN_COLORS, dtype=np.float32)[:, None, :]  # (6, 1, 3)
    blended = (1 - alpha) * grey + alpha * colours  # (6, 256, 3)
    lut = np.repeat(np.repeat(grey, 3, axis=2), 1 + len(PATTERNS), axis=0)  # (7, 256, 3)
    first = 1 if show_normal else 2  # label 1 is normal lung
    lut[first:] = blended[first - 1:]
    lut = np.clip(lut + 0.5, 0, 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def pattern_legend_html(show_normal: bool = False) -> str:
    """The overlay's legend as one line of HTML: a swatch of each pattern's colour beside its
    name (text, so it costs no image fetch and reads with the page)."""
    names = list(PATTERNS if show_normal else PATTERNS[1:])
    colours = list(PATTERN_COLORS if show_normal else PATTERN_COLORS[1:])
    items = [f'<span style="white-space:nowrap;margin-right:0.9em"><span style="display:'
             f'inline-block;width:0.9em;height:0.9em;border-radius:2px;vertical-align:-0.1em;'
             f'margin-right:0.3em;background:#{r:02x}{g:02x}{b:02x}"></span>{name}</span>'
             for name, (r, g, b) in zip(names, colours)]
    return "".join(items)


@dataclass(frozen=True)
class MaskReview:
    """A stored scan's mask QC: ``message`` is "mask needs review: ..." (empty when every
    check passed); accepted_by / accepted_at when someone accepted the flagged mask."""

    scan_id: str
    flagged: bool
    message: str
    checks: pd.DataFrame
    accepted_by: str | None = None
    accepted_at: dt.datetime | None = None

    @property
    def excluded_from_training(self) -> bool:
        return self.flagged and self.accepted_by is None


def mask_review(store: st.Store, scan_id: str) -> MaskReview:
    """The QC state of a stored scan's mask (no rows yet: not flagged, no checks)."""
    checks = st.mask_qc_frame(store, [scan_id])
    failed = checks[~checks["passed"].astype(bool)] if len(checks) else checks
    if failed.empty:
        return MaskReview(scan_id, False, "", checks)
    flagged = st.flagged_scans_frame(store)
    row = flagged[flagged["scan_id"] == scan_id]
    by = row["accepted_by"].iloc[0] if len(row) else None
    at = row["accepted_at"].iloc[0] if len(row) else None
    return MaskReview(scan_id, True, "mask needs review: " + "; ".join(failed["message"]),
                      checks, None if pd.isna(by) else str(by),
                      None if at is None or pd.isna(at) else pd.Timestamp(at).to_pydatetime())


def accept_mask(store: st.Store, scan_id: str, who: str = "local") -> MaskReview:
    """Accept a stored scan's flagged mask (who: "local" until the app has a login)."""
    accept_flagged_mask(store, scan_id, who)
    return mask_review(store, scan_id)


def flagged_table(store: st.Store) -> pd.DataFrame:
    """The Overview's list of flagged masks: scan, patient, date, problems, reviewed by/at,
    and a link to the patient's timeline."""
    df = st.flagged_scans_frame(store)
    out = df[["scan_id", "patient_id", "scan_date", "problems", "accepted_by",
              "accepted_at"]].copy()
    out["timeline"] = [f"patient_timeline?patient={p}&scan={s}"
                       for p, s in zip(out["patient_id"], out["scan_id"])]
    return out


def mask_status(store: st.Store, scan_ids: Sequence[str]) -> list[str]:
    """Per scan: "" when its mask passed QC, else "needs review" or "accepted (who)"."""
    df = st.flagged_scans_frame(store).set_index("scan_id")
    out = []
    for s in scan_ids:
        if s not in df.index:
            out.append("")
        else:
            by = df.loc[s, "accepted_by"]
            out.append("needs review" if pd.isna(by) else f"accepted ({by})")
    return out


def qc_checks_table(checks: Sequence[Any] | pd.DataFrame) -> pd.DataFrame:
    """check, passed, value, expected rows from QCCheck objects or mask_qc rows."""
    if isinstance(checks, pd.DataFrame):
        return checks.rename(columns={"check_name": "check"})[
            ["check", "passed", "value", "expected"]]
    return pd.DataFrame([{"check": c.name, "passed": c.passed, "value": c.value,
                          "expected": c.expected} for c in checks])
