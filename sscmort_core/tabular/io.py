"""The tabular models' data and files: feature matrices and labels read from the store, model
files (``<model_id>.joblib``, unpickled only after its sha256 matches the registry, and
``<model_id>.json``, the model card) and the registry rows.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.cards import ModelCard, write_card_file
from sscmort_core.errors import ChecksumMismatchError, DataError, ModelError
from sscmort_core.labels import (
    HORIZONS_YEARS,
    HorizonLabels,
    label_fingerprint,
    label_scans,
    time_to_event_years,
)
from sscmort_core.predictions import RiskPrediction
from sscmort_core.radiomics.features import load_params
from sscmort_core.tabular.clinical import reference_features
from sscmort_core.tabular.longitudinal import store_longitudinal_features
from sscmort_core.tabular.model import (
    KINDS,
    LONGITUDINAL_KINDS,
    MAX_MISSING_SHARE,
    QCT_FEATURES,
    REFERENCE_KINDS,
    TRAINABLE_KINDS,
    FeatureMatrix,
    TabularModel,
    predict_features,
)
from sscmort_core.util.cache import MODEL_CACHE, ModelCache
from sscmort_core.util.hashing import file_sha256
from sscmort_core.util.paths import default_models_dir


def current_param_hash() -> str:
    """The parameter hash of the repo's radiomics parameter file."""
    return load_params().param_hash


def feature_matrix(store: st.Store, kind: str, *, param_hash: str | None = None,
                   exclude_flagged: bool = True) -> FeatureMatrix:
    """The feature matrix of ``kind`` ("radiomics", "qct": QCT metrics and pattern extents,
    a clinical reference kind of :mod:`.clinical`, or "longitudinal": each scan with its
    patient's earlier scans, :mod:`.longitudinal`) over the stored scans.

    Radiomics uses ``param_hash`` (default: the current parameter file's). Scans whose lung
    mask failed QC and was not accepted are left out (``exclude_flagged``; their count is in
    ``n_flagged_excluded``). Features that are constant, or missing in more than
    :data:`MAX_MISSING_SHARE` of the scans, are dropped. Raises DataError when no scan has
    features.
    """
    if kind not in TRAINABLE_KINDS:
        raise ValueError(f"kind must be one of {TRAINABLE_KINDS}, got {kind!r}")
    scans = st.scans_frame(store)[["scan_id", "patient_id"]]
    n_flagged = 0
    if exclude_flagged:
        flagged = st.training_excluded_scan_ids(store)
        n_flagged = int(scans["scan_id"].isin(flagged).sum())
        scans = scans[~scans["scan_id"].isin(flagged)]
    if kind in LONGITUDINAL_KINDS:  # earlier scans: only those the model may train on
        wide = store_longitudinal_features(store, set(scans["scan_id"]))
        param_hash = None
        hint = "measure QCT first (`sscmort demo` or `sscmort ingest`)"
    elif kind in REFERENCE_KINDS:
        wide = reference_features(store, kind, QCT_FEATURES)
        param_hash = None
        hint = "measure QCT and import the clinical table first"
    elif kind == "qct":
        wide = st.qct_features_frame(store).set_index("scan_id")[list(QCT_FEATURES)]
        param_hash = None
        hint = "measure QCT first (`sscmort demo` or `sscmort ingest`)"
    else:
        param_hash = param_hash or current_param_hash()
        long = st.radiomics_long_frame(store, param_hash)
        wide = long.pivot(index="scan_id", columns="feature", values="value") if len(long) \
            else pd.DataFrame()
        hint = f"run `sscmort radiomics` first (parameter hash {param_hash})"
    wide = wide.reindex(scans["scan_id"]).dropna(how="all")
    if wide.empty:
        raise DataError(f"no scan in the store has {kind} features; {hint}", store.path)
    x = wide.to_numpy(dtype=np.float64)  # (n, p)
    missing = np.isnan(x).mean(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: dropped below
        spread = np.nanstd(x, axis=0)
    keep = (missing <= MAX_MISSING_SHARE) & (np.nan_to_num(spread) > 0)
    names = [str(c) for c in wide.columns]
    pid = scans.set_index("scan_id").loc[wide.index, "patient_id"].to_numpy().astype(str)
    return FeatureMatrix(
        kind=kind, scan_ids=tuple(str(s) for s in wide.index), patient_ids=pid,
        feature_names=tuple(n for n, k in zip(names, keep) if k), X=x[:, keep],
        param_hash=param_hash, dropped_features=tuple(n for n, k in zip(names, keep) if not k),
        n_scans_without=len(scans) - len(wide), n_flagged_excluded=n_flagged)


def horizon_labels(store: st.Store, scan_ids: Sequence[str]) -> dict[int, HorizonLabels]:
    """Labels of ``scan_ids`` (in that order) at every horizon, by the one label rule."""
    scans = st.scans_frame(store).set_index("scan_id").loc[list(scan_ids)]
    return {h: label_scans(scans["scan_date"], scans["death_date"],
                           scans["last_followup_date"], h) for h in HORIZONS_YEARS}


def survival_times(store: st.Store, scan_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """((n,) years from each scan to death or last follow-up, (n,) bool death) of ``scan_ids``
    (:func:`~sscmort_core.labels.time_to_event_years`)."""
    scans = st.scans_frame(store).set_index("scan_id").loc[list(scan_ids)]
    return time_to_event_years(scans["scan_date"], scans["death_date"],
                               scans["last_followup_date"])


def training_label_fingerprint(store: st.Store, scan_ids: Sequence[str]) -> str:
    """:func:`~sscmort_core.labels.label_fingerprint` of ``scan_ids`` as the store holds them
    now (what a model card records, and what the staleness check recomputes)."""
    scans = st.scans_frame(store).set_index("scan_id").loc[list(scan_ids)]
    return label_fingerprint(list(scan_ids), scans["scan_date"], scans["death_date"],
                             scans["last_followup_date"])


def save_model(model: TabularModel, card: ModelCard, models_dir: Path) -> ModelCard:
    """Write ``<model_id>.joblib`` (atomically) and its card; return the card with the file's
    name and sha256."""
    import joblib  # with scikit-learn

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    path = models_dir / f"{model.model_id}.joblib"
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    joblib.dump(model, tmp, compress=3)
    os.replace(tmp, path)
    card = dataclasses.replace(card, weights_file=path.name, weights_sha256=file_sha256(path))
    write_card_file(card, models_dir / f"{model.model_id}.json")
    return card


def load_model(store: st.Store, model_id: str, *, models_dir: Path | None = None,
               cache: ModelCache = MODEL_CACHE) -> TabularModel:
    """Load a registered tabular model; its file must match the sha256 in the registry
    (``models_dir``: default $SSCMORT_MODELS or models/, resolved at call time)."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    row = st.model_row(store, model_id)
    if row is None:
        raise ModelError(f"no model {model_id!r} in the registry", store.path)
    if row["kind"] not in KINDS:
        raise ModelError(f"model {model_id!r} is a {row['kind']} model, not a tabular one")
    name = Path(str(row["weights_path"] or f"{model_id}.joblib")).name
    path = Path(models_dir) / name
    if not path.exists():
        raise ModelError("model file is missing (train it again with `sscmort train --kind "
                         f"{row['kind']}`)", path)
    key = ("tabular", str(path.resolve()), str(row["weights_sha256"]), path.stat().st_mtime_ns)
    return cache.get_or_load(key, lambda: _read_model(path, model_id, row["weights_sha256"]))


def _read_model(path: Path, model_id: str, sha256: str) -> TabularModel:
    import joblib  # with scikit-learn

    if file_sha256(path) != sha256:
        raise ChecksumMismatchError("model file does not match the sha256 in the registry; "
                                    "it was changed or replaced, so it is not loaded", path)
    model = joblib.load(path)
    if not isinstance(model, TabularModel) or model.model_id != model_id:
        raise ModelError("file does not hold this tabular model", path)
    return model


def tabular_model_ids(store: st.Store, kinds: Sequence[str] = KINDS) -> list[str]:
    models = st.models_frame(store)
    return models.loc[models["kind"].isin(list(kinds)), "model_id"].tolist()


def predict_tabular(store: st.Store, model_id: str, features: Mapping[str, float], *,
                    models_dir: Path | None = None) -> RiskPrediction:
    """Per-horizon risk of one scan from its features (names as in the model card).

    Missing features are imputed with the training medians and named in the note; more than
    :data:`MAX_MISSING_SHARE` of them missing is a ModelError.
    """
    return predict_features(load_model(store, model_id, models_dir=models_dir), features)
