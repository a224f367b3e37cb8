"""The demo's single pass over each synthetic volume gives the same QCT, radiomics and model
inputs as the separate stages, which each regenerate and segment the volume again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sscmort_core import store as st
from sscmort_core.cli import main
from sscmort_core.deep.inputs import _input_for_row, model_inputs
from sscmort_core.lungs import qct_metrics, segment_lungs
from sscmort_core.pipeline import DEMO_STAGES
from sscmort_core.pipeline.demo import _demo_jobs, _measure_synthetic, build_demo, plan_stages
from sscmort_core.pipeline.measure import _Job as _MeasureJob
from sscmort_core.pipeline.measure import _measure_job
from sscmort_core.radiomics.features import load_params
from sscmort_core.radiomics.stage import _Job, extract_stored_scan, run_radiomics_stage
from sscmort_core.scans import volume_from_row

QCT_KEYS = ("lung_volume_ml", "mean_lung_density_hu", "skewness", "kurtosis", "haa_pct",
            "ild_extent_pct")


def test_one_pass_matches_the_separate_stages(tiny_store):
    params = load_params()
    with st.open_store(tiny_store, read_only=True) as store:
        rows = st.scan_rows(store)[:3]
        store_dir = store.data_dir
        data_dir = str(store_dir)
    jobs, label = _demo_jobs(rows, DEMO_STAGES)
    assert label == "volumes + lungs + QCT + radiomics + model inputs"
    for job in jobs:
        m = _measure_synthetic(job)
        assert m.sha256 == job.row["volume_sha256"]
        vol = volume_from_row(job.row, store_dir)  # the separate path: regenerate, segment
        lungs = segment_lungs(vol.hu, vol.spacing_mm)
        assert {k: m.rows.qct[k] for k in QCT_KEYS} == pytest.approx(
            qct_metrics(vol.hu, lungs.mask, vol.spacing_mm).to_dict(), abs=1e-9)
        assert m.rows.qct["left_volume_ml"] == pytest.approx(lungs.left_volume_ml)
        ref = _measure_job(_MeasureJob(job.row, data_dir)).rows  # the measure stage's worker
        assert m.rows.regions == ref.regions and m.rows.qc == ref.qc
        assert m.rows.patterns == ref.patterns
        ref = extract_stored_scan(_Job(row=job.row, data_dir=data_dir, params=params))
        assert m.radiomics.reason is None and ref.reason is None
        assert m.radiomics.features.names == ref.features.names
        np.testing.assert_allclose(m.radiomics.features.values, ref.features.values, rtol=1e-12)
        sid, x_ref, reason = _input_for_row((job.row, data_dir, *job.input_shape))
        assert reason is None and m.model_input.dtype == np.uint8
        assert m.model_input.shape == (job.input_shape[0], 3, job.input_shape[1],
                                       job.input_shape[1])
        np.testing.assert_array_equal(m.model_input, x_ref)


def test_only_the_asked_for_extras_are_computed(tiny_store):
    with st.open_store(tiny_store, read_only=True) as store:
        row = st.scan_rows(store)[0]
    (job,), label = _demo_jobs([row], ())
    assert label == "volumes + lungs + QCT"
    m = _measure_synthetic(job)
    assert m.radiomics is None and m.model_input is None
    with pytest.raises(ValueError, match="unknown demo stages"):
        plan_stages(("radiomics", "nonsense"), 10)


def test_a_tiny_demo_skips_the_model_stages_up_front_and_keeps_the_rest(tmp_path, capsys):
    """3 patients cannot fill 5 folds: the model stages are left out with a note (before any
    work), the store is built, and the oracle is still evaluated."""
    assert plan_stages(DEMO_STAGES, 3) == (
        ("radiomics", "evaluate"),
        tuple(f"{s} models skipped: 3 patients cannot fill 5 cross-validation folds (use "
              "--patients 5 or more)" for s in ("tabular", "deep")))
    path = tmp_path / "tiny.duckdb"
    code = main(["demo", "--store", str(path), "--patients", "3", "--workers", "1",
                 "--skip", "radiomics", "--quiet", "--json",
                 "--models-dir", str(tmp_path / "m")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["notes"] and out.err.count("note: ") == 2
    with st.open_store(path, read_only=True) as store:
        assert set(st.models_frame(store)["kind"]) == {"oracle"}
        assert not st.metrics_frame(store).empty  # the evaluation stage ran


def test_demo_seeds_radiomics_and_the_input_cache(tmp_path, monkeypatch):
    """build_demo writes the pass's radiomics and model inputs, so the later stages find them
    done (the deep stage itself is replaced here by a check of the seeded cache)."""
    import sscmort_core.deep.train as train
    from sscmort_core.deep.config import quick_input_shape

    seen = {}

    def fake_quick(store, *, cache_dir, **kw):  # the real training is tested in test_train
        k, size = quick_input_shape()
        calls = []
        inp = model_inputs(store, k=k, size=size, cache_dir=cache_dir,
                           progress=lambda stage, done, total: calls.append(total))
        seen.update(n=len(inp.scan_ids), recomputed=max(calls, default=0), x=inp.x)
        return []

    monkeypatch.setattr(train, "train_quick_backbones", fake_quick)
    path = tmp_path / "d.duckdb"
    stages = []
    build_demo(path, n_patients=5, seed=5, workers=1, stages=("radiomics", "deep"),
               progress=lambda stage, done, total: stages.append((stage, total)))
    assert ("radiomics", 0) in stages  # the radiomics stage found every scan done
    with st.open_store(path) as store:
        n_scans = st.table_counts(store)["scans"]
        assert ("volumes + lungs + QCT + radiomics + model inputs", n_scans) in stages
        n_feat = store.con.execute(
            "SELECT count(DISTINCT scan_id) FROM radiomics_features").fetchone()[0]
        assert n_feat == n_scans
        again = run_radiomics_stage(store, workers=1)
    assert (again.n_extracted, again.n_skipped) == (0, n_scans)
    assert seen["n"] == n_scans and seen["recomputed"] == 0  # all served from the cache
    assert (tmp_path / "d_files" / "model_inputs").is_dir()
