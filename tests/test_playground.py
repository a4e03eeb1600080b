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
        page.said = []  # what the page printed and fetched: the message of a failed wait
        page.on("console", lambda m: page.said.append(f"console {m.type}: {m.text}"))
        page.on("requestfailed", lambda r: page.said.append(f"failed {r.url}: {r.failure}"))
        page.on("response", lambda r: page.said.append(f"{r.status} {r.url}"))
        yield page
        browser.close()


def wait_for(page, server, selector: str, timeout: float = 30_000) -> None:
    """``page.wait_for_selector``, but a timeout says what the page showed, what it fetched
    and what the server logged, so that a failure on CI can be read without rerunning it."""
    from playwright.sync_api import TimeoutError as PageTimeout

    try:
        page.wait_for_selector(selector, timeout=timeout)
    except PageTimeout:
        shown = page.locator("#cols").inner_text()[:600]
        log = Path(server.log).read_text()[-1500:]
        pytest.fail(f"no {selector} after {timeout / 1000:.0f} s\n#cols: {shown}\n"
                    "page: " + "\n".join(page.said[-20:]) + f"\nserver log:\n{log}")


def test_the_playground_compares_methods_side_by_side(page, w2s_server):
    page.goto(w2s_server.url + "/")
    page.fill("#apikey", w2s_server.api_key)
    page.dispatch_event("#apikey", "change")
    wait_for(page, w2s_server, '.col[data-method="cbs"] input[data-knob="w"]')
    page.fill("#prompt", "The movie was")
    page.fill("#max_tokens", "16")
    page.click("#run")
    columns = ["sample", "bon", "cbs", "eft"]
    for m in columns:
        wait_for(page, w2s_server, f'.col[data-method="{m}"][data-state="done"]', 60_000)
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
    wait_for(page, w2s_server, "#runview table")
    assert "method" in page.locator("#runview table th").first.inner_text().lower()
    wait_for(page, w2s_server, "#runview img", 20_000)
    page.screenshot(path=str(art / "playground-runs.png"), full_page=True)


def test_a_wrong_key_says_so_on_the_page(page, w2s_server):
    page.goto(w2s_server.url + "/")
    page.evaluate("localStorage.removeItem('w2s-api-key')")
    page.fill("#apikey", "not-the-key")
    page.dispatch_event("#apikey", "change")
    wait_for(page, w2s_server, "#keyerror")
    assert "API key" in page.locator("#keyerror").inner_text()


def test_the_playground_draws_a_search_as_a_tree(page, w2s_server):
    """CBS with the search tree on: the tree's nodes appear with their scores, and the
    highlighted nodes and edges are exactly the kept nodes of the request's JSON trace (asked
    for again, plainly, with the same seed)."""
    import httpx

    page.goto(w2s_server.url + "/")
    page.fill("#apikey", w2s_server.api_key)
    page.dispatch_event("#apikey", "change")
    cbs = '.col[data-method="cbs"]'
    wait_for(page, w2s_server, f'{cbs} input[data-knob="w"]')
    for col in page.locator(".col").all():  # CBS alone
        box = col.locator("h2 input[type=checkbox]")
        if box.is_enabled() and box.is_checked() != (col.get_attribute("data-method") == "cbs"):
            box.click()
    for knob, value in (("w", "2"), ("k", "2"), ("l", "4")):
        page.fill(f'{cbs} input[data-knob="{knob}"]', value)
    page.fill("#prompt", "The movie was")
    page.fill("#max_tokens", "16")
    page.fill("#seed", "7")
    page.check("#trace")
    page.click("#run")
    wait_for(page, w2s_server, f'{cbs}[data-state="done"] .tree[data-kept]', 60_000)
    body = {"prompt": "The movie was", "max_tokens": 16, "seed": 7,
            "w2s": {"method": "cbs", "w": 2, "k": 2, "l": 4, "trace": True}}
    r = httpx.post(w2s_server.url + "/v1/completions", json=body, headers=w2s_server.headers(),
                   timeout=60)
    [t] = r.json()["w2s"]["traces"]
    kept = [n for n in t["nodes"] if n["kept"]]
    tree = page.locator(f"{cbs} .tree")
    assert tree.locator("circle[data-node]").count() == len(t["nodes"]) == 4 * 4
    assert tree.locator("circle.kept").count() == len(kept) == int(tree.get_attribute("data-kept"))
    assert tree.locator("line.kept").count() == len(kept)
    assert {int(x) for x in tree.locator("circle.kept").evaluate_all(
        "cs => cs.map(c => c.dataset.node)")} == {n["id"] for n in kept}
    scores = tree.locator("text.score").evaluate_all("ts => ts.map(t => t.textContent)")
    assert sorted(scores) == sorted(f"{n['score']:.2f}" for n in t["nodes"])
    answer = r.json()["choices"][0]["text"].strip()
    assert page.locator(f"{cbs} .response").inner_text().strip() == answer
    art = ROOT / "tests" / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    page.locator(cbs).screenshot(path=str(art / "playground-tree.png"))
    if os.environ.get("W2S_UPDATE_SCREENSHOT") == "1":
        shutil.copy(art / "playground-tree.png", ROOT / "docs" / "playground-tree.png")
