"""Cached chart specs (issue 13): a page converts a spec's data to Arrow once and sends the
bytes on every rerun; what reaches the browser must be what ``st.vega_lite_chart`` would have
made of the records."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from streamlit.elements.vega_charts import _marshall_chart_data, _prepare_vega_lite_spec
from streamlit.proto.VegaLiteChart_pb2 import VegaLiteChart

from pages._shared import arrow_spec
from sscmort_core.views import charts, cohort
from sscmort_core.views import eval_charts as charts_eval


def _sent(spec: dict) -> tuple[dict, list[tuple[str, bytes]]]:
    """The spec and the named datasets st.vega_lite_chart puts on its message."""
    proto = VegaLiteChart()
    prepared = _prepare_vega_lite_spec(spec, True)
    _marshall_chart_data(proto, prepared)
    return prepared, [(d.name, d.data.data) for d in proto.datasets]


def _specs() -> list[dict]:
    roc = pd.DataFrame({"model_id": ["a"] * 3 + ["b"] * 3,
                        "model": ["A: AUC 0.750 [0.700, 0.800]"] * 3 + ["B: AUC 0.6"] * 3,
                        "fpr": [0, 0.5, 1] * 2, "tpr": [0, 0.9, 1, 0, 0.6, 1],
                        "threshold": [np.nan, 0.3, 0.1] * 2})
    rng = np.random.default_rng(3)
    km = cohort.kaplan_meier(rng.uniform(0.5, 9, 40), rng.random(40) < 0.4,
                             np.array(["lcSSc", "dcSSc"] * 20, dtype=object))
    return [charts_eval.chart_spec(charts_eval.roc_chart(roc, 3)),
            charts_eval.chart_spec(charts.kaplan_meier_chart(km, "Survival", bands=True))]


def test_arrow_spec_sends_what_vega_lite_chart_makes_of_the_records():
    for spec in _specs():
        before = copy.deepcopy(spec)
        converted = arrow_spec(spec)
        assert spec == before  # the cached original is not changed
        assert all(isinstance(v, bytes) for v in converted["datasets"].values())
        sent_records, sent_bytes = _sent(spec)
        assert len(sent_bytes) == len(spec["datasets"]) >= 1
        assert _sent(converted) == (sent_records, sent_bytes)
        assert arrow_spec(converted) == converted  # already converted: left as it is


def test_kaplan_meier_spec_unvalidated_equals_validated():
    rng = np.random.default_rng(4)
    km = cohort.kaplan_meier(rng.uniform(0.5, 9, 30), rng.random(30) < 0.5,
                             np.array(["a", "b", "c"] * 10, dtype=object))
    for bands in (False, True):
        chart = charts.kaplan_meier_chart(km, "Survival by subtype", bands=bands)
        assert charts_eval.chart_spec(chart) == charts_eval.chart_spec(chart, validate=True)
