"""Where PACS credentials come from: the environment first, then ``.streamlit/secrets.toml``.

Environment: ``SSCMORT_PACS_USERNAME`` and ``SSCMORT_PACS_PASSWORD`` (HTTP basic), or
``SSCMORT_PACS_TOKEN`` (a bearer token); ``SSCMORT_PACS_CA_BUNDLE`` names a CA certificate file
for a PACS whose certificate a private CA signed. The secrets file (git-ignored, never
committed) holds the same under a ``[pacs]`` table::

    [pacs]
    username = "sscmort"
    password = "..."
    ca_bundle = "/etc/ssl/hospital-ca.pem"

``SSCMORT_PACS_URL`` (or ``url`` in the table) is the address the upload page offers first
(:func:`default_url`), and binds the credentials to it: they are sent to that scheme, host and
port only, never to another address typed on the page. A value is never logged, shown or put
in an error message; :class:`PacsCredentials` prints only which kind of credential it holds.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from sscmort_core.errors import PacsError

SECRETS_FILE = Path(".streamlit") / "secrets.toml"
ENV_PREFIX = "SSCMORT_PACS_"
KEYS = ("username", "password", "token", "ca_bundle", "url")


@dataclass(frozen=True)
class PacsCredentials:
    """How to authenticate to a PACS. All fields optional; secrets stay out of ``repr``."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    source: str = "none"  # "environment", "secrets file" or "none": where they came from
    url: str | None = None  # when set, the credentials go to this PACS (scheme, host, port) only

    def for_url(self, url: str) -> bool:
        """Whether these credentials may be sent to ``url``: always when no PACS address is
        configured with them, else only to that address's scheme, host and port (so an address
        typed on the page cannot collect them)."""
        return self.url is None or _origin(self.url) == _origin(url)

    @property
    def kind(self) -> str:
        if self.token:
            return "bearer token"
        if self.username:
            return "username and password"
        return "none"

    def __repr__(self) -> str:
        return (f"PacsCredentials(kind={self.kind!r}, ca_bundle={self.ca_bundle!r}, "
                f"source={self.source!r}, url={self.url!r})")

    __str__ = __repr__


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _from_mapping(values: Mapping[str, object], source: str, where: Path | None
                  ) -> PacsCredentials:
    got = {k: values.get(k) for k in KEYS}
    for k, v in got.items():
        if v is not None and not isinstance(v, str):
            raise PacsError(f"the PACS setting {k!r} must be a string", where)
    if got["password"] and not got["username"]:
        raise PacsError("a PACS password is set without a username", where)
    ca = Path(str(got["ca_bundle"])).expanduser() if got["ca_bundle"] else None
    if ca is not None and not ca.is_file():
        raise PacsError(f"the PACS CA bundle {ca} does not exist", where)
    return PacsCredentials(got["username"] or None, got["password"] or None,  # type: ignore[arg-type]
                           got["token"] or None, ca, source,  # type: ignore[arg-type]
                           got["url"] or None)  # type: ignore[arg-type]


def load_credentials(environ: Mapping[str, str] | None = None,
                     secrets_file: Path | None = None) -> PacsCredentials:
    """Credentials from ``environ`` (default ``os.environ``) when any SSCMORT_PACS_* is set,
    else from the ``[pacs]`` table of ``secrets_file`` (default ``.streamlit/secrets.toml`` in
    the working folder) when it exists, else none."""
    environ = os.environ if environ is None else environ
    env = {k: environ.get(ENV_PREFIX + k.upper()) for k in KEYS}
    if any(env.values()):
        return _from_mapping(env, "environment", None)
    path = SECRETS_FILE if secrets_file is None else Path(secrets_file)
    if not path.is_file():
        return PacsCredentials()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        raise PacsError("the secrets file is not valid TOML", path) from None
    table = data.get("pacs")
    if table is None:
        return PacsCredentials()
    if not isinstance(table, dict):
        raise PacsError("[pacs] in the secrets file must be a table", path)
    return _from_mapping(table, "secrets file", path)


def default_url(environ: Mapping[str, str] | None = None,
                secrets_file: Path | None = None) -> str:
    """The PACS address to offer first: ``SSCMORT_PACS_URL``, else ``url`` under ``[pacs]`` in
    the secrets file, else empty."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_PREFIX + "URL"):
        return environ[ENV_PREFIX + "URL"]
    path = SECRETS_FILE if secrets_file is None else Path(secrets_file)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8")).get("pacs") or {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return ""
    url = table.get("url") if isinstance(table, dict) else None
    return url if isinstance(url, str) else ""
