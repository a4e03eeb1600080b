"""The README runs as written: every Python snippet is executed (on the zoo, its placeholders
named), the OpenAI-client and curl snippets run against a real ``w2s serve``, and every
``w2s ...`` command in a shell snippet is parsed by the real CLI with the command itself
not run (so a renamed flag, a removed subcommand or a wrong value fails here, not for a
reader). Files a snippet assumes the reader has (``train.jsonl``) may be missing. The README
stays short: the rest lives in docs/ (tests/test_docs_site.py checks those pages)."""

from __future__ import annotations

import contextlib
import io
import json
import re

import pytest
from snippets import ROOT, blocks, check_parses, w2s_commands

README = ROOT / "README.md"
BLOCKS = blocks(README)
PLACEHOLDERS = {"path/or/hub-id/of/base": "zoo:base", "path/to/small-tuned": "zoo:tuned",
                "path/to/small-untuned": "zoo:untuned",
                # the GPU quickstart's second GPU: this machine has none, the snippet runs on cpu
                '"cuda:1"': '"cpu"'}
MAX_LINES = 300


def _python(*, client: bool) -> list[str]:
    return [body for lang, body in BLOCKS
            if lang == "python" and ("OpenAI(" in body) == client]


def _commands() -> list[list[str]]:
    return w2s_commands(BLOCKS)


def test_the_readme_is_short_and_has_the_snippets_this_test_runs():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    assert len(_python(client=False)) >= 2 and len(_python(client=True)) == 1
    assert len(_commands()) >= 8
    # the four quickstart forms: the zoo, a GPU pair, a base behind an engine, the server
    subcommands = {tuple(a[:1]) for a in _commands()}
    assert {("generate",), ("demo",), ("eval",), ("serve",)} <= subcommands
    assert any("--base-url" in a for a in _commands())
    assert any("--dtype" in a and "bfloat16" in a for a in _commands())


def test_the_readme_names_the_two_commands_ci_runs():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_extras_table_is_pyprojects():
    """The README's install table names each extra of pyproject.toml, and each of its
    packages, and no other."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "project"]["optional-dependencies"]
    install = README.read_text("utf-8").split("## Install")[1].split("\n## ")[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", install, re.M))
    assert set(rows) == set(extras)
    for name, requirements in extras.items():
        for req in requirements:
            package = re.match(r"[\w.-]+", req).group(0)
            assert package.lower() in rows[name].lower(), (name, package)


def test_the_python_snippets_run_on_the_zoo_in_order():
    """In one namespace, in the README's order, as a reader pastes them into one session."""
    namespace: dict[str, object] = {}
    for index, code in enumerate(_python(client=False)):
        for placeholder, ref in PLACEHOLDERS.items():
            code = code.replace(placeholder, ref)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md python snippet {index}", "exec"),  # noqa: S102
                 namespace)
        assert out.getvalue().strip(), f"snippet {index} printed nothing"


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a)[:60])
def test_each_w2s_command_in_the_readme_parses(args, monkeypatch, capsys):
    check_parses(args, monkeypatch, capsys)


def test_the_client_and_curl_snippets_run_against_w2s_serve(w2s_server):
    import httpx

    [code] = _python(client=True)
    code = code.replace("http://127.0.0.1:8000/v1", w2s_server.url + "/v1").replace(
        '"KEY"', repr(w2s_server.api_key))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md client snippet", "exec"), {})  # noqa: S102
    assert len(out.getvalue().split()) > 3
    [curl] = [body for lang, body in BLOCKS if lang == "bash" and "curl " in body]
    body = json.loads(re.search(r"-d '(.*)'", curl, re.S).group(1))
    r = httpx.post(w2s_server.url + "/v1/completions", json=body,
                   headers=w2s_server.headers(), timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"]
