"""Page data under a validation design: the switch's options, which models it scores, and
the metrics table, long table, curves and paired tests computed on the design's test part."""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from sscmort_core import store as st
from sscmort_core.evaluation import PER_PATIENT, PER_SCAN
from sscmort_core.pipeline import designs as ds
from sscmort_core.pipeline.evaluate import paired_tests
from sscmort_core.views import comparison as cmp
from sscmort_core.views import designs as dv
from tests.pipeline.design_store import (
    build_design_store,
    register_oracle_and_deep,
    register_recipe,
)

RECIPE = "qct-discrete_time-recipe"
DESIGN = ds.ValidationDesign("temporal", before=dt.date(2015, 1, 1))
N_BOOT = 50


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("views-designs") / "designs.duckdb"
    build_design_store(path)
    register_oracle_and_deep(path)
    register_recipe(path)
    with st.open_store(path) as s:
        ds.run_design(s, DESIGN, n_boot=10)
    return path


@pytest.fixture()
def store(template, tmp_path):
    dest = tmp_path / "designs.duckdb"
    shutil.copy(template, dest)
    with st.open_store(dest, read_only=True) as s:
        yield s


def test_the_switch_offers_cross_validation_then_the_stored_design(store):
    choices = dv.design_choices(store)
    assert [c.split for c in choices] == [ds.CV_SPLIT, DESIGN.split]
    assert choices[1].label == "Temporal: before 2015-01-01, new patients"
    assert "deep models have only the cross-validation design" in choices[1].description
    assert dv.design_description(DESIGN.split) == DESIGN.describe()
    ids = [RECIPE, "oracle", "deep-test"]
    assert dv.scored_models(store, ids, DESIGN.split) == ([RECIPE, "oracle"], ["deep-test"])
    assert dv.scored_models(store, ids, ds.CV_SPLIT) == (["oracle", "deep-test"], [RECIPE])


@pytest.mark.parametrize("estimand", [PER_SCAN, PER_PATIENT])
def test_long_table_under_a_design_carries_counts_ci_and_estimand(store, estimand):
    long = cmp.metrics_long(store, [RECIPE, "oracle"], split=DESIGN.split, n_boot=N_BOOT,
                            estimand=estimand)
    expected = ds.design_metrics(store, [RECIPE, "oracle"], DESIGN.split, n_boot=N_BOOT,
                                 estimand=estimand)
    auc = long.loc[long["metric"] == "AUC"].set_index(["model_id", "horizon (years)"])
    for r in expected:
        row, m = auc.loc[(r.model_id, r.horizon_years)], r.get("auc")
        assert (row["value"], row["CI low"], row["scans"], row["events"]) == \
            (m.value, m.ci_low, m.n_scans, m.n_events)
    computed = long.loc[long["value"].notna()]
    assert computed["CI low"].notna().all() and (computed["events"] > 0).all()
    assert set(computed["estimand"]) == ({PER_SCAN, PER_PATIENT} if estimand == PER_SCAN
                                         else {PER_PATIENT})
    # the AUC summary's table holds the same AUC [CI] (same resamples)
    table = cmp.metrics_table(store, [RECIPE, "oracle"], split=DESIGN.split, n_boot=N_BOOT,
                              include_reference=False).set_index(["model_id",
                                                                  "horizon (years)"])
    if estimand == PER_SCAN:
        for key, row in auc.iterrows():
            assert (table.loc[key, "AUC"], table.loc[key, "AUC CI high"]) == \
                pytest.approx((row["value"], row["CI high"]))


def test_curves_and_paired_tests_use_the_test_part(store):
    with_split = cmp.horizon_curves(store, [RECIPE, "oracle"], 3, split=DESIGN.split)
    roc = with_split.roc.frame
    assert set(roc["model_id"]) == {RECIPE, "oracle"}
    table = cmp.metrics_table(store, [RECIPE, "oracle"], split=DESIGN.split,
                              include_reference=False).set_index(["model_id",
                                                                  "horizon (years)"])
    for m in (RECIPE, "oracle"):  # the legend's AUC [CI] is the table's (2000 resamples)
        row = table.loc[(m, 3)]
        assert f"AUC {row['AUC']:.3f} [{row['AUC CI low']:.3f}, {row['AUC CI high']:.3f}]" in \
            roc.loc[roc["model_id"] == m, "model"].iloc[0]
    tests = paired_tests(store, [RECIPE, "oracle"], 3, n_boot=N_BOOT, split=DESIGN.split)
    n_test = sum(1 for _ in ds.design_split(store, DESIGN).test_scan_ids)
    assert tests[0].n_scans <= n_test and tests[0].comparison is not None
    recal = cmp.recalibration_frames(store, [RECIPE], 3, split=DESIGN.split)
    assert recal.empty and "cross-validation only" in recal.unavailable[0][1]
