"""Roles, what each may see and do, and the role file that maps users and groups to roles.

Roles are ordered: viewer < clinician < analyst < admin; each can do everything the roles
below it can. The role file is TOML (read with the standard library)::

    # who may do what in sscmort (roles: viewer < clinician < analyst < admin)
    group_claim = "groups"        # the identity claim that lists a user's groups (optional)
    # default_role = "viewer"     # for a logged-in user no rule names; leave out to refuse them

    [users]                       # e-mail (as the identity provider gives it) -> role
    "pi@hospital.example" = "admin"

    [groups]                      # a value of the group claim -> role
    "sscmort-analysts" = "analyst"

A user gets the highest role any rule gives them. The file is read again on every check, so
a change takes effect on the user's next action.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from sscmort_core.errors import NotAuthorisedError, RoleConfigError


class Role(enum.IntEnum):
    """Ordered roles: a higher value includes every lower one."""

    VIEWER = 1
    CLINICIAN = 2
    ANALYST = 3
    ADMIN = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str, where: str, path: Path | None = None) -> "Role":
        """The role named ``text`` (any case); RoleConfigError naming ``where`` otherwise."""
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            raise RoleConfigError(f"{where}: unknown role {text!r} (roles: "
                                  f"{', '.join(r.label for r in cls)})", path) from None


# Every page of the app and the lowest role that may open it (keys: the page file's stem).
# A page missing here needs admin (secure by default): add new pages with their role.
PAGE_ROLES: Mapping[str, Role] = MappingProxyType({
    "overview": Role.VIEWER,
    "cohort_explorer": Role.VIEWER,
    "patient_timeline": Role.VIEWER,
    "radiomics_shap": Role.VIEWER,
    "model_comparison": Role.VIEWER,
    "models_jobs": Role.VIEWER,
    "upload_predict": Role.CLINICIAN,
    "import_cohort": Role.ANALYST,
    "audit": Role.ADMIN,
})

# Every audited action and the lowest role that may do it. "view" is opening a page.
ACTION_ROLES: Mapping[str, Role] = MappingProxyType({
    "login": Role.VIEWER,
    "logout": Role.VIEWER,
    "view": Role.VIEWER,
    "view patient": Role.VIEWER,
    "view scan": Role.VIEWER,
    "upload": Role.CLINICIAN,
    "predict": Role.CLINICIAN,
    "save": Role.ANALYST,
    "import": Role.ANALYST,
    "train": Role.ANALYST,
    "evaluate": Role.ANALYST,
    "extract": Role.ANALYST,
    "measure": Role.ANALYST,
    "accept mask": Role.ANALYST,
    "export": Role.ANALYST,
    "audit": Role.ADMIN,
    "settings": Role.ADMIN,
})


def page_role(page: str) -> Role:
    """The lowest role that may open ``page`` (admin for a page the table does not know)."""
    return PAGE_ROLES.get(page, Role.ADMIN)


def action_role(action: str) -> Role:
    """The lowest role that may do ``action``; ValueError for an action sscmort does not know
    (a programming error, never user input)."""
    try:
        return ACTION_ROLES[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}") from None


def can(role: Role, action: str) -> bool:
    return role >= action_role(action)


def can_open(role: Role, page: str) -> bool:
    return role >= page_role(page)


def refusal(role: Role, action: str) -> str:
    """The one sentence a refused action shows."""
    return (f"Not allowed: {action} needs the {action_role(action).label} role; "
            f"you are {role.label}.")


@dataclass(frozen=True)
class RoleConfig:
    """A parsed role file. ``users`` keys are lower-cased e-mails."""

    path: Path
    users: Mapping[str, Role]
    groups: Mapping[str, Role]
    group_claim: str = "groups"
    default_role: Role | None = None

    def role_of(self, email: str, groups: tuple[str, ...]) -> Role:
        """The highest role any rule gives this user; NotAuthorisedError when none does."""
        found = [r for r in (self.users.get(email.strip().lower()),
                             *(self.groups.get(g) for g in groups)) if r is not None]
        if found:
            return max(found)
        if self.default_role is not None:
            return self.default_role
        raise NotAuthorisedError(f"{email} has no role in sscmort: ask an admin to add you to "
                                 f"the role file")


def load_role_config(path: str | Path) -> RoleConfig:
    """Parse the role file at ``path``; RoleConfigError naming the file and the problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RoleConfigError("role file not found (setting sscmort.roles_file)", path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise RoleConfigError(f"cannot read the role file: {err}", path) from None
    except tomllib.TOMLDecodeError as err:
        raise RoleConfigError(f"not valid TOML: {err}", path) from None
    return _parse(data, path)


def _parse(data: Mapping[str, Any], path: Path) -> RoleConfig:
    unknown = sorted(set(data) - {"users", "groups", "group_claim", "default_role"})
    if unknown:
        raise RoleConfigError(f"unknown key {unknown[0]!r} (keys: users, groups, group_claim, "
                              "default_role)", path)
    tables: dict[str, dict[str, Role]] = {}
    for table in ("users", "groups"):
        raw = data.get(table, {})
        if not isinstance(raw, dict):
            raise RoleConfigError(f"[{table}] must be a table of name = \"role\"", path)
        tables[table] = {(k.strip().lower() if table == "users" else k):
                         Role.parse(v, f"{table}.{k}", path) for k, v in raw.items()}
    claim = data.get("group_claim", "groups")
    if not isinstance(claim, str) or not claim:
        raise RoleConfigError("group_claim must be the name of an identity claim", path)
    default = data.get("default_role")
    return RoleConfig(path, MappingProxyType(tables["users"]), MappingProxyType(tables["groups"]),
                      claim, None if default is None else Role.parse(default, "default_role",
                                                                     path))
