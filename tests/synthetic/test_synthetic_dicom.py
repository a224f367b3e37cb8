"""Tests of sscmort_core.synthetic.dicom: DICOM series, scout and NIfTI round trips.

Round trips go through two independent readers (pydicom and SimpleITK/GDCM) and must give
back the phantom's int16 HU exactly, its spacing and its slice order.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from sscmort_core.synthetic import (
    DEFAULT_PHI,
    make_phantom,
    write_dicom_series,
    write_localizer,
    write_nifti,
)


@pytest.fixture(scope="module")
def phantom():
    # 16 slices keep the test fast; geometry and values are those of any phantom
    return make_phantom(ild_extent_pct=25.0, kernel="smooth", noise_hu=20.0,
                        slice_thickness_mm=6.0, seed=8, shape=(16, 64, 64),
                        scanner="Voxelwerk Helix 128")


def _read_sorted_with_pydicom(folder: Path) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """Axial images sorted by z position, and their HU volume (z, y, x)."""
    datasets = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    axial = [d for d in datasets if "LOCALIZER" not in d.ImageType]
    axial.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    hu = np.stack([d.pixel_array.astype(np.int32) * int(d.RescaleSlope)
                   + int(d.RescaleIntercept) for d in axial])
    return axial, hu


def _read_with_sitk(folder: Path, series_uid: str) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    return reader.Execute()


def test_series_tags(phantom, tmp_path):
    paths = write_dicom_series(phantom, tmp_path, study_date=dt.date(2014, 3, 9), seed=1)
    assert len(paths) == phantom.shape[0] and all(p.exists() for p in paths)
    datasets = [pydicom.dcmread(p) for p in paths]
    first = datasets[0]
    assert first.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert first.SOPClassUID == CTImageStorage == "1.2.840.10008.5.1.4.1.1.2"
    assert first.Modality == "CT" and first.BodyPartExamined == "CHEST"
    assert list(first.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in first.PixelSpacing] == [phantom.spacing_mm[1],
                                                     phantom.spacing_mm[2]]
    assert float(first.SliceThickness) == 6.0
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, -1024.0)
    assert first.PixelRepresentation == 0 and first.BitsAllocated == 16
    assert first.ConvolutionKernel == "SMOOTH"
    assert (first.Manufacturer, first.ManufacturerModelName) == ("Voxelwerk", "Helix 128")
    assert first.StudyDate == first.SeriesDate == "20140309"
    assert str(first.PatientName) == DEFAULT_PHI["PatientName"]
    assert first.InstitutionName == DEFAULT_PHI["InstitutionName"]
    uids = {d.SOPInstanceUID for d in datasets}
    assert len(uids) == len(datasets) and all(UID(u).is_valid for u in uids)
    assert len({d.SeriesInstanceUID for d in datasets}) == 1
    assert len({d.StudyInstanceUID for d in datasets}) == 1
    z = [float(d.ImagePositionPatient[2]) for d in datasets]  # paths are in slice order
    assert np.allclose(np.diff(z), phantom.spacing_mm[0])
    assert [d.InstanceNumber for d in datasets] == list(range(1, len(datasets) + 1))


@pytest.mark.parametrize("order", ["normal", "shuffled", "reversed"])
def test_pydicom_round_trip(phantom, tmp_path, order):
    write_dicom_series(phantom, tmp_path, seed=2, instance_order=order)
    axial, hu = _read_sorted_with_pydicom(tmp_path)
    assert np.array_equal(hu, phantom.hu)
    z = [float(d.ImagePositionPatient[2]) for d in axial]
    assert np.allclose(np.diff(z), phantom.spacing_mm[0])
    assert np.isclose(z[0], phantom.origin_mm[0])


def test_shuffled_file_names_are_not_in_slice_order(phantom, tmp_path):
    paths = write_dicom_series(phantom, tmp_path, seed=2, instance_order="shuffled")
    assert [p.name for p in paths] != sorted(p.name for p in paths)
    reversed_paths = write_dicom_series(phantom, tmp_path / "r", instance_order="reversed")
    assert [p.name for p in reversed_paths] == sorted((p.name for p in reversed_paths),
                                                      reverse=True)


@pytest.mark.parametrize("order", ["shuffled", "reversed"])
def test_simpleitk_round_trip_with_a_localizer_mixed_in(phantom, tmp_path, order):
    paths = write_dicom_series(phantom, tmp_path, seed=3, instance_order=order)
    scout = write_localizer(tmp_path, phantom=phantom, seed=3)
    series_uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    assert len(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(tmp_path))) == 2
    image = _read_with_sitk(tmp_path, series_uid)
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    assert array.dtype == np.int16
    assert np.array_equal(array, phantom.hu)
    assert np.allclose(image.GetSpacing(), phantom.spacing_mm[::-1])  # (x, y, z)
    assert np.allclose(image.GetOrigin(), phantom.origin_mm[::-1], atol=1e-3)
    assert np.allclose(image.GetDirection(), np.eye(3).ravel())
    scout_ds = pydicom.dcmread(scout)
    assert scout_ds.SeriesInstanceUID != series_uid


def test_localizer_is_a_2d_scout_of_the_same_study(phantom, tmp_path):
    paths = write_dicom_series(phantom, tmp_path, seed=4)
    scout = pydicom.dcmread(write_localizer(tmp_path, phantom=phantom, seed=4))
    axial = pydicom.dcmread(paths[0])
    assert "LOCALIZER" in scout.ImageType and scout.Modality == "CT"
    assert scout.StudyInstanceUID == axial.StudyInstanceUID
    assert scout.SeriesInstanceUID != axial.SeriesInstanceUID
    assert scout.pixel_array.shape == (phantom.shape[0], phantom.shape[2])  # (z, x)
    plain = pydicom.dcmread(write_localizer(tmp_path / "plain", seed=4))
    assert plain.pixel_array.ndim == 2


def test_same_seed_same_bytes_other_seed_other_uids(phantom, tmp_path):
    a = write_dicom_series(phantom, tmp_path / "a", seed=5)
    b = write_dicom_series(phantom, tmp_path / "b", seed=5)
    c = write_dicom_series(phantom, tmp_path / "c", seed=6)
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert pydicom.dcmread(a[0]).StudyInstanceUID != pydicom.dcmread(c[0]).StudyInstanceUID
    assert pydicom.dcmread(a[0]).SeriesInstanceUID != pydicom.dcmread(c[0]).SeriesInstanceUID


def test_phi_is_configurable(phantom, tmp_path):
    custom = {"PatientName": "DOE^JOHN", "PatientID": "MRN123", "AccessionNumber": "A1"}
    ds = pydicom.dcmread(write_dicom_series(phantom, tmp_path / "c", phi=custom)[0])
    assert str(ds.PatientName) == "DOE^JOHN" and ds.PatientID == "MRN123"
    assert "InstitutionName" not in ds  # only the given tags
    assert any("MRN123" in str(elem.value) for elem in ds if elem.tag.is_private)
    bare = pydicom.dcmread(write_dicom_series(phantom, tmp_path / "n", phi={})[0])
    assert "PatientName" not in bare and not any(e.tag.is_private for e in bare)
    with pytest.raises(ValueError):
        write_dicom_series(phantom, tmp_path / "x", phi={"NotAKeyword": "1"})


def test_bad_instance_order_is_refused(phantom, tmp_path):
    with pytest.raises(ValueError):
        write_dicom_series(phantom, tmp_path, instance_order="sideways")


@pytest.mark.parametrize("name", ["volume.nii.gz", "volume.nii"])
def test_nifti_round_trip(phantom, tmp_path, name):
    path = write_nifti(phantom, tmp_path / name)
    image = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(image), phantom.hu)
    assert np.allclose(image.GetSpacing(), phantom.spacing_mm[::-1])  # (x, y, z)
    assert np.allclose(image.GetOrigin(), phantom.origin_mm[::-1], atol=1e-3)
    mask_path = write_nifti(phantom, tmp_path / ("mask_" + name), array=phantom.ild_mask)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path)))
    assert np.array_equal(mask.astype(bool), phantom.ild_mask)


def test_nifti_refuses_wrong_name_or_shape(phantom, tmp_path):
    with pytest.raises(ValueError):
        write_nifti(phantom, tmp_path / "volume.mha")
    with pytest.raises(ValueError):
        write_nifti(phantom, tmp_path / "v.nii.gz", array=np.zeros((2, 2, 2)))
