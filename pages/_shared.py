"""App-side helpers shared by the pages: the cached store handle, banners, error display, and
the page guard (issue 17): who is acting with which role, the role check of every page and
action, and the audit rows they write (the policy itself is ``sscmort_core.access``).

This is the only place (besides the pages) that knows about Streamlit; the core never does.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, Sequence
from urllib.parse import urlencode

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError
from streamlit.runtime.scriptrunner import get_script_run_ctx

from sscmort_core import access as acc
from sscmort_core import store as st_store
from sscmort_core.errors import (
    AccessError,
    NotLoggedInError,
    PathNotAllowedError,
    RoleConfigError,
    SettingsError,
    SscmortError,
)
from sscmort_core.lungs import classify_patterns
from sscmort_core.pipeline import demo_job
from sscmort_core.scans import load_scan_with_lungs
from sscmort_core.util.logs import configure_logging

TIMING = logging.getLogger("sscmort.app.pages")  # one line per page run, in the store's log
SECRETS_LABEL = ".streamlit/secrets.toml"

RESEARCH_NOTICE = "Research use only: not for clinical decisions."
SYNTHETIC_NOTICE = "Synthetic cohort: simulated by sscmort, no real person."
MIXED_NOTICE = "also {real:,} real patients (source filter on Overview and Cohort explorer)."


def store_path() -> Path:
    return Path(os.environ.get("SSCMORT_STORE", str(st_store.DEFAULT_STORE_PATH)))


@st.cache_resource(show_spinner=False)
def _open(path: str) -> st_store.Store:
    configure_logging(Path(path))  # library warnings into the store's log file, not the page
    demo = _demo_request()
    if demo is not None:  # `sscmort app`: a missing store gets a demo plan, built meanwhile
        demo_job.plan_missing_store(Path(path), n_patients=demo[0], seed=demo[1])
    store = st_store.open_store(path)
    if demo is not None:
        demo_job.ensure_demo_build(store)  # one build per process, however many sessions
    return store


def get_store() -> st_store.Store:
    """The app's one read-write handle on the store (the app owns the file while it runs).

    Stops the page with one readable message when the store is missing, locked or too new.
    """
    path = store_path()
    if not path.exists() and _demo_request() is None:
        st.error(f"No store at {path}. Build the demo cohort with `make run` "
                 f"(or `sscmort demo --store {path}`).")
        st.stop()
    try:
        return _open(str(path))
    except SscmortError as err:
        st.error(str(err))
        st.stop()
        raise  # unreachable: st.stop() raises


def banners(synthetic: bool, real: int = 0) -> None:
    """One compact line on every page (issue 14): the research-use notice, and the synthetic
    notice where it applies (naming the real patients that share the store)."""
    parts = [f":orange-badge[:material/science: {RESEARCH_NOTICE}]"]
    if synthetic:
        parts.append(f":blue-badge[:material/smart_toy: {SYNTHETIC_NOTICE}]")
        if real:
            parts.append(f":gray-badge[{MIXED_NOTICE.format(real=real)}]")
    st.markdown(" ".join(parts))


def sidebar(summary: st_store.CohortSummary) -> None:
    """Who is acting (with log out), store path, synthetic flag and counts in the sidebar."""
    identity_block(st.session_state["_access"])
    with st.sidebar:
        st.caption("Cohort store")
        st.code(str(store_path()), language=None)
        if summary.synthetic_patients:
            st.markdown(":orange-badge[SYNTHETIC DATA]")
            if summary.patients > summary.synthetic_patients:
                st.caption(f"and {summary.patients - summary.synthetic_patients:,} real "
                           "patients")
        st.caption(f"{summary.patients:,} patients, {summary.scans:,} scans")
        st.caption(RESEARCH_NOTICE)


def page_setup(title: str, page: str | None = None) -> st_store.Store:
    """Every page starts here: the store, the page guard (role check and audit of the view),
    the sidebar, the banners and the title. ``page`` is the page's key in
    ``sscmort_core.access.PAGE_ROLES`` (default: the calling file's name). The store's
    headline counts are read once per run; the page gets them from :func:`cohort_summary`."""
    store = get_store()
    guard_page(page or Path(sys._getframe(1).f_code.co_filename).stem)
    summary = st_store.cohort_summary(store)
    st.session_state["_cohort_summary"] = summary  # this run's: page_setup runs first
    sidebar(summary)
    banners(summary.synthetic_patients > 0, summary.patients - summary.synthetic_patients)
    build_panel(store)
    st.title(title)
    return store


def cohort_summary() -> st_store.CohortSummary:
    """The counts :func:`page_setup` read at the top of this run."""
    return st.session_state["_cohort_summary"]


def arrow_spec(spec: dict) -> dict:
    """``spec`` with its inline datasets as Arrow IPC bytes, which is what
    ``st.vega_lite_chart`` turns them into on every call (records -> DataFrame -> Arrow: tens
    of ms a chart). A page that caches its specs converts them once, and a rerun sends the
    bytes as they are (issue 13). Top-level keys are copied; ``spec`` is not changed."""
    from streamlit import dataframe_util  # the conversion st.vega_lite_chart itself applies

    datasets = spec.get("datasets")
    if not datasets:
        return spec
    return {**spec, "datasets": {
        name: values if isinstance(values, bytes)
        else dataframe_util.convert_anything_to_arrow_bytes(values)
        for name, values in datasets.items()}}


def show_error(err: SscmortError) -> None:
    """One readable sentence for a named error; never a traceback."""
    st.error(str(err))


@st.cache_data(max_entries=6, show_spinner="Loading the scan...")
def load_volume_with_lungs(path: str, scan_id: str):
    """(ScanVolume, LungMask) of a stored scan, cached per store file and scan."""
    scan = load_scan_with_lungs(_open(path), scan_id)
    return scan.volume, scan.lungs


# --- the page guard (issue 17) -------------------------------------------------------------
def session_claims() -> dict[str, Any]:
    """The one identity source: the session's OIDC claims as Streamlit's login keeps them
    (``st.user``, read from its signed cookie). Tests set them with ``AppTest.user``."""
    return st.user.to_dict()


def deployment_settings() -> acc.Settings:
    """The ``[auth]`` and ``[sscmort]`` settings of ``st.secrets`` (none without a file); an
    unreadable secrets file is a SettingsError (never a silent fall-back to no login)."""
    try:
        data = st.secrets.to_dict()
    except FileNotFoundError as err:  # StreamlitSecretNotFoundError
        if getattr(err, "error_id", None) != "no-secrets-found":
            raise SettingsError(f"the secrets file cannot be read: {err}") from None
        data = {}
    return acc.settings_from_mapping(data, SECRETS_LABEL)


def current_access() -> acc.Access:
    """This run's access (also kept in session state for the page), or the page stops with a
    login box or one refusal. Run at the top of every run: a role change, an expired login or
    a half-written setting takes effect on the user's next action."""
    settings = None
    try:
        settings = deployment_settings()
        access = acc.resolve_access(session_claims(), settings,
                                    str(st.get_option("server.address") or ""))
    except NotLoggedInError:
        _login_box(settings)
    except (SettingsError, RoleConfigError) as err:
        st.error(f"sscmort is not configured correctly: {err}")
        st.stop()
    except AccessError as err:  # forged / incomplete identity, expired login, no role
        _refuse_login(err)
    st.session_state["_access"] = access
    if st.session_state.get("_audit_login") != (access.who, access.role):
        st.session_state["_audit_login"] = (access.who, access.role)
        audit("login", detail=f"{access.mode} session as {access.role.label}")
    return access


def _login_box(settings: acc.Settings | None) -> NoReturn:
    st.warning(RESEARCH_NOTICE, icon=":material/science:")
    st.title("sscmort")
    st.info("Log in with your hospital account to use sscmort.", icon=":material/login:")
    if st.button("Log in", type="primary"):
        st.login(settings.provider) if settings and settings.provider else st.login()
    st.stop()
    raise AssertionError("unreachable: st.stop() raises")


def _refuse_login(err: AccessError) -> NoReturn:
    claims = session_claims()
    who = str(claims.get("email") or "unknown").strip().lower() or "unknown"
    if st.session_state.get("_audit_refused_login") != (who, str(err)):
        st.session_state["_audit_refused_login"] = (who, str(err))
        _record(who, "none", "login", (), "refused", str(err))
    st.warning(RESEARCH_NOTICE, icon=":material/science:")
    st.error(str(err))
    if st.button("Log out"):
        st.logout()
    st.stop()
    raise AssertionError("unreachable: st.stop() raises")


def guard_page(page: str) -> acc.Access:
    """The role check of a page, and the audit of its view (once per visit)."""
    access = current_access()
    if not access.can_open(page):
        audit("view", (page,), outcome="refused", detail=f"page {page} needs the "
              f"{acc.page_role(page).label} role")
        st.session_state["_last_view"] = None
        st.error(f"Not allowed: this page needs the {acc.page_role(page).label} role; you are "
                 f"{access.role.label}.")
        identity_block(access)  # who is refused, and a way to log out
        st.stop()
    audit_view("view", (page,))
    return access


def allowed(action: str) -> bool:
    """Whether this run's role may do ``action`` (to leave out what it may not)."""
    return st.session_state["_access"].can(action)


def require(action: str, object_ids: Sequence[str] = ()) -> bool:
    """At the place that writes: True when the role allows ``action``; else one error box, an
    audit row of the refusal, and False (the caller writes nothing)."""
    access: acc.Access = st.session_state["_access"]
    if access.can(action):
        return True
    message = acc.refusal(access.role, action)
    audit(action, object_ids, outcome="refused", detail=message)
    st.error(message)
    return False


def audit(action: str, object_ids: Sequence[str] = (), *, outcome: str = "ok",
          detail: str | None = None) -> None:
    """Append an audit row for this session's user."""
    access: acc.Access = st.session_state["_access"]
    _record(access.who, access.role.label, action, tuple(object_ids), outcome, detail)


def audit_view(action: str, object_ids: Sequence[str]) -> None:
    """Audit a view ("view", "view patient", "view scan") when it differs from this
    session's last one of that kind, so that moving a slider does not add rows."""
    key = f"_last_{action}"
    if st.session_state.get(key) != tuple(object_ids):
        st.session_state[key] = tuple(object_ids)
        audit(action, object_ids)


def _record(who: str, role: str, action: str, object_ids: tuple[str, ...], outcome: str,
            detail: str | None) -> None:
    st_store.record_audit(get_store(), st_store.AuditEvent(
        who, role, action, object_ids, outcome, detail, channel="app", session=_session_tag()))


def _session_tag() -> str | None:
    ctx = get_script_run_ctx()
    return None if ctx is None else hashlib.sha256(ctx.session_id.encode()).hexdigest()[:10]


def identity_block(access: acc.Access) -> None:
    """Sidebar: who is acting and with which role, and a log out; or the local-mode note."""
    with st.sidebar:
        if access.mode == "local":
            st.caption("Local mode: no login (this app listens on localhost only). You act "
                       "as admin; the audit trail records you as \"local\".")
            return
        name = access.identity.name or access.who
        st.caption(f"Signed in as **{name}** ({access.who}), role **{access.role.label}**")
        if st.button("Log out", key="_logout"):
            audit("logout")
            st.logout()


def run_page(page: Any) -> None:
    """Run the page chosen by ``st.navigation`` and log its script time to the store's log
    (``sscmort.app.pages``: page, seconds, how it ended), for the load benchmark."""
    name = getattr(page, "url_path", "") or "overview"
    t0 = time.perf_counter()
    ended = "ok"
    try:
        page.run()
    except BaseException as err:  # st.stop / st.rerun end a run with an exception too
        ended = type(err).__name__
        raise
    finally:
        TIMING.info("page=%s seconds=%.4f end=%s", name, time.perf_counter() - t0, ended)


def export_button(label: str, data: Any, *, file_name: str, mime: str,
                  object_ids: Sequence[str], where: Any = None, **kwargs: Any) -> None:
    """A download of store data: for roles that may export, a download button whose click is
    audited; for the others one line saying which role may (the data is never sent)."""
    where = where or st
    if not allowed("export"):
        where.caption(f"{label}: exporting needs the {acc.action_role('export').label} role.")
        return
    where.download_button(label, data, file_name=file_name, mime=mime, on_click=audit,
                          args=("export", tuple(object_ids)), kwargs={"detail": file_name},
                          **kwargs)


def typed_path(text: str, action: str) -> Path | None:
    """A server path typed into a form, resolved, when it lies inside the allowed import roots
    (``sscmort.import_roots``; any path in local mode without the setting); else one error
    box, an audited refusal recording only a hash of the typed value, and None."""
    access: acc.Access = st.session_state["_access"]
    try:
        return acc.check_import_path(text, deployment_settings().import_roots,
                                     unrestricted_without_roots=access.mode == "local")
    except PathNotAllowedError as err:
        audit(action, (st_store.opaque_id(str(text)),), outcome="refused",
              detail=f"typed path refused: {err.reason}")
        st.error(str(err))
        return None


def refuse_unknown(action: str, typed: str, message: str) -> None:
    """A link or form named something this store does not hold (e.g. another store's patient
    or scan): one error box, and an audited refusal that records only a hash of the value."""
    key = f"_refused_{action}"
    if st.session_state.get(key) != typed:
        st.session_state[key] = typed
        audit(action, (st_store.opaque_id(typed),), outcome="refused",
              detail="the link names nothing in this store")
    st.error(message)


@st.cache_data(max_entries=6, show_spinner="Mapping the ILD patterns...")
def load_pattern_labels(path: str, scan_id: str):
    """(z, y, x) uint8 pattern labels of a stored scan's lungs, cached per store and scan."""
    vol, lungs = load_volume_with_lungs(path, scan_id)
    return classify_patterns(vol.hu, lungs.mask, vol.spacing_mm).labels


def app_link(page: str, label: str, query: dict[str, str], icon: str | None = None,
             where=None) -> None:
    """An in-app link (issue 14): same tab, same session, ``query`` read by the target page.
    Where the page is not in this run's navigation (a page run alone, or one the user's role
    hides) it falls back to a plain relative link."""
    where = where or st
    try:
        where.page_link(page, label=label, icon=icon, query_params=query)
    except StreamlitPageNotFoundError:
        url_path = Path(page).stem
        where.markdown(f"[{label}]({url_path}?{urlencode(query)})")


# --- first start (issue 13): the demo build's panel ----------------------------------------
DEMO_ENV = "SSCMORT_DEMO_BUILD"  # set by `sscmort app` (sscmort_core.cli.app.DEMO_ENV)
PANEL_REFRESH_S = 2.0


def _demo_request() -> tuple[int, int] | None:
    """(patients, seed) of the demo the app may build or continue; None when not asked."""
    value = os.environ.get(DEMO_ENV, "")
    patients, _, seed = value.partition(":")
    return (int(patients), int(seed or 0)) if patients.isdigit() else None


def build_panel(store: st_store.Store) -> None:
    """While the store's demo build is incomplete: its step, %, time left and what is still
    coming, refreshed every PANEL_REFRESH_S while it runs; when a step lands the whole page
    reruns with what came in (so the panel goes when the build is done)."""
    progress = demo_job.build_progress(store)
    st.session_state["_demo_build"] = progress  # this run's, for still_coming()
    if progress is None:
        return
    (_live_panel if progress.running else _panel)(store, progress.done_steps)


def _panel(store: st_store.Store, seen_done: int) -> None:
    p = demo_job.build_progress(store)
    if p is None or p.done_steps != seen_done:
        st.rerun()  # a step landed: redraw the page with it
    left = demo_job.format_left(p.seconds_left)
    with st.container(border=True):
        if p.running:
            step_pct = "" if p.step_fraction is None else f" ({p.step_fraction:.0%})"
            st.progress(p.overall_fraction, text=f"**Building the demo cohort**: step "
                        f"{p.step_number} of {p.steps}, {p.step_label}{step_pct}. "
                        f"{p.overall_fraction:.0%} done, {left} left.")
        else:
            st.warning(f"The demo build is incomplete ({p.done_steps} of {p.steps} steps "
                       f"done): {p.problem}.", icon=":material/pending:")
        st.caption("Still coming: " + "; ".join(c.sentence() for c in p.coming) + "."
                   + "".join(f" Note: {n}." for n in p.notes))


_live_panel = st.fragment(run_every=PANEL_REFRESH_S)(_panel)


def still_coming(part: str, what: str = "") -> bool:
    """On a page that needs ``part`` (a key of ``demo_job.PARTS``: cohort, scans, radiomics,
    models, evaluation) of a demo still being built: one info line saying so, and True (the
    page then draws what it can without it); False when the part is in (or no build)."""
    progress = st.session_state.get("_demo_build")
    coming = progress.part(part) if progress is not None else None
    if coming is None:
        return False
    st.info(f"Still coming: {coming.sentence()}. {what}This page fills in as the demo build "
            "brings them in.", icon=":material/hourglass_top:")
    return True
