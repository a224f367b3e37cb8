"""``sscmort qct``: zones, patterns and QC in the JSON; the lung mask and pattern labels
written on the input grid; a bad output path is one line, exit 2; ``ingest`` names a flagged
mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from sscmort_core.cli import main
from sscmort_core.lungs import LUNGS, PATTERNS, ZONES
from sscmort_core.synthetic.dicom import write_nifti
from sscmort_core.synthetic.phantom import make_phantom


def _run(capsys, *argv):
    code = main([*argv, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _nifti(tmp_path, **kw):
    p = make_phantom(ild_extent_pct=25.0, kernel="sharp", noise_hu=25.0,
                     slice_thickness_mm=7.5, seed=6, progressor=True, **kw)
    path = tmp_path / "scan.nii.gz"
    write_nifti(p, path)
    return p, path


def test_qct_json_has_regions_and_writes_mask_and_patterns(tmp_path, capsys):
    p, scan = _nifti(tmp_path)
    mask_out, pat_out = tmp_path / "mask.nii.gz", tmp_path / "patterns.nii.gz"
    code, out, _ = _run(capsys, "qct", str(scan), "--json", "--mask-out", str(mask_out),
                        "--patterns-out", str(pat_out))
    assert code == 0
    q = json.loads(out)
    assert 1500 < q["lung_volume_ml"] < 9000  # the whole-lung keys stay where they were
    assert [(r["lung"], r["zone"]) for r in q["regions"]] == [(lu, z) for lu in LUNGS
                                                              for z in ZONES]
    lower = next(r for r in q["regions"] if (r["lung"], r["zone"]) == ("both", "lower rind"))
    upper = next(r for r in q["regions"] if (r["lung"], r["zone"]) == ("both", "upper core"))
    assert lower["ild_extent_pct"] > upper["ild_extent_pct"]  # basal, subpleural
    assert sum(q["patterns"].values()) == pytest.approx(100.0)
    assert q["mask_qc"]["flagged"] is False and len(q["mask_qc"]["checks"]) == 6
    src = sitk.ReadImage(str(scan))
    for path, top in ((mask_out, 1), (pat_out, len(PATTERNS))):
        img = sitk.ReadImage(str(path))
        assert img.GetSize() == src.GetSize()
        np.testing.assert_allclose(img.GetSpacing(), src.GetSpacing())
        np.testing.assert_allclose(img.GetOrigin(), src.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(img.GetDirection(), src.GetDirection(), atol=1e-6)
        arr = sitk.GetArrayFromImage(img)
        assert arr.max() == top and arr.min() == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_out))).astype(bool)
    pats = sitk.GetArrayFromImage(sitk.ReadImage(str(pat_out)))
    assert ((pats > 0) == mask).all()
    # the mask lies on the input's voxels: its volume is the JSON's
    voxel_ml = float(np.prod(src.GetSpacing())) / 1000.0
    assert mask.sum() * voxel_ml == pytest.approx(q["lung_volume_ml"])


def test_qct_with_an_output_in_a_missing_folder_is_one_line(tmp_path, capsys):
    _, scan = _nifti(tmp_path)
    code, _, err = _run(capsys, "qct", str(scan), "--mask-out", str(tmp_path / "no" / "m.nii.gz"))
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "folder does not exist" in lines[0]


def test_qct_with_an_unknown_output_suffix_is_one_line(tmp_path, capsys):
    _, scan = _nifti(tmp_path)
    code, _, err = _run(capsys, "qct", str(scan), "--patterns-out", str(tmp_path / "p.png"))
    assert code == 2 and "must end in one of" in err and "Traceback" not in err
