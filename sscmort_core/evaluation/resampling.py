"""Patient-level (cluster) bootstrap of any :class:`~sscmort_core.evaluation.batch.BatchMetric`.

A resample draws the patients with replacement (:func:`cluster_counts`, the same draws as
:func:`~sscmort_core.evaluation.auc_with_ci` for the same seed and number of patients); each
scan enters with its patient's multiplicity, and metrics that use the censoring distribution
re-estimate it in every resample. Resamples are evaluated in blocks: one call of
``metric.values`` per block, no Python loop per resample. The CI is the percentile interval;
resamples that leave a metric undefined (e.g. no death drawn) are dropped and counted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import NDArray

from sscmort_core.errors import MetricInputError
from sscmort_core.evaluation._checks import check_level, check_positive_int
from sscmort_core.evaluation.batch import BatchMetric
from sscmort_core.evaluation.bootstrap import (
    Seed,
    _percentile_ci,
    _two_sided_proportion,
    cluster_counts,
)
from sscmort_core.evaluation.results import MetricCI, MetricDifference

# Resamples per call of BatchMetric.values: keeps (n_scans x block) arrays near 2 MiB each.
_BLOCK_ELEMENTS = 1 << 18


# --- public ------------------------------------------------------------------------------------
def bootstrap_values(metrics: Sequence[BatchMetric], n_boot: int = 2000,
                     seed: Seed = 0) -> NDArray[np.float64]:
    """Every metric under the same ``n_boot`` patient resamples, shape (k, n_boot); NaN where
    a resample leaves a metric undefined. The metrics must share one set of patients."""
    n_groups = _common_groups(metrics)
    n_boot = check_positive_int(n_boot, "n_boot")
    counts = cluster_counts(n_groups, n_boot, seed)  # (B, P)
    n_scans = max(m.clusters.n_scans for m in metrics)
    block = max(16, _BLOCK_ELEMENTS // max(n_scans, 1))
    out = np.empty((len(metrics), n_boot))
    for start in range(0, n_boot, block):
        c = np.ascontiguousarray(counts[start : start + block].T, dtype=np.float64)  # (P, b)
        for k, metric in enumerate(metrics):
            out[k, start : start + block] = metric.values(c)
    return out


def bootstrap_cis(metrics: Sequence[BatchMetric], n_boot: int = 2000, seed: Seed = 0,
                  level: float = 0.95) -> tuple[MetricCI, ...]:
    """Point estimate and patient-bootstrap percentile CI of each metric, all on the same
    resamples (so CIs of related metrics are jointly consistent). With fewer than two
    patients no CI is formed. Raises :class:`MetricInputError` if a point estimate is
    undefined."""
    level = check_level(level)
    points = [_point(m) for m in metrics]
    draws = _draws_or_none(metrics, n_boot, seed)
    return tuple(_metric_ci(m, p, None if draws is None else draws[k], n_boot, level)
                 for k, (m, p) in enumerate(zip(metrics, points)))


def metric_with_ci(metric: BatchMetric, n_boot: int = 2000, seed: Seed = 0,
                   level: float = 0.95) -> MetricCI:
    """:func:`bootstrap_cis` of one metric."""
    return bootstrap_cis([metric], n_boot=n_boot, seed=seed, level=level)[0]


def paired_bootstrap_difference(metric_a: BatchMetric, metric_b: BatchMetric,
                                n_boot: int = 2000, seed: Seed = 0,
                                level: float = 0.95) -> MetricDifference:
    """Patient-level paired bootstrap of ``metric_a - metric_b`` (e.g. the same metric of two
    models on the same scans): percentile CI and the two-sided bootstrap p-value
    ``min(1, 2 * min(P*(d <= 0), P*(d >= 0)))``."""
    level = check_level(level)
    if metric_a.clusters.estimand != metric_b.clusters.estimand:
        raise MetricInputError("a paired difference needs both metrics on one estimand, got "
                               f"{metric_a.clusters.estimand!r} and "
                               f"{metric_b.clusters.estimand!r}")
    a, b = _point(metric_a), _point(metric_b)
    draws = _draws_or_none([metric_a, metric_b], n_boot, seed)
    ci = p_value = None
    n_used = 0
    if draws is not None:
        usable = np.isfinite(draws).all(axis=0)
        diffs = draws[0, usable] - draws[1, usable]
        ci, p_value, n_used = _percentile_ci(diffs, level), _two_sided_proportion(diffs), \
            int(usable.sum())
    return MetricDifference(
        metric=metric_a.name if metric_a.name == metric_b.name else
        f"{metric_a.name} - {metric_b.name}",
        value_a=a, value_b=b, diff=a - b,
        ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1],
        p_value=p_value, level=level, estimand=metric_a.clusters.estimand,
        n_groups=max(metric_a.clusters.n_patients_present,
                     metric_b.clusters.n_patients_present),
        n_boot_used=n_used, n_boot_dropped=0 if draws is None else n_boot - n_used)


# --- computation ---------------------------------------------------------------------------------
def _common_groups(metrics: Sequence[BatchMetric]) -> int:
    if not metrics:
        raise MetricInputError("no metric to bootstrap")
    first = metrics[0].clusters
    for m in metrics[1:]:
        c = m.clusters
        if c.n_groups != first.n_groups or not np.array_equal(c.patient_ids, first.patient_ids):
            raise MetricInputError(
                f"{m.name} is on other patients than {metrics[0].name}: metrics bootstrapped "
                "together need clusters from one patient_clusters() call (or its subsets)")
    return first.n_groups


def _point(metric: BatchMetric) -> float:
    value = metric.point()
    if not np.isfinite(value):
        raise MetricInputError(f"{metric.name} is undefined on these scans")
    return value


def _draws_or_none(metrics: Sequence[BatchMetric], n_boot: int,
                   seed: Seed) -> NDArray[np.float64] | None:
    if _common_groups(metrics) < 2:
        check_positive_int(n_boot, "n_boot")
        return None
    return bootstrap_values(metrics, n_boot, seed)


def _metric_ci(metric: BatchMetric, point: float, draws: NDArray[np.float64] | None,
               n_boot: int, level: float) -> MetricCI:
    usable = np.array([]) if draws is None else draws[np.isfinite(draws)]
    ci = _percentile_ci(usable, level)
    return MetricCI(
        metric=metric.name, value=point,
        ci_low=None if ci is None else ci[0], ci_high=None if ci is None else ci[1],
        se_boot=float(np.std(usable, ddof=1)) if usable.size > 1 else None,
        level=level, estimand=metric.clusters.estimand, n=metric.clusters.n_scans,
        n_events=metric.n_events, n_groups=metric.clusters.n_patients_present,
        n_boot_used=int(usable.size),
        n_boot_dropped=0 if draws is None else n_boot - int(usable.size))
