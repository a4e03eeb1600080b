"""The ``w2s generalise`` config: one pydantic schema, checked whole before any model loads.

::

    name: movies
    data: {source: vader:movies}          # or {source: my.jsonl, label: y}, {datasets: imdb}
    form: binary                          # or pairwise (a reward model: A rated above B)
    margin: 0.5                           # |rating - threshold| >= margin (pairwise: r_A - r_B)
    splits: {weak_train: 0.3, strong_train: 0.4, test: 0.3}   # fractions or counts
    models: {weak: zoo:untuned, intermediate: zoo:base, strong: ~/.cache/w2s/smollm2}
    train: probe                          # or finetune
    seeds: 3
    methods: [naive, aux_conf, bootstrap, refine, gce]

A bad value is one line naming its key path (``probe.lr must be > 0, got -1``), the same way
every other w2s face names a field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from w2s.errors import FieldError, W2SError

SPLITS = ("weak_train", "strong_train", "test")
SHIPPED = Path(__file__).resolve().parent.parent / "configs" / "generalise"


class _Strict(BaseModel):
    """Unknown keys are refused (a typo must not be silently ignored); frozen values."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _finite(v: float, name: str = "value") -> float:
    if not math.isfinite(v):
        raise ValueError(f"must be a finite number, got {v}")
    return v


class DataConfig(_Strict):
    """Where the labelled texts come from, and how a label is read."""

    source: str | None = None
    """A built-in set (``vader:movies``, ``vader:tweets``, ``vader:amazon``, ``vader:nyt``,
    ``pang-lee:sentences``, ``pang-lee:reviews``) or a JSONL/JSON file of records."""
    datasets: str | None = None
    """A ``datasets`` dataset: a hub name, or a local folder (``save_to_disk`` or data files)."""
    subset: str | None = None
    """The ``datasets`` configuration name."""
    split: str = "train"
    """The ``datasets`` split to read."""
    text: str = "text"
    """The field holding the text."""
    label: str | None = None
    """The field holding a class label: 0/1 or false/true (give this or ``rating``)."""
    rating: str | None = None
    """The field holding a numeric rating; positive means above ``threshold``."""
    scale: tuple[float, float] | None = None
    """The ratings' range [low, high]; a rating outside it is refused."""
    threshold: float | None = None
    """Where a rating turns positive [default: the middle of ``scale``, else 0]."""
    split_column: str | None = None
    """A field naming each record's split (weak_train, strong_train or test): the user's own
    splits instead of seeded ones."""
    lowercase: bool = False
    """Lower-case every text (the zoo's models were trained on lower-cased text)."""

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.source is None) == (self.datasets is None):
            raise ValueError("give exactly one of source (a built-in set or a file) and "
                             "datasets (a datasets name or folder)")
        if self.label is not None and self.rating is not None:
            raise ValueError("give label or rating, not both")
        builtin = self.source is not None and ":" in self.source and not Path(
            self.source).suffix
        if builtin:
            for key in ("label", "rating", "scale", "threshold"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is set by the built-in source {self.source}; "
                                     "remove it")
        elif self.label is None and self.rating is None:
            raise ValueError("name the field with the ground truth: label (0/1) or rating "
                             "(a number)")
        if self.scale is not None:
            lo, hi = self.scale
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"scale must be two finite numbers, low < high, got "
                                 f"{list(self.scale)}")
        if self.label is not None and (self.scale is not None or self.threshold is not None):
            raise ValueError("scale and threshold are for ratings, not labels")
        if self.threshold is not None:
            _finite(self.threshold)
        return self


SplitSize = Annotated[float, Field(gt=0)]


class SplitsConfig(_Strict):
    """Each split's size: a count of items, or a fraction (0, 1) of them."""

    weak_train: SplitSize = 0.3
    strong_train: SplitSize = 0.4
    test: SplitSize = 0.3

    @model_validator(mode="after")
    def _kinds(self) -> SplitsConfig:
        sizes = [getattr(self, s) for s in SPLITS]
        fractions = [s < 1 for s in sizes]
        if any(fractions) and not all(fractions):
            raise ValueError("give every split as a fraction (< 1) or every split as a count")
        if all(fractions) and sum(sizes) > 1 + 1e-9:
            raise ValueError(f"overlap: the fractions sum to {sum(sizes):g} > 1")
        if not all(fractions) and any(s != int(s) for s in sizes):
            raise ValueError(f"a count of items is a whole number, got {sizes}")
        return self


class PairsConfig(_Strict):
    """Pairwise form: how many pairs to draw inside each split."""

    weak_train: Annotated[int, Field(ge=1)] = 4000
    strong_train: Annotated[int, Field(ge=1)] = 6000
    test: Annotated[int, Field(ge=1)] = 4000


class ModelsConfig(_Strict):
    weak: str
    """The weak supervisor: a small model (``zoo:untuned``, a family model)."""
    strong: str
    """The strong student and ceiling (SmolLM2-135M: ``w2s zoo get smollm2``)."""
    intermediate: str | None = None
    """A model between the two in size, for bootstrapping."""


class ProbeConfig(_Strict):
    """Linear probes on frozen features (the fast path)."""

    pool: Literal["last", "mean"] = "last"
    """The feature of a text: the last token's final hidden state (what a ``transformers``
    sequence classifier reads, so a probe exports exactly as one) or the mean over tokens."""
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 20
    lr: Annotated[float, Field(gt=0, lt=10)] = 1e-3
    batch_size: Annotated[int, Field(ge=1)] = 64
    weight_decay: Annotated[float, Field(ge=0)] = 0.01
    max_tokens: Annotated[int, Field(ge=2)] = 128
    """Tokens of a text that reach the model (longer texts are cut)."""
    feature_batch: Annotated[int, Field(ge=1)] = 64
    """Texts per forward pass while extracting features."""


class FinetuneConfig(_Strict):
    """Fine-tuning every model as a ``transformers`` sequence classifier (full or LoRA)."""

    epochs: Annotated[float, Field(gt=0, le=1000)] = 2.0
    lr: Annotated[float, Field(gt=0, lt=1)] | dict[Literal["weak", "intermediate", "strong"],
                                                     Annotated[float, Field(gt=0, lt=1)]] = 2e-5
    """Peak learning rate (linear decay), or one per role (``{weak: 1e-3, strong: 2e-5}``:
    a small model's new head needs a larger one); a role not named takes 2e-5."""
    batch_size: Annotated[int, Field(ge=1)] = 16
    lora: bool = False
    lora_r: Annotated[int, Field(ge=1)] = 16
    max_tokens: Annotated[int, Field(ge=2)] = 128

    def lr_of(self, role: str) -> float:
        return self.lr.get(role, 2e-5) if isinstance(self.lr, dict) else self.lr


class _Method(_Strict):
    label: str | None = None

    def name(self) -> str:
        return self.label or self.method  # type: ignore[attr-defined]


class Naive(_Method):
    """Cross-entropy on the weak soft labels."""

    method: Literal["naive"] = "naive"


class AuxConf(_Method):
    """Burns et al.'s auxiliary confidence loss: (1 - a) CE(f_s, f_w) + a CE(f_s, hard(f_s)),
    hard(f_s) thresholded to the weak labels' class balance, a warmed up from 0 to alpha over
    the first ``warmup`` of training."""

    method: Literal["aux_conf"] = "aux_conf"
    alpha: Annotated[float, Field(gt=0, le=1)] = 0.75
    warmup: Annotated[float, Field(ge=0, lt=1)] = 0.2


class GCE(_Method):
    """Generalised cross-entropy (Zhang & Sabuncu 2018), a noise-robust loss:
    sum_c t_c (1 - p_c^q) / q; q -> 0 is cross-entropy, q = 1 the mean absolute error."""

    method: Literal["gce"] = "gce"
    q: Annotated[float, Field(gt=0, le=1)] = 0.7


class Bootstrap(_Method):
    """Weak -> intermediate -> strong: the intermediate model is trained on the weak labels
    (cross-fitted over ``folds``, so no item is labelled by a model that trained on it) and
    its labels train the strong student."""

    method: Literal["bootstrap"] = "bootstrap"
    folds: Annotated[int, Field(ge=2, le=20)] = 2


class Refine(_Method):
    """Somerstep et al.'s refinement: the strong model labels strong-train in context from
    ``shots`` weak-labelled examples, then is trained on its own refined labels."""

    method: Literal["refine"] = "refine"
    shots: Annotated[int, Field(ge=0, le=64)] = 8
    """Weak-labelled demonstrations before each text (0: zero-shot, a control)."""
    labels: Literal["weak", "shuffled"] = "weak"
    """The demonstrations' labels: the weak supervisor's, or those shuffled among the texts
    (a control: the same class balance, no information about which text is which)."""
    template: str = "Text: {text}\nSentiment:"
    """One example; ``{text}`` is replaced by the text, a label word follows."""
    words: tuple[str, str] = ("negative", "positive")
    """The label words for class 0 and class 1 (each read as its first token)."""
    block: Annotated[int, Field(ge=1)] = 64
    """Texts that share one draw of demonstrations (and one cached prefix)."""

    @field_validator("template")
    @classmethod
    def _has_text(cls, v: str) -> str:
        if v.count("{text}") != 1:
            raise ValueError("must hold {text} exactly once")
        return v

    @field_validator("words")
    @classmethod
    def _words(cls, v: tuple[str, str]) -> tuple[str, str]:
        if not all(w.strip() for w in v) or v[0].strip() == v[1].strip():
            raise ValueError(f"must be two different non-empty words, got {list(v)}")
        return v


Method = Annotated[Naive | AuxConf | GCE | Bootstrap | Refine, Field(discriminator="method")]
METHODS = ("naive", "aux_conf", "gce", "bootstrap", "refine")


class BootstrapCI(_Strict):
    """Bootstrap intervals: resampling test items and training seeds together."""

    draws: Annotated[int, Field(ge=100, le=100_000)] = 2000
    level: Annotated[float, Field(gt=0.5, lt=1)] = 0.95


class SearchConfig(_Strict):
    """The loop back to search (pairwise form): the reward models this run trains guide
    Best-of-N and CBS on an eval task, beside other guides, at equal budget."""

    task: str | dict[str, Any] = "sentiment"
    base: str = "zoo:base"
    prompts: Annotated[int, Field(ge=1)] = 64
    seeds: Annotated[int, Field(ge=1, le=100)] = 2
    sampling: dict[str, Any] = Field(default_factory=lambda: {"max_new_tokens": 50,
                                                              "temperature": 0.7})
    methods: list[dict[str, Any]] = Field(default_factory=lambda: [
        {"method": "bon", "n": 16}, {"method": "cbs", "w": 4, "k": 4, "l": 5}])
    guides: dict[str, dict[str, Any]] = Field(default_factory=lambda: {
        "weak pair": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}})
    """Other guides to compare with, by label (eval's guide mappings)."""
    students: list[str] | None = None
    """Which students' reward models guide [default: every method's]."""
    batch_size: Annotated[int, Field(ge=1)] = 64


class GeneraliseConfig(_Strict):
    name: str = "generalise"
    data: DataConfig
    form: Literal["binary", "pairwise"] = "binary"
    margin: Annotated[float, Field(ge=0)] = 0.0
    """Binary: drop ratings within ``margin`` of the threshold. Pairwise: a pair's ratings
    differ by at least ``margin``."""
    balance: bool = True
    """Binary form: keep as many negative as positive texts (the larger class subsampled,
    seeded), so that accuracy is 50 % for a constant guess and comparable across sets."""
    splits: SplitsConfig = SplitsConfig()
    pairs: PairsConfig = PairsConfig()
    split_seed: int = 0
    models: ModelsConfig
    train: Literal["probe", "finetune"] = "probe"
    probe: ProbeConfig = ProbeConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    seeds: Annotated[int, Field(ge=1, le=100)] | list[int] = 3
    methods: list[Method] = Field(default_factory=lambda: [Naive()], min_length=1)
    bootstrap: BootstrapCI = BootstrapCI()
    reward_for: str | None = None
    """Pairwise form: the eval task the strong reward model is for (recorded in it, and checked
    when it guides a search)."""
    search: SearchConfig | None = None
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    @field_validator("methods", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        """``naive`` is ``{method: naive}``."""
        if isinstance(v, list):
            return [{"method": m} if isinstance(m, str) else m for m in v]
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("must be a count, or a non-empty list of different seeds")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> GeneraliseConfig:
        names = [m.name() for m in self.methods]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"two methods share the label {dup[0]!r}; give each a label")
        if any(isinstance(m, Bootstrap) for m in self.methods) and not self.models.intermediate:
            raise ValueError("bootstrap needs models.intermediate (a model between weak and "
                             "strong in size)")
        if self.form == "pairwise" and self.data.label is not None:
            raise ValueError("the pairwise form compares ratings: give data.rating, not "
                             "data.label")
        if self.search is not None and self.form != "pairwise":
            raise ValueError("search is guided by the strong reward model of the pairwise "
                             "form: set form: pairwise")
        if self.search is not None and self.train != "probe":
            raise ValueError("search uses reward models exported from probes: set train: probe")
        if self.search is not None and self.probe.pool != "last":
            raise ValueError("search uses reward models exported from probes on the last "
                             "token (what a sequence classifier reads): set probe.pool: last")
        if self.train == "finetune" and self.form == "pairwise":
            raise ValueError("the pairwise form trains probes (train: probe); fine-tuning "
                             "takes the binary form")
        if self.search is not None and self.reward_for is not None:
            task = self.search.task if isinstance(self.search.task, str) else \
                self.search.task.get("name")
            if task != self.reward_for:
                raise ValueError(f"reward_for is {self.reward_for!r} but search.task is "
                                 f"{task!r}: the reward models would guide a task they were "
                                 "not trained for")
        if self.search is not None and self.search.students is not None:
            unknown = sorted(set(self.search.students) - set(names))
            if unknown:
                raise ValueError(f"search.students names {unknown[0]!r}, not a method label "
                                 f"of this config ({', '.join(names)})")
        return self

    # ------------------------------------------------------------------ derived
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def identity(self, base_dir: Path) -> dict[str, Any]:
        """What decides this run's trained models: the config but its ``search`` section (an
        eval run of its own in ``OUT/search``, resumable and guarded by eval's hashes, so a
        search can be extended on a finished folder), and the folder relative paths start in."""
        data = self.model_dump(mode="json", exclude={"search"})
        return {"format": 1, "config": data, "base_dir": str(base_dir.resolve())}


def field_path(loc: tuple[Any, ...]) -> str:
    """``("probe", "lr")`` -> ``probe.lr``; ``("methods", 1, "aux_conf", "alpha")`` ->
    ``methods[1].alpha`` (the union's tag is not part of the user's path)."""
    out = ""
    for x in loc:
        if isinstance(x, int):
            out += f"[{x}]"
        elif x in METHODS or any(c in str(x) for c in "-[("):  # a union member's tag
            continue
        else:
            out += f".{x}" if out else str(x)
    return out


def parse_config(data: Any, where: str = "config") -> GeneraliseConfig:
    """The config a mapping describes, or one line naming the first bad key."""
    if not isinstance(data, dict):
        raise W2SError(f"{where} must be a mapping of keys (name, data, models, methods, ...)")
    try:
        return GeneraliseConfig.model_validate(data)
    except ValidationError as e:
        # of a union's errors (one per member), the deepest: the member the value was meant for
        errors = e.errors()
        first = max(errors, key=lambda x: len(x.get("loc", ())))
        path = field_path(tuple(first.get("loc", ())))
        kind = first.get("type", "")
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = "is not a key of a generalise config (a typo?)"
        elif kind == "missing":
            msg = "is missing"
        elif kind == "union_tag_invalid":
            msg = f"must name one of {', '.join(METHODS)}, got {first.get('input', {}).get('method')!r}" \
                if isinstance(first.get("input"), dict) else msg
            path = f"{path}.method" if path else "method"
        elif kind == "union_tag_not_found":
            msg = f"needs a method: one of {', '.join(METHODS)}"
        elif not path:  # a rule across keys: the message names them
            raise W2SError(f"{where}: {msg}") from None
        else:
            msg = _plain(msg, first.get("input"))
        raise FieldError(path or where, msg) from None


def _plain(msg: str, value: Any) -> str:
    """pydantic's wording in w2s's: ``must be > 0, got -1``."""
    for theirs, ours in (("Input should be greater than or equal to ", "must be >= "),
                         ("Input should be greater than ", "must be > "),
                         ("Input should be less than or equal to ", "must be <= "),
                         ("Input should be less than ", "must be < ")):
        if msg.startswith(theirs):
            return f"{ours}{msg.removeprefix(theirs)}, got {value!r}"
    if msg.startswith("Input should be "):
        return f"must be {msg.removeprefix('Input should be ')}, got {value!r}"
    return msg if msg.startswith(("must ", "is ", "give ", "overlap")) else f"is not valid: {msg}"


def load_config(name_or_path: str) -> tuple[GeneraliseConfig, Path]:
    """Read and check a config file, or a shipped one (``movies``, ``tweets``, ``reward``,
    ``finetune``): ``(config, its path)``."""
    from w2s.configfile import find_config, read_config_file

    path = find_config(name_or_path, SHIPPED, "generalise")
    return parse_config(read_config_file(path), str(path)), path
