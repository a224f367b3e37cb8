"""Imaging stage: DICOM / NIfTI / NRRD / MHA reading, validation, zip safety, de-identification.

Small DICOM series are written here with pydicom (32 x 32 pixels, 12 slices); each bad input
of DESIGN.md ("Bad input gets a clear error") has a test. The real CT beside the repo
(../shared/data/real_ct) is read with both kernels and compared with SimpleITK's reader.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    MPEG2MPML,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from sscmort_core.errors import (
    DuplicateSliceError,
    FileTooLargeError,
    ImplausibleHUError,
    InconsistentGeometryError,
    InputError,
    NonFiniteHUError,
    NotACTSeriesError,
    NotAxialError,
    TooFewSlicesError,
    TruncatedFileError,
    UnevenSpacingError,
    UnsafeArchiveError,
    UnsupportedFormatError,
)
from sscmort_core.imaging import (
    IDENTIFYING_KEYWORDS,
    Volume,
    extract_zip_safely,
    load_stored_volume,
    pseudonymous_id,
    read_dicom_files,
    read_volume,
    save_volume,
    to_sitk_image,
)
from sscmort_core.imaging.deid import clean_free_text
from sscmort_core.imaging.validate import check_hu_plausible, check_slice_positions
from sscmort_core.imaging.volume import to_canonical

SECRET = b"0123456789abcdef0123456789abcdef"
PHI = {"PatientName": "Doe^Jane", "PatientID": "MRN-4711-0815", "PatientBirthDate": "19580312",
       "InstitutionName": "Saint Example Hospital", "ReferringPhysicianName": "House^Gregory",
       "AccessionNumber": "ACC-99887766", "DeviceSerialNumber": "SN-424242",
       "PatientAddress": "12 Fake Street, Springfield", "OperatorsName": "Tech^Tina"}
PHI_VALUES = ["Doe", "Jane", "MRN-4711-0815", "19580312", "Saint Example", "House", "Gregory",
              "ACC-99887766", "SN-424242", "Fake Street", "Tina"]


# ---------------------------------------------------------------------------------------------
# a tiny DICOM writer for tests
# ---------------------------------------------------------------------------------------------
def chest_hu(nz: int = 12, n: int = 32) -> np.ndarray:
    """(nz, n, n) int16 HU: air outside, soft tissue body, two lungs at -850, a vessel."""
    yy, xx = np.mgrid[0:n, 0:n] / (n - 1) * 2 - 1  # (n, n) in [-1, 1]
    plane = np.full((n, n), -1000, dtype=np.int16)
    plane[(xx / 0.9) ** 2 + (yy / 0.7) ** 2 < 1] = 40
    for cx in (-0.42, 0.42):
        plane[((xx - cx) / 0.3) ** 2 + (yy / 0.5) ** 2 < 1] = -850
    vol = np.repeat(plane[None], nz, axis=0)
    vol[:, n // 2, n // 4] = 60  # a vessel inside the right lung
    vol += (np.arange(nz, dtype=np.int16) % 3)[:, None, None]  # tags each slice
    return vol


def make_ds(hu2d: np.ndarray, *, position: tuple[float, float, float],
            iop: tuple[float, ...] = (1, 0, 0, 0, 1, 0), spacing_yx=(1.5, 1.5),
            modality: str = "CT", series_uid: str = "1.2.3.4", description: str = "CHEST",
            slope: float = 1.0, intercept: float = -1024.0, image_type=("ORIGINAL", "PRIMARY",
                                                                          "AXIAL"),
            instance: int = 1, phi: bool = True) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Manufacturer, ds.ManufacturerModelName, ds.ConvolutionKernel = "TestCo", "T1", "B30f"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, "1.2.3"
    ds.SeriesDescription, ds.StudyDate, ds.SliceThickness = description, "20200115", 3.0
    ds.ImageType = list(image_type)
    ds.InstanceNumber = instance
    if phi:
        for key, value in PHI.items():
            setattr(ds, key, value)
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
    ds.PixelSpacing = [str(s) for s in spacing_yx]
    ds.Rows, ds.Columns = hu2d.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
    stored = np.rint((hu2d.astype(np.float64) - intercept) / slope).astype(np.int16)
    ds.PixelData = stored.tobytes()
    return ds


def write_series(folder: Path, hu: np.ndarray, *, dz: float = 3.0, order: str = "shuffled",
                 iop=(1, 0, 0, 0, 1, 0), origin=(-24.0, -24.0, -100.0), z_positions=None,
                 prefix: str = "im", **kw) -> list[Path]:
    """Write (z, y, x) HU as one series; slice k sits at origin + k * dz * normal."""
    folder.mkdir(parents=True, exist_ok=True)
    row, col = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row, col)
    zs = z_positions if z_positions is not None else [k * dz for k in range(hu.shape[0])]
    idx = list(range(hu.shape[0]))
    if order == "shuffled":
        random.Random(7).shuffle(idx)
    elif order == "reversed":
        idx.reverse()
    paths = []
    for file_no, k in enumerate(idx):
        pos = tuple(np.asarray(origin) + zs[k] * normal)
        ds = make_ds(hu[k], position=pos, iop=iop, instance=k + 1, **kw)
        path = folder / f"{prefix}{file_no:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture()
def series(tmp_path) -> tuple[Path, np.ndarray]:
    hu = chest_hu()
    write_series(tmp_path / "ct", hu)
    return tmp_path / "ct", hu


# ---------------------------------------------------------------------------------------------
# round trips
# ---------------------------------------------------------------------------------------------
def test_shuffled_series_round_trip(series):
    folder, hu = series
    result = read_volume(folder)
    vol = result.volume
    assert vol.hu.dtype == np.int16 and vol.shape == hu.shape
    np.testing.assert_array_equal(vol.hu, hu)  # ordered by position, not file name
    assert vol.spacing_mm == pytest.approx((3.0, 1.5, 1.5))
    assert vol.origin_mm == pytest.approx((-24.0, -24.0, -100.0))
    assert vol.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    assert (vol.modality, vol.manufacturer, vol.model, vol.kernel) == ("CT", "TestCo", "T1", "B30f")
    assert vol.study_date == dt.date(2020, 1, 15) and vol.slice_thickness_mm == 3.0
    rep = result.report
    assert rep.source_format == "dicom-folder" and rep.n_files == 12
    assert (rep.chosen_series.n_slices, rep.chosen_series.description) == (12, "CHEST")
    assert rep.ignored_series == () and rep.skipped_files == ()
    assert result.pseudonymous_patient_id is None  # no secret given
    with pytest.raises(ValueError):
        vol.hu[0, 0, 0] = 1  # read-only


def test_reversed_positions_and_spacing_from_positions(tmp_path):
    hu = chest_hu()
    # positions descend with the file order and SliceThickness (3.0) disagrees with the step
    write_series(tmp_path / "ct", hu, dz=2.5, order="reversed")
    vol = read_volume(tmp_path / "ct").volume
    np.testing.assert_array_equal(vol.hu, hu)
    assert vol.spacing_mm[0] == pytest.approx(2.5) and vol.slice_thickness_mm == 3.0


def test_flipped_orientation_becomes_canonical(tmp_path):
    hu = chest_hu()
    # row -x, column -y: the normal is still +z; x and y must be flipped back
    write_series(tmp_path / "ct", hu, iop=(-1, 0, 0, 0, -1, 0), origin=(24.0, 24.0, -100.0))
    vol = read_volume(tmp_path / "ct").volume
    np.testing.assert_array_equal(vol.hu, hu[:, ::-1, ::-1])
    assert vol.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    # voxel [0, 0, 0] is now the one that was at the far corner
    assert vol.origin_mm == pytest.approx((24.0 - 31 * 1.5, 24.0 - 31 * 1.5, -100.0))


def test_to_canonical_keeps_physical_positions():
    rng = np.random.default_rng(0)
    hu = rng.integers(-1000, 100, size=(4, 5, 6)).astype(np.int16)  # (z, y, x)
    direction = np.array([[0, -1, 0], [-1, 0, 0], [0, 0, 1]], dtype=float)  # x<->y swapped
    spacing, origin = (3.0, 2.0, 1.0), (10.0, 20.0, 30.0)
    arr, sp, org, d = to_canonical(hu, spacing, origin, direction)
    assert np.allclose(d, np.eye(3))

    def world(idx_zyx, sp_zyx, org_xyz, dmat):
        ijk = np.array(idx_zyx[::-1], float) * np.array(sp_zyx[::-1])
        return np.asarray(org_xyz) + dmat @ ijk

    for idx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        p = world(idx, spacing, origin, direction)
        new_idx = np.rint(np.linalg.solve(d, p - np.asarray(org)) / np.array(sp[::-1]))[::-1]
        assert arr[tuple(new_idx.astype(int))] == hu[idx]


def test_zip_with_several_series_chooses_largest_axial_ct(tmp_path):
    src = tmp_path / "src"
    write_series(src / "a", chest_hu(12), series_uid="1.1", description="SMALL", prefix="a")
    write_series(src / "b", chest_hu(15), series_uid="1.2", description="LARGE", prefix="b")
    write_series(src / "c", chest_hu(20), series_uid="1.3", modality="MR", description="T1",
                 prefix="c")
    loc = make_ds(chest_hu(1)[0], position=(0, 0, 0), iop=(1, 0, 0, 0, 0, -1), series_uid="1.4",
                  description="TOPO", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    loc.save_as(src / "loc.dcm", enforce_file_format=True)
    (src / "readme.txt").write_text("not an image")
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    result = read_volume(archive, secret=SECRET)
    assert result.volume.shape[0] == 15
    rep = result.report
    assert rep.source_format == "dicom-zip" and rep.n_files == 12 + 15 + 20 + 2
    assert rep.chosen_series.description == "LARGE"
    reasons = {s.description: s.reason_ignored for s in rep.ignored_series}
    assert "fewer slices" in reasons["SMALL"]
    assert "MR" in reasons["T1"] and "localizer" in reasons["TOPO"]
    assert [s.name for s in rep.skipped_files] == ["readme.txt"]
    assert result.pseudonymous_patient_id == pseudonymous_id(SECRET, PHI["PatientID"])


def test_localizer_inside_the_series_is_ignored(series):
    folder, hu = series
    loc = make_ds(hu[0], position=(0, -50, 0), iop=(1, 0, 0, 0, 0, -1),
                  image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))  # same SeriesInstanceUID
    loc.save_as(folder / "zz_scout.dcm", enforce_file_format=True)
    result = read_volume(folder)
    np.testing.assert_array_equal(result.volume.hu, hu)
    assert [s.reason_ignored for s in result.report.ignored_series] == [
        "a localizer (scout) image, not a CT volume"]


def test_file_list_and_rle_compressed(tmp_path):
    hu = chest_hu()
    paths = write_series(tmp_path / "ct", hu)
    for p in paths[:3]:  # pydicom encodes and decodes RLE Lossless natively
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(p)
    result = read_dicom_files(paths)
    np.testing.assert_array_equal(result.volume.hu, hu)
    assert result.report.source_format == "dicom-files"


def test_grid_formats_round_trip(tmp_path):
    hu = chest_hu().astype(np.int16)
    for suffix in (".nii.gz", ".nrrd", ".mha", ".mhd"):  # .mhd: header + separate .raw
        img = sitk.GetImageFromArray(hu)
        img.SetSpacing((1.5, 1.5, 3.0))
        img.SetOrigin((-24.0, -24.0, -100.0))
        path = tmp_path / f"ct{suffix}"
        sitk.WriteImage(img, str(path))
        result = read_volume(path)
        np.testing.assert_array_equal(result.volume.hu, hu)
        assert result.volume.spacing_mm == pytest.approx((3.0, 1.5, 1.5))
        assert result.report.source_format in ("nifti", "nrrd", "metaimage")
        assert result.pseudonymous_patient_id is None


def test_nifti_in_ras_storage_is_reoriented(tmp_path):
    hu = chest_hu().astype(np.float32)
    img = sitk.GetImageFromArray(hu[:, ::-1, ::-1].copy())  # stored right-to-left, back-to-front
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    img.SetSpacing((1.5, 1.5, 3.0))
    sitk.WriteImage(img, str(tmp_path / "ras.nii"))
    vol = read_volume(tmp_path / "ras.nii").volume
    np.testing.assert_array_equal(vol.hu, hu)
    assert vol.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_save_and_load_stored_volume(tmp_path, series):
    folder, hu = series
    vol = read_volume(folder).volume
    path = save_volume(vol, tmp_path / "stored.nii.gz")
    back, spacing = load_stored_volume(path)
    np.testing.assert_array_equal(back, hu)
    assert spacing == pytest.approx(vol.spacing_mm)
    raw = path.read_bytes()
    assert not any(v.encode() in raw for v in PHI_VALUES)
    assert to_sitk_image(vol).GetSize() == (32, 32, 12)


# ---------------------------------------------------------------------------------------------
# de-identification
# ---------------------------------------------------------------------------------------------
def test_no_identifying_value_leaves_the_reader(series, caplog):
    folder, _ = series
    caplog.set_level(logging.DEBUG, logger="sscmort")
    result = read_volume(folder, secret=SECRET)
    shown = repr(result) + str(result.report) + caplog.text
    for value in PHI_VALUES + ["1.2.3.4"]:  # names, ids, dates, UIDs
        assert value not in shown
    assert {"PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "AccessionNumber",
            "ReferringPhysicianName", "DeviceSerialNumber", "SeriesInstanceUID",
            "SOPInstanceUID"} <= set(result.report.removed_tags)
    assert set(result.report.removed_tags) <= IDENTIFYING_KEYWORDS
    assert result.pseudonymous_patient_id == pseudonymous_id(SECRET, "MRN-4711-0815")
    fields = set(Volume.__dataclass_fields__)
    assert not fields & {"patient_name", "patient_id", "birth_date", "institution", "uid"}


def test_errors_never_show_identifying_values(tmp_path):
    write_series(tmp_path / "mr", chest_hu(), modality="MR", description="T2 Doe Jane")
    with pytest.raises(NotACTSeriesError) as err:
        read_volume(tmp_path / "mr")
    assert not any(v in str(err.value) for v in PHI_VALUES)


def test_series_description_is_cleaned_of_the_patient_name(tmp_path):
    write_series(tmp_path / "ct", chest_hu(), description="CHEST DOE JANE MRN-4711-0815")
    result = read_volume(tmp_path / "ct")
    assert result.volume.series_description == "CHEST"
    assert any("name or id" in w for w in result.report.warnings)


def test_pseudonymous_id():
    a = pseudonymous_id(SECRET, "MRN-1")
    assert a == pseudonymous_id(SECRET, " MRN-1 ")  # stripped
    assert a != pseudonymous_id(SECRET, "MRN-2")
    assert a != pseudonymous_id(b"another-secret-of-32-bytes-long!", "MRN-1")
    assert a.startswith("P-") and len(a) == 14 and int(a[2:], 16) >= 0
    # golden value: HMAC-SHA256(SECRET, b"MRN-1").hexdigest()[:12], computed with hmac
    import hashlib
    import hmac
    assert a == "P-" + hmac.new(SECRET, b"MRN-1", hashlib.sha256).hexdigest()[:12]
    with pytest.raises(ValueError):
        pseudonymous_id(b"short", "MRN-1")


def test_clean_free_text():
    assert clean_free_text("Thorax Doe^Jane", ["Doe^Jane"]) == ("Thorax", True)
    assert clean_free_text("Thorax", ["Doe^Jane"]) == ("Thorax", False)
    assert clean_free_text(None, ["x"]) == (None, False)


# ---------------------------------------------------------------------------------------------
# bad input: one clear error each, naming the input
# ---------------------------------------------------------------------------------------------
def _raises(exc: type[InputError], path: Path, *words: str, **kw) -> InputError:
    with pytest.raises(exc) as info:
        read_volume(path, **kw)
    err = info.value
    assert err.path is not None and str(err).startswith(str(err.path))
    assert "\n" not in str(err)
    for word in words:
        assert word in err.reason, err.reason
    return err


def test_not_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    _raises(UnsupportedFormatError, tmp_path / "notes.txt", "not a DICOM")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    _raises(UnsupportedFormatError, folder, "no DICOM image files", "a.txt")


def test_missing_path(tmp_path):
    _raises(UnsupportedFormatError, tmp_path / "nope", "no such file")


def test_truncated_pixel_data(series):
    folder, _ = series
    victim = sorted(folder.iterdir())[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 700])
    err = _raises(TruncatedFileError, folder, victim.name, "truncated")
    assert isinstance(err, UnsupportedFormatError)


def test_truncated_header(series):
    folder, _ = series
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:400])
    _raises(TruncatedFileError, folder, victim.name, "truncated")


def test_mr_series(tmp_path):
    write_series(tmp_path / "mr", chest_hu(), modality="MR")
    _raises(NotACTSeriesError, tmp_path / "mr", "MR", "not CT")


def test_sagittal_series(tmp_path):
    write_series(tmp_path / "sag", chest_hu(), iop=(0, 1, 0, 0, 0, -1))
    _raises(NotAxialError, tmp_path / "sag", "sagittal", "not axial")


def test_rotated_axial_series(tmp_path):
    a = np.radians(12.0)
    write_series(tmp_path / "rot", chest_hu(), iop=(np.cos(a), np.sin(a), 0, -np.sin(a),
                                                     np.cos(a), 0))
    _raises(NotAxialError, tmp_path / "rot", "rotated")


def test_slightly_oblique_axial_is_accepted(tmp_path):
    a = np.radians(2.0)
    write_series(tmp_path / "ct", chest_hu(), iop=(np.cos(a), np.sin(a), 0, -np.sin(a),
                                                    np.cos(a), 0))
    assert read_volume(tmp_path / "ct").volume.shape == (12, 32, 32)


def test_too_few_slices(tmp_path):
    write_series(tmp_path / "ct", chest_hu(9))
    _raises(TooFewSlicesError, tmp_path / "ct", "only 9 slices", "10")


def test_single_2d_image(tmp_path):
    write_series(tmp_path / "one", chest_hu(1))
    _raises(TooFewSlicesError, tmp_path / "one" / "im000.dcm", "single 2D image")
    img = sitk.GetImageFromArray(chest_hu(1)[0])
    sitk.WriteImage(img, str(tmp_path / "flat.nii.gz"))
    _raises(TooFewSlicesError, tmp_path / "flat.nii.gz", "single 2D image")


def test_missing_slice(tmp_path):
    hu = chest_hu(13)
    paths = write_series(tmp_path / "ct", hu, order="instance")
    paths[6].unlink()
    _raises(UnevenSpacingError, tmp_path / "ct", "missing", "im005.dcm", "im007.dcm")


def test_uneven_spacing(tmp_path):
    zs = [0, 3, 6, 9, 12.6, 15, 18, 21, 24, 27, 30, 33]  # one step 3.6, the next 2.4
    write_series(tmp_path / "ct", chest_hu(), z_positions=zs)
    _raises(UnevenSpacingError, tmp_path / "ct", "uneven")


def test_duplicated_slice(tmp_path):
    zs = [0, 3, 6, 9, 12, 12, 15, 18, 21, 24, 27, 30]
    write_series(tmp_path / "ct", chest_hu(), z_positions=zs, order="instance")
    _raises(DuplicateSliceError, tmp_path / "ct", "duplicated", "im004.dcm", "im005.dcm")


def test_inconsistent_rows(series):
    folder, _ = series
    victim = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(victim)
    small = np.full((30, 32), -1000, np.int16)
    ds.Rows = 30
    ds.PixelData = (small + 1024).astype(np.int16).tobytes()
    ds.save_as(victim)
    _raises(InconsistentGeometryError, folder, victim.name, "30x32")


def test_inconsistent_pixel_spacing(series):
    folder, _ = series
    victim = sorted(folder.iterdir())[2]
    ds = pydicom.dcmread(victim)
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.save_as(victim)
    _raises(InconsistentGeometryError, folder, victim.name, "pixel spacing")


def test_gantry_tilt(tmp_path):
    hu = chest_hu()
    folder = tmp_path / "tilt"
    folder.mkdir()
    for k in range(hu.shape[0]):  # each slice shifted 1 mm in y per 3 mm in z: ~18 degrees
        make_ds(hu[k], position=(-24.0, -24.0 + k, -100.0 + 3 * k)).save_as(
            folder / f"im{k:03d}.dcm", enforce_file_format=True)
    _raises(InconsistentGeometryError, folder, "tilt")


def test_missing_intercept_is_implausible_hu(tmp_path):
    # RescaleIntercept 0 where the stored values need -1024: air reads as about 0 HU
    hu = chest_hu() + 1024
    write_series(tmp_path / "ct", hu, intercept=0.0)
    _raises(ImplausibleHUError, tmp_path / "ct", "air", "-1000")


def test_wrong_slope_is_implausible_hu(tmp_path):
    write_series(tmp_path / "ct", chest_hu() * 8, slope=1.0)
    _raises(ImplausibleHUError, tmp_path / "ct", "HU")


def test_hu_check_thresholds():
    ok = chest_hu().astype(np.float32)
    check_hu_plausible(ok, None)
    with pytest.raises(ImplausibleHUError):
        check_hu_plausible(ok + 1024, None)  # no air
    with pytest.raises(ImplausibleHUError):
        check_hu_plausible(np.where(ok > 0, 9000, ok), None)  # "bone" at 9000 HU


def test_nifti_with_nan(tmp_path):
    hu = chest_hu().astype(np.float32)
    hu[5, 10, 10] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(tmp_path / "nan.nii.gz"))
    err = _raises(NonFiniteHUError, tmp_path / "nan.nii.gz", "NaN")
    assert isinstance(err, ImplausibleHUError)


def test_oversize_file(tmp_path, series):
    folder, _ = series
    _raises(FileTooLargeError, folder, "limit", max_bytes=10_000)
    one = sorted(folder.iterdir())[0]
    _raises(FileTooLargeError, one, "limit", max_bytes=1000)


def test_oversize_decoded_nifti(tmp_path):
    zeros = np.full((40, 200, 200), -1000, np.int16)  # gzip squeezes this to a few kB
    sitk.WriteImage(sitk.GetImageFromArray(zeros), str(tmp_path / "big.nii.gz"))
    assert (tmp_path / "big.nii.gz").stat().st_size < 100_000
    _raises(FileTooLargeError, tmp_path / "big.nii.gz", "decoded", max_bytes=1_000_000)


def test_undecodable_compression_names_the_syntax(series):
    """A syntax no installed decoder handles (MPEG-2 video here): the message names it and
    asks for an uncompressed export (corrupt data in a decodable syntax: test_compressed.py)."""
    folder, _ = series
    victim = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(victim)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3garbage"])
    ds["PixelData"].VR = "OB"
    ds.save_as(victim)
    _raises(UnsupportedFormatError, folder, "MPEG2", "uncompressed")


def test_metaimage_pointing_outside_its_folder(tmp_path):
    (tmp_path / "evil.mhd").write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 32 32 12\nElementType = MET_SHORT\n"
        "ElementDataFile = ../../etc/passwd\n")
    _raises(UnsafeArchiveError, tmp_path / "evil.mhd", "outside")


# ---------------------------------------------------------------------------------------------
# zip safety
# ---------------------------------------------------------------------------------------------
def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_with_parent_path(tmp_path):
    archive = _zip(tmp_path / "evil.zip", {"ok.dcm": b"x", "../../escape.dcm": b"x"})
    _raises(UnsafeArchiveError, archive, "outside")
    assert not (tmp_path.parent / "escape.dcm").exists()


def test_zip_with_absolute_path(tmp_path):
    archive = _zip(tmp_path / "abs.zip", {"/etc/cron.d/x": b"x"})
    _raises(UnsafeArchiveError, archive, "absolute")


def test_zip_with_symlink(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link.dcm")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    _raises(UnsafeArchiveError, archive, "symbolic link")


def test_zip_bomb_by_ratio(tmp_path):
    archive = _zip(tmp_path / "bomb.zip", {"a.dcm": b"\0" * 20_000_000})
    assert archive.stat().st_size < 100_000
    _raises(UnsafeArchiveError, archive, "zip bomb")


def test_zip_expanding_over_the_size_cap(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 16, 300_000).astype(np.uint8).tobytes()  # deflates about 2-fold
    archive = _zip(tmp_path / "big.zip", {"a.bin": data})
    assert archive.stat().st_size < 299_000
    with pytest.raises(FileTooLargeError):
        extract_zip_safely(archive, tmp_path / "out", max_total_bytes=200_000)
    _raises(FileTooLargeError, archive, "expands", max_bytes=299_000)


def test_zip_with_too_many_members(tmp_path):
    archive = _zip(tmp_path / "many.zip", {f"f{i}": b"x" for i in range(30)})
    with pytest.raises(UnsafeArchiveError):
        extract_zip_safely(archive, tmp_path / "out", max_members=20)


def test_not_a_zip(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK\x03\x04 but then garbage")
    _raises(UnsupportedFormatError, tmp_path / "fake.zip", "zip")


def test_extract_zip_safely_extracts_plain_members(tmp_path):
    archive = _zip(tmp_path / "ok.zip", {"a/b.dcm": b"hello", "c.dcm": b"world", "d/": b""})
    out = extract_zip_safely(archive, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in out) == ["a/b.dcm", "c.dcm"]
    assert (tmp_path / "out" / "a" / "b.dcm").read_bytes() == b"hello"


def test_zip_temp_folder_is_removed_even_on_error(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    src = tmp_path / "mr"
    write_series(src, chest_hu(), modality="MR")
    archive = _zip(tmp_path / "mr.zip", {p.name: p.read_bytes() for p in src.iterdir()})
    with pytest.raises(NotACTSeriesError) as err:
        read_volume(archive)
    assert err.value.path == str(archive)  # the zip is named, not the temporary folder
    assert list(scratch.iterdir()) == []
    ok = tmp_path / "ok"
    write_series(ok, chest_hu())
    read_volume(_zip(tmp_path / "ok.zip", {p.name: p.read_bytes() for p in ok.iterdir()}))
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# pure checks
# ---------------------------------------------------------------------------------------------
def test_check_slice_positions():
    names = [f"f{i}" for i in range(5)]
    assert check_slice_positions(np.array([0.0, 2.0, 4.0, 6.0, 8.0]), names, None) == 2.0
    with pytest.raises(DuplicateSliceError):
        check_slice_positions(np.array([0.0, 2.0, 2.0, 4.0, 6.0]), names, None)
    with pytest.raises(UnevenSpacingError, match="missing"):
        check_slice_positions(np.array([0.0, 2.0, 4.0, 8.0, 10.0]), names, None)


# ---------------------------------------------------------------------------------------------
# the real CT beside the repo
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_series(real_ct: Path) -> dict[str, Path]:
    """The two kernels; ``real_ct`` (conftest) skips when ../shared/data/real_ct is absent."""
    return {k: real_ct / f"philips_A0001_kernel_{k}" for k in "LB"}


@pytest.mark.parametrize("kernel", ["L", "B"])
def test_real_ct_matches_simpleitk(real_series, kernel):
    folder = real_series[kernel]
    result = read_volume(folder, secret=SECRET)
    vol = result.volume
    reader = sitk.ImageSeriesReader()  # the reference reader (GDCM sorts by position too)
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    ref = reader.Execute()
    np.testing.assert_array_equal(vol.hu, sitk.GetArrayFromImage(ref))
    assert vol.spacing_mm == pytest.approx(ref.GetSpacing()[::-1])
    assert vol.origin_mm == pytest.approx(ref.GetOrigin())
    assert vol.direction == pytest.approx(ref.GetDirection())
    assert vol.shape == (64, 512, 512) and vol.kernel == kernel
    assert (vol.manufacturer, vol.model) == ("Philips", "Brilliance16")
    assert {"PatientName", "PatientID", "StudyInstanceUID"} <= set(result.report.removed_tags)
    assert result.report.removed_private_tags > 0
    assert "Lung_Dx" not in repr(result)
    assert result.pseudonymous_patient_id == pseudonymous_id(SECRET, "Lung_Dx-A0001")


# ---------------------------------------------------------------------------------------------
# round trips through the synthetic generator's writers
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_phantom():
    from sscmort_core.synthetic import phantom as phantom_mod
    return phantom_mod.make_phantom(ild_extent_pct=10.0, kernel="sharp", noise_hu=20.0,
                                    slice_thickness_mm=5.0, seed=3, shape=(16, 64, 64))


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
def test_synthetic_dicom_round_trip(tmp_path, small_phantom, order, caplog):
    from sscmort_core.synthetic import dicom as writer
    ph = small_phantom
    writer.write_dicom_series(ph, tmp_path / "ct", instance_order=order)
    writer.write_localizer(tmp_path / "ct", phantom=ph)
    caplog.set_level(logging.DEBUG, logger="sscmort")
    result = read_volume(tmp_path / "ct", secret=SECRET)
    np.testing.assert_array_equal(result.volume.hu, ph.hu)
    assert result.volume.spacing_mm == pytest.approx(ph.spacing_mm, abs=1e-4)
    assert result.volume.origin_mm == pytest.approx(ph.origin_mm[::-1], abs=1e-3)
    rep = result.report
    assert [s.reason_ignored for s in rep.ignored_series] == [
        "a localizer (scout) image, not a CT volume"]
    assert set(writer.DEFAULT_PHI) <= set(rep.removed_tags)
    assert rep.removed_private_tags > 0
    shown = repr(result) + str(rep) + caplog.text
    for value in writer.DEFAULT_PHI.values():
        assert len(value) < 5 or value not in shown  # (sex "F" and age "060Y" are too short)
    assert result.pseudonymous_patient_id == pseudonymous_id(SECRET,
                                                             writer.DEFAULT_PHI["PatientID"])


def test_synthetic_nifti_round_trip(tmp_path, small_phantom):
    from sscmort_core.synthetic import dicom as writer
    path = writer.write_nifti(small_phantom, tmp_path / "ct.nii.gz")
    vol = read_volume(path).volume
    np.testing.assert_array_equal(vol.hu, small_phantom.hu)
    assert vol.spacing_mm == pytest.approx(small_phantom.spacing_mm)


# ---------------------------------------------------------------------------------------------
# picking one series of a study (registry manifests: series_uid / series_description)
# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def two_series_study(tmp_path) -> Path:
    """A folder with a 12-slice "SUPINE" and a 15-slice "PRONE" axial series."""
    write_series(tmp_path / "st", chest_hu(12), series_uid="1.7.1", description="Supine",
                 prefix="s")
    write_series(tmp_path / "st", chest_hu(15), series_uid="1.7.2", description="PRONE",
                 prefix="p")
    return tmp_path / "st"


def test_a_selector_picks_a_series_other_than_the_default(two_series_study):
    from sscmort_core.imaging import SeriesSelector

    assert read_volume(two_series_study).volume.shape[0] == 15  # default: the larger one
    by_uid = read_volume(two_series_study, series=SeriesSelector(series_uid="1.7.1"))
    by_desc = read_volume(two_series_study, series=SeriesSelector(series_description=" supine"))
    assert by_uid.volume.shape[0] == by_desc.volume.shape[0] == 12
    reasons = [s.reason_ignored for s in by_uid.report.ignored_series]
    assert reasons == ["not the series the manifest names"]


def test_a_selector_matching_nothing_or_several_is_refused(two_series_study, tmp_path):
    from sscmort_core.errors import SeriesNotFoundError
    from sscmort_core.imaging import SeriesSelector

    with pytest.raises(SeriesNotFoundError, match="none of the 2 series matches") as err:
        read_volume(two_series_study, series=SeriesSelector(series_uid="9.9.9"))
    assert "9.9.9" not in str(err.value)  # a UID links back: never shown
    write_series(two_series_study, chest_hu(12), series_uid="1.7.3", description="PRONE",
                 prefix="q")
    with pytest.raises(SeriesNotFoundError, match="2 series match"):
        read_volume(two_series_study, series=SeriesSelector(series_description="prone"))
    nifti = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(chest_hu(12)), str(nifti))
    with pytest.raises(UnsupportedFormatError, match="single image file"):
        read_volume(nifti, series=SeriesSelector(series_description="prone"))


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_stored_copy_is_simpleitks_uncompressed_metaimage_byte_for_byte(tmp_path, dtype):
    """save_stored_volume writes the .mha itself (no SimpleITK import, no compression: issue
    13's ingest) exactly as SimpleITK writes it uncompressed, hashes what it wrote, and
    load_stored_volume reads it back; a direction it does not write itself (not canonical)
    goes through SimpleITK."""
    import hashlib

    import SimpleITK as sitk

    from sscmort_core.imaging import save_stored_volume
    from sscmort_core.imaging.volume import to_sitk_image

    tilt = (0.9999619230641713, 0.0, 0.008726535498373935, 0.0, 1.0, 0.0,
            -0.008726535498373935, 0.0, 0.9999619230641713)
    flipped = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    hu = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 1024).astype(dtype)
    for direction in (tilt, flipped):
        vol = Volume(hu=hu, spacing_mm=(1.25, 0.7, 0.6999), origin_mm=(-1 / 3, 2.0, 1e-5),
                     direction=direction)
        sha = save_stored_volume(vol, tmp_path / "ours.mha")
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(tmp_path / "sitk.mha"))
        writer.SetUseCompression(False)
        writer.Execute(to_sitk_image(vol))
        ours = (tmp_path / "ours.mha").read_bytes()
        assert ours == (tmp_path / "sitk.mha").read_bytes()
        assert sha == hashlib.sha256(ours).hexdigest()
        back, spacing = load_stored_volume(tmp_path / "ours.mha")
        assert back.dtype == hu.dtype and np.array_equal(back, hu)
        assert spacing == (1.25, 0.7, 0.6999)


def _old_normalize_hu(hu, integral):
    n_low = int(np.count_nonzero(hu < -1100))
    warn = n_low > 0.001 * hu.size
    if np.issubdtype(hu.dtype, np.integer):
        out = np.maximum(hu, np.asarray(-1024, dtype=hu.dtype))
        if integral and int(out.max()) <= np.iinfo(np.int16).max:
            return out.astype(np.int16, copy=False), warn
        return out.astype(np.float32), warn
    out = np.maximum(hu, np.asarray(-1024.0, dtype=hu.dtype))
    if integral and float(out.max()) <= np.iinfo(np.int16).max:
        return np.rint(out).astype(np.int16), warn
    return out.astype(np.float32, copy=False), warn


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
@pytest.mark.parametrize("top", [3071, 40000])
def test_normalize_hu_equals_the_unchunked_version(dtype, top):
    """Issue 13: the low count in slabs and the clip written straight into int16 give what
    the one-pass version gave (values, type and warning)."""
    from sscmort_core.imaging.validate import normalize_hu

    rng = np.random.default_rng(0)
    hi = min(top, np.iinfo(np.int16).max) if dtype == np.int16 else top
    hu = rng.integers(-3000, hi, size=(7, 33, 41)).astype(dtype)
    for integral in (True, False):
        out, warning = normalize_hu(hu, integral=integral)
        ref, warn = _old_normalize_hu(hu, integral)
        assert out.dtype == ref.dtype and np.array_equal(out, ref)
        assert (warning is not None) == warn


def test_stacked_slices_widen_to_int32_when_one_does_not_fit_int16(monkeypatch):
    from types import SimpleNamespace

    import pydicom

    from sscmort_core.imaging import dicom

    slices = [np.full((2, 3), v, np.int32) for v in (-1024, 3071, 40000, -40000, 5)]
    monkeypatch.setattr(dicom.pixels, "slice_hu", lambda path, name, ds, source, integral:
                        slices[int(name)])
    ordered = [SimpleNamespace(path=None, name=str(i), ds=pydicom.Dataset()) for i in range(5)]
    out = dicom._stack_pixels(ordered, SimpleNamespace(rows=2, columns=3), Path("x"), True)
    assert out.dtype == np.int32 and [int(s[0, 0]) for s in out] == [-1024, 3071, 40000,
                                                                      -40000, 5]
    out = dicom._stack_pixels(ordered[:2], SimpleNamespace(rows=2, columns=3), Path("x"), True)
    assert out.dtype == np.int16 and [int(s[0, 0]) for s in out] == [-1024, 3071]
