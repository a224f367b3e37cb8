"""Inference: device choice, batched vs naive, ensemble, warm cache, CLI predict, saliency.

A tiny registered model (timm's test_resnet at 64 px, K = 3, multiscale pooling as in the quick
profile, two fold heads, random weights)
and a tiny synthetic scan from the session's tiny store; no training needed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sscmort_core import store as st_store
from sscmort_core.deep import registry
from sscmort_core.deep.infer import (
    DEEP_ENSEMBLE_ID,
    load_deep_model,
    predict_batch,
    predict_for_volume,
    predict_naive,
    predict_volume,
    select_device,
)
from sscmort_core.deep.nets import EnsembleNet, NetConfig, SliceHead, build_net
from sscmort_core.errors import ChecksumMismatchError, ModelError
from sscmort_core.util.cache import ModelCache

torch.set_num_threads(2)
CFG = NetConfig("test_resnet", image_size=64, n_slices=3, attention_dim=8, dropout=0.0,
                pooling="multiscale")


def _save_tiny(models_dir, seed):
    net, _ = build_net(CFG, seed=seed)
    heads = [SliceHead(net.encoder.dim, CFG.attention_dim, CFG.dropout) for _ in range(2)]
    ens = EnsembleNet([net.encoder], heads)
    return registry.save_model(
        models_dir, ens.state_dict(), backbone=CFG.backbone, profile="quick: frozen backbone",
        config={"image_size": CFG.image_size, "n_slices": CFG.n_slices,
                "attention_dim": CFG.attention_dim, "dropout": CFG.dropout, "folds": 2,
                "shared_encoder": True, "pooling": CFG.pooling},
        data_hash="0" * 64, pretrained="random init", oof_auc={"1": None, "3": None, "5": None},
        n_scans=0, n_patients=0, synthetic=True)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    _save_tiny(d, 0)
    _save_tiny(d, 1)
    return d


@pytest.fixture(scope="module")
def scan(tiny_store_template):
    from sscmort_core.lungs import segment_lungs
    from sscmort_core.scans import load_scan_volume

    with st_store.open_store(tiny_store_template, read_only=True) as s:
        scan_id = st_store.scan_rows(s)[0]["scan_id"]
        vol = load_scan_volume(s, scan_id)
    return scan_id, vol, segment_lungs(vol.hu, vol.spacing_mm)


@pytest.fixture()
def registered_store(tiny_store, models_dir):
    with st_store.open_store(tiny_store) as s:
        with s.transaction() as cur:
            for card in registry.list_cards(models_dir):
                registry.register_in_store(cur, card, models_dir)
    return tiny_store


def test_select_device_on_this_machine():
    dev = select_device("auto")
    assert dev.name in ("cuda", "mps", "cpu") and dev.reason.startswith("auto")
    assert select_device("cpu").name == "cpu"
    if not torch.cuda.is_available():
        assert dev.name != "cuda"
        with pytest.raises(ModelError, match="no CUDA"):
            select_device("cuda")


def test_batched_matches_naive_per_slice_loop(models_dir, scan):
    _, vol, lungs = scan
    from sscmort_core.deep.inputs import input_for_volume

    loaded = load_deep_model(models_dir, "deep-test_resnet-v1", select_device("cpu"),
                             cache=ModelCache())
    x = input_for_volume(vol.hu, lungs.mask, k=3, size=64)[None]  # (1, K, 3, S, S)
    fast = predict_batch(loaded, np.concatenate([x, x[:, ::-1]]))  # two scans, one pass
    slow = predict_naive(loaded, np.concatenate([x, x[:, ::-1]]))
    np.testing.assert_allclose(fast.risk, slow, atol=1e-5)
    assert fast.fold_risk.shape == (2, 2, 3) and fast.attention.shape == (2, 3)
    np.testing.assert_allclose(fast.attention.sum(axis=1), 1.0, atol=1e-5)


def test_predict_for_volume_models_and_ensemble(registered_store, models_dir, scan):
    _, vol, lungs = scan
    with st_store.open_store(registered_store) as s:
        preds = predict_for_volume(s, vol.hu, lungs.mask, vol.spacing_mm,
                                   models_dir=models_dir, device="cpu")
    ids = [p.model_id for p in preds]
    assert ids == ["deep-test_resnet-v1", "deep-test_resnet-v2", DEEP_ENSEMBLE_ID]
    for p in preds:
        assert p.risk_1y <= p.risk_3y <= p.risk_5y
    assert "random init" in preds[0].note
    mean = np.mean([[p.risk_1y, p.risk_3y, p.risk_5y] for p in preds[:2]], axis=0)
    np.testing.assert_allclose([preds[2].risk_1y, preds[2].risk_3y, preds[2].risk_5y], mean)


def test_no_models_gives_empty_list_and_unknown_id_an_error(tiny_store, tmp_path, scan):
    _, vol, lungs = scan
    with st_store.open_store(tiny_store) as s:
        assert predict_for_volume(s, vol.hu, lungs.mask, vol.spacing_mm,
                                  models_dir=tmp_path) == []
        with pytest.raises(ModelError, match="no registered deep model"):
            predict_for_volume(s, vol.hu, lungs.mask, vol.spacing_mm, models_dir=tmp_path,
                               model="deep-x-v1")


def test_warm_cache_loads_once_and_rechecks_a_changed_file(tmp_path, scan):
    _, vol, lungs = scan
    card = _save_tiny(tmp_path, 3)
    cache = ModelCache()
    models = {card.model_id: card.weights_sha256}
    predict_volume(vol.hu, lungs.mask, models=models, models_dir=tmp_path, device="cpu",
                   cache=cache)
    predict_volume(vol.hu, lungs.mask, models=models, models_dir=tmp_path, device="cpu",
                   cache=cache)
    assert cache.loads == 1
    path = tmp_path / card.weights_file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))  # a tampered file is never served from the cache
    with pytest.raises(ChecksumMismatchError):
        predict_volume(vol.hu, lungs.mask, models=models, models_dir=tmp_path, device="cpu",
                       cache=cache)


def _cli(argv):
    from sscmort_core.cli import build_parser

    parser, commands = build_parser()
    args = parser.parse_args(argv)
    commands[args.command](args)


def test_cli_predict_nifti_json(registered_store, models_dir, scan, tmp_path, capsys):
    import SimpleITK as sitk

    _, vol, _ = scan
    img = sitk.GetImageFromArray(np.asarray(vol.hu, dtype=np.int16))  # (z, y, x) -> x, y, z
    img.SetSpacing(tuple(float(s) for s in vol.spacing_mm[::-1]))
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(img, str(path))
    _cli(["predict", str(path), "--store", str(registered_store), "--models-dir",
          str(models_dir), "--device", "auto", "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == select_device("auto").name and out["device_reason"]
    assert [m["model_id"] for m in out["models"]] == ["deep-test_resnet-v1",
                                                      "deep-test_resnet-v2"]
    e = out["ensemble"]
    assert e["model_id"] == DEEP_ENSEMBLE_ID and e["risk_1y"] <= e["risk_3y"] <= e["risk_5y"]
    _cli(["predict", str(path), "--store", str(registered_store), "--models-dir",
          str(models_dir), "--model", "deep-test_resnet-v2", "--json", "--quiet"])
    one = json.loads(capsys.readouterr().out)
    assert [m["model_id"] for m in one["models"]] == ["deep-test_resnet-v2"]
    assert one["ensemble"] is None


def test_saliency_grad_cam_round_trip(registered_store, models_dir, scan, monkeypatch):
    from sscmort_core.deep import saliency

    scan_id, vol, lungs = scan
    with st_store.open_store(registered_store) as s:
        sal = saliency.explain_scan(s, scan_id, "deep-test_resnet-v1", models_dir=models_dir,
                                    device="cpu", horizon_years=3, top=2)

        def must_not_recompute(*a, **k):
            raise AssertionError("recomputed instead of read from the store")

        monkeypatch.setattr(saliency, "saliency_for_volume", must_not_recompute)
        again = saliency.explain_scan(s, scan_id, "deep-test_resnet-v1",
                                      models_dir=models_dir, horizon_years=3, top=2)
        with pytest.raises(AssertionError, match="recomputed"):  # another top: not the cache
            saliency.explain_scan(s, scan_id, "deep-test_resnet-v1", models_dir=models_dir,
                                  horizon_years=3, top=3)
    assert len(sal.slices) == 2 and sal.horizon_years == 3
    assert sal.slices[0].attention >= sal.slices[1].attention
    for sl in sal.slices:
        assert sl.heatmap.shape == (64, 64) and sl.image.dtype == np.uint8
        assert 0.0 <= sl.heatmap.min() and sl.heatmap.max() <= 1.0
        assert 0 <= sl.z_index < vol.hu.shape[0]
    assert max(float(sl.heatmap.max()) for sl in sal.slices) in (0.0, 1.0)
    for a, b in zip(sal.slices, again.slices):
        assert (a.position, a.z_index) == (b.position, b.z_index)
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1 / 255 + 1e-6)
    assert "not a causal explanation" in again.legend and "3-year" in again.legend
    from sscmort_core.views.render import overlay_rgb

    rgb = overlay_rgb(again, 0, upscale=2)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu(models_dir, scan):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    _, vol, lungs = scan
    cpu = predict_volume(vol.hu, lungs.mask, models={"deep-test_resnet-v1": None},
                         models_dir=models_dir, device="cpu", cache=ModelCache())
    gpu = predict_volume(vol.hu, lungs.mask, models={"deep-test_resnet-v1": None},
                         models_dir=models_dir, device="cuda", cache=ModelCache())
    fp32 = predict_volume(vol.hu, lungs.mask, models={"deep-test_resnet-v1": None},
                          models_dir=models_dir, device="cuda", cache=ModelCache(),
                          precision="fp32")
    assert gpu.device.name == "cuda"
    np.testing.assert_allclose(gpu.outputs["deep-test_resnet-v1"].risk,
                               cpu.outputs["deep-test_resnet-v1"].risk, atol=2e-2)  # bf16
    np.testing.assert_allclose(fp32.outputs["deep-test_resnet-v1"].risk,
                               cpu.outputs["deep-test_resnet-v1"].risk, atol=2e-3)  # tf32 convs
