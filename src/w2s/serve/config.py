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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from w2s.decoding.registry import DECODERS, get_decoder
from w2s.errors import W2SError
from w2s.params import SamplingParams
from w2s.serve.schema import sampling_schema_fields


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: str | None = None
    """[default: cbs with a guide, else sample]"""

    def sampling(self) -> SamplingParams:
        """These defaults as SamplingParams (each field checked there, named in errors)."""
        from w2s.request import to_sampling_params

        return to_sampling_params(self.model_dump(exclude={"method"}), where="defaults.")


DefaultsFile = create_model("DefaultsFile", __base__=_Defaults,
                            **sampling_schema_fields(defaults=True))
"""``defaults:``: the method and every sampling field under its OpenAI name (types here; the
bounds are SamplingParams' own, checked by read_serve_config)."""


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
    device_map: str | dict[str, int | str] | None = None
    guide_device: str | None = None
    memory_limit: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    no_access_log: bool | None = None
    defaults: DefaultsFile = Field(default_factory=DefaultsFile)  # type: ignore[valid-type]
    methods: dict[str, dict[str, Any]] = Field(default_factory=dict)


def read_serve_config(path: Path) -> ServeFile:
    from w2s.configfile import read_config_file

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
        raise W2SError(f"{path}: {e}") from None
    return cfg
