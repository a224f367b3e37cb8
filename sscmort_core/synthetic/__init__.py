"""Synthetic SSc-ILD cohort (tables) and chest CT phantoms (volumes, DICOM, NIfTI).

Everything made here is fictitious and is marked synthetic wherever it is stored or shown.
The cohort generator is cheap (no volumes); a scan's volume is regenerated on demand from
its row by :func:`phantom_for_scan`.

May import: numpy, scipy, pydicom (DICOM writing). It knows nothing of the store: the
pipeline writes what it makes.
"""

from sscmort_core.synthetic.cohort import (
    ANTIBODIES,
    DEFAULT_PARAMETERS,
    EXTENSIVE_EXTENT_PCT,
    CohortParameters,
    SyntheticCohort,
    generate_cohort,
)
from sscmort_core.synthetic.dicom import (
    DEFAULT_PHI,
    write_dicom_series,
    write_localizer,
    write_nifti,
)
from sscmort_core.synthetic.phantom import (
    CONSOLIDATION,
    EMPHYSEMA,
    GGO,
    HONEYCOMBING,
    NORMAL,
    PATTERN_NAMES,
    RETICULATION,
    Phantom,
    default_shape,
    make_phantom,
    phantom_for_scan,
)
from sscmort_core.synthetic.protocol import KERNELS, SCANNERS, SYNTHETIC_SERIES_DESCRIPTION

__all__ = [
    "ANTIBODIES", "CONSOLIDATION", "DEFAULT_PARAMETERS", "DEFAULT_PHI", "EMPHYSEMA",
    "EXTENSIVE_EXTENT_PCT", "GGO", "HONEYCOMBING", "KERNELS", "NORMAL", "PATTERN_NAMES",
    "RETICULATION", "SCANNERS", "SYNTHETIC_SERIES_DESCRIPTION",
    "CohortParameters", "Phantom", "SyntheticCohort", "default_shape", "generate_cohort",
    "make_phantom", "phantom_for_scan", "write_dicom_series", "write_localizer", "write_nifti",
]
