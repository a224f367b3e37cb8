"""The lungs of a chest CT: segmentation (:mod:`.segmentation`) and quantitative CT
(:mod:`.qct`), pure functions of a HU volume and its spacing.

May import: the ground floor (errors) and numpy / scipy. Never the store or a pipeline.
"""

from __future__ import annotations

from sscmort_core.lungs.qct import (  # noqa: F401
    QCT_METHOD_VERSION,
    QCTMetrics,
    qct_method_version,
    qct_metrics,
)
from sscmort_core.lungs.segmentation import (  # noqa: F401
    LUNG_MASK_VERSION,
    LungMask,
    lung_mask_version,
    segment_lungs,
)
