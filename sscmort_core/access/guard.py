"""The access decision of one app run: who (identity) with which role, or a named refusal.

:func:`resolve_access` is the whole policy, free of Streamlit: the page guard in
``pages/_shared`` hands it the session's claims, the settings and the address the server
listens on, then shows what it returns or refuses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping

from sscmort_core.access.identity import LOCAL_IDENTITY, Identity, identity_from_claims
from sscmort_core.access.roles import Role, can, can_open, load_role_config
from sscmort_core.access.settings import Settings, check_listen


@dataclass(frozen=True)
class Access:
    """What one run of the app may do. ``mode``: "local" (localhost, no login: the local user
    acts as admin) or "login" (OIDC identity, role from the role file)."""

    identity: Identity
    role: Role
    mode: str

    @property
    def who(self) -> str:
        return self.identity.who

    def can(self, action: str) -> bool:
        return can(self.role, action)

    def can_open(self, page: str) -> bool:
        return can_open(self.role, page)


def resolve_access(claims: Mapping[str, Any], settings: Settings, address: str, *,
                   now: dt.datetime | None = None) -> Access:
    """Local access on localhost without login; else the logged-in identity and its role.

    Raises SettingsError (beyond localhost without login, or login half configured),
    NotLoggedInError, IdentityError, SessionExpiredError, RoleConfigError or
    NotAuthorisedError (no role). The role file is read on every call: a change applies to
    the next action.
    """
    check_listen(address, settings)
    if not settings.login_configured:
        return Access(LOCAL_IDENTITY, Role.ADMIN, "local")
    assert settings.roles_file is not None  # login_configured implies it
    config = load_role_config(settings.roles_file)
    identity = identity_from_claims(claims, group_claim=config.group_claim,
                                    max_age_s=settings.session_max_hours * 3600.0, now=now)
    return Access(identity, config.role_of(identity.who, identity.groups), "login")
