"""The model report: its numbers are the stored ones (AUC, CI, n, events, estimand), the label
counts follow the label rule, added value over the clinical reference is the paired AUC
difference, and the HTML opens offline (inline SVG, no script, no fetch)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sscmort_core import store as st
from sscmort_core.cards import ModelCard
from sscmort_core.errors import ModelError, UnknownModelError
from sscmort_core.evaluation import PER_PATIENT, PER_SCAN
from sscmort_core.labels import HORIZONS_YEARS, label_scans
from sscmort_core.pipeline.evaluate import run_evaluation
from sscmort_core.tabular.train import train_tabular
from sscmort_core.views import report as rep
from sscmort_core.views import report_render as rr
from tests.pipeline.test_evaluate import add_noisy_model

N_BOOT = 50


@dataclass(frozen=True)
class ReportStore:
    path: Path
    models_dir: Path
    clinical_ids: tuple[str, ...]  # goh, clinical (real training, real cards)


def build_report_store(template: Path, root: Path) -> ReportStore:
    """The tiny demo store with a noisy imaging model ("noisy", kind deep), the Goh and
    clinical reference models trained on the same scans (3 folds), and every model evaluated
    (N_BOOT resamples); an unevaluated copy of the noisy model ("unevaluated")."""
    path = root / "store.duckdb"
    shutil.copy(template, path)
    add_noisy_model(path)
    models_dir = root / "models"
    with st.open_store(path) as s:
        ids = train_tabular(s, "goh", models_dir=models_dir, folds=3, seed=0)
        ids += train_tabular(s, "clinical", models_dir=models_dir, folds=3, seed=0)
        run_evaluation(s, n_boot=N_BOOT, seed=0)
    add_noisy_model(path, "unevaluated", seed=8)
    return ReportStore(path, models_dir, tuple(ids))


@pytest.fixture(scope="module")
def report_store(tiny_store_template, tmp_path_factory) -> ReportStore:
    return build_report_store(tiny_store_template, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def noisy_report(report_store) -> rep.ModelReport:
    with st.open_store(report_store.path, read_only=True) as s:
        return rep.build_report(s, "noisy", n_boot=N_BOOT)


def _stored(path: Path, model_id: str, metric: str = "auc"):
    with st.open_store(path, read_only=True) as s:
        m = st.metrics_for_models(s, [model_id])
    return m.loc[m["metric"] == metric].set_index("horizon_years")


def test_metrics_and_labels_are_the_stored_ones(report_store, noisy_report):
    stored = _stored(report_store.path, "noisy")
    computed = [h for h in HORIZONS_YEARS if np.isfinite(stored.loc[h, "value"])]
    assert computed, "the tiny cohort has enough events at some horizon"
    for h in HORIZONS_YEARS:
        row = rep.auc_of(noisy_report, h)
        s = stored.loc[h]
        if np.isfinite(s["value"]):
            assert row["value"] == s["value"]
            assert (row["CI low"], row["CI high"]) == (s["ci_low"], s["ci_high"])
        else:
            assert row["value"] is None or np.isnan(row["value"])
        assert (row["scans"], row["patients"], row["events"]) == \
            (s["n_scans"], s["n_patients"], s["n_events"])
        assert row["estimand"] == PER_SCAN
    per_patient = noisy_report.metrics.loc[noisy_report.metrics["metric"] == "AUC per patient"]
    assert set(per_patient["estimand"]) == {PER_PATIENT}
    # every stored metric row of the model is in the report, none added
    assert len(noisy_report.metrics) == len(_all_stored(report_store.path, "noisy"))
    with st.open_store(report_store.path, read_only=True) as s:
        scans = st.scans_frame(s)
    for sc in noisy_report.scored:  # the label rule on the scans the model predicted
        lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"],
                          sc.horizon_years)
        assert (sc.positive, sc.negative, sc.censored) == \
            (lab.n_positive, int(lab.known.sum()) - lab.n_positive, lab.n_censored)
        assert sc.scans == len(scans)


def _all_stored(path: Path, model_id: str):
    with st.open_store(path, read_only=True) as s:
        return st.metrics_for_models(s, [model_id])


def test_added_value_is_the_auc_difference_over_the_best_clinical_model(report_store,
                                                                         noisy_report):
    noisy = _stored(report_store.path, "noisy")
    seen = 0
    for c in noisy_report.clinical:
        if c.reference_id is None:  # no reference has an AUC there: said so
            assert all(np.isnan(_stored(report_store.path, m).loc[c.horizon_years, "value"])
                       for m in report_store.clinical_ids)
            assert "no clinical reference model has a stored AUC" in c.note
            continue
        assert c.reference_id in report_store.clinical_ids
        if c.added_value.empty:
            assert c.note
            continue
        ref = _stored(report_store.path, c.reference_id)
        # both models predicted every scan: the paired difference is the stored AUCs'
        diff = c.added_value.iloc[0, 1]
        assert diff == pytest.approx(noisy.loc[c.horizon_years, "value"]
                                     - ref.loc[c.horizon_years, "value"], abs=1e-12)
        lo, hi = c.added_value["CI low"].iloc[0], c.added_value["CI high"].iloc[0]
        assert lo <= hi
        seen += 1
    assert seen, "some horizon has enough events for the paired test"
    # every evaluated clinical reference's AUC rows are listed, as stored
    refs = noisy_report.reference_metrics
    assert set(refs["model_id"]) == set(report_store.clinical_ids)
    for m in report_store.clinical_ids:
        stored = _stored(report_store.path, m)
        got = refs.loc[refs["model_id"] == m].set_index("horizon (years)")["value"]
        for h in HORIZONS_YEARS:
            assert got[h] == stored.loc[h, "value"] or (np.isnan(stored.loc[h, "value"])
                                                         and not np.isfinite(got[h] or np.nan))


def _md_rows(text: str, section: str) -> list[list[str]]:
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines()
            if line.startswith("| ")]


def test_markdown_has_each_horizon_auc_with_ci_counts_and_estimand(report_store, noisy_report):
    text = rr.render(noisy_report, "md")
    stored = _stored(report_store.path, "noisy")
    rows = {(r[0], r[1]): r for r in _md_rows(text, "5. Performance")}
    for h in HORIZONS_YEARS:
        r, s = rows[(str(h), "AUC")], stored.loc[h]
        if np.isfinite(s["value"]):
            assert r[2] == f"{s['value']:.3f}"
            assert r[3] == f"{s['ci_low']:.3f} to {s['ci_high']:.3f}"
        else:  # too few events: no number, the reason instead
            assert r[2] == "n/a" and "too few" in r[9]
        assert r[4] == PER_SCAN
        assert r[6:9] == [str(int(s["n_scans"])), str(int(s["n_patients"])),
                          str(int(s["n_events"]))]
    assert "Research use only" in text and "Synthetic data" in text
    assert "## 9. Model card" in text and '"model_id": "noisy"' in text


def test_html_is_self_contained_with_inline_svg_charts(noisy_report):
    page = rr.to_html(rr.report_blocks(noisy_report))
    drawn = [c.horizon_years for c in noisy_report.charts if not c.roc.empty]
    assert page.count("<svg") >= len(drawn) >= 1
    assert "<script" not in page.lower()
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls
    assert "Research use only" in page and "Synthetic data" in page
    for h in drawn:
        assert f"ROC at {h} year" in page


def test_validation_design_comes_from_the_model_card(report_store):
    clinical = report_store.clinical_ids[-1]
    with st.open_store(report_store.path, read_only=True) as s:
        report = rep.build_report(s, clinical, n_boot=N_BOOT)
    text = rr.render(report, "md")
    design = {r[0]: r[1] for r in _md_rows(text, "4. Validation design")}
    assert design["folds"] == design["folds in the stored predictions"] == "3"
    assert design["grouped by"] == "patient"
    assert "nested CV" in design["C (L2 strength)"]
    assert "survival likelihood" in design["likelihood"]
    # a clinical model gets no added value over itself or another reference
    assert all(c.added_value.empty for c in report.clinical)
    # the Goh staging's thresholds were fixed before looking, and its card says so
    with st.open_store(report_store.path, read_only=True) as s:
        goh = rep.build_report(s, report_store.clinical_ids[0], n_boot=N_BOOT)
    design = {r[0]: r[1] for r in _md_rows(rr.render(goh, "md"), "4. Validation design")}
    assert design["stage thresholds (extent > 20%, or 10-30% with FVC < 70%)"].startswith(
        "fixed before looking (Goh")
    with st.open_store(report_store.path, read_only=True) as s:
        oracle = ModelCard.from_store(st.model_row(s, "oracle")["card"], model_id="oracle",
                                      kind="oracle")
    assert "fixed before looking" in oracle.extra["settings"]["risk"]


def test_unknown_and_unevaluated_models_are_refused(report_store):
    with st.open_store(report_store.path, read_only=True) as s:
        with pytest.raises(UnknownModelError, match="registered: .*noisy"):
            rep.build_report(s, "no-such-model")
        with pytest.raises(ModelError, match="sscmort evaluate --models unevaluated"):
            rep.build_report(s, "unevaluated")
