"""``sscmort export``: de-identified tables for analysis in R or a paper's supplement.

``cohort`` writes patients, scans (with QCT and the label rule's label at each horizon) and
clinical; ``predictions`` the out-of-fold risks of every model with each scan's label;
``metrics`` every stored metric with its estimand. Ids are the store's pseudonyms and dates
are as stored (shifted for patients imported with ``--shift-dates``). Free text (series
descriptions), file paths and hashes are left out. A README.md beside the tables describes
every column, one row each (:data:`COLUMN_DOCS`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.cards import model_labels
from sscmort_core.errors import DataError
from sscmort_core.labels import HORIZONS_YEARS, label_scans, time_to_event_years
from sscmort_core.pipeline.staleness import model_staleness

WHATS: tuple[str, ...] = ("cohort", "predictions", "metrics")
LABEL_WORDS = ("censored", "negative", "positive")

_ID = {"patient_id": ("text", "pseudonymous patient id (the store's keyed hash; never a "
                      "registry id)"),
       "scan_id": ("text", "scan id in the store")}
_SOURCE = {"source": ("text", "where the row came from: synthetic (the simulator), upload "
                      "(sscmort ingest / Upload page) or the registry import's --source"),
           "synthetic": ("boolean", "true for rows made by sscmort's simulator (not a real "
                         "person)")}
_LABELS = {f"label_{h}y": ("text", f"label rule at {h} year{'s' if h > 1 else ''}: positive "
                           f"(died within {h} y of the scan), negative (known alive at {h} y) "
                           "or censored (excluded from binary metrics)") for h in HORIZONS_YEARS}
_MODEL = {"model_id": ("text", "registered model id"),
          "model_kind": ("text", "deep, radiomics, qct or oracle (the simulator's true risk)"),
          "model_label": ("text", "readable model name"),
          "model_status": ("text", "current, stale (outcomes changed since training) or "
                           "unknown (no label fingerprint recorded)")}

COLUMN_DOCS: dict[str, dict[str, tuple[str, str]]] = {
    "patients": {
        **{"patient_id": _ID["patient_id"]},
        "sex": ("text", "F or M"), "birth_year": ("integer", "year of birth"),
        "subtype": ("text", "limited, diffuse or sine"),
        "antibody": ("text", "scl70, centromere, rnapol3, other or negative"),
        "ever_smoker": ("boolean", "ever smoked (empty: not recorded)"),
        "pulmonary_hypertension": ("boolean", "pulmonary hypertension (empty: not recorded)"),
        "cardiac_involvement": ("boolean", "primary cardiac involvement (empty: not "
                                "recorded)"),
        "death_date": ("date", "date of death (empty: not known dead); shifted if "
                       "dates_shifted"),
        "last_followup_date": ("date", "date last known alive (or of death); shifted if "
                               "dates_shifted"),
        **_SOURCE,
        "dates_shifted": ("boolean", "true when every date of the patient was moved by one "
                          "per-patient offset (within +-365 days) on import; intervals and "
                          "labels are exact"),
    },
    "scans": {
        **_ID, "scan_date": ("date", "date of the CT; shifted if the patient's dates are"),
        **_SOURCE,
        "scanner": ("text", "manufacturer and model"), "kernel": ("text",
                                                                  "reconstruction kernel"),
        "slice_thickness_mm": ("number", "slice thickness, mm"),
        "spacing_z_mm": ("number", "slice spacing, mm"),
        "spacing_y_mm": ("number", "row spacing, mm"),
        "spacing_x_mm": ("number", "column spacing, mm"),
        "shape_z": ("integer", "slices"), "shape_y": ("integer", "rows"),
        "shape_x": ("integer", "columns"),
        "lung_volume_ml": ("number", "segmented lung volume, mL"),
        "mean_lung_density_hu": ("number", "mean lung density, HU"),
        "skewness": ("number", "lung histogram skewness"),
        "kurtosis": ("number", "lung histogram excess kurtosis"),
        "haa_pct": ("number", "high-attenuation area (-600 to -250 HU), % of lung"),
        "ild_extent_pct": ("number", "QCT ILD extent, % of lung"),
        **_LABELS,
        "followup_years": ("number", "years from the scan to death or last follow-up "
                           "(365.25-day years)"),
        "died": ("boolean", "true when followup_years ends in death"),
    },
    "clinical": {
        "patient_id": _ID["patient_id"],
        "date": ("date", "date of the lung-function test; shifted if the patient's dates are"),
        "fvc_pct_pred": ("number", "forced vital capacity, % predicted"),
        "dlco_pct_pred": ("number", "diffusing capacity (DLCO), % predicted"), **_SOURCE,
    },
    "predictions": {
        **_MODEL, **_ID, "horizon_years": ("integer", "horizon h, years"),
        "risk": ("number", "predicted probability of death within h years of the scan"),
        "fold": ("integer", "cross-validation fold the scan was held out in"),
        "split": ("text", "oof: out-of-fold (the model never saw the scan's patient); "
                  "design:...: a validation design's test part (the model's recipe refit on "
                  "its training part)"),
        "label": ("text", "label rule at h years: positive, negative or censored"),
    },
    "metrics": {
        **_MODEL, "horizon_years": ("integer", "horizon h, years"),
        "metric": ("text", "auc, brier, calibration_slope, calibration_intercept, c_index, "
                   "td_auc"),
        "estimand": ("text", "what the metric estimates, on which scans"),
        "value": ("number", "the estimate (empty when it could not be computed: see note)"),
        "ci_low": ("number", "95% CI, lower end (patient-level cluster bootstrap)"),
        "ci_high": ("number", "95% CI, upper end"),
        "n_scans": ("integer", "scans the metric used"),
        "n_patients": ("integer", "patients those scans belong to"),
        "n_events": ("integer", "deaths among them (see estimand)"),
        "note": ("text", "why a metric has no value, e.g. too few events"),
    },
}

ESTIMANDS = {
    "auc": "scan-level ROC AUC for death within h years, scans with a known h-year outcome "
           "(censored excluded); CI by patient-level bootstrap",
    "brier": "mean squared error of the h-year risk, scans with a known h-year outcome",
    "calibration_slope": "logistic recalibration slope of the h-year risk (1 = ideal), scans "
                         "with a known h-year outcome",
    "calibration_intercept": "logistic recalibration intercept (0 = ideal), scans with a known "
                             "h-year outcome",
    "c_index": "Harrell's C of the h-year risk against time to death, every predicted scan "
               "(censored included)",
    "td_auc": "Uno's time-dependent AUC at h years (inverse probability of censoring "
              "weights), every predicted scan",
}


@dataclass(frozen=True)
class ExportResult:
    what: str
    format: str
    folder: Path
    files: tuple[tuple[str, int], ...]  # (file name, rows)

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "format": self.format, "folder": str(self.folder),
                "files": {name: rows for name, rows in self.files}, "readme": "README.md"}


def _labels(frame: pd.DataFrame) -> dict[int, list[str]]:
    out = {}
    for h in HORIZONS_YEARS:
        lab = label_scans(frame["scan_date"], frame["death_date"], frame["last_followup_date"],
                          h)
        out[h] = [LABEL_WORDS[int(k) + int(k and p)] for k, p in zip(lab.known, lab.positive)]
    return out


def cohort_tables(store: st_store.Store) -> dict[str, pd.DataFrame]:
    patients = st_store.patients_frame(store)
    flags = st_store.registry_patients_frame(store).set_index("patient_id")["dates_shifted"]
    patients["dates_shifted"] = patients["patient_id"].map(flags).fillna(False).astype(bool)
    scans = st_store.scans_frame(store)
    if len(scans):
        for h, words in _labels(scans).items():
            scans[f"label_{h}y"] = words
        years, died = time_to_event_years(scans["scan_date"], scans["death_date"],
                                          scans["last_followup_date"])
        scans["followup_years"], scans["died"] = years.round(4), died
    else:
        for col in [*_LABELS, "followup_years", "died"]:
            scans[col] = pd.Series(dtype=object)
    return {"patients": patients, "scans": scans, "clinical": st_store.clinical_frame(store)}


def _models(store: st_store.Store) -> pd.DataFrame:
    models = st_store.models_frame(store)
    status = model_staleness(store)
    labels = model_labels(models.to_dict("records"))  # the names the pages show
    return pd.DataFrame({
        "model_id": models["model_id"], "model_kind": models["kind"],
        "model_label": [labels[m] for m in models["model_id"]],
        "model_status": [status[m].status for m in models["model_id"]]})


def prediction_table(store: st_store.Store) -> pd.DataFrame:
    preds = st_store.predictions_frame(store, split=None)
    scans = st_store.scans_frame(store).set_index("scan_id")
    labels = _labels(scans) if len(scans) else {h: [] for h in HORIZONS_YEARS}
    label_of = {(sid, h): w for h in HORIZONS_YEARS for sid, w in zip(scans.index, labels[h])}
    preds["patient_id"] = preds["scan_id"].map(scans["patient_id"])
    preds["label"] = [label_of.get((s, int(h))) for s, h in
                      zip(preds["scan_id"], preds["horizon_years"])]
    return preds.merge(_models(store), on="model_id", how="left")


def metric_table(store: st_store.Store) -> pd.DataFrame:
    metrics = st_store.metrics_frame(store)
    metrics["estimand"] = metrics["metric"].map(ESTIMANDS)
    return metrics.merge(_models(store), on="model_id", how="left")


def export_tables(store: st_store.Store, what: str, out_dir: Path, fmt: str = "csv"
                  ) -> ExportResult:
    """Write the ``what`` tables as ``fmt`` files into ``out_dir`` (created), with README.md."""
    if what not in WHATS:
        raise DataError(f"--what must be one of {', '.join(WHATS)}, got {what!r}")
    if fmt not in st_store.TABLE_FORMATS:
        raise DataError(f"--format must be csv or parquet, got {fmt!r}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError("is a file; give a folder to write the tables into", out_dir)
    tables = cohort_tables(store) if what == "cohort" else \
        {"predictions": prediction_table(store)} if what == "predictions" else \
        {"metrics": metric_table(store)}
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, frame in tables.items():
        columns = list(COLUMN_DOCS[name])
        path = out_dir / f"{name}.{fmt}"
        st_store.write_table_file(frame.reindex(columns=columns), path, fmt)
        files.append((path.name, len(frame)))
    (out_dir / "README.md").write_text(readme(what, fmt, tables, store), encoding="utf-8")
    return ExportResult(what, fmt, out_dir, tuple(files))


def readme(what: str, fmt: str, tables: dict[str, pd.DataFrame], store: st_store.Store) -> str:
    """The README beside the tables: what they are, then one row per column."""
    synthetic = st_store.is_synthetic(store)
    lines = [f"# sscmort export: {what}", "",
             f"Written {dt.date.today().isoformat()} by `sscmort export --what {what} "
             f"--format {fmt}`. Research use only: not for clinical decisions.", "",
             "Ids are the store's pseudonyms; dates are as stored (moved by one offset per "
             "patient when `dates_shifted` is true, so intervals and labels are exact). Free "
             "text, file paths and hashes are not exported.", ""]
    if synthetic:
        lines += ["The store holds synthetic patients (`synthetic` = true): made by sscmort's "
                  "simulator, not real people.", ""]
    for name, frame in tables.items():
        lines += [f"## {name}.{fmt} ({len(frame)} rows)", "", "| column | type | meaning |",
                  "| --- | --- | --- |"]
        lines += [f"| {col} | {kind} | {text} |" for col, (kind, text) in
                  COLUMN_DOCS[name].items()]
        lines.append("")
    return "\n".join(lines)
