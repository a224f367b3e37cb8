"""The store's schema: ordered migrations and the columns each bulk insert writes.

Never edit a released migration; append a new one (index i, 1-based, brings the schema from
version i-1 to version i).
"""

from __future__ import annotations

# Ordered migrations: index i (1-based) brings the schema from version i-1 to version i.
# Never edit a released migration; append a new one.
MIGRATIONS: tuple[str, ...] = (
    # --- 1: the initial schema --------------------------------------------------------------
    """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    CREATE TABLE patients (
        patient_id VARCHAR PRIMARY KEY,
        sex VARCHAR, birth_year INTEGER, subtype VARCHAR, antibody VARCHAR,
        death_date DATE, last_followup_date DATE,
        source VARCHAR NOT NULL, synthetic BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE scans (
        scan_id VARCHAR PRIMARY KEY,
        patient_id VARCHAR NOT NULL REFERENCES patients (patient_id),
        scan_date DATE NOT NULL,
        scanner VARCHAR, kernel VARCHAR, series_description VARCHAR,
        slice_thickness_mm DOUBLE,
        spacing_z_mm DOUBLE, spacing_y_mm DOUBLE, spacing_x_mm DOUBLE,
        shape_z INTEGER, shape_y INTEGER, shape_x INTEGER,
        volume_path VARCHAR, volume_sha256 VARCHAR, voxel_sha256 VARCHAR,
        volume_seed BIGINT, noise_hu DOUBLE,
        source VARCHAR NOT NULL, synthetic BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE INDEX scans_patient ON scans (patient_id);
    CREATE TABLE synthetic_truth (
        scan_id VARCHAR PRIMARY KEY REFERENCES scans (scan_id),
        true_ild_extent_pct DOUBLE NOT NULL,
        true_risk_1y DOUBLE NOT NULL, true_risk_3y DOUBLE NOT NULL, true_risk_5y DOUBLE NOT NULL,
        progressor BOOLEAN
    );
    CREATE TABLE clinical (
        patient_id VARCHAR NOT NULL REFERENCES patients (patient_id),
        date DATE NOT NULL,
        fvc_pct_pred DOUBLE, dlco_pct_pred DOUBLE,
        source VARCHAR NOT NULL, synthetic BOOLEAN NOT NULL
    );
    CREATE INDEX clinical_patient ON clinical (patient_id);
    CREATE TABLE qct (
        scan_id VARCHAR PRIMARY KEY REFERENCES scans (scan_id),
        lung_volume_ml DOUBLE, mean_lung_density_hu DOUBLE, skewness DOUBLE, kurtosis DOUBLE,
        haa_pct DOUBLE, ild_extent_pct DOUBLE, left_volume_ml DOUBLE, right_volume_ml DOUBLE,
        method_version VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE radiomics_features (
        scan_id VARCHAR NOT NULL REFERENCES scans (scan_id),
        param_hash VARCHAR NOT NULL, feature VARCHAR NOT NULL, value DOUBLE,
        pyradiomics_version VARCHAR NOT NULL,
        PRIMARY KEY (scan_id, param_hash, feature)
    );
    CREATE TABLE radiomics_failures (
        scan_id VARCHAR NOT NULL, param_hash VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (scan_id, param_hash)
    );
    CREATE TABLE models (
        model_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL, backbone VARCHAR, version VARCHAR NOT NULL,
        config JSON, data_hash VARCHAR, weights_path VARCHAR, weights_sha256 VARCHAR,
        card JSON, synthetic BOOLEAN NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE predictions (
        model_id VARCHAR NOT NULL, scan_id VARCHAR NOT NULL, horizon_years INTEGER NOT NULL,
        risk DOUBLE NOT NULL, fold INTEGER, split VARCHAR NOT NULL,
        PRIMARY KEY (model_id, scan_id, horizon_years, split)
    );
    CREATE TABLE metrics (
        model_id VARCHAR NOT NULL, horizon_years INTEGER NOT NULL, metric VARCHAR NOT NULL,
        value DOUBLE, ci_low DOUBLE, ci_high DOUBLE,
        n_scans INTEGER, n_patients INTEGER, n_events INTEGER,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (model_id, horizon_years, metric)
    );
    CREATE TABLE explanations (
        model_id VARCHAR NOT NULL, scan_id VARCHAR NOT NULL, horizon_years INTEGER NOT NULL,
        kind VARCHAR NOT NULL, feature VARCHAR NOT NULL, value DOUBLE, feature_value DOUBLE,
        base_value DOUBLE,
        PRIMARY KEY (model_id, scan_id, horizon_years, kind, feature)
    );
    CREATE TABLE explanation_arrays (
        model_id VARCHAR NOT NULL, scan_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
        payload BLOB NOT NULL, meta JSON,
        PRIMARY KEY (model_id, scan_id, kind)
    );
    CREATE TABLE jobs (
        job_id VARCHAR PRIMARY KEY, kind VARCHAR NOT NULL, status VARCHAR NOT NULL,
        progress DOUBLE NOT NULL DEFAULT 0, message VARCHAR, params JSON, error VARCHAR,
        started_at TIMESTAMP NOT NULL DEFAULT current_timestamp, finished_at TIMESTAMP
    );
    """,
    # --- 2: why a metric could not be computed (e.g. too few events) -------------------------
    """
    ALTER TABLE metrics ADD COLUMN note VARCHAR;
    """,
    # --- 3: scans a batch prediction could not score, with the reason ------------------------
    """
    CREATE TABLE prediction_failures (
        model_id VARCHAR NOT NULL, scan_id VARCHAR NOT NULL, split VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (model_id, scan_id, split)
    );
    """,
    # --- 4: registry imports (issue 11): per-patient date-shift flag, the keys that let a
    # re-run skip what is in, failed scans, and one audit row per changed outcome field.
    # Registry ids, paths' identifying parts, real dates and old values are never stored.
    """
    CREATE TABLE registry_patients (
        patient_id VARCHAR PRIMARY KEY,
        source VARCHAR NOT NULL,
        dates_shifted BOOLEAN NOT NULL,
        first_imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
        last_imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE import_scan_keys (
        row_key VARCHAR PRIMARY KEY,
        patient_id VARCHAR NOT NULL,
        scan_id VARCHAR NOT NULL,
        imported_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE INDEX import_scan_keys_scan ON import_scan_keys (scan_id);
    CREATE TABLE import_failures (
        row_key VARCHAR PRIMARY KEY,
        patient_id VARCHAR NOT NULL,
        manifest_file VARCHAR NOT NULL, manifest_row INTEGER NOT NULL,
        path VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        failed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE outcome_changes (
        patient_id VARCHAR NOT NULL, field VARCHAR NOT NULL, change VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        changed_at TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE INDEX outcome_changes_patient ON outcome_changes (patient_id);
    """,
    # --- 5: the audit trail (issue 17): append-only, who did or saw what, and the outcome ----
    """
    CREATE SEQUENCE audit_seq START 1;
    CREATE TABLE audit (
        audit_id BIGINT PRIMARY KEY DEFAULT nextval('audit_seq'),
        at_utc TIMESTAMP NOT NULL,
        who VARCHAR NOT NULL, role VARCHAR NOT NULL, action VARCHAR NOT NULL,
        object_ids VARCHAR NOT NULL, outcome VARCHAR NOT NULL, detail VARCHAR,
        channel VARCHAR NOT NULL, session VARCHAR
    );
    """,
    # --- 6: lungs by zone and pattern, mask QC and its review (issue 12) ---------------------
    """
    ALTER TABLE synthetic_truth ADD COLUMN emphysema_pct DOUBLE;
    CREATE TABLE qct_regions (
        scan_id VARCHAR NOT NULL REFERENCES scans (scan_id),
        lung VARCHAR NOT NULL, zone VARCHAR NOT NULL,
        volume_ml DOUBLE, mean_lung_density_hu DOUBLE, laa950_pct DOUBLE, haa_pct DOUBLE,
        p15_hu DOUBLE, ild_extent_pct DOUBLE,
        method_version VARCHAR NOT NULL,
        PRIMARY KEY (scan_id, lung, zone)
    );
    CREATE TABLE qct_patterns (
        scan_id VARCHAR PRIMARY KEY REFERENCES scans (scan_id),
        normal_pct DOUBLE, emphysema_pct DOUBLE, ground_glass_pct DOUBLE,
        reticulation_pct DOUBLE, honeycombing_pct DOUBLE, consolidation_pct DOUBLE,
        method_version VARCHAR NOT NULL
    );
    CREATE TABLE mask_qc (
        scan_id VARCHAR NOT NULL REFERENCES scans (scan_id),
        check_name VARCHAR NOT NULL, passed BOOLEAN NOT NULL, value DOUBLE,
        expected VARCHAR, message VARCHAR,
        method_version VARCHAR NOT NULL,
        PRIMARY KEY (scan_id, check_name)
    );
    CREATE TABLE mask_qc_reviews (
        scan_id VARCHAR NOT NULL REFERENCES scans (scan_id),
        method_version VARCHAR NOT NULL,
        accepted_by VARCHAR NOT NULL, accepted_at TIMESTAMP NOT NULL, note VARCHAR,
        PRIMARY KEY (scan_id, method_version)
    );
    """,
    # --- 7: patient history (smoking, PH, cardiac) and the imaging-only oracle (issue 16) ----
    """
    ALTER TABLE patients ADD COLUMN ever_smoker BOOLEAN;
    ALTER TABLE patients ADD COLUMN pulmonary_hypertension BOOLEAN;
    ALTER TABLE patients ADD COLUMN cardiac_involvement BOOLEAN;
    ALTER TABLE synthetic_truth ADD COLUMN imaging_risk_1y DOUBLE;
    ALTER TABLE synthetic_truth ADD COLUMN imaging_risk_3y DOUBLE;
    ALTER TABLE synthetic_truth ADD COLUMN imaging_risk_5y DOUBLE;
    """,
)


SCHEMA_VERSION = len(MIGRATIONS)


PATIENT_COLUMNS = ("patient_id", "sex", "birth_year", "subtype", "antibody", "death_date",
                   "last_followup_date", "source", "synthetic")


SCAN_COLUMNS = ("scan_id", "patient_id", "scan_date", "scanner", "kernel", "series_description",
                "slice_thickness_mm", "spacing_z_mm", "spacing_y_mm", "spacing_x_mm",
                "shape_z", "shape_y", "shape_x", "volume_path", "volume_sha256", "voxel_sha256",
                "volume_seed",
                "noise_hu", "source", "synthetic")


TRUTH_COLUMNS = ("scan_id", "true_ild_extent_pct", "true_risk_1y", "true_risk_3y",
                 "true_risk_5y", "progressor", "emphysema_pct", "imaging_risk_1y",
                 "imaging_risk_3y", "imaging_risk_5y")


# Patient history columns (nullable: a registry import may not know them); written by
# :func:`sscmort_core.store.set_patient_history` after the patients rows.
PATIENT_HISTORY_COLUMNS = ("ever_smoker", "pulmonary_hypertension", "cardiac_involvement")


CLINICAL_COLUMNS = ("patient_id", "date", "fvc_pct_pred", "dlco_pct_pred", "source",
                    "synthetic")


QCT_COLUMNS = ("scan_id", "lung_volume_ml", "mean_lung_density_hu", "skewness", "kurtosis",
               "haa_pct", "ild_extent_pct", "left_volume_ml", "right_volume_ml",
               "method_version")


PREDICTION_COLUMNS = ("model_id", "scan_id", "horizon_years", "risk", "fold", "split")


METRIC_COLUMNS = ("model_id", "horizon_years", "metric", "value", "ci_low", "ci_high",
                  "n_scans", "n_patients", "n_events", "note")


EXPLANATION_COLUMNS = ("model_id", "scan_id", "horizon_years", "kind", "feature", "value",
                       "feature_value", "base_value")


RADIOMICS_COLUMNS = ("scan_id", "param_hash", "feature", "value", "pyradiomics_version")


REGISTRY_PATIENT_COLUMNS = ("patient_id", "source", "dates_shifted")


IMPORT_KEY_COLUMNS = ("row_key", "patient_id", "scan_id")


IMPORT_FAILURE_COLUMNS = ("row_key", "patient_id", "manifest_file", "manifest_row", "path",
                          "reason")


OUTCOME_CHANGE_COLUMNS = ("patient_id", "field", "change", "source")
REGION_COLUMNS = ("scan_id", "lung", "zone", "volume_ml", "mean_lung_density_hu", "laa950_pct",
                  "haa_pct", "p15_hu", "ild_extent_pct", "method_version")


PATTERN_COLUMNS = ("scan_id", "normal_pct", "emphysema_pct", "ground_glass_pct",
                   "reticulation_pct", "honeycombing_pct", "consolidation_pct", "method_version")


MASK_QC_COLUMNS = ("scan_id", "check_name", "passed", "value", "expected", "message",
                   "method_version")


_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": PATIENT_COLUMNS, "scans": SCAN_COLUMNS, "synthetic_truth": TRUTH_COLUMNS,
    "clinical": CLINICAL_COLUMNS, "qct": QCT_COLUMNS, "predictions": PREDICTION_COLUMNS,
    "metrics": METRIC_COLUMNS, "explanations": EXPLANATION_COLUMNS,
    "radiomics_features": RADIOMICS_COLUMNS,
    "registry_patients": REGISTRY_PATIENT_COLUMNS, "import_scan_keys": IMPORT_KEY_COLUMNS,
    "import_failures": IMPORT_FAILURE_COLUMNS, "outcome_changes": OUTCOME_CHANGE_COLUMNS,
    "qct_regions": REGION_COLUMNS, "qct_patterns": PATTERN_COLUMNS, "mask_qc": MASK_QC_COLUMNS,
}
