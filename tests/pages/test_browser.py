"""Real-browser smoke test: `streamlit run` on a free localhost port, every page in headless
Chromium (Debian's, driven by Playwright), no Streamlit exception, a screenshot per page."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.apprun import free_port as _free_port
from tests.apprun import stop
from tests.apprun import wait_healthy as _wait_healthy

REPO = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
PAGES = {"overview": "", "cohort_explorer": "cohort_explorer",
         "patient_timeline": "patient_timeline", "model_comparison": "model_comparison"}

pytestmark = pytest.mark.browser


@pytest.fixture()
def running_app(tiny_store, tmp_path):
    port = _free_port()
    env = dict(os.environ, SSCMORT_STORE=str(tiny_store))
    log = open(tmp_path / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "serve.py"), "run", str(REPO / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        stop(proc)
        log.close()


def _wait_idle(page, timeout_ms: int = 90_000) -> None:
    """Wait until the app has rendered and the script is no longer running."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 2.0:
            return
        time.sleep(0.25)
    raise TimeoutError("app kept running")


def test_every_page_renders_in_chromium(running_app, artifacts_dir):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (`make install-dev` installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, path in PAGES.items():
                page.goto(f"{running_app}/{path}")
                _wait_idle(page)
                assert page.locator('[data-testid="stException"]').count() == 0, name
                body = page.inner_text("body")
                assert "Research use only" in body, name
                assert "Synthetic cohort" in body, name
                page.wait_for_selector('[data-testid="stVegaLiteChart"]', timeout=90_000)
                page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)
            _upload_real_ct(page, running_app, artifacts_dir)
        finally:
            browser.close()


def test_a_first_session_opening_a_page_url_gets_the_apps_navigation(tiny_store, tmp_path):
    """`sscmort app --no-demo` runs no session of its own, so the first browser session is the
    server's first: opening a page's URL there used to get Streamlit's listing of `pages/`
    (helper modules such as `_comparison.py` offered as pages, the page run without app.py)
    until some session had run app.py. serve.py tells Streamlit up front."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (`make install-dev` installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    port = _free_port()
    log = open(tmp_path / "app.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sscmort_core", "app", "--no-demo", "--address", "127.0.0.1",
         "--port", str(port), "--store", str(tiny_store)],
        cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=log,
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/model_comparison")
                _wait_idle(page)
                title = page.inner_text('[data-testid="stMainBlockContainer"] h1')
                links = [t.strip().split("\n")[-1] for t in page.locator(
                    '[data-testid="stSidebarNav"] a').all_inner_texts()]
            finally:
                browser.close()
    finally:
        stop(proc)
        log.close()
    assert title == "Model comparison"
    assert links[:2] == ["Overview", "Cohort explorer"] and "Model comparison" in links
    assert not {"app", "comparison", "shared", "model comparison"} & set(links), links


def _upload_real_ct(page, url: str, artifacts_dir: Path) -> None:
    """Upload the real CT's 64 DICOM files through the page, as a user would."""
    real = REPO.parent / "shared" / "data" / "real_ct" / "philips_A0001_kernel_L"
    page.goto(f"{url}/upload_predict")
    _wait_idle(page)
    assert "Waiting for a scan" in page.inner_text("body")
    if not real.is_dir():
        return  # the synthetic upload is covered by the AppTest; nothing more to do here
    files = sorted(str(p) for p in real.glob("*.dcm"))
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(files)
    page.wait_for_selector('[data-testid="stImage"]', timeout=180_000)
    _wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    body = page.inner_text("body")
    assert "Identifying tags removed" in body and "Lung volume" in body
    page.screenshot(path=str(artifacts_dir / "upload_predict.png"), full_page=True)
    image = page.locator('[data-testid="stImage"]').first
    image.scroll_into_view_if_needed()
    image.screenshot(path=str(artifacts_dir / "upload_predict_lungs.png"))
