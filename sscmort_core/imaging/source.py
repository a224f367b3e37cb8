"""The original series' headers, kept in memory so results can be sent back to the PACS the
series came from, as DICOM objects that reference it (issue 15).

De-identification normally drops every UID and the patient's identifiers. A
:class:`SourceSeries` holds them, for one purpose only: a scan fetched from a PACS in this
process (one CLI command, one app session), whose results the user asks to store back there.
It is never written to the store, a log or the screen (its repr shows a slice count), and it
lives only as long as the caller keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from sscmort_core.imaging.dicom import (
    DicomHeader,
    choose_series,
    group_series,
    read_header,
    stack_geometry,
)
from sscmort_core.imaging.pixels import PIXEL_DATA_TAG
from sscmort_core.imaging.reader import list_folder


@dataclass(frozen=True)
class SourceSeries:
    """Headers of the series the reader chose (no pixel data), sorted along the slice normal.

    Identifying: patient module, study / series / instance UIDs. Memory only.
    """

    headers: tuple[Dataset, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.headers:
            raise ValueError("a source series needs at least one header")

    @property
    def study_uid(self) -> str:
        return str(self.headers[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.headers[0].SeriesInstanceUID)

    def __repr__(self) -> str:
        return f"SourceSeries({len(self.headers)} slices)"

    __str__ = __repr__


def _stripped(h: DicomHeader) -> Dataset:
    ds = h.ds
    if PIXEL_DATA_TAG in ds:
        del ds[PIXEL_DATA_TAG]
    return ds


def read_source_series(folder: Path) -> SourceSeries:
    """The headers of the series :func:`~sscmort_core.imaging.read_volume` would choose in
    ``folder`` (same grouping, same choice), sorted along the slice normal."""
    files, _ = list_folder(Path(folder))
    headers = [h for h in (read_header(p, n, folder) for p, n in files)
               if isinstance(h, DicomHeader)]
    chosen, _ = choose_series(group_series(headers), folder)
    geom = stack_geometry(chosen, folder)
    return SourceSeries(tuple(_stripped(chosen[i]) for i in geom.order))
