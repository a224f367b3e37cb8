"""The longitudinal model against the QCT model, and what the report costs (docs/BENCHMARKS.md,
"Model report and longitudinal model"). Not collected by pytest.

    python tests/bench/bench_longitudinal.py --store STORE [--n-boot 2000]

On a store the demo built (it trains and evaluates the longitudinal model): every model's
stored OOF AUC per horizon with its patient-bootstrap CI, the longitudinal model's card
(fallback scans), the paired longitudinal - QCT (discrete-time survival) AUC difference per
horizon (patient-bootstrap CI, clustered p), and the CPU seconds of building and rendering its
report as Markdown and as HTML in the same run. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    from sscmort_core import store as st
    from sscmort_core.pipeline.evaluate import paired_tests
    from sscmort_core.views.report import build_report
    from sscmort_core.views.report_render import render

    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args()
    out: dict = {"auc": {}, "paired_longitudinal_minus_qct": {}, "report_cpu_s": {}}
    with st.open_store(args.store, read_only=True) as s:
        models = st.models_frame(s).set_index("model_id")
        auc = st.metrics_frame(s).query("metric == 'auc'")
        for r in auc.itertuples():
            out["auc"].setdefault(r.model_id, {})[r.horizon_years] = [
                r.value, r.ci_low, r.ci_high, r.n_scans, r.n_events]
        lid = models.index[models["kind"] == "longitudinal"][0]
        qid = next(m for m in models.index if m.startswith("qct-discrete_time"))
        out["longitudinal_card"] = json.loads(models.loc[lid, "card"]).get("longitudinal")
        for h in (1, 3, 5):
            (t,) = paired_tests(s, [lid, qid], h, n_boot=args.n_boot)
            c = t.comparison
            out["paired_longitudinal_minus_qct"][h] = None if c is None else [
                c.delong.auc_diff, c.bootstrap.ci_low, c.bootstrap.ci_high, c.p_value,
                c.p_value_method, t.n_scans, t.n_events]
        for fmt in ("md", "html"):
            t0 = time.process_time()
            text = render(build_report(s, lid, n_boot=args.n_boot), fmt)
            out["report_cpu_s"][fmt] = [round(time.process_time() - t0, 2), len(text)]
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
