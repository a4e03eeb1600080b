"""``w2s serve``: the OpenAI-compatible server and its playground."""

from __future__ import annotations

from typing import Any

import click

from w2s.cli.group import cli
from w2s.cli.options import guide_options


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
@guide_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (0.0.0.0 exposes the server to your network).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-key", metavar="KEY", envvar="W2S_API_KEY", show_envvar=True,
              help="Require Authorization: Bearer KEY on every route but /health and the "
              "playground page.")
@click.option("--config", "config_file", metavar="FILE", help="YAML/TOML with these settings, "
              "default method, sampling settings and per-method knobs (flags win).")
@click.option("--served-name", "--served-model-name", default="w2s", show_default=True,
              help="The model id clients name (GET /v1/models).")
@click.option("--runs", metavar="DIR", default="runs", show_default=True,
              help="Folder of finished `w2s eval` runs that the playground shows.")
@click.option("--method", "default_method", default=None,
              help="Method of requests that name none [default: the config's, else cbs with a "
              "guide and sample without].")
@click.option("--max-tokens-limit", type=click.IntRange(min=1), default=256, show_default=True,
              help="Largest max_tokens a request may ask for.")
@click.option("--max-n", type=click.IntRange(min=1), default=8, show_default=True,
              help="Largest n (choices per prompt).")
@click.option("--max-rows", type=click.IntRange(min=1), default=None,
              help="Candidate rows per batched decoder call (W*K per prompt for CBS); a request "
              "needing more is refused [default: the base's --batch-size].")
@click.option("--max-queue", type=click.IntRange(min=1), default=256, show_default=True,
              help="Choices (prompts x n) that may wait; a request that would pass it gets 429 "
              "with Retry-After.")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), default=1 << 20,
              show_default=True, help="Largest request body.")
@click.option("--gather-ms", type=click.FloatRange(0, 10_000), default=10.0, show_default=True,
              help="How long a request waits for compatible company to batch with.")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16", "half", "float"]),
              default="auto", show_default=True, help="Weights' dtype (auto: fp32 on CPU).")
@click.option("--device", default="auto", show_default=True,
              help="auto (a CUDA GPU when torch sees one, else cpu), cpu, cuda or cuda:1.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Rows per forward pass (bounds memory).")
@click.option("--device-map", metavar="MAP",
              help="Shard the base over devices with accelerate: auto, balanced, "
              "balanced_low_0, sequential, a JSON object or a .json file.")
@click.option("--guide-device", metavar="DEVICE",
              help="Where the guide's small models go (default: --device), e.g. cuda:1.")
@click.option("--memory-limit", metavar="GIB", type=float,
              help="Refuse a request whose memory plan is over this many GiB.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True,
              help="Server log level; at info and below every request is logged "
              "(method, path, status, seconds).")
@click.option("--no-access-log", "--disable-log-requests", "no_access_log", is_flag=True,
              help="Do not log each request (vLLM's name works too).")
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

