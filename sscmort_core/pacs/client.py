"""A DICOMweb PACS client: QIDO-RS search, WADO-RS retrieve of one series streamed to a folder,
STOW-RS store, with dicomweb-client over one ``requests`` session.

Every request failure becomes one named :class:`~sscmort_core.errors.PacsError` naming the
PACS address. A multipart body must end with its closing boundary: a body cut short raises
:class:`PacsResponseError` (dicomweb-client alone would hand the partial last part on).

Retrieval asks for the transfer syntax the objects are stored in (``transfer-syntax=*``): a
JPEG 2000 series arrives as JPEG 2000 and the reader decodes it, so the PACS need not
transcode. :func:`fetch_series` retrieves into a temporary folder that is always removed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import tempfile
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

import requests
import urllib3
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from sscmort_core.errors import (
    DataError,
    NotACTSeriesError,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsResponseError,
    PacsTimeoutError,
    PacsTLSError,
    PacsUnavailableError,
)
from sscmort_core.pacs.credentials import PacsCredentials, load_credentials

log = logging.getLogger("sscmort.pacs")

DEFAULT_TIMEOUT_S = 60.0  # per request: connect, and each wait for data
CONNECT_TIMEOUT_S = 10.0
CHUNK_BYTES = 1 << 20
RETRIEVE_MEDIA_TYPES = (("application/dicom", "*"),)  # as stored: no transcoding asked
STUDY_FIELDS = ("StudyDate", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                "NumberOfStudyRelatedInstances", "PatientID", "PatientName")
SERIES_FIELDS = ("Modality", "SeriesDescription", "SeriesNumber", "BodyPartExamined",
                 "NumberOfSeriesRelatedInstances")


class _TruncatedBody(Exception):
    """The multipart body ended before its closing boundary."""


@dataclass(frozen=True)
class SeriesInfo:
    """One series as QIDO-RS lists it."""

    study_uid: str
    series_uid: str
    modality: str | None
    description: str | None
    series_number: int | None = None
    body_part: str | None = None
    n_instances: int | None = None


@dataclass(frozen=True)
class StudyInfo:
    """One study as QIDO-RS lists it, with its series once asked for (:meth:`with_series`).

    ``identifiers`` (the patient's name and id) are kept only to scrub free text before it is
    shown; they never appear in ``repr`` and are never stored.
    """

    study_uid: str
    study_date: dt.date | None
    description: str | None
    modalities: tuple[str, ...]
    n_series: int | None
    n_instances: int | None
    series: tuple[SeriesInfo, ...] = ()
    identifiers: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class StoreResult:
    """What a STOW-RS store did: SOP instance UIDs the PACS accepted."""

    n_stored: int
    sop_instance_uids: tuple[str, ...]


def safe_url(url: str) -> str:
    """The address as it may be shown: scheme, host, port and path (no query, no userinfo)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError("the PACS address must be an http:// or https:// URL of its DICOMweb "
                        "root (e.g. https://pacs.example.org/dicom-web)", safe_url(url) or None)
    if parts.username or parts.password:
        raise PacsError("the PACS address carries credentials; put them in the environment "
                        "(SSCMORT_PACS_USERNAME / _PASSWORD / _TOKEN) or .streamlit/secrets.toml "
                        "instead", safe_url(url))
    return url.rstrip("/")


class _StrictClient(DICOMwebClient):
    """dicomweb-client whose multipart decoding insists on the closing boundary."""

    def _decode_multipart_message(self, response: requests.Response,
                                  stream: bool) -> Iterator[bytes]:
        content_type = response.headers.get("content-type", "")
        media_type, *params = [p.strip() for p in content_type.split(";")]
        if media_type.lower() != "multipart/related":
            raise ValueError(f"unexpected media type {media_type!r}")
        boundary = next((v.strip('"') for k, _, v in (p.partition("=") for p in params)
                         if k.strip().lower() == "boundary"), None)
        if not boundary:
            raise ValueError("a multipart body without a boundary")
        yield from _split_parts(response, boundary.encode("utf-8"), stream, self._chunk_size)


def _split_parts(response: requests.Response, boundary: bytes, stream: bool,
                 chunk_size: int) -> Iterator[bytes]:
    """The contents of each part (headers removed) of a multipart body, as each completes;
    raises _TruncatedBody when the body ends before ``--boundary--``."""
    marker, delimiter = b"--" + boundary, b"\r\n--" + boundary
    buf, started, closed = bytearray(), False, False
    with response:
        chunks = response.iter_content(chunk_size=chunk_size) if stream else [response.content]
        for chunk in chunks:
            buf += chunk
            if not started:
                at = buf.find(marker)
                if at < 0:
                    continue
                del buf[: at + len(marker)]
                started = True
            while len(buf) >= 2:
                if buf[:2] == b"--":
                    closed = True
                    break
                at = buf.find(delimiter)
                if at < 0:
                    break
                part = bytes(buf[:at])
                del buf[: at + len(delimiter)]
                head_end = part.find(b"\r\n\r\n")
                if head_end < 0:
                    raise ValueError("a multipart part without headers")
                yield part[head_end + 4:]
            if closed:
                break
    if not closed:
        raise _TruncatedBody()


def _one_date(text: str, whole: str) -> str:
    try:
        day = (dt.date.fromisoformat(text) if "-" in text
               else dt.datetime.strptime(text, "%Y%m%d").date())
    except ValueError:
        raise DataError(f"not a date in {whole!r} (YYYY-MM-DD, or a range "
                        "2020-01-01..2020-12-31)") from None
    return day.strftime("%Y%m%d")


def dicom_date_range(text: str) -> str:
    """A date or range as typed (``2020-01-15``, ``20200115``, ``2020-01-01..2020-12-31``,
    ``20200101-20201231``, an open end ``2020-01-01..``) as a DICOM date or date range for
    QIDO-RS. Raises DataError on anything else."""
    t = text.strip()
    if ".." in t:
        lo, hi = t.split("..", 1)
    elif re.fullmatch(r"\d{8}-\d{8}|\d{8}-|-\d{8}", t):
        lo, hi = t.split("-", 1)
    else:
        return _one_date(t, text)
    if not lo and not hi:
        raise DataError(f"an empty date range: {text!r}")
    return "-".join(_one_date(x, text) if x else "" for x in (lo, hi))


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def _date(text: str | None) -> dt.date | None:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date() if text else None
    except ValueError:
        return None


def _series(study_uid: str, row: dict[str, Any]) -> SeriesInfo:
    ds = Dataset.from_json(row)
    return SeriesInfo(study_uid, str(ds.get("SeriesInstanceUID", "")), _text(ds, "Modality"),
                      _text(ds, "SeriesDescription"), _int_or_none(ds.get("SeriesNumber")),
                      _text(ds, "BodyPartExamined"),
                      _int_or_none(ds.get("NumberOfSeriesRelatedInstances")))


def _study(row: dict[str, Any]) -> StudyInfo:
    ds = Dataset.from_json(row)
    mods = ds.get("ModalitiesInStudy") or []
    mods = [mods] if isinstance(mods, str) else list(mods)
    idents = tuple(str(v) for v in (ds.get("PatientName"), ds.get("PatientID")) if v)
    return StudyInfo(str(ds.get("StudyInstanceUID", "")), _date(_text(ds, "StudyDate")),
                     _text(ds, "StudyDescription"), tuple(str(m) for m in mods),
                     _int_or_none(ds.get("NumberOfStudyRelatedSeries")),
                     _int_or_none(ds.get("NumberOfStudyRelatedInstances")), (), idents)


class PacsClient:
    """One PACS over DICOMweb. ``url`` is its DICOMweb root (Orthanc: ``.../dicom-web``).

    TLS certificates are verified (against ``credentials.ca_bundle`` when given, else the
    system's store); there is no switch to turn that off. Environment proxies and .netrc are
    not used, so no credential arrives from elsewhere unseen.
    """

    def __init__(self, url: str, credentials: PacsCredentials | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = _check_url(url)
        self.shown_url = safe_url(self.url)
        self.timeout_s = float(timeout_s)
        creds = credentials if credentials is not None else load_credentials()
        session = requests.Session()
        session.trust_env = False
        session.verify = str(creds.ca_bundle) if creds.ca_bundle else True
        if not creds.for_url(self.url):
            log.debug("credentials are bound to another PACS address; none sent")
        elif creds.token:
            session.headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.username:
            session.auth = (creds.username, creds.password or "")
        self._session = session
        self._client = _StrictClient(self.url, session=session, chunk_size=CHUNK_BYTES,
                                     timeout=(min(CONNECT_TIMEOUT_S, self.timeout_s),
                                              self.timeout_s))
        self._client.set_http_retry_params(retry=False)

    def __repr__(self) -> str:
        return f"PacsClient({self.shown_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PacsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- errors ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn every failure of a request into one named PacsError saying ``what`` failed."""
        where = self.shown_url
        try:
            yield
        except PacsError:
            raise
        except requests.exceptions.SSLError:
            raise PacsTLSError(f"{what}: the PACS's TLS certificate could not be verified; if a "
                               "hospital CA signed it, name the CA file in SSCMORT_PACS_CA_BUNDLE "
                               "or ca_bundle in .streamlit/secrets.toml", where) from None
        except requests.exceptions.Timeout:
            raise self._timeout(what) from None
        except _TruncatedBody:
            raise PacsResponseError(f"{what}: the PACS's answer was cut short (the multipart body "
                                    "ends before its closing boundary); nothing was kept",
                                    where) from None
        except requests.exceptions.ChunkedEncodingError:
            raise PacsResponseError(f"{what}: the PACS's answer was cut short (the connection "
                                    "closed mid-transfer); nothing was kept", where) from None
        except requests.exceptions.ConnectionError as exc:
            if any(isinstance(a, urllib3.exceptions.ReadTimeoutError) for a in exc.args):
                raise self._timeout(what) from None
            raise PacsUnavailableError(f"{what}: nothing answers at this address (is the PACS "
                                       "running, and the host and port right?)", where) from None
        except requests.exceptions.HTTPError as exc:
            raise self._status_error(what, exc.response) from None
        except (ValueError, KeyError, InvalidDicomError, requests.exceptions.RequestException,
                EOFError) as exc:
            log.debug("PACS answer not usable (%s)", type(exc).__name__)
            raise PacsResponseError(f"{what}: the PACS's answer is not valid DICOMweb "
                                    f"({type(exc).__name__})", where) from None

    def _timeout(self, what: str) -> PacsTimeoutError:
        return PacsTimeoutError(f"{what}: the PACS did not answer within {self.timeout_s:g} s "
                                "(slow or overloaded; try again or raise --timeout)",
                                self.shown_url)

    def _status_error(self, what: str, response: requests.Response | None) -> PacsError:
        code = response.status_code if response is not None else 0
        where = self.shown_url
        if code == HTTPStatus.UNAUTHORIZED:
            return PacsAuthError(f"{what}: the PACS refused the credentials (401 Unauthorized); "
                                 "set SSCMORT_PACS_USERNAME / _PASSWORD or _TOKEN, or [pacs] in "
                                 ".streamlit/secrets.toml", where)
        if code == HTTPStatus.FORBIDDEN:
            return PacsAuthError(f"{what}: the PACS does not allow this account to do that "
                                 "(403 Forbidden)", where)
        if code == HTTPStatus.NOT_FOUND:
            return PacsNotFoundError(f"{what}: not found on the PACS (404); check the DICOMweb "
                                     "root in the address and the UIDs", where)
        reason = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "error"
        return PacsResponseError(f"{what}: the PACS answered {code} {reason}", where)

    # --- QIDO-RS ---------------------------------------------------------------------------
    def search_studies(self, *, patient_id: str | None = None, accession: str | None = None,
                       study_date: str | None = None, limit: int = 100) -> list[StudyInfo]:
        """Studies matching the filters (``study_date``: a DICOM date or range, e.g.
        ``20200101-20201231``), without their series."""
        filters = {k: v for k, v in (("PatientID", patient_id), ("AccessionNumber", accession),
                                     ("StudyDate", study_date)) if v}
        with self._errors("searching for studies"):
            rows = self._client.search_for_studies(search_filters=filters,
                                                   fields=list(STUDY_FIELDS), limit=limit)
            return [_study(r) for r in rows]

    def series_of(self, study_uid: str) -> list[SeriesInfo]:
        """Every series of one study (empty when the PACS has no such study)."""
        with self._errors("listing the study's series"):
            rows = self._client.search_for_series(study_instance_uid=study_uid,
                                                  fields=list(SERIES_FIELDS))
            return [_series(study_uid, r) for r in rows]

    def with_series(self, study: StudyInfo) -> StudyInfo:
        return StudyInfo(study.study_uid, study.study_date, study.description, study.modalities,
                         study.n_series, study.n_instances, tuple(self.series_of(study.study_uid)),
                         study.identifiers)

    def ct_series(self, study_uid: str, series_uid: str | None = None) -> SeriesInfo:
        """The series to fetch: ``series_uid`` (which must be CT), or the study's CT series with
        the most instances. Raises PacsNotFoundError or NotACTSeriesError."""
        series = self.series_of(study_uid)
        if not series:
            raise PacsNotFoundError("no study with this Study Instance UID on the PACS",
                                    self.shown_url)
        if series_uid is not None:
            chosen = next((s for s in series if s.series_uid == series_uid), None)
            if chosen is None:
                raise PacsNotFoundError("the study has no series with this Series Instance UID",
                                        self.shown_url)
            if (chosen.modality or "").upper() != "CT":
                kind = chosen.modality or "of unknown modality"
                raise NotACTSeriesError(f"the series is {kind}, not CT; choose a CT series",
                                        self.shown_url)
            return chosen
        cts = [s for s in series if (s.modality or "").upper() == "CT"]
        if not cts:
            kinds = ", ".join(sorted({s.modality or "unknown" for s in series}))
            raise NotACTSeriesError(f"the study holds no CT series (only {kinds})",
                                    self.shown_url)
        return max(cts, key=lambda s: (s.n_instances or 0, -(s.series_number or 0)))

    # --- WADO-RS ---------------------------------------------------------------------------
    def retrieve_series(self, study_uid: str, series_uid: str, folder: Path, *,
                        progress: Callable[[int], None] | None = None) -> int:
        """Stream one series into ``folder`` (one Part-10 file per instance, as stored on the
        PACS); return the number of files. On any failure the files written so far are
        removed before the error is raised."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        try:
            with self._errors("retrieving the series"):
                parts = self._client.iter_series(study_uid, series_uid,
                                                 media_types=RETRIEVE_MEDIA_TYPES)
                for ds in parts:
                    path = folder / f"{len(written):05d}.dcm"
                    ds.save_as(path, enforce_file_format=True)
                    written.append(path)
                    if progress is not None:
                        progress(len(written))
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
        if not written:
            raise PacsNotFoundError("the PACS sent no instances for this series",
                                    self.shown_url)
        log.info("retrieved %d instances", len(written))
        return len(written)

    # --- STOW-RS ---------------------------------------------------------------------------
    def store(self, datasets: Sequence[Dataset]) -> StoreResult:
        """Store DICOM objects (STOW-RS); raises PacsResponseError when any is refused."""
        with self._errors("storing to the PACS"):
            answer = self._client.store_instances(list(datasets))
        failed = answer.get("FailedSOPSequence") or []
        if failed:
            codes = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise PacsResponseError(f"the PACS refused {len(failed)} of {len(datasets)} objects "
                                    f"(failure reason {', '.join(codes)})", self.shown_url)
        stored = answer.get("ReferencedSOPSequence") or []
        uids = tuple(str(item.ReferencedSOPInstanceUID) for item in stored
                     if "ReferencedSOPInstanceUID" in item)
        return StoreResult(len(uids) or len(datasets), uids)


def connect(url: str, *, credentials: PacsCredentials | None = None,
            timeout_s: float = DEFAULT_TIMEOUT_S) -> PacsClient:
    """A client for the PACS at ``url``; credentials from the environment or the secrets file
    unless given."""
    return PacsClient(url, credentials, timeout_s=timeout_s)


@contextlib.contextmanager
def fetch_series(client: PacsClient, study_uid: str, series_uid: str, *,
                 progress: Callable[[int], None] | None = None) -> Iterator[Path]:
    """Retrieve one series into a temporary folder and yield its path; the folder and every
    file in it are removed when the block ends, however it ends.

    The one building block for every caller that pulls a series from a PACS (``sscmort pacs
    fetch``, the upload page, a manifest row naming a study / series UID)::

        with fetch_series(client, study_uid, series_uid) as folder:
            analysis = analyse_path(folder, secret=...)
    """
    with tempfile.TemporaryDirectory(prefix="sscmort-pacs-") as tmp:
        client.retrieve_series(study_uid, series_uid, Path(tmp), progress=progress)
        yield Path(tmp)

