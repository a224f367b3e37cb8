"""A store for the validation-design tests, built in seconds without volumes: the synthetic
cohort's patients, scans and lung function written as two sources (as two registry imports
would set ``patients.source``), and QCT rows made from each scan's true ILD extent with
measurement noise (so a QCT model has signal to learn). Labelled synthetic throughout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.tabular.train import train_tabular

SOURCES = ("registry-a", "registry-b")


def _qct_rows(scans: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    extent = np.clip(scans["true_ild_extent_pct"].to_numpy() + rng.normal(0, 2.0, len(scans)),
                     0, 100)
    n = len(scans)
    return pd.DataFrame({
        "scan_id": scans["scan_id"], "ild_extent_pct": extent,
        "haa_pct": 0.6 * extent + rng.normal(0, 2.0, n),
        "lung_volume_ml": 4500 - 25 * extent + rng.normal(0, 400, n),
        "mean_lung_density_hu": -860 + 3 * extent + rng.normal(0, 15, n),
        "skewness": 2.5 - 0.03 * extent + rng.normal(0, 0.3, n),
        "kurtosis": 9 - 0.1 * extent + rng.normal(0, 1.0, n),
        "left_volume_ml": np.nan, "right_volume_ml": np.nan, "method_version": "test"})


def build_design_store(path: Path, *, n_patients: int = 160, seed: int = 5) -> Path:
    """Write the store (patients alternate between :data:`SOURCES`)."""
    cohort = generate_cohort(n_patients=n_patients, seed=seed)
    pts = cohort.patients.copy()
    pts["source"] = [SOURCES[i % 2] for i in range(len(pts))]
    pts["synthetic"] = True
    source_of = pts.set_index("patient_id")["source"]
    scans = cohort.scans.copy()
    for col in ("series_description", "spacing_z_mm", "spacing_y_mm", "spacing_x_mm",
                "shape_z", "shape_y", "shape_x", "volume_path", "volume_sha256",
                "voxel_sha256"):
        scans[col] = None
    scans["source"] = scans["patient_id"].map(source_of)
    scans["synthetic"] = True
    clinical = cohort.clinical.copy()
    clinical["source"] = clinical["patient_id"].map(source_of)
    clinical["synthetic"] = True
    with st.open_store(path) as s, s.transaction() as cur:
        st.insert_frame(cur, "patients", pts)
        st.insert_frame(cur, "scans", scans)
        st.insert_frame(cur, "clinical", clinical)
        st.insert_frame(cur, "qct", _qct_rows(scans, np.random.default_rng(seed)))
    return path


def train_qct(path: Path, models_dir: Path, folds: int = 3) -> list[str]:
    """The QCT models (complete-case logistic and discrete-time survival), registered."""
    with st.open_store(path) as s:
        return train_tabular(s, "qct", models_dir=models_dir, folds=folds)


def register_recipe(path: Path, kind: str = "qct", algorithm: str = "discrete_time",
                    model_id: str | None = None) -> str:
    """Register a tabular model's recipe (kind, algorithm, seed, features) without its
    cross-validation: all a validation design reads of a registered model. Returns its id."""
    from sscmort_core.tabular.io import feature_matrix

    model_id = model_id or f"{kind}-{algorithm}-recipe"
    with st.open_store(path) as s:
        fm = feature_matrix(s, kind)
        with s.transaction() as cur:
            st.upsert_model(cur, model_id=model_id, kind=kind, backbone=None, version="1",
                            config={"algorithm": algorithm, "seed": 0, "folds": 3,
                                    "features": list(fm.feature_names), "param_hash": None},
                            data_hash=None, weights_path=None, weights_sha256=None,
                            card={"label": f"{kind} {algorithm} (recipe)"}, synthetic=True)
    return model_id


def register_oracle_and_deep(path: Path, *, n_patients: int = 160, seed: int = 5) -> None:
    """The generator's true risks as the "oracle" (as the demo registers it) and a "deep"
    model with OOF risks (the oracle's, noised), which the designs do not refit; ``n_patients``
    and ``seed`` as given to :func:`build_design_store`."""
    from sscmort_core.labels import HORIZONS_YEARS

    cohort_risks = []
    truth = generate_cohort(n_patients=n_patients, seed=seed).scans
    with st.open_store(path) as s:
        rng = np.random.default_rng(1)
        noise = rng.normal(0, 1.0, len(truth))
        for h in HORIZONS_YEARS:
            p = truth[f"true_risk_{h}y"].to_numpy()
            noisy = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + noise)))
            for model_id, risk in (("oracle", p), ("deep-test", noisy)):
                cohort_risks.append(pd.DataFrame({
                    "model_id": model_id, "scan_id": truth["scan_id"], "horizon_years": h,
                    "risk": risk, "fold": 0, "split": "oof"}))
        with s.transaction() as cur:
            for model_id, kind in (("oracle", "oracle"), ("deep-test", "deep")):
                st.upsert_model(cur, model_id=model_id, kind=kind,
                                backbone="resnet18" if kind == "deep" else None, version="1",
                                config={}, data_hash=None, weights_path=None,
                                weights_sha256=None, card={}, synthetic=True)
            st.insert_frame(cur, "predictions", pd.concat(cohort_risks, ignore_index=True))
