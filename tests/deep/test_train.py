"""Training: two-epoch smoke runs on the tiny cohort, grouped folds, resume, CLI options.

Tiny settings throughout (resnet18 at 32 px, K = 3 slices, 2 folds) so the module runs in
well under a minute on 2 CPU cores; the real profiles are measured in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sscmort_core import store as st_store
from sscmort_core.cli import build_parser
from sscmort_core.deep.config import HEAD_SETTING, PROFILES, QUICK_HEAD_GRID, profile_config
from sscmort_core.deep.fit import EpochLog, augment_batch
from sscmort_core.deep.inputs import model_inputs
from sscmort_core.deep.registry import read_card
from sscmort_core.deep.train import train_backbone
from sscmort_core.errors import ModelError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline.evaluate import run_evaluation
from sscmort_core.views.report import build_report
from sscmort_core.views.report_render import render

torch.set_num_threads(2)
TINY = {"image_size": 32, "n_slices": 3, "epochs": 2, "batch_size": 8}


@pytest.fixture(scope="module")
def inputs_cache(tiny_store_template, tmp_path_factory):
    """Model inputs of the tiny cohort, computed once for the module (2 worker processes)."""
    cache = tmp_path_factory.mktemp("inputs")
    with st_store.open_store(tiny_store_template, read_only=True) as s:
        mi = model_inputs(s, k=3, size=32, workers=2, cache_dir=cache)
        assert mi.x.shape == (len(st_store.scan_rows(s)), 3, 3, 32, 32) and not mi.failed
    return cache


def _train(store_path, models_dir, cache, profile="quick", logs=None, backbone="resnet18",
           **over):
    with st_store.open_store(store_path) as s:
        return train_backbone(s, backbone, profile=profile, models_dir=models_dir, folds=2,
                              workers=1, device="cpu", cache_dir=cache,
                              config_overrides={**TINY, **over},
                              on_epoch=None if logs is None else logs.append)


def _oof(store_path, model_id):
    with st_store.open_store(store_path, read_only=True) as s:
        return st_store.predictions_frame(s, [model_id]), st_store.scans_frame(s)


def test_quick_two_epoch_smoke(tiny_store, tmp_path, inputs_cache):
    logs: list[EpochLog] = []
    model_id = _train(tiny_store, tmp_path / "models", inputs_cache, logs=logs)
    assert model_id == "deep-resnet18-v1"
    # every fold trains each head candidate of the grid (nested selection)
    n_grid = len(QUICK_HEAD_GRID)
    assert [(l.fold, l.candidate, l.epoch) for l in logs] == [
        (f, c, e) for f in (0, 1) for c in range(n_grid) for e in (1, 2)]
    assert logs[2].stage == "resnet18 fold 1/2 head 2/3"
    assert all(np.isfinite(l.train_loss) for l in logs)
    preds, scans = _oof(tiny_store, model_id)
    # an out-of-fold prediction for every scan at every horizon
    assert len(preds) == len(scans) * len(HORIZONS_YEARS)
    assert set(preds["split"]) == {"oof"}
    wide = preds.pivot(index="scan_id", columns="horizon_years", values="risk")
    assert (wide[1] <= wide[3]).all() and (wide[3] <= wide[5]).all()
    # patient-grouped folds: no patient's scans in two folds
    folds = preds.merge(scans[["scan_id", "patient_id"]], on="scan_id")
    assert (folds.groupby("patient_id")["fold"].nunique() == 1).all()
    assert set(folds["fold"]) == {0, 1}
    card = read_card(tmp_path / "models", model_id)
    assert card.profile == "quick: frozen backbone" and card.random_init
    assert card.config["shared_encoder"] and card.config["epochs"] == 2
    assert (card.config["device"], card.config["precision"]) == ("cpu", "fp32")
    assert set(card.oof_auc) == {1, 3, 5} and card.notes
    # the card says how the head's settings were chosen: nested, per fold, by inner loss
    sel = card.extra["head_selection"]
    assert sel["method"] == "nested" and sel["grid"] == [list(g) for g in QUICK_HEAD_GRID]
    assert card.config["head_grid"] == sel["grid"]
    assert len(sel["chosen"]) == 2 and all(c in sel["grid"] for c in sel["chosen"])
    for f in range(2):
        assert sel["chosen_index"][f] == int(np.argmin(sel["inner_val_loss"][f]))
        assert sel["chosen"][f] == sel["grid"][sel["chosen_index"][f]]
    assert "head_chosen" not in card.config  # one record of the choice: head_selection
    head = card.extra["settings"][HEAD_SETTING]
    assert head.startswith("nested: grid [lr 5e-04, weight decay 0.1, dropout 0.5; ")
    assert "chosen per fold: fold 1: lr " in head and "by inner validation loss" in head
    # ... and the report shows it (validation design section), as the pages read the card
    with st_store.open_store(tiny_store) as s:
        run_evaluation(s, model_ids=[model_id], n_boot=20, seed=0)
        report = build_report(s, model_id, n_boot=20)
    text = render(report, "md")
    design = text.split("## 4. Validation design", 1)[1].split("\n## ", 1)[0]
    assert f"| {HEAD_SETTING} | {head} |" in design
    assert "| grouped by | patient |" in design and "| likelihood | survival likelihood" in design
    assert not (tmp_path / "models" / ".runs").exists() or not any(
        (tmp_path / "models" / ".runs").iterdir())


def test_full_profile_two_epoch_smoke(tiny_store, tmp_path, inputs_cache):
    # fine-tuning end to end: timm's tiny test_resnet (0.4 M weights) keeps this fast
    logs: list[EpochLog] = []
    model_id = _train(tiny_store, tmp_path / "models", inputs_cache, profile="full", logs=logs,
                      backbone="test_resnet", embed_batch=16, batch_size=16)
    assert len(logs) == 4
    card = read_card(tmp_path / "models", model_id)
    assert card.profile == "full: fine-tuned end to end"
    assert not card.config["shared_encoder"] and card.config["augment"]
    assert card.extra["head_selection"]["method"] == "fixed before looking"
    assert card.extra["settings"][HEAD_SETTING].startswith(
        "fixed before looking: lr 3e-04, weight decay 0.05, dropout 0.2")
    assert "never from performance" in card.extra["settings"]["batch size"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "models" / card.weights_file), "pt") as fh:
        keys = list(fh.keys())
    assert any(k.startswith("encoders.1.") for k in keys)  # one fine-tuned encoder per fold


class _Stop(Exception):
    pass


def test_resume_continues_and_matches_an_uninterrupted_run(tiny_store, tmp_path,
                                                           inputs_cache):
    over = {"epochs": 3, "patience": 10}
    ref = _train(tiny_store, tmp_path / "ref", inputs_cache, **over)
    ref_oof, _ = _oof(tiny_store, ref)

    def interrupt(log: EpochLog) -> None:
        if (log.fold, log.candidate, log.epoch) == (1, 1, 2):
            raise _Stop  # after the epoch's checkpoint was written

    with st_store.open_store(tiny_store) as s, pytest.raises(_Stop):
        train_backbone(s, "resnet18", profile="quick", models_dir=tmp_path / "run", folds=2,
                       workers=1, device="cpu", cache_dir=inputs_cache,
                       config_overrides={**TINY, **over}, on_epoch=interrupt)
    assert list((tmp_path / "run" / ".runs").iterdir()), "checkpoints kept for the resume"
    logs: list[EpochLog] = []
    resumed = _train(tiny_store, tmp_path / "run", inputs_cache, logs=logs, **over)
    # fold 0 done, fold 1's first head done, its second from epoch 3, then its third
    assert [(l.fold, l.candidate, l.epoch) for l in logs] == [(1, 1, 3), (1, 2, 1), (1, 2, 2),
                                                             (1, 2, 3)]
    got, _ = _oof(tiny_store, resumed)
    np.testing.assert_allclose(got["risk"].to_numpy(), ref_oof["risk"].to_numpy(), atol=1e-6)


def test_augment_batch_keeps_shape_range_and_is_seeded():
    x = torch.rand(2, 3, 3, 16, 16)
    a = augment_batch(x, torch.Generator().manual_seed(1))
    b = augment_batch(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_profiles():
    quick, full = PROFILES["quick"], PROFILES["full"]
    assert quick.frozen_backbone and not full.frozen_backbone
    assert (quick.image_size, full.image_size) == (64, 224) and full.augment
    assert profile_config("quick", epochs=1).epochs == 1
    with pytest.raises(ModelError):
        profile_config("huge")
    with pytest.raises(ModelError):
        profile_config("quick", no_such_field=1)
    assert profile_config("full", precision="fp32").precision == "fp32"
    with pytest.raises(ModelError, match="precision"):
        profile_config("full", precision="fp16")
    with pytest.raises(ModelError, match="batch_size must be at least 1"):
        profile_config("full", batch_size=0)


def test_cli_train_deep_with_bce(tiny_store, tmp_path, inputs_cache, monkeypatch, capsys):
    parser, commands = build_parser()
    args = parser.parse_args(["train", "--kind", "deep", "--store", str(tiny_store), "--json",
                              "--quiet", "--backbone", "resnet18", "--loss", "bce", "--epochs",
                              "1", "--folds", "2", "--models-dir", str(tmp_path / "m"),
                              "--device", "cpu"])
    import sscmort_core.deep.train as train_mod

    real = train_mod.train_backbone
    monkeypatch.setattr(train_mod, "train_backbone", lambda *a, **k: real(
        *a, **{**k, "cache_dir": inputs_cache,
               "config_overrides": {**TINY, **k["config_overrides"]}}))
    commands["train"](args)
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "deep" and summary["models_dir"] == str(tmp_path / "m")
    (m,) = summary["models"]
    assert m["pretrained"] == "random init" and m["device"] == "cpu"
    assert read_card(tmp_path / "m", m["model_id"]).config["loss"] == "bce"


def test_cli_train_needs_an_existing_store(tmp_path):
    from sscmort_core.errors import StoreError

    parser, commands = build_parser()
    args = parser.parse_args(["train", "--kind", "deep", "--store", str(tmp_path / "none.duckdb"),
                              "--folds", "2", "--models-dir", str(tmp_path / "m"), "--json",
                              "--quiet"])
    with pytest.raises(StoreError, match="no store"):
        commands["train"](args)
    assert not (tmp_path / "none.duckdb").exists()  # nothing created


@pytest.mark.gpu
def test_full_profile_on_cuda_bf16(tiny_store, tmp_path, inputs_cache):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch.cuda.is_available() is False on this machine")
    with st_store.open_store(tiny_store) as s:
        model_id = train_backbone(s, "test_resnet", profile="full", models_dir=tmp_path, folds=2,
                                  workers=1, device="cuda", cache_dir=inputs_cache,
                                  config_overrides={**TINY, "epochs": 1})
    card = read_card(tmp_path, model_id)
    assert card.config["device"] == "cuda" and card.config["precision"] == "bf16"
    assert all(v is None or 0.0 <= v <= 1.0 for v in card.oof_auc.values())
