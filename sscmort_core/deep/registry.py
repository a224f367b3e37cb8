"""The deep-model registry on disk: ``models_dir/<model_id>.safetensors`` + ``<model_id>.json``.

The JSON model card records the backbone, version, profile, configuration, data hash,
pretrained source, the sha256 of the weights file, per-horizon out-of-fold AUC and the
creation time. Loading recomputes the sha256 and refuses a file that does not match its card
(or the store's record) with :class:`~sscmort_core.errors.ChecksumMismatchError`. Versions of
one backbone live side by side: ``deep-resnet18-v1``, ``deep-resnet18-v2``, ...

Weights are git-ignored; ``models_dir`` defaults to ``$SSCMORT_MODELS`` or ``models``
(:func:`sscmort_core.cards.default_models_dir`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Mapping

from sscmort_core.cards import ModelCard, read_card_file, write_card_file
from sscmort_core.errors import ChecksumMismatchError, ModelError
from sscmort_core.store import upsert_model
from sscmort_core.util.hashing import file_sha256

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
_ID_RE = re.compile(r"^deep-(?P<backbone>.+)-v(?P<version>\d+)$")


def model_id_for(backbone: str, version: int) -> str:
    return f"deep-{backbone}-v{version}"


def deep_label(backbone: str, version: int | str, profile: str, folds: Any) -> str:
    """e.g. "resnet18 v2 (quick, 5-fold)"."""
    return f"{backbone} v{version} ({profile.split(':')[0]}, {folds}-fold)"


def card_path(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / f"{model_id}{CARD_SUFFIX}"


def weights_path(models_dir: Path, model_id: str) -> Path:
    return Path(models_dir) / f"{model_id}{WEIGHTS_SUFFIX}"


def read_card(models_dir: Path, model_id: str) -> ModelCard:
    return read_card_file(card_path(models_dir, model_id))


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
    return sorted(cards, key=lambda c: (str(c.backbone), int(c.version)))


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

    ``tensors``: a state dict (name -> torch.Tensor). ``card_fields``: the deep fields of a
    :class:`~sscmort_core.cards.ModelCard` (backbone, profile, config, data_hash, pretrained,
    oof_auc...); model_id, kind, label, version, weights and created are set here.
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
        label = deep_label(card_fields["backbone"], version, card_fields["profile"],
                           card_fields["config"].get("folds"))
        card = ModelCard(model_id=model_id, kind="deep", label=label, version=str(version),
                         weights_file=wpath.name, weights_sha256=file_sha256(wpath),
                         created=dt.datetime.now().isoformat(timespec="seconds"),
                         **card_fields)
        write_card_file(card, cpath)
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
    """The :class:`~sscmort_core.deep.nets.EnsembleNet` of a card, with its weights loaded (eval)."""
    import torch

    from sscmort_core.deep.nets import (  # heavy: torch
        EnsembleNet,
        NetConfig,
        SliceEncoder,
        SliceHead,
        create_backbone,
    )

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
    upsert_model(cur, model_id=card.model_id, kind=card.kind, backbone=card.backbone,
                 version=card.version, config=card.config, data_hash=card.data_hash,
                 weights_path=str(Path(models_dir) / card.weights_file),
                 weights_sha256=card.weights_sha256, card=card.to_json(),
                 synthetic=card.synthetic)


def delete_model(models_dir: Path, model_id: str) -> None:
    """Remove a model's weights and card from disk (the store row is the caller's business)."""
    for p in (weights_path(models_dir, model_id), card_path(models_dir, model_id)):
        p.unlink(missing_ok=True)
