"""Readable names of what the pages show: models (from their cards), kinds, horizons.

One place turns ids into labels, so every page and export says the same thing.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.cards import KIND_NAMES, ModelCard, model_label  # noqa: F401 (re-exported)
from sscmort_core.cards import model_labels as card_labels


def model_labels(store: st_store.Store) -> dict[str, str]:
    """Readable label of every registered model (:func:`sscmort_core.cards.model_labels`)."""
    return card_labels(st_store.models_frame(store).to_dict("records"))


# QCT metrics as the pages name them (units in the label)
QCT_LABELS: dict[str, str] = {
    "lung_volume_ml": "Lung volume (mL)", "mean_lung_density_hu": "Mean lung density (HU)",
    "haa_pct": "High-attenuation area (%)", "ild_extent_pct": "ILD extent (%)",
    "skewness": "Histogram skewness", "kurtosis": "Histogram kurtosis (excess)"}


def ingest_report_lines(report: Any) -> list[str]:
    """What an :class:`~sscmort_core.imaging.volume.IngestReport` says, as sentences: other
    series ignored, files skipped, identifying tags removed (names only, never values)."""
    lines = []
    if report.ignored_series:
        lines.append("Other series ignored: " + "; ".join(
            f"{s.description or 'unnamed'} ({s.n_slices} images: {s.reason_ignored})"
            for s in report.ignored_series))
    if report.skipped_files:
        lines.append(f"{len(report.skipped_files)} files skipped: " + "; ".join(
            f"{f.name} ({f.reason})" for f in report.skipped_files[:10]))
    lines.append(f"Identifying tags removed ({len(report.removed_tags)}): "
                 f"{', '.join(report.removed_tags) or 'none present'}; private tags dropped: "
                 f"{report.removed_private_tags}.")
    return lines


# --- the naming layer (issue 14): labels, columns and number formats for every page/export --
# Columns as the pages and CSV exports name them (units in the header, never raw names).
COLUMN_LABELS: dict[str, str] = {
    "model": "Model", "model_id": "Model id", "kind": "Kind", "note": "Note",
    "label": "Model", "backbone": "Backbone", "version": "Version",
    "patient_id": "Patient", "scan_id": "Scan", "scan_date": "Scan date",
    "n_scans": "Scans", "n_patients": "Patients", "n_events": "Deaths", "events": "Deaths",
    "source": "Source", "sex": "Sex", "subtype": "Subtype", "antibody": "Antibody",
    "ever_smoker": "Ever smoker", "pulmonary_hypertension": "Pulmonary hypertension",
    "cardiac_involvement": "Cardiac involvement",
    "kernel": "Kernel", "scanner": "Scanner", "manufacturer": "Manufacturer",
    "age_at_first_scan": "Age at first scan (y)", "birth_year": "Born",
    "baseline_fvc": "Baseline FVC (% pred.)", "baseline_dlco": "Baseline DLCO (% pred.)",
    "fvc_pct_pred": "FVC (% pred.)", "dlco_pct_pred": "DLCO (% pred.)",
    "died": "Died", "followup_years": "Follow-up (y)", "death_date": "Death date",
    "last_followup_date": "Last follow-up", "horizon": "Horizon",
    "horizon_years": "Horizon (y)", "horizon (years)": "Horizon (y)",
    "explanation": "Explanation", "timeline": "Timeline", "rows": "Rows",
    "p": "p", "p method": "p method", "scans": "Scans", "patients": "Patients",
    **QCT_LABELS,
}


def column_label(name: str) -> str:
    """The header a page shows for column ``name``; unknown names are sentence-cased with
    underscores as spaces (so no raw snake_case reaches the screen)."""
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    text = str(name).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def human_columns(frame: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """``frame`` with readable headers (:func:`column_label`); ``keep`` names stay raw."""
    return frame.rename(columns={c: column_label(c) for c in frame.columns if c not in keep})


def horizon_label(years: int) -> str:
    """1 -> "1 year", 5 -> "5 years"."""
    return f"{int(years)} year" + ("" if int(years) == 1 else "s")


def format_risk(p: float | None) -> str:
    """A risk as a whole percent, one rule everywhere: round half up; below 0.5% reads "<1%",
    at or above 99.5% ">99%"; missing reads "n/a"."""
    if p is None or not np.isfinite(p):
        return "n/a"
    pct = float(p) * 100.0
    if pct < 0.5:
        return "<1%"
    if pct >= 99.5:
        return ">99%"
    return f"{int(np.floor(pct + 0.5))}%"


def risk_percent(p: float | None) -> float | None:
    """The number :func:`format_risk` shows (whole percent), for sortable table columns."""
    if p is None or not np.isfinite(p):
        return None
    return float(np.floor(float(p) * 100.0 + 0.5))


def format_volume_ml(v: float | None) -> str:
    """A volume as an integer number of millilitres with thousands separators: "5,554 mL"."""
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{int(np.floor(float(v) + 0.5)):,} mL"


def format_shape(shape_zyx: tuple[int, ...]) -> str:
    """A volume's voxel grid given (z, y, x), shown as x x y x z, the order of spacing."""
    z, y, x = (int(s) for s in shape_zyx)
    return f"{x} x {y} x {z}"


def format_spacing(spacing_zyx: tuple[float, ...]) -> str:
    """Voxel spacing given (z, y, x) in mm, shown as x x y x z like :func:`format_shape`."""
    z, y, x = (float(s) for s in spacing_zyx)
    return f"{x:.2f} x {y:.2f} x {z:.2f}"


def format_missing(value: object, fmt: str = "{}") -> str:
    """A table or metric cell: "n/a" for None / NaN (never "None"), else ``fmt`` of it."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    try:
        if pd.isna(value):
            return "n/a"
    except (TypeError, ValueError):
        pass
    return fmt.format(value)


# words the sentence-casing of titles keeps as written
ACRONYMS = ("ILD", "QCT", "FVC", "DLCO", "SSc", "CT", "AUC", "HAA", "SHAP", "KM", "ROC")


def sentence(text: str) -> str:
    """Lower-case ``text`` for use mid-sentence, keeping acronyms (QCT, ILD, FVC...)."""
    words = []
    for w in str(text).split(" "):
        core = w.strip("(),.:;<>=%")
        words.append(w if any(a in core for a in ACRONYMS) else w.lower())
    return " ".join(words)


def _num(value: object, p_value: bool = False) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        if p_value:
            return "<0.001" if value < 0.001 else f"{value:.3f}"
        return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 100 else \
            f"{value:.3f}"
    return str(value)


COUNT_COLUMNS = frozenset({"scans", "patients", "events", "n_scans", "n_patients", "n_events",
                           "rows", "horizon (years)", "horizon_years"})


def compact_table(frame: pd.DataFrame, drop: tuple[str, ...] = ("model_id",),
                  ci_pairs: Mapping[str, str] | None = None) -> pd.DataFrame:
    """A metrics-like table as text cells that fit a page without sideways scrolling:
    "<m>", "<m> CI low" and "<m> CI high" become one "<m> (95% CI)" cell "0.934 (0.907-0.960)";
    ``ci_pairs`` maps other CI prefixes onto their metric (e.g. {"diff": "AUC A - B"});
    p-values read "<0.001"; missing values read "n/a" (never "None"); headers via
    :func:`column_label`; ``drop`` columns (ids) and all-missing columns are left out."""
    ci_pairs = dict(ci_pairs or {})
    cols = [c for c in frame.columns if c not in drop]
    out: dict[str, list[str]] = {}
    used: set[str] = set()
    for c in cols:
        if c in used:
            continue
        prefix = next((k for k, v in ci_pairs.items() if v == c), c)
        lo, hi = f"{prefix} CI low", f"{prefix} CI high"
        if lo in frame.columns and hi in frame.columns:
            used |= {lo, hi}
            out[f"{column_label(c)} (95% CI)"] = [
                "n/a" if _num(v) == "n/a" else
                f"{_num(v)} ({_num(a)}-{_num(b)})" if _num(a) != "n/a" else _num(v)
                for v, a, b in zip(frame[c], frame[lo], frame[hi])]
            continue
        if c.endswith(" CI low") or c.endswith(" CI high"):
            continue  # a CI whose metric is missing: nothing to attach it to
        values = frame[c]
        if values.isna().all():
            continue
        is_p = c == "p" or c.endswith(" p")
        if c in COUNT_COLUMNS:
            values = values.map(lambda v: v if v is None or pd.isna(v) else int(v))
        out[column_label(c)] = ["" if c == "note" and _num(v) == "n/a" else _num(v, is_p)
                                for v in values]
    return pd.DataFrame(out, index=frame.index)
