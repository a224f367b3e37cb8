"""Cohort facts (filters, Kaplan-Meier vs lifelines) and slice rendering."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from sscmort_core.lungs.patterns import PATTERNS
from sscmort_core.views import cohort, render
from sscmort_core.views import lungs as lv
from tests.bench.bench_slice_step import blend_reference, outline_reference


def _patients():
    return pd.DataFrame({
        "patient_id": ["a", "b", "c", "d"], "sex": ["F", "M", "F", "F"],
        "subtype": ["diffuse", "limited", "limited", "diffuse"],
        "antibody": ["scl70", "centromere", "scl70", "rnapol3"],
        "age_at_first_scan": [40, 55, 70, np.nan], "baseline_fvc": [90, 60, 75, 80],
        "baseline_dlco": [70, 40, 45, np.nan]})


def test_filters_combine_and_keep_unknown_values_in_ranges():
    p = _patients()
    out = cohort.filter_patients(p, cohort.PatientFilter(sexes=("F",), age_range=(35, 60)))
    # c is 70 (out of range); d has no age and is kept rather than silently dropped
    assert list(out["patient_id"]) == ["a", "d"]
    assert len(cohort.filter_patients(p, cohort.PatientFilter())) == 4


def test_kaplan_meier_matches_hand_computation_and_logrank():
    # Group A: times 1, 2, 3 (events at 1 and 3); by hand S(1)=2/3, S(3)=2/3*0=0... with the
    # censoring at 2: at t=3 one at risk, one death -> S=0.
    km = cohort.kaplan_meier(np.array([1.0, 2.0, 3.0, 1.5, 2.5, 4.0]),
                             np.array([True, False, True, False, True, False]),
                             np.array(["A", "A", "A", "B", "B", "B"]))
    a = km.groups[0]
    assert a.name == "A" and a.n == 3 and a.events == 2
    surv = dict(zip(a.curve["time_years"], a.curve["survival"]))
    assert surv[1.0] == pytest.approx(2 / 3) and surv[3.0] == pytest.approx(0.0)
    assert list(a.at_risk["at_risk"]) == [3, 3, 1, 0, 0]  # at 0, 1, 3, 5, 10 years
    assert km.logrank_p is not None and 0 < km.logrank_p <= 1


def test_single_group_has_no_logrank():
    km = cohort.kaplan_meier(np.array([1.0, 2.0]), np.array([True, False]), np.array(["x", "x"]))
    assert km.logrank_p is None


def test_horizon_counts_add_up():
    t = dt.date(2015, 1, 1)
    scans = pd.DataFrame({"scan_date": [t, t, t],
                          "death_date": [dt.date(2015, 6, 1), None, None],
                          "last_followup_date": [dt.date(2015, 6, 1), dt.date(2021, 1, 1),
                                                 dt.date(2017, 1, 1)]})
    counts = {c.horizon_years: c for c in cohort.horizon_counts(scans)}
    assert (counts[1].positive, counts[1].negative, counts[1].censored) == (1, 2, 0)
    assert (counts[5].positive, counts[5].negative, counts[5].censored) == (1, 1, 1)


def test_window_and_outline():
    hu = np.array([[-1600.0, -600.0, 150.0]])
    # lung window level -600 width 1500: -1350 -> 0, -600 -> middle, +150 -> 255
    assert render.window_to_uint8(hu, -600, 1500).tolist() == [[0, 128, 255]]
    mask = np.zeros((7, 7), bool)
    mask[2:5, 2:5] = True
    edge = render.outline(mask)
    assert edge.sum() == 8 and not edge[3, 3]
    rgb = render.render_slice(np.zeros((7, 7)), outlines=((mask, (0, 200, 255)),), upscale=2)
    assert rgb.shape == (14, 14, 3) and tuple(rgb[4, 4]) == (0, 200, 255)


def test_outline_equals_the_erosion_it_replaced():
    """The shifted-slice boundary is scipy's (a cross, zero border) on random masks, thin
    strips and edge-touching shapes alike."""
    rng = np.random.default_rng(5)
    for shape in [(1, 9), (2, 2), (3, 5), (64, 48)]:
        for p in (0.2, 0.7, 1.0):
            mask = rng.random(shape) < p
            assert np.array_equal(render.outline(mask), outline_reference(mask)), (shape, p)


def test_pattern_overlay_equals_the_per_pixel_blend():
    """The look-up overlay draws what the per-pixel float blend it replaced draws (the
    benchmark's reference), normal lung shown or not, labels beyond the last pattern clipped."""
    rng = np.random.default_rng(6)
    hu = rng.normal(-650.0, 350.0, (40, 56)).astype(np.float32)
    labels = rng.integers(0, len(PATTERNS) + 2, hu.shape)
    for show_normal in (False, True):
        for alpha in (0.45, 0.8):
            got = lv.pattern_overlay_rgb(hu, labels, alpha=alpha, show_normal=show_normal)
            ref = blend_reference(hu, labels, alpha=alpha, show_normal=show_normal)
            assert got.dtype == np.uint8 and np.array_equal(got, ref), (show_normal, alpha)
    out = lv.pattern_overlay_rgb(hu, labels)
    big = lv.pattern_overlay_rgb(hu, labels, upscale=3)
    assert big.shape == (120, 168, 3) and np.array_equal(big[2::3, 1::3], out)
    # a voxel outside the lung is its grey level
    grey8 = render.window_to_uint8(hu, *render.LUNG_WINDOW)
    outside = labels == 0
    assert np.array_equal(out[outside], np.repeat(grey8[outside][:, None], 3, axis=1))
