"""Per-patient date shifting of a registry import (``sscmort import --shift-dates``).

Every date of one patient (scans, lung function, death, last follow-up) moves by the same
offset, so every interval stays exact; different patients move by different offsets, so no
real calendar date is stored. The offset comes from the store's pseudonymisation key and the
patient's registry id (HMAC-SHA256), lies within +-:data:`MAX_SHIFT_DAYS` days and is never 0.
The store records only *that* a patient's dates were shifted, never the offset.

Labels stay exact too. The label rule measures horizons in calendar years (the anniversary of
the scan date), and a year holding 29 February is a day longer, so a death on the very day of
an anniversary could fall on the other side of it once shifted. Offsets are therefore drawn in
a fixed, keyed sequence and the first one under which the label rule gives every scan of the
patient the same label at every horizon is used (:func:`exact_shift`); for almost every patient
that is the first draw.

Pure: dates and keys in, offsets out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Iterator, Sequence

from sscmort_core.errors import DataError
from sscmort_core.labels import HORIZONS_YEARS, label_scan

MAX_SHIFT_DAYS = 365
MAX_DRAWS = 256


def shift_candidates(secret: bytes, registry_id: str) -> Iterator[int]:
    """The keyed sequence of offsets (days) for one patient: each in [-365, -1] or [1, 365]."""
    if len(secret) < 16:
        raise ValueError("the pseudonymisation secret must be at least 16 bytes")
    key = registry_id.strip().encode("utf-8")
    for k in range(MAX_DRAWS):
        digest = hmac.new(bytes(secret), b"date-shift|%d|" % k + key, hashlib.sha256).digest()
        v = int.from_bytes(digest[:8], "big") % (2 * MAX_SHIFT_DAYS)  # 0 .. 729
        yield v - MAX_SHIFT_DAYS if v < MAX_SHIFT_DAYS else v - MAX_SHIFT_DAYS + 1


def shift(day: dt.date | None, days: int) -> dt.date | None:
    return None if day is None else day + dt.timedelta(days=days)


def labels_exact(days: int, scan_dates: Sequence[dt.date], death: dt.date | None,
                 followup: dt.date | None) -> bool:
    """True when the label rule gives every scan the same label at every horizon after moving
    all of the patient's dates by ``days``."""
    for t in scan_dates:
        for h in HORIZONS_YEARS:
            before = label_scan(t, death, followup, h)
            after = label_scan(shift(t, days), shift(death, days), shift(followup, days), h)
            if before is not after:
                return False
    return True


def exact_shift(secret: bytes, registry_id: str, scan_dates: Sequence[dt.date],
                death: dt.date | None, followup: dt.date | None,
                previous: int | None = None) -> int:
    """The patient's offset in days: ``previous`` (the offset an earlier import of this
    patient used, recovered by the caller) when it still keeps every label exact, else the
    first keyed draw that does. Raises DataError if none of :data:`MAX_DRAWS` draws does."""
    if previous is not None and previous != 0 and abs(previous) <= MAX_SHIFT_DAYS \
            and labels_exact(previous, scan_dates, death, followup):
        return previous
    for days in shift_candidates(secret, registry_id):
        if labels_exact(days, scan_dates, death, followup):
            return days
    raise DataError("no date shift keeps this patient's labels exact; import without "
                    "--shift-dates")
