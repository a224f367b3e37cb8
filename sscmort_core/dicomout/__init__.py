"""Results as standard DICOM objects, with highdicom: a Segmentation of the lung mask (and the
ILD mask) (:mod:`.seg`), a Comprehensive 3D SR measurement report, TID 1500, of the QCT
metrics and the per-horizon risks with their model ids (:mod:`.sr`), and, when the source
series' UIDs were not kept, a de-identified CT series for them to reference (:mod:`.ct`).
Codes in :mod:`.codes`; who the objects belong to in :mod:`.identity`.

Pure: arrays, metrics and predictions in, pydicom datasets out; nothing here reads the store
or talks to a PACS (the pipeline does, :mod:`sscmort_core.pipeline.export_dicom`). Every
object's series description says "research use only".

May import: the ground floor (errors, predictions), imaging (source headers, volume
geometry), lungs (QCT metrics and versions), numpy, pydicom, highdicom.
"""
