"""``w2s serve --config FILE``: the server's settings in a YAML or TOML file.

Keys are the command's flags (``base``, ``tuned``, ``port``, ``max_rows``, ...), plus
``defaults`` (the method and sampling settings a request gets when it names none) and
``methods`` (per method, knob values that replace the knobs' own defaults)::

    base: zoo:base
    tuned: zoo:tuned
    untuned: zoo:untuned
    max_tokens_limit: 128
    defaults: {method: cbs, max_tokens: 48, temperature: 0.7}
    methods: {cbs: {w: 2, k: 4, l: 8}, bon: {n: 8}}

A flag given on the command line wins over the file. Every key is checked (an unknown one is
refused by name), and each method's knobs by the decoder registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from w2s.decoding.registry import DECODERS, get_decoder
from w2s.errors import W2SError
from w2s.params import SamplingParams


class DefaultsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str | None = None
    """[default: cbs with a guide, else sample]"""
    # types here; bounds are SamplingParams' own (checked by read_serve_config)
    max_tokens: int = SamplingParams().max_new_tokens
    temperature: float = SamplingParams().temperature
    top_p: float = SamplingParams().top_p
    top_k: int = SamplingParams().top_k
    seed: int | None = SamplingParams().seed
    stop: list[str] = Field(default_factory=list)

    def sampling(self) -> SamplingParams:
        """These defaults as SamplingParams (each field checked there, named in errors)."""
        from w2s.request import parse_sampling

        return parse_sampling({"max_new_tokens": self.max_tokens, "temperature":
                               self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                               "seed": self.seed, "stop": tuple(self.stop)}, where="defaults")


class ServeFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str | None = None
    base_url: str | None = None
    base_model: str | None = None
    base_tokenizer: str | None = None
    max_concurrency: int | None = Field(None, ge=1)
    tuned: str | list[str] | None = None
    untuned: str | list[str] | None = None
    arm: str | list[str] | None = None
    reward_model: str | None = None
    weights: list[float] | None = None
    normalize: Literal["raw", "per_token", "zscore"] | None = None
    host: str | None = None
    port: int | None = Field(None, ge=0, le=65535)
    served_name: str | None = None
    runs: str | None = None
    max_tokens_limit: int | None = Field(None, ge=1)
    max_n: int | None = Field(None, ge=1)
    max_rows: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=1)
    max_body_bytes: int | None = Field(None, ge=1024)
    gather_ms: float | None = Field(None, ge=0, le=10_000)
    dtype: str | None = None
    device: str | None = None
    batch_size: int | None = Field(None, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    no_access_log: bool | None = None
    defaults: DefaultsFile = Field(default_factory=DefaultsFile)
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)


def read_serve_config(path: Path) -> ServeFile:
    from w2s.evaluate.config import read_config_file

    if not path.is_file():
        raise W2SError(f"config {str(path)!r} does not exist")
    data = read_config_file(path)
    try:
        cfg = ServeFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise W2SError(f"{path}: {where}: {msg}") from None
    if cfg.defaults.method is not None:
        get_decoder(cfg.defaults.method)
    for name, knobs in cfg.methods.items():
        if name not in DECODERS:
            raise W2SError(f"{path}: methods.{name}: unknown method; choose one of "
                           f"{', '.join(DECODERS)}")
        get_decoder(name).make_params(knobs)  # refuses unknown knobs and bad values
    try:
        cfg.defaults.sampling()
    except W2SError as e:
        raise W2SError(f"{path}: {e}".replace("defaults.max_new_tokens", "defaults.max_tokens")
                       ) from None
    return cfg
