"""The DuckDB cohort store: schema and migrations (:mod:`.schema`), opening and locking
(:mod:`.db`), then every query, by area: the cohort (:mod:`.cohort`), derived features
(:mod:`.features`), lung zones, patterns and mask QC (:mod:`.lungs`), models and their
outputs (:mod:`.models`), background jobs (:mod:`.jobs`), registry imports and table files
(:mod:`.imports`), the append-only audit trail (:mod:`.audit`).

All SQL of sscmort lives in this package, with bound parameters. Callers use the names
re-exported here (``from sscmort_core import store as st_store``).

May import: errors and the standard library, duckdb, numpy, pandas (inside the functions that
need it: opening a store and writing one scan's rows load no pandas). Never a stage.
"""

from __future__ import annotations

from sscmort_core.store.audit import (  # noqa: F401
    AUDIT_COLUMNS,
    AuditEvent,
    AuditFilter,
    archive_journal,
    audit_choices,
    audit_frame,
    journal_path,
    opaque_id,
    read_journal,
    record_audit,
)
from sscmort_core.store.cohort import (  # noqa: F401
    GEOMETRY_COLUMNS,
    CohortSummary,
    clinical_frame,
    cohort_summary,
    extend_followup,
    is_synthetic,
    outcome_fingerprint,
    patient_row,
    patients_frame,
    scan_id_list,
    scan_row,
    scan_rows,
    scan_with_voxels,
    scans_frame,
    set_patient_history,
    set_scan_geometry,
    table_counts,
    truth_frame,
)
from sscmort_core.store.db import (  # noqa: F401
    DEFAULT_STORE_PATH,
    Store,
    get_meta,
    in_clause,
    insert_frame,
    insert_rows,
    migrate,
    one_row,
    open_store,
    plain_row,
    schema_version,
    set_meta,
    to_python,
)
from sscmort_core.store.features import (  # noqa: F401
    clear_radiomics_failures,
    qct_frame,
    radiomics_extracted_scan_ids,
    radiomics_failures_frame,
    radiomics_feature_by_scan,
    radiomics_feature_count,
    radiomics_long_frame,
    radiomics_param_sets,
    record_radiomics_failures,
    scans_missing_qct,
)
from sscmort_core.store.imports import (  # noqa: F401
    TABLE_FORMATS,
    clear_import_failures,
    clinical_of,
    failed_row_keys,
    import_failures_frame,
    import_keys_frame,
    insert_import_keys,
    outcome_changes_frame,
    patient_dates_shifted,
    patient_scans,
    patients_by_ids,
    read_table_file,
    record_import_failures,
    record_outcome_changes,
    referenced_volume_paths,
    registry_flags,
    registry_patients_frame,
    replace_clinical,
    scans_with_voxels,
    source_counts,
    update_patient,
    update_scan_date,
    upsert_registry_patients,
    write_table_file,
)
from sscmort_core.store.jobs import (  # noqa: F401
    finish_job,
    insert_job,
    job_row,
    jobs_frame,
    running_job_ids,
    update_job_progress,
)
from sscmort_core.store.lungs import (  # noqa: F401
    MEASURE_TABLES,
    accept_mask,
    flagged_scans_frame,
    mask_qc_frame,
    patterns_frame,
    qct_features_frame,
    qct_features_row,
    qct_long_frame,
    regions_frame,
    replace_lung_measures,
    scan_outcome_columns,
    training_excluded_scan_ids,
)
from sscmort_core.store.models import (  # noqa: F401
    auc_rows_with_models,
    clear_prediction_failures,
    deep_models_frame,
    delete_metrics,
    delete_model_outputs,
    delete_predictions,
    delete_split_predictions,
    explained_scan_ids,
    explanation_array,
    explanations_frame,
    metrics_for_models,
    metrics_frame,
    model_row,
    models_frame,
    oof_prediction_summary,
    oof_scan_ids,
    patient_predictions_frame,
    predicted_scan_ids,
    prediction_failures_frame,
    prediction_splits,
    predictions_frame,
    put_explanation_array,
    record_prediction_failures,
    upsert_model,
)
from sscmort_core.store.schema import (  # noqa: F401
    CLINICAL_COLUMNS,
    EXPLANATION_COLUMNS,
    IMPORT_FAILURE_COLUMNS,
    IMPORT_KEY_COLUMNS,
    MASK_QC_COLUMNS,
    METRIC_COLUMNS,
    MIGRATIONS,
    OUTCOME_CHANGE_COLUMNS,
    PATIENT_COLUMNS,
    PATIENT_HISTORY_COLUMNS,
    PATTERN_COLUMNS,
    PREDICTION_COLUMNS,
    QCT_COLUMNS,
    RADIOMICS_COLUMNS,
    REGION_COLUMNS,
    REGISTRY_PATIENT_COLUMNS,
    SCAN_COLUMNS,
    SCHEMA_VERSION,
    TRUTH_COLUMNS,
)
