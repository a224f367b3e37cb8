"""Benchmark of the censoring-aware metrics and their patient bootstrap (docs/BENCHMARKS.md,
"Censoring-aware evaluation"). Not collected by pytest.

    python tests/bench/bench_evaluation.py [--store STORE] [--model MODEL_ID] [--n-boot 2000]

On a store: the OOF predictions of MODEL_ID (default: the QCT model, else the first model)
over all its scans; without one: a simulated cohort of 2,141 scans from 600 patients. Per
metric and horizon: seconds for ``n_boot`` patient resamples on the batch fast path, against
the explicit path in the same run (expand each resample's scans, call the public metric: timed
on ``--n-slow`` resamples and scaled to ``n_boot``), and the ratio. Also, on the same data,
agreement with scikit-survival (Uno's C, IPCW Brier) and O/E of every model per horizon
(complete cases against Kaplan-Meier). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def simulated(seed: int = 0, n_patients: int = 600, n_scans: int = 2141):
    rng = np.random.default_rng(seed)
    k = 1 + rng.multinomial(n_scans - n_patients, np.full(n_patients, 1 / n_patients))
    groups = np.repeat(np.arange(n_patients), k)
    score = rng.normal(0, 1, n_patients)[groups] + rng.normal(0, 0.5, len(groups))
    death = -np.log(rng.random(n_patients))[groups] / (0.1 * np.exp(0.8 * score))
    censor = rng.uniform(0.5, 9.0, n_patients)[groups]
    time_ = np.round(np.minimum(death, censor) * 365.25) / 365.25  # whole days, as the store
    event = (death <= censor).astype(np.int8)
    risk = {h: 1 - np.exp(-0.1 * np.exp(0.8 * score) * h) for h in (1, 3, 5)}
    return time_, event, risk, groups


def from_store(path: Path, model_id: str | None):
    from sscmort_core import store as st_store
    from sscmort_core.pipeline.eval_data import load_horizon_data

    with st_store.open_store(path, read_only=True) as store:
        models = st_store.models_frame(store)
        if model_id is None:
            qct = models.loc[models["kind"] == "qct", "model_id"]
            model_id = str(qct.iloc[0] if len(qct) else models["model_id"].iloc[0])
        data = load_horizon_data(store, [model_id], (1, 3, 5))
        every = load_horizon_data(store, models["model_id"].tolist(), (1, 3, 5))
    d1 = data[(model_id, 1)]
    risk = {h: data[(model_id, h)].risk for h in (1, 3, 5)}
    return model_id, (d1.time_years, d1.event.astype(np.int8), risk, d1.patient_id), every


def _metrics(ev, time_, event, risk_h, h, clusters):
    return {
        "c_index": (ev.harrell_c_metric(time_, event, risk_h, clusters),
                    lambda t, e, r: ev.concordance_index(t, e, r)),
        "harrell_c": (ev.harrell_c_metric(time_, event, risk_h, clusters, tau=h),
                      lambda t, e, r: ev.concordance_index(t, e, r, tau=h)),
        "uno_c": (ev.uno_c_metric(time_, event, risk_h, h, clusters),
                  lambda t, e, r: ev.uno_c(t, e, r, h)),
        "td_auc": (ev.td_auc_metric(time_, event, risk_h, h, clusters),
                   lambda t, e, r: ev.time_dependent_auc(t, e, r, h)),
        "ipcw_brier": (ev.ipcw_brier_metric(time_, event, risk_h, h, clusters),
                       lambda t, e, r: ev.ipcw_brier(t, e, r, h)),
        "calibration_oe": (ev.observed_expected_metric(time_, event, risk_h, h, clusters),
                           lambda t, e, r: ev.observed_expected(t, e, r, h).ratio),
        "ipcw_calibration_slope": (
            ev.ipcw_calibration_metric(time_, event, risk_h, h, clusters, "slope"),
            lambda t, e, r: ev.ipcw_calibration_intercept_slope(t, e, r, h).slope),
    }


def bench_bootstrap(data, n_boot: int, n_slow: int) -> list[dict]:
    import sscmort_core.evaluation as ev

    time_, event, risk, groups = data
    clusters = ev.patient_clusters(groups)
    codes = clusters.codes
    rows_of = [np.flatnonzero(codes == p) for p in range(clusters.n_groups)]
    counts = ev.cluster_counts(clusters.n_groups, n_slow, 1)
    out = []
    for h in (1, 3, 5):
        t0 = time.perf_counter()
        metrics = _metrics(ev, time_, event, risk[h], h, clusters)
        prepare_s = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        cis = ev.bootstrap_cis([m for m, _ in metrics.values()], n_boot=n_boot, seed=0)
        together_s, together_cpu = time.perf_counter() - t0, time.process_time() - c0
        for (name, (metric, public)), ci in zip(metrics.items(), cis):
            t0, c0 = time.perf_counter(), time.process_time()
            ev.metric_with_ci(metric, n_boot=n_boot, seed=0)
            fast_s, fast_cpu = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            for row in counts:
                idx = np.concatenate([np.tile(rows_of[p], c) for p, c in enumerate(row) if c])
                public(time_[idx], event[idx], risk[h][idx])
            slow_s = (time.perf_counter() - t0) * n_boot / n_slow
            slow_cpu = (time.process_time() - c0) * n_boot / n_slow
            out.append({"horizon": h, "metric": name, "value": round(ci.value, 4),
                        "ci": [round(ci.ci_low, 4), round(ci.ci_high, 4)],
                        "fast_s": round(fast_s, 3), "fast_cpu_s": round(fast_cpu, 3),
                        "explicit_s_scaled": round(slow_s, 1),
                        "explicit_cpu_s_scaled": round(slow_cpu, 1),
                        "speedup_cpu": round(slow_cpu / fast_cpu, 1)})
        out.append({"horizon": h, "metric": "all 7 together", "fast_s": round(together_s, 3),
                    "fast_cpu_s": round(together_cpu, 3), "prepare_s": round(prepare_s, 3),
                    "load_avg": [round(x, 2) for x in os.getloadavg()]})
        print(json.dumps(out[-1]), flush=True)
    return out


def agreement(data) -> list[dict]:
    """sscmort against scikit-survival on these scans, and how many deaths tie a censoring."""
    from sksurv.metrics import brier_score, concordance_index_ipcw
    from sksurv.util import Surv

    import sscmort_core.evaluation as ev

    time_, event, risk, _ = data
    y = Surv.from_arrays(event.astype(bool), time_)
    out = []
    for h in (1, 3, 5):
        deaths = time_[(event == 1) & (time_ <= h)]
        ties = int(np.isin(deaths, time_[event == 0]).sum())
        uno = ev.uno_c(time_, event, risk[h], h)
        sk_uno = concordance_index_ipcw(y, y, risk[h], tau=h)[0]
        bs = ev.ipcw_brier(time_, event, risk[h], h)
        sk_bs = brier_score(y, y, 1 - risk[h], h)[1][0]
        out.append({"horizon": h, "deaths_tied_with_a_censoring": ties,
                    "uno_c": uno, "uno_c_minus_sksurv": uno - sk_uno,
                    "ipcw_brier": bs, "ipcw_brier_minus_sksurv": bs - sk_bs})
    return out


def calibration_in_the_large(every) -> list[dict]:
    import sscmort_core.evaluation as ev

    out = []
    for (model, h), d in every.items():
        lab = d.labelled
        oe = ev.observed_expected(d.time_years, d.event.astype(int), d.risk, h)
        out.append({"model": model, "horizon": h,
                    "oe_complete_cases": round(float(d.y[lab].mean() / d.risk[lab].mean()), 3),
                    "oe_km": round(oe.ratio, 3), "observed_km": round(oe.observed, 4),
                    "mean_predicted": round(oe.expected, 4)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--n-slow", type=int, default=10)
    args = parser.parse_args()
    report: dict = {"n_boot": args.n_boot}
    if args.store:
        model, data, every = from_store(args.store, args.model)
        report |= {"source": str(args.store), "model": model}
        report["calibration_in_the_large"] = calibration_in_the_large(every)
    else:
        data = simulated()
        report["source"] = "simulated"
    report |= {"n_scans": len(data[0]), "n_patients": int(len(set(data[3].tolist())))}
    report["agreement_with_sksurv"] = agreement(data)
    report["bootstrap"] = bench_bootstrap(data, args.n_boot, args.n_slow)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
