"""Who is acting: the identity of a logged-in app session (from its OIDC claims), the local
user of a localhost app, or the operating-system user of a CLI command.

A session's claims are what Streamlit's native login keeps in its signed identity cookie (the
ID token's claims: ``email``, ``iat``, ``exp``, ``groups``...). Streamlit already refuses a
cookie whose signature does not match; this module refuses what a valid cookie may still carry
that sscmort cannot trust: no e-mail, an unverified e-mail, no issue time, an issue time in the
future, or a login older than the session lifetime.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
from dataclasses import dataclass
from typing import Any, Mapping

from sscmort_core.errors import IdentityError, NotLoggedInError, SessionExpiredError

CLOCK_SKEW_S = 300.0  # an issue time this far in the future is still accepted
LOCAL_USER = "local"


@dataclass(frozen=True)
class Identity:
    """Who acts. ``who`` is what the audit trail records (a lower-cased e-mail, "local", or
    the OS user name); ``issued_at_utc`` is when the identity provider issued the login."""

    who: str
    name: str | None = None
    groups: tuple[str, ...] = ()
    issued_at_utc: dt.datetime | None = None
    local: bool = False


LOCAL_IDENTITY = Identity(LOCAL_USER, "local user (no login)", local=True)


def identity_from_claims(claims: Mapping[str, Any], *, group_claim: str = "groups",
                         max_age_s: float, now: dt.datetime | None = None) -> Identity:
    """The :class:`Identity` of a session's claims, or a named refusal.

    NotLoggedInError (no login), IdentityError (missing or untrustworthy fields),
    SessionExpiredError (issued more than ``max_age_s`` seconds before ``now``, UTC).
    """
    if not claims or claims.get("is_logged_in") is not True:
        raise NotLoggedInError("log in to use sscmort")
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email.strip():
        raise IdentityError("the login carries no e-mail address; sscmort cannot tell who you "
                            "are (log in again, or ask the identity provider's admin to release "
                            "the email claim)")
    if claims.get("email_verified") is False:
        raise IdentityError(f"the identity provider has not verified {email.strip()}")
    issued = _issued_at(claims.get("iat"))
    now = now or dt.datetime.now(dt.timezone.utc)
    age_s = (now - issued).total_seconds()
    if age_s < -CLOCK_SKEW_S:
        raise IdentityError("the login claims to be issued in the future; log in again")
    if age_s > max_age_s:
        raise SessionExpiredError(f"your login is older than {max_age_s / 3600:g} h; "
                                  "log out and log in again")
    name = claims.get("name")
    return Identity(email.strip().lower(), name if isinstance(name, str) else None,
                    _groups(claims.get(group_claim)), issued)


def _issued_at(value: Any) -> dt.datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise IdentityError("the login carries no issue time (iat claim); log in again")
    return dt.datetime.fromtimestamp(float(value), dt.timezone.utc)


def _groups(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value if isinstance(v, (str, int)))
    return ()


def os_user() -> str:
    """The operating-system user running this process (what the CLI records as "who")."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME / USER (some containers)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def cli_identity() -> Identity:
    return Identity(os_user(), None)
