"""Roles through the whole app (AppTest with a patched OIDC identity, login configured): each
role opens exactly its pages; each forbidden action is refused with one clear message, audited,
and writes nothing; forged and expired sessions, a role change mid-session, a typed path
outside the import roots and a link to another store's patient are refused and audited; and
every audit row written in the session is still there, unchanged, at its end."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from sscmort_core import store as st_store
from sscmort_core.access import PAGE_ROLES, Role
from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.dicom import write_dicom_series
from sscmort_core.synthetic.phantom import phantom_for_scan

APP = Path(__file__).resolve().parents[2] / "app.py"
AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s" * 32,
        "client_id": "sscmort", "client_secret": "x",
        "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
USERS = {role: f"{role.label}@hospital.example" for role in Role}
# one page per role boundary: the lowest role that may open it
BOUNDARY = {"overview": Role.VIEWER, "upload_predict": Role.CLINICIAN,
            "import_cohort": Role.ANALYST, "audit": Role.ADMIN}
TITLES = {"overview": "Overview", "upload_predict": "Upload & predict",
          "import_cohort": "Import cohort", "audit": "Audit"}


@pytest.fixture()
def deployment(tmp_path, tiny_store, monkeypatch):
    """(store, roles file, allowed import root) of a logged-in deployment."""
    roles = tmp_path / "roles.toml"
    roles.write_text("[users]\n" + "".join(f'"{e}" = "{r.label}"\n' for r, e in USERS.items()))
    root = tmp_path / "registry_root"
    root.mkdir()
    monkeypatch.setenv("SSCMORT_STORE", str(tiny_store))
    return tiny_store, roles, root


def claims(email: str, *, age_s: float = 60.0, **extra) -> dict:
    iat = dt.datetime.now(dt.timezone.utc).timestamp() - age_s
    return {"is_logged_in": True, "email": email, "name": email.split("@")[0], "iat": iat,
            **extra}


def _app(deployment, user: dict, page: str | None = None) -> AppTest:
    _, roles, root = deployment
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.secrets["auth"] = AUTH
    at.secrets["sscmort"] = {"roles_file": str(roles), "import_roots": [str(root)]}
    at.user = user
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _audit() -> pd.DataFrame:
    from pages._shared import _open, store_path  # the app's own connection (it owns the file)

    return st_store.audit_frame(_open(str(store_path())))


def _counts() -> dict[str, int]:
    from pages._shared import _open, store_path

    counts = st_store.table_counts(_open(str(store_path())))
    return {k: v for k, v in counts.items() if k != "audit"}


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_role_boundaries_match_the_page_table():
    assert {p: PAGE_ROLES[p] for p in BOUNDARY} == BOUNDARY


@pytest.mark.parametrize("role", list(Role))
def test_each_role_opens_exactly_its_pages(deployment, role):
    email = USERS[role]
    for page, needs in BOUNDARY.items():
        at = _app(deployment, claims(email), page)
        titles = [t.value for t in at.title]
        if role >= needs:
            assert TITLES[page] in titles, (role, page, _errors(at))
            assert not any("Not allowed" in e for e in _errors(at))
        else:
            assert TITLES[page] not in titles, (role, page)
            assert any(f"this page needs the {needs.label} role; you are {role.label}" in e
                       for e in _errors(at)), _errors(at)
        sidebar = " ".join(str(c.value) for c in at.sidebar.caption)
        assert email in sidebar and role.label in sidebar
    rows = _audit()
    mine = rows[rows["who"] == email]
    refused = mine[(mine["action"] == "view") & (mine["outcome"] == "refused")]
    assert sorted(refused["object_ids"]) == sorted(p for p, n in BOUNDARY.items() if role < n)
    assert (mine["role"] == role.label).all() and (mine["channel"] == "app").all()


def test_forbidden_actions_are_refused_audited_and_write_nothing(deployment):
    before = _counts()
    viewer = USERS[Role.VIEWER]
    at = _app(deployment, claims(viewer), "models_jobs")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert "Not allowed: train needs the analyst role; you are viewer." in _errors(at)
    at = _app(deployment, claims(viewer), "model_comparison")
    assert not [b for b in at.get("download_button")]  # export: not offered, never sent
    assert any("exporting needs the analyst role" in c.value for c in at.caption)
    recompute = next(b for b in at.button if b.label.startswith("Recompute"))
    recompute.click().run()
    assert any(e.startswith("Not allowed: evaluate needs the analyst role") for e in _errors(at))
    assert _counts() == before  # no job, no metric, no model
    rows = _audit()
    refused = rows[(rows["who"] == viewer) & (rows["outcome"] == "refused")]
    assert {"train", "evaluate"} <= set(refused["action"])


@pytest.fixture(scope="module")
def series_zip(tmp_path_factory) -> bytes:
    row = generate_cohort(n_patients=3, seed=21).scans.to_dict(orient="records")[0]
    folder = tmp_path_factory.mktemp("up") / "series"
    files = write_dicom_series(phantom_for_scan(row), folder, instance_order="shuffled")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f"series/{f.name}")
    return buf.getvalue()


def test_a_clinician_uploads_and_predicts_but_may_not_save(deployment, series_zip):
    before = _counts()
    clinician = USERS[Role.CLINICIAN]
    at = _app(deployment, claims(clinician), "upload_predict")
    at.file_uploader[0].set_value(("scan.zip", series_zip, "application/zip")).run()
    assert not at.exception and not _errors(at), _errors(at)
    next(b for b in at.button if b.label == "Save to cohort").click().run()
    assert any(e.startswith("Not allowed: save needs the analyst role; you are clinician")
               for e in _errors(at)), _errors(at)
    assert not at.success or not any("Saved as scan" in s.value for s in at.success)
    assert _counts() == before
    rows = _audit()
    mine = rows[rows["who"] == clinician]
    assert {"upload"} <= set(mine[mine["outcome"] == "ok"]["action"])
    assert "save" in set(mine[mine["outcome"] == "refused"]["action"])


@pytest.mark.parametrize("user, message", [
    (claims(USERS[Role.ADMIN], age_s=13 * 3600), "older than 12 h"),
    (claims(USERS[Role.ADMIN], email_verified=False), "not verified"),
    (claims(USERS[Role.ADMIN], age_s=-3600), "issued in the future"),
    ({"is_logged_in": True, "email": USERS[Role.ADMIN]}, "no issue time"),
    (claims("stranger@elsewhere.example"), "stranger@elsewhere.example"),  # no role
])
def test_forged_expired_and_unknown_sessions_see_nothing(deployment, user, message):
    before = _counts()
    at = _app(deployment, user, None)
    assert any(message in e for e in _errors(at)), _errors(at)
    assert not at.title and not at.dataframe and not at.metric  # no page content at all
    assert _counts() == before
    rows = _audit()
    assert rows.iloc[-1]["action"] == "login" and rows.iloc[-1]["outcome"] == "refused"


def test_not_logged_in_gets_only_the_login_box(deployment):
    at = _app(deployment, {"is_logged_in": False}, None)
    assert [b.label for b in at.button] == ["Log in"] and not at.dataframe


def test_a_role_change_applies_to_the_next_action(deployment):
    _, roles, _ = deployment
    analyst = USERS[Role.ANALYST]
    at = _app(deployment, claims(analyst), "import_cohort")
    assert at.title[-1].value == "Import cohort"
    roles.write_text(roles.read_text().replace(f'"{analyst}" = "analyst"',
                                               f'"{analyst}" = "viewer"'))
    at.run()  # the same session's next action
    assert "Import cohort" not in [t.value for t in at.title]
    assert any("this page needs the analyst role; you are viewer" in e for e in _errors(at))
    rows = _audit()
    last = rows[rows["who"] == analyst].iloc[-1]
    assert (last["role"], last["action"], last["outcome"]) == ("viewer", "view", "refused")


def test_a_path_outside_the_import_roots_is_refused(deployment, tmp_path):
    _, _, root = deployment
    before = _counts()
    at = _app(deployment, claims(USERS[Role.ANALYST]), "import_cohort")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for typed in (str(outside), f"{root}/../elsewhere", "/etc", "relative/path"):
        at.text_input(key="folder").set_value(typed)
        next(b for b in at.button if b.label == "Check manifest").click().run()
        assert any(typed in e and ("outside the allowed import folders" in e
                                   or "absolute path" in e) for e in _errors(at)), _errors(at)
        assert not at.success
    assert _counts() == before
    rows = _audit()
    refused = rows[(rows["action"] == "import") & (rows["outcome"] == "refused")]
    assert len(refused) == 4
    assert not refused["object_ids"].str.contains("elsewhere|etc|relative").any()  # hashes only
    assert refused["object_ids"].str.startswith("unknown:").all()


def test_a_link_to_another_stores_patient_is_refused(deployment, tmp_path):
    at = AppTest.from_file(str(APP), default_timeout=180)
    _, roles, root = deployment
    at.secrets["auth"] = AUTH
    at.secrets["sscmort"] = {"roles_file": str(roles), "import_roots": [str(root)]}
    at.user = claims(USERS[Role.VIEWER])
    at.query_params["patient"] = "P-OTHER-STORE-0001"
    at.run()
    at.switch_page("pages/patient_timeline.py")
    at.run()
    assert any("not in this store" in e for e in _errors(at)), _errors(at)
    rows = _audit()
    views = rows[rows["action"] == "view patient"]
    refused = views[views["outcome"] == "refused"]
    assert refused["object_ids"].tolist() == [st_store.opaque_id("P-OTHER-STORE-0001")]
    assert not rows["object_ids"].str.contains("P-OTHER-STORE").any()  # only its hash


def test_every_audit_row_of_a_session_is_still_there_unchanged(deployment, tmp_path):
    seen: list[pd.DataFrame] = []
    admin = USERS[Role.ADMIN]
    for email, page in ((admin, "overview"), (USERS[Role.VIEWER], "audit"),
                        (admin, "cohort_explorer"), (USERS[Role.ANALYST], "import_cohort"),
                        (admin, "audit")):
        _app(deployment, claims(email), page)
        seen.append(_audit())
    final = seen[-1]
    for snapshot in seen:
        assert len(snapshot) <= len(final)
        pd.testing.assert_frame_equal(snapshot, final.iloc[:len(snapshot)].reset_index(drop=True))
    assert final["audit_id"].is_monotonic_increasing and final["audit_id"].is_unique
    # the journal holds the same rows, in the same order
    from sscmort_core.store import read_journal

    journal = read_journal(deployment[0])
    assert journal["audit_id"].tolist() == final["audit_id"].tolist()
