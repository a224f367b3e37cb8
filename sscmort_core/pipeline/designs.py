"""Validation designs beside the patient-grouped cross-validation: temporal and external.

A design splits the stored scans into a training part and a test part; every tabular and
reference model (QCT, radiomics, Goh, clinical, clinical + QCT) has its recipe refit on the
training part only (:func:`sscmort_core.tabular.holdout.fit_holdout`: inner CV and
recalibration inside it) and scores the test part. Deep models keep only the cross-validation
design (retraining a backbone per design is too expensive here); the synthetic oracle's true
risks are scored on the same test scans, as the ceiling.

* **temporal** (``before`` a date): training = scans dated before it; test = scans dated on or
  after it. By default the test part holds only *new* patients, those with no scan before the
  date: a patient scanned on both sides would otherwise have an earlier scan in training whose
  label (death within h years) is the same death that labels the later test scan. With
  ``all_patients`` the later scans of patients already seen are tested too (what a deployed
  model meets), and the run counts the patients shared by both parts. Training labels use the
  patients' whole follow-up, as a development cohort's do (outcomes of training scans may be
  observed after the date); no scan dated on or after the date is ever fitted on.
* **external** (``train_source`` -> ``test_source``): patients are split by ``patients.source``
  (a registry import sets it; the synthetic demo's is "synthetic"), so the parts never share a
  patient.

Labels are the one label rule's. A design is refused (DataError, one line) when a part is
empty, a source is missing, or a part has fewer than ``min_events`` deaths (or survivors) at a
horizon. Test-part risks are stored as predictions with ``split`` = :attr:`ValidationDesign.
split` (fold NULL); their metrics are computed on demand by the evaluation code with n,
events, patient-bootstrap CI and estimand (:func:`design_metrics`), not stored: the metrics
table holds the cross-validation metrics.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sscmort_core import store as st_store
from sscmort_core.errors import DataError, MetricInputError, StoreError
from sscmort_core.evaluation import PER_SCAN, auc_with_ci
from sscmort_core.labels import HORIZONS_YEARS, label_scans
from sscmort_core.pipeline.eval_data import (
    DEFAULT_MIN_EVENTS,
    ORACLE_KIND,
    check_model_ids,
    load_horizon_data,
    too_few_events,
)
from sscmort_core.pipeline.evaluate import HorizonMetrics, evaluate_horizon, metrics_json
from sscmort_core.tabular.holdout import HOLDOUT_VERSION, fit_holdout
from sscmort_core.tabular.model import TRAINABLE_KINDS
from sscmort_core.util.progress import ProgressFn, no_progress

CV_SPLIT = "oof"  # the cross-validation design: out-of-fold predictions
DESIGN_PREFIX = "design:"
TEMPORAL, EXTERNAL = "temporal", "external"
DESIGN_KINDS: tuple[str, ...] = (TEMPORAL, EXTERNAL)
DEEP_NOTE = "deep models have only the cross-validation design (not refit per design)"


@dataclass(frozen=True)
class ValidationDesign:
    """A temporal or external design; :attr:`split` names its stored predictions."""

    kind: str
    before: dt.date | None = None
    all_patients: bool = False
    train_source: str | None = None
    test_source: str | None = None

    def __post_init__(self) -> None:
        if self.kind == TEMPORAL and self.before is None:
            raise DataError("a temporal design needs a date (--before YYYY-MM-DD)")
        if self.kind == EXTERNAL:
            if not self.train_source or not self.test_source:
                raise DataError("an external design needs --train-source and --test-source")
            if self.train_source == self.test_source:
                raise DataError(f"train and test source are both {self.train_source!r}; an "
                                "external design tests on another source")
        if self.kind not in DESIGN_KINDS:
            raise DataError(f"unknown design {self.kind!r}; choose from {DESIGN_KINDS}")

    @property
    def split(self) -> str:
        """``design:temporal:YYYY-MM-DD:new|all@vN`` or ``design:external:TRAIN>TEST@vN``
        (N: :data:`~sscmort_core.tabular.holdout.HOLDOUT_VERSION`, so a changed refit never
        passes off older rows as its own; sources never hold ``:``, ``>`` or ``@``)."""
        if self.kind == TEMPORAL:
            assert self.before is not None
            body = (f"{TEMPORAL}:{self.before.isoformat()}:"
                    f"{'all' if self.all_patients else 'new'}")
        else:
            body = f"{EXTERNAL}:{self.train_source}>{self.test_source}"
        return f"{DESIGN_PREFIX}{body}@v{HOLDOUT_VERSION}"

    @classmethod
    def from_split(cls, split: str) -> ValidationDesign:
        """The design a stored split name stands for (ValueError if it names none, or was
        written by another version of the refit)."""
        body, _, version = split.rpartition("@v")
        if not body.startswith(DESIGN_PREFIX) or version != HOLDOUT_VERSION:
            raise ValueError(f"not a design split of this version: {split!r}")
        kind, _, rest = body[len(DESIGN_PREFIX):].partition(":")
        if kind == TEMPORAL:
            day, _, who = rest.partition(":")
            return cls(TEMPORAL, before=dt.date.fromisoformat(day), all_patients=who == "all")
        if kind == EXTERNAL:
            train, _, test = rest.partition(">")
            return cls(EXTERNAL, train_source=train, test_source=test)
        raise ValueError(f"not a design split: {split!r}")

    def describe(self) -> str:
        """One line for pages, reports and the CLI."""
        if self.kind == TEMPORAL:
            who = ("every patient's scans on or after it (patients seen before are tested "
                   "too)" if self.all_patients else "scans on or after it of patients first "
                   "scanned then (new patients only)")
            return f"temporal: trained on scans before {self.before}, tested on {who}"
        return (f"external: trained on source {self.train_source!r}, tested on source "
                f"{self.test_source!r}")


@dataclass(frozen=True)
class DesignSplit:
    """The scans of each part of a design and their label-rule counts per horizon."""

    design: ValidationDesign
    train_scan_ids: tuple[str, ...]
    test_scan_ids: tuple[str, ...]
    n_train_patients: int
    n_test_patients: int
    n_shared_patients: int  # patients with scans in both parts (temporal, all patients)
    n_left_out: int  # scans in neither part (temporal: later scans of patients seen before)
    counts: dict[str, dict[int, tuple[int, int]]]  # part -> horizon -> (labelled, deaths)

    def to_json(self) -> dict[str, Any]:
        return {"design": self.design.describe(), "split": self.design.split,
                "train_scans": len(self.train_scan_ids), "test_scans": len(self.test_scan_ids),
                "train_patients": self.n_train_patients, "test_patients": self.n_test_patients,
                "shared_patients": self.n_shared_patients, "scans_left_out": self.n_left_out,
                "labelled_and_events": {part: {str(h): {"labelled": n, "events": e}
                                               for h, (n, e) in by_h.items()}
                                        for part, by_h in self.counts.items()}}


def _parts(scans: pd.DataFrame, design: ValidationDesign
           ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) boolean masks over ``scans`` (scan_date as dates, patient ``source``)."""
    if design.kind == EXTERNAL:
        return (scans["source"] == design.train_source).to_numpy(), \
            (scans["source"] == design.test_source).to_numpy()
    day = pd.Timestamp(design.before)
    date = pd.to_datetime(scans["scan_date"])
    train = (date < day).to_numpy()
    test = ~train
    if not design.all_patients:
        seen = set(scans.loc[train, "patient_id"])
        test &= ~scans["patient_id"].isin(seen).to_numpy()
    return train, test


def design_split(store: st_store.Store, design: ValidationDesign, *,
                 min_events: int = DEFAULT_MIN_EVENTS, check: bool = True) -> DesignSplit:
    """The scans of each part of ``design``; with ``check``, DataError (one line) when a
    source is missing or a part has too few deaths or survivors at a horizon."""
    scans = st_store.scans_frame(store)
    sources = st_store.patients_frame(store).set_index("patient_id")["source"]
    scans = scans.assign(source=scans["patient_id"].map(sources))
    if check and design.kind == EXTERNAL:
        known = sorted(str(s) for s in sources.unique())
        for src in (design.train_source, design.test_source):
            if src not in known:
                raise DataError(f"no patient from source {src!r}; sources in the store: "
                                f"{', '.join(known) or 'none'}", store.path)
    train, test = _parts(scans, design)
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    for part, mask in (("train", train), ("test", test)):
        sub = scans.loc[mask].set_index("scan_id")
        counts[part] = {}
        for h in HORIZONS_YEARS:
            lab = label_scans(sub["scan_date"], sub["death_date"], sub["last_followup_date"], h)
            counts[part][h] = (int(lab.known.sum()), lab.n_positive)
            reason = too_few_events(*counts[part][h], h, min_events)
            if check and reason is not None:
                side = "training" if part == "train" else "test"
                raise DataError(f"{design.describe()}: {side} part: {reason}", store.path)
    pid_train = set(scans.loc[train, "patient_id"])
    pid_test = set(scans.loc[test, "patient_id"])
    return DesignSplit(
        design=design, train_scan_ids=tuple(scans.loc[train, "scan_id"].astype(str)),
        test_scan_ids=tuple(scans.loc[test, "scan_id"].astype(str)),
        n_train_patients=len(pid_train), n_test_patients=len(pid_test),
        n_shared_patients=len(pid_train & pid_test),
        n_left_out=int((~train & ~test).sum()), counts=counts)


@dataclass(frozen=True)
class DesignRun:
    """What :func:`run_design` fitted, stored and computed."""

    split: DesignSplit
    model_ids: tuple[str, ...]  # models scored on the test part
    skipped: tuple[tuple[str, str], ...]  # (model_id, why) left out
    results: tuple[HorizonMetrics, ...]
    rows_written: int
    n_boot: int
    seed: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {**self.split.to_json(), "models": metrics_json(self.model_ids, self.results),
                "skipped": [{"model_id": m, "why": w} for m, w in self.skipped],
                "predictions_written": self.rows_written, "n_boot": self.n_boot,
                "seed": self.seed, "holdout_version": HOLDOUT_VERSION,
                "metrics_stored": False, "seconds": round(self.seconds, 2)}


def design_models(store: st_store.Store, model_ids: Sequence[str] | None
                  ) -> tuple[list[str], list[tuple[str, str]]]:
    """(models a design refits or scores, (model, why) left out). ``model_ids`` None: every
    registered tabular / reference model and the oracle; a model asked for by id that the
    designs cannot refit (deep, ensemble) is a DataError."""
    kinds = st_store.models_frame(store).set_index("model_id")["kind"].to_dict()
    ids = list(kinds) if model_ids is None else list(check_model_ids(store, model_ids))
    usable = [m for m in ids if kinds[m] in TRAINABLE_KINDS or kinds[m] == ORACLE_KIND]
    skipped = [(m, f"{kinds[m]} model: {DEEP_NOTE}") for m in ids if m not in usable]
    if model_ids is not None and skipped:
        raise DataError(f"model {skipped[0][0]} is a {kinds[skipped[0][0]]} model; "
                        f"{DEEP_NOTE}", store.path)
    if not usable:
        raise DataError("no tabular, reference or oracle model is registered; train one "
                        "first (`sscmort train --kind qct`)", store.path)
    return usable, skipped


def _test_rows(store: st_store.Store, model_id: str, kind: str, split: DesignSplit,
               ) -> pd.DataFrame:
    """Prediction rows of the test part from one model (the oracle: its true risks)."""
    if kind == ORACLE_KIND:
        oof = st_store.predictions_frame(store, [model_id])
        rows = oof.loc[oof["scan_id"].isin(set(split.test_scan_ids))].copy()
    else:
        held = fit_holdout(store, model_id, split.train_scan_ids, split.test_scan_ids)
        n, k = held.risks.shape
        rows = pd.DataFrame({
            "model_id": model_id,
            "scan_id": np.repeat(np.asarray(held.scan_ids, dtype=object), k),
            "horizon_years": np.tile(np.asarray(HORIZONS_YEARS), n),
            "risk": held.risks.reshape(-1)})  # (n * 3,) scan-major
    return rows.assign(fold=pd.array([None] * len(rows), dtype="Int64"),
                       split=split.design.split)


def run_design(store: st_store.Store, design: ValidationDesign, *,
               model_ids: Sequence[str] | None = None, n_boot: int = 2000, seed: int = 0,
               min_events: int = DEFAULT_MIN_EVENTS,
               progress: ProgressFn = no_progress) -> DesignRun:
    """Refit every model of :func:`design_models` on ``design``'s training part, store its
    test-part risks (one transaction, replacing the design's earlier rows) and compute every
    metric on them (not stored). Raises DataError (refused design or models), StoreError
    (read-only store); nothing is written then."""
    t0 = time.perf_counter()
    if store.read_only:
        raise StoreError("opened read-only; a validation design writes predictions",
                         store.path)
    split = design_split(store, design, min_events=min_events)
    ids, skipped = design_models(store, model_ids)
    kinds = st_store.models_frame(store).set_index("model_id")["kind"].to_dict()
    stage = f"design {design.kind}"
    progress(stage, 0, len(ids))
    frames = []
    for i, m in enumerate(ids, 1):
        frames.append(_test_rows(store, m, kinds[m], split))
        progress(stage, i, len(ids))
    with store.transaction() as cur:
        for m in ids:
            st_store.delete_split_predictions(cur, m, design.split)
        written = sum(st_store.insert_frame(cur, "predictions", f) for f in frames)
    results = design_metrics(store, ids, design.split, n_boot=n_boot, seed=seed,
                             min_events=min_events)
    return DesignRun(split=split, model_ids=tuple(ids), skipped=tuple(skipped),
                     results=tuple(results), rows_written=written, n_boot=n_boot, seed=seed,
                     seconds=time.perf_counter() - t0)


def design_metrics(store: st_store.Store, model_ids: Sequence[str], split: str, *,
                   estimand: str = PER_SCAN, n_boot: int = 2000, seed: int = 0,
                   min_events: int = DEFAULT_MIN_EVENTS,
                   horizons: Sequence[int] = HORIZONS_YEARS) -> list[HorizonMetrics]:
    """Every metric of ``model_ids`` on their predictions of ``split`` (a design's test part),
    by the evaluation code the cross-validation metrics use: label rule, n, events,
    patient-bootstrap CI, ``estimand``. Models without predictions of ``split`` get rows whose
    note says so."""
    ids = check_model_ids(store, model_ids)
    data = load_horizon_data(store, ids, tuple(horizons), split=split)
    return [evaluate_horizon(data[(m, h)], n_boot=n_boot, seed=seed, min_events=min_events,
                             estimand=estimand) for m in ids for h in horizons]


def stored_designs(store: st_store.Store, model_ids: Sequence[str] | None = None
                   ) -> list[ValidationDesign]:
    """The designs with stored test-part predictions (of any of ``model_ids``), by split."""
    splits = st_store.prediction_splits(store, model_ids, prefix=DESIGN_PREFIX)
    out = []
    for s in dict.fromkeys(splits["split"]):
        try:
            out.append(ValidationDesign.from_split(str(s)))
        except (ValueError, DataError):  # not a split this version writes
            continue
    return out


def design_auc_rows(store: st_store.Store, model_ids: Sequence[str], split: str, *,
                    n_boot: int = 2000, seed: int = 0, min_events: int = DEFAULT_MIN_EVENTS,
                    horizons: Sequence[int] = HORIZONS_YEARS) -> pd.DataFrame:
    """The ``auc`` rows alone of :func:`design_metrics` (same value and CI for the same
    ``n_boot`` and ``seed``), as metric rows (``store.METRIC_COLUMNS``): the AUC summary
    chart's input without bootstrapping every other metric."""
    ids = check_model_ids(store, model_ids)
    data = load_horizon_data(store, ids, tuple(horizons), split=split)
    rows = []
    for m in ids:
        for h in horizons:
            d = data[(m, h)]
            lab = d.labelled
            row = {"model_id": m, "horizon_years": h, "metric": "auc", "value": None,
                   "ci_low": None, "ci_high": None, "n_scans": d.n_labelled,
                   "n_patients": d.n_labelled_patients, "n_events": d.n_events, "note": None}
            row["note"] = too_few_events(d.n_labelled, d.n_events, h, min_events)
            if row["note"] is None:
                try:
                    a = auc_with_ci(d.y[lab].astype(np.int8), d.risk[lab], d.patient_id[lab],
                                    n_boot=n_boot, seed=seed)
                    row |= {"value": a.auc, "ci_low": a.ci_low, "ci_high": a.ci_high}
                except MetricInputError as err:
                    row["note"] = str(err)
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(st_store.METRIC_COLUMNS))
    for col in ("value", "ci_low", "ci_high"):
        frame[col] = frame[col].astype(float)
    return frame
