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
@click.option("--trace", "trace", type=click.Path(dir_okay=True), default=None,
              metavar="FILE", help="Write what the search did on each prompt (every candidate "
              "of every round: parent, text, score, kept) to FILE, one JSON object per prompt "
              "(docs/traces.md).")
@click.option("--quiet", is_flag=True, help="Nothing on stderr but errors (no stages: loading, "
              "the memory plan, decoding).")
def generate(**o: Any) -> None:
    """Generate responses from the BASE model, steered by a small tuned/untuned pair.

    \b
    Examples:
      w2s generate --base big --tuned small-dpo --untuned small --method cbs \\
          --w 4 --k 4 --l 5 --prompt "The movie was"
      w2s generate --base big --method sample --prompts-file prompts.jsonl --json
    """
    as_json, return_all, quiet = o.pop("as_json"), o.pop("return_all"), o.pop("quiet")
    trace_file = o.pop("trace")
    request = build_request(o, return_all)
    rows = read_prompt_rows(o["prompt"], o["prompts_file"])
    if trace_file is not None:
        import w2s.decoding.trace as trace

        trace_file = trace.check_path(trace_file)  # one line now, not after the decode
    prompts = [p for p, _ in rows]
    from w2s.request import log
    from w2s.stages import shown_stages

    loader = loader_of(o)
    with shown_stages(not quiet):
        loader.check(request.base, request.guide)  # every reference, before anything loads
        loader.base(request.base)
        loader.guide(request.guide)
        log.info(f"decoding {len(prompts)} prompt{'s' if len(prompts) != 1 else ''} with "
                 f"{request.method}")
        results = _run(request, prompts, loader, trace_file)
    _print(results, [extra for _, extra in rows], as_json, return_all)


def _run(request: Any, prompts: list[str], loader: Any, trace_file: Any) -> list[Any]:
    """The results; with a trace file, the decode recorded and its traces written there."""
    from w2s.request import run

    if trace_file is None:
        return run(request, prompts, loader)
    import w2s.decoding.trace as trace

    with trace.recording() as rec:
        results = run(request, prompts, loader)
    trace.write(trace_file, rec.traces)
    if rec.traces and not rec.traces[0]["rounds"]:
        click.echo(f"w2s: {request.method} has no search rounds: {trace_file} holds each "
                   "answer as one node", err=True)
    return results


def _details(r: Any) -> str:
    """An answer's seed (what repeats it), length, cost and time: the batch's time, named as
    one when prompts were decoded together."""
    ended = "ended" if r.finished else "cut at max-new-tokens"
    batch = r.cost.batch_prompts
    time = (f"{r.cost.wall_time_s:.2f} s" if batch == 1
            else f"{r.cost.wall_time_s:.2f} s for the batch of {batch} prompts")
    # an answer two models wrote (Nudging, WSD) has no one token sequence to count
    length = f"{len(r.token_ids)} tokens ({ended})" if r.token_ids or not r.text else ended
    small = r.stats.get("small_fraction") if isinstance(r.stats, dict) else None
    share = f" \u00b7 the small model wrote {small:.0%}" if small is not None else ""
    return (f"seed {r.seed} \u00b7 {length} \u00b7 {r.cost.base_tokens} base tokens{share} "
            f"\u00b7 {time}")


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
            click.echo(click.style(f"   {_details(r)}", dim=True))
            if return_all:
                for i, c in enumerate(r.candidates):
                    click.echo(f"   #{i + 1} {c.score:+.3f}  {c.text!r}")
