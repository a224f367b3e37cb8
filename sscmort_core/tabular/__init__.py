"""Radiomics and QCT models: the models themselves (:mod:`.model`, pure), their data and files
(:mod:`.io`), training with patient-grouped cross-validation (:mod:`.train`), a recipe refit
on a validation design's training part (:mod:`.holdout`) and SHAP explanations
(:mod:`.explain`).

May import: the ground floor, util, store, radiomics.features, lungs.

:class:`TabularModel` and :class:`HorizonModel` are pickled (joblib) under this package's name,
``sscmort_core.tabular``, as they were before the package was split: model files written by
any sscmort version load.
"""

from __future__ import annotations

from sscmort_core.tabular.model import HorizonModel, TabularModel  # noqa: F401  (pickle path)
