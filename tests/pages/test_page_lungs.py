"""Zones, patterns and mask QC on the pages (AppTest): the upload page draws the zone map and
the pattern overlay's legend; a scan whose mask fails QC (its lungs cut by the field of view)
is named on the Overview and its timeline, and accepting it there records who and when."""

from __future__ import annotations

import datetime as dt
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from streamlit.testing.v1 import AppTest

from sscmort_core import store as st
from sscmort_core.pipeline.ingest import analyse_path, save_analysis, store_secret
from sscmort_core.synthetic.dicom import write_dicom_series
from sscmort_core.synthetic.phantom import make_phantom
from sscmort_core.views.lungs import PATTERN_COLORS, PATTERNS

APP = Path(__file__).resolve().parents[2] / "app.py"


def _app(store_path, monkeypatch, page: str | None = None, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("SSCMORT_STORE", str(store_path))
    at = AppTest.from_file(str(APP), default_timeout=180)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture()
def flagged_store(tiny_store, tmp_path) -> tuple[Path, str, str]:
    """The tiny store plus one ingested scan whose lungs fill its top slice."""
    p = make_phantom(ild_extent_pct=10.0, kernel="smooth", noise_hu=15.0,
                     slice_thickness_mm=7.5, seed=3)
    cropped = np.ascontiguousarray(p.hu[:27])  # 40 slices of 7.5 mm cut below the apices
    path = tmp_path / "cut.nii.gz"
    img = sitk.GetImageFromArray(cropped)  # (z, y, x) -> size (x, y, z)
    img.SetSpacing(tuple(float(s) for s in p.spacing_mm[::-1]))
    sitk.WriteImage(img, str(path))
    with st.open_store(tiny_store) as s:
        analysis = analyse_path(path, secret=store_secret(s))
        assert analysis.measures.qc.flagged
        res = save_analysis(s, analysis, scan_date=dt.date(2021, 3, 4))
    assert "border" in res.mask_review
    return tiny_store, res.patient_id, res.scan_id


def test_overview_lists_the_flagged_mask(flagged_store, monkeypatch):
    path, pid, scan_id = flagged_store
    at = _app(path, monkeypatch)
    tables = [d.value for d in at.dataframe]
    flagged = next(t for t in tables if "problems" in t.columns)
    assert flagged["scan_id"].tolist() == [scan_id]
    assert "image border" in flagged["problems"].iloc[0]
    assert any("left out of model training" in c.value for c in at.caption)


def test_timeline_names_the_problem_and_accepting_records_who_and_when(flagged_store,
                                                                      monkeypatch):
    path, pid, scan_id = flagged_store
    at = _app(path, monkeypatch, "pages/patient_timeline.py", {"patient": pid, "scan": scan_id})
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("mask needs review: ") and "image border" in w for w in warnings)
    assert len(at.get("image")) == 1  # the slice with the pattern overlay
    assert any("ILD patterns:" in m.value for m in at.markdown)  # and its legend
    charts = [str(c.proto) for c in at.get("vega_lite_chart")]
    assert any("Zone map" in c for c in charts)
    button = next(b for b in at.button if "Accept this lung mask" in b.label)
    button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value.startswith("Mask accepted by local on ") for s in at.success)
    from pages._shared import _open  # the app owns the store: read through its connection

    row = st.flagged_scans_frame(_open(str(path))).iloc[0]
    assert row["scan_id"] == scan_id and row["accepted_by"] == "local"
    assert row["accepted_at"] is not None


def test_upload_page_draws_zones_patterns_and_qc(tiny_store, monkeypatch):
    p = make_phantom(ild_extent_pct=30.0, kernel="sharp", noise_hu=30.0,
                     slice_thickness_mm=7.5, seed=8, progressor=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = write_dicom_series(p, Path(tmp) / "s")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for f in files:
                zf.write(f, f"s/{f.name}")
    at = _app(tiny_store, monkeypatch, "pages/upload_predict.py")
    at.file_uploader[0].set_value(("scan.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    charts = [str(c.proto) for c in at.get("vega_lite_chart")]
    assert any("Zone map" in c for c in charts)
    legend = [m.value for m in at.markdown if "ILD patterns:" in m.value]
    assert len(legend) == 1  # a swatch in the overlay's colour beside each pattern's name
    for name, (r, g, b) in list(zip(PATTERNS, PATTERN_COLORS))[1:]:
        assert f"background:#{r:02x}{g:02x}{b:02x}\"></span>{name}<" in legend[0]
    tables = [d.value for d in at.dataframe]
    patterns = next(t for t in tables if "pattern" in t.columns)
    assert list(patterns["pattern"]) == ["Normal", "Emphysema", "Ground glass",
                                         "Reticulation", "Honeycombing", "Consolidation"]
    assert patterns["extent_pct"].sum() == pytest.approx(100.0)
