"""Named errors. Each carries the file (or store) it concerns and one readable reason.

The CLI and the pages turn any :class:`SscmortError` into one sentence via ``str(err)``;
they never show a traceback for these.
"""

from __future__ import annotations

from pathlib import Path


class SscmortError(Exception):
    """Base class: ``path`` names the file concerned (may be None), ``reason`` says what is
    wrong."""

    def __init__(self, reason: str, path: str | Path | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason


# --- store -------------------------------------------------------------------------------
class StoreError(SscmortError):
    """Anything wrong with the DuckDB store file."""


class StoreLockedError(StoreError):
    """Another process holds the store file open for writing."""


class SchemaTooNewError(StoreError):
    """The store was written by a newer sscmort; we refuse to migrate down."""


# --- data / labels -------------------------------------------------------------------------
class DataError(SscmortError):
    """Inconsistent cohort data (e.g. a death date before a scan date)."""


# --- input files (imaging) -------------------------------------------------------------------
class InputError(SscmortError):
    """A user-supplied file cannot be used. Subclasses name the problem."""


class NotACTSeriesError(InputError):
    pass


class NotAxialError(InputError):
    pass


class TooFewSlicesError(InputError):
    pass


class UnevenSpacingError(InputError):
    pass


class DuplicateSliceError(InputError):
    pass


class InconsistentGeometryError(InputError):
    pass


class ImplausibleHUError(InputError):
    pass


class UnsupportedFormatError(InputError):
    pass


class UnsafeArchiveError(InputError):
    pass


class FileTooLargeError(InputError):
    pass


# --- models ------------------------------------------------------------------------------------
class ModelError(SscmortError):
    """A model file or card is missing, tampered with or inconsistent."""


class ChecksumMismatchError(ModelError):
    pass


# --- evaluation --------------------------------------------------------------------------------
class MetricInputError(SscmortError):
    """Metric inputs cannot give a meaningful value (e.g. no positives at a horizon)."""


class InputShapeError(MetricInputError):
    """Metric inputs are not 1-D arrays of one common length."""


class NonFiniteError(MetricInputError):
    """A score, probability or time contains NaN or infinity."""


class NotBinaryError(MetricInputError):
    """A label or event array holds values other than 0 and 1."""


class ProbabilityRangeError(MetricInputError):
    """A predicted probability lies outside [0, 1]."""


class SingleClassError(MetricInputError):
    """Only one outcome class is present, so a discrimination metric is undefined."""


class NoPositivesError(SingleClassError):
    """No positive (e.g. no death at this horizon)."""


class NoNegativesError(SingleClassError):
    """No negative (e.g. nobody known alive at this horizon)."""


class NoComparablePairsError(MetricInputError):
    """A concordance index has no comparable pair (e.g. every time is censored)."""


class CalibrationFitError(MetricInputError):
    """The logistic recalibration fit does not converge (e.g. perfect separation)."""


# --- input files (imaging), more specific ------------------------------------------------------
class TruncatedFileError(UnsupportedFormatError):
    """A DICOM file is cut short or corrupt (its header or pixel data cannot be read whole)."""


class NonFiniteHUError(ImplausibleHUError):
    """A volume holds NaN or infinite voxel values (e.g. a float NIfTI written with NaN)."""


class EmptyMaskError(InputError):
    """A lung mask has no voxels, so nothing can be measured or sampled from it."""


class RadiomicsParamsError(SscmortError):
    """The radiomics parameter file is missing, unreadable or not valid for pyradiomics."""


class UnknownModelError(ModelError):
    """A model id asked for is not registered in the store."""


class NoPredictionsError(ModelError):
    """No registered model has out-of-fold predictions to evaluate."""


# --- pixel data and compressed frames (issue 13: clean refusals) -----------------------------
class PixelDataSizeError(InconsistentGeometryError):
    """A DICOM header's image size does not match the length of its pixel data."""


class VoxelLimitError(FileTooLargeError):
    """The headers describe more voxels than sscmort reads (checked before any allocation)."""


class CorruptPixelDataError(TruncatedFileError):
    """A compressed frame cannot be decoded by the decoders of its syntax: the data is corrupt."""


# --- PACS (DICOMweb) ----------------------------------------------------------------------------
class PacsError(SscmortError):
    """A PACS could not be used; ``path`` names the PACS address (never credentials)."""


class PacsUnavailableError(PacsError):
    """Nothing answers at the PACS address (down, wrong host or port, refused)."""


class PacsTimeoutError(PacsError):
    """The PACS accepted the connection but did not answer in time."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials (401) or the action (403)."""


class PacsNotFoundError(PacsError):
    """The PACS has no such study, series or service path (404)."""


class PacsResponseError(PacsError):
    """The PACS answered with something unusable: a truncated multipart body, not DICOM, or an
    unexpected status."""


class PacsTLSError(PacsError):
    """The PACS's TLS certificate could not be verified."""


class DicomExportError(SscmortError):
    """Results cannot be written as DICOM (e.g. the scan has no lungs to encode)."""

# --- executors (local pool, Ray) ---------------------------------------------------------------
class ExecutorError(SscmortError):
    """The chosen executor cannot run: a bad setting, Ray not installed, a cluster that does not
    answer, or workers that lack sscmort's dependencies."""


class WorkerLostError(SscmortError):
    """A task's worker process died more often than the retries allow, where the stage cannot
    record the item as failed and go on."""


# --- registry import (round 2) -----------------------------------------------------------------
class SeriesNotFoundError(InputError):
    """The manifest's series_uid / series_description picks no series (or several) of a study."""


class ManifestError(DataError):
    """A registry manifest is refused: ``problems`` holds one ``file:row: column: problem`` line
    per problem found (never a cell's value); ``reason`` says how many and that nothing was
    written."""

    def __init__(self, reason: str, path: str | Path | None = None,
                 problems: tuple[str, ...] = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(reason, path)


# --- access: login, roles, deployment settings (issue 17) -------------------------------------
class AccessError(SscmortError):
    """Who may do what: a session, identity, role or deployment setting refuses an action."""


class NotLoggedInError(AccessError):
    """Login is required and this session has no logged-in identity."""


class IdentityError(AccessError):
    """The identity of the session lacks what sscmort needs (e-mail, issue time) or is not
    credible (unverified e-mail, issued in the future): treated as a forged session."""


class SessionExpiredError(AccessError):
    """The login is older than the configured session lifetime: log in again."""


class NotAuthorisedError(AccessError):
    """The user's role does not allow the page or action (or the user has no role at all)."""


class RoleConfigError(AccessError):
    """The role file is missing, not TOML, or maps someone to an unknown role."""


class SettingsError(AccessError):
    """A deployment setting (``[sscmort]`` / ``[auth]`` in secrets.toml) is missing or invalid;
    the message names the setting."""


class PathNotAllowedError(AccessError):
    """A path typed by a user lies outside the allowed roots (e.g. ``sscmort.import_roots``)."""
