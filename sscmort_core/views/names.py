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
