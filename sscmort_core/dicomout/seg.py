"""DICOM Segmentation (binary) of the lungs, and of the ILD estimate when there is one.

The masks are given in the canonical orientation of the volume the reader made
(:mod:`sscmort_core.imaging.volume`); highdicom places each frame in patient space from that
geometry and matches it to the source image at the same position, so the source series may
be stored in any slice order (head first or feet first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from sscmort_core.dicomout import codes
from sscmort_core.dicomout.ct import MANUFACTURER, RESEARCH, description
from sscmort_core.errors import DicomExportError
from sscmort_core.imaging.volume import Volume
from sscmort_core.lungs import lung_mask_version, qct_method_version

SEG_SERIES_NUMBER = 9002
LUNG_SEGMENT, ILD_SEGMENT = 1, 2


@dataclass(frozen=True)
class Segment:
    """One segment: its number, label and codes, and the (z, y, x) bool mask."""

    number: int
    label: str
    category: hd.sr.CodedConcept
    kind: hd.sr.CodedConcept
    algorithm: str
    version: str
    mask: np.ndarray


def lung_segments(lung_mask: np.ndarray, ild_mask: np.ndarray | None) -> list[Segment]:
    """Segment 1 the lungs; segment 2 the ILD estimate when it holds any voxel."""
    out = [Segment(LUNG_SEGMENT, "Lungs", codes.ANATOMICAL_STRUCTURE, codes.LUNG,
                   "sscmort lung mask", lung_mask_version(), lung_mask.astype(bool))]
    if ild_mask is not None and ild_mask.any():
        out.append(Segment(ILD_SEGMENT, "ILD (estimated)", codes.ABNORMAL_STRUCTURE, codes.ILD,
                           "sscmort ILD estimate", qct_method_version(), ild_mask.astype(bool)))
    return out


def _geometry(volume: Volume, array: np.ndarray, frame_of_reference_uid: str) -> hd.Volume:
    """``array`` (z, y, x, S) placed in patient space by an explicit affine: array axis 0 (z)
    steps spacing_z along the volume's z axis, axis 1 (y) and axis 2 (x) likewise, from the
    origin. (``hd.Volume.from_attributes`` would stack frames along -(row x column), the
    opposite of the canonical z, so it is not used.)"""
    d = np.asarray(volume.direction, dtype=np.float64).reshape(3, 3)  # columns: x, y, z axes
    dz, dy, dx = volume.spacing_mm
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = dz * d[:, 2], dy * d[:, 1], dx * d[:, 0]
    affine[:3, 3] = volume.origin_mm
    return hd.Volume(array=array, affine=affine, coordinate_system="PATIENT",
                     frame_of_reference_uid=frame_of_reference_uid,
                     channels={"SegmentNumber": list(range(1, array.shape[-1] + 1))})


def segmentation(source_images: Sequence[Dataset], volume: Volume, segments: Sequence[Segment],
                 *, synthetic: bool, software_version: str) -> hd.seg.Segmentation:
    """A binary DICOM SEG of ``segments`` over ``source_images`` (single-frame CT datasets,
    pixel data not needed). Geometry from ``volume`` (its spacing, origin and direction)."""
    if not segments or not segments[0].mask.any():
        raise DicomExportError("the lung mask is empty, so there is nothing to encode")
    shape = volume.hu.shape
    if any(s.mask.shape != shape for s in segments):
        raise DicomExportError(f"a mask's shape differs from the volume's {shape}")
    stacked = np.stack([s.mask for s in segments], axis=-1).astype(np.uint8)  # (z, y, x, S)
    for_uid = str(source_images[0].FrameOfReferenceUID)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=s.number, segment_label=s.label, segmented_property_category=s.category,
        segmented_property_type=s.kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=s.algorithm, family=codes.MORPHOLOGICAL_OPERATIONS, version=s.version))
        for s in segments]
    seg = hd.seg.Segmentation(
        source_images=list(source_images), pixel_array=_geometry(volume, stacked, for_uid),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="sscmort",
        software_versions=software_version, device_serial_number="0",
        content_label="LUNGS", content_description=f"Lung and ILD masks; {RESEARCH}",
        series_description=description("lung and ILD masks", synthetic),
        omit_empty_frames=True)
    return seg
