"""The playground page in a real headless browser (Debian's chromium, driven by playwright),
against a real ``w2s serve`` on the zoo: load the page, give the key, run a comparison, and see
the sample, Best-of-N and CBS columns fill with text, scores and costs; the eval-runs tab shows
the finished run's table and plots. A screenshot is kept in tests/artifacts/ (and refreshed in
docs/ with W2S_UPDATE_SCREENSHOT=1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def page():
    why = ROOT / ".browser" / "UNAVAILABLE"
    if why.is_file():
        pytest.skip(why.read_text().strip())
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM} (make test installs it: scripts/browser.sh)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        yield page
        browser.close()


def test_the_playground_compares_methods_side_by_side(page, w2s_server):
    page.goto(w2s_server.url + "/")
    page.fill("#apikey", w2s_server.api_key)
    page.dispatch_event("#apikey", "change")
    page.wait_for_selector('.col[data-method="cbs"] input[data-knob="w"]')
    page.fill("#prompt", "The movie was")
    page.fill("#max_tokens", "16")
    page.click("#run")
    columns = ["sample", "bon", "cbs", "eft"]
    for m in columns:
        page.wait_for_selector(f'.col[data-method="{m}"][data-state="done"]', timeout=60_000)
    for m in columns:
        col = page.locator(f'.col[data-method="{m}"]')
        assert col.locator(".response").inner_text().strip()
        score = col.locator(".score").inner_text()
        if m != "sample":  # sampling is scored too, as the guide is there
            float(score)
    art = ROOT / "tests" / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(art / "playground.png"), full_page=True)
    if os.environ.get("W2S_UPDATE_SCREENSHOT") == "1":
        shutil.copy(art / "playground.png", ROOT / "docs" / "playground.png")
    page.click('nav button[data-tab="runs"]')
    page.wait_for_selector("#runview table")
    assert "method" in page.locator("#runview table th").first.inner_text().lower()
    page.wait_for_selector("#runview img", timeout=20_000)
    page.screenshot(path=str(art / "playground-runs.png"), full_page=True)


def test_a_wrong_key_says_so_on_the_page(page, w2s_server):
    page.goto(w2s_server.url + "/")
    page.evaluate("localStorage.removeItem('w2s-api-key')")
    page.fill("#apikey", "not-the-key")
    page.dispatch_event("#apikey", "change")
    page.wait_for_selector("#keyerror")
    assert "API key" in page.locator("#keyerror").inner_text()
