"""The documentation site builds and says true things: ``mkdocs build --strict`` (a broken link
or anchor, a page left out of the nav, an API reference to a name that moved all fail), every
``w2s ...`` command on every page parses with the real CLI (test_readme's check; the commands,
long jobs among them, are never run), the API reference covers the public API, and the count
of bad inputs the pages quote is the count docs/errors.md holds."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from snippets import ROOT, blocks, check_parses, w2s_commands

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def _page_commands() -> list[tuple[str, list[str]]]:
    return [(page.name, args) for page in PAGES for args in w2s_commands(blocks(page))]


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    """The way `make docs` serves it, into a temporary folder; run from elsewhere, so paths in
    mkdocs.yml must be relative to it."""
    try:
        import material  # noqa: F401
        import mkdocstrings  # noqa: F401
    except ImportError as e:
        pytest.fail(f"{e.name} is not installed: pip install -e '.[docs]' (make setup does)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                        "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for page in PAGES:  # every page became a page of the site
        out = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert out.is_file(), out
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="w2s.decoding.cbs.cbs"' in api and 'id="w2s.params.SearchParams"' in api
    # bench/RESULTS.md is included as it is, not copied
    assert "Benchmark results" in (site / "benchmarks" / "index.html").read_text("utf-8")
    # errors.md's placeholders are text, not tags a browser would hide
    assert "&lt;tmp&gt;" in (site / "errors" / "index.html").read_text("utf-8")


def test_the_pages_have_commands_to_check():
    pages = {name for name, _ in _page_commands()}
    assert {"usage.md", "engines.md", "serve.md", "distill.md", "generalise.md"} <= pages
    assert len(_page_commands()) >= 30


@pytest.mark.parametrize("page,args", _page_commands(),
                         ids=[f"{p}: {' '.join(a)[:50]}" for p, a in _page_commands()])
def test_each_w2s_command_on_each_page_parses(page, args, monkeypatch, capsys):
    check_parses(args, monkeypatch, capsys)


def test_the_api_reference_covers_the_public_api():
    """Each name of ``w2s.__all__`` has a ``:::`` entry on api.md or is listed among the
    members of one (the earlier names kept as aliases excepted)."""
    import w2s

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    shown = {m.rsplit(".", 1)[-1] for m in re.findall(r"^::: ([\w.]+)", text, re.M)}
    for members in re.findall(r"members: \[([^\]]*)\]", text):
        shown |= {m.strip() for m in members.split(",")}
    aliases = {"best_of_n", "particle_filter", "Resolver", "__version__"}
    assert set(w2s.__all__) - aliases - shown == set()


def test_the_count_of_bad_inputs_the_pages_quote_is_the_tables():
    rows = [line for line in (DOCS / "errors.md").read_text(encoding="utf-8").splitlines()
            if re.match(r"\| (CLI|API|config|server) \|", line)]
    quoted = []
    for path in [ROOT / "README.md", *PAGES]:
        quoted += [int(n) for n in re.findall(r"(\d+) bad inputs", path.read_text("utf-8"))]
    assert quoted, "no page says how many bad inputs docs/errors.md lists"
    assert set(quoted) == {len(rows)}, (
        f"the pages say {sorted(set(quoted))} bad inputs; docs/errors.md has {len(rows)} rows: "
        "write that number (docs/reliability.md)")


def _anchors(page) -> set[str]:  # noqa: ANN001
    """The ids mkdocs gives a page's headings (toc's slugify, on the text without its markup)."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").replace("*", "")
        out.add(slugify(plain, "-"))
    return out


def test_the_readmes_links_resolve():
    """Every relative link of the README names a file of the repository, and an anchor into a
    page of docs/ names one of its headings (the README's sections that the site includes are
    also checked by the strict build)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", text)
    relative = [(path, anchor) for path, anchor in links if "://" not in path]
    assert len(relative) >= 20
    for path, anchor in relative:
        target = ROOT / path
        assert target.exists(), path
        if anchor:
            assert anchor in _anchors(target), f"{path}#{anchor}"
