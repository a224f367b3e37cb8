"""Page data of the Model comparison page's validation-design switch: the designs the store
holds (cross-validation always, then every temporal / external design that was run with
``sscmort evaluate --design``) and which chosen models each one scores.

The designs themselves and their metrics are :mod:`sscmort_core.pipeline.designs`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sscmort_core import store as st_store
from sscmort_core.pipeline.designs import (
    CV_SPLIT,
    DEEP_NOTE,
    DESIGN_PREFIX,
    ValidationDesign,
    stored_designs,
)

CV_LABEL = "Cross-validation (patient-grouped, out-of-fold)"
CV_DESCRIPTION = ("patient-grouped k-fold cross-validation: every scan scored by the fold "
                  "models that never saw its patient (every model kind)")


@dataclass(frozen=True)
class DesignChoice:
    """One option of the switch: ``split`` is the predictions' split the numbers come from."""

    split: str
    label: str
    description: str


def design_choices(store: st_store.Store) -> list[DesignChoice]:
    """Cross-validation first, then the stored designs in split order."""
    out = [DesignChoice(CV_SPLIT, CV_LABEL, CV_DESCRIPTION)]
    for d in stored_designs(store):
        label = (f"Temporal: before {d.before}" + (", all patients" if d.all_patients
                                                    else ", new patients")
                 if d.kind == "temporal"
                 else f"External: {d.train_source} -> {d.test_source}")
        out.append(DesignChoice(d.split, label, d.describe() + "; refit on the training part "
                                "only, scored on the test part; " + DEEP_NOTE))
    return out


def design_description(split: str) -> str:
    """What the numbers under ``split`` come from, one sentence for the page."""
    if split == CV_SPLIT or not split.startswith(DESIGN_PREFIX):
        return CV_DESCRIPTION
    return ValidationDesign.from_split(split).describe()


def scored_models(store: st_store.Store, model_ids: Sequence[str], split: str
                  ) -> tuple[list[str], list[str]]:
    """(models of ``model_ids`` with predictions of ``split``, the others), in the order given;
    under cross-validation every model with OOF predictions counts."""
    if split == CV_SPLIT:
        have = set(st_store.oof_prediction_summary(store, list(model_ids))["model_id"])
    else:
        have = set(st_store.prediction_splits(store, list(model_ids), prefix=split)
                   .query("split == @split")["model_id"])
    return [m for m in model_ids if m in have], [m for m in model_ids if m not in have]
