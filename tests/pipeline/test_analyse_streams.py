"""The upload path of the pages (issue 17): ``analyse_streams`` checks the declared sizes before
reading a byte, copies each stream to a temporary folder in chunks, refuses a stream longer
than it declared, analyses from disk, and removes the folder whatever happens."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest

from sscmort_core.access.settings import UploadLimits
from sscmort_core.errors import FileTooLargeError
from sscmort_core.pipeline import analyse
from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.dicom import write_dicom_series
from sscmort_core.synthetic.phantom import phantom_for_scan

ROOMY = UploadLimits(max_file_bytes=10 << 20, max_total_bytes=200 << 20)


class _Tracked(io.BytesIO):
    """A stream that records the sizes of the reads made of it."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.reads.append(len(chunk))
        return chunk


def _upload_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("sscmort-upload-*")}


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> list[Path]:
    row = generate_cohort(n_patients=2, seed=5).scans.to_dict(orient="records")[0]
    return write_dicom_series(phantom_for_scan(row), tmp_path_factory.mktemp("s") / "s")


def test_a_series_is_read_from_disk_in_chunks_and_the_folder_removed(series, monkeypatch):
    monkeypatch.setattr(analyse, "CHUNK_BYTES", 4096)  # several chunks a file
    streams = [(f.name, f.stat().st_size, _Tracked(f.read_bytes())) for f in series]
    before = _upload_folders()
    got = analyse.analyse_streams(streams, limits=ROOMY, secret=b"k" * 32)
    assert got.lungs.volume_ml > 0 and got.report.n_files == len(series)
    assert _upload_folders() == before
    assert all(max(s.reads) <= 4096 and len(s.reads) > 1 for _, _, s in streams)


def test_declared_sizes_over_a_limit_are_refused_before_a_byte_is_read(series):
    stream = _Tracked(series[0].read_bytes())
    tight = UploadLimits(max_file_bytes=1000, max_total_bytes=10 << 20)
    with pytest.raises(FileTooLargeError, match="sscmort.max_upload_file_mb"):
        analyse.analyse_streams([(series[0].name, series[0].stat().st_size, stream)],
                                limits=tight, secret=None)
    assert stream.reads == []


def test_a_stream_longer_than_it_declared_is_refused_and_the_folder_removed(series):
    data = series[0].read_bytes()
    before = _upload_folders()
    with pytest.raises(FileTooLargeError, match="more than the 100 bytes it declared") as err:
        analyse.analyse_streams([("IM1.dcm", 100, io.BytesIO(data))], limits=ROOMY,
                                secret=None)
    assert "IM1.dcm" in str(err.value)
    assert _upload_folders() == before
