"""Flags derived from the request model, shared by the commands.

- :func:`sampling_options`: one flag per :class:`~w2s.params.SamplingParams` field, its help
  the field's docstring and its default the dataclass's;
- :func:`registry_options`: ``--method`` (the registered decoders, plugins included) and one
  flag per knob of every decoder's knob dataclass, added when the command runs, so a decoder
  registered anywhere shows up with no edit here;
- :func:`guide_options`: the guide (pairs, arms, a reward model, other registered guide kinds,
  weights, normalisation), as :func:`w2s.guides.build.guide_spec` takes it;
- :func:`base_options`: where the base lives, a model or an engine (:class:`~w2s.request.BaseRef`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

import click

from w2s.errors import W2SError
from w2s.params import SamplingParams, field_docs


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def sampling_options(f: Any) -> Any:
    """One flag per SamplingParams field (``stop`` repeatable, booleans as switches)."""
    docs, default = field_docs(SamplingParams), SamplingParams()
    hints = typing.get_type_hints(SamplingParams)
    opts = []
    for fld in dataclasses.fields(SamplingParams):
        typ, doc, value = hints[fld.name], docs.get(fld.name, ""), getattr(default, fld.name)
        if typ is bool:
            opts.append(click.option(flag(fld.name), is_flag=True, default=None, help=doc))
        elif typing.get_origin(typ) is tuple:
            opts.append(click.option(flag(fld.name), multiple=True, help=f"{doc} (repeatable)"))
        else:
            inner = [t for t in typing.get_args(typ) if t is not type(None)] or [typ]
            ctype = {int: click.INT, float: click.FLOAT}.get(inner[0], click.STRING)
            shown = "fresh" if value is None else value
            opts.append(click.option(flag(fld.name), type=ctype, default=None,
                                     help=f"{doc} [default: {shown}]"))
    for opt in reversed(opts):
        f = opt(f)
    return f


def sampling_values(opts: dict[str, Any]) -> dict[str, Any]:
    """The SamplingParams fields a command's flags gave (popped from ``opts``)."""
    out = {}
    for fld in dataclasses.fields(SamplingParams):
        v = opts.pop(fld.name, None)
        if v is not None and v != ():
            out[fld.name] = tuple(v) if isinstance(v, (list, tuple)) else v
    return out


def _knob_table() -> dict[str, dict[str, Any]]:
    """Every knob of every registered decoder: its type, and per decoder its default and doc."""
    from w2s.decoding import decoders

    table: dict[str, dict[str, Any]] = {}
    for spec in decoders().values():
        for knob in spec.knobs():
            row = table.setdefault(knob.name, {"type": knob.type, "methods": {},
                                               "doc": knob.doc})
            if row["type"] is not knob.type:
                raise W2SError(f"knob {knob.name!r} has type {knob.type} in {spec.name} but "
                               f"{row['type']} elsewhere; rename one")
            row["methods"][spec.name] = knob.default
    return table


def registry_options(static: list[click.Parameter]) -> list[click.Parameter]:
    """``--method`` (choices and summaries), one flag per knob, ``--return-all``."""
    from w2s.decoding import decoders, default_method

    taken = {p.name for p in static}
    summaries = "; ".join(f"{name}: {spec.summary}" for name, spec in decoders().items())
    opts: list[click.Parameter] = [click.Option(
        ["--method"], type=click.Choice(list(decoders())), default=None,
        help=f"Decoder [default: {default_method(True)} with a guide, else "
        f"{default_method(False)}]. {summaries}.")]
    for name, row in _knob_table().items():
        if name in taken:
            raise W2SError(f"decoder knob {name!r} ({', '.join(row['methods'])}) clashes with a "
                           "flag of w2s generate; rename the knob")
        typ = row["type"]
        ctype = {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(typ, click.STRING)
        defaults = {d for d in row["methods"].values()}
        shown = (f"{next(iter(defaults))}" if len(defaults) == 1 else
                 "; ".join(f"{m}: {d}" for m, d in row["methods"].items()))
        opts.append(click.Option([flag(name), name], type=ctype, default=None,
                                 help=f"[{', '.join(row['methods'])}] {row['doc']} "
                                 f"[default: {shown}]"))
    ranked = [n for n, spec in decoders().items() if spec.ranked]
    opts.append(click.Option(["--return-all"], is_flag=True,
                             help=f"[{', '.join(ranked)}] Also output every final candidate, "
                             "ranked."))
    return opts


def guide_options(f: Any) -> Any:
    """--tuned, --untuned, --arm, --reward-model, --guide-term, --weights, --normalize: the
    guide, as generate and serve take it."""
    for opt in reversed([
            click.option("--tuned", metavar="MODEL", multiple=True,
                         help="Small tuned model (the guide's numerator). Repeat it for "
                         "several experts (multi-guide EFT, DLF, CBS with a sum of pairs)."),
            click.option("--untuned", metavar="MODEL", multiple=True,
                         help="Small untuned model it was tuned from: one for all --tuned, "
                         "or one per --tuned."),
            click.option("--arm", metavar="MODEL", multiple=True,
                         help="An autoregressive reward LM (GenARM) as (a term of) the guide: "
                         "its log-likelihood is the reward. Repeatable."),
            click.option("--reward-model", metavar="PATH", help="A sequence-classification "
                         "reward model as (an extra term of) the guide."),
            click.option("--guide-term", "guide_terms", metavar="KIND[:JSON]", multiple=True,
                         help="A term of a registered guide kind (a plugin's), with its knobs "
                         "as a JSON object, e.g. length:'{\"target\": 20}'. Repeatable."),
            click.option("--weights", metavar="W1,W2,..", help="Weights of the guide's terms: "
                         "one per --tuned, then one per --arm, then one for --reward-model, "
                         "then one per --guide-term [default: 1 each]."),
            click.option("--normalize", type=click.Choice(["raw", "per_token", "zscore"]),
                         default="raw", show_default=True,
                         help="Put the guide's terms on one scale before weighing them: "
                         "per_token divides a pair's sum by its length; zscore standardises "
                         "each term over one prompt's candidates.")]):
        f = opt(f)
    return f


OUTPUT_FIELDS = frozenset({"prompt", "response", "method", "score", "finished", "finish_reason",
                           "token_ids", "cost", "params", "stats", "candidates", "seed"})
"""The fields of ``generate --json``'s rows: a prompts file's own fields may not reuse them."""


def read_prompt_rows(prompt: tuple[str, ...], prompts_file: str | None
                     ) -> list[tuple[str, dict[str, Any]]]:
    """Prompts from ``--prompt`` (repeatable) and/or a JSONL file (``-``: standard input),
    each with the line's other fields (ids and the like, passed through to the output).

    A line holds ``prompt`` (text) or ``messages`` (a chat conversation, formatted by each
    model's chat template), not both."""
    rows: list[tuple[str, dict[str, Any]]] = [(p, {}) for p in prompt]
    if prompts_file:
        from w2s.chat import ChatPrompt
        from w2s.textfile import check_text, decode_utf8, read_utf8

        if prompts_file == "-":  # bytes, decoded here: not UTF-8 is then one line, as in a file
            stream = getattr(sys.stdin, "buffer", None)
            name = "<stdin>"
            text = decode_utf8(stream.read(), name) if stream is not None else sys.stdin.read()
        else:
            path = Path(prompts_file)
            if not path.is_file():
                raise W2SError(f"prompts file {prompts_file!r} does not exist")
            text, name = read_utf8(path), prompts_file
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{name}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise W2SError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or ("prompt" in row) == ("messages" in row):
                raise W2SError(f"{where}: each line needs a string field 'prompt' or a list "
                               "'messages' (one of them)")
            check_text(row, where)
            extra = {k: v for k, v in row.items() if k not in ("prompt", "messages")}
            clash = sorted(set(extra) & OUTPUT_FIELDS)
            if clash:
                raise W2SError(f"{where}: field {clash[0]!r} is one of the output's own; "
                               "rename it (other fields are passed through)")
            if "messages" in row:
                if not isinstance(row["messages"], list):
                    raise W2SError(f"{where}: 'messages' must be a list of {{role, content}}")
                try:
                    rows.append((ChatPrompt(row["messages"]), extra))
                except W2SError as e:
                    raise W2SError(f"{where}: {e}") from None
            elif isinstance(row["prompt"], str):
                rows.append((row["prompt"], extra))
            else:
                raise W2SError(f"{where}: each line needs a string field 'prompt' or a list "
                               "'messages' (one of them)")
        if not rows:
            raise W2SError(f"prompts file {prompts_file!r} has no prompts")
    if not rows:
        raise W2SError("give a prompt with --prompt TEXT or --prompts-file FILE.jsonl")
    return rows


def read_prompts(prompt: tuple[str, ...], prompts_file: str | None) -> list[str]:
    """The prompts of :func:`read_prompt_rows`, without their other fields."""
    return [p for p, _ in read_prompt_rows(prompt, prompts_file)]

