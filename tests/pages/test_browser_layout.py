"""Issue 14's browser test: every page in headless Chromium at 1280 x 720 and 1440 x 900 on
the demo fixture store, failing when a page hides what a reader needs:

- a Vega legend / axis / title text whose rendered SVG box leaves the chart's view (clipped),
  or that Vega cut short with an ellipsis;
- a table wider than its frame (sideways scrolling hides columns holding the key numbers);
- an error inside a collapsed expander or status box (the reason behind a click);
- a chart whose lines come in several colours with no legend to name them;
- an upload's analysis gone after going to another page and back (in the same session);
- (slow test) a model's colour changing on Model comparison when another model is removed,
  and the timeline's SHAP link opening another tab, reloading (a new session) or landing
  anywhere but that scan's explanation.

Screenshots of every page and width go to test-artifacts/layout/ (git-ignored).
The fast smoke (default suite) checks 1280 x 720 on four pages and the upload; the slow one
every page at both sizes (both on a store with trained radiomics and QCT models).
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from sscmort_core import store as st
from sscmort_core.deep.train import train_backbone
from sscmort_core.pipeline import evaluate
from sscmort_core.synthetic.cohort import generate_cohort
from sscmort_core.synthetic.dicom import write_dicom_series
from sscmort_core.synthetic.phantom import phantom_for_scan
from sscmort_core.tabular.train import train_tabular
from tests.pages.test_browser import (
    CHROMIUM,
    _wait_idle,
    running_app,  # noqa: F401, F811 (the app, on tiny_store)
)
from tests.pipeline.test_evaluate import add_noisy_model
from tests.tabular.test_tabular import add_fake_radiomics

pytestmark = pytest.mark.browser

ALL_PAGES = {"overview": "", "cohort_explorer": "cohort_explorer",
             "patient_timeline": "patient_timeline", "upload_predict": "upload_predict",
             "radiomics_shap": "radiomics_shap", "model_comparison": "model_comparison",
             "models_jobs": "models_jobs", "import_cohort": "import_cohort"}
SMOKE_PAGES = ("overview", "cohort_explorer", "patient_timeline", "model_comparison")
SIZES = {"1280x720": (1280, 720), "1440x900": (1440, 900)}
# Tabs opened after a page's first check (a hidden tab's charts have no size to measure):
# (tab name, screenshot suffix)
OTHER_TABS = {"model_comparison": (("3 years", "3y"), ("5 years", "5y")),
              "radiomics_shap": (("SHAP summary", "summary"), ("Scan explanation", "scan"))}

# Text of visible Vega charts (Streamlit draws them as SVG) whose box leaves the chart's view
# (the SVG, intersected with its Streamlit frame), or that Vega cut short with an ellipsis.
CLIPPED_TEXT = """
() => {
  const out = [];
  for (const frame of document.querySelectorAll('[data-testid="stVegaLiteChart"]')) {
    const svg = frame.querySelector('svg');
    if (!svg) continue;
    const s = svg.getBoundingClientRect(), f = frame.getBoundingClientRect();
    if (s.width === 0 || s.height === 0) continue;  // a hidden tab
    const view = {left: Math.max(s.left, f.left), right: Math.min(s.right, f.right),
                  top: s.top, bottom: s.bottom};
    for (const t of svg.querySelectorAll('text')) {
      const text = (t.textContent || '').trim();
      const r = t.getBoundingClientRect();
      if (!text || r.width === 0) continue;
      // a label Vega hid (labelOverlap / labelBound set its opacity to 0) is not read
      const style = getComputedStyle(t);
      if (style.opacity === '0' || t.getAttribute('opacity') === '0' ||
          t.getAttribute('fill-opacity') === '0') continue;
      // 4 px slack: a text box is its font's em box, taller and wider than the ink
      const cut = r.left < view.left - 4 || r.right > view.right + 4 ||
                  r.top < view.top - 4 || r.bottom > view.bottom + 4;
      if (cut || text.endsWith('\u2026'))
        out.push(`"${text}" [${Math.round(r.left - view.left)}..` +
                 `${Math.round(r.right - view.left)} of ${Math.round(view.right - view.left)}, ` +
                 `${Math.round(r.top - view.top)}..${Math.round(r.bottom - view.top)} of ` +
                 `${Math.round(view.bottom - view.top)}]`);
    }
  }
  return out;
}
"""

# How many chart frames have drawn their SVG (to wait for the last one).
CHARTS_DRAWN = """
() => [document.querySelectorAll('[data-testid="stVegaLiteChart"]').length,
       document.querySelectorAll('[data-testid="stVegaLiteChart"] svg text').length]
"""

# Tables wider than their frame: sideways scrolling would hide columns.
WIDE_TABLES = """
() => {
  const out = [];
  for (const el of document.querySelectorAll(
      '[data-testid="stDataFrame"] .dvn-scroller, [data-testid="stTable"], ' +
      '[data-testid="stHtml"]')) {
    if (el.getBoundingClientRect().width === 0) continue;
    if (el.scrollWidth > el.clientWidth + 2)
      out.push(`${el.scrollWidth} > ${el.clientWidth}: ` + el.innerText.slice(0, 60));
  }
  return out;
}
"""

# Visible charts whose line marks use several stroke colours but draw no legend (a key lost,
# e.g. when layers merge a colour scale and one layer's legend is null).
KEYLESS_CHARTS = """
() => {
  const out = [];
  for (const frame of document.querySelectorAll('[data-testid="stVegaLiteChart"]')) {
    const svg = frame.querySelector('svg');
    if (!svg || svg.getBoundingClientRect().width === 0) continue;
    const strokes = new Set(Array.from(svg.querySelectorAll('.mark-line path'))
      .map(p => p.getAttribute('stroke')).filter(c => c && c !== 'none'));
    if (strokes.size > 1 && !svg.querySelector('.role-legend'))
      out.push(`${strokes.size} line colours: ` +
               ((svg.querySelector('.role-title-text') || {}).textContent || '(untitled)'));
  }
  return out;
}
"""

# The page's images: caption, natural width and drawn width in px (the saliency row's captions
# hold "attention").
IMAGES = """
() => Array.from(document.querySelectorAll('[data-testid="stImage"], [data-testid="stFullScreenFrame"]'))
  .map(el => [el.querySelector('img'), el.innerText.trim()])
  .filter(([img]) => img && img.getBoundingClientRect().width > 0)
  .map(([img, text]) => ({caption: text, width: img.naturalWidth,
                          shown: Math.round(img.getBoundingClientRect().width)}))
"""

# Errors inside a closed <details> (st.expander, st.status).
HIDDEN_ERRORS = """
() => Array.from(document.querySelectorAll('details:not([open])'))
  .filter(d => d.querySelector('[data-testid="stAlertContentError"]'))
  .map(d => d.innerText.slice(0, 80))
"""


@pytest.fixture(scope="module")
def layout_store_template(tiny_store_template, tmp_path_factory) -> Path:
    """The demo fixture store with two noisy deep-kind models (oracle + noise), trained QCT
    and radiomics models (radiomics values drawn under the real feature names) and a small
    trained ResNet-18 (32 px, 3 slices, 2 epochs: its weights on disk, so an upload gets its
    risk and its Grad-CAM), evaluated, so Model comparison draws its charts, tables and
    paired tests, Radiomics & SHAP its SHAP views and Upload & predict its risk table and
    saliency row."""
    root = tmp_path_factory.mktemp("layout")
    path = root / "store.duckdb"
    shutil.copy(tiny_store_template, path)
    add_noisy_model(path, "noisy", sd=1.0, seed=7)
    add_noisy_model(path, "noisier", sd=2.0, seed=8)
    add_fake_radiomics(path, seed=1)
    with st.open_store(path) as s:
        for kind in ("qct", "radiomics"):
            train_tabular(s, kind, models_dir=root / "models", folds=3)
        train_backbone(s, "resnet18", profile="quick", models_dir=root / "models", folds=2,
                       workers=1, device="cpu", cache_dir=root / "inputs",
                       config_overrides={"image_size": 32, "n_slices": 3, "epochs": 2,
                                         "batch_size": 8})
        evaluate.run_evaluation(s, n_boot=200)
    return path


@pytest.fixture(autouse=True)
def _models_dir(layout_store_template, monkeypatch) -> None:
    """The app started below finds the trained models' files (it reads $SSCMORT_MODELS)."""
    monkeypatch.setenv("SSCMORT_MODELS", str(layout_store_template.parent / "models"))


@pytest.fixture()
def tiny_store(layout_store_template, tmp_path) -> Path:  # the app fixture reads this name
    dest = tmp_path / "store.duckdb"
    shutil.copy(layout_store_template, dest)
    return dest


@pytest.fixture(scope="module")
def series_zip(tmp_path_factory) -> Path:
    row = generate_cohort(n_patients=3, seed=21).scans.to_dict(orient="records")[0]
    folder = tmp_path_factory.mktemp("up") / "series"
    files = write_dicom_series(phantom_for_scan(row), folder, instance_order="shuffled")
    out = folder.parent / "series.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f"series/{f.name}")
    return out


def _browser(pw):
    return pw.chromium.launch(
        executable_path=str(CHROMIUM), headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync"])


MAIN_HEIGHT = """
() => { const m = document.querySelector('[data-testid="stMain"]');
        return m ? m.scrollHeight : document.body.scrollHeight; }
"""


def _scroll_through(page) -> int:
    """Scroll the app's main area top to bottom (every chart drawn), back to the top; its
    height in px."""
    height = page.evaluate(MAIN_HEIGHT)
    for y in range(0, height + 1, 600):
        page.evaluate(f"() => document.querySelector('[data-testid=\"stMain\"]')"
                      f"?.scrollTo(0, {y})")
        page.wait_for_timeout(120)
    page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollTo(0, 0)")
    return height


def _screenshot(page, path: Path, height: int) -> None:
    """The whole page (Streamlit scrolls inside stMain, so grow the viewport, then restore)."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(height, 300), 16000)})
    page.wait_for_timeout(400)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def _check_page(page, name: str, size: str, shots: Path) -> list[str]:
    """Every defect class on the page as it stands; screenshot saved."""
    height = _scroll_through(page)
    last, stable = None, 0
    for _ in range(40):  # until every chart has drawn and stopped changing (vega's resize)
        now = page.evaluate(CHARTS_DRAWN)
        stable = stable + 1 if now == last else 0
        if stable >= 3 and (now[0] == 0 or now[1] > 0):
            break
        last = now
        page.wait_for_timeout(250)
    problems = [f"{name}@{size}: exception" for _ in
                range(page.locator('[data-testid="stException"]').count())]
    problems += [f"{name}@{size}: clipped text {t}" for t in page.evaluate(CLIPPED_TEXT)]
    problems += [f"{name}@{size}: table scrolls sideways {t}" for t in
                 page.evaluate(WIDE_TABLES)]
    problems += [f"{name}@{size}: error in a collapsed box {t}" for t in
                 page.evaluate(HIDDEN_ERRORS)]
    problems += [f"{name}@{size}: chart without a legend ({t})" for t in
                 page.evaluate(KEYLESS_CHARTS)]
    body = page.inner_text("body")
    if "Research use only" not in body:
        problems.append(f"{name}@{size}: no research-use line")
    _screenshot(page, shots / f"{name}-{size}.png", height)
    return problems


def _nav(page, title: str) -> None:
    """Go to a page through the sidebar (same session, as a user would)."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    # the new page's title, not the old one's (under load the new script starts late)
    page.locator('[data-testid="stMainBlockContainer"] h1', has_text=title).first \
        .wait_for(timeout=90_000)
    _wait_idle(page)


def _saliency(page, size: str, shots: Path) -> list[str]:
    """The deep model's Grad-CAM row: in z order, drawn no larger than its pixels (never
    blurred by the browser's upscaling), horizons named in the singular where it is one."""
    problems = []
    page.get_by_text("Where the deep models looked").first.wait_for(timeout=60_000)
    page.locator('[data-testid="stImage"]', has_text="attention").first \
        .wait_for(timeout=180_000)
    _wait_idle(page)
    for horizon in ("5 years", "1 year"):
        if horizon == "1 year":
            page.get_by_text("1 year", exact=True).first.click()
            _wait_idle(page)
        sal = [i for i in page.evaluate(IMAGES) if "attention" in i["caption"]]
        if not sal:
            problems.append(f"saliency@{size} {horizon}: no saliency image")
            continue
        zs = [int(c["caption"].split()[1]) for c in sal]
        if zs != sorted(zs):
            problems.append(f"saliency@{size} {horizon}: slices out of order {zs}")
        blurred = [f"{i['width']} px drawn at {i['shown']}" for i in sal
                   if i["width"] < i["shown"] - 1]
        if blurred:
            problems.append(f"saliency@{size} {horizon}: images upscaled {blurred}")
        problems += _check_page(page, f"upload_predict-saliency-{horizon.split()[0]}y",
                                size, shots)
    if page.get_by_text("1 years").count():
        problems.append(f"saliency@{size}: a horizon reads '1 years'")
    return problems


def _upload_and_come_back(page, zip_path: Path, size: str, shots: Path) -> list[str]:
    problems = []
    _nav(page, "Upload & predict")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(zip_path))
    page.wait_for_selector("text=Lung volume", timeout=180_000)
    _wait_idle(page)
    problems += _check_page(page, "upload_predict-analysed", size, shots)
    if page.get_by_text("Existing patient (pseudonymous id)").count():  # "New patient" is on
        problems.append(f"upload@{size}: the save form offers existing patients for a new one")
    problems += _saliency(page, size, shots)
    _nav(page, "Overview")
    _nav(page, "Upload & predict")
    body = page.inner_text("body")
    if "Waiting for a scan" in body or "Lung volume" not in body:
        problems.append(f"upload@{size}: the analysis is gone after navigating away and back")
    problems += _check_page(page, "upload_predict-after-navigation", size, shots)
    return problems


def _bad_upload(page, tmp: Path, size: str, shots: Path) -> list[str]:
    """A refused upload shows its reason open and red."""
    bad = tmp / "not-a-ct.nii"
    bad.write_bytes(b"this is not an image")
    _nav(page, "Upload & predict")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
    page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=60_000)
    _wait_idle(page)
    problems = _check_page(page, "upload_predict-refused", size, shots)
    if not page.locator('[data-testid="stAlertContentError"]').first.is_visible():
        problems.append(f"upload@{size}: the refusal's reason is not in view")
    return problems


# (legend label, symbol colour) of the visible ROC chart's model legend
ROC_LEGEND = """
() => {
  for (const svg of document.querySelectorAll('[data-testid="stVegaLiteChart"] svg')) {
    if (svg.getBoundingClientRect().width === 0) continue;
    const title = svg.querySelector('.role-title-text');
    if (!title || !title.textContent.startsWith('ROC')) continue;
    const legend = svg.querySelector('.role-legend');
    const labels = Array.from(legend.querySelectorAll('.role-legend-label text'))
      .map(t => t.textContent);
    const colours = Array.from(legend.querySelectorAll('.role-legend-symbol path'))
      .map(p => p.getAttribute('stroke') || p.getAttribute('fill'));
    return labels.map((l, i) => [l, colours[i] || null]);
  }
  return [];
}
"""


def _colours_kept(page, size: str, shots: Path) -> list[str]:
    """On Model comparison (any horizon tab open): removing a model leaves every other
    model's colour in the ROC legend as it was."""
    before = dict(page.evaluate(ROC_LEGEND))
    if len(before) < 3:
        return [f"model_comparison@{size}: ROC legend has {len(before)} entries"]
    page.locator('[data-testid="stMultiSelect"]').first \
        .locator('.react-aria-ComboBox button[aria-label^="Remove"]').first.click()
    _wait_idle(page)
    problems = _check_page(page, "model_comparison-one-removed", size, shots)
    after = dict(page.evaluate(ROC_LEGEND))
    if len(after) != len(before) - 1 or not set(after) < set(before):
        problems.append(f"model_comparison@{size}: legend {sorted(before)} -> {sorted(after)}")
    changed = {k: (before[k], v) for k, v in after.items() if k in before and before[k] != v}
    if changed:
        problems.append(f"model_comparison@{size}: colours changed on removal {changed}")
    return problems


def _shap_link(page, size: str, shots: Path) -> list[str]:
    """The timeline's "Explain ... (SHAP)" link: one click, the same tab and session (no
    reload: a marker set on the page survives), landing on Radiomics & SHAP's scan
    explanation of that scan."""
    _nav(page, "Patient timeline")
    pages_before = len(page.context.pages)
    page.evaluate("() => { window.__sscmortSameDocument = true; }")
    link = page.locator('[data-testid="stPageLink"] a', has_text="(SHAP)").first
    scan_date = link.inner_text().split("Explain", 1)[-1].split("(SHAP)")[0].strip()
    link.click()
    page.locator('[data-testid="stMainBlockContainer"] h1', has_text="Radiomics & SHAP") \
        .first.wait_for(timeout=90_000)
    _wait_idle(page)
    problems = _check_page(page, "radiomics_shap-from-timeline", size, shots)
    if len(page.context.pages) != pages_before:
        problems.append(f"shap link@{size}: opened another tab")
    if not page.evaluate("() => window.__sscmortSameDocument === true"):
        problems.append(f"shap link@{size}: the page reloaded (a new session)")
    if "scan=" not in page.url:
        problems.append(f"shap link@{size}: the scan is not in the URL ({page.url})")
    tab = page.get_by_role("tab", name="Scan explanation")
    if tab.get_attribute("aria-selected") != "true":
        problems.append(f"shap link@{size}: the scan explanation tab is not open")
    if scan_date and scan_date not in page.inner_text('[data-testid="stMain"]'):
        problems.append(f"shap link@{size}: the scan of {scan_date} is not the one shown")
    return problems


def _run(app_url: str, pages: tuple[str, ...], sizes: dict, zip_path: Path, tmp: Path,
         shots: Path, links: bool = False) -> list[str]:
    sync_api = pytest.importorskip("playwright.sync_api")
    problems: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        try:
            for size, (w, h) in sizes.items():
                context = browser.new_context(viewport={"width": w, "height": h})
                page = context.new_page()
                for name in pages:
                    page.goto(f"{app_url}/{ALL_PAGES[name]}")
                    _wait_idle(page)
                    problems += _check_page(page, name, size, shots)
                    for tab, shot in OTHER_TABS.get(name, ()):  # what hidden tabs hold
                        page.get_by_role("tab", name=tab).click()
                        _wait_idle(page)
                        problems += _check_page(page, f"{name}-{shot}", size, shots)
                    if links and name == "model_comparison":
                        problems += _colours_kept(page, size, shots)
                if links:
                    problems += _shap_link(page, size, shots)
                problems += _upload_and_come_back(page, zip_path, size, shots)
                problems += _bad_upload(page, tmp, size, shots)
                context.close()
        finally:
            browser.close()
    return problems


def _shots(artifacts_dir: Path) -> Path:
    out = artifacts_dir / "layout"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_pages_fit_1280_smoke(running_app, series_zip, artifacts_dir, tmp_path):  # noqa: F811
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (`make install-dev` installs it as root)")
    problems = _run(running_app, SMOKE_PAGES, {"1280x720": SIZES["1280x720"]}, series_zip,
                    tmp_path, _shots(artifacts_dir))
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_page_fits_at_both_sizes(running_app, series_zip, artifacts_dir,  # noqa: F811
                                       tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (`make install-dev` installs it as root)")
    problems = _run(running_app, tuple(ALL_PAGES), SIZES, series_zip, tmp_path,
                    _shots(artifacts_dir), links=True)
    assert not problems, "\n".join(problems)
