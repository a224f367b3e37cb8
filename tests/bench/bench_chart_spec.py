"""Model comparison's chart specs built with and without altair's schema validation (issue 13;
not collected by pytest): one 5-model, 80-point ROC chart, mean of the repeats.

    PYTHONPATH=. .venv/bin/python tests/bench/bench_chart_spec.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import time

import altair as alt
import numpy as np
import pandas as pd

from sscmort_core.views import eval_charts
from sscmort_core.views.study import reported_aucs


def roc_frame(n_models: int = 5, n_points: int = 80) -> pd.DataFrame:
    fpr = np.linspace(0.0, 1.0, n_points)
    return pd.concat([pd.DataFrame({"model_id": f"m{i}", "model": f"M{i}: AUC 0.7", "fpr": fpr,
                                    "tpr": np.sqrt(fpr), "threshold": 1.0 - fpr})
                      for i in range(n_models)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    chart = eval_charts.roc_chart(roc_frame(), 3, reported_aucs(3))
    with alt.data_transformers.disable_max_rows():
        assert chart.to_dict() == chart.to_dict(validate=False)
        for validate in (True, False):
            start = time.perf_counter()
            for _ in range(args.repeats):
                chart.to_dict(validate=validate)
            ms = 1000.0 * (time.perf_counter() - start) / args.repeats
            print(f"to_dict(validate={validate}): {ms:.1f} ms")


if __name__ == "__main__":
    main()
