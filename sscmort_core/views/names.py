"""Readable names of what the pages show: models (from their cards), kinds, horizons.

One place turns ids into labels, so every page and export says the same thing.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from sscmort_core.cards import KIND_NAMES, ModelCard


def model_label(row: Mapping[str, Any] | pd.Series) -> str:
    """A readable name from a models-table row: the card's ``label``, else kind, backbone and
    version (e.g. "Deep: resnet18 v2")."""
    card = ModelCard.from_store(row.get("card"), model_id=str(row.get("model_id")),
                                kind=str(row.get("kind") or "model"))
    if card.label != card.model_id:
        return card.label
    parts = [f"{KIND_NAMES.get(card.kind, card.kind.capitalize())}:"]
    backbone = row.get("backbone")
    if isinstance(backbone, str) and backbone:
        parts.append(backbone)
    parts.append(f"v{row.get('version')}" if row.get("version") else str(row.get("model_id")))
    return " ".join(parts)


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
