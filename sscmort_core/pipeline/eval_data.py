"""Inputs of an evaluation: a model's out-of-fold predictions joined with the label rule.

No metric is computed here; see :mod:`sscmort_core.pipeline.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sscmort_core import store as st_store
from sscmort_core.errors import NoPredictionsError, UnknownModelError
from sscmort_core.labels import HORIZONS_YEARS, label_scans, time_to_event_years

DEFAULT_MIN_EVENTS = 5
ORACLE_KIND = "oracle"


@dataclass(frozen=True, eq=False)
class HorizonData:
    """One model's OOF predictions at one horizon with outcomes; arrays of shape (n,).

    ``y`` is 1 / 0 / NaN (censored at this horizon by the label rule); ``time_years`` and
    ``event`` are follow-up from the scan to death or last follow-up.
    """

    model_id: str
    horizon_years: int
    scan_id: NDArray[np.object_]
    patient_id: NDArray[np.object_]
    risk: NDArray[np.float64]
    y: NDArray[np.float64]
    time_years: NDArray[np.float64]
    event: NDArray[np.bool_]

    @property
    def labelled(self) -> NDArray[np.bool_]:
        return ~np.isnan(self.y)

    @property
    def n_labelled(self) -> int:
        return int(self.labelled.sum())

    @property
    def n_events(self) -> int:
        return int(np.nansum(self.y))

    @property
    def n_labelled_patients(self) -> int:
        return int(pd.unique(self.patient_id[self.labelled]).size)


def check_model_ids(store: st_store.Store, model_ids: Sequence[str] | None) -> tuple[str, ...]:
    """The models to evaluate: those asked for (all must be registered), else every registered
    model with OOF predictions. Raises UnknownModelError / NoPredictionsError."""
    registered = st_store.models_frame(store)["model_id"].tolist()
    if model_ids is None:
        with_oof = set(st_store.oof_prediction_summary(store)["model_id"])
        chosen = tuple(m for m in registered if m in with_oof)
        if not chosen:
            raise NoPredictionsError("no registered model has out-of-fold predictions to "
                                     "evaluate; train a model first", store.path)
        return chosen
    unknown = [m for m in model_ids if m not in set(registered)]
    if unknown:
        known = ", ".join(registered) or "none"
        raise UnknownModelError(f"unknown model id(s) {', '.join(unknown)}; registered: {known}",
                                store.path)
    return tuple(dict.fromkeys(model_ids))  # unique, in the order asked


def load_horizon_data(store: st_store.Store, model_ids: Sequence[str],
                      horizons: Iterable[int] = HORIZONS_YEARS, *, split: str = "oof"
                      ) -> dict[tuple[str, int], HorizonData]:
    """OOF predictions of ``model_ids`` labelled at each horizon, keyed by (model_id, horizon)
    (``split`` another stored split, e.g. the tabular models' risks before recalibration).

    Only scans some model predicted are labelled, so an unrelated scan with bad dates cannot
    block an evaluation; predictions of scans missing from the scans table are ignored.
    """
    preds = st_store.predictions_frame(store, list(model_ids), split=split)
    scans = st_store.scans_frame(store)
    scans = scans.loc[scans["scan_id"].isin(set(preds["scan_id"]))].reset_index(drop=True)
    horizons = tuple(horizons)
    outcome = scans[["scan_id", "patient_id"]].copy()
    dates = scans.set_index("scan_id")  # so a date error names the scan
    if len(scans):
        outcome["time_years"], outcome["event"] = time_to_event_years(
            dates["scan_date"], dates["death_date"], dates["last_followup_date"])
    else:
        outcome["time_years"], outcome["event"] = np.array([], float), np.array([], bool)
    for h in horizons:
        lab = label_scans(dates["scan_date"], dates["death_date"], dates["last_followup_date"], h)
        outcome[f"y_{h}"] = np.where(lab.known, lab.positive.astype(float), np.nan)
    joined = preds.merge(outcome, on="scan_id", how="inner")
    out: dict[tuple[str, int], HorizonData] = {}
    for m in model_ids:
        for h in horizons:
            part = joined.loc[(joined["model_id"] == m) & (joined["horizon_years"] == h)]
            out[(m, h)] = HorizonData(
                model_id=m, horizon_years=h,
                scan_id=part["scan_id"].to_numpy(dtype=object),
                patient_id=part["patient_id"].to_numpy(dtype=object),
                risk=part["risk"].to_numpy(dtype=float),
                y=part[f"y_{h}"].to_numpy(dtype=float),
                time_years=part["time_years"].to_numpy(dtype=float),
                event=part["event"].to_numpy(dtype=bool))
    return out


def too_few_events(n_labelled: int, n_events: int, horizon_years: int,
                   min_events: int = DEFAULT_MIN_EVENTS) -> str | None:
    """Why a horizon cannot be evaluated (too few positives or negatives), or None."""
    if n_labelled == 0:
        return (f"no scan with a known outcome at {horizon_years} y "
                "(none predicted, or all censored)")
    if n_events < min_events:
        return (f"too few events: {n_events} death(s) within {horizon_years} y among "
                f"{n_labelled} labelled scans (at least {min_events} needed)")
    if n_labelled - n_events < min_events:
        return (f"too few survivors: {n_labelled - n_events} scan(s) known alive at "
                f"{horizon_years} y (at least {min_events} needed)")
    return None
