"""The request and response schema of ``w2s serve``, one pydantic model per body.

The ``w2s`` field is derived from the decoder registry when the app is built: one model per
registered method (its knobs, typed and documented from the knob dataclass, all optional so the
server's defaults fill the rest), joined on ``method``. So the OpenAPI schema, the validation and
the playground's controls list exactly the methods the server runs, and a decoder registered
in one place appears here with no other change.

OpenAI fields that w2s does not implement are declared, so that their neutral values (what
client libraries send by default) are accepted, and anything else is refused by name rather
than ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from w2s.decoding.registry import DecoderSpec
from w2s.params import SamplingField, sampling_fields

SEED = Field(None, description="Random seed: the answer is a deterministic function of "
             "(prompt, seed, settings); none: fresh randomness (the server's --seed default "
             "when it has one; bounds: w2s.params.SamplingParams).")
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "frequency_penalty": (None, 0, 0.0), "presence_penalty": (None, 0, 0.0),
    "logprobs": (None, False), "top_logprobs": (None, 0), "echo": (None, False),
    "logit_bias": (None, {}), "suffix": (None, ""),
    "tools": (None, []), "tool_choice": (None, "none"), "response_format": (None,),
    "parallel_tool_calls": (None,), "functions": (None, []), "function_call": (None, "none"),
}
"""OpenAI fields w2s does not implement, and the values that ask for nothing."""


def readable(value: Any) -> Any:
    """Refuse text no tokenizer can read (JSON may carry a lone surrogate, ``"\\ud800"``): a
    400 naming the field (``prompt``, ``messages[0].content``, ``stop``, ...), not a
    tokenizer's TypeError as a 500. Every text field runs this one check, before its type is
    checked, so a prompt and a chat message are refused in the same words."""
    from w2s.errors import W2SError
    from w2s.textfile import check_text

    try:
        check_text(value, "")
    except W2SError as e:
        raise ValueError(str(e).removeprefix(": ")) from None
    return value


def _is_neutral(v: Any, ok: tuple[Any, ...]) -> bool:
    return v is None or any(v == x and isinstance(v, bool) == isinstance(x, bool) for x in ok)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False
    """Send one more chunk before ``[DONE]`` with ``usage`` and no choices."""


def sampling_type(f: SamplingField) -> Any:
    """A sampling field's JSON-facing type: a tuple of strings is a string or a list of them."""
    if f.kind == "array":
        return str | list[str]
    return f.type


def sampling_schema_fields(*, defaults: bool) -> dict[str, Any]:
    """Every SamplingParams field under its OpenAI name, typed and documented from the
    dataclass (one place: :func:`w2s.params.sampling_fields`); with ``defaults``, its own
    default (the server's defaults file), else None (a request: the server's default)."""
    out: dict[str, Any] = {}
    for f in sampling_fields():
        doc = f.doc + (" (an extension of vLLM and w2s)" if f.engine == "extension" else "")
        kind = sampling_type(f)
        if defaults:
            value = Field(default_factory=list, description=doc) if f.kind == "array" else \
                Field(f.default, description=doc)
        else:
            value = SEED if f.name == "seed" else Field(None, description=doc)
            kind = kind | None
        out[f.openai] = (kind, value)
    return out


# Sampling fields carry types only: their bounds are SamplingParams' (one place), checked by the
# request parser, which names the field in a 400.
_Sampling = create_model("_Sampling", __base__=_Strict, **sampling_schema_fields(defaults=False))


class _Common(_Sampling):  # type: ignore[misc, valid-type]
    """Fields shared by completions and chat completions."""

    model: str | None = Field(None, max_length=256, description="The served model's id "
                              "(optional; any other name is refused).")
    n: int = Field(1, ge=1, description="Choices; choice i uses seed + i (fresh seeds "
                   "without one).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    frequency_penalty: float | None = Field(None, description="Only 0 (not implemented).")
    presence_penalty: float | None = Field(None, description="Only 0 (not implemented).")
    logit_bias: dict[str, float] | None = Field(None, description="Only {} (not implemented).")

    @field_validator(*(f.openai for f in sampling_fields()))
    @classmethod
    def _bounded(cls, v: Any, info: ValidationInfo) -> Any:
        """Each sampling field is checked by SamplingParams itself (its bounds, declared
        once), so the schema refuses what the library refuses, naming the field."""
        from w2s.errors import FieldError
        from w2s.request import to_sampling_params

        if v is not None:
            try:
                to_sampling_params({info.field_name: v})
            except FieldError as e:
                raise ValueError(e.problem) from None
        return v

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > 8 or any(not s or len(s) > 64 for s in stops):
            raise ValueError("stop takes up to 8 strings of 1 to 64 characters")
        return v

    @field_validator("prompt", "stop", "user", "model", mode="before", check_fields=False)
    @classmethod
    def _text(cls, v: Any) -> Any:
        return readable(v)

    @model_validator(mode="after")
    def _neutral(self) -> _Common:
        for name, ok in _NEUTRAL.items():
            if name in type(self).model_fields and not _is_neutral(getattr(self, name), ok):
                raise ValueError(f"{name} is not supported by w2s serve (only its default is "
                                 "accepted)")
        return self

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)

    @field_validator("content", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return readable(v)


def _method_models(decoders: dict[str, DecoderSpec]) -> list[type[BaseModel]]:
    out = []
    for name, spec in decoders.items():
        fields: dict[str, Any] = {"method": (Literal[name], Field(description=spec.summary))}
        for knob in spec.knobs():
            fields[knob.name] = (knob.type | None, Field(
                None, description=f"{knob.doc} (knob default: {knob.default})"))
        fields.setdefault("weights", (list[float] | None, Field(
            None, max_length=16, description="Weights of this server's guide terms for this "
            "request (one per tuned model, then the reward model); default: the server's.")))
        fields.setdefault("trace", (bool | None, Field(
            None, description="Record what the search did: a streamed request gets `w2s.trace` "
            "events (each round's new candidates with their scores, and the ids kept), a "
            "plain one the whole trace in `w2s.traces` (docs/traces.md). Default false.")))
        out.append(create_model(f"Method_{name}", __config__=ConfigDict(extra="forbid"),
                                __doc__=f"{name}: {spec.summary}", **fields))
    return out


def request_models(decoders: dict[str, DecoderSpec]) -> tuple[type[BaseModel], type[BaseModel]]:
    """``(CompletionRequest, ChatCompletionRequest)`` with ``w2s`` typed from the registry."""
    models = _method_models(decoders)
    if not models:
        raise ValueError("no decoder is registered")
    method_type: Any = (models[0] if len(models) == 1 else
                        Annotated[Union[tuple(models)], Field(discriminator="method")])  # noqa: UP007
    w2s_field = (method_type | None, Field(None, description="The method and its knobs "
                                           "(default: the server's method and knobs)."))
    completion = create_model(
        "CompletionRequest", __base__=_Common, __doc__="POST /v1/completions",
        prompt=(str | list[str], Field(description="A prompt, or a list of up to 64 prompts.")),
        echo=(bool | None, Field(None, description="Only false (not implemented).")),
        logprobs=(int | None, Field(None, description="Only null (not implemented).")),
        best_of=(int | None, Field(None, ge=1, le=1024, description="OpenAI's best_of: draw "
                                   "this many and return the best -- here Best-of-N ranked "
                                   "by the guide (w2s.method 'bon' with n = best_of).")),
        suffix=(str | None, Field(None, description="Only null (not implemented).")),
        w2s=w2s_field)
    chat = create_model(
        "ChatCompletionRequest", __base__=_Common, __doc__="POST /v1/chat/completions",
        messages=(list[ChatMessage], Field(min_length=1, max_length=256)),
        max_completion_tokens=(int | None, Field(None, ge=1, description="Alias of max_tokens.")),
        logprobs=(bool | None, Field(None, description="Only false (not implemented).")),
        top_logprobs=(int | None, Field(None, description="Only null (not implemented).")),
        tools=(list[dict[str, Any]] | None, Field(None, description="Only null.")),
        tool_choice=(str | dict[str, Any] | None, Field(None, description="Only null.")),
        response_format=(dict[str, Any] | None, Field(None, description="Only null.")),
        parallel_tool_calls=(bool | None, Field(None, description="Only null.")),
        w2s=w2s_field)
    return completion, chat


# ------------------------------------------------------------------------ responses
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CostInfo(BaseModel):
    base_tokens: int
    guide_tokens: int
    wall_time_s: float


class ChoiceInfo(BaseModel):
    index: int
    seed: int | None = None
    """The seed this choice was sampled with (drawn fresh when the request gave none): send it
    back to get the same answer."""
    score: float | None
    finished: bool
    stats: dict[str, float]
    cost: CostInfo


class W2SInfo(BaseModel):
    """What w2s adds to a response: the method, the guide's score and the cost."""

    method: str
    params: dict[str, Any]
    score: float | None
    cost: CostInfo
    choices: list[ChoiceInfo]
    traces: list[dict[str, Any]] | None = Field(None, description="With `w2s.trace`: each "
                                                 "choice's search trace (docs/traces.md).")


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    w2s: W2SInfo


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    w2s: W2SInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error body."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]


class Knob(BaseModel):
    name: str
    type: Literal["integer", "number", "boolean", "string", "array"]
    default: Any
    doc: str


class MethodInfo(BaseModel):
    name: str
    summary: str
    guide: str
    ranked: bool
    kl: str
    available: bool
    why: str | None
    knobs: list[Knob]


class MethodList(BaseModel):
    model: str
    methods: list[MethodInfo]
    defaults: dict[str, Any]
    sampling: list[Knob]
    """Every sampling field a request may set, under its OpenAI name, with this server's
    default (the playground renders its controls from this list)."""
    limits: dict[str, int]


class RunInfo(BaseModel):
    name: str
    summary_md: str
    plots: list[str]


class RunList(BaseModel):
    runs: list[RunInfo]


class Status(BaseModel):
    """The queue right now (operators, and the tests of cancellation)."""

    running_rows: int
    running_requests: int
    queued_requests: int
    served: int
    cancelled: int
    batches: int
