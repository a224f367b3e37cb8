"""Validation designs at study scale: cross-validation beside a temporal and an external design.

Usage: ``PYTHONPATH=. .venv/bin/python tests/bench/bench_designs.py OUT_DIR`` (writes
OUT_DIR/designs.duckdb and OUT_DIR/bench_designs.json). The store is the design tests' store
(tests/pipeline/design_store.py) at 600 patients, seed 0: the synthetic cohort as two sources,
QCT made from the true ILD extent with noise (not the demo's measured QCT). QCT (logistic,
discrete-time) and clinical models are trained with 5-fold patient-grouped CV, evaluated, then
refit and scored under each design; AUCs with 1000 patient-bootstrap resamples.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from sscmort_core import store as st
from sscmort_core.pipeline import designs as ds
from sscmort_core.pipeline.evaluate import run_evaluation
from sscmort_core.tabular.train import train_tabular
from tests.pipeline.design_store import build_design_store, register_oracle_and_deep

N_BOOT = 1000
DESIGNS = (ds.ValidationDesign("temporal", before=dt.date(2015, 1, 1)),
           ds.ValidationDesign("temporal", before=dt.date(2015, 1, 1), all_patients=True),
           ds.ValidationDesign("external", train_source="registry-a",
                               test_source="registry-b"))


def _aucs(results) -> dict[str, list[float]]:
    """model@horizon -> [AUC, CI low, CI high, labelled scans, events]."""
    return {f"{r.model_id}@{r.horizon_years}": [
        r.get("auc").value, r.get("auc").ci_low, r.get("auc").ci_high, r.get("auc").n_scans,
        r.get("auc").n_events] for r in results}


def main(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "designs.duckdb"
    for f in (path, path.with_name(path.name + ".wal")):
        f.unlink(missing_ok=True)
    build_design_store(path, n_patients=600, seed=0)
    register_oracle_and_deep(path, n_patients=600, seed=0)
    res: dict = {}
    with st.open_store(path) as s:
        for kind in ("qct", "clinical"):
            t = time.perf_counter()
            train_tabular(s, kind, models_dir=out / "models", folds=5)
            res[f"train_{kind}_s"] = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        cv = run_evaluation(s, n_boot=N_BOOT)
        res["cv"] = {"seconds": round(time.perf_counter() - t, 1), "auc": _aucs(cv.results)}
        for d in DESIGNS:
            t = time.perf_counter()
            run = ds.run_design(s, d, n_boot=N_BOOT)
            j = run.to_json()
            res[d.split] = {"seconds": round(time.perf_counter() - t, 1),
                            **{k: j[k] for k in ("train_scans", "test_scans", "train_patients",
                                                 "test_patients", "shared_patients",
                                                 "scans_left_out")},
                            "auc": _aucs(run.results)}
    (out / "bench_designs.json").write_text(json.dumps(res, indent=1, default=str))
    return res


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1])), indent=1, default=str))
