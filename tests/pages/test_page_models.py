"""Models & jobs page (AppTest): empty registry, model cards, weights check, a training job."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages._shared import RESEARCH_NOTICE
from sscmort_core import store as st_store
from sscmort_core.deep import registry
from sscmort_core.deep.config import HEAD_SETTING

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "models_jobs.py")


def _run(store_path, models_dir, monkeypatch) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store_path))
    monkeypatch.setenv("SSCMORT_MODELS", str(models_dir))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture()
def registered(tiny_store, tmp_path):
    import torch

    from sscmort_core.deep.nets import EnsembleNet, NetConfig, SliceHead, build_net

    torch.set_num_threads(2)
    cfg = NetConfig("test_resnet", 32, 3, 8, 0.0)
    net, _ = build_net(cfg)
    ens = EnsembleNet([net.encoder], [SliceHead(net.encoder.dim, 8, 0.0) for _ in range(2)])
    card = registry.save_model(
        tmp_path, ens.state_dict(), backbone="test_resnet", profile="quick: frozen backbone",
        config={"image_size": 32, "n_slices": 3, "attention_dim": 8, "dropout": 0.0,
                "folds": 2, "shared_encoder": True},
        data_hash="0" * 64, pretrained="random init",
        oof_auc={"1": 0.61, "3": 0.65, "5": None}, n_scans=40, n_patients=12, synthetic=True,
        extra={"settings": {HEAD_SETTING: "nested: grid [a; b], chosen per fold: fold 1: a; "
                                          "fold 2: b, by inner validation loss"}})
    with st_store.open_store(tiny_store) as s, s.transaction() as cur:
        registry.register_in_store(cur, card, tmp_path)
    return tiny_store, tmp_path, card


def test_empty_registry(tiny_store, tmp_path, monkeypatch):
    at = _run(tiny_store, tmp_path, monkeypatch)
    assert at.title[0].value == "Models & jobs"
    assert any(RESEARCH_NOTICE in w.value for w in at.markdown)
    assert any("No deep model is registered yet" in i.value for i in at.info)
    assert at.selectbox[0].options == ["resnet18", "densenet121",
                                       "swin_tiny_patch4_window7_224"]  # no deep model yet


def test_model_card_and_weights_check(registered, monkeypatch):
    store_path, models_dir, card = registered
    at = _run(store_path, models_dir, monkeypatch)
    table = at.dataframe[0].value
    row = table.set_index("model_id").loc[card.model_id]
    assert row["pretrained"] == "random init" and row["OOF AUC 1y"] == pytest.approx(0.61)
    assert bool(row["weights on disk"])
    assert any("Random init" in w.value for w in at.warning)
    # how the head's settings were chosen, from the card
    assert any(f"**Settings chosen:** {HEAD_SETTING}: nested: grid [a; b], chosen per fold"
               in m.value for m in at.markdown)
    at.button(key=f"verify-{card.model_id}").click().run()
    assert not at.exception
    assert any("matches its card" in s.value for s in at.success)
    path = models_dir / card.weights_file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    at.button(key=f"verify-{card.model_id}").click().run()
    assert any("does not match the model card" in e.value for e in at.error)


def test_saliency_preview(registered, monkeypatch):
    store_path, models_dir, card = registered
    at = _run(store_path, models_dir, monkeypatch)
    assert at.selectbox[0].value == card.model_id
    next(b for b in at.button if b.label == "Show saliency").click().run()
    assert not at.exception, [e.value for e in at.exception]
    images = at.get("image") + at.get("imgs")  # the proto name differs across versions
    assert len(images) >= 3  # two overlays and the colour legend
    assert any("not a causal explanation" in c.value for c in at.caption)


def test_start_training_job_runs_in_the_app(tiny_store, tmp_path, monkeypatch):
    import sscmort_core.deep.train as train_mod
    from sscmort_core.pipeline import jobs

    calls = []

    def fake_train(store, backbone, **kwargs):
        kwargs["progress"]("resnet18 fold 1/5", 5, 5)
        calls.append((backbone, kwargs["profile"], kwargs["folds"]))
        return "deep-resnet18-v1"

    monkeypatch.setattr(train_mod, "train_backbone", fake_train)
    at = _run(tiny_store, tmp_path, monkeypatch)
    at.selectbox[0].set_value("resnet18")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Started job" in s.value for s in at.success)
    deadline = time.monotonic() + 30
    while jobs._THREADS and time.monotonic() < deadline:
        time.sleep(0.1)
    at.run()
    assert not at.exception
    history = at.dataframe[-1].value
    assert list(history["status"]) == ["done"]
    assert history["message"].iloc[0] == "registered deep-resnet18-v1"
    assert calls == [("resnet18", "quick", 5)]
