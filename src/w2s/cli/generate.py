"""``w2s generate``: flags -> one request (:func:`w2s.request.parse_request`) -> results.

The flags are derived (:mod:`w2s.cli.requests`): sampling flags from
:class:`~w2s.params.SamplingParams`, knob flags and ``--method`` from the decoder registry
(plugins included), the guide's flags from the guide spec. Every value is checked by the
request parser before a model loads.
"""

from __future__ import annotations

from typing import Any

import click

from w2s.cli.group import cli
from w2s.cli.options import read_prompt_rows
from w2s.cli.requests import RequestCommand, build_request, loader_of, request_options


@cli.command(cls=RequestCommand)
@request_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per prompt on stdout.")
def generate(**o: Any) -> None:
    """Generate responses from the BASE model, steered by a small tuned/untuned pair.

    \b
    Examples:
      w2s generate --base big --tuned small-dpo --untuned small --method cbs \\
          --w 4 --k 4 --l 5 --prompt "The movie was"
      w2s generate --base big --method sample --prompts-file prompts.jsonl --json
    """
    as_json, return_all = o.pop("as_json"), o.pop("return_all")
    request = build_request(o, return_all)
    rows = read_prompt_rows(o["prompt"], o["prompts_file"])
    prompts = [p for p, _ in rows]
    from w2s.request import run

    results = run(request, prompts, loader_of(o))  # references checked before anything loads
    _print(results, [extra for _, extra in rows], as_json, return_all)


def _print(results: list[Any], extras: list[dict[str, Any]], as_json: bool, return_all: bool
           ) -> None:
    from w2s.textfile import strict_json

    for r, extra in zip(results, extras):
        if as_json:
            row = r.to_dict()
            if not return_all:
                row.pop("candidates")
            click.echo(strict_json({**extra, **row}, ensure_ascii=False))
        else:
            score = "" if r.score is None else f"  [score {r.score:+.3f}]"
            click.echo(f"{r.prompt}\u2192{r.text}{score}")
            if return_all:
                for i, c in enumerate(r.candidates):
                    click.echo(f"   #{i + 1} {c.score:+.3f}  {c.text!r}")
