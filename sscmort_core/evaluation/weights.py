"""Estimands and the patient structure of a set of scans.

Scans cluster in patients, and sicker patients are scanned more often. Every metric here can
be computed for one of two estimands:

* :data:`PER_SCAN`: every scan weighs 1 (the population of scans);
* :data:`PER_PATIENT`: each of a patient's ``k`` scans weighs ``1 / k``, so each patient
  counts once (the population of patients). ``k`` counts the scans the metric uses (for a
  binary metric at a horizon, the patient's labelled scans).

A patient-level (cluster) bootstrap resample is a vector of patient multiplicities ``c``
(shape (n_groups,), a patient drawn twice counts twice); scan ``i`` then weighs
``base_weight[i] * c[patient(i)]`` (:meth:`PatientClusters.scan_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sscmort_core.errors import MetricInputError
from sscmort_core.evaluation._checks import as_1d, check_groups

PER_SCAN = "per scan"
PER_PATIENT = "per patient (each patient weighted equally)"
ESTIMANDS: tuple[str, ...] = (PER_SCAN, PER_PATIENT)


def check_estimand(estimand: str) -> str:
    """``estimand`` if it is one of :data:`ESTIMANDS`, else :class:`MetricInputError`."""
    if estimand not in ESTIMANDS:
        raise MetricInputError(f"estimand must be one of {list(ESTIMANDS)}, got {estimand!r}")
    return estimand


@dataclass(frozen=True, eq=False)
class PatientClusters:
    """The patients of ``n`` scans, for weighting and for the patient bootstrap.

    ``codes`` (n,): each scan's patient as ``0 .. n_groups - 1`` (the sorted ids
    ``patient_ids``, shape (n_groups,)); ``base_weight`` (n,): 1 per scan, or ``1 / k`` for a
    patient's ``k`` scans under :data:`PER_PATIENT`. ``n_groups`` may exceed the number of
    patients holding a scan here (a subset keeps the cohort's patients, see :meth:`subset`).
    """

    codes: NDArray[np.intp]
    n_groups: int
    patient_ids: NDArray[np.object_]
    estimand: str
    base_weight: NDArray[np.float64]

    def __post_init__(self) -> None:
        for arr in (self.codes, self.patient_ids, self.base_weight):
            arr.setflags(write=False)

    @property
    def n_scans(self) -> int:
        return len(self.codes)

    @property
    def n_patients_present(self) -> int:
        """Patients with at least one scan here."""
        return int(np.unique(self.codes).size)

    def scan_weights(self, counts: NDArray[np.float64]) -> NDArray[np.float64]:
        """Scan weights (n, b) under patient multiplicities ``counts`` (n_groups, b)."""
        return self.base_weight[:, None] * counts[self.codes]

    def subset(self, mask: ArrayLike) -> PatientClusters:
        """The scans where ``mask`` (n,) is true, on the same patients and estimand (so one
        bootstrap resample of the cohort's patients applies to both); per-patient weights are
        recomputed from the scans kept."""
        keep = np.asarray(mask, dtype=bool)
        codes = self.codes[keep]
        return PatientClusters(codes=codes, n_groups=self.n_groups,
                               patient_ids=self.patient_ids, estimand=self.estimand,
                               base_weight=base_weights(codes, self.n_groups, self.estimand))


def patient_clusters(groups: ArrayLike, estimand: str = PER_SCAN) -> PatientClusters:
    """:class:`PatientClusters` of scans whose patient ids are ``groups`` (shape (n,))."""
    estimand = check_estimand(estimand)
    arr = as_1d(groups, "groups")
    codes, n_groups = check_groups(arr, len(arr))
    ids = np.unique(arr).astype(object) if len(arr) else np.array([], dtype=object)
    return PatientClusters(codes=codes, n_groups=n_groups, patient_ids=ids, estimand=estimand,
                           base_weight=base_weights(codes, n_groups, estimand))


def base_weights(codes: NDArray[np.intp], n_groups: int, estimand: str) -> NDArray[np.float64]:
    """Scan weights (n,) of ``estimand`` for scans of patients ``codes`` (n,)."""
    if estimand == PER_SCAN:
        return np.ones(len(codes))
    n_scans = np.bincount(codes, minlength=n_groups).astype(np.float64)  # (n_groups,)
    return 1.0 / n_scans[codes]
