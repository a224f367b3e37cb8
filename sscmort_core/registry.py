"""The deep-model registry on disk: ``models_dir/<model_id>.safetensors`` + ``<model_id>.json``.

The JSON model card records the backbone, version, profile, configuration, data hash,
pretrained source, the sha256 of the weights file, per-horizon out-of-fold AUC and the
creation time. Loading recomputes the sha256 and refuses a file that does not match its card
(or the store's record) with :class:`~sscmort_core.errors.ChecksumMismatchError`. Versions of
one backbone live side by side: ``deep-resnet18-v1``, ``deep-resnet18-v2``, ...

Weights are git-ignored; ``models_dir`` defaults to ``$SSCMORT_MODELS`` or ``models``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from sscmort_core.errors import ChecksumMismatchError, ModelError

if TYPE_CHECKING:
    import pandas as pd

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
CARD_FORMAT = 1
_ID_RE = re.compile(r"^deep-(?P<backbone>.+)-v(?P<version>\d+)$")


def file_sha256(path: Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB chunks (model weights, stored volumes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_models_dir() -> Path:
    return Path(os.environ.get("SSCMORT_MODELS", "models"))


def model_id_for(backbone: str, version: int) -> str:
    return f"deep-{backbone}-v{version}"


@dataclass(frozen=True)
class ModelCard:
    """What the registry knows about one trained deep model (one JSON file)."""

    model_id: str
    backbone: str
    version: int
    profile: str  # "quick: frozen backbone" or "full: fine-tuned end to end"
    config: dict[str, Any]  # NetConfig + TrainConfig fields, n_folds, shared_encoder
    data_hash: str
    pretrained: str  # "random init", "file:PATH" or "hf-cache:REPO"
    weights_file: str  # relative to models_dir
    weights_sha256: str
    oof_auc: dict[str, float | None]  # "1", "3", "5" -> AUC of out-of-fold risks
    created: str  # ISO 8601, seconds
    n_scans: int
    n_patients: int
    synthetic: bool
    kind: str = "deep"
    software: dict[str, str] = field(default_factory=dict)
    pretrained_sha256: str | None = None
    notes: tuple[str, ...] = ()
    card_format: int = CARD_FORMAT

    @property
    def random_init(self) -> bool:
        return self.pretrained == "random init"

    @property
    def label(self) -> str:
        folds = self.config.get("folds")
        return f"{self.backbone} v{self.version} ({self.profile.split(':')[0]}, {folds}-fold)"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        out["label"] = self.label  # for readers of the store's card column
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path) -> "ModelCard":
        known = set(cls.__dataclass_fields__)
        try:
            kwargs = {k: v for k, v in data.items() if k in known}
            kwargs["notes"] = tuple(kwargs.get("notes", ()))
            return cls(**kwargs)
        except TypeError as err:
            raise ModelError(f"not a valid model card: {err}", path) from None


def card_path(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / f"{model_id}{CARD_SUFFIX}"


def weights_path(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / f"{model_id}{WEIGHTS_SUFFIX}"


def read_card(models_dir: Path, model_id: str) -> ModelCard:
    path = card_path(models_dir, model_id)
    if not path.is_file():
        raise ModelError(f"no model card for {model_id!r}", path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"unreadable model card: {err}", path) from None
    return ModelCard.from_json(data, path)


def list_cards(models_dir: Path) -> list[ModelCard]:
    """Every readable deep-model card in ``models_dir``, by backbone then version."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    cards = []
    for path in sorted(models_dir.glob(f"deep-*{CARD_SUFFIX}")):
        try:
            cards.append(read_card(models_dir, path.stem))
        except ModelError:
            continue
    return sorted(cards, key=lambda c: (c.backbone, c.version))


def _claim_version(models_dir: Path, backbone: str) -> tuple[str, int, Path]:
    """Next free version of ``backbone``; the card file is created empty to claim it."""
    taken = [int(m["version"]) for p in models_dir.glob(f"deep-{backbone}-v*{CARD_SUFFIX}")
             if (m := _ID_RE.match(p.stem)) and m["backbone"] == backbone]
    version = max(taken, default=0) + 1
    while True:
        model_id = model_id_for(backbone, version)
        path = card_path(models_dir, model_id)
        try:
            with open(path, "x"):
                return model_id, version, path
        except FileExistsError:
            version += 1


def save_model(models_dir: Path, tensors: Mapping[str, Any], **card_fields: Any) -> ModelCard:
    """Write weights (safetensors) and card under the next version of ``card_fields['backbone']``.

    ``tensors``: a state dict (name -> torch.Tensor). ``card_fields``: every :class:`ModelCard`
    field except model_id, version, weights_file, weights_sha256 and created.
    """
    from safetensors.torch import save_file

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    model_id, version, cpath = _claim_version(models_dir, card_fields["backbone"])
    wpath = weights_path(models_dir, model_id)
    tmp = wpath.with_name(f".{wpath.name}.tmp-{os.getpid()}")
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(state, str(tmp), metadata={"model_id": model_id,
                                             "backbone": card_fields["backbone"]})
        os.replace(tmp, wpath)
        card = ModelCard(model_id=model_id, version=version, weights_file=wpath.name,
                         weights_sha256=file_sha256(wpath),
                         created=dt.datetime.now().isoformat(timespec="seconds"),
                         **card_fields)
        ctmp = cpath.with_name(f".{cpath.name}.tmp-{os.getpid()}")
        ctmp.write_text(json.dumps(card.to_json(), indent=2, default=str))
        os.replace(ctmp, cpath)
    except BaseException:
        for p in (tmp, wpath, cpath):
            p.unlink(missing_ok=True)
        raise
    return card


def load_weights(models_dir: Path, model_id: str, *,
                 expected_sha256: str | None = None) -> tuple[ModelCard, dict[str, Any]]:
    """(card, state dict) after checking the file's sha256 against the card (and the store).

    ``expected_sha256``: the store's record of the weights, when known. Raises ModelError
    (missing, unreadable, wrong model) or ChecksumMismatchError (tampered or swapped file).
    """
    from safetensors import SafetensorError, safe_open

    models_dir = Path(models_dir)
    card = read_card(models_dir, model_id)
    wpath = models_dir / card.weights_file
    if not wpath.is_file():
        raise ModelError(f"weights of {model_id} are missing", wpath)
    actual = file_sha256(wpath)
    if actual != card.weights_sha256:
        raise ChecksumMismatchError(
            f"weights sha256 {actual[:12]}... does not match the model card's "
            f"{card.weights_sha256[:12]}...: the file was changed or replaced; refusing to load "
            "it (retrain, or restore the original file)", wpath)
    if expected_sha256 and expected_sha256 != card.weights_sha256:
        raise ChecksumMismatchError(
            f"model card says sha256 {card.weights_sha256[:12]}... but the store registered "
            f"{expected_sha256[:12]}... for {model_id}: card and store disagree", wpath)
    try:
        with safe_open(str(wpath), framework="pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError) as err:
        raise ModelError(f"unreadable safetensors file: {err}", wpath) from None
    if meta.get("model_id") != model_id:
        raise ChecksumMismatchError(
            f"file holds weights of {meta.get('model_id')!r}, not {model_id!r}", wpath)
    return card, state


def build_ensemble(card: ModelCard, state: Mapping[str, Any]):
    """The :class:`~sscmort_core.nets.EnsembleNet` of a card, with its weights loaded (eval)."""
    import torch

    from sscmort_core.nets import (EnsembleNet, NetConfig, SliceEncoder, SliceHead,
                                   create_backbone)

    cfg = card.config
    net = NetConfig(backbone=card.backbone, image_size=int(cfg["image_size"]),
                    n_slices=int(cfg["n_slices"]), attention_dim=int(cfg["attention_dim"]),
                    dropout=float(cfg["dropout"]), pooling=str(cfg.get("pooling", "last")))
    n_folds = int(cfg["folds"])
    n_enc = 1 if cfg.get("shared_encoder") else n_folds
    encoders = [SliceEncoder(create_backbone(net.backbone, net.image_size)[0], net.pooling)
                for _ in range(n_enc)]
    heads = [SliceHead(encoders[0].dim, net.attention_dim, net.dropout) for _ in range(n_folds)]
    model = EnsembleNet(encoders, heads)
    try:
        model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=True)
    except RuntimeError as err:
        raise ModelError(f"weights do not fit a {card.backbone} ensemble: "
                         f"{str(err).splitlines()[0]}", card.weights_file) from None
    return model.eval()


def register_in_store(cur: Any, card: ModelCard, models_dir: Path) -> None:
    """Insert or replace the card's row in the store's models table (caller's transaction)."""
    from sscmort_core.store import upsert_model

    upsert_model(cur, model_id=card.model_id, kind=card.kind, backbone=card.backbone,
                 version=str(card.version), config=card.config, data_hash=card.data_hash,
                 weights_path=str(Path(models_dir) / card.weights_file),
                 weights_sha256=card.weights_sha256, card=card.to_json(),
                 synthetic=card.synthetic)


def delete_model(models_dir: Path, model_id: str) -> None:
    """Remove a model's weights and card from disk (the store row is the caller's business)."""
    for p in (weights_path(models_dir, model_id), card_path(models_dir, model_id)):
        p.unlink(missing_ok=True)


def registry_frame(models: "pd.DataFrame", models_dir: Path) -> "pd.DataFrame":
    """One row per registered model (the store's models frame) for the Models & jobs page:
    label, kind, backbone, version, profile, pretrained source, OOF AUC 1/3/5 y, created, and
    whether a deep model's weights file is present in ``models_dir``."""
    import pandas as pd

    rows = []
    for r in models.itertuples():
        card = json.loads(r.card) if isinstance(r.card, str) and r.card else {}
        auc = card.get("oof_auc") or {}
        rows.append({
            "model_id": r.model_id, "kind": r.kind, "backbone": r.backbone,
            "version": r.version, "label": card.get("label") or r.model_id,
            "profile": card.get("profile"), "pretrained": card.get("pretrained"),
            **{f"OOF AUC {h}y": auc.get(str(h), auc.get(f"{h}y")) for h in (1, 3, 5)},
            "created": r.created_at,
            "weights on disk": (Path(models_dir) / f"{r.model_id}{WEIGHTS_SUFFIX}").is_file()
            if r.kind == "deep" else None})
    return pd.DataFrame(rows)
