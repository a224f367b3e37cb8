"""Page data of the Radiomics & SHAP page and the timeline's risk lines: SHAP summary and
waterfall, the feature browser, the registered tabular models.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Sequence
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.cards import ModelCard
from sscmort_core.errors import DataError
from sscmort_core.evaluation import auc_columns, auc_or_none
from sscmort_core.labels import HORIZONS_YEARS, label_scans
from sscmort_core.tabular.longitudinal import fallback_scans
from sscmort_core.tabular.model import LONGITUDINAL_KINDS, QCT_FEATURES
from sscmort_core.views.lungs import PATTERN_LABELS
from sscmort_core.views.names import QCT_LABELS, model_labels

# the feature browser's set of whole-lung QCT metrics and ILD pattern extents (the QCT
# model's features), browsed beside the radiomics parameter sets under this key
QCT_SET = "qct"
_CLASSES = {"firstorder": "First order", "glcm": "GLCM", "glrlm": "GLRLM", "glszm": "GLSZM",
            "gldm": "GLDM", "ngtdm": "NGTDM", "shape": "Shape"}


def pretty_feature(name: str) -> str:
    """``original_glcm_Contrast`` -> ``GLCM Contrast``; a filtered image keeps its filter
    (``wavelet-LLH_glcm_Contrast`` -> ``GLCM Contrast (wavelet-LLH)``), so no two features
    share a label; QCT and pattern names read as on every page (units included)."""
    labels = {**QCT_LABELS, **PATTERN_LABELS}
    if name in labels:
        return labels[name]
    parts = name.split("_", 2)
    if len(parts) == 3 and parts[1] in _CLASSES:
        image, cls, feat = parts
        text = f"{_CLASSES[cls]} {feat}"
        return text if image == "original" else f"{text} ({image})"
    return name


def feature_sets(store: st.Store) -> pd.DataFrame:
    """The browsable feature sets: every radiomics parameter set, then QCT_SET (whole-lung
    QCT and pattern extents) when scans have QCT; columns of radiomics_param_sets."""
    sets = st.radiomics_param_sets(store)
    n = int(st.table_counts(store)["qct"])
    if n:
        extra = pd.DataFrame([{"param_hash": QCT_SET, "pyradiomics_version":
                               "QCT and ILD pattern map", "n_scans": n,
                               "n_features": len(QCT_FEATURES)}])
        sets = pd.concat([sets, extra], ignore_index=True)
    return sets


def _long_frame(store: st.Store, param_hash: str,
                features: Sequence[str] | None = None) -> pd.DataFrame:
    if param_hash == QCT_SET:
        return st.qct_long_frame(store, list(features or QCT_FEATURES)).dropna(subset=["value"])
    return st.radiomics_long_frame(store, param_hash, features)


def shap_summary_frame(store: st.Store, model_id: str, horizon_years: int,
                       top_n: int = 15, max_scans: int | None = 800,
                       seed: int = 0) -> pd.DataFrame:
    """Beeswarm data: the ``top_n`` features by mean |SHAP| (over all scans), one row per
    scan and feature for at most ``max_scans`` scans (a seeded sample keeps charts light).

    Columns: feature, label, scan_id, value (SHAP, log-odds), feature_value, value_rank (0..1
    within the feature: colour), jitter (-0.4..0.4, seeded), mean_abs, order (0 = most
    important).
    """
    df = st.explanations_frame(store, model_id, horizon_years=horizon_years)
    if df.empty:
        raise DataError(f"model {model_id} has no SHAP values at {horizon_years} years")
    importance = df.groupby("feature")["value"].apply(lambda v: float(np.mean(np.abs(v))))
    top = importance.sort_values(ascending=False).head(top_n)
    out = df[df["feature"].isin(top.index)].copy()
    out["value_rank"] = out.groupby("feature")["feature_value"].rank(pct=True)
    rng = np.random.default_rng(seed)
    scans = out["scan_id"].unique()
    if max_scans is not None and len(scans) > max_scans:
        keep = rng.choice(scans, size=max_scans, replace=False)
        out = out[out["scan_id"].isin(keep)].copy()
    out["mean_abs"] = out["feature"].map(top)
    out["order"] = out["feature"].map({f: i for i, f in enumerate(top.index)})
    out["label"] = out["feature"].map(pretty_feature)
    out["jitter"] = rng.uniform(-0.4, 0.4, len(out))
    return out[["feature", "label", "scan_id", "value", "feature_value", "value_rank",
                "jitter", "mean_abs", "order"]].reset_index(drop=True)


@dataclass(frozen=True)
class Waterfall:
    """One scan's explanation at one horizon, ready to draw.

    steps: feature, label, value (log-odds), feature_value, start, end (cumulative log-odds),
    in drawing order (largest |value| first, the rest merged into "other N features").
    """

    model_id: str
    scan_id: str
    horizon_years: int
    base_value: float  # log-odds
    output_logit: float  # base + sum of values
    steps: pd.DataFrame = field(repr=False)
    stored_risk: float | None  # the OOF risk in predictions (monotone adjusted), if any

    @property
    def output_risk(self) -> float:
        return float(1.0 / (1.0 + np.exp(-self.output_logit)))

    @property
    def base_risk(self) -> float:
        return float(1.0 / (1.0 + np.exp(-self.base_value)))


def waterfall(store: st.Store, model_id: str, scan_id: str, horizon_years: int,
              top_n: int = 10) -> Waterfall:
    df = st.explanations_frame(store, model_id, horizon_years=horizon_years, scan_id=scan_id)
    if df.empty:
        raise DataError(f"no SHAP values for scan {scan_id} from model {model_id} at "
                        f"{horizon_years} years")
    df = df.reindex(df["value"].abs().sort_values(ascending=False).index)
    head, rest = df.head(top_n), df.iloc[top_n:]
    steps = pd.DataFrame({"feature": head["feature"], "label": head["feature"].map(pretty_feature),
                          "value": head["value"], "feature_value": head["feature_value"]})
    if len(rest):
        steps = pd.concat([steps, pd.DataFrame({
            "feature": ["(other)"], "label": [f"other {len(rest)} features"],
            "value": [float(rest["value"].sum())], "feature_value": [np.nan]})])
    base = float(df["base_value"].iloc[0])
    steps = steps.reset_index(drop=True)
    steps["end"] = base + steps["value"].cumsum()
    steps["start"] = steps["end"] - steps["value"]
    pred = st.predictions_frame(store, [model_id])
    hit = pred[(pred["scan_id"] == scan_id) & (pred["horizon_years"] == horizon_years)]
    return Waterfall(model_id=model_id, scan_id=scan_id, horizon_years=horizon_years,
                     base_value=base, output_logit=base + float(df["value"].sum()), steps=steps,
                     stored_risk=float(hit["risk"].iloc[0]) if len(hit) else None)


@dataclass(frozen=True)
class FeatureEffect:
    """A feature's association with death within a horizon (censored scans excluded).

    cohens_d: (mean died - mean alive) / pooled SD; auc: the feature alone as a score
    (0.5 = none; below 0.5 = lower values go with death).
    """

    feature: str
    horizon_years: int
    n_died: int
    n_alive: int
    n_censored: int
    mean_died: float | None
    mean_alive: float | None
    cohens_d: float | None
    auc: float | None


def feature_outcome_frame(store: st.Store, param_hash: str, feature: str,
                          horizon_years: int) -> pd.DataFrame:
    """One feature per scan with its outcome at the horizon ("died", "alive", "censored"),
    scanner and kernel."""
    if param_hash == QCT_SET:
        df = _long_frame(store, QCT_SET, [feature]).merge(st.scan_outcome_columns(store),
                                                          on="scan_id")
        df = df.drop(columns=["feature"])
    else:
        df = st.radiomics_feature_by_scan(store, param_hash, feature)
    if df.empty:
        raise DataError(f"no values of {feature} for parameter hash {param_hash}")
    lab = label_scans(df["scan_date"], df["death_date"], df["last_followup_date"], horizon_years)
    df["outcome"] = np.where(~lab.known, "censored", np.where(lab.positive, "died", "alive"))
    df["kernel"] = df["kernel"].fillna("unknown")
    df["scanner"] = df["scanner"].fillna("unknown")
    return df


def feature_effect(df: pd.DataFrame, feature: str, horizon_years: int) -> FeatureEffect:
    """Effect size of the frame from :func:`feature_outcome_frame`."""
    ok = df[df["outcome"] != "censored"].dropna(subset=["value"])
    died = ok.loc[ok["outcome"] == "died", "value"].to_numpy(dtype=float)
    alive = ok.loc[ok["outcome"] == "alive", "value"].to_numpy(dtype=float)
    d = auc = None
    if len(died) >= 2 and len(alive) >= 2:
        pooled = np.sqrt(((len(died) - 1) * died.var(ddof=1) + (len(alive) - 1) *
                          alive.var(ddof=1)) / (len(died) + len(alive) - 2))
        d = float((died.mean() - alive.mean()) / pooled) if pooled > 0 else None
        auc = auc_or_none((ok["outcome"] == "died").astype(int), ok["value"])
    return FeatureEffect(feature=feature, horizon_years=horizon_years, n_died=len(died),
                         n_alive=len(alive), n_censored=int((df["outcome"] == "censored").sum()),
                         mean_died=float(died.mean()) if len(died) else None,
                         mean_alive=float(alive.mean()) if len(alive) else None,
                         cohens_d=d, auc=auc)


def feature_ranking(store: st.Store, param_hash: str, horizon_years: int) -> pd.DataFrame:
    """Every feature's univariable AUC at the horizon, strongest (|AUC - 0.5|) first."""
    long = _long_frame(store, param_hash)
    if long.empty:
        raise DataError(f"no features for parameter set {param_hash}")
    wide = long.pivot(index="scan_id", columns="feature", values="value")
    scans = st.scans_frame(store).set_index("scan_id").loc[wide.index]
    lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"],
                      horizon_years)
    auc = auc_columns(wide.to_numpy(dtype=float)[lab.known], lab.positive[lab.known])
    out = pd.DataFrame({"feature": wide.columns.astype(str),
                        "label": [pretty_feature(f) for f in wide.columns],
                        "auc": [None if np.isnan(a) else float(a) for a in auc]})
    out["strength"] = (out["auc"].astype(float) - 0.5).abs()
    return out.sort_values("strength", ascending=False, na_position="last").reset_index(drop=True)


@dataclass(frozen=True)
class TabularModelInfo:
    model_id: str
    kind: str
    label: str
    created: dt.datetime | None
    oof_auc: tuple[float | None, ...]  # per horizon (1, 3, 5)
    n_features: int
    param_hash: str | None

    @property
    def display(self) -> str:
        """The name a picker shows: the card's label (ids and hashes stay out of sight)."""
        return self.label


def tabular_models(store: st.Store) -> list[TabularModelInfo]:
    """Registered radiomics / QCT models, newest first."""
    models = st.models_frame(store)
    models = models[models["kind"].isin(["radiomics", "qct"])]
    out = []
    for r in models.itertuples():
        card = ModelCard.from_store(r.card, model_id=r.model_id, kind=r.kind, version=r.version)
        out.append(TabularModelInfo(
            model_id=r.model_id, kind=r.kind, label=card.label,
            created=pd.to_datetime(r.created_at).to_pydatetime() if r.created_at else None,
            oof_auc=tuple(card.auc(h) for h in HORIZONS_YEARS),
            n_features=len(card.features), param_hash=card.param_hash))
    return sorted(out, key=lambda m: (m.kind != "radiomics", m.label, m.model_id))


def risk_lines_frame(store: st.Store, patient_id: str,
                     kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """A patient's out-of-fold risks per scan for the timeline: scan_id, scan_date (datetime),
    model_id, kind, model (label), horizon ("1-year" ...), horizon_years, risk, and
    ``fallback``: True on a longitudinal model's scans without an earlier scan (scored on the
    cross-sectional features alone, :mod:`sscmort_core.tabular.longitudinal`)."""
    df = st.patient_predictions_frame(store, patient_id, "oof", kinds)
    df["scan_date"] = pd.to_datetime(df["scan_date"])
    labels = model_labels(store)  # the names every page uses (views.names)
    df["model"] = df["model_id"].map(labels).fillna(df["model_id"])
    df["horizon"] = df["horizon_years"].map(lambda h: f"{h}-year")
    df["fallback"] = False
    longitudinal = df["kind"].isin(LONGITUDINAL_KINDS)
    if longitudinal.any():
        flags = fallback_scans(store, patient_id).set_index("scan_id")["has_prior"]
        df.loc[longitudinal, "fallback"] = ~df.loc[longitudinal, "scan_id"].map(flags) \
            .fillna(True).astype(bool)
    return df[["scan_id", "scan_date", "model_id", "kind", "model", "horizon",
               "horizon_years", "risk", "fallback"]]


def explanation_link(scan_id: str, model_id: str | None = None) -> str:
    """Relative URL of a scan's explanation on the Radiomics & SHAP page (url_path
    ``radiomics_shap``), e.g. for a table's st.column_config.LinkColumn."""
    query = {"scan": scan_id} if model_id is None else {"scan": scan_id, "model": model_id}
    return f"radiomics_shap?{urlencode(query)}"
