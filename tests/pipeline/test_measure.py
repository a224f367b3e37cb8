"""The lung-measure stage over a stored cohort: every scan gets QCT, zones, patterns and QC
rows of the current method version; stale rows are measured again; a flagged mask is left out
of training until someone accepts it (who and when recorded)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sscmort_core import store as st
from sscmort_core.lungs import CHECKS, LUNGS, ZONES, qct, qct_method_version
from sscmort_core.pipeline.measure import accept_flagged_mask, run_measure_stage
from sscmort_core.tabular.io import feature_matrix
from sscmort_core.util.executors import ExecutorSpec, LocalExecutor, open_executor


def test_the_demo_pass_stores_every_measure_of_every_scan(tiny_store):
    with st.open_store(tiny_store, read_only=True) as s:
        scans = st.scans_frame(s)["scan_id"].tolist()
        assert st.scans_missing_qct(s, qct_method_version()) == []
        regions = st.regions_frame(s)
        assert len(regions) == len(scans) * len(LUNGS) * len(ZONES)
        assert set(regions["method_version"]) == {qct_method_version()}
        pats = st.patterns_frame(s)
        assert sorted(pats["scan_id"]) == sorted(scans)
        cols = ["normal_pct", "emphysema_pct", "ground_glass_pct", "reticulation_pct",
                "honeycombing_pct", "consolidation_pct"]
        np.testing.assert_allclose(pats[cols].sum(axis=1), 100.0)
        checks = st.mask_qc_frame(s)
        assert len(checks) == len(scans) * len(CHECKS)
        whole = st.qct_frame(s).set_index("scan_id")
        both = regions[(regions["lung"] == "both") & (regions["zone"] == "whole")]
        both = both.set_index("scan_id")
        np.testing.assert_allclose(both.loc[whole.index, "volume_ml"], whole["lung_volume_ml"])


def test_stale_rows_are_measured_again_and_replaced(tiny_store, monkeypatch):
    with st.open_store(tiny_store) as s:
        before = st.regions_frame(s)
        monkeypatch.setattr(qct, "QCT_METHOD_VERSION", "qct-test-bump")
        stale = st.scans_missing_qct(s, qct_method_version())
        assert len(stale) == st.scans_frame(s).shape[0]
        calls: list[int] = []
        summary = run_measure_stage(s, workers=1, scan_ids=stale[:3],
                                    progress=lambda stage, done, total: calls.append(total))
        assert summary.measured == 3 and summary.failed == () and max(calls) == 3
        after = st.regions_frame(s)
        assert len(after) == len(before)  # replaced, not added
        fresh = after[after["scan_id"].isin(stale[:3])]
        assert set(fresh["method_version"]) == {qct_method_version()}
        assert len(st.scans_missing_qct(s, qct_method_version())) == len(stale) - 3
        old = before.set_index(["scan_id", "lung", "zone"]).loc[fresh.set_index(
            ["scan_id", "lung", "zone"]).index]
        np.testing.assert_allclose(fresh["volume_ml"], old["volume_ml"])  # same mask
        again = run_measure_stage(s, workers=1, scan_ids=stale[:3])
        assert again.measured == 0  # nothing stale among them any more


MEASURE_TABLES = ("qct", "qct_regions", "qct_patterns", "mask_qc")


def _forget(path, n: int) -> list[str]:
    """Delete every measure row of the store's first ``n`` scans (they become stale)."""
    with st.open_store(path) as s:
        ids = st.scans_frame(s)["scan_id"].tolist()[:n]
        with s.transaction() as cur:
            for table in MEASURE_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE scan_id IN (SELECT unnest(?))", [ids])
    return ids


def _measure_rows(path) -> dict[str, pd.DataFrame]:
    with st.open_store(path, read_only=True) as s:
        return {t: s.query_df(f"SELECT * FROM {t} ORDER BY ALL").drop(
            columns=["created_at"], errors="ignore") for t in MEASURE_TABLES}


def test_the_stage_on_ray_equals_the_local_pool(tiny_store, tmp_path, ray_local):
    """The same stale scans measured on the local pool and on Ray (as the radiomics stage is
    checked): the same rows, bit for bit; the CLI's ``measure --executor ray`` too."""
    import shutil

    from sscmort_core.cli import main

    reference = _measure_rows(tiny_store)
    other, cli = tmp_path / "ray.duckdb", tmp_path / "cli.duckdb"
    ids = _forget(tiny_store, 3)
    shutil.copy(tiny_store, other)
    shutil.copy(tiny_store, cli)
    with st.open_store(tiny_store) as s:
        local = run_measure_stage(s, executor=LocalExecutor(2))
    with open_executor(ExecutorSpec("ray", 2)) as ex, st.open_store(other) as s:
        on_ray = run_measure_stage(s, executor=ex)
    assert (local.measured, on_ray.measured, local.failed, on_ray.failed) == (3, 3, (), ())
    assert (local.executor, on_ray.executor, on_ray.workers) == ("local", "ray", 2)
    a, b = _measure_rows(tiny_store), _measure_rows(other)
    for table in MEASURE_TABLES:
        pd.testing.assert_frame_equal(a[table], b[table], check_exact=True)
        pd.testing.assert_frame_equal(a[table], reference[table], check_exact=True)
        assert set(ids) <= set(a[table]["scan_id"])
    assert main(["measure", "--store", str(cli), "--executor", "ray", "--workers", "2",
                 "--json", "--quiet"]) == 0
    c = _measure_rows(cli)
    for table in MEASURE_TABLES:
        pd.testing.assert_frame_equal(a[table], c[table], check_exact=True)
    with st.open_store(cli, read_only=True) as s:
        assert st.scans_missing_qct(s, qct_method_version()) == []


def test_a_scan_that_fails_is_reported_and_measured_by_the_next_run(tiny_store, monkeypatch):
    """A scan whose volume cannot be read (any error in the worker) comes back with a reason,
    never stops the batch, and stays stale, so the next run measures it."""
    from sscmort_core.pipeline import measure

    ids = _forget(tiny_store, 3)
    real = measure.scan_with_lungs_from_row

    def corrupt_first(row, data_dir):
        if row["scan_id"] == ids[0]:
            raise ValueError("corrupt volume")
        return real(row, data_dir)

    with st.open_store(tiny_store) as s:
        monkeypatch.setattr(measure, "scan_with_lungs_from_row", corrupt_first)
        first = run_measure_stage(s, executor=LocalExecutor(1))  # in-process: patched
        assert first.measured == 2
        assert first.failed == ((ids[0], "could not be measured (ValueError)"),)
        assert st.scans_missing_qct(s, qct_method_version()) == [ids[0]]
        monkeypatch.setattr(measure, "scan_with_lungs_from_row", real)
        again = run_measure_stage(s, executor=LocalExecutor(1))
        assert (again.measured, again.failed) == (1, ())
        assert st.scans_missing_qct(s, qct_method_version()) == []


def _flag(s: st.Store, scan_id: str) -> None:
    """Mark one check of a scan failed, as a bad mask would (the QC checks themselves are
    tested on real failing masks in tests/lungs)."""
    with s.transaction() as cur:
        cur.execute("UPDATE mask_qc SET passed = false, message = 'one lung is missing' "
                    "WHERE scan_id = ? AND check_name = 'missing_lung'", [scan_id])


def test_a_flagged_mask_is_left_out_of_training_until_accepted(tiny_store):
    with st.open_store(tiny_store) as s:
        all_ids = feature_matrix(s, "qct").scan_ids
        target = all_ids[0]
        _flag(s, target)
        fm = feature_matrix(s, "qct")
        assert target not in fm.scan_ids and fm.n_flagged_excluded == 1
        flagged = st.flagged_scans_frame(s)
        assert flagged["scan_id"].tolist() == [target]
        assert flagged["problems"].iloc[0] == "one lung is missing"
        assert pd.isna(flagged["accepted_by"].iloc[0])
        version = accept_flagged_mask(s, target, "local")
        assert version == qct_method_version()
        row = st.flagged_scans_frame(s).iloc[0]
        assert row["accepted_by"] == "local" and pd.notna(row["accepted_at"])
        assert target in feature_matrix(s, "qct").scan_ids
        assert st.training_excluded_scan_ids(s) == set()


def test_accepting_a_mask_that_passed_is_refused(tiny_store):
    from sscmort_core.errors import DataError

    with st.open_store(tiny_store) as s:
        scan_id = st.scans_frame(s)["scan_id"].iloc[0]
        with pytest.raises(DataError, match="no flagged lung mask"):
            accept_flagged_mask(s, scan_id, "local")


def test_a_new_mask_version_needs_a_new_review(tiny_store, monkeypatch):
    with st.open_store(tiny_store) as s:
        target = st.scans_frame(s)["scan_id"].iloc[0]
        _flag(s, target)
        accept_flagged_mask(s, target, "local")
        assert target not in st.training_excluded_scan_ids(s)
        with s.transaction() as cur:  # the mask measured again by another version: flagged
            cur.execute("UPDATE mask_qc SET method_version = 'other' WHERE scan_id = ?",
                        [target])
        assert target in st.training_excluded_scan_ids(s)
