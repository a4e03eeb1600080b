"""The code blocks of a Markdown file, and the ``w2s ...`` commands of its shell blocks, for the
tests that keep the README and the documentation pages true (test_readme, test_docs_site).

A command is parsed by the real CLI with the leaf command's body replaced, so nothing loads or
runs: a renamed flag, a removed subcommand or a wrong value fails, a long job costs nothing."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]


def blocks(path: Path) -> list[tuple[str, str]]:
    """``(language, body)`` of each fenced code block (```` ```lang ````), in order."""
    return re.findall(r"```(\w*)\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def w2s_commands(code_blocks: list[tuple[str, str]]) -> list[list[str]]:
    """Every ``w2s ...`` command of the ``bash`` blocks, as argument lists: continuation lines
    joined, comments dropped, ``a && b`` and ``a, b`` split, ``[--opt]`` taken as given."""
    cmds = []
    for lang, body in code_blocks:
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


def check_parses(args: list[str], monkeypatch, capsys) -> None:  # noqa: ANN001
    """``w2s ARGS`` parses with the real CLI and reaches a command (its body is not run); a
    file the reader is assumed to have (``train.jsonl``) may be missing."""
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
