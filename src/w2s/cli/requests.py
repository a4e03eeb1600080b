"""The flags that make one request (:func:`w2s.request.parse_request`), shared by every command
that runs a method over prompts (``generate``, ``distill data``).

The flags are derived: sampling flags from :class:`~w2s.params.SamplingParams`, knob flags and
``--method`` from the decoder registry (plugins included), the guide's flags from the guide
spec. Every value is checked by the request parser before a model loads.
"""

from __future__ import annotations

from typing import Any

import click

from w2s.cli.options import (
    flag,
    guide_options,
    registry_options,
    sampling_options,
    sampling_values,
)
from w2s.errors import FieldError, FlagNames, W2SError


class RequestCommand(click.Command):
    """Its ``--method`` choices, per-method knob flags and ``--return-all`` come from the
    decoder registry when the command runs, so a decoder registered in one place
    (``w2s.register``, or a plugin) shows up here with no other change."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        at = next(i for i, p in enumerate(params) if p.name == "prompts_file") + 1
        return params[:at] + registry_options(params) + params[at:]


_BASE = [
    click.option("--base", metavar="MODEL",
                 help="The large frozen model: a local folder, a hub id or zoo:ROLE."),
    click.option("--base-url", metavar="URL",
                 help="Or: the base behind an OpenAI-compatible server (vLLM, SGLang, TGI, "
                 "llama.cpp, OpenAI), e.g. http://127.0.0.1:8000/v1."),
    click.option("--base-model", metavar="NAME",
                 help="With --base-url: the served model's name."),
    click.option("--base-tokenizer", metavar="MODEL",
                 help="With --base-url and --chat: a tokenizer whose chat template formats "
                 "prompts (applied client-side, so partial assistant turns continue exactly)."),
    click.option("--base-api-key", metavar="KEY", envvar="OPENAI_API_KEY", show_envvar=True,
                 help="With --base-url: the engine's API key."),
    click.option("--api-key", "old_api_key", metavar="KEY", hidden=True,
                 help="The old name of --base-api-key."),
    click.option("--max-concurrency", type=click.IntRange(min=1), default=64,
                 show_default=True, help="With --base-url: requests in flight at once."),
]
_PROMPTS = [
    click.option("--prompt", multiple=True, help="A prompt (repeatable)."),
    click.option("--prompts-file", metavar="FILE.jsonl",
                 help="JSONL, one prompt per line: {'prompt': text} or {'messages': [{role, "
                 "content}, ...]}; other fields (ids) are copied to --json's rows; - reads "
                 "standard input."),
]
_RUN = [
    click.option("--chat", is_flag=True, help="Format prompts with each model's chat template."),
    click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16", "half", "float"]),
                 default="auto", show_default=True, help="Weights' dtype (auto: fp32 on CPU)."),
    click.option("--device", default="auto", show_default=True,
                 help="auto (a CUDA GPU when torch sees one, else cpu), cpu, cuda or cuda:1."),
    click.option("--batch-size", type=int, default=64, show_default=True,
                 help="Rows per forward pass (bounds memory)."),
    click.option("--device-map", metavar="MAP",
                 help="Shard the base over devices with accelerate: auto, balanced, "
                 "balanced_low_0, sequential, a JSON object ({\"model.layers.0\": 0, \"\": 1}) "
                 "or a .json file. Needs accelerate."),
    click.option("--guide-device", metavar="DEVICE",
                 help="Where the guide's small models go (default: --device), e.g. cuda:1."),
    click.option("--memory-limit", metavar="GIB", type=float,
                 help="Refuse a search whose memory plan (the base's weights, its KV cache, "
                 "logits) is over this many GiB (default: what is free)."),
]


def request_options(f: Any) -> Any:
    """The base, guide, prompt, sampling and run flags, in that order in ``--help``."""
    for opt in reversed(_RUN):
        f = opt(f)
    f = sampling_options(f)
    for opt in reversed(_PROMPTS):
        f = opt(f)
    f = guide_options(f)
    for opt in reversed(_BASE):
        f = opt(f)
    return f


CLI_NAMES = FlagNames({"guide": "the guide", "pair": "--tuned and --untuned (or --arm)",
                       "guide_terms": "--guide-term", "base": "--base",
                       "base.url": "--base-url", "base.model": "--base-model",
                       "base.tokenizer": "--base-tokenizer", "base.api_key": "--base-api-key",
                       "base.max_concurrency": "--max-concurrency",
                       "guard_prompts": "--guard-prompts-file"})
"""The CLI's one rename map from a request's field paths to its flags: every sampling field,
knob and guide option is ``--name-with-dashes``; the rest are named here."""


def build_request(o: dict[str, Any], return_all: bool = False) -> Any:
    """The request the flags in ``o`` name (popped from it), every value checked."""
    from w2s.decoding import default_method, get_decoder
    from w2s.guides.build import guide_spec, parse_guide_terms
    from w2s.request import parse_request, parse_sampling

    try:
        sampling = parse_sampling(sampling_values(o), where="")
    except FieldError as e:
        raise W2SError(e.named(CLI_NAMES)) from None
    try:
        gspec = guide_spec(o.pop("tuned"), o.pop("untuned"), o.pop("arm"), o.pop("reward_model"),
                           o.pop("weights"), o.pop("normalize"),
                           parse_guide_terms(o.pop("guide_terms")))
    except FieldError as e:
        raise W2SError(e.named(CLI_NAMES)) from None
    method = o.pop("method") or default_method(bool(gspec))
    spec = get_decoder(method)
    knobs = _own_knobs(spec, o)
    data: dict[str, Any] = {"method": method, **knobs, "base": _base(o), "guide": gspec or None,
                            "chat": o["chat"], "return_all": return_all}
    if o["batch_size"] < 1:
        raise W2SError(f"batch-size must be >= 1, got {o['batch_size']}")
    try:
        return parse_request(data, default_sampling=sampling, names=CLI_NAMES)
    except FieldError as e:
        raise W2SError(e.named(CLI_NAMES)) from None


def loader_of(o: dict[str, Any]) -> Any:
    """The model cache the run flags ask for."""
    from w2s.request import Loader

    try:
        return Loader(dtype=o["dtype"], device=o["device"], chat=o["chat"],
                      batch_size=o["batch_size"], device_map=o.get("device_map"),
                      guide_device=o.get("guide_device"), memory_limit=o.get("memory_limit"))
    except FieldError as e:
        raise W2SError(e.named(CLI_NAMES)) from None


def _own_knobs(spec: Any, o: dict[str, Any]) -> dict[str, Any]:
    """The knob flags given, refused by name when they belong to another method."""
    from w2s.cli.options import _knob_table

    values = {k: o.pop(k, None) for k in _knob_table()}
    given = {k: v for k, v in values.items() if v is not None}
    own = [f.name for f in spec.knob_fields()]
    foreign = [k for k in given if k not in own]
    if foreign:  # a knob of another method would be silently ignored: refuse it
        flags = ", ".join(flag(k) for k in foreign)
        its = ", ".join(flag(k) for k in own)
        raise W2SError(f"{flags} {'is not a knob' if len(foreign) == 1 else 'are not knobs'} "
                       f"of --method {spec.name} ({f'its knobs: {its}' if own else 'it has none'})")
    return given


def _base(o: dict[str, Any]) -> Any:
    """The base flags as the request's ``base`` (a reference, or an engine mapping)."""
    base, url = o.pop("base"), o.pop("base_url")
    model, tokenizer = o.pop("base_model"), o.pop("base_tokenizer")
    key = o.pop("base_api_key") or o.pop("old_api_key", None)
    if (base is None) == (url is None):
        raise W2SError("give the base as --base MODEL or as --base-url URL --base-model NAME")
    if url is None:
        if model or tokenizer:
            raise W2SError("--base-model and --base-tokenizer go with --base-url")
        return base
    if not model:
        raise W2SError("--base-url needs --base-model (the served model's name)")
    return {"url": url, "model": model, "tokenizer": tokenizer, "api_key": key,
            "max_concurrency": o.pop("max_concurrency")}


