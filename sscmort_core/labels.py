"""The one label rule (../shared/DESIGN.md "Labels"), used by every stage that needs outcomes.

For a scan taken on date ``t`` with death date ``d`` (or none) and last follow-up date ``f``,
and a horizon of ``h`` whole years:

* **positive**  if the patient died in ``(t, t + h]``;
* **negative**  if the patient is known alive at ``t + h`` (died after ``t + h``, or followed up
  alive until at least ``t + h``);
* **censored**  otherwise (follow-up ends before ``t + h`` without a death). Censored scans are
  excluded from that horizon's binary metrics, never counted as negatives.

``t + h`` is the calendar anniversary (29 February maps to 28 February in common years).
A death on or before the scan date, or a last follow-up before the scan date, is a data error
(:class:`~sscmort_core.errors.DataError`), not a label.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from sscmort_core.errors import DataError

HORIZONS_YEARS: tuple[int, ...] = (1, 3, 5)
DAYS_PER_YEAR = 365.25


class Label(enum.Enum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    CENSORED = "censored"


def add_years(day: dt.date, years: int) -> dt.date:
    """Calendar anniversary ``years`` after ``day`` (29 Feb -> 28 Feb when needed)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return day.replace(year=day.year + years, day=28)


def _as_date(value: object) -> dt.date | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return pd.Timestamp(value).date()
    return dt.date.fromisoformat(str(value))


def label_scan(
    scan_date: dt.date,
    death_date: dt.date | None,
    last_followup_date: dt.date | None,
    horizon_years: int,
) -> Label:
    """Label one scan at one horizon by the rule in the module docstring."""
    t = _as_date(scan_date)
    d = _as_date(death_date)
    f = _as_date(last_followup_date)
    if t is None:
        raise DataError("scan date is missing")
    if horizon_years <= 0:
        raise ValueError(f"horizon must be a positive number of years, got {horizon_years}")
    end = add_years(t, horizon_years)
    if d is not None:
        if d <= t:
            raise DataError(f"death date {d} is not after scan date {t}")
        return Label.POSITIVE if d <= end else Label.NEGATIVE
    if f is None:
        raise DataError(f"scan of {t} has neither a death date nor a last follow-up date")
    if f < t:
        raise DataError(f"last follow-up {f} is before scan date {t}")
    return Label.NEGATIVE if f >= end else Label.CENSORED


@dataclass(frozen=True)
class HorizonLabels:
    """Vectorised labels for one horizon. ``known`` is False for censored scans."""

    horizon_years: int
    positive: np.ndarray  # (n,) bool; meaningful only where known
    known: np.ndarray  # (n,) bool

    @property
    def y(self) -> np.ndarray:
        """(m,) int 0/1 labels of the known (uncensored) scans, in input order."""
        return self.positive[self.known].astype(np.int8)

    @property
    def n_positive(self) -> int:
        return int((self.positive & self.known).sum())

    @property
    def n_censored(self) -> int:
        return int((~self.known).sum())


def _to_datetime(values: Sequence[object] | pd.Series | np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(values, dtype="object"), errors="raise"))


def _row_name(values: object, i: int) -> str:
    """How an error names row ``i``: by its index label when the dates come as a pandas Series
    indexed by scan id (what callers with a scans frame pass), else by position."""
    if isinstance(values, pd.Series) and not isinstance(values.index, pd.RangeIndex):
        return f"scan {values.index[i]}"
    return f"row {i}"


def label_scans(
    scan_dates: Sequence[object] | pd.Series | np.ndarray,
    death_dates: Sequence[object] | pd.Series | np.ndarray,
    last_followup_dates: Sequence[object] | pd.Series | np.ndarray,
    horizon_years: int,
) -> HorizonLabels:
    """Vectorised :func:`label_scan` (same rule, same errors) over arrays of dates.

    Missing death dates are None/NaT. Raises DataError naming the first offending row (by
    scan id when the dates are Series indexed by scan id).
    """
    t = _to_datetime(scan_dates)
    d = _to_datetime(death_dates)
    f = _to_datetime(last_followup_dates)
    if not (len(t) == len(d) == len(f)):
        raise ValueError("scan, death and follow-up date arrays differ in length")
    if horizon_years <= 0:
        raise ValueError(f"horizon must be a positive number of years, got {horizon_years}")
    if t.isna().any():
        raise DataError(f"{_row_name(scan_dates, int(np.flatnonzero(t.isna())[0]))}: "
                        "scan date is missing")
    end = t + pd.DateOffset(years=horizon_years)  # pandas clips 29 Feb to 28 Feb like add_years
    has_death = ~d.isna()
    bad_death = has_death & (d <= t)
    if bad_death.any():
        i = int(np.flatnonzero(bad_death)[0])
        raise DataError(f"{_row_name(scan_dates, i)}: death date {d[i].date()} is not after "
                        f"scan date {t[i].date()}")
    no_info = ~has_death & f.isna()
    if no_info.any():
        i = int(np.flatnonzero(no_info)[0])
        raise DataError(f"{_row_name(scan_dates, i)}: neither a death date nor a last "
                        "follow-up date")
    bad_fu = ~has_death & (f < t)
    if bad_fu.any():
        i = int(np.flatnonzero(bad_fu)[0])
        raise DataError(f"{_row_name(scan_dates, i)}: last follow-up {f[i].date()} is before "
                        f"scan date {t[i].date()}")
    positive = np.asarray(has_death & (d <= end))
    known = np.asarray(has_death | (f >= end))
    return HorizonLabels(horizon_years=horizon_years, positive=positive, known=known)


def time_to_event_years(
    scan_dates: Sequence[object] | pd.Series | np.ndarray,
    death_dates: Sequence[object] | pd.Series | np.ndarray,
    last_followup_dates: Sequence[object] | pd.Series | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(time_years, event) from each scan: years to death (event=True) or to last follow-up.

    Used by survival-aware losses and metrics (C-index, time-dependent AUC); consistent with
    :func:`label_scans` (same validation).
    """
    label_scans(scan_dates, death_dates, last_followup_dates, 1)  # validates, raises DataError
    t = _to_datetime(scan_dates)
    d = _to_datetime(death_dates)
    f = _to_datetime(last_followup_dates)
    event = np.asarray(~d.isna())
    stop = d.where(~d.isna(), f)
    time_years = np.asarray((stop - t).days, dtype=float) / DAYS_PER_YEAR
    return time_years, event


def label_fingerprint(
    scan_ids: Sequence[str],
    scan_dates: Sequence[object] | pd.Series | np.ndarray,
    death_dates: Sequence[object] | pd.Series | np.ndarray,
    last_followup_dates: Sequence[object] | pd.Series | np.ndarray,
) -> str:
    """sha256 (16 hex) of what the label rule says about each scan, in scan-id order: its label
    at every horizon of :data:`HORIZONS_YEARS` and its follow-up in days to death or censoring,
    with the event flag.

    A model records the fingerprint of the scans it was trained on; the same fingerprint
    recomputed from the store later tells whether those scans' outcomes are still the ones it
    saw (intervals only: shifting all of a patient's dates alike changes nothing).
    Raises DataError on contradictory dates, like :func:`label_scans`.
    """
    ids = np.asarray([str(s) for s in scan_ids], dtype=object)
    if len(ids) != len(scan_dates):
        raise ValueError("scan ids and dates differ in length")
    order = np.argsort(ids, kind="stable")
    t = _to_datetime(scan_dates)
    d = _to_datetime(death_dates)
    f = _to_datetime(last_followup_dates)
    labels = [label_scans(t, d, f, h) for h in HORIZONS_YEARS]
    codes = np.stack([np.where(lab.known, lab.positive.astype(np.int8) + 1, 0)
                      for lab in labels], axis=1)  # (n, H): 0 censored, 1 negative, 2 positive
    event = np.asarray(~d.isna())
    stop = d.where(~d.isna(), f)
    days = np.asarray((stop - t).days, dtype=np.int64)
    h = hashlib.sha256()
    for i in order:
        h.update(f"{ids[i]}|{''.join(map(str, codes[i]))}|{days[i]}|{int(event[i])}\n".encode())
    return h.hexdigest()[:16]
