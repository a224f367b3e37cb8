"""Radiomics stage: parameters, extraction against pyradiomics itself, and the batch."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from sscmort_core import store as st
from sscmort_core.errors import EmptyMaskError, RadiomicsParamsError, StoreError
from sscmort_core.radiomics import features as rad
from sscmort_core.radiomics import stage


@pytest.fixture(scope="module")
def params() -> rad.RadiomicsParams:
    return rad.load_params()


@pytest.fixture(scope="module")
def phantom():
    from sscmort_core.synthetic.phantom import make_phantom

    # a 5 mm sharp-kernel scan with 15% ILD: the demo's typical geometry (2.7 mm pixels)
    return make_phantom(ild_extent_pct=15.0, kernel="sharp", noise_hu=20.0,
                        slice_thickness_mm=5.0, seed=11)


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
def test_repo_params_are_valid_and_documented(params):
    assert params.feature_classes == ("firstorder", "glcm", "glrlm", "glszm")
    s = params.settings
    assert s["force2D"] is True and s["binWidth"] == 25 and s["normalize"] is False
    assert s["resampledPixelSpacing"] == [3.0, 3.0, 0]
    assert params.antialias_target_mm == 3.0 and params.resegment_hu == (-1024.0, -100.0)
    assert len(params.param_hash) == 16
    assert "Why these settings" in params.text  # the rationale lives in the file itself


def test_hash_ignores_comments_but_not_settings(params):
    same = rad.params_from_text(params.text + "\n# a new comment\n")
    assert same.param_hash == params.param_hash
    changed = rad.params_from_text(params.text.replace("binWidth: 25", "binWidth: 20"))
    assert changed.param_hash != params.param_hash


def test_hash_changes_with_pyradiomics_or_preprocessing_version(params, monkeypatch):
    monkeypatch.setattr(rad, "pyradiomics_version", lambda: "99.0")
    assert rad.params_from_text(params.text).param_hash != params.param_hash
    monkeypatch.undo()
    monkeypatch.setattr(rad, "PREPROCESS_VERSION", "2")
    assert rad.params_from_text(params.text).param_hash != params.param_hash


@pytest.mark.parametrize("text, needle", [
    ("setting: [1, 2", "not valid YAML"),
    ("colour: red\n", "unknown top-level keys"),
    ("setting:\n  binWidth: -5\n", "pyradiomics rejects"),
    ("sscmort:\n  resegment_hu: [0, -100]\n", "low < high"),
])
def test_bad_params_are_named_errors(text, needle):
    with pytest.raises(RadiomicsParamsError, match=needle):
        rad.params_from_text(text, "bad.yaml")


def test_fast_bin_edges_equal_pyradiomics():
    """The numpy min/max replacement must give pyradiomics' own edges exactly."""
    rad._install_fast_bin_edges()
    original = rad._ORIGINAL_GET_BIN_EDGES
    rng = np.random.default_rng(0)
    cases = [rng.normal(-700, 150, 5000), rng.integers(-1024, -100, 3000).astype(float),
             np.full(10, -850.0), np.full(10, -825.0), np.array([54.0, 166.0])]
    for values in cases:
        for width in (25, 7.5):
            fast = np.asarray(rad._fast_bin_edges(values, binWidth=width))
            slow = np.asarray(original(values, binWidth=width))
            np.testing.assert_array_equal(fast, slow)
    # pyradiomics' docstring example, 54..166 HU with width 25: edges from 50 in steps of 25
    # up to below max + 2 widths (216), i.e. ..., 175, 200 (the docstring omits the last edge,
    # which its code adds so the maximum falls in a half-open bin)
    np.testing.assert_array_equal(rad._fast_bin_edges(np.array([54.0, 166.0]), binWidth=25),
                                  [50, 75, 100, 125, 150, 175, 200])


# ---------------------------------------------------------------------------------------------
# extraction
# ---------------------------------------------------------------------------------------------
def test_extraction_matches_direct_pyradiomics_call(params, phantom, monkeypatch):
    """sscmort's extraction == pyradiomics given the same settings, image and (resegmented)
    mask. On 2.7 mm pixels the anti-aliasing step is a no-op (f = 1), so the only sscmort
    step is resegmentation to [-1024, -100] HU, done here by hand."""
    from radiomics import imageoperations
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    ours = rad.extract_features(phantom.hu, phantom.lung_mask, phantom.spacing_mm, params)
    assert rad.antialias_factor(phantom.spacing_mm[1:], 3.0) == 1
    assert len(ours.names) == 72 and all(n.startswith("original_") for n in ours.names)
    assert all(np.isfinite(ours.values))

    monkeypatch.setattr(imageoperations, "getBinEdges", rad._ORIGINAL_GET_BIN_EDGES)
    lo, hi = params.resegment_hu
    mask = phantom.lung_mask & (phantom.hu >= lo) & (phantom.hu <= hi)
    img, msk = rad.to_sitk_pair(phantom.hu, mask, phantom.spacing_mm)
    direct = RadiomicsFeatureExtractor(dict(params.pyradiomics)).execute(img, msk)
    theirs = {k: float(v) for k, v in direct.items() if k.startswith("original_")}
    assert set(theirs) == set(ours.names)
    for name, value in ours.as_dict().items():
        assert value == pytest.approx(theirs[name], rel=1e-9, abs=1e-12), name


def test_block_average_is_a_box_filter():
    hu = np.arange(2 * 6 * 6, dtype=np.int16).reshape(2, 6, 6)  # (z, y, x)
    mask = np.zeros((2, 6, 6), dtype=bool)
    mask[:, :3, :2] = True  # 6 of 9 voxels of a block -> kept by the majority vote
    mask[:, 3, 3] = True  # 1 of 9 voxels of a block -> dropped by the majority vote
    h, m = rad.block_average(hu, mask, 3)
    assert h.shape == m.shape == (2, 2, 2)
    assert h[0, 0, 0] == pytest.approx(hu[0, :3, :3].mean())
    assert m[:, 0, 0].all() and not m[:, 1, 1].any()
    assert rad.antialias_factor((0.84, 0.84), 3.0) == 3  # the real CT's pixels
    assert rad.antialias_factor((2.7, 2.7), None) == 1


def test_empty_mask_is_a_named_error(params, phantom):
    with pytest.raises(EmptyMaskError):
        rad.extract_features(phantom.hu, np.zeros_like(phantom.lung_mask), phantom.spacing_mm,
                             params)
    out = rad.extract_outcome("x", phantom.hu, np.zeros_like(phantom.lung_mask),
                              phantom.spacing_mm, params)
    assert out.features is None and out.reason.startswith("EmptyMaskError")


def test_real_ct_extraction(real_ct, params):
    """The real 64-slice series (0.84 mm pixels: anti-aliased by 3 x 3 blocks)."""
    from sscmort_core.imaging import read_volume
    from sscmort_core.lungs import segment_lungs

    vol = read_volume(real_ct / "philips_A0001_kernel_L").volume
    lungs = segment_lungs(vol.hu, vol.spacing_mm)
    feats = rad.extract_features(vol.hu, lungs.mask, vol.spacing_mm, params)
    values = feats.as_dict()
    assert len(values) == 72 and all(np.isfinite(list(values.values())))
    assert -950 < values["original_firstorder_Mean"] < -600  # aerated lung


# ---------------------------------------------------------------------------------------------
# the batch over the store
# ---------------------------------------------------------------------------------------------
def _corrupt_sha(path, scan_id: str) -> None:
    with st.open_store(path) as s, s.transaction() as cur:
        cur.execute("UPDATE scans SET volume_sha256 = 'not-the-hash' WHERE scan_id = ?", [scan_id])


def test_failed_scan_does_not_abort_batch_and_rerun_skips(tiny_store, params):
    with st.open_store(tiny_store, read_only=True) as s:
        ids = st.scans_frame(s)["scan_id"].tolist()[:3]
    bad = ids[1]
    _corrupt_sha(tiny_store, bad)  # regeneration then fails its sha256 check
    with st.open_store(tiny_store) as s:
        first = stage.run_radiomics_stage(s, workers=2, scan_ids=ids, params=params)
        assert (first.n_extracted, first.n_failed, first.n_skipped) == (2, 1, 0)
        assert first.failures[0].scan_id == bad and "sha256" in first.failures[0].reason
        fails = st.radiomics_failures_frame(s, params.param_hash)
        assert fails["scan_id"].tolist() == [bad]
        stored = st.radiomics_long_frame(s, params.param_hash)
        assert sorted(stored["scan_id"].unique()) == sorted(set(ids) - {bad})
        assert (stored.groupby("scan_id").size() == 72).all()
        again = stage.run_radiomics_stage(s, workers=1, scan_ids=ids, params=params)
        assert (again.n_extracted, again.n_failed, again.n_skipped) == (0, 1, 2)
        # the stored values are those of a single extraction of the same volume
        from sscmort_core.lungs import segment_lungs
        from sscmort_core.scans import load_scan_volume

        vol = load_scan_volume(s, ids[0])
        single = rad.extract_features(vol.hu, segment_lungs(vol.hu, vol.spacing_mm).mask,
                                      vol.spacing_mm, params).as_dict()
        mine = stored[stored["scan_id"] == ids[0]].set_index("feature")["value"]
        for name, value in single.items():
            assert mine[name] == pytest.approx(value, rel=1e-12), name


def test_interrupted_batch_keeps_finished_scans(tiny_store, params):
    """An error in the parent mid-batch still writes the scans already done."""
    with st.open_store(tiny_store, read_only=True) as s:
        ids = st.scans_frame(s)["scan_id"].tolist()[:3]
    feats = rad.RadiomicsFeatures(("original_firstorder_Mean",), (-800.0,), params.param_hash,
                                  "v3.0.1", 0.0)

    def fake(job):
        if job.row["scan_id"] == ids[2]:
            raise KeyboardInterrupt
        return rad.RadiomicsOutcome(job.row["scan_id"], feats, None, 0.0)

    with st.open_store(tiny_store) as s:
        with pytest.raises(KeyboardInterrupt):
            stage.run_radiomics_stage(s, workers=1, scan_ids=ids, params=params, extract_fn=fake)
        assert st.radiomics_extracted_scan_ids(s, params.param_hash) == set(ids[:2])


def _cli(argv: list[str]) -> tuple[argparse.Namespace, dict]:
    from sscmort_core.cli import build_parser

    parser, commands = build_parser()
    return parser.parse_args(argv), commands


def test_cli_radiomics_json(tiny_store, params, capsys, monkeypatch):
    def fake(job):
        return rad.RadiomicsOutcome(job.row["scan_id"], None, "ValueError: fake", 0.0)

    args, commands = _cli(["radiomics", "--store", str(tiny_store), "--json", "--quiet",
                           "--workers", "1"])
    assert args.workers == 1
    # the real command on a missing store: a named error (the CLI's exit 2), nothing created
    missing = tiny_store.parent / "none.duckdb"
    a2, _ = _cli(["radiomics", "--store", str(missing), "--quiet"])
    with pytest.raises(StoreError, match="no store"):
        commands["radiomics"](a2)
    assert not missing.exists()
    monkeypatch.setattr(stage, "extract_stored_scan", fake)  # every scan "fails": fast
    commands["radiomics"](args)
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] == out["scans"] > 0 and out["param_hash"] == params.param_hash
