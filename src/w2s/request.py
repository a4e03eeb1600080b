"""One typed request behind every face: where the base lives, the guide as data, the method
and its knobs, and the sampling settings.

The CLI's flags, an eval config's method entry, the server's JSON body and the Python API all
become the same plain mapping, and :func:`parse_request` is the one parser and the one
validation of it::

    {"base": "zoo:base",                                   # or {url, model, tokenizer, ...}
     "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
     "method": "cbs", "w": 4, "k": 4, "l": 5,              # or "knobs": {"w": 4, ...}
     "sampling": {"max_new_tokens": 50, "temperature": 0.7}}

Bounds live once, on the knob dataclasses (:mod:`w2s.params`) and on :class:`BaseRef` /
:class:`~w2s.guides.spec.GuideRef`; an error names the field's path (``sampling.top_p must be
in (0, 1], got 2``, ``guide.weights[1] must be a finite number, got nan``), which the server
returns as OpenAI's ``param`` and a config prefixes with its file and entry.

:class:`Loader` turns a request's references into loaded objects, each model loaded once
(the server and an eval run keep one loader for their lifetime).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s.decoding.registry import DecoderSpec, decoders, get_decoder
from w2s.errors import FieldError, W2SError
from w2s.guides.base import Guide
from w2s.guides.spec import GuideRef
from w2s.params import SamplingParams, sampling_fields
from w2s.result import Result

log = logging.getLogger("w2s.stage")
"""What a run is doing, stage by stage (loading a model, connecting to an engine; the memory
plan): commands show it on stderr (:mod:`w2s.stages`), a library caller sees it only if it
configures logging."""

REQUEST_KEYS = ("base", "guide", "method", "knobs", "sampling", "chat", "return_all", "trace")
SAMPLING_FIELDS = tuple(f.name for f in dataclasses.fields(SamplingParams))


def _text(v: Any, path: str, what: str = "a non-empty string") -> str:
    if not isinstance(v, str) or not v.strip():
        raise FieldError(path, f"must be {what}, got {v!r}")
    return v


@dataclass(frozen=True)
class BaseRef:
    """Where the base lives: a model (``zoo:ROLE``, a local folder or a hub id), or an
    OpenAI-compatible engine (``url`` and the served ``model`` name)."""

    model: str
    """The model reference; with ``url``, the name the engine serves it under."""
    url: str | None = None
    """An OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp), e.g. http://HOST:PORT/v1."""
    tokenizer: str | None = None
    """With ``url``: a tokenizer whose chat template formats chat prompts client-side."""
    api_key: str | None = field(default=None, repr=False)
    """With ``url``: the engine's API key (never echoed)."""
    max_concurrency: int = 64
    """With ``url``: requests in flight at once."""
    timeout: float = 120.0
    """With ``url``: seconds before one request is retried."""
    max_retries: int = 6
    """With ``url``: retries of a failed request."""

    ENGINE_KEYS = ("url", "model", "tokenizer", "api_key", "max_concurrency", "timeout",
                   "max_retries")

    @classmethod
    def parse(cls, data: Any, where: str = "base") -> BaseRef:
        """A reference string, or a mapping with ``model`` (and ``url`` and its options)."""
        if isinstance(data, str):
            return cls(_text(data, where, "a model: zoo:ROLE, a folder or a hub id"))
        if not isinstance(data, Mapping):
            raise FieldError(where, "must be a model (zoo:ROLE, a folder, a hub id) or an "
                             "engine {url, model}")
        unknown = sorted(set(data) - set(cls.ENGINE_KEYS))
        if unknown:
            raise FieldError(f"{where}.{unknown[0]}", f"is not a base key (an engine base "
                             f"takes {', '.join(cls.ENGINE_KEYS)})")
        url = data.get("url")
        if url is None:
            extra = sorted(k for k in data if k != "model")
            if extra:
                raise FieldError(f"{where}.{extra[0]}", "goes with an engine base (url)")
            return cls(_text(data.get("model"), f"{where}.model"))
        _text(url, f"{where}.url")
        if not url.startswith(("http://", "https://")):
            raise FieldError(f"{where}.url", f"must start with http:// or https://, got {url!r}")
        model = _text(data.get("model"), f"{where}.model",
                      "a non-empty string (the served model's name)")
        out: dict[str, Any] = {"model": model, "url": url}
        for key, typ in (("tokenizer", str), ("api_key", str), ("max_concurrency", int),
                         ("timeout", (int, float)), ("max_retries", int)):
            v = data.get(key)
            if v is None:
                continue
            if not isinstance(v, typ) or isinstance(v, bool):
                raise FieldError(f"{where}.{key}", f"has the wrong type: {v!r}")
            out[key] = v
        for key, low in (("max_concurrency", 1), ("timeout", 0), ("max_retries", 0)):
            if key in out and not out[key] >= low:
                raise FieldError(f"{where}.{key}", f"must be >= {low}, got {out[key]!r}")
        return cls(**out)

    @property
    def engine(self) -> bool:
        return self.url is not None

    def to_dict(self) -> Any:
        if self.url is None:
            return self.model
        d = {k: getattr(self, k) for k in self.ENGINE_KEYS if k != "api_key"}
        return {k: v for k, v in d.items() if v is not None}


def parse_sampling(data: Any, base: SamplingParams | None = None, where: str = "sampling"
                   ) -> SamplingParams:
    """``base`` with the fields ``data`` names replaced (each checked by SamplingParams)."""
    base = base if base is not None else SamplingParams()
    at = f"{where}." if where else ""
    if data is None:
        return base
    if not isinstance(data, Mapping):
        raise FieldError(where, f"must be a mapping of {', '.join(SAMPLING_FIELDS)}")
    unknown = sorted(set(data) - set(SAMPLING_FIELDS))
    if unknown:
        raise FieldError(f"{at}{unknown[0]}", f"is not a sampling field (known: "
                         f"{', '.join(SAMPLING_FIELDS)})")
    try:
        return dataclasses.replace(base, **data)
    except FieldError as e:
        raise e.at(at) from None
    except (TypeError, ValueError) as e:
        raise FieldError(where or "sampling", f"has a bad value ({e})") from None


def to_sampling_params(values: Mapping[str, Any], base: SamplingParams | None = None,
                       where: str = "") -> SamplingParams:
    """OpenAI-named sampling values (``max_tokens``, ``temperature``, ...; None: not given) as
    ``base`` with them replaced, as vLLM's ``to_sampling_params`` does: the server's requests,
    its defaults file and ``/w2s/methods`` all go through here. A bad value is a FieldError
    naming the field as the request named it."""
    fields = sampling_fields()
    by_openai = {f.openai: f.name for f in fields}
    unknown = sorted(set(values) - set(by_openai))
    if unknown:
        raise FieldError(f"{where}{unknown[0]}", f"is not a sampling field (known: "
                         f"{', '.join(by_openai)})")
    given = {by_openai[k]: (tuple(v) if isinstance(v, list) else v)
             for k, v in values.items() if v is not None}
    try:
        return parse_sampling(given, base, where="")
    except FieldError as e:
        field = next((f.openai for f in fields if f.name == e.field), e.field)
        raise FieldError(f"{where}{field}", e.problem) from None


def openai_sampling(sampling: SamplingParams) -> dict[str, Any]:
    """``sampling`` under its OpenAI names (lists for tuples): what ``/w2s/methods`` shows as
    the server's defaults and what :func:`to_sampling_params` reads back."""
    return {f.openai: (list(v) if isinstance(v := getattr(sampling, f.name), tuple) else v)
            for f in sampling_fields()}


def parse_knobs(spec: DecoderSpec, values: Mapping[str, Any], where: str = "") -> Any:
    """``spec``'s knob dataclass from ``values`` (missing knobs take their defaults)."""
    known = [f.name for f in spec.knob_fields()]
    unknown = [k for k in values if k not in known]
    if unknown:
        its = f"its knobs: {', '.join(known)}" if known else "it has none"
        raise FieldError(f"{where}{unknown[0]}", f"is not a knob of {spec.name} ({its})")
    try:
        return spec.make_params(dict(values))
    except FieldError as e:
        raise e.at(where) from None


@dataclass(frozen=True)
class Request:
    """What to run: a method with its knobs and sampling settings, on a base, with a guide.

    ``base`` and ``guide`` are None where the face holds them already (a server's loaded
    models) or where the method needs none."""

    method: str
    knobs: Any = None
    """The method's knob dataclass (None for a method without knobs)."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    base: BaseRef | None = None
    guide: GuideRef | None = None
    chat: bool = False
    """Format prompts with each model's chat template."""
    return_all: bool = False
    """Return every final candidate, ranked (ranked methods only)."""
    trace: bool = False
    """Record what the search did on each prompt (:mod:`w2s.decoding.trace`): the face that
    runs the request writes or streams it; it changes no answer."""

    @property
    def spec(self) -> DecoderSpec:
        return get_decoder(self.method)

    def to_dict(self) -> dict[str, Any]:
        """The mapping :func:`parse_request` reads back."""
        d: dict[str, Any] = {"method": self.method,
                             "knobs": self.knobs.to_dict() if self.knobs is not None else {},
                             "sampling": self.sampling.to_dict()}
        if self.base is not None:
            d["base"] = self.base.to_dict()
        if self.guide is not None:
            d["guide"] = self.guide.to_dict()
        if self.chat:
            d["chat"] = True
        if self.return_all:
            d["return_all"] = True
        if self.trace:
            d["trace"] = True
        return d


def _flag(data: Mapping[str, Any], key: str, path: str) -> bool:
    v = data.get(key, False)
    if not isinstance(v, bool):
        raise FieldError(path, f"must be true or false, got {v!r}")
    return v


def parse_request(data: Any, *, where: str = "", default_method: str | None = None,
                  default_knobs: Mapping[str, Mapping[str, Any]] | None = None,
                  default_sampling: SamplingParams | None = None,
                  guide_given: bool = True, names: Mapping[str, str] | None = None
                  ) -> Request:
    """The :class:`Request` a plain mapping names, every value checked, nothing loaded.

    ``where`` prefixes every field path (the server's ``"w2s."``); a method's knobs may sit
    at the top level (``"w": 4``, as configs and the server's ``w2s`` field write them) or
    under ``knobs``; ``default_knobs[method]`` replace the knob dataclass's defaults (a
    server's configured knobs); ``guide_given=False`` skips the guide-versus-method check for
    faces whose guide is loaded already (they call :meth:`DecoderSpec.check_guide`). Errors
    name field paths only; ``names`` is the face's rename map, read here for the two guide
    parts a problem names (``pair``, ``reward_model``), which have no path of their own."""
    if not isinstance(data, Mapping):
        raise FieldError(where.rstrip(".") or "request", "must be a mapping")
    method = data.get("method", default_method)
    if method is None:
        raise FieldError(f"{where}method", f"is missing; choose one of "
                         f"{', '.join(decoders())}")
    if not isinstance(method, str) or method not in decoders():
        raise FieldError(f"{where}method", f"must be one of {', '.join(decoders())}, got "
                         f"{method!r}")
    spec = get_decoder(method)
    own = {f.name for f in spec.knob_fields()}
    flat = {k: v for k, v in data.items() if k not in REQUEST_KEYS}
    nested = data.get("knobs") or {}
    if not isinstance(nested, Mapping):
        raise FieldError(f"{where}knobs", "must be a mapping of the method's knobs")
    for k in flat:
        if k not in own:
            its = f"its knobs: {', '.join(sorted(own))}" if own else "it has none"
            raise FieldError(f"{where}{k}", f"is not a field of a request nor a knob of "
                             f"{method} ({its})")
    values = {**(default_knobs or {}).get(method, {}), **nested, **flat}
    knobs = parse_knobs(spec, values, where)
    sampling = parse_sampling(data.get("sampling"), default_sampling, f"{where}sampling")
    base = BaseRef.parse(data["base"], f"{where}base") if data.get("base") is not None else None
    guide = GuideRef.parse(data.get("guide"), f"{where}guide")
    chat, return_all = _flag(data, "chat", f"{where}chat"), _flag(data, "return_all",
                                                                  f"{where}return_all")
    if return_all and not spec.ranked:
        ranked = [n for n, s in decoders().items() if s.ranked]
        raise FieldError(f"{where}return_all", f"is for ranked methods ({', '.join(ranked)}), "
                         f"not {method}")
    if guide_given:
        problem = spec.guide_problem(bool(guide and guide.has_experts),
                                     bool(guide and guide.has_text_scorers),
                                     pair_name=(names or {}).get("pair",
                                                                 "{tuned, untuned} (or arm)"),
                                     rm_name=(names or {}).get("reward_model", "reward_model"))
        if problem:
            raise FieldError(f"{where}guide", f"does not suit: {problem}", sep=": ")
    return Request(method, knobs, sampling, base, guide, chat, return_all,
                   _flag(data, "trace", f"{where}trace"))


class Loader:
    """Turns references into loaded objects, each model once: the cache a server or an eval
    run keeps for its lifetime, and the one place where a request's models are loaded."""

    def __init__(self, *, dtype: str = "auto", device: str = "auto", chat: bool = False,
                 batch_size: int = 64, base_dir: Path | None = None, device_map: Any = None,
                 guide_device: str | None = None, big: str | None = None,
                 memory_limit: float | None = None) -> None:
        from w2s.models.placement import parse_device_map

        self.dtype, self.device, self.chat = dtype, device, chat
        self.batch_size, self.base_dir = batch_size, base_dir
        self.device_map = parse_device_map(device_map)
        """How the base's weights are spread over devices (accelerate's ``device_map``), or
        None: the base on ``device``. Only the base is sharded; the guide's models are small."""
        self.guide_device = guide_device
        """Where the guide's models (and any model sampled in the base's place) go; None: on
        ``device``."""
        from w2s.models.memory import check_memory_limit

        self.memory_limit = check_memory_limit(memory_limit)
        """GiB the base's weights and a search may take on its devices; None: what is free."""
        self.big = big
        """The base's reference, the one model ``device_map`` shards; None: the first base
        asked for (an eval run names its config's base, as it also samples small models in
        the base's place)."""
        self._lms: dict[str, Any] = {}
        self._engines: dict[BaseRef, Any] = {}
        self._guides: dict[GuideRef, Guide | None] = {}

    def check(self, base: BaseRef | None, guide: GuideRef | None) -> None:
        """Every model reference resolves (a typo is one line before anything loads)."""
        from w2s.models.resolve import resolve_model

        refs = list(guide.models()) if guide is not None else []
        if base is not None:
            refs.append(base.tokenizer if base.engine else base.model)
        for ref in refs:
            if ref:
                resolve_model(ref, self.base_dir)

    def lm(self, ref: str) -> Any:
        """A language model (in process), loaded once: the base (``big``) on ``device``,
        sharded by ``device_map``; any other on ``guide_device``."""
        from w2s.models.backends import load_model
        from w2s.models.loading import choose_device

        if ref not in self._lms:
            big = ref == self.big
            device = self.device if big or self.guide_device is None else self.guide_device
            if not big and self.guide_device is not None:
                choose_device(self.guide_device, "guide_device")
            log.info(f"loading {'the base' if big else 'a guide model'} {ref}")
            lm = load_model(ref, base_dir=self.base_dir, dtype=self.dtype, device=device,
                            chat=self.chat, batch_size=self.batch_size,
                            device_map=self.device_map if big else None)
            if big and self.memory_limit is not None:
                from w2s.models.memory import GIB

                lm.memory_limit = int(self.memory_limit * GIB)
            self._lms[ref] = lm
        return self._lms[ref]

    def base(self, ref: BaseRef) -> Any:
        """The base as a backend: an in-process model, or a client of its engine."""
        from w2s.models.backends import load_engine
        from w2s.models.resolve import resolve_model

        if not ref.engine:
            if self.big is None:
                self.big = ref.model
            return self.lm(ref.model)
        if ref not in self._engines:
            log.info(f"connecting to {ref.model} at {ref.url}")
            tok = resolve_model(ref.tokenizer, self.base_dir) if ref.tokenizer else None
            self._engines[ref] = load_engine(
                ref.url or "", ref.model, chat=self.chat, tokenizer=tok, api_key=ref.api_key,
                max_concurrency=ref.max_concurrency, timeout=ref.timeout,
                max_retries=ref.max_retries, batch_size=max(self.batch_size, 256))
        return self._engines[ref]

    def guide(self, ref: GuideRef | None) -> Guide | None:
        """The loaded guide (its models shared with every other guide of this loader)."""
        from w2s.guides.build import build_guide

        if ref not in self._guides:
            self._guides[ref] = build_guide(ref, load_lm=self.lm, dtype=self.dtype,
                                            device=self.guide_device or self.device,
                                            chat=self.chat, base_dir=self.base_dir)
        return self._guides[ref]



Resolver = Loader
"""Its earlier name ("resolve" now means one thing: where a reference points,
:mod:`w2s.models.resolve`)."""


def run(request: Request, prompts: Sequence[str], loader: Loader | None = None
        ) -> list[Result]:
    """Load what ``request`` names (through ``loader``'s cache) and decode ``prompts``."""
    if not isinstance(request, Request):
        raise TypeError(f"run takes a Request, got {type(request).__name__}: make one with "
                        "w2s.parse_request(mapping)")
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError(f"run takes a list of prompts, got {type(prompts).__name__}")
    if loader is not None and not isinstance(loader, Loader):
        raise TypeError(f"run's loader must be a w2s.Loader, got {type(loader).__name__}")
    if request.base is None:
        raise W2SError("the request names no base")
    loader = loader or Loader(chat=request.chat)
    loader.check(request.base, request.guide)
    spec = request.spec
    backend = loader.base(request.base)
    spec.check_backend(backend)
    guide = loader.guide(request.guide)
    spec.check_guide(guide)
    return spec.run(backend, guide, prompts, request.knobs, request.sampling,
                    return_all=request.return_all)
