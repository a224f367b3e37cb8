"""The lungs of a chest CT, pure functions of a HU volume and its spacing: segmentation
(:mod:`.segmentation`, with the chest wall's geometry in :mod:`.costal`), quantitative CT
(:mod:`.qct`), the ILD pattern map (:mod:`.patterns`, its fitted model in ``params/``),
QCT by zone (:mod:`.regions`), mask quality control (:mod:`.qc`), and all of them at once
(:mod:`.measure`).

May import: the ground floor (errors) and numpy / scipy. Never the store or a pipeline.
"""

from __future__ import annotations

from sscmort_core.lungs.measure import LungMeasures, measure_lungs  # noqa: F401
from sscmort_core.lungs.patterns import (  # noqa: F401
    PATTERNS,
    PatternMap,
    classify_patterns,
    pattern_model_version,
)
from sscmort_core.lungs.qc import CHECKS, MaskQC, QCCheck, mask_qc  # noqa: F401
from sscmort_core.lungs.qct import (  # noqa: F401
    QCT_METHOD_VERSION,
    QCTMetrics,
    qct_method_version,
    qct_metrics,
)
from sscmort_core.lungs.regions import LUNGS, ZONES, RegionalQCT, regional_qct  # noqa: F401
from sscmort_core.lungs.segmentation import (  # noqa: F401
    LUNG_MASK_VERSION,
    LungMask,
    lung_mask_version,
    segment_lungs,
)
