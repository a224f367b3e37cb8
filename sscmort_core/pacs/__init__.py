"""PACS I/O over DICOMweb (../shared/DESIGN.md "Real cohorts"): QIDO-RS search, WADO-RS
retrieve streamed to a folder, STOW-RS store, through dicomweb-client
(:mod:`.client`), and the credentials and TLS settings it uses (:mod:`.credentials`).

Every failure is a named :class:`~sscmort_core.errors.PacsError` naming the PACS address
(never a credential): nothing answers, a timeout, 401 / 403 / 404, a truncated multipart body.
Credentials come from the environment or ``.streamlit/secrets.toml`` and are never logged,
shown or stored; TLS certificates are always verified (a private CA bundle may be named).

This unit moves DICOM objects; it reads no volume and writes no store: the pipeline chains
a fetch into the ingest (:mod:`sscmort_core.pipeline.pacs`).

May import: errors and the standard library, requests, dicomweb-client, pydicom. Never
imaging, the store or a stage.
"""

from sscmort_core.pacs.client import (
    DEFAULT_TIMEOUT_S,
    PacsClient,
    SeriesInfo,
    StoreResult,
    StudyInfo,
    connect,
    dicom_date_range,
    fetch_series,
)
from sscmort_core.pacs.credentials import PacsCredentials, default_url, load_credentials

__all__ = ["DEFAULT_TIMEOUT_S", "PacsClient", "PacsCredentials", "SeriesInfo", "StoreResult",
           "StudyInfo", "connect", "default_url", "dicom_date_range", "fetch_series",
           "load_credentials"]
