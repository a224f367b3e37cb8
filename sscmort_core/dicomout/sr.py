"""DICOM Comprehensive 3D SR: a TID 1500 measurement report of one scan.

* one volumetric ROI group (TID 1411) for the lungs, referencing segment 1 of the SEG, with
  the QCT metrics (lung volume, mean lung density, skewness, excess kurtosis, HAA %, ILD
  extent %), the QCT method version as the algorithm;
* one measurement group (TID 1501) per model, tracked by the model id, with the 1-, 3- and
  5-year mortality risks in percent and the model id / kind as the algorithm.
"""

from __future__ import annotations

from typing import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.uid import generate_uid

from sscmort_core.dicomout import codes
from sscmort_core.dicomout.ct import MANUFACTURER, description
from sscmort_core.dicomout.seg import LUNG_SEGMENT
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.lungs import QCTMetrics, qct_method_version
from sscmort_core.predictions import RiskPrediction

SR_SERIES_NUMBER = 9003


def _qct_group(qct: QCTMetrics, seg: hd.seg.Segmentation
               ) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    algorithm = hd.sr.AlgorithmIdentification(name="sscmort QCT", version=qct_method_version())
    measurements = [hd.sr.Measurement(name=concept, value=float(value), unit=unit,
                                      algorithm_id=algorithm)
                    for key, value in qct.to_dict().items()
                    for concept, unit in (codes.QCT_CONCEPTS[key],)]
    source_series = str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                     identifier="lungs (QCT)"),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
            segment_number=LUNG_SEGMENT,
            source_series=hd.sr.SourceSeriesForSegmentation(source_series)),
        finding_type=codes.LUNG, measurements=measurements)


def _risk_group(pred: RiskPrediction, note: str) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    algorithm = hd.sr.AlgorithmIdentification(name=pred.model_id[:64], version=pred.kind)
    measurements = [hd.sr.Measurement(name=codes.risk_concept(h),
                                      value=100.0 * pred.risk(h),
                                      unit=codes.PERCENT, algorithm_id=algorithm)
                    for h in HORIZONS_YEARS]
    label = f"{pred.model_id}: {note}"[:64]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=label),
        measurements=measurements)


def measurement_report(source_images: Sequence[Dataset], seg: hd.seg.Segmentation,
                       qct: QCTMetrics, predictions: Sequence[RiskPrediction], *,
                       prediction_note: str, synthetic: bool,
                       software_version: str) -> hd.sr.Comprehensive3DSR:
    """The SR of one scan. ``prediction_note`` says where the risks come from (out-of-fold,
    or a fresh prediction by the registered models); it tracks each model's group."""
    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="sscmort", manufacturer_name=MANUFACTURER,
            model_name=f"sscmort {software_version}"))
    groups = [_qct_group(qct, seg)] + [_risk_group(p, prediction_note) for p in predictions]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.CT_OF_CHEST, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[*source_images, seg], content=report, series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, series_description=description("QCT and mortality risks",
                                                                  synthetic),
        is_complete=True, is_final=False)
