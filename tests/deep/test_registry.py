"""Registry: safetensors + card, sha256 checks, versions side by side, store registration."""

from __future__ import annotations

import json

import pytest
import torch

from sscmort_core.deep import registry
from sscmort_core.deep.nets import EnsembleNet, NetConfig, SliceHead, build_net
from sscmort_core.errors import ChecksumMismatchError, ModelError

torch.set_num_threads(2)
CFG = NetConfig("resnet18", image_size=32, n_slices=3, attention_dim=8, dropout=0.0)


def tiny_ensemble(seed: int = 0, folds: int = 2) -> EnsembleNet:
    net, _ = build_net(CFG, seed=seed)
    heads = [SliceHead(net.encoder.dim, CFG.attention_dim, CFG.dropout) for _ in range(folds)]
    return EnsembleNet([net.encoder], heads).eval()


def card_fields(folds: int = 2, backbone: str = "resnet18") -> dict:
    return dict(backbone=backbone, profile="quick: frozen backbone",
                config={"image_size": CFG.image_size, "n_slices": CFG.n_slices,
                        "attention_dim": CFG.attention_dim, "dropout": CFG.dropout,
                        "folds": folds, "shared_encoder": True},
                data_hash="d" * 64, pretrained="random init",
                oof_auc={"1": 0.5, "3": None, "5": 0.6}, n_scans=10, n_patients=4,
                synthetic=True)


def test_save_load_round_trip(tmp_path):
    ens = tiny_ensemble()
    card = registry.save_model(tmp_path, ens.state_dict(), **card_fields())
    assert card.model_id == "deep-resnet18-v1" and card.version == "1"
    assert (tmp_path / "deep-resnet18-v1.safetensors").is_file()
    on_disk = json.loads((tmp_path / "deep-resnet18-v1.json").read_text())
    for key in ("backbone", "version", "profile", "config", "data_hash", "pretrained",
                "weights_sha256", "oof_auc", "created"):
        assert key in on_disk
    assert on_disk["weights_sha256"] == registry.file_sha256(
        tmp_path / "deep-resnet18-v1.safetensors")
    card2, state = registry.load_weights(tmp_path, card.model_id)
    assert card2 == card and card2.random_init
    loaded = registry.build_ensemble(card2, state)
    x = torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x)[0], ens(x)[0])


def test_versions_live_side_by_side(tmp_path):
    a = registry.save_model(tmp_path, tiny_ensemble(0).state_dict(), **card_fields())
    b = registry.save_model(tmp_path, tiny_ensemble(1).state_dict(), **card_fields())
    assert (a.version, b.version) == ("1", "2")
    assert [c.model_id for c in registry.list_cards(tmp_path)] == [a.model_id, b.model_id]
    assert a.weights_sha256 != b.weights_sha256
    registry.load_weights(tmp_path, a.model_id)
    registry.load_weights(tmp_path, b.model_id)


def test_tampered_weights_are_refused(tmp_path):
    card = registry.save_model(tmp_path, tiny_ensemble().state_dict(), **card_fields())
    path = tmp_path / card.weights_file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip the bits of one byte of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match="does not match the model card"):
        registry.load_weights(tmp_path, card.model_id)


def test_swapped_file_is_refused_even_with_a_forged_card(tmp_path):
    a = registry.save_model(tmp_path, tiny_ensemble(0).state_dict(), **card_fields())
    b = registry.save_model(tmp_path, tiny_ensemble(1).state_dict(), **card_fields())
    (tmp_path / b.weights_file).write_bytes((tmp_path / a.weights_file).read_bytes())
    forged = json.loads((tmp_path / f"{b.model_id}.json").read_text())
    forged["weights_sha256"] = a.weights_sha256  # card edited to match the swapped file
    (tmp_path / f"{b.model_id}.json").write_text(json.dumps(forged))
    with pytest.raises(ChecksumMismatchError, match="holds weights of 'deep-resnet18-v1'"):
        registry.load_weights(tmp_path, b.model_id)
    # and the store's record catches the forged card too
    with pytest.raises(ChecksumMismatchError, match="card and store disagree"):
        registry.load_weights(tmp_path, b.model_id, expected_sha256=b.weights_sha256)


def test_missing_files_and_wrong_architecture(tmp_path):
    with pytest.raises(ModelError, match="no model card"):
        registry.load_weights(tmp_path, "deep-resnet18-v9")
    card = registry.save_model(tmp_path, tiny_ensemble().state_dict(), **card_fields())
    (tmp_path / card.weights_file).unlink()
    with pytest.raises(ModelError, match="missing"):
        registry.load_weights(tmp_path, card.model_id)
    card = registry.save_model(tmp_path, tiny_ensemble().state_dict(), **card_fields(folds=3))
    _, state = registry.load_weights(tmp_path, card.model_id)
    with pytest.raises(ModelError, match="do not fit"):
        registry.build_ensemble(card, state)  # the card claims 3 folds, the file holds 2


def test_register_in_store(tiny_store, tmp_path):
    from sscmort_core import store as st_store

    card = registry.save_model(tmp_path, tiny_ensemble().state_dict(), **card_fields())
    with st_store.open_store(tiny_store) as s:
        with s.transaction() as cur:
            registry.register_in_store(cur, card, tmp_path)
        row = st_store.deep_models_frame(s).set_index("model_id").loc[card.model_id]
    assert row["weights_sha256"] == card.weights_sha256 and row["backbone"] == "resnet18"
    assert json.loads(row["card"])["pretrained"] == "random init"
