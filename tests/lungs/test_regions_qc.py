"""Regional QCT against a slow per-zone reference, and the mask QC checks on cases built to
fail each of them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage as ndi

from sscmort_core.lungs import CHECKS, LUNGS, ZONES, mask_qc, regional_qct, segment_lungs
from sscmort_core.lungs.regions import RIND_MM
from sscmort_core.synthetic.phantom import make_phantom


@pytest.fixture(scope="module")
def phantom():
    p = make_phantom(ild_extent_pct=25.0, kernel="sharp", noise_hu=30.0,
                     slice_thickness_mm=6.0, seed=12, progressor=True, emphysema_pct=3.0)
    return p, segment_lungs(p.hu, p.spacing_mm)


def _slow_zone_masks(lungs, spacing):
    """Every (lung, zone) mask by the plain definitions, voxel by voxel."""
    mask = lungs.mask
    dist = ndi.distance_transform_edt(np.pad(mask, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    rind = mask & (dist <= RIND_MM)
    out = {}
    for name, m in (("right", lungs.right), ("left", lungs.left)):
        zs = np.nonzero(m.any(axis=(1, 2)))[0]
        lo, hi = zs[0], zs[-1] + 1
        third = np.full(mask.shape[0], -1)
        for z in range(lo, hi):
            rel = (z - lo + 0.5) / (hi - lo)
            third[z] = 0 if rel >= 2 / 3 else (1 if rel >= 1 / 3 else 2)
        dorsal = np.zeros(mask.shape, bool)
        for z in range(mask.shape[0]):
            ys = np.nonzero(m[z].any(axis=1))[0]
            if ys.size:
                dorsal[z, int(np.floor(0.5 * (ys[0] + ys[-1]))) + 1:, :] = True
        t = third[:, None, None]
        zones = {"whole": m, "ventral": m & ~dorsal, "dorsal": m & dorsal, "rind": m & rind,
                 "core": m & ~rind}
        for i, th in enumerate(("upper", "middle", "lower")):
            zones[th] = m & (t == i)
            zones[f"{th} rind"] = m & (t == i) & rind
            zones[f"{th} core"] = m & (t == i) & ~rind
        out[name] = zones
    out["both"] = {z: out["right"][z] | out["left"][z] for z in out["right"]}
    return out


def test_regions_match_a_slow_reference(phantom):
    """Distances on the phantom's own grid (2.7 mm: no downsampling), so the reference and the
    fast path see the same rind; percentiles are numpy's inverted-CDF ones."""
    p, lungs = phantom
    ild = p.ild_mask & lungs.mask
    reg = regional_qct(p.hu, lungs, p.spacing_mm, ild)
    assert [(r.lung, r.zone) for r in reg.regions] == [(lu, z) for lu in LUNGS for z in ZONES]
    slow = _slow_zone_masks(lungs, p.spacing_mm)
    voxel_ml = float(np.prod(p.spacing_mm)) / 1000.0
    for r in reg.regions:
        m = slow[r.lung][r.zone]
        v = p.hu[m].astype(float)
        assert r.volume_ml == pytest.approx(m.sum() * voxel_ml), (r.lung, r.zone)
        if m.sum() == 0:
            assert r.mean_lung_density_hu is None
            continue
        assert r.mean_lung_density_hu == pytest.approx(v.mean())
        assert r.laa950_pct == pytest.approx(100 * np.mean(v < -950))
        assert r.haa_pct == pytest.approx(100 * np.mean((v >= -600) & (v <= -250)))
        assert r.p15_hu == pytest.approx(np.percentile(v, 15, method="inverted_cdf"))
        assert r.ild_extent_pct == pytest.approx(100 * ild[m].mean())


def test_zones_show_basal_subpleural_disease(phantom):
    p, lungs = phantom
    reg = regional_qct(p.hu, lungs, p.spacing_mm, p.ild_mask & lungs.mask)
    lower_rind = reg.get("both", "lower rind").ild_extent_pct
    assert lower_rind > 2 * reg.get("both", "upper core").ild_extent_pct
    assert reg.get("both", "dorsal").ild_extent_pct > reg.get("both", "ventral").ild_extent_pct
    whole = reg.get("both", "whole").volume_ml
    assert whole == pytest.approx(reg.get("right", "whole").volume_ml
                                  + reg.get("left", "whole").volume_ml)


# --- QC ---------------------------------------------------------------------------------------
def _failed(qc) -> set[str]:
    return {c.name for c in qc.failed}


def test_a_good_mask_passes_every_check(phantom):
    p, lungs = phantom
    qc = mask_qc(p.hu, lungs, p.spacing_mm)
    assert [c.name for c in qc.checks] == list(CHECKS)
    assert not qc.flagged and qc.summary() == ""


def test_the_threshold_mask_of_dense_fibrosis_is_flagged(phantom):
    p, _ = phantom
    old = segment_lungs(p.hu, p.spacing_mm, costal=False)
    qc = mask_qc(p.hu, old, p.spacing_mm)
    assert _failed(qc) == {"dense_pleura_outside"}
    assert qc.summary().startswith("mask needs review: ")
    assert "against the pleura is outside the mask" in qc.summary()


def test_a_missing_lung_and_a_missing_airway_are_flagged(phantom):
    p, lungs = phantom
    no_left = dataclasses.replace(lungs, mask=lungs.right.copy(), left=np.zeros_like(lungs.left),
                                  volume_ml=lungs.right_volume_ml, left_volume_ml=0.0,
                                  airway=None)
    failed = _failed(mask_qc(p.hu, no_left, p.spacing_mm))
    assert {"missing_lung", "left_right_ratio", "airway_leak"} <= failed


def test_a_lung_cut_by_the_field_of_view_is_flagged():
    """The scan stops below the apices: the lungs fill its top slice. (Lungs cut in-plane are
    read as outside air and lost; missing_lung sees that.)"""
    p = make_phantom(ild_extent_pct=5.0, kernel="smooth", noise_hu=15.0,
                     slice_thickness_mm=5.0, seed=3)
    hu = np.ascontiguousarray(p.hu[:40])
    lungs = segment_lungs(hu, p.spacing_mm)
    assert "border_contact" in _failed(mask_qc(hu, lungs, p.spacing_mm))


def test_an_airway_left_in_the_mask_is_flagged(phantom):
    p, lungs = phantom
    leaky = dataclasses.replace(lungs, mask=lungs.mask | lungs.airway)
    qc = mask_qc(p.hu, leaky, p.spacing_mm)
    assert "airway_leak" in _failed(qc)


def test_an_implausible_volume_is_flagged(phantom):
    p, lungs = phantom
    small = dataclasses.replace(lungs, volume_ml=400.0)
    assert "lung_volume" in _failed(mask_qc(p.hu, small, p.spacing_mm))
