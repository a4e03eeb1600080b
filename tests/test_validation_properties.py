"""Property: every value a user can give a knob dataclass or an eval config is either accepted
(and then round-trips through strict JSON: no NaN, no Infinity) or refused with one
``W2SError``; never another exception, never a silently odd value."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w2s import W2SError
from w2s.errors import FieldError
from w2s.params import (
    BestOfNParams,
    DLFParams,
    EFTParams,
    NudgingParams,
    ParticleParams,
    SamplingParams,
    SearchParams,
    WSDParams,
)

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.lists(st.text(max_size=4), max_size=3), st.sampled_from(["8:4,4:4", "", "4:0", "x", "adasearch", "adasearch:0.3", "adasearch:2"]))
CLASSES = [SamplingParams, SearchParams, BestOfNParams, EFTParams, DLFParams, NudgingParams,
           WSDParams]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_knobs_are_accepted_and_round_trip_or_refused_in_one_line(cls, data):
    names = [f.name for f in dataclasses.fields(cls)]
    kw = data.draw(st.dictionaries(st.sampled_from(names), ANY, max_size=len(names)))
    try:
        p = cls(**kw)
    except W2SError as e:
        assert "\n" not in str(e) and str(e)
        return
    text = json.dumps(p.to_dict(), allow_nan=False)  # raises on NaN / Infinity
    assert cls.from_dict(json.loads(text)) == p
    for v in p.to_dict().values():
        assert not (isinstance(v, float) and not math.isfinite(v))


@settings(max_examples=100, deadline=None)
@given(seeds=st.one_of(st.integers(-(2**70), 2**70),
                       st.lists(st.integers(-(2**70), 2**70), min_size=1, max_size=3)))
def test_config_seeds_are_refused_now_or_accepted_for_good(seeds):
    from w2s.evaluate.config import parse_config

    data = {"name": "t", "task": "sentiment", "base": "zoo:base", "methods": ["sample"],
            "seeds": seeds}
    try:
        cfg = parse_config(data, Path("/nonexistent/cfg.yaml"))
    except W2SError:
        return
    for seed in cfg.seeds:
        SamplingParams(seed=seed)  # a run makes exactly this: it must not fail there


SAMPLING = st.dictionaries(
    st.sampled_from(["max_new_tokens", "temperature", "top_p", "top_k", "stop", "ignore_eos",
                     "nonsense"]), ANY, max_size=3)
METHOD = st.fixed_dictionaries(
    {"method": st.sampled_from(["sample", "bon", "cbs", "eft", "dlf", "nudging", "beam"])},
    optional={"w": ANY, "n": ANY, "beta": ANY, "gamma": ANY, "alpha_max": ANY, "l": ANY,
              "schedule": ANY, "weights": ANY, "label": ANY})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sampling=SAMPLING, methods=st.lists(METHOD, min_size=1, max_size=2),
       seeds=st.one_of(st.integers(-3, 3), st.lists(st.integers(-(2**64), 2**64), max_size=3),
                       ANY))
def test_eval_configs_are_accepted_or_refused_in_one_line(sampling, methods, seeds):
    from w2s.evaluate.config import parse_config

    data = {"name": "t", "task": "sentiment", "base": "zoo:base",
            "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
            "sampling": sampling, "methods": methods, "seeds": seeds}
    try:
        cfg = parse_config(data, Path("/nonexistent/cfg.yaml"))
    except W2SError as e:
        assert "\n" not in str(e) and str(e)
        return
    for m in cfg.methods:
        json.dumps({"params": m.params.to_dict() if m.params else {},
                    "sampling": m.sampling.to_dict()}, allow_nan=False)
        for seed in cfg.seeds:  # what a run does with each: accepted now, accepted then
            dataclasses.replace(m.sampling, seed=seed)


def test_non_finite_metrics_are_written_as_null_never_as_invalid_json():
    from w2s.textfile import strict_json

    text = strict_json({"kl": float("inf"), "gold": {"v": float("nan")}, "xs": [1.0, -math.inf]})
    assert json.loads(text) == {"kl": None, "gold": {"v": None}, "xs": [1.0, None]}
    assert "Infinity" not in text and "NaN" not in text


def _knob_classes() -> list[type]:
    from w2s.decoding import decoders

    return [SamplingParams] + sorted({s.params for s in decoders().values() if s.params},
                                     key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _knob_classes(), ids=lambda c: c.__name__)
def test_a_value_of_the_wrong_type_is_refused_naming_its_field(cls):
    """Every field of every knob dataclass (each decoder's and the sampling parameters), given
    a value of the wrong type, is refused with a FieldError for that very field: the message
    opens with its name, which each face turns into its own terms (``--w``, ``methods[2].w``,
    the server's ``param``). A message naming another field, or none, would send the user to
    the wrong flag."""
    import typing

    from w2s.errors import FieldError

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        bad = 3 if typ is str else [1] if typing.get_origin(typ) is tuple else "x"
        with pytest.raises(FieldError) as e:
            cls(**{f.name: bad})
        assert e.value.field == f.name and str(e.value).startswith(f"{f.name} "), str(e.value)


def test_a_schedule_draws_w_of_the_round_before_times_k_of_this_one():
    """The memory plan and the KL bound of a schedule, by hand on pairs whose W and K all
    differ (a W of one round and a K of the next are easy to swap, and the repeating last
    round is easy to take from the wrong end): 8:2 draws 8 x 2; then 8 kept x 5; then 3 kept
    x 7; from then on the last pair repeats, 2 kept x 7."""
    p = SearchParams(schedule="8:2,3:5,2:7")
    assert p.rounds() == [(8, 2), (3, 5), (2, 7)]
    assert p.draws() == [16, 40, 21, 14] and p.max_rows() == 40
    assert SearchParams(schedule="2:3,5:7").draws() == [6, 14, 35]
    assert SearchParams(w=3, k=5).draws() == [15]
    # a bad schedule names its field, as every knob's error does (the server's ``param``)
    with pytest.raises(FieldError, match=r"^schedule must have at most 64 rounds, got 65$"):
        SearchParams(schedule=",".join(["2:2"] * 65))
    with pytest.raises(FieldError, match=r"^schedule must have W and K >= 1, got '0:2'$"):
        SearchParams(schedule="4:4,0:2")
    with pytest.raises(FieldError, match=r"^schedule must be W:K pairs separated by commas"):
        SearchParams(schedule="4x4")
    with pytest.raises(W2SError, match=r"^give w and k, or a schedule, not both$"):
        SearchParams(w=2, schedule="4:4")
    assert len(SearchParams(schedule=",".join(["2:2"] * 64)).rounds()) == 64


def test_one_stop_string_is_a_tuple_of_one_and_an_empty_one_is_refused():
    assert SamplingParams(stop="end").stop == ("end",)
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    with pytest.raises(FieldError, match=r"^stop must not hold an empty string$"):
        SamplingParams(stop=("a", ""))


def test_unknown_fields_are_listed_by_name():
    with pytest.raises(W2SError, match=r"^unknown SearchParams field\(s\): bogus, nope$"):
        SearchParams.from_dict({"w": 2, "nope": 1, "bogus": 2})


@pytest.mark.parametrize(("cls", "name", "accepted", "refused"), [
    (DLFParams, "alpha_max", [1e-9, 0.5, 100], [0, 100.001]),      # (0, 100]
    (NudgingParams, "gamma", [0, 1], [-1e-9, 1.001]),               # [0, 1]
    (NudgingParams, "chunk", [1], [0]),                             # >= 1
    (NudgingParams, "word_tokens", [1], [0]),                       # >= 1
    (ParticleParams, "ess", [1e-9, 1], [0, 1.001]),                 # (0, 1]
    (WSDParams, "threshold", [1e-9, 1 - 1e-9], [0, 1]),             # (0, 1)
    (WSDParams, "window", [1], [0]),                                # >= 1
    (WSDParams, "max_draft", [1], [0]),                             # >= 1
    (EFTParams, "beta", [0, 1e-9], [-1e-9]),                        # >= 0 (0: the base alone)
    (BestOfNParams, "n", [1], [0]),                                 # >= 1
    (SearchParams, "w", [1], [0]),                                  # >= 1
    (SearchParams, "k", [1], [0]),                                  # >= 1
    (SearchParams, "l", [1], [0]),                                  # >= 1
    (SamplingParams, "max_new_tokens", [1], [0]),                   # >= 1
    (SamplingParams, "temperature", [0], [-1e-9]),                  # >= 0 (0: greedy)
    (SamplingParams, "top_p", [1e-9, 1], [0, 1.001]),               # (0, 1]
    (SamplingParams, "top_k", [0], [-1]),                           # >= 0 (0: off)
    (SamplingParams, "seed", [-(2**63), 2**63 - 1], [-(2**63) - 1, 2**63]),  # 64-bit signed
], ids=lambda v: getattr(v, "__name__", None))
def test_a_knobs_documented_bounds_are_exact(cls, name, accepted, refused):
    """Each bound its message states is the bound it enforces: the edge values are accepted and
    the values just outside refused, naming the field."""
    from w2s.errors import FieldError

    for v in accepted:
        assert getattr(cls(**{name: v}), name) == v
    for v in refused:
        with pytest.raises(FieldError, match=rf"^{name} must "):
            cls(**{name: v})
