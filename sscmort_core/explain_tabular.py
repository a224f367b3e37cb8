"""SHAP explanations of the tabular models, and the frames the Radiomics & SHAP page draws.

SHAP values are in log-odds (the models' decision function before the sigmoid and before the
monotone running maximum): for every scan and horizon, ``base_value + sum(values)`` equals the
model's log-odds. Logistic models use shap's LinearExplainer (independent masker over a
training background), boosted trees its TreeExplainer (path-dependent, exact).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sscmort_core import store as st
from sscmort_core.errors import DataError
from sscmort_core.labels import HORIZONS_YEARS, label_scans

SHAP_KIND = "shap"


# ---------------------------------------------------------------------------------------------
# computing SHAP values
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapValues:
    """values: (3, n, p) log-odds contributions; base: (3,) base values; logits: (3, n)."""

    explainer: str
    values: np.ndarray = field(repr=False)
    base: np.ndarray = field(repr=False)
    logits: np.ndarray = field(repr=False)

    @property
    def max_additivity_error(self) -> float:
        recon = self.base[:, None] + self.values.sum(axis=2)  # (3, n)
        return float(np.max(np.abs(recon - self.logits))) if self.logits.size else 0.0

    def rows(self, model_id: str, scan_ids: Sequence[str], feature_names: Sequence[str],
             x: np.ndarray) -> pd.DataFrame:
        """Long rows for the explanations table (x: (n, p) raw feature values)."""
        n_h, n, p = self.values.shape
        ids = np.asarray(scan_ids, dtype=object)
        frames = []
        for j in range(n_h):
            frames.append(pd.DataFrame({
                "model_id": model_id, "scan_id": np.repeat(ids, p),
                "horizon_years": HORIZONS_YEARS[j], "kind": SHAP_KIND,
                "feature": np.tile(np.asarray(feature_names, dtype=object), n),
                "value": self.values[j].reshape(-1),  # (n * p,) scan-major
                "feature_value": x.reshape(-1), "base_value": float(self.base[j])}))
        return pd.concat(frames, ignore_index=True)


def _explain_horizon(hm: Any, z: np.ndarray) -> tuple[np.ndarray, float, str]:
    """((n, p) SHAP values, base value, explainer name) of one fitted horizon model."""
    import shap

    if hm.estimator is None:
        return np.zeros_like(z), float(hm.constant_logit), "constant"
    if hm.algorithm == "logistic":
        masker = shap.maskers.Independent(hm.background, max_samples=len(hm.background))
        ex = shap.LinearExplainer(hm.estimator, masker)
        values = np.asarray(ex.shap_values(z), dtype=float)
        return values, float(np.ravel(ex.expected_value)[0]), "LinearExplainer"
    ex = shap.TreeExplainer(hm.estimator)
    values = np.asarray(ex.shap_values(z), dtype=float)
    if values.ndim == 3:  # (n, p, classes) in some shap versions: keep the positive class
        values = values[..., -1]
    base = float(np.ravel(ex.expected_value)[-1])
    return values, base, "TreeExplainer"


def shap_values(model: Any, x: np.ndarray) -> ShapValues:
    """SHAP values of a :class:`~sscmort_core.tabular.TabularModel` for raw rows x (n, p)."""
    values, bases, logits, names = [], [], [], set()
    for hm in model.horizons:
        z = hm.standardise(x)  # (n, p)
        v, b, name = _explain_horizon(hm, z)
        values.append(v)
        bases.append(b)
        logits.append(hm.logit(x))
        names.add(name)
    return ShapValues(explainer=" / ".join(sorted(names)), values=np.stack(values),
                      base=np.asarray(bases), logits=np.stack(logits))


# ---------------------------------------------------------------------------------------------
# page data: SHAP summary and waterfall
# ---------------------------------------------------------------------------------------------
def pretty_feature(name: str) -> str:
    """``original_glcm_Contrast`` -> ``glcm Contrast``; QCT names stay as they are."""
    if name.startswith("original_"):
        _, cls, feat = name.split("_", 2)
        return f"{cls} {feat}"
    return name


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


# ---------------------------------------------------------------------------------------------
# page data: feature browser
# ---------------------------------------------------------------------------------------------
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
    from sklearn.metrics import roc_auc_score

    ok = df[df["outcome"] != "censored"].dropna(subset=["value"])
    died = ok.loc[ok["outcome"] == "died", "value"].to_numpy(dtype=float)
    alive = ok.loc[ok["outcome"] == "alive", "value"].to_numpy(dtype=float)
    d = auc = None
    if len(died) >= 2 and len(alive) >= 2:
        pooled = np.sqrt(((len(died) - 1) * died.var(ddof=1) + (len(alive) - 1) *
                          alive.var(ddof=1)) / (len(died) + len(alive) - 2))
        d = float((died.mean() - alive.mean()) / pooled) if pooled > 0 else None
        auc = float(roc_auc_score((ok["outcome"] == "died").astype(int), ok["value"]))
    return FeatureEffect(feature=feature, horizon_years=horizon_years, n_died=len(died),
                         n_alive=len(alive), n_censored=int((df["outcome"] == "censored").sum()),
                         mean_died=float(died.mean()) if len(died) else None,
                         mean_alive=float(alive.mean()) if len(alive) else None,
                         cohens_d=d, auc=auc)


def auc_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(p,) AUC of every column of x (n, p) as a score for y (n,) 0/1 (Mann-Whitney with
    average ranks for ties, as roc_auc_score); NaN rows are left out per column; NaN where
    a column lacks one of the classes."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    out = np.full(x.shape[1], np.nan)
    finite = np.isfinite(x)
    full = finite.all(axis=0)
    groups = [(np.flatnonzero(full), np.ones(len(y), dtype=bool))]
    groups += [(np.array([j]), finite[:, j]) for j in np.flatnonzero(~full)]
    for cols, rows in groups:
        if len(cols) == 0:
            continue
        yy = y[rows]
        n1, n0 = int(yy.sum()), int((~yy).sum())
        if n1 == 0 or n0 == 0:
            continue
        ranks = rankdata(x[np.ix_(rows, cols)], axis=0)  # (m, c) average ranks
        out[cols] = (ranks[yy].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return out


def feature_ranking(store: st.Store, param_hash: str, horizon_years: int) -> pd.DataFrame:
    """Every feature's univariable AUC at the horizon, strongest (|AUC - 0.5|) first."""
    long = st.radiomics_long_frame(store, param_hash)
    if long.empty:
        raise DataError(f"no radiomics features for parameter hash {param_hash}")
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


# ---------------------------------------------------------------------------------------------
# page data: models and risk lines
# ---------------------------------------------------------------------------------------------
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
        return f"{self.label} ({self.model_id})"


def tabular_models(store: st.Store) -> list[TabularModelInfo]:
    """Registered radiomics / QCT models, newest first."""
    models = st.models_frame(store)
    models = models[models["kind"].isin(["radiomics", "qct"])]
    out = []
    for r in models.itertuples():
        card = json.loads(r.card) if isinstance(r.card, str) else (r.card or {})
        aucs = {h["horizon_years"]: h.get("oof_auc") for h in card.get("horizons", [])}
        out.append(TabularModelInfo(
            model_id=r.model_id, kind=r.kind, label=card.get("label", r.model_id),
            created=pd.to_datetime(r.created_at).to_pydatetime() if r.created_at else None,
            oof_auc=tuple(aucs.get(h) for h in HORIZONS_YEARS),
            n_features=int(card.get("n_features", 0)), param_hash=card.get("param_hash")))
    return sorted(out, key=lambda m: (m.kind != "radiomics", m.label, m.model_id))


def risk_lines_frame(store: st.Store, patient_id: str,
                     kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """A patient's out-of-fold risks per scan for the timeline: scan_id, scan_date (datetime),
    model_id, kind, model (label), horizon ("1-year" ...), horizon_years, risk."""
    df = st.patient_predictions_frame(store, patient_id, "oof", kinds)
    df["scan_date"] = pd.to_datetime(df["scan_date"])
    df["model"] = df["label"].fillna(df["model_id"])
    df["horizon"] = df["horizon_years"].map(lambda h: f"{h}-year")
    return df[["scan_id", "scan_date", "model_id", "kind", "model", "horizon",
               "horizon_years", "risk"]]


def explanation_link(scan_id: str, model_id: str | None = None) -> str:
    """Relative URL of a scan's explanation on the Radiomics & SHAP page (url_path
    ``radiomics_shap``), e.g. for the patient timeline's scan table (st.column_config.LinkColumn)."""
    from urllib.parse import urlencode

    query = {"scan": scan_id} if model_id is None else {"scan": scan_id, "model": model_id}
    return f"radiomics_shap?{urlencode(query)}"
