"""Tests that kill mutants a mutation check left alive (docs/mutation.md, 2026-12-07): each
checks one branch that decides accept or refuse, which the module's own tests reached from one
side only."""

from __future__ import annotations

from fake_engine import FakeEngine

from w2s.models.engine_lm import PROBE, EngineLM


def test_the_tokenizer_check_adds_special_tokens_as_the_engines_tokenize_does():
    """vLLM's ``/tokenize`` adds a text prompt's special tokens (a BOS): the local ids must be
    taken the same way, or every BOS tokenizer's guide would be refused."""
    e = FakeEngine(tokenize=True)  # the probe's words numbered 1000, 1001, ...
    try:
        lm = EngineLM(e.url, "zoo:tuned", model="fake", timeout=2.0, max_retries=1)
        n = len(PROBE.split())

        def tokenizer(text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
            ids = [1000 + i for i in range(n)]  # the engine's, its first id the "BOS"
            return {"input_ids": ids if add_special_tokens else ids[1:]}

        lm.tokenizer = tokenizer
        assert lm.token_logprobs([[5]], [[7]])[0].tolist() == [-1.0]
    finally:
        e.close()


def test_every_train_setting_is_refused_just_past_its_bound_and_taken_at_it():
    """Each of TrainPlan's bounds at its edge, both sides (only ``learning_rate=0`` was)."""
    import pytest

    from w2s.distill.train import TrainPlan
    from w2s.errors import W2SError

    for name, bad in (("epochs", 0.0), ("learning_rate", 1.0), ("batch_size", 0), ("beta", 0.0),
                      ("lora_r", 0), ("max_length", 7), ("save_steps", 0)):
        with pytest.raises(W2SError, match=f"^{name} is out of range, got {bad!r}$"):
            TrainPlan("d", **{name: bad})
    TrainPlan("d", epochs=1e-9, learning_rate=0.999, batch_size=1, beta=1e-9, lora_r=1,
              max_length=8, save_steps=1)
    TrainPlan("d", trainer="kto", batch_size=2)
    with pytest.raises(W2SError, match="kto needs a batch size of at least 2"):
        TrainPlan("d", trainer="kto", batch_size=1)


def test_check_rows_names_the_line_of_a_bad_row_and_tells_chat_rows(tmp_path):
    import pytest

    from w2s.distill.train import check_rows
    from w2s.errors import W2SError

    f = tmp_path / "rows.jsonl"
    f.write_text('{"prompt": "a", "completion": "b"}\n\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(W2SError, match=rf"^{f}:3: a row must be a JSON object, got list$"):
        check_rows(f)
    f.write_text('{"prompt": "a"}\n{"prompt": \n', encoding="utf-8")
    with pytest.raises(W2SError, match=rf"^{f}:2: not a JSON row "):
        check_rows(f)
    f.write_text('{"prompt": "a", "completion": "b"}\n\n', encoding="utf-8")
    assert check_rows(f) is False
    f.write_text('{"prompt": "a"}\n{"messages": [{"role": "user", "content": "a"}]}\n')
    assert check_rows(f) is True
    f.write_text('{"prompt": [{"role": "user", "content": "a"}], "chosen": []}\n')
    assert check_rows(f) is True  # a preference row's conversation is its prompt
    f.write_bytes(b'{"prompt": "\xff"}\n')
    with pytest.raises(W2SError, match=rf"^{f}: not UTF-8 text"):
        check_rows(f)


def test_open_out_claims_resumes_refuses_and_restarts(tmp_path):
    import json

    import pytest

    from w2s.distill.train import TRAIN, TrainPlan, open_out
    from w2s.errors import W2SError

    plan, out = TrainPlan(str(tmp_path / "d")), tmp_path / "out"
    assert open_out(plan, out, False) is False  # claimed: train.json written, not done
    assert json.loads((out / TRAIN).read_text()) == {"plan": plan.identity(), "done": False}
    assert open_out(plan, out, False) is False  # this run, no checkpoint yet
    (out / "checkpoint-2").mkdir()
    assert open_out(plan, out, False) is True  # this run, a checkpoint to resume
    with pytest.raises(W2SError, match="holds another training run"):
        open_out(TrainPlan(str(tmp_path / "d"), epochs=2.0), out, False)
    (out / TRAIN).write_text(json.dumps({"plan": plan.identity(), "done": True}))
    with pytest.raises(W2SError, match="holds this run, finished; use --restart"):
        open_out(plan, out, False)
    assert open_out(plan, out, True) is False  # --restart: discarded, claimed anew
    assert sorted(p.name for p in out.iterdir()) == [TRAIN]
    (out / TRAIN).write_text("{")
    with pytest.raises(W2SError, match="is not valid JSON"):
        open_out(plan, out, False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    with pytest.raises(W2SError, match="is not empty and holds no training run"):
        open_out(plan, other, False)
    assert not (other / TRAIN).exists()


def test_require_training_names_each_missing_library(monkeypatch):
    import importlib.util

    import pytest

    from w2s.distill.train import require_training
    from w2s.errors import W2SError

    real = importlib.util.find_spec
    for gone in ("trl", "datasets", "peft"):
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, gone=gone: None if name == gone else real(name, *a))
        with pytest.raises(W2SError, match=rf"\({gone} missing\)"):
            require_training()


def _zoo_base() -> str:
    from w2s.zoo import ZOO_DIR

    return str(ZOO_DIR / "base")


SHARDED = {"model.embed_tokens": "cpu", **{f"model.layers.{i}": "cpu" for i in range(6)},
           "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}


def test_a_map_leaving_three_modules_names_them_all_and_four_says_how_many_more():
    import pytest

    from w2s.errors import FieldError
    from w2s.models.placement import check_coverage

    def left(*gone: str) -> str:
        with pytest.raises(FieldError) as e:
            check_coverage({k: v for k, v in SHARDED.items() if k not in gone}, _zoo_base())
        return str(e.value)

    three = ("model.layers.1", "model.layers.2", "model.layers.3")
    assert left(*three).startswith(f"device_map leaves {', '.join(three)} unplaced: ")
    assert left(*three, "lm_head").startswith(f"device_map leaves {', '.join(three)} and 1 more "
                                              "unplaced: ")


def test_a_map_keyed_by_each_parameters_own_name_places_it():
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from w2s.models.placement import check_coverage

    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(_zoo_base()))
    check_coverage({name: "cpu" for name, _ in model.named_parameters()}, _zoo_base())


def test_devices_a_map_cannot_name_are_refused_in_one_line():
    import pytest
    import torch

    from w2s.errors import FieldError
    from w2s.models.placement import parse_device_map

    bad = [({"": -1}, "device_map must be cpu, a GPU index or cuda:N, got -1"),
           ({"": True}, "device_map must be cpu, a GPU index or cuda:N, got True"),
           ({1: "cpu"}, "device_map keys are module names, got 1")]
    if not torch.backends.mps.is_available():
        bad.append(("mps", "device_map names mps, and this machine has no Apple GPU torch can "
                           "use"))
    for value, message in bad:
        with pytest.raises(FieldError) as e:
            parse_device_map(value)
        assert str(e.value) == message
    for strategy in ("auto", "balanced", "balanced_low_0", "sequential"):
        assert parse_device_map(strategy) == strategy
    assert parse_device_map("cpu") == "cpu"


def test_a_plan_at_each_bound_is_taken_and_loaded_weights_do_not_count_against_free():
    import pytest

    from w2s.errors import FieldError
    from w2s.models.memory import GIB, MemoryPlan

    MemoryPlan("cpu", 1, 1, 2 * GIB, 0, 0, None, limit=2 * GIB).check()  # weights == limit
    MemoryPlan("cpu", 1, 1, 2 * GIB, GIB, GIB, None, limit=4 * GIB).check()  # total == limit
    # the weights are loaded already: free memory is weighed against the search alone
    MemoryPlan("cuda:0", 8, 100, 10 * GIB, GIB, 0, free=4 * GIB).check()
    MemoryPlan("cuda:0", 8, 100, 0, 3 * GIB, GIB // 2, free=4 * GIB).check()  # 3.5 < 3.6
    with pytest.raises(FieldError, match="^batch_size is too large here"):  # 3.7 > 3.6
        MemoryPlan("cuda:0", 8, 100, 0, 3 * GIB, 7 * GIB // 10, free=4 * GIB).check()


def test_free_memory_on_a_gpu_is_what_torch_reports_free_not_its_total(monkeypatch):
    import torch

    from w2s.models.memory import GIB, free_bytes

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (3 * GIB, 80 * GIB))
    assert free_bytes({torch.device("cuda:0"), torch.device("cuda:1")}) == 6 * GIB
    assert free_bytes({torch.device("meta")}) is None


def test_an_engine_bases_options_are_checked_at_their_bounds():
    import pytest

    from w2s.errors import FieldError
    from w2s.request import BaseRef

    url = "https://h/v1"
    ok = BaseRef.parse({"url": url, "model": "m", "max_concurrency": 1, "timeout": 0,
                        "max_retries": 0})
    assert (ok.url, ok.max_concurrency, ok.timeout, ok.max_retries) == (url, 1, 0, 0)
    for key, value, message in (
            ("max_concurrency", 0, "base.max_concurrency must be >= 1, got 0"),
            ("timeout", -0.5, "base.timeout must be >= 0, got -0.5"),
            ("max_retries", -1, "base.max_retries must be >= 0, got -1"),
            ("max_concurrency", True, "base.max_concurrency has the wrong type: True"),
            ("timeout", "9", "base.timeout has the wrong type: '9'"),
            ("colour", "red", "base.colour is not a base key")):
        with pytest.raises(FieldError) as e:
            BaseRef.parse({"url": url, "model": "m", key: value})
        assert str(e.value).startswith(message), str(e.value)


def test_openai_named_sampling_skips_nones_and_names_a_bad_field_as_given():
    import pytest

    from w2s.errors import FieldError
    from w2s.params import SamplingParams
    from w2s.request import to_sampling_params

    base = SamplingParams(temperature=0.3, max_new_tokens=9)
    assert to_sampling_params({"temperature": None, "max_tokens": None}, base) == base
    assert to_sampling_params({"max_tokens": 4}, base).max_new_tokens == 4
    with pytest.raises(FieldError) as e:
        to_sampling_params({"max_tokens": 0}, base, where="body.")
    assert e.value.field == "body.max_tokens"


def test_knobs_a_request_nests_override_a_faces_defaults():
    from w2s.request import parse_request

    r = parse_request({"knobs": {"n": 5}}, default_method="bon",
                      default_knobs={"bon": {"n": 3}}, guide_given=False)
    assert r.knobs.n == 5


class _LM:
    pass


def _recording_loader(monkeypatch, **kw):  # noqa: ANN001, ANN003, ANN202
    import w2s.models.backends as backends
    import w2s.models.loading as loading
    from w2s.request import Loader

    calls: dict = {"load": [], "choose": [], "engine": []}
    monkeypatch.setattr(backends, "load_model", lambda ref, **k: (calls["load"].append((ref, k)),
                                                                  _LM())[1])
    monkeypatch.setattr(loading, "choose_device", lambda d, f: calls["choose"].append((d, f)))
    monkeypatch.setattr(backends, "load_engine", lambda url, model, **k: (
        calls["engine"].append(k), _LM())[1])
    return Loader(**kw), calls


def test_only_the_base_is_sharded_and_limited_and_the_rest_goes_on_the_guide_device(monkeypatch):
    from w2s.request import BaseRef

    loader, calls = _recording_loader(monkeypatch, device="dev", guide_device="gdev",
                                      device_map={"": "cpu"}, memory_limit=1.5)
    big = loader.base(BaseRef("A"))
    assert big.memory_limit == int(1.5 * 2**30)
    small = loader.base(BaseRef("B"))  # a second base: a small model sampled in A's place
    guide = loader.lm("G")
    assert not hasattr(small, "memory_limit") and not hasattr(guide, "memory_limit")
    assert [(r, k["device"], k["device_map"]) for r, k in calls["load"]] == [
        ("A", "dev", {"": "cpu"}), ("B", "gdev", None), ("G", "gdev", None)]
    assert calls["choose"] == [("gdev", "guide_device"), ("gdev", "guide_device")]
    loader, calls = _recording_loader(monkeypatch, device="dev", big="A")
    loader.base(BaseRef("B"))  # the named base is A: B is not sharded
    assert calls["load"][0][1]["device_map"] is None and calls["choose"] == []
    assert loader.big == "A"


def test_an_engine_base_gets_batches_of_at_least_256(monkeypatch):
    from w2s.request import BaseRef

    for batch, want in ((64, 256), (512, 512)):
        loader, calls = _recording_loader(monkeypatch, batch_size=batch)
        loader.base(BaseRef("m", "http://h/v1"))
        assert calls["engine"][0]["batch_size"] == want


def test_run_and_the_loader_refuse_a_string_of_prompts_and_a_zero_limit():
    import pytest

    from w2s.errors import FieldError
    from w2s.request import BaseRef, Loader, Request, run

    with pytest.raises(TypeError, match="run takes a list of prompts, got str"):
        run(Request("sample", base=BaseRef("zoo:base")), "The movie was")
    with pytest.raises(FieldError, match="memory_limit must be a number of GiB > 0, got 0"):
        Loader(memory_limit=0)


def test_every_flag_of_the_commands_that_take_knobs_is_a_name_no_knob_can_take():
    """A knob named ``json`` would be a second ``--json`` on ``w2s generate`` (the option's
    name is ``as_json``), ``help`` a second ``--help``: the flags' spellings are checked, not
    only the options' names."""
    import click

    from w2s.cli import cli
    from w2s.decoding.registry import KNOB_NAMES_TAKEN, decoders

    knobs = {f.name for d in decoders().values() for f in d.knob_fields()}
    for path in (["generate"], ["distill", "data"]):
        cmd, ctx = cli, click.Context(cli)
        for name in path:
            cmd = cmd.get_command(ctx, name)
            ctx = click.Context(cmd, parent=ctx)
        flags = {o[2:].replace("-", "_") for p in cmd.get_params(ctx)
                 for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
        assert flags - knobs <= set(KNOB_NAMES_TAKEN), flags - knobs - set(KNOB_NAMES_TAKEN)
    for name in ("help", "json", "label", "model"):  # the eval config's method fields too
        assert name in KNOB_NAMES_TAKEN
