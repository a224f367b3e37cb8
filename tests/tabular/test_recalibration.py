"""Per-horizon recalibration: recovers a known miscalibration under censoring, stays monotone
across horizons, is fitted inside the training folds only, and travels with the model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy.special import expit, logit

from sscmort_core import store as st
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.tabular import io as tab_io
from sscmort_core.tabular import model as tab
from sscmort_core.tabular import train as tab_train
from sscmort_core.tabular.recalibration import (
    Recalibration,
    fit_recalibration,
    monotone_recalibrated,
)
from tests.tabular.test_tabular import trained  # noqa: F401  (module fixture)


def _miscalibrated(n: int, seed: int):
    """Predicted risks p at every horizon whose true risk is expit(0.5 + 0.6 logit p),
    deaths drawn by horizon, uniform censoring."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-3.0, 0.5, n)
    p = np.column_stack([expit(base + k) for k in (0.0, 0.8, 1.2)])  # (n, 3)
    true = expit(0.5 + 0.6 * logit(p))
    u = rng.random(n)
    death = np.where(u < true[:, 0], rng.uniform(0, 1, n),
                     np.where(u < true[:, 1], rng.uniform(1, 3, n),
                              np.where(u < true[:, 2], rng.uniform(3, 5, n), 9.0)))
    censor = rng.uniform(0.5, 12.0, n)
    return p, np.minimum(death, censor), death <= censor


def test_recovers_a_known_miscalibration_under_censoring():
    p, t, e = _miscalibrated(20_000, 0)
    rec = fit_recalibration(t, e, p)
    assert not any(rec.identity)
    np.testing.assert_allclose(rec.intercepts, 0.5, atol=0.08)
    np.testing.assert_allclose(rec.slopes, 0.6, atol=0.05)


def test_recalibrated_risks_are_monotone_across_horizons():
    # maps that cross: the 3-year map pulls high risks below the 1-year one
    rec = Recalibration(intercepts=(0.0, -1.5, 0.0), slopes=(1.0, 0.5, 1.0),
                        identity=(False,) * 3, n_scans=0)
    risks = np.array([[0.6, 0.7, 0.8], [0.01, 0.02, 0.03], [0.9, 0.95, 0.99]])
    raw = rec.apply(risks)
    assert (np.diff(raw, axis=1) < 0).any()  # the maps alone would break monotony
    out = monotone_recalibrated(rec, risks)
    assert (np.diff(out, axis=1) >= 0).all()
    np.testing.assert_array_equal(out, np.maximum.accumulate(raw, axis=1))


def test_each_folds_map_never_sees_that_fold(trained):  # noqa: F811
    """Changing the outcomes of fold 0's scans leaves fold 0's recalibrated risks unchanged
    (its map is fitted on the other folds alone), and changes another fold's."""
    with st.open_store(trained.path, read_only=True) as s:
        data = tab_train._training_data(s, "qct", 3, 0)
    fm = data.fm
    rng = np.random.default_rng(0)
    oof_raw = rng.uniform(0.02, 0.6, (len(fm.scan_ids), 3))
    before = tab_train._recalibrated_oof(data, oof_raw, "discrete_time", 0, lambda: None)
    in0 = data.fold_of == 0
    flipped = dataclasses.replace(data, event=np.where(in0, ~data.event, data.event),
                                  time_years=np.where(in0, data.time_years * 0.3,
                                                      data.time_years))
    after = tab_train._recalibrated_oof(flipped, oof_raw, "discrete_time", 0, lambda: None)
    np.testing.assert_array_equal(after[in0], before[in0])
    assert not np.allclose(after[~in0], before[~in0])


def test_trained_models_store_apply_and_describe_their_recalibration(trained):  # noqa: F811
    with st.open_store(trained.path, read_only=True) as s:
        fm = tab_io.feature_matrix(s, "qct")
        for model_id in [m for m in trained.ids if m.startswith("qct-")]:
            model = tab_io.load_model(s, model_id, models_dir=trained.models_dir)
            assert isinstance(model.recalibration, Recalibration)
            batch = tab.predict_matrix(model, fm.X)
            want = monotone_recalibrated(model.recalibration, model.raw_risks(fm.X))
            np.testing.assert_allclose(batch.risks, want, rtol=1e-12)
            one = tab.predict_features(model, dict(zip(fm.feature_names, fm.X[0])))
            assert one.risk_5y == pytest.approx(want[0, 2], rel=1e-12)
            card = json.loads(st.models_frame(s).set_index("model_id").loc[model_id, "card"])
            assert [r["horizon_years"] for r in card["recalibration"]["stored"]] == \
                list(HORIZONS_YEARS)
            assert "inner" in card["recalibration"]["fitted"]
            oof = st.predictions_frame(s, [model_id])
            raw = st.predictions_frame(s, [model_id], split=tab_train.UNCALIBRATED_SPLIT)
            assert len(oof) == len(raw) == 3 * len(fm.scan_ids)  # before and after, apart
            np.testing.assert_array_equal(oof["fold"], raw["fold"])


def test_the_comparison_page_reads_the_split_training_writes():
    from sscmort_core.views import comparison

    assert comparison.UNCALIBRATED_SPLIT == tab_train.UNCALIBRATED_SPLIT


def test_reliability_before_and_after_for_the_page(trained):  # noqa: F811
    from sscmort_core.views.comparison import recalibration_frames

    qct = [m for m in trained.ids if m.startswith("qct-")]
    with st.open_store(trained.path, read_only=True) as s:
        oracle = [m for m in st.models_frame(s)["model_id"] if m not in trained.ids]
        cs = recalibration_frames(s, qct + oracle[:1], 5, n_bins=3)
    per_curve = cs.frame.groupby(["model_id", "model"])["count"].sum()
    assert sorted(per_curve.index.get_level_values("model_id")) == sorted(qct * 2)
    assert sum(n.endswith(": before recalibration") for _, n in per_curve.index) == len(qct)
    assert per_curve.nunique() == 1  # every scan in every curve, censored ones included
    assert [r for _, r in cs.unavailable] == ["not recalibrated"] * len(oracle[:1])
