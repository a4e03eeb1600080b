"""The README runs as written: every Python snippet is executed (on the zoo, its placeholders
named), the OpenAI-client and curl snippets run against a real ``w2s serve``, and every
``w2s ...`` command in a shell snippet is parsed by the real CLI with the command itself
not run (so a renamed flag, a removed subcommand or a wrong value fails here, not for a
reader). Files a snippet assumes the reader has (``train.jsonl``) may be missing."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
from pathlib import Path

import click
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
PLACEHOLDERS = {"path/or/hub-id/of/base": "zoo:base", "path/to/small-tuned": "zoo:tuned",
                "path/to/small-untuned": "zoo:untuned"}


def _python(*, client: bool) -> list[str]:
    return [body for lang, body in BLOCKS
            if lang == "python" and ("OpenAI(" in body) == client]


def test_the_readme_has_the_snippets_this_test_runs():
    assert len(_python(client=False)) >= 2 and len(_python(client=True)) == 1
    assert len(_commands()) >= 20


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


def _commands() -> list[list[str]]:
    """Every ``w2s ...`` command of the shell snippets, as argument lists: continuation lines
    joined, comments dropped, ``a && b`` and ``a, b`` split, ``[--opt]`` taken as given."""
    cmds = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        text = body.replace("\\\n", " ")
        for line in text.splitlines():
            line = re.sub(r"\s#.*$", "", line).strip()
            for part in re.split(r"&&|, (?=w2s )", line):
                part = part.strip().replace("[", "").replace("]", "")
                if part.startswith("w2s "):
                    cmds.append(shlex.split(part)[1:])
    return cmds


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a)[:60])
def test_each_w2s_command_in_the_readme_parses(args, monkeypatch, capsys):
    from w2s.cli import cli

    ran: list[str] = []

    def parse_only(self, ctx):  # noqa: ANN001, ANN202 - the leaf command's body is not run
        ran.append(ctx.command_path)

    monkeypatch.setattr(click.Command, "invoke", parse_only)
    try:
        code = cli.main(args, prog_name="w2s", standalone_mode=False)
    except click.exceptions.Exit:
        return
    except SystemExit:  # w2s's one-line usage errors
        err = capsys.readouterr().err
        assert "does not exist" in err, err  # only a file the reader is assumed to have
        return
    if "--help" in args:
        assert code == 0
        return
    assert ran, f"w2s {' '.join(args)} reached no command"


def test_the_client_and_curl_snippets_run_against_w2s_serve(w2s_server):
    import httpx

    [code] = _python(client=True)
    code = code.replace("http://127.0.0.1:8000/v1", w2s_server.url + "/v1").replace(
        '"KEY"', repr(w2s_server.api_key))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md client snippet", "exec"), {})  # noqa: S102
    assert len(out.getvalue().split()) > 3
    [curl] = [body for lang, body in BLOCKS if lang == "bash" and body.startswith("curl")]
    body = json.loads(re.search(r"-d '(.*)'", curl, re.S).group(1))
    r = httpx.post(w2s_server.url + "/v1/completions", json=body,
                   headers=w2s_server.headers(), timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"]
