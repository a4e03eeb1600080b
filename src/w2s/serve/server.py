"""What ``w2s serve`` holds: the loaded base and guide, the limits, the defaults, and which
methods it can run (found by running each once)."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from w2s.decoding.registry import DecoderSpec, decoders, default_method
from w2s.errors import W2SError
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import SamplingParams, sampling_fields
from w2s.request import openai_sampling
from w2s.serve import schema as S


@dataclass
class Limits:
    max_tokens: int = 256
    max_n: int = 8
    max_prompts: int = 64
    max_rows: int = 64
    max_queue: int = 256
    max_body_bytes: int = 1 << 20
    gather_ms: float = 10.0


@dataclass
class Defaults:
    method: str = field(default_factory=lambda: default_method(True))
    max_tokens: int = SamplingParams().max_new_tokens
    sampling: SamplingParams = field(default_factory=SamplingParams)
    knobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per method: knob values that replace the knob dataclass's defaults."""


@dataclass
class Server:
    backend: Backend
    guide: Guide | None
    model_id: str = "w2s"
    api_key: str | None = None
    limits: Limits = field(default_factory=Limits)
    defaults: Defaults = field(default_factory=Defaults)
    runs_dir: Path | None = None
    why_not: dict[str, str] = field(default_factory=dict)
    """Methods this server cannot run, and why (filled by :meth:`probe`)."""

    def probe(self) -> None:
        """Run every registered method once on a one-token answer: what fails is marked
        unavailable with its one-line reason (a missing guide, a text-only base, EFT across
        vocabularies), so the playground and the errors say so up front."""
        for name, spec in decoders().items():
            try:
                self._check_guide(spec)
                spec.run(self.backend, self.guide, ["Hello"], spec.make_params({}),
                         SamplingParams(max_new_tokens=1))
            except W2SError as e:
                self.why_not[name] = str(e)
        if self.defaults.method not in decoders() or self.defaults.method in self.why_not:
            raise W2SError(f"the default method {self.defaults.method!r} cannot run here: "
                           f"{self.why_not.get(self.defaults.method, 'not registered')}")

    def _check_guide(self, spec: DecoderSpec) -> None:
        try:
            spec.check_guide(self.guide, pair_name="--tuned and --untuned (or --arm)",
                             rm_name="--reward-model")
        except W2SError as e:
            raise W2SError(f"{e} (this server was started without it)") from None

    def method_list(self) -> S.MethodList:
        methods = []
        for name, spec in decoders().items():
            base = spec.make_params(self.defaults.knobs.get(name, {}))
            knobs = [S.Knob(name=k.name, type=k.kind, default=getattr(base, k.name),
                            doc=k.doc) for k in spec.knobs()]
            methods.append(S.MethodInfo(name=name, summary=spec.summary, guide=spec.guide,
                                        ranked=spec.ranked, kl=spec.kl,
                                        available=name not in self.why_not,
                                        why=self.why_not.get(name), knobs=knobs))
        d, lim = self.defaults, self.limits
        return S.MethodList(
            model=self.model_id, methods=methods,
            defaults={"method": d.method, **openai_sampling(d.sampling),
                      "max_tokens": d.max_tokens},
            sampling=[S.Knob(name=f.openai, type=f.kind, default=getattr(d.sampling, f.name)
                             if f.name != "max_new_tokens" else d.max_tokens, doc=f.doc)
                      for f in sampling_fields()],
            limits={"max_tokens": lim.max_tokens, "n": lim.max_n, "max_rows": lim.max_rows,
                    "max_prompts": lim.max_prompts, "max_queue": lim.max_queue})


