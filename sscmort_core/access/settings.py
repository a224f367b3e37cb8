"""Deployment settings: whether login is configured, the role file, the session lifetime,
upload limits and the allowed import roots; and the rule that only localhost runs without
login.

They live in ``.streamlit/secrets.toml`` (git-ignored; ``.streamlit/secrets.toml.example``
shows every one): Streamlit's own ``[auth]`` section for OIDC login, and sscmort's
``[sscmort]`` table::

    [sscmort]
    roles_file = "/etc/sscmort/roles.toml"   # who has which role (see access.roles)
    session_max_hours = 12                   # a login older than this must log in again
    max_upload_file_mb = 1024                # per uploaded file (checked before reading)
    max_upload_total_mb = 2048               # per upload, all its files together
    import_roots = ["/srv/registry"]         # folders a typed import path must lie inside

The app reads them through ``st.secrets``; ``sscmort app`` reads the same file itself (to
refuse to start) with :func:`read_settings_file`. Both end in :func:`settings_from_mapping`.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from sscmort_core.errors import FileTooLargeError, SettingsError

MB = 1024 * 1024
DEFAULT_SESSION_MAX_HOURS = 12.0
DEFAULT_MAX_UPLOAD_FILE_MB = 1024  # as server.maxUploadSize in .streamlit/config.toml
DEFAULT_MAX_UPLOAD_TOTAL_MB = 2048  # as the largest zip expansion imaging accepts (2 GiB)
AUTH_KEYS = ("client_id", "client_secret", "server_metadata_url")
SHARED_AUTH_KEYS = ("redirect_uri", "cookie_secret")
SSCMORT_KEYS = ("roles_file", "session_max_hours", "max_upload_file_mb", "max_upload_total_mb",
                "import_roots")


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int
    max_total_bytes: int


@dataclass(frozen=True)
class Settings:
    """Parsed deployment settings. ``login_problem`` is None when login is fully configured,
    else the sentence naming what is missing (``auth_present``: an ``[auth]`` section exists,
    so the app must not fall back to running without login)."""

    source: str
    auth_present: bool
    login_problem: str | None
    provider: str | None
    roles_file: Path | None
    session_max_hours: float
    upload: UploadLimits
    import_roots: tuple[Path, ...] | None

    @property
    def login_configured(self) -> bool:
        return self.auth_present and self.login_problem is None


def read_settings_file(path: str | Path) -> Settings:
    """Settings from a secrets.toml (none at all when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return settings_from_mapping({}, str(path))
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise SettingsError(f"cannot read the settings: {err}", path) from None
    return settings_from_mapping(data, str(path))


def settings_from_mapping(data: Mapping[str, Any], source: str) -> Settings:
    """Parse the ``[auth]`` and ``[sscmort]`` tables; SettingsError names a bad setting."""
    own = data.get("sscmort", {})
    if not isinstance(own, Mapping):
        raise SettingsError("[sscmort] must be a table", source)
    unknown = sorted(set(own) - set(SSCMORT_KEYS))
    if unknown:
        raise SettingsError(f"unknown setting sscmort.{unknown[0]} (settings: "
                            f"{', '.join(SSCMORT_KEYS)})", source)
    auth = data.get("auth")
    auth_present = isinstance(auth, Mapping) and bool(auth)
    provider, problem = _auth_problem(auth if auth_present else {}, source)
    roles = own.get("roles_file")
    if roles is not None and (not isinstance(roles, str) or not roles.strip()):
        raise SettingsError("sscmort.roles_file must be a path", source)
    if problem is None and roles is None:
        problem = f"sscmort.roles_file is not set in {source}"
    limits = UploadLimits(
        int(_positive(own, "max_upload_file_mb", DEFAULT_MAX_UPLOAD_FILE_MB, source) * MB),
        int(_positive(own, "max_upload_total_mb", DEFAULT_MAX_UPLOAD_TOTAL_MB, source) * MB))
    return Settings(source, auth_present, problem, provider,
                    None if roles is None else Path(roles),
                    _positive(own, "session_max_hours", DEFAULT_SESSION_MAX_HOURS, source),
                    limits, _roots(own.get("import_roots"), source))


def _auth_problem(auth: Mapping[str, Any], source: str) -> tuple[str | None, str | None]:
    """(named provider or None, what is missing or None) of Streamlit's ``[auth]`` section:
    redirect_uri and cookie_secret, and client_id / client_secret / server_metadata_url either
    in [auth] itself or in exactly one [auth.NAME] table."""
    if not auth:
        return None, (f"login is not configured: set [auth] (redirect_uri, cookie_secret, "
                      f"client_id, client_secret, server_metadata_url) and sscmort.roles_file "
                      f"in {source}")
    missing = [f"auth.{k}" for k in SHARED_AUTH_KEYS if not auth.get(k)]
    named = [k for k, v in auth.items() if isinstance(v, Mapping)]
    provider, table = (None, auth) if not named else (named[0], auth[named[0]])
    if len(named) > 1:
        return None, (f"[auth] has {len(named)} providers ({', '.join(named)}); sscmort "
                      f"logs in with one")
    prefix = "auth." if provider is None else f"auth.{provider}."
    missing += [prefix + k for k in AUTH_KEYS if not table.get(k)]
    if missing:
        return provider, f"{', '.join(missing)} not set in {source}"
    return provider, None


def _positive(own: Mapping[str, Any], key: str, default: float, source: str) -> float:
    value = own.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise SettingsError(f"sscmort.{key} must be a positive number, got {value!r}", source)
    return float(value)


def _roots(value: Any, source: str) -> tuple[Path, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError("sscmort.import_roots must be a list of folder paths", source)
    bad = [v for v in value if not Path(v).is_absolute()]
    if bad:
        raise SettingsError(f"sscmort.import_roots: {bad[0]!r} is not an absolute path", source)
    return tuple(Path(v) for v in value)


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach: localhost, 127.0.0.0/8, ::1. The empty
    address (Streamlit's "every interface") and 0.0.0.0 are not."""
    text = address.strip().strip("[]").lower()
    if text == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def check_listen(address: str, settings: Settings) -> None:
    """Refuse to serve beyond localhost without login (SettingsError naming the setting), and
    refuse a half-configured login anywhere (it must never fall back to no login)."""
    if settings.auth_present and settings.login_problem:
        raise SettingsError(f"login is half configured: {settings.login_problem}")
    if not is_loopback(address) and not settings.login_configured:
        raise SettingsError(f"refusing to listen on {address or 'every interface'} without "
                            f"login: {settings.login_problem}")


def check_upload_sizes(files: Sequence[tuple[str, int]], limits: UploadLimits) -> None:
    """Refuse an upload whose files, by their declared sizes, break a limit, before any byte
    is read (FileTooLargeError naming the file and the setting)."""
    for name, size in files:
        if size > limits.max_file_bytes:
            raise FileTooLargeError(
                f"{_mb(size)} is over the per-file upload limit of "
                f"{_mb(limits.max_file_bytes)} (sscmort.max_upload_file_mb)", name)
    total = sum(size for _, size in files)
    if total > limits.max_total_bytes:
        raise FileTooLargeError(
            f"the upload's {len(files)} files hold {_mb(total)}, over the per-upload limit of "
            f"{_mb(limits.max_total_bytes)} (sscmort.max_upload_total_mb)")


def _mb(n: int) -> str:
    return f"{n:,} bytes" if n < MB else f"{n / MB:,.1f} MB"
