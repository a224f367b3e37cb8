"""Imaging stage: read, validate and de-identify a chest CT (DICOM, NIfTI, NRRD, MetaImage).

Public API (the pipeline wires these):

* :func:`read_volume` / :func:`read_dicom_files` -> :class:`ReadResult`
  (:class:`Volume`, :class:`IngestReport`, pseudonymous patient id)
* :func:`extract_zip_safely`, :func:`pseudonymous_id`, :data:`IDENTIFYING_KEYWORDS`
* :func:`save_stored_volume` / :func:`load_stored_volume` for the store's de-identified copy,
  :func:`save_volume` for files a user asks for
* :func:`to_sitk_image` for SimpleITK-based stages (radiomics)

May import: errors, pydicom, SimpleITK, numpy. Identifying values never leave this package.
"""

from sscmort_core.imaging.archive import extract_zip_safely
from sscmort_core.imaging.deid import IDENTIFYING_KEYWORDS, pseudonymous_id
from sscmort_core.imaging.dicom import SeriesSelector
from sscmort_core.imaging.reader import (
    DEFAULT_MAX_BYTES,
    read_dicom_files,
    read_grid_image,
    read_volume,
)
from sscmort_core.imaging.volume import (
    IngestReport,
    ReadResult,
    SeriesSummary,
    SkippedFile,
    Volume,
    load_stored_volume,
    save_stored_volume,
    save_volume,
    to_sitk_image,
)

__all__ = [
    "DEFAULT_MAX_BYTES", "IDENTIFYING_KEYWORDS", "IngestReport", "ReadResult", "SeriesSelector",
    "SeriesSummary", "SkippedFile", "Volume", "extract_zip_safely", "load_stored_volume",
    "pseudonymous_id", "read_dicom_files", "read_grid_image", "read_volume", "save_stored_volume",
    "save_volume", "to_sitk_image",
]
