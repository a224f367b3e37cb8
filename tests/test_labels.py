"""The label rule (DESIGN.md "Labels"): positive / negative / censored per horizon."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from sscmort_core.errors import DataError
from sscmort_core.labels import Label, add_years, label_scan, label_scans, time_to_event_years

T = dt.date(2015, 3, 10)


@pytest.mark.parametrize("h", [1, 3, 5])
def test_death_exactly_at_horizon_is_positive(h):
    assert label_scan(T, add_years(T, h), None, h) is Label.POSITIVE


@pytest.mark.parametrize("h", [1, 3, 5])
def test_death_one_day_after_horizon_is_negative(h):
    d = add_years(T, h) + dt.timedelta(days=1)
    assert label_scan(T, d, d, h) is Label.NEGATIVE


@pytest.mark.parametrize("h", [1, 3, 5])
def test_followup_ending_exactly_at_horizon_alive_is_negative(h):
    assert label_scan(T, None, add_years(T, h), h) is Label.NEGATIVE


@pytest.mark.parametrize("h", [1, 3, 5])
def test_followup_shorter_than_horizon_is_censored(h):
    f = add_years(T, h) - dt.timedelta(days=1)
    assert label_scan(T, None, f, h) is Label.CENSORED


def test_death_the_day_after_the_scan_is_positive_at_every_horizon():
    d = T + dt.timedelta(days=1)
    assert [label_scan(T, d, d, h) for h in (1, 3, 5)] == [Label.POSITIVE] * 3


def test_death_before_scan_is_a_data_error():
    with pytest.raises(DataError, match="not after scan date"):
        label_scan(T, T - dt.timedelta(days=3), None, 1)


def test_death_on_scan_date_is_a_data_error():
    # The interval is (t, t+h]: a death on the scan date itself is outside it, so it is an error.
    with pytest.raises(DataError):
        label_scan(T, T, T, 1)


def test_followup_before_scan_is_a_data_error():
    with pytest.raises(DataError, match="before scan date"):
        label_scan(T, None, T - dt.timedelta(days=1), 1)


def test_leap_day_anniversary():
    leap = dt.date(2016, 2, 29)
    assert add_years(leap, 1) == dt.date(2017, 2, 28)
    assert label_scan(leap, dt.date(2017, 2, 28), None, 1) is Label.POSITIVE
    assert label_scan(leap, None, dt.date(2017, 2, 28), 1) is Label.NEGATIVE


def test_vectorised_matches_scalar_rule_on_random_dates():
    rng = np.random.default_rng(7)
    n = 400
    scans = [dt.date(2010, 1, 1) + dt.timedelta(days=int(x)) for x in rng.integers(0, 3000, n)]
    deaths, fus = [], []
    for s in scans:
        gap = dt.timedelta(days=int(rng.integers(1, 3000)))
        if rng.random() < 0.4:
            deaths.append(s + gap)
            fus.append(s + gap)
        else:
            deaths.append(None)
            fus.append(s + gap - dt.timedelta(days=1))
    for h in (1, 3, 5):
        lab = label_scans(scans, deaths, fus, h)
        expected = [label_scan(s, d, f, h) for s, d, f in zip(scans, deaths, fus)]
        assert list(lab.known) == [e is not Label.CENSORED for e in expected]
        assert [bool(p) for p, k in zip(lab.positive, lab.known) if k] == [
            e is Label.POSITIVE for e in expected if e is not Label.CENSORED]


def test_vectorised_names_the_bad_row():
    with pytest.raises(DataError, match="row 1"):
        label_scans([T, T], [None, T - dt.timedelta(days=1)], [T, T], 1)
    # dates indexed by scan id (a scans frame's columns): the error names the scan
    ids = ["S-a", "S-b"]
    with pytest.raises(DataError, match="^scan S-b: death date"):
        label_scans(pd.Series([T, T], index=ids),
                    pd.Series([None, T - dt.timedelta(days=1)], index=ids),
                    pd.Series([T, T], index=ids), 1)


def test_time_to_event():
    time, event = time_to_event_years([T, T], [dt.date(2016, 3, 10), None],
                                      [dt.date(2016, 3, 10), dt.date(2017, 3, 10)])
    assert event.tolist() == [True, False]
    np.testing.assert_allclose(time, [366 / 365.25, 731 / 365.25])  # 2016 is a leap year
