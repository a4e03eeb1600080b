"""Eval configs: a YAML or TOML file naming the base, the guide, the task and a sweep of methods.

::

    name: sentiment
    task: sentiment                      # or {name: instructions, path: prompts.jsonl, ...}
    base: zoo:base                       # zoo:ROLE (the shipped zoo), a folder or a hub id,
                                         # or {url: http://127.0.0.1:8000/v1, model: NAME}
    guide: {tuned: zoo:tuned, untuned: zoo:untuned}   # and/or reward_model: PATH
    prompts: 64                          # how many of the task's prompts (--limit overrides)
    seeds: 3                             # or a list of seeds
    sampling: {max_new_tokens: 50, temperature: 0.7}
    dtype: bfloat16                      # auto: bf16 on a GPU that has it, fp32 on the CPU
    device_map: auto                     # shard the base over the GPUs (or balanced, {...})
    guide_device: cuda:1                 # the small models on a GPU of their own
    methods:
      - sample                           # base sampling
      - {method: sample, model: tuned}   # the small tuned model alone (a reference point)
      - {method: bon, n: [16, 32]}       # a list is a sweep: one method per value
      - {method: eft, beta: 1.0}
      - {method: cbs, w: 4, k: 4, l: 5}
      - {method: cbs, w: 4, k: 4, l: 5, guide: {tuned: zoo:xtuned, untuned: zoo:xuntuned}}

Every method expands to :class:`MethodSpec` with a label and a hash of everything that decides
its outputs (method, knobs, sampling, models, task, gold scorers, dtype), so result rows made
with other settings are never mixed in silently. Everything is validated before any model
is loaded: a bad config costs one line, not a traceback after minutes of work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2s.configfile import find_config, read_config_file
from w2s.errors import FieldError, W2SError
from w2s.guides.spec import GuideRef
from w2s.models.resolve import resolve_model
from w2s.params import SamplingParams, identity
from w2s.request import BaseRef, Request, parse_request, parse_sampling

SHIPPED = Path(__file__).resolve().parent.parent / "configs"
TOP_KEYS = {"name", "task", "base", "guide", "prompts", "seeds", "sampling", "methods", "dtype",
            "device", "batch_size", "chat", "budgets", "device_map", "guide_device",
            "memory_limit", "trace"}
ENGINE_KEYS = tuple(k for k in BaseRef.ENGINE_KEYS if k != "api_key")
"""What a config's engine base may name: BaseRef's keys (one list) but the API key, since a
config file holds no secrets."""
SAMPLING_FIELDS = [f.name for f in dataclasses.fields(SamplingParams) if f.name != "seed"]
MAX_SEEDS = 10_000
DTYPES = ("auto", "float32", "bfloat16", "float16", "half", "float")


@dataclass(frozen=True)
class MethodSpec:
    """One point of the sweep: the one :class:`~w2s.request.Request` it runs (method, knobs,
    sampling with seed 0, the guide, and as its base the model it samples), with a label, a
    budget and the hash of everything that decides its rows."""

    label: str
    request: Request
    hash: str = ""
    budget: int | None = None
    """Base tokens per prompt this point may spend, in responses (``budgets:``), or None."""
    fixed: tuple[str, ...] = ()
    """The knobs the config gave for this point: a budget may size any other knob, never
    these (so a label never disagrees with the params it ran)."""
    model: str | None = None
    """``model:`` as written (``tuned``, ``untuned`` or a reference): ``sample`` of another
    model than the base; None for the base."""

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def params(self) -> Any:
        """The decoder's knob dataclass (see w2s.decoding.registry), or None."""
        return self.request.knobs

    @property
    def sampling(self) -> SamplingParams:
        return self.request.sampling

    @property
    def guide(self) -> GuideRef | None:
        return self.request.guide

    def knobs(self) -> dict[str, Any]:
        return self.params.to_dict() if self.params is not None else {}

    def with_knobs(self, params: Any, **changes: Any) -> MethodSpec:
        """This point with other knobs (a budget's sizing) and any other field changed."""
        return dataclasses.replace(self, request=dataclasses.replace(self.request,
                                                                     knobs=params), **changes)


@dataclass(frozen=True)
class EvalConfig:
    name: str
    path: Path
    task: dict[str, Any]
    base: BaseRef
    """The base, parsed by the one base parser: a model, or an OpenAI-compatible engine."""
    methods: list[MethodSpec]
    prompts: int | None
    seeds: list[int]
    dtype: str
    device: str
    batch_size: int
    chat: bool | None
    device_map: Any = None
    """accelerate's placement of the base over devices (``auto``, ``balanced``, a mapping), or
    None: the base on ``device``."""
    guide_device: str | None = None
    """Where the guide's models go; None: on ``device``."""
    memory_limit: float | None = None
    """GiB the base's weights and a search may take (its memory plan); None: what is free."""
    trace: bool = False
    """Write each prompt's search trace under the run's folder (``traces/HASH/SEED/I.json``,
    docs/traces.md); it changes no result, so it is no part of any method's hash."""

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def base_label(self) -> str:
        """The base as rows record it: the reference, or ``model@url`` for an engine."""
        return f"{self.base.model}@{self.base.url}" if self.base.engine else self.base.model

    def resolve(self, ref: str) -> str:
        return resolve_model(ref, self.base_dir)


def load_config(name_or_path: str) -> EvalConfig:
    path = find_config(name_or_path, SHIPPED)
    return parse_config(read_config_file(path), path)


def parse_config(data: dict[str, Any], path: Path) -> EvalConfig:
    where = path.name
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise W2SError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                       f"known: {', '.join(sorted(TOP_KEYS))}")
    for key in ("task", "base", "methods"):
        if key not in data:
            raise W2SError(f"{where}: missing {key!r}")
    task = data["task"]
    task = {"name": task} if isinstance(task, str) else task
    if not isinstance(task, dict) or not isinstance(task.get("name"), str):
        raise W2SError(f"{where}: task must be a name or a mapping with a 'name'")
    base = _base(data["base"], path)
    guide = _guide(data.get("guide"), path)
    sampling = _sampling(data.get("sampling") or {}, SamplingParams(seed=0), where)
    seeds = _seeds(data.get("seeds", 1), where)
    prompts, batch_size, dtype, chat = _scalars(data, where)
    device_map, guide_device, memory_limit = _placement(data, where)
    methods_in = data["methods"]
    if not isinstance(methods_in, list) or not methods_in:
        raise W2SError(f"{where}: methods must be a non-empty list")
    base_print = (fingerprint(base.model, path.parent) if not base.engine else (
        f"{base.model}@{base.url}" + (f"|{fingerprint(base.tokenizer, path.parent)}"
                                      if base.tokenizer else "")))  # it picks the template
    context = {"base": base_print, "task": task, "dtype": dtype, "chat": chat}
    budgets = _budgets(data.get("budgets"), where)
    methods: list[MethodSpec] = []
    for n, entry in enumerate(methods_in, 1):
        entry, own = _own_budgets(entry, budgets, f"{where}: methods[{n}]")
        points = _expand(entry, f"{where}: methods[{n}]", path, base, guide, sampling,
                         context)
        methods += _at_budgets(points, own, f"{where}: methods[{n}]", context)
    _check_reward_tasks(methods, task["name"], path)
    return EvalConfig(name=str(data.get("name") or path.stem), path=path.resolve(), task=task,
                      base=base, methods=_distinct(methods, where), prompts=prompts,
                      seeds=seeds, dtype=dtype, device=data.get("device", "auto"),
                      batch_size=batch_size, chat=chat, device_map=device_map,
                      guide_device=guide_device, memory_limit=memory_limit,
                      trace=_trace(data.get("trace", False), where))


def _trace(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise W2SError(f"{where}: trace must be true or false, got {value!r}")
    return value


def _check_reward_tasks(methods: list[MethodSpec], task: str, path: Path) -> None:
    """A reward model w2s trained for another task (its card says so) is refused."""
    from w2s.guides.reward_model import check_reward_task

    for m in methods:
        rm = m.guide.reward_model if m.guide is not None else None
        if rm is not None:
            check_reward_task(resolve_model(rm, path.parent), task,
                              f"{path.name}: {m.label}: guide.reward_model")


def _budgets(value: Any, where: str) -> list[int]:
    """``budgets``: base tokens per prompt, in responses of max_new_tokens (e.g. [4, 8, 16])."""
    if value is None:
        return []
    if not (isinstance(value, list) and value and all(
            isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 4096 for b in value)):
        raise W2SError(f"{where}: budgets must be a list of whole numbers of responses from 1 "
                       f"to 4096, got {value!r}")
    if len(set(value)) != len(value):
        raise W2SError(f"{where}: budgets repeat: {value}")
    return list(value)


def _own_budgets(entry: Any, budgets: list[int], where: str) -> tuple[Any, list[int]]:
    """A method entry's own ``budgets:`` (e.g. Best-of-N's reference curve over N = 1..64
    beside searches at 4..64), in place of the config's; the entry without it."""
    if not (isinstance(entry, dict) and "budgets" in entry):
        return entry, budgets
    entry = dict(entry)
    return entry, _budgets(entry.pop("budgets"), where)


def _at_budgets(points: list[MethodSpec], budgets: list[int], where: str,
                context: dict[str, Any]) -> list[MethodSpec]:
    """Each point of a method that can be sized (its registry entry's ``at_budget``) once per
    budget, its knobs resized to spend at most that many responses' base tokens; other
    methods (sampling, token-level) once, as references."""
    from w2s.decoding import decoders

    out = []
    for m in points:
        spec = decoders()[m.method]
        if not budgets or spec.at_budget is None:
            out.append(m)
            continue
        for b in budgets:
            try:
                params = spec.at_budget(m.params, b, m.sampling.max_new_tokens)
            except W2SError as e:
                raise W2SError(f"{where}: budget {b}: {e}") from None
            _keep_fixed(m, params, b, where)
            key = {"of": m.hash, "budget": b, "params": hashed(params)}
            digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
            out.append(m.with_knobs(params, label=f"{m.label}@{b}x", hash=digest, budget=b))
    return out


def hashed(params: Any) -> dict[str, Any]:
    """What of a knob or sampling object enters a method's hash (:func:`w2s.params.identity`)."""
    return identity(params) if params is not None else {}


def _keep_fixed(m: MethodSpec, sized: Any, b: int, where: str) -> None:
    """A knob the config fixed that budget ``b`` would change is refused, naming it: running
    ``bon(n=64)`` with n = 2 under that label would report a method that never ran."""
    for name in m.fixed:
        was, now = getattr(m.params, name), getattr(sized, name)
        if was != now:
            raise W2SError(f"{where}: budget {b} sizes {name} to {now}, but the config fixes "
                           f"{name}={was}; leave {name} out to let the budgets size it, or "
                           "drop budgets")


def _seeds(seeds: Any, where: str) -> list[int]:
    """``seeds``: a count (seeds 0..N-1) or a list of distinct 64-bit integers."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEEDS:
            raise W2SError(f"{where}: seeds must be a count from 1 to {MAX_SEEDS}, got {seeds}")
        seeds = list(range(seeds))
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int)
                                                      and not isinstance(s, bool)
                                                      for s in seeds)):
        raise W2SError(f"{where}: seeds must be a count or a list of integers")
    if not all(-(2**63) <= s < 2**63 for s in seeds):
        raise W2SError(f"{where}: seeds must be 64-bit signed integers (-2**63 to 2**63-1)")
    if len(set(seeds)) != len(seeds):
        raise W2SError(f"{where}: seeds repeat: {seeds}")
    return seeds


def _scalars(data: dict[str, Any], where: str) -> tuple[int | None, int, str, bool | None]:
    """``prompts``, ``batch_size``, ``dtype`` and ``chat``, checked (``name`` and ``device``
    are checked to be strings)."""
    prompts = data.get("prompts")
    if prompts is not None and (not isinstance(prompts, int) or isinstance(prompts, bool)
                                or prompts < 1):
        raise W2SError(f"{where}: prompts must be a count >= 1, got {prompts!r}")
    batch_size = data.get("batch_size", 64)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise W2SError(f"{where}: batch_size must be >= 1, got {batch_size!r}")
    dtype = data.get("dtype", "auto")
    if dtype not in DTYPES:
        raise W2SError(f"{where}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    chat = data.get("chat")
    if chat is not None and not isinstance(chat, bool):
        raise W2SError(f"{where}: chat must be true or false, got {chat!r}")
    for key in ("name", "device", "guide_device"):
        if key in data and not isinstance(data[key], str):
            raise W2SError(f"{where}: {key} must be a string, got {data[key]!r}")
    return prompts, batch_size, dtype, chat


def _placement(data: dict[str, Any], where: str) -> tuple[Any, str | None, float | None]:
    """``device``, ``device_map`` and ``guide_device``, each a device this machine has (a
    config written for a GPU fails here, in one line, on a machine without one; ``--device
    cpu`` overrides ``device``), and ``memory_limit`` in GiB."""
    from w2s.models.loading import choose_device
    from w2s.models.memory import check_memory_limit
    from w2s.models.placement import parse_device_map

    try:
        choose_device(data.get("device", "auto"))
        device_map = parse_device_map(data.get("device_map"))
        guide_device = data.get("guide_device")
        if guide_device is not None:
            choose_device(guide_device, "guide_device")
        limit = check_memory_limit(data.get("memory_limit"))
    except FieldError as e:
        raise W2SError(f"{where}: {e}") from None
    return device_map, guide_device, limit


def _distinct(methods: list[MethodSpec], where: str) -> list[MethodSpec]:
    """The sweep's points, each once: one label per setting and one setting per label."""
    by_label: dict[str, MethodSpec] = {}
    by_hash: dict[str, MethodSpec] = {}
    for m in methods:
        if m.label in by_label and by_label[m.label].hash != m.hash:
            raise W2SError(f"{where}: two methods are labelled {m.label!r}; give one a label")
        if m.hash in by_hash and by_hash[m.hash].label != m.label:
            raise W2SError(f"{where}: {by_hash[m.hash].label!r} and {m.label!r} are the same "
                           "method with the same settings; keep one")
        by_label[m.label] = by_hash[m.hash] = m
    return list(by_label.values())


def fingerprint(ref: str, base_dir: Path) -> str:
    """What a model reference means *now*: for a local folder, a hash of its config and of its
    weight files' names and sizes (so a rebuilt zoo or a moved folder gets a new hash); for a
    hub id, the id."""
    resolved = Path(resolve_model(ref, base_dir))
    if not resolved.is_dir():
        return ref
    h = hashlib.sha256()
    for f in sorted(resolved.iterdir()):
        if f.name == "config.json":
            h.update(f.read_bytes())
        elif f.suffix in (".safetensors", ".bin", ".pt"):
            h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{ref}@{h.hexdigest()[:12]}"


def _model_ref(value: Any, what: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise W2SError(f"{path.name}: {what} must be a model: zoo:ROLE, a folder or a hub id")
    try:
        resolve_model(value, path.parent)  # fail now, not after other methods ran
    except W2SError as e:
        raise W2SError(f"{path.name}: {what}: {e}") from None
    return value


def _base(value: Any, path: Path) -> BaseRef:
    """``base:``, read by the one base parser (:class:`~w2s.request.BaseRef`): a model
    reference, or ``{url, model, ...}`` for an OpenAI-compatible engine (no API key in a
    config file); its models resolved now, not after other methods ran."""
    if not isinstance(value, dict):
        return BaseRef(_model_ref(value, "base", path))
    unknown = sorted(set(value) - set(ENGINE_KEYS))
    if unknown:
        raise W2SError(f"{path.name}: unknown base key(s) {', '.join(unknown)}; an engine base "
                       f"takes {', '.join(ENGINE_KEYS)}")
    if not isinstance(value.get("url"), str) or not value["url"].strip():
        raise W2SError(f"{path.name}: base.url must be a non-empty string (an engine base is "
                       "{url: http://HOST:PORT/v1, model: NAME})")
    try:
        base = BaseRef.parse(value, "base")
    except W2SError as e:
        raise W2SError(f"{path.name}: {e}") from None
    if base.tokenizer is not None:
        _model_ref(base.tokenizer, "base.tokenizer", path)
    return base


def _guide(value: Any, path: Path, where: str = "guide") -> dict[str, Any] | None:
    """A config's guide mapping, checked by the one guide parser (:class:`GuideRef`) and its
    models resolved; returned as written (the method hashes are computed from it), with the
    weights as floats."""
    if value is None:
        return None
    try:
        ref = GuideRef.parse(value, where)
    except W2SError as e:
        raise W2SError(f"{path.name}: {e}") from None
    if ref is None:
        raise W2SError(f"{path.name}: {where} needs tuned and untuned, arm, or reward_model")
    for key in ("tuned", "untuned", "arm", "reward_model"):
        v = value.get(key)
        for i, x in enumerate(v if isinstance(v, list) else [v] if v is not None else []):
            _model_ref(x, f"{where}.{key}" + (f"[{i}]" if isinstance(v, list) else ""), path)
    out = dict(value)
    if ref.weights is not None:
        out["weights"] = list(ref.weights)
    return out


def _sampling(over: Any, base: SamplingParams, where: str) -> SamplingParams:
    if not isinstance(over, dict):
        raise W2SError(f"{where}: sampling must be a mapping")
    if "seed" in over:
        raise W2SError(f"{where}: sampling.seed is set by the config's seeds, not here")
    try:
        return parse_sampling(over, base, "sampling")
    except W2SError as e:
        raise W2SError(f"{where}: {e}") from None


def _expand(entry: Any, where: str, path: Path, base: BaseRef, guide: dict[str, Any] | None,
            sampling: SamplingParams, context: dict[str, Any]) -> list[MethodSpec]:
    """One config entry -> one MethodSpec per point of its sweep (lists are swept), each point
    read by :func:`~w2s.request.parse_request` as the one Request it runs."""
    entry, spec, label, model, g = _entry(entry, where, path, guide)
    axes = _axes(entry, spec, g, where, path)
    swept = [k for k, v in axes.items() if len(v) > 1]
    prints = {k: ([fingerprint(x, path.parent) for x in v] if isinstance(v, list)
                  else fingerprint(v, path.parent))
              if k in ("tuned", "untuned", "arm", "reward_model") else v
              for k, v in (g or {}).items()}
    sampled = (prints.get(model) if model in ("tuned", "untuned")
               else fingerprint(model, path.parent) if model else None)
    models = {"guide": prints if spec.guide != "optional" else None, "model": sampled}
    runs_on = (base.to_dict() if model is None
               else g[model] if model in ("tuned", "untuned") else model)  # type: ignore[index]
    knob_names = [f.name for f in spec.knob_fields()]
    specs = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values))
        knobs = {k: v for k, v in point.items() if k in knob_names}
        g_point, models_point = g, models
        if point.get("weights") is not None:
            g_point = {**(g or {}), "weights": point["weights"]}
            models_point = {**models, "guide": {**(models["guide"] or {}),
                                                "weights": point["weights"]}}
        over = {k: v for k, v in point.items() if k in SAMPLING_FIELDS}
        try:
            request = parse_request({"method": spec.name, "knobs": knobs, "sampling": over,
                                     "guide": g_point, "base": runs_on},
                                    default_sampling=sampling, guide_given=False)
        except W2SError as e:
            raise W2SError(f"{where}: {e}") from None
        specs.append(dataclasses.replace(
            _spec(label, request, g_point, model, point, swept, guide,
                  {**models_point, **context}), fixed=tuple(knobs)))
    return specs


def _entry(entry: Any, where: str, path: Path, guide: dict[str, Any] | None
           ) -> tuple[dict[str, Any], Any, str | None, str | None, dict[str, Any] | None]:
    """A method entry's method, label, sampled model and guide, checked; returns the rest of
    the entry (knobs, sampling settings, weights) with them."""
    from w2s.decoding import decoders

    if isinstance(entry, str):
        entry = {"method": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
        raise W2SError(f"{where}: give a method name or a mapping with 'method'")
    entry = dict(entry)
    name = entry.pop("method")
    if name not in decoders():
        raise W2SError(f"{where}: unknown method {name!r}; choose one of "
                       f"{', '.join(decoders())}")
    spec = decoders()[name]
    label = entry.pop("label", None)
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise W2SError(f"{where}: label must be a non-empty string, got {label!r}")
    model = entry.pop("model", None)
    if model is not None and spec.guide != "optional":
        unguided = [n for n, d in decoders().items() if d.guide == "optional"]
        raise W2SError(f"{where}: 'model' is only for methods without a guide "
                       f"({', '.join(unguided)})")
    short = where.split(": ", 1)[-1]
    g = _guide(entry.pop("guide"), path, f"{short} guide") if "guide" in entry else guide
    if model is not None and model not in ("tuned", "untuned"):
        model = _model_ref(model, "model", path)
    if model in ("tuned", "untuned") and not (g and model in g):
        raise W2SError(f"{where}: model: {model} needs a guide with a {model} model")
    if model in ("tuned", "untuned") and isinstance((g or {}).get(model), list):
        raise W2SError(f"{where}: model: {model} needs a guide with one {model} model, not a "
                       "list")
    gref = GuideRef.parse(g, "guide") if g else None
    problem = spec.guide_problem(bool(gref and gref.has_experts),
                                 bool(gref and gref.has_text_scorers),
                                 pair_name="guide: {tuned, untuned}", rm_name="reward_model")
    if problem:
        raise W2SError(f"{where}: {problem}")
    return entry, spec, label, model, g


def _axes(entry: dict[str, Any], spec: Any, g: dict[str, Any] | None, where: str,
          path: Path) -> dict[str, list[Any]]:
    """The sweep's axes: each knob or sampling setting given as a list (``stop`` is one
    value), and the guide's ``weights`` (a list of numbers, or a list of such lists)."""
    short = where.split(": ", 1)[-1]
    weight_axis: list[list[float] | None] = [None]
    if "weights" in entry:
        if not g:  # a guide given is one that parsed (_guide)
            raise W2SError(f"{where}: weights need a guide")
        raw = entry.pop("weights")
        sweep = raw if isinstance(raw, list) and raw and isinstance(raw[0], list) else [raw]
        weight_axis = [_guide({**g, "weights": w}, path, f"{short} guide")["weights"]
                       for w in sweep]
    knob_names = [f.name for f in spec.knob_fields()]
    unknown = sorted(set(entry) - set(knob_names) - set(SAMPLING_FIELDS))
    if unknown:
        raise W2SError(f"{where}: unknown option(s) for {spec.name}: {', '.join(unknown)}"
                       + (f" (its knobs: {', '.join(knob_names)})" if knob_names else ""))
    axes = {k: (v if isinstance(v, list) and k != "stop" else [v]) for k, v in entry.items()}
    for k, v in axes.items():
        if not v:
            raise W2SError(f"{where}: {k} is an empty list")
    if weight_axis != [None]:
        axes["weights"] = weight_axis
    return axes


def _spec(label: str | None, request: Request, guide: dict[str, Any] | None,
          model: str | None, point: dict[str, Any], swept: list[str],
          default_guide: dict[str, Any] | None, context: dict[str, Any]) -> MethodSpec:
    """One sweep point; ``context`` holds what else decides its rows (model fingerprints,
    task, dtype, chat) and goes into its hash."""
    name = request.method
    shown = {k: v for k, v in point.items() if label is None or k in swept}
    args = ",".join(f"{k}={v}" for k, v in shown.items())
    if label is None:
        text = name + (f"({args})" if args else "")
        if model is not None:
            text += f"[{Path(model).name}]"
        if guide is not None and {k: v for k, v in guide.items() if k != "weights"} != {
                k: v for k, v in (default_guide or {}).items() if k != "weights"}:
            first = (guide.get("tuned") or guide.get("arm") or guide.get("reward_model")
                     or next(k for k in guide if k not in ("weights", "normalize")))
            names = [Path(x).name for x in (first if isinstance(first, list) else [first])]
            text += f"[guide {'+'.join(names)}]"
    else:
        text = f"{label} ({args})" if swept else label
    key = {"method": name, "params": hashed(request.knobs), "sampling": hashed(request.sampling),
           **context}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return MethodSpec(label=text, request=request, hash=digest[:12], model=model)
