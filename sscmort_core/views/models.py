"""Page data of the Models & jobs page: the registry as one table, and a model's card."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from sscmort_core.cards import ModelCard
from sscmort_core.deep.config import HEAD_SETTING
from sscmort_core.deep.registry import WEIGHTS_SUFFIX
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline.staleness import ModelStaleness


def registry_frame(models: pd.DataFrame, models_dir: Path,
                   staleness: Mapping[str, ModelStaleness] | None = None) -> pd.DataFrame:
    """One row per registered model (the store's models frame): label, kind, backbone,
    version, profile, pretrained source, OOF AUC per horizon, created, and whether a deep
    model's weights file is present in ``models_dir``; with ``staleness``
    (:func:`sscmort_core.pipeline.staleness.model_staleness`) a status column first:
    current, stale (outcomes changed since training, with the reason) or unknown."""
    rows = []
    for r in models.itertuples():
        card = ModelCard.from_store(r.card, model_id=r.model_id, kind=r.kind, version=r.version)
        status = {} if staleness is None else {
            "status": staleness[r.model_id].text if r.model_id in staleness else "unknown"}
        rows.append({
            **status, "model_id": r.model_id, "kind": r.kind, "backbone": r.backbone,
            "version": r.version, "label": card.label, "profile": card.profile,
            "pretrained": card.pretrained,
            **{f"OOF AUC {h}y": card.auc(h) for h in HORIZONS_YEARS},
            "created": r.created_at,
            "weights on disk": (Path(models_dir) / f"{r.model_id}{WEIGHTS_SUFFIX}").is_file()
            if r.kind == "deep" else None})
    return pd.DataFrame(rows)


def model_card(row: pd.Series | object) -> ModelCard:
    """The card of one models-table row (``itertuples`` row or Series)."""
    get = row.get if hasattr(row, "get") else lambda k: getattr(row, k)
    return ModelCard.from_store(get("card"), model_id=str(get("model_id")), kind=str(get("kind")),
                                version=get("version"))


def stale_labels(models: pd.DataFrame, staleness: Mapping[str, ModelStaleness]) -> list[str]:
    """Labels of the stale models (what the pages' warning lists)."""
    return [model_card(r).label for r in models.itertuples()
            if r.model_id in staleness and staleness[r.model_id].stale]


def selection_line(card: ModelCard) -> str:
    """How a deep model's head settings were chosen (its card's ``settings``): nested inside
    each outer training fold, or fixed before looking; older cards did not record it."""
    settings = dict(card.extra.get("settings") or {})
    if HEAD_SETTING in settings:
        return f"{HEAD_SETTING}: {settings[HEAD_SETTING]}"
    return ("not recorded in the model card (trained before the card recorded how its "
            "settings were chosen)")
