"""Access policy (core): the role file, identities from OIDC claims (forged, incomplete and
expired sessions refused), deployment settings and the localhost-only rule, upload limits and
typed paths inside the allowed import roots."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from sscmort_core import access as acc
from sscmort_core.access import Role
from sscmort_core.errors import (
    FileTooLargeError,
    IdentityError,
    NotAuthorisedError,
    NotLoggedInError,
    PathNotAllowedError,
    RoleConfigError,
    SessionExpiredError,
    SettingsError,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
AUTH = {"redirect_uri": "https://sscmort.hospital.example/oauth2callback",
        "cookie_secret": "s" * 32, "client_id": "sscmort",
        "client_secret": "x", "server_metadata_url": "https://idp.example/.well-known/openid"}
ROLES = """
group_claim = "groups"
[users]
"PI@Hospital.example" = "admin"
"rheum@hospital.example" = "clinician"
[groups]
"sscmort-analysts" = "analyst"
"""


def claims(email="rheum@hospital.example", *, age_s=60.0, **extra):
    return {"is_logged_in": True, "email": email, "iat": (NOW.timestamp() - age_s), **extra}


@pytest.fixture()
def roles_file(tmp_path):
    path = tmp_path / "roles.toml"
    path.write_text(ROLES)
    return path


def settings(roles_file, **own):
    return acc.settings_from_mapping({"auth": AUTH, "sscmort": {"roles_file": str(roles_file),
                                                                **own}}, "secrets.toml")


# --- roles ----------------------------------------------------------------------------------
def test_roles_are_ordered_and_each_includes_the_ones_below():
    assert Role.VIEWER < Role.CLINICIAN < Role.ANALYST < Role.ADMIN
    table = {r: {a for a in acc.ACTION_ROLES if acc.can(r, a)} for r in Role}
    assert table[Role.VIEWER] == {"login", "logout", "view", "view patient", "view scan"}
    assert table[Role.CLINICIAN] == table[Role.VIEWER] | {"upload", "predict"}
    assert table[Role.ANALYST] == table[Role.CLINICIAN] | {"save", "import", "train",
                                                           "evaluate", "extract", "measure",
                                                           "accept mask", "export"}
    assert table[Role.ADMIN] == set(acc.ACTION_ROLES)
    assert acc.can_open(Role.VIEWER, "patient_timeline")
    assert not acc.can_open(Role.VIEWER, "upload_predict")
    assert acc.can_open(Role.CLINICIAN, "upload_predict")
    assert not acc.can_open(Role.ANALYST, "audit") and acc.can_open(Role.ADMIN, "audit")
    assert acc.page_role("a_page_nobody_listed") == Role.ADMIN  # secure by default
    with pytest.raises(ValueError):
        acc.action_role("delete everything")


def test_role_file_maps_users_case_insensitively_and_groups_highest_wins(roles_file):
    cfg = acc.load_role_config(roles_file)
    assert cfg.role_of("pi@hospital.example", ()) == Role.ADMIN
    assert cfg.role_of("Rheum@Hospital.Example", ()) == Role.CLINICIAN
    assert cfg.role_of("rheum@hospital.example", ("sscmort-analysts",)) == Role.ANALYST
    assert cfg.role_of("new@hospital.example", ("sscmort-analysts", "other")) == Role.ANALYST
    with pytest.raises(NotAuthorisedError, match="new@hospital.example has no role"):
        cfg.role_of("new@hospital.example", ("other",))


def test_default_role_covers_unlisted_users(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('default_role = "viewer"\n')
    assert acc.load_role_config(path).role_of("anyone@x.org", ()) == Role.VIEWER


@pytest.mark.parametrize("text, message", [
    ('[users]\n"a@b.c" = "superuser"\n', "users.a@b.c: unknown role 'superuser'"),
    ("[users\n", "not valid TOML"),
    ('user = "admin"\n', "unknown key 'user'"),
    ('users = "admin"\n', "[users] must be a table"),
    ('default_role = "root"\n', "default_role: unknown role"),
])
def test_bad_role_files_are_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "roles.toml"
    path.write_text(text)
    with pytest.raises(RoleConfigError) as err:
        acc.load_role_config(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_role_file_names_the_setting(tmp_path):
    with pytest.raises(RoleConfigError, match="sscmort.roles_file"):
        acc.load_role_config(tmp_path / "absent.toml")


# --- identities -------------------------------------------------------------------------------
def test_a_complete_recent_login_is_an_identity():
    who = acc.identity_from_claims(claims(name="Dr R", groups=["g1", "g2"]), max_age_s=3600,
                                   now=NOW)
    assert who.who == "rheum@hospital.example" and who.name == "Dr R"
    assert who.groups == ("g1", "g2") and not who.local
    assert who.issued_at_utc == NOW - dt.timedelta(seconds=60)


@pytest.mark.parametrize("bad, error, message", [
    ({}, NotLoggedInError, "log in"),
    ({"is_logged_in": False, "email": "a@b.c", "iat": NOW.timestamp()}, NotLoggedInError,
     "log in"),
    ({"is_logged_in": "true", "email": "a@b.c", "iat": NOW.timestamp()}, NotLoggedInError,
     "log in"),  # only the boolean Streamlit sets counts
    (claims(email=None), IdentityError, "no e-mail"),
    (claims(email="not-an-address"), IdentityError, "no e-mail"),
    (claims(email_verified=False), IdentityError, "not verified"),
    ({"is_logged_in": True, "email": "a@b.c"}, IdentityError, "no issue time"),
    ({"is_logged_in": True, "email": "a@b.c", "iat": "yesterday"}, IdentityError,
     "no issue time"),
    (claims(age_s=-3600), IdentityError, "issued in the future"),
    (claims(age_s=13 * 3600), SessionExpiredError, "older than 12 h"),
])
def test_forged_incomplete_and_expired_sessions_are_refused(bad, error, message):
    with pytest.raises(error, match=message):
        acc.identity_from_claims(bad, max_age_s=12 * 3600, now=NOW)


def test_os_user_is_the_process_owner():
    assert acc.os_user() and acc.cli_identity().who == acc.os_user()


# --- settings and the localhost rule ---------------------------------------------------------
@pytest.mark.parametrize("address, loopback", [
    ("localhost", True), ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("", False), ("10.1.2.3", False),
    ("sscmort.hospital.example", False), ("::", False)])
def test_loopback_addresses(address, loopback):
    assert acc.is_loopback(address) is loopback


def test_without_settings_only_localhost_may_serve():
    none = acc.settings_from_mapping({}, "secrets.toml")
    assert not none.login_configured and not none.auth_present
    acc.check_listen("localhost", none)
    with pytest.raises(SettingsError) as err:
        acc.check_listen("0.0.0.0", none)
    text = str(err.value)
    assert "refusing to listen on 0.0.0.0 without login" in text
    assert "[auth]" in text and "sscmort.roles_file" in text and "secrets.toml" in text


def test_full_login_settings_allow_any_address(roles_file):
    s = settings(roles_file, session_max_hours=8, max_upload_file_mb=10,
                 max_upload_total_mb=20, import_roots=["/srv/registry"])
    assert s.login_configured and s.provider is None and s.roles_file == roles_file
    assert s.session_max_hours == 8 and s.upload == acc.UploadLimits(10 * 2**20, 20 * 2**20)
    assert s.import_roots == (acc.settings.Path("/srv/registry"),)
    acc.check_listen("0.0.0.0", s)


def test_a_named_provider_is_used_for_login(roles_file):
    auth = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "c",
            "hospital": {k: AUTH[k] for k in acc.settings.AUTH_KEYS}}
    s = acc.settings_from_mapping({"auth": auth, "sscmort": {"roles_file": str(roles_file)}},
                                  "x")
    assert s.login_configured and s.provider == "hospital"


@pytest.mark.parametrize("auth, own, message", [
    ({**AUTH, "cookie_secret": ""}, {"roles_file": "r.toml"}, "auth.cookie_secret not set"),
    ({k: v for k, v in AUTH.items() if k != "client_id"}, {"roles_file": "r.toml"},
     "auth.client_id not set"),
    (AUTH, {}, "sscmort.roles_file is not set"),
])
def test_half_configured_login_refuses_everywhere_naming_the_setting(auth, own, message):
    s = acc.settings_from_mapping({"auth": auth, "sscmort": own}, "secrets.toml")
    assert s.auth_present and not s.login_configured
    for address in ("localhost", "0.0.0.0"):
        with pytest.raises(SettingsError, match=message):
            acc.check_listen(address, s)


@pytest.mark.parametrize("own, message", [
    ({"role_file": "x"}, "unknown setting sscmort.role_file"),
    ({"session_max_hours": 0}, "sscmort.session_max_hours must be a positive number"),
    ({"max_upload_file_mb": "big"}, "sscmort.max_upload_file_mb must be a positive number"),
    ({"import_roots": ["relative/path"]}, "is not an absolute path"),
    ({"import_roots": [3]}, "must be a list of folder paths"),
])
def test_bad_settings_name_the_setting(own, message):
    with pytest.raises(SettingsError, match=message):
        acc.settings_from_mapping({"sscmort": own}, "secrets.toml")


def test_settings_file_is_read_and_a_missing_one_means_no_login(tmp_path, roles_file):
    assert not acc.read_settings_file(tmp_path / "absent.toml").login_configured
    path = tmp_path / "secrets.toml"
    lines = ["[auth]"] + [f'{k} = "{v}"' for k, v in AUTH.items()]
    path.write_text("\n".join(lines + ["[sscmort]", f'roles_file = "{roles_file}"']) + "\n")
    assert acc.read_settings_file(path).login_configured
    path.write_text("[auth\n")
    with pytest.raises(SettingsError, match="cannot read the settings"):
        acc.read_settings_file(path)


# --- the decision of one run ------------------------------------------------------------------
def test_resolve_access_local_and_logged_in(roles_file):
    local = acc.resolve_access({}, acc.settings_from_mapping({}, "s"), "localhost")
    assert local.mode == "local" and local.role == Role.ADMIN and local.who == "local"
    with pytest.raises(SettingsError):
        acc.resolve_access({}, acc.settings_from_mapping({}, "s"), "0.0.0.0")
    s = settings(roles_file)
    got = acc.resolve_access(claims(), s, "0.0.0.0", now=NOW)
    assert (got.mode, got.who, got.role) == ("login", "rheum@hospital.example", Role.CLINICIAN)
    assert got.can("predict") and not got.can("save")
    with pytest.raises(NotLoggedInError):  # login configured: localhost needs it too
        acc.resolve_access({}, s, "localhost", now=NOW)


def test_a_role_change_in_the_file_applies_to_the_next_decision(roles_file):
    s = settings(roles_file)
    assert acc.resolve_access(claims(), s, "0.0.0.0", now=NOW).role == Role.CLINICIAN
    roles_file.write_text(ROLES.replace('"rheum@hospital.example" = "clinician"',
                                        '"rheum@hospital.example" = "viewer"'))
    assert acc.resolve_access(claims(), s, "0.0.0.0", now=NOW).role == Role.VIEWER
    roles_file.write_text(ROLES.replace('"rheum@hospital.example" = "clinician"', ""))
    with pytest.raises(NotAuthorisedError):
        acc.resolve_access(claims(), s, "0.0.0.0", now=NOW)


# --- upload limits and import roots -----------------------------------------------------------
def test_upload_limits_are_checked_from_the_declared_sizes():
    limits = acc.UploadLimits(max_file_bytes=100, max_total_bytes=250)
    acc.check_upload_sizes([("a.dcm", 100), ("b.dcm", 100)], limits)
    with pytest.raises(FileTooLargeError) as err:
        acc.check_upload_sizes([("a.dcm", 50), ("big.zip", 101)], limits)
    assert str(err.value).startswith("big.zip: ") and "sscmort.max_upload_file_mb" in str(
        err.value)
    with pytest.raises(FileTooLargeError, match=r"3 files hold 300 bytes, over .* of 250 "
                       r"bytes \(sscmort.max_upload_total_mb\)"):
        acc.check_upload_sizes([("a", 100), ("b", 100), ("c", 100)], limits)


def test_typed_paths_must_lie_inside_an_allowed_root(tmp_path):
    root = tmp_path / "registry"
    (root / "cohort-a").mkdir(parents=True)
    other = tmp_path / "other_store_files"
    other.mkdir()
    (root / "link-out").symlink_to(other)
    roots = (root,)
    ok = acc.check_import_path(str(root / "cohort-a"), roots, unrestricted_without_roots=False)
    assert ok == (root / "cohort-a").resolve()
    for typed in (str(other), str(root / ".." / "other_store_files"), str(root / "link-out"),
                  "/etc", "cohort-a", "", "a\x00b"):
        with pytest.raises(PathNotAllowedError) as err:
            acc.check_import_path(typed, roots, unrestricted_without_roots=False)
        assert "\n" not in str(err.value)
    with pytest.raises(PathNotAllowedError, match="sscmort.import_roots"):
        acc.check_import_path(str(other), None, unrestricted_without_roots=False)
    assert acc.check_import_path(str(other), None, unrestricted_without_roots=True) == \
        other.resolve()
    assert os.path.realpath(root / "link-out") == str(other.resolve())  # the link is real
