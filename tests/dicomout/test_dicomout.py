"""DICOM SEG + SR of one scan (sscmort_core.dicomout), read back with highdicom and pydicom.

The scan is a synthetic phantom written as a DICOM series (fake identifying tags), read by
the real reader; its lungs and ILD mask by the real stages. Checked: each SEG frame holds the
mask of the source slice at the same position (source written feet-first and head-first); the
SR holds the QCT values and each model's risks with its id; both say research use only; the
de-identified export carries the pseudonymous id and none of the source's identifiers or UIDs;
the referencing export joins the original study.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import highdicom as hd
import numpy as np
import pydicom
import pytest

from sscmort_core.dicomout.results import (
    NOT_REFERENCED,
    build_results,
    results_zip,
    write_results,
)
from sscmort_core.errors import DicomExportError
from sscmort_core.imaging import read_volume
from sscmort_core.imaging.source import read_source_series
from sscmort_core.lungs import qct_metrics, segment_lungs
from sscmort_core.lungs.qct import ild_mask
from sscmort_core.predictions import RiskPrediction
from tests.pacs.studies import ct_study, phi

SECRET = b"0123456789abcdef0123456789abcdef"
PREDS = [RiskPrediction("qct-logreg-v1", "qct", "QCT model v1", 0.05, 0.2, 0.3),
         RiskPrediction("resnet18-v2", "deep", "resnet18 v2", 0.1, 0.25, 0.4)]


def _analysed(folder):
    res = read_volume(folder, secret=SECRET)
    vol = res.volume
    lungs = segment_lungs(vol.hu, vol.spacing_mm)
    return res, vol, lungs, qct_metrics(vol.hu, lungs.mask, vol.spacing_mm), \
        ild_mask(vol.hu, lungs.mask, vol.spacing_mm)


@pytest.fixture(scope="module", params=["normal", "reversed"])
def scan(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"ct-{request.param}")
    seed = {"normal": 201, "reversed": 202}[request.param]
    _, paths = ct_study(folder, seed=seed, order=request.param)
    return (folder, seed, *_analysed(folder))


def _by_position(seg: hd.seg.Segmentation, images, segment: int) -> dict[float, np.ndarray]:
    """Segment mask per source image, keyed by the image's z position (mm)."""
    uids = [str(ds.SOPInstanceUID) for ds in images]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[segment], ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True)  # (n, rows, cols, 1)
    return {round(float(ds.ImagePositionPatient[2]), 3): frames[i, ..., 0].astype(bool)
            for i, ds in enumerate(images)}


def _expected_by_position(vol, mask) -> dict[float, np.ndarray]:
    z0, dz = vol.origin_mm[2], vol.spacing_mm[0]
    return {round(z0 + k * dz, 3): mask[k] for k in range(mask.shape[0])}


def _check_masks(seg, images, vol, lungs, ild):
    got = _by_position(seg, images, 1)
    want = _expected_by_position(vol, lungs.mask)
    assert got.keys() == want.keys()
    for z in want:
        np.testing.assert_array_equal(got[z], want[z])
    got_ild = _by_position(seg, images, 2)
    assert sum(int(m.sum()) for m in got_ild.values()) == int(ild.sum()) > 0


def _sr_values(sr: pydicom.Dataset) -> dict[tuple[str, str], float]:
    """(tracking identifier, concept meaning) -> numeric value, from the SR's content tree."""
    out = {}
    for group in sr.ContentSequence:
        if group.ConceptNameCodeSequence[0].CodeValue != "126010":  # Imaging Measurements
            continue
        for item in group.ContentSequence:
            tracking = None
            for m in item.ContentSequence:
                if m.ValueType == "TEXT" and m.ConceptNameCodeSequence[0].CodeValue == "112039":
                    tracking = m.TextValue
                if m.ValueType == "NUM":
                    out[(tracking, m.ConceptNameCodeSequence[0].CodeMeaning)] = float(
                        m.MeasuredValueSequence[0].NumericValue)
    return out


def test_deidentified_export_reads_back_and_carries_no_source_identity(scan, tmp_path):
    folder, seed, res, vol, lungs, qct, ild = scan
    results = build_results(vol, lungs.mask, ild, qct, PREDS, patient_id="P-0a1b2c3d4e5f",
                            scan_date=dt.date(2020, 1, 15), synthetic=True,
                            prediction_note="out-of-fold")
    assert not results.references_source and results.note == NOT_REFERENCED
    paths = write_results(results, tmp_path / "out")
    assert sorted(p.name for p in paths if p.parent.name == "out") == ["seg.dcm", "sr.dcm"]
    seg = hd.seg.segread(tmp_path / "out" / "seg.dcm")
    sr = hd.sr.srread(tmp_path / "out" / "sr.dcm")
    ct = [pydicom.dcmread(p) for p in sorted((tmp_path / "out" / "ct").iterdir())]
    assert len(ct) == vol.shape[0]
    np.testing.assert_array_equal(np.stack([d.pixel_array for d in ct]), vol.hu)  # HU kept
    _check_masks(seg, ct, vol, lungs, ild)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct[0].SeriesInstanceUID
    for obj in (seg, sr, ct[0]):
        assert "research use only" in obj.SeriesDescription
        assert obj.SeriesDescription.startswith("SYNTHETIC")
        assert str(obj.PatientID) == "P-0a1b2c3d4e5f"
        assert obj.StudyInstanceUID == ct[0].StudyInstanceUID
    source = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    dumped = "".join(str(o) for o in (seg, sr, ct[0]))
    for value in list(phi(seed).values()) + [str(source.StudyInstanceUID),
                                             str(source.SeriesInstanceUID),
                                             str(source.FrameOfReferenceUID)]:
        if len(value) >= 5:
            assert value not in dumped, value
    values = _sr_values(sr)
    assert values[("lungs (QCT)", "Volume")] == pytest.approx(qct.lung_volume_ml)
    assert values[("lungs (QCT)", "Mean")] == pytest.approx(qct.mean_lung_density_hu)
    assert values[("lungs (QCT)", "Estimated ILD extent")] == pytest.approx(qct.ild_extent_pct)
    for p in PREDS:
        for h in (1, 3, 5):
            key = (f"{p.model_id}: out-of-fold", f"{h}-year mortality risk")
            assert values[key] == pytest.approx(100 * p.risk(h))


def test_referencing_export_joins_the_original_study(scan, tmp_path):
    folder, seed, res, vol, lungs, qct, ild = scan
    source = read_source_series(folder)
    assert "SYN" not in repr(source) and str(len(source.headers)) in repr(source)
    results = build_results(vol, lungs.mask, ild, qct, PREDS, patient_id="P-unused",
                            scan_date=dt.date(2020, 1, 15), synthetic=True,
                            prediction_note="registered model", source=source)
    assert results.references_source and results.ct == ()
    seg, sr = results.seg, results.sr
    original = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    for obj in (seg, sr):
        assert obj.StudyInstanceUID == original[0].StudyInstanceUID
        assert obj.PatientID == phi(seed)["PatientID"]
        assert "research use only" in obj.SeriesDescription
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == original[0].SeriesInstanceUID
    referenced = {str(i.ReferencedSOPInstanceUID)
                  for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(d.SOPInstanceUID) for d in original}
    seg_back = hd.seg.segread(io.BytesIO(_bytes(seg)))
    _check_masks(seg_back, original, vol, lungs, ild)
    evidence = {str(i.SeriesInstanceUID)
                for s in sr.CurrentRequestedProcedureEvidenceSequence
                for i in s.ReferencedSeriesSequence}
    assert {str(original[0].SeriesInstanceUID), str(seg.SeriesInstanceUID)} <= evidence


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_zip_holds_every_object(scan):
    _, _, _, vol, lungs, qct, ild = scan
    results = build_results(vol, lungs.mask, None, qct, [], patient_id="P-x",
                            scan_date=dt.date(2021, 3, 1), synthetic=False,
                            prediction_note="registered model")
    with zipfile.ZipFile(io.BytesIO(results_zip(results))) as zf:
        names = zf.namelist()
        seg = pydicom.dcmread(io.BytesIO(zf.read("seg.dcm")))
    assert {"seg.dcm", "sr.dcm"} <= set(names) and len(names) == vol.shape[0] + 2
    assert len(seg.SegmentSequence) == 1  # no ILD mask given: lungs only
    assert not seg.SeriesDescription.startswith("SYNTHETIC")


def test_empty_lung_mask_is_refused(scan):
    _, _, _, vol, lungs, qct, _ = scan
    with pytest.raises(DicomExportError, match="empty"):
        build_results(vol, np.zeros_like(lungs.mask), None, qct, [], patient_id="P-x",
                      scan_date=dt.date(2021, 3, 1), synthetic=False, prediction_note="x")
