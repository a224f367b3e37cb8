"""Networks: monotone multi-horizon head, attention pooling, backbones, pretrained weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sscmort_core.deep.config import UI_BACKBONES
from sscmort_core.deep.nets import (
    AttentionPool,
    EnsembleNet,
    NetConfig,
    SliceEncoder,
    SliceHead,
    build_net,
    create_backbone,
    cumulative_risk,
)
from sscmort_core.errors import ModelError

torch.set_num_threads(2)
TINY = NetConfig("resnet18", image_size=32, n_slices=3, attention_dim=16)


@pytest.fixture(scope="module")
def tiny_net():
    net, source = build_net(TINY, seed=0)
    return net.eval(), source


def test_cumulative_risk_golden():
    # logits 0 -> every interval hazard 0.5: risks 1 - 0.5, 1 - 0.25, 1 - 0.125
    r = cumulative_risk(torch.zeros(1, 3))
    assert torch.allclose(r, torch.tensor([[0.5, 0.75, 0.875]]))
    # hazards 0.1, 0.2, 0.5: survival 0.9, 0.72, 0.36 -> risks 0.1, 0.28, 0.64 (by hand)
    h = torch.tensor([[0.1, 0.2, 0.5]])
    r = cumulative_risk(torch.log(h / (1 - h)))
    assert torch.allclose(r, torch.tensor([[0.1, 0.28, 0.64]]), atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-60, 60, allow_nan=False), min_size=3, max_size=3))
def test_cumulative_risk_monotone_for_any_logits(logits):
    r = cumulative_risk(torch.tensor([logits], dtype=torch.float32))[0]
    assert (r >= 0).all() and (r <= 1).all()
    assert r[0] <= r[1] <= r[2]


def test_network_risks_monotone_on_random_inputs_and_weights(tiny_net):
    """Property: whatever the input and the head's weights, risks never fall with horizon."""
    net, _ = tiny_net
    gen = torch.Generator().manual_seed(0)
    for trial in range(8):
        with torch.no_grad():
            for p in net.head.parameters():  # arbitrary, even extreme, head weights
                p.copy_(torch.randn(p.shape, generator=gen) * (1 + 5 * trial))
            x = torch.rand(4, 3, 3, 32, 32, generator=gen)  # (B, K, 3, S, S)
            logits, att = net(x)
        r = cumulative_risk(logits)
        assert r.shape == (4, 3) and att.shape == (4, 3)
        assert torch.all(r[:, 1:] >= r[:, :-1])
        assert torch.allclose(att.sum(dim=1), torch.ones(4), atol=1e-5)


def test_attention_pool_weights_a_dominant_slice():
    pool = AttentionPool(4, 8)
    h = torch.zeros(1, 3, 4)
    pooled, w = pool(h)  # identical slices -> uniform weights, pooled = the slice
    assert torch.allclose(w, torch.full((1, 3), 1 / 3))
    assert torch.allclose(pooled, torch.zeros(1, 4))


@pytest.mark.parametrize("backbone", [*UI_BACKBONES, "test_vit"])
def test_backbones_give_channel_first_maps(backbone):
    """The three UI backbones, and a ViT (tokens) as an example of 'any timm name'."""
    model, source = create_backbone(backbone, 32)
    enc = SliceEncoder(model).eval()
    with torch.no_grad():
        fmap = enc.feature_maps(torch.rand(2, 3, 32, 32))
        emb = enc(torch.rand(2, 3, 32, 32))
    assert fmap.ndim == 4 and fmap.shape[:2] == (2, enc.dim)
    assert emb.shape == (2, enc.dim)
    assert source.describe() == "random init"


def test_multiscale_pooling_concatenates_every_stage():
    model, _ = create_backbone("resnet18", 32)
    enc = SliceEncoder(model, "multiscale").eval()
    assert enc.dim == 64 + 64 + 128 + 256 + 512  # resnet18's stage widths
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        maps = enc.stage_maps(x)
        emb = enc(x)
    assert [m.shape[1] for m in maps] == [64, 64, 128, 256, 512]
    assert emb.shape == (2, enc.dim)
    # the last 512 features are the 'last' pooling's embedding
    assert torch.allclose(emb[:, -512:], SliceEncoder(model, "last").eval()(x), atol=1e-5)
    with pytest.raises(ModelError, match="unknown pooling"):
        SliceEncoder(model, "max")


def test_head_standardises_its_inputs():
    head = SliceHead(4, 8, 0.0).eval()
    emb = torch.randn(10, 3, 4) * torch.tensor([1.0, 10.0, 100.0, 1000.0]) + 5.0
    head.set_input_stats(emb)
    z = (emb - head.emb_mean) / head.emb_std
    assert torch.allclose(z.reshape(-1, 4).mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.reshape(-1, 4).std(0), torch.ones(4), atol=1e-4)
    assert "emb_mean" in head.state_dict()  # saved with the model, used at inference


def test_unknown_backbone_is_a_model_error():
    with pytest.raises(ModelError, match="no backbone"):
        create_backbone("not_a_real_net", 32)


def test_ensemble_shared_encoder_matches_single_net(tiny_net):
    net, _ = tiny_net
    ens = EnsembleNet([net.encoder], [net.head, net.head]).eval()
    x = torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        fold_risk, att = ens(x)
        single = cumulative_risk(net(x)[0])
    assert fold_risk.shape == (2, 2, 3) and att.shape == (2, 2, 3)
    assert torch.allclose(fold_risk[0], single, atol=1e-6)
    with pytest.raises(ModelError):
        EnsembleNet([net.encoder, net.encoder], [SliceHead(512, 8, 0.0)] * 3)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_pretrained_file_is_loaded(tmp_path, suffix):
    from safetensors.torch import save_file

    torch.manual_seed(42)
    donor, _ = create_backbone("resnet18", 32)
    state = {k: v.contiguous() for k, v in donor.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)
    model, source = create_backbone("resnet18", 32, pretrained=path)
    assert source.kind == "file" and source.sha256 and str(path) in source.describe()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_pretrained_errors_never_download(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="not found"):
        create_backbone("resnet18", 32, pretrained=tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    with pytest.raises(ModelError):
        create_backbone("resnet18", 32, pretrained=bad)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError, match="never downloads"):
        create_backbone("resnet18", 32, pretrained="hf-cache")


def test_build_net_is_deterministic():
    a, _ = build_net(TINY, seed=7)
    b, _ = build_net(TINY, seed=7)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert np.isfinite(sum(float(v.float().sum()) for v in a.state_dict().values()))
