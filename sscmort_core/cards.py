"""The model card: one typed record of what the registry knows about a model of any kind
(deep backbone, radiomics or QCT model, the synthetic oracle), read by every consumer.

A card lives as JSON beside the model's weights (``models_dir/<model_id>.json``) and in the
store's ``models.card`` column. :meth:`ModelCard.from_json` reads every card sscmort has
written (card format 1: deep cards with an integer version, tabular cards with AUC keys "1" or
"1y"); :meth:`ModelCard.to_json` writes format 2. Per-horizon out-of-fold AUC is keyed by the
horizon in years (:data:`sscmort_core.labels.HORIZONS_YEARS`).

May import: errors, labels, util.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from sscmort_core.errors import ModelError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.util.paths import default_models_dir  # noqa: F401  (re-exported)

CARD_FORMAT = 2
KIND_NAMES = {"deep": "Deep", "radiomics": "Radiomics", "qct": "QCT", "ensemble": "Ensemble",
              "oracle": "Oracle", "longitudinal": "Longitudinal"}


def _auc_by_horizon(value: Any, horizons: Any = None) -> dict[int, float | None]:
    """{1: AUC, 3: ..., 5: ...} from a card's ``oof_auc`` ("1" / "1y" / 1 keys) or, for
    format-1 tabular cards without it, their per-horizon list."""
    out: dict[int, float | None] = {}
    for key, auc in dict(value or {}).items():
        try:
            h = int(str(key).rstrip("y"))
        except ValueError:
            continue
        out[h] = None if auc is None else float(auc)
    for row in horizons or ():
        if isinstance(row, Mapping) and "horizon_years" in row:
            out.setdefault(int(row["horizon_years"]), row.get("oof_auc"))
    return {h: out.get(h) for h in HORIZONS_YEARS}


@dataclass(frozen=True)
class ModelCard:
    """What the registry knows about one model. Fields a kind does not use stay at their
    defaults; ``extra`` holds what a kind records beyond them (tabular: cv, horizons, shap...),
    shown as it is on the Models & jobs page."""

    model_id: str
    kind: str  # "deep", "radiomics", "qct", "oracle"
    label: str
    version: str
    created: str | None = None  # ISO 8601, seconds
    data_hash: str | None = None
    # labels.label_fingerprint of the training scans: recomputed from the store later, a
    # different value marks the model stale (outcomes changed since it was trained)
    label_fingerprint: str | None = None
    synthetic: bool = False
    oof_auc: Mapping[int, float | None] = field(default_factory=dict)
    n_scans: int | None = None
    n_patients: int | None = None
    weights_file: str | None = None  # relative to the models folder
    weights_sha256: str | None = None
    description: str | None = None
    notes: tuple[str, ...] = ()
    software: Mapping[str, str] = field(default_factory=dict)
    # deep backbones
    backbone: str | None = None
    profile: str | None = None  # "quick: frozen backbone" or "full: fine-tuned end to end"
    pretrained: str | None = None  # "random init", "file:PATH" or "hf-cache:REPO"
    pretrained_sha256: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    # radiomics / QCT models
    algorithm: str | None = None
    features: tuple[str, ...] = ()
    param_hash: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    research_use_only: bool = True
    card_format: int = CARD_FORMAT

    def __post_init__(self) -> None:
        # horizon keys as ints ("1", "1y" and 1 all mean the 1-year horizon)
        object.__setattr__(self, "oof_auc", _auc_by_horizon(self.oof_auc))

    @property
    def random_init(self) -> bool:
        return self.pretrained == "random init"

    def auc(self, horizon_years: int) -> float | None:
        return self.oof_auc.get(horizon_years)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, self.kind.capitalize())

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out["oof_auc"] = {str(h): a for h, a in self.oof_auc.items()}
        out["notes"], out["features"] = list(self.notes), list(self.features)
        out["software"], out["config"] = dict(self.software), dict(self.config)
        return {**dict(self.extra), **out}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str | Path | None = None) -> "ModelCard":
        """Any card sscmort wrote (format 1 or 2). Raises ModelError naming ``source``."""
        known = {f.name for f in fields(cls)} - {"extra"}
        try:
            kw = {k: v for k, v in data.items() if k in known}
            extra = {k: v for k, v in data.items() if k not in known and k != "extra"}
            extra.update(data.get("extra") or {})
            kw["model_id"] = str(kw["model_id"])
            kw["kind"] = str(kw.get("kind") or "deep")
            kw["version"] = str(kw.get("version", "1"))
            kw["label"] = str(kw.get("label") or kw["model_id"])
            kw["oof_auc"] = _auc_by_horizon(kw.get("oof_auc"), data.get("horizons"))
            kw["notes"] = tuple(kw.get("notes") or ())
            kw["features"] = tuple(kw.get("features") or ())
            kw["software"] = dict(kw.get("software") or {})
            kw["config"] = dict(kw.get("config") or {})
            for key in ("n_scans", "n_patients"):
                kw[key] = None if kw.get(key) is None else int(kw[key])
            kw["synthetic"] = bool(kw.get("synthetic", False))
            return cls(extra=extra, **kw)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"not a valid model card: {err}", source) from None

    @classmethod
    def from_store(cls, card: Any, *, model_id: str, kind: str,
                   version: Any = None) -> "ModelCard":
        """The card of a models-table row (``card`` column: JSON text, a dict or NULL)."""
        if isinstance(card, str) and card:
            try:
                card = json.loads(card)
            except json.JSONDecodeError as err:
                raise ModelError(f"model {model_id}: unreadable card in the store: {err}") \
                    from None
        data = dict(card) if isinstance(card, Mapping) else {}
        data.setdefault("model_id", model_id)
        data.setdefault("kind", kind)
        if version is not None:
            data.setdefault("version", version)
        return cls.from_json(data, f"model {model_id}")


def read_card_file(path: Path) -> ModelCard:
    """A card from its JSON file; ModelError when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no model card for {path.stem!r}", path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"unreadable model card: {err}", path) from None
    return ModelCard.from_json(data, path)


def write_card_file(card: ModelCard, path: Path) -> None:
    """Write the card's JSON atomically (a temporary file moved into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(card.to_json(), indent=2, default=str), encoding="utf-8")
    os.replace(tmp, path)


def model_label(row: Mapping[str, Any]) -> str:
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


def model_labels(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Per model id, the name every page, export and DICOM SR uses (:func:`model_label`); a
    label shared by several models gets the model id appended so readers can tell them
    apart. ``rows``: the models table's rows (e.g. ``models_frame(store).to_dict("records")``)."""
    labels = {str(r["model_id"]): model_label(r) for r in rows}
    values = list(labels.values())
    return {m: f"{lab} [{m}]" if values.count(lab) > 1 else lab for m, lab in labels.items()}
