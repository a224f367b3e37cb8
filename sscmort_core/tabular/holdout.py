"""A registered tabular model's recipe refit on a validation design's training scans and
scored on its test scans (the designs themselves: :mod:`sscmort_core.pipeline.designs`).

The recipe is the registered model's: its kind, algorithm, seed and the exact features it was
trained on. Everything that is fitted or tuned sees the training scans only: the per-horizon
models (the penalised logistic's C by an inner patient-grouped CV on training scans, the
discrete-time survival's C likewise), and the recalibration, fitted on inner out-of-fold risks
of the training scans (:data:`~sscmort_core.tabular.model.INNER_FOLDS` patient-grouped folds),
as the cross-validation does for each outer fold. Labels come from the one label rule
(:func:`~sscmort_core.tabular.io.horizon_labels`); complete-case algorithms fit each horizon on
its labelled training scans, the survival algorithm on every training scan up to its follow-up.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from sscmort_core import store as st
from sscmort_core.errors import DataError, ModelError
from sscmort_core.folds import grouped_folds
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.tabular.io import feature_matrix, horizon_labels, survival_times
from sscmort_core.tabular.model import (
    INNER_FOLDS,
    SURVIVAL_ALGORITHMS,
    TRAINABLE_KINDS,
    FeatureMatrix,
    HorizonModel,
    fit_horizon,
    fit_survival_horizons,
    monotone,
)
from sscmort_core.tabular.recalibration import fit_recalibration

# the cross-validation's own inner-OOF helper, so the recalibration is fitted the same way
from sscmort_core.tabular.train import _Data, _oof_rows, data_hash

HOLDOUT_VERSION = "1"  # bump when the refit or its recalibration changes


@dataclass(frozen=True)
class HoldoutRisks:
    """Risks of a design's test scans from the recipe refit on its training scans.

    ``scan_ids`` (n,) are the test scans with features; ``risks`` (n, 3) the 1-, 3-, 5-year
    risks after recalibration, monotone across horizons (running maximum), as the model's
    stored OOF risks are. ``n_train_*`` count the training scans with features used.
    """

    model_id: str
    scan_ids: tuple[str, ...]
    risks: np.ndarray
    n_train_scans: int
    n_train_patients: int
    n_test_without_features: int


def _recipe_matrix(store: st.Store, model_id: str) -> tuple[dict, FeatureMatrix]:
    """The registered model's config and the store's features in its feature order."""
    row = st.model_row(store, model_id)
    if row is None:
        raise ModelError(f"no model {model_id!r} in the registry", store.path)
    if row["kind"] not in TRAINABLE_KINDS:
        raise ModelError(f"model {model_id!r} is a {row['kind']} model; validation designs "
                         "refit tabular and reference models only", store.path)
    config = row["config"] if isinstance(row["config"], dict) else json.loads(row["config"])
    fm = feature_matrix(store, str(row["kind"]), param_hash=config.get("param_hash"))
    wanted = list(config["features"])
    missing = [f for f in wanted if f not in fm.feature_names]
    if missing:
        raise DataError(f"model {model_id} was trained on features the store no longer has "
                        f"({missing[0]!r}); train it again first", store.path)
    cols = [fm.feature_names.index(f) for f in wanted]
    fm = FeatureMatrix(kind=fm.kind, scan_ids=fm.scan_ids, patient_ids=fm.patient_ids,
                       feature_names=tuple(wanted), X=fm.X[:, cols], param_hash=fm.param_hash)
    return {**config, "kind": row["kind"]}, fm


def _fit_finals(data: _Data, rows: np.ndarray, algorithm: str, seed: int
                ) -> tuple[HorizonModel, ...]:
    """Per-horizon models fitted on ``rows`` (complete cases per horizon, or every row by the
    survival likelihood)."""
    fm = data.fm
    x, pid = fm.X[rows], fm.patient_ids[rows]
    if algorithm in SURVIVAL_ALGORITHMS:
        return fit_survival_horizons(x, data.time_years[rows], data.event[rows], pid, seed)
    out = []
    for h in HORIZONS_YEARS:
        lab = data.labels[h]
        known = lab.known[rows]
        out.append(fit_horizon(x[known], lab.positive[rows][known], pid[known], algorithm, h,
                               seed))
    return tuple(out)


def fit_holdout(store: st.Store, model_id: str, train_scan_ids: Sequence[str],
                test_scan_ids: Sequence[str], *,
                tick: Callable[[], None] = lambda: None) -> HoldoutRisks:
    """Refit ``model_id``'s recipe on ``train_scan_ids`` and score ``test_scan_ids``.

    Scans without features (or with a flagged lung mask) are left out of both sides. Raises
    ModelError (not a tabular model), DataError (no training or test scan with features, or
    the model's features are gone), ValueError when the two sets share a scan.
    """
    if set(train_scan_ids) & set(test_scan_ids):
        raise ValueError("a scan cannot be both a training and a test scan")
    config, fm = _recipe_matrix(store, model_id)
    algorithm, seed = str(config["algorithm"]), int(config.get("seed", 0))
    index = {s: i for i, s in enumerate(fm.scan_ids)}
    train = np.array(sorted(index[s] for s in set(train_scan_ids) if s in index), dtype=int)
    test = np.array(sorted(index[s] for s in set(test_scan_ids) if s in index), dtype=int)
    if not len(train) or not len(test):
        side = "training" if not len(train) else "test"
        raise DataError(f"no {side} scan of the design has {config['kind']} features",
                        store.path)
    labels = horizon_labels(store, fm.scan_ids)
    time_years, event = survival_times(store, fm.scan_ids)
    data = _Data(fm, labels, time_years, event, np.zeros(len(fm.scan_ids), dtype=np.int64),
                 data_hash(fm, labels), None, None, "")
    with threadpool_limits(limits=1):
        finals = _fit_finals(data, train, algorithm, seed)
        five = labels[HORIZONS_YEARS[-1]]
        inner = grouped_folds(fm.patient_ids[train], INNER_FOLDS, seed + 1,
                              stratify=(five.positive & five.known)[train])
        inner_oof = _oof_rows(data, train, inner, algorithm, seed, tick)
        recalibration = fit_recalibration(time_years[train], event[train], inner_oof)
        raw = np.column_stack([m.risk(fm.X[test]) for m in finals])  # (n_test, 3)
    risks = monotone(recalibration.apply(raw))[0]
    return HoldoutRisks(
        model_id=model_id, scan_ids=tuple(fm.scan_ids[i] for i in test), risks=risks,
        n_train_scans=len(train), n_train_patients=len(np.unique(fm.patient_ids[train])),
        n_test_without_features=len(set(test_scan_ids)) - len(test))
