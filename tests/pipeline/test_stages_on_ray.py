"""The batch stages on Ray give the local pool's results over a small synthetic store: QCT (the
demo's volume pass), radiomics features, batch predictions of every registered model; a worker
killed mid-stage is retried, then its scan is recorded as failed; an interrupted Ray run
resumes; the CLI runs ``radiomics`` and ``predict --all-scans`` with ``--executor ray``.

All Ray tests share the session's local instance (2 CPUs, ``ray_local``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from sscmort_core import store as st
from sscmort_core.deep import registry
from sscmort_core.pipeline.batch_predict import SPLIT, predict_all_scans
from sscmort_core.pipeline.demo import build_demo
from sscmort_core.radiomics import stage
from sscmort_core.radiomics.features import load_params
from sscmort_core.util.executors import ExecutorSpec, LocalExecutor, open_executor


@pytest.fixture(scope="module")
def ray_ex(ray_local):
    with open_executor(ExecutorSpec("ray", 2)) as ex:
        yield ex


@pytest.fixture(scope="module")
def params():
    return load_params()


def _copy(src: Path, dest: Path) -> Path:
    shutil.copy(src, dest)
    return dest


def _scan_ids(path: Path, n: int) -> list[str]:
    with st.open_store(path, read_only=True) as s:
        return st.scans_frame(s)["scan_id"].tolist()[:n]


# --- QCT: the demo's single pass over the volumes --------------------------------------------
def test_demo_qct_on_ray_equals_the_local_pool(tmp_path, ray_ex):
    a, b = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    build_demo(a, n_patients=3, seed=11, stages=(), executor=LocalExecutor(2))
    build_demo(b, n_patients=3, seed=11, stages=(), executor=ray_ex)
    with st.open_store(a, read_only=True) as sa, st.open_store(b, read_only=True) as sb:
        qa, qb = st.qct_frame(sa), st.qct_frame(sb)
        scans_a, scans_b = st.scans_frame(sa), st.scans_frame(sb)
    assert len(qa) == 7
    pd.testing.assert_frame_equal(qa.drop(columns="created_at"), qb.drop(columns="created_at"),
                                  check_exact=True)  # bit for bit
    pd.testing.assert_frame_equal(scans_a.drop(columns="created_at"),
                                  scans_b.drop(columns="created_at"), check_exact=True)


# --- radiomics -------------------------------------------------------------------------------
def test_radiomics_on_ray_equals_the_local_pool(tiny_store, tmp_path, ray_ex, params):
    other = _copy(tiny_store, tmp_path / "other.duckdb")
    ids = _scan_ids(tiny_store, 4)
    with st.open_store(tiny_store) as s:
        local = stage.run_radiomics_stage(s, scan_ids=ids, params=params,
                                          executor=LocalExecutor(2))
        fa = st.radiomics_long_frame(s, params.param_hash)
    with st.open_store(other) as s:
        on_ray = stage.run_radiomics_stage(s, scan_ids=ids, params=params, executor=ray_ex)
        fb = st.radiomics_long_frame(s, params.param_hash)
    assert (local.n_extracted, on_ray.n_extracted, on_ray.executor) == (4, 4, "ray")
    assert on_ray.to_json()["executor"] == "ray" and on_ray.workers == 2
    assert len(fa) == 4 * local.n_features
    pd.testing.assert_frame_equal(fa, fb, check_exact=True)  # bit for bit


def kill_or_extract(always: str, once: str, marker_dir: str, job):
    """The real extraction, except that the worker kills itself (SIGKILL, as the OOM killer
    would) on scan ``always`` every time and on scan ``once`` the first time."""
    sid = str(job.row["scan_id"])
    marker = Path(marker_dir) / sid
    if sid == always or (sid == once and not marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return stage.extract_stored_scan(job)


@pytest.mark.parametrize("kind", [
    # the local pool's retries restart a pool of freshly importing workers each time (about
    # half a minute here); tests/util/test_executors.py checks them on cheap tasks
    pytest.param("local", marks=pytest.mark.slow), "ray"])
def test_a_killed_worker_is_retried_then_the_scan_is_recorded(kind, tiny_store, tmp_path,
                                                               params, request):
    ids = _scan_ids(tiny_store, 3)
    fn = partial(kill_or_extract, ids[0], ids[1], str(tmp_path))
    if kind == "ray":
        request.getfixturevalue("ray_local")
    with open_executor(ExecutorSpec(kind, 2, max_retries=1)) as ex, \
            st.open_store(tiny_store) as s:
        result = stage.run_radiomics_stage(s, scan_ids=ids, params=params, extract_fn=fn,
                                           executor=ex)
        fails = st.radiomics_failures_frame(s, params.param_hash)
        done = st.radiomics_extracted_scan_ids(s, params.param_hash)
    assert (result.n_extracted, result.n_failed) == (2, 1)
    assert result.failures[0].scan_id == ids[0]
    needle = "died 2 time(s)" if kind == "local" else "lost after 1 retries"
    assert needle in result.failures[0].reason
    assert fails["scan_id"].tolist() == [ids[0]] and needle in fails["reason"].iloc[0]
    assert done == {ids[1], ids[2]}  # the scan whose worker died once was run again


def test_an_interrupted_ray_run_resumes(tiny_store, ray_ex, params):
    ids = _scan_ids(tiny_store, 4)

    def stop_after_two(stage_name, done, total):
        if done == 2:
            raise KeyboardInterrupt

    with st.open_store(tiny_store) as s:
        with pytest.raises(KeyboardInterrupt):
            stage.run_radiomics_stage(s, scan_ids=ids, params=params, executor=ray_ex,
                                      progress=stop_after_two)
        kept = st.radiomics_extracted_scan_ids(s, params.param_hash)
        assert len(kept) == 2 and kept < set(ids)  # what came back before the stop is kept
        again = stage.run_radiomics_stage(s, scan_ids=ids, params=params, executor=ray_ex)
        assert (again.n_skipped, again.n_extracted) == (2, 2)
        assert st.radiomics_extracted_scan_ids(s, params.param_hash) == set(ids)


# --- model inputs ----------------------------------------------------------------------------
def test_model_inputs_on_ray_equal_the_local_pool(tiny_store, tmp_path, ray_ex):
    from sscmort_core.deep.inputs import model_inputs

    ids = _scan_ids(tiny_store, 3)
    with st.open_store(tiny_store, read_only=True) as s:
        local = model_inputs(s, k=3, size=32, scan_ids=ids, cache_dir=tmp_path / "a",
                             executor=LocalExecutor(2))
        on_ray = model_inputs(s, k=3, size=32, scan_ids=ids, cache_dir=tmp_path / "b",
                              executor=ray_ex)
    assert on_ray.scan_ids == local.scan_ids == tuple(sorted(ids))
    assert on_ray.x.shape == (3, 3, 3, 32, 32) and on_ray.x.dtype == local.x.dtype
    assert (on_ray.x == local.x).all()  # bit for bit


# --- batch predictions -----------------------------------------------------------------------
def _tiny_deep_model(models_dir: Path, seed: int):
    """timm's test_resnet at 64 px, K = 3, two fold heads, random weights (as tests/deep)."""
    from sscmort_core.deep.nets import EnsembleNet, NetConfig, SliceHead, build_net

    cfg = NetConfig("test_resnet", image_size=64, n_slices=3, attention_dim=8, dropout=0.0,
                    pooling="multiscale")
    net, _ = build_net(cfg, seed=seed)
    heads = [SliceHead(net.encoder.dim, cfg.attention_dim, cfg.dropout) for _ in range(2)]
    return registry.save_model(
        models_dir, EnsembleNet([net.encoder], heads).state_dict(), backbone=cfg.backbone,
        profile="quick: frozen backbone",
        config={"image_size": cfg.image_size, "n_slices": cfg.n_slices,
                "attention_dim": cfg.attention_dim, "dropout": cfg.dropout, "folds": 2,
                "shared_encoder": True, "pooling": cfg.pooling},
        data_hash="0" * 64, pretrained="random init", oof_auc={"1": None, "3": None, "5": None},
        n_scans=0, n_patients=0, synthetic=True)


@pytest.fixture(scope="module")
def predict_template(tiny_store_template, tmp_path_factory):
    """The tiny store with the QCT models (complete-case logistic and discrete-time survival,
    trained on it) and two tiny random deep models."""
    from sscmort_core.tabular.train import train_tabular

    root = tmp_path_factory.mktemp("predict")
    models_dir = root / "models"
    path = _copy(tiny_store_template, root / "template.duckdb")
    cards = [_tiny_deep_model(models_dir, seed) for seed in (0, 1)]
    with st.open_store(path) as s:
        train_tabular(s, "qct", models_dir=models_dir, seed=0)
        with s.transaction() as cur:
            for card in cards:
                registry.register_in_store(cur, card, models_dir)
    return path, models_dir


def _inference(path: Path) -> pd.DataFrame:
    with st.open_store(path, read_only=True) as s:
        return st.predictions_frame(s, split=SPLIT)


def test_batch_predict_on_ray_equals_the_local_pool(predict_template, tmp_path, ray_ex):
    template, models_dir = predict_template
    a = _copy(template, tmp_path / "local.duckdb")
    b = _copy(template, tmp_path / "ray.duckdb")
    ids = _scan_ids(template, 6)
    with st.open_store(a) as s:
        oof_before = len(st.predictions_frame(s))
        local = predict_all_scans(s, executor=LocalExecutor(2), models_dir=models_dir,
                                  device="cpu", batch_size=4, scan_ids=ids)
        assert len(st.predictions_frame(s)) == oof_before  # 'oof' rows untouched
    with st.open_store(b) as s:
        on_ray = predict_all_scans(s, executor=ray_ex, models_dir=models_dir, device="cpu",
                                   batch_size=4, scan_ids=ids)
    assert len(local.models) == 4 and set(local.models) == set(on_ray.models)
    assert local.n_written == on_ray.n_written == 6 * 4 and not on_ray.failures
    assert on_ray.executor["executor"] == "ray" and on_ray.devices == ("cpu",)
    pa, pb = _inference(a), _inference(b)
    assert len(pa) == 6 * 4 * 3 and (pa["split"] == "inference").all()
    pd.testing.assert_frame_equal(pa, pb, check_exact=False, rtol=0, atol=1e-12)
    # a rerun finds everything done and writes nothing
    with st.open_store(b) as s:
        again = predict_all_scans(s, executor=ray_ex, models_dir=models_dir, device="cpu",
                                  batch_size=4, scan_ids=ids)
    assert (again.n_written, again.n_skipped) == (0, 6 * 4)


def test_batch_predictions_equal_the_one_scan_paths(predict_template, tmp_path):
    """The batch's risks against the single-scan references: the upload page's tabular path
    (predict_features, 1e-12) and deep path (predict_volume: a batch of one, so float sums
    run in another order: 1e-6)."""
    from sscmort_core.deep.infer import predict_volume
    from sscmort_core.scans import load_scan_with_lungs
    from sscmort_core.tabular.io import load_model, tabular_model_ids
    from sscmort_core.tabular.model import predict_features

    template, models_dir = predict_template
    path = _copy(template, tmp_path / "s.duckdb")
    ids = _scan_ids(template, 3)
    with st.open_store(path) as s:
        predict_all_scans(s, executor=LocalExecutor(1), models_dir=models_dir, device="cpu",
                          batch_size=2, scan_ids=ids)
        got = st.predictions_frame(s, split=SPLIT).set_index(
            ["model_id", "scan_id", "horizon_years"])["risk"]
        qct = st.qct_features_frame(s).set_index("scan_id")  # QCT metrics + pattern extents
        qct_model = next(m for m in tabular_model_ids(s) if m.startswith("qct-logistic-"))
        model = load_model(s, qct_model, models_dir=models_dir)
        deep = {r.model_id: r.weights_sha256 for r in st.deep_models_frame(s).itertuples()}
        for sid in ids:
            ref = predict_features(model, qct.loc[sid].to_dict())
            for h, r in zip((1, 3, 5), (ref.risk_1y, ref.risk_3y, ref.risk_5y)):
                assert got[(qct_model, sid, h)] == pytest.approx(r, rel=1e-12, abs=1e-15)
            scan = load_scan_with_lungs(s, sid)
            vp = predict_volume(scan.volume.hu, scan.lungs.mask, models=deep,
                                models_dir=models_dir, device="cpu")
            for p in vp.predictions:
                if p.kind != "deep":
                    continue
                for h, r in zip((1, 3, 5), (p.risk_1y, p.risk_3y, p.risk_5y)):
                    assert got[(p.model_id, sid, h)] == pytest.approx(r, abs=1e-6)


def test_a_scan_that_cannot_be_read_is_recorded_and_the_others_predicted(predict_template,
                                                                         tmp_path):
    template, models_dir = predict_template
    path = _copy(template, tmp_path / "s.duckdb")
    ids = _scan_ids(template, 3)
    with st.open_store(path) as s, s.transaction() as cur:
        cur.execute("UPDATE scans SET volume_sha256 = 'not-the-hash' WHERE scan_id = ?",
                    [ids[1]])
    with st.open_store(path) as s:
        result = predict_all_scans(s, executor=LocalExecutor(1), models_dir=models_dir,
                                   device="cpu", scan_ids=ids)
        fails = st.prediction_failures_frame(s, SPLIT)
        pred = st.predictions_frame(s, split=SPLIT)
    deep_ids = sorted(m for m in result.models if m.startswith("deep-"))
    assert len(deep_ids) == 2
    assert sorted(fails["model_id"]) == deep_ids and set(fails["scan_id"]) == {ids[1]}
    assert fails["reason"].str.contains("sha256").all()
    # the QCT model scores stored QCT metrics, so it still predicts that scan
    assert set(pred.loc[pred["model_id"].isin(deep_ids), "scan_id"]) == {ids[0], ids[2]}
    assert len(pred) == 3 * (2 * 2 + 2 * 3)  # two QCT models (logistic, survival)


def test_cuda_on_a_cluster_without_gpus_is_a_named_error(predict_template, tmp_path, ray_ex):
    from sscmort_core.errors import ModelError

    template, models_dir = predict_template
    path = _copy(template, tmp_path / "s.duckdb")
    with st.open_store(path) as s, pytest.raises(ModelError, match="has no GPU"):
        predict_all_scans(s, executor=ray_ex, models_dir=models_dir, device="cuda",
                          scan_ids=_scan_ids(template, 1))


# --- the CLI ---------------------------------------------------------------------------------
def test_cli_radiomics_and_predict_all_scans_on_ray(predict_template, tmp_path, ray_local,
                                                    capsys, monkeypatch):
    from sscmort_core.cli import main

    template, models_dir = predict_template
    path = _copy(template, tmp_path / "s.duckdb")
    keep = _scan_ids(template, 3)
    with st.open_store(path) as s:  # keep the CLI's store small (children first: DuckDB
        for table in ("qct", "qct_regions", "qct_patterns", "mask_qc", "mask_qc_reviews",
                      "synthetic_truth", "predictions", "explanations", "scans"):
            s.con.execute(f"DELETE FROM {table} WHERE scan_id NOT IN (SELECT unnest(?))",
                          [keep])  # checks foreign keys per statement, not per transaction)
    monkeypatch.setenv("SSCMORT_EXECUTOR", "ray")  # the environment chooses Ray
    assert main(["radiomics", "--store", str(path), "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["executor"], out["extracted"], out["failed"]) == ("ray", 3, 0)
    assert main(["predict", "--all-scans", "--store", str(path), "--models-dir",
                 str(models_dir), "--device", "cpu", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["executor"]["executor"] == "ray" and out["split"] == "inference"
    assert (out["scans"], out["written"], out["failed"]) == (3, 12, 0)
    assert len(_inference(path)) == out["written"] * 3  # every written pair, 3 horizons
    # PATH and --all-scans together, or neither: one line, exit 2
    assert main(["predict", "--all-scans", str(path), "--store", str(path)]) == 2
    assert main(["predict", "--store", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: give either a scan PATH or --all-scans, not both",
                   "error: give a scan PATH (DICOM folder or zip, NIfTI, NRRD, MHA) or "
                   "--all-scans"]


def test_cli_without_ray_is_one_line_and_leaves_the_store(tiny_store, capsys, monkeypatch):
    import sys

    from sscmort_core.cli import main
    from sscmort_core.util.executors import RAY_MISSING

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "sscmort_core.util.ray_executor", raising=False)
    before = tiny_store.read_bytes()
    assert main(["radiomics", "--store", str(tiny_store), "--executor", "ray",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {RAY_MISSING}"]
    assert tiny_store.read_bytes() == before


# --- registry import: image checks and scans on Ray ------------------------------------------
def test_registry_import_on_ray_equals_the_local_pool(tmp_path, ray_ex):
    """The same manifest imported with the local pool and with Ray gives the same scans and
    QCT rows (ids are keyed hashes of the rows, so they match too)."""
    from sscmort_core.pipeline.cohort_import import ImportOptions, run_import
    from sscmort_core.synthetic.registry import write_registry_folder

    reg = write_registry_folder(tmp_path / "reg", n_patients=3, seed=5)
    frames = {}
    for name, ex in (("local", None), ("ray", ray_ex)):
        with st.open_store(tmp_path / f"{name}.duckdb") as s:
            (s.data_dir / "pseudonym.secret").parent.mkdir(parents=True, exist_ok=True)
            (s.data_dir / "pseudonym.secret").write_text("ab" * 32)  # the same pseudonyms
            result = run_import(s, reg.root, ImportOptions(workers=2, executor=ex))
            assert result.imported == reg.n_scans > 0 and not result.failures
            frames[name] = (st.scans_frame(s), st.qct_frame(s))
    drop = ["created_at"]
    for a, b in zip(frames["local"], frames["ray"]):
        pd.testing.assert_frame_equal(a.drop(columns=drop).reset_index(drop=True),
                                      b.drop(columns=drop).reset_index(drop=True))
