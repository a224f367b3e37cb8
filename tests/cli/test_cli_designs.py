"""``sscmort evaluate --design temporal|external``: JSON summary, the design's predictions in
the store, and one-line refusals (exit 2, store unchanged)."""

from __future__ import annotations

import json
import shutil

import pytest

from sscmort_core import cli
from sscmort_core import store as st
from sscmort_core.pipeline.designs import DESIGN_PREFIX
from tests.pipeline.design_store import (
    SOURCES,
    build_design_store,
    register_oracle_and_deep,
    register_recipe,
    train_qct,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-designs") / "designs.duckdb"
    build_design_store(path)
    register_oracle_and_deep(path)
    register_recipe(path)
    return path


@pytest.fixture()
def store_path(template, tmp_path):
    dest = tmp_path / "designs.duckdb"
    shutil.copy(template, dest)
    return dest


def _counts(path) -> dict[str, int]:
    with st.open_store(path, read_only=True) as s:
        return {k: v for k, v in st.table_counts(s).items() if k != "audit"}


def test_external_design_prints_its_parts_and_metrics(store_path, capsys):
    rc = cli.main(["evaluate", "--store", str(store_path), "--design", "external",
                   "--train-source", SOURCES[0], "--test-source", SOURCES[1], "--n-boot", "50",
                   "--json", "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"].startswith(f"{DESIGN_PREFIX}external:{SOURCES[0]}>{SOURCES[1]}@v")
    assert out["shared_patients"] == 0 and out["metrics_stored"] is False
    assert set(out["models"]) == {"qct-discrete_time-recipe", "oracle"}
    assert out["skipped"][0]["model_id"] == "deep-test"
    auc = out["models"]["qct-discrete_time-recipe"]["3"]["auc"]
    assert auc["ci_low"] <= auc["value"] <= auc["ci_high"] and auc["n_events"] > 0
    assert auc["estimand"] == "per scan"
    with st.open_store(store_path, read_only=True) as s:
        splits = st.prediction_splits(s, prefix=DESIGN_PREFIX)
    assert set(splits["split"]) == {out["split"]}
    assert set(splits["n_scans"]) == {out["test_scans"]}


def test_temporal_design_text_names_the_design(store_path, capsys):
    rc = cli.main(["evaluate", "--store", str(store_path), "--design", "temporal",
                   "--before", "2015-01-01", "--all-patients", "--models",
                   "qct-discrete_time-recipe", "--n-boot", "20", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.startswith("temporal: trained on scans before 2015-01-01")
    assert "patients in both" in text and "qct-discrete_time-recipe 5 y: AUC" in text


@pytest.mark.parametrize("argv, message", [
    (["--design", "external", "--train-source", SOURCES[0], "--test-source", "nowhere"],
     "no patient from source 'nowhere'"),
    (["--design", "external", "--train-source", SOURCES[0]], "needs --train-source and "),
    (["--design", "temporal"], "needs a date"),
    (["--design", "temporal", "--before", "2006-01-01"], "training part: too few events"),
    (["--before", "2015-01-01"], "add --design temporal"),
    (["--design", "temporal", "--before", "2015-01-01", "--models", "deep-test"],
     "deep models have only the cross-validation design"),
])
def test_refusals_are_one_line_exit_2_and_change_nothing(store_path, capsys, argv, message):
    before = _counts(store_path)
    rc = cli.main(["evaluate", "--store", str(store_path), *argv, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _counts(store_path) == before


@pytest.mark.slow
def test_cross_validated_models_then_an_external_design(tmp_path, capsys):
    """End to end: `train --kind qct` (nested CV, recalibration) on two sources, then the
    external design refits both QCT models on one source and scores the other."""
    path = build_design_store(tmp_path / "s.duckdb")
    ids = train_qct(path, tmp_path / "models")
    rc = cli.main(["evaluate", "--store", str(path), "--design", "external", "--train-source",
                   SOURCES[1], "--test-source", SOURCES[0], "--n-boot", "50", "--json",
                   "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["models"]) == set(ids)
    for model in out["models"].values():
        assert all(model[h]["auc"]["value"] > 0.6 for h in ("1", "3", "5"))
