"""Is a model still trained on the store's outcomes? Each model card records the label
fingerprint of its training scans (:func:`sscmort_core.labels.label_fingerprint`: every
scan's label at each horizon and its follow-up in days); recomputed from the store now, a
different fingerprint means outcomes changed since training (a registry re-import updated a
death or a follow-up date, or a scan date) and the model is *stale* until retrained. The
Models & jobs and Model comparison pages show the mark.
"""

from __future__ import annotations

from dataclasses import dataclass

from sscmort_core import store as st_store
from sscmort_core.cards import ModelCard
from sscmort_core.errors import DataError, ModelError
from sscmort_core.labels import label_fingerprint

CURRENT, STALE, UNKNOWN = "current", "stale", "unknown"


@dataclass(frozen=True)
class ModelStaleness:
    """One model's status: ``current``, ``stale`` (with the reason) or ``unknown`` (no
    fingerprint recorded: a reference like the oracle, or a model trained before sscmort
    recorded them). ``n_new_scans``: scans in the store it was not trained on."""

    model_id: str
    status: str
    reason: str | None
    n_training_scans: int
    n_new_scans: int

    @property
    def stale(self) -> bool:
        return self.status == STALE

    @property
    def text(self) -> str:
        """What the pages show in the status column."""
        return self.status if self.reason is None else f"{self.status}: {self.reason}"


def model_staleness(store: st_store.Store) -> dict[str, ModelStaleness]:
    """The status of every registered model, by model id."""
    models = st_store.models_frame(store)
    scans = st_store.scans_frame(store).set_index("scan_id")
    trained = st_store.oof_scan_ids(store)
    out = {}
    for r in models.itertuples():
        ids = trained.get(str(r.model_id), [])
        n_new = int(len(scans.index.difference(ids)))
        try:
            card = ModelCard.from_store(r.card, model_id=str(r.model_id), kind=str(r.kind))
        except ModelError:
            card = None
        status, reason = _status(card, ids, scans)
        out[str(r.model_id)] = ModelStaleness(str(r.model_id), status, reason, len(ids), n_new)
    return out


def _status(card: ModelCard | None, ids: list[str], scans) -> tuple[str, str | None]:
    if card is None or card.label_fingerprint is None:
        return UNKNOWN, ("a reference, not trained on the labels" if card is not None
                         and card.kind == "oracle" else "no label fingerprint recorded")
    missing = [s for s in ids if s not in scans.index]
    if missing:
        return STALE, f"{len(missing)} of its {len(ids)} training scans are no longer stored"
    part = scans.loc[ids]
    try:
        now = label_fingerprint(ids, part["scan_date"], part["death_date"],
                                part["last_followup_date"])
    except DataError:
        return STALE, "the stored dates of its training scans contradict each other"
    if now != card.label_fingerprint:
        return STALE, "outcomes of its training scans changed since it was trained; retrain it"
    return CURRENT, None
