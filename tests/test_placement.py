"""The big-model path on the CPU: a base sharded by accelerate's ``device_map`` (every layer
placed on its own entry; accelerate takes the same path as across GPUs) and the guide on a
device of its own, through the Python API, the CLI, an eval config and ``w2s serve``; and each
bad placement refused in one line before a weight loads."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import w2s
from w2s.cli import cli
from w2s.errors import FieldError, W2SError
from w2s.models.placement import check_coverage, parse_device_map
from w2s.request import BaseRef, GuideRef, Loader
from w2s.zoo import ZOO_DIR

pytestmark = pytest.mark.slow
BASE = str(ZOO_DIR / "base")
SHARDED = {"model.embed_tokens": "cpu", **{f"model.layers.{i}": "cpu" for i in range(6)},
           "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
"""The zoo base, one entry per module: what a map over several GPUs looks like."""
Z = ["--base", "zoo:base", "--tuned", "zoo:tuned", "--untuned", "zoo:untuned"]
G = ["generate", *Z, "--method", "cbs", "--w", "2", "--k", "2", "--l", "3", "--prompt",
     "The movie was", "--max-new-tokens", "6", "--seed", "1", "--json"]


@pytest.mark.parametrize("value,want", [
    ("auto", "auto"), ("balanced", "balanced"), (" sequential ", "sequential"),
    ('{"": "cpu"}', {"": "cpu"}), ({"model": "cpu", "lm_head": "cpu"},
                                   {"model": "cpu", "lm_head": "cpu"}), (None, None)])
def test_a_device_map_reads_as_a_strategy_a_json_object_or_a_mapping(value, want):
    assert parse_device_map(value) == want


def test_a_device_map_reads_from_a_json_file(tmp_path):
    (tmp_path / "map.json").write_text(json.dumps(SHARDED))
    assert parse_device_map(str(tmp_path / "map.json")) == SHARDED


@pytest.mark.parametrize("value,message", [
    ("everywhere", "device_map must be one of auto, balanced, balanced_low_0, sequential, a "
                   "JSON object or a .json file, got 'everywhere'"),
    ("[0, 1]", "device_map must be a JSON object of module names to devices, got '[0, 1]'"),
    ("{}", 'device_map is an empty map: name a device for every module ("" for all)'),
    ('{"": 0}', "device_map names CUDA device 0, and this machine has none that torch can use"),
    ('{"model": "cuda:1", "lm_head": "cpu"}', "device_map['model'] names CUDA device 1, and "
                                              "this machine has none that torch can use"),
    ('{"": "disk"}', "device_map offloads to disk, which w2s does not set up; use cpu"),
    ('{"": "tpu"}', "device_map must be cpu, a GPU index or cuda:N, got 'tpu'"),
    ("missing.json", "device_map cannot read 'missing.json': No such file or directory"),
])
def test_a_bad_device_map_is_one_line_naming_it(value, message):
    if not message.startswith("device_map names CUDA") or not w2s_has_cuda():
        with pytest.raises(FieldError) as e:
            parse_device_map(value)
        assert str(e.value) == message


def w2s_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_a_map_that_leaves_layers_unplaced_is_refused_before_loading():
    partial = {k: v for k, v in SHARDED.items() if k not in ("model.layers.4", "model.layers.5")}
    with pytest.raises(FieldError) as e:
        check_coverage(partial, BASE)
    assert str(e.value) == ("device_map leaves model.layers.4, model.layers.5 unplaced: give "
                            "every module a device (\"\" places the rest)")
    check_coverage(SHARDED, BASE)
    check_coverage({"": "cpu"}, BASE)
    with pytest.raises(FieldError, match="^device_map leaves"):
        w2s.HFModel.load(BASE, device_map=partial)


def test_a_sharded_base_decodes_the_same_tokens_as_a_whole_one():
    whole = w2s.HFModel.load(BASE)
    sharded = w2s.HFModel.load(BASE, device_map=json.dumps(SHARDED))
    assert sharded.device_map == SHARDED and whole.device_map is None
    pair = w2s.PairGuide(w2s.HFModel.load(str(ZOO_DIR / "tuned")),
                         w2s.HFModel.load(str(ZOO_DIR / "untuned")))
    sp = w2s.SamplingParams(max_new_tokens=8, seed=3)
    knobs = w2s.SearchParams(2, 2, 3)
    a = w2s.cbs(whole, pair, ["The movie was", "A film"], knobs, sp)
    b = w2s.cbs(sharded, pair, ["The movie was", "A film"], knobs, sp)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


def test_the_loader_shards_the_base_and_puts_the_guide_on_its_device():
    loader = Loader(device_map=SHARDED, guide_device="cpu")
    base = loader.base(BaseRef("zoo:base"))
    guide = loader.guide(GuideRef(("zoo:tuned",), ("zoo:untuned",)))
    assert base.device_map == SHARDED
    assert guide.tuned.device_map is None and guide.tuned.device.type == "cpu"
    with pytest.raises(FieldError) as e:
        Loader(guide_device="cuda:7").lm("zoo:tuned")
    assert str(e.value).startswith("guide_device 'cuda:7' ")


def test_the_cli_shards_the_base_with_the_same_answer(tmp_path):
    plain = CliRunner().invoke(cli, G)
    assert plain.exit_code == 0, plain.output
    (tmp_path / "map.json").write_text(json.dumps(SHARDED))
    sharded = CliRunner().invoke(cli, [*G, "--device-map", str(tmp_path / "map.json"),
                                       "--guide-device", "cpu"])
    assert sharded.exit_code == 0, sharded.output
    assert json.loads(sharded.stdout)["token_ids"] == json.loads(plain.stdout)["token_ids"]


@pytest.mark.parametrize("flags,message", [
    (["--device-map", '{"": 0}'], "error: --device-map names CUDA device 0, and this machine "
                                  "has none that torch can use"),
    (["--device-map", "nowhere"], "error: --device-map must be one of auto, balanced, "
                                  "balanced_low_0, sequential, a JSON object or a .json file, "
                                  "got 'nowhere'"),
    (["--guide-device", "cuda:3"], "error: --guide-device 'cuda:3' needs a CUDA GPU, and this "
                                   "machine has none that torch can use; use cpu (or auto)"),
])
def test_the_cli_refuses_a_placement_that_is_not_here_in_one_line(flags, message):
    if w2s_has_cuda():
        pytest.skip("this machine has a GPU")
    r = CliRunner().invoke(cli, [*G, *flags, "--quiet"])
    assert r.exit_code == 2 and r.stderr.strip() == message, r.output


def _config(tmp_path, **extra) -> str:
    data = {"task": "sentiment", "base": "zoo:base",
            "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}, "prompts": 2,
            "sampling": {"max_new_tokens": 6}, "methods": ["sample", {"method": "bon", "n": 2}],
            **extra}
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(data))
    return str(path)


def test_an_eval_config_shards_its_base_with_the_same_rows(tmp_path):
    from w2s.evaluate import load_config, run_eval
    from w2s.evaluate.run import Models

    plain = run_eval(load_config(_config(tmp_path)), tmp_path / "a", show_progress=False)
    cfg = load_config(_config(tmp_path, device_map=SHARDED, guide_device="cpu"))
    assert cfg.device_map == SHARDED and cfg.guide_device == "cpu"
    assert Models(cfg, chat=False).base().device_map == SHARDED
    sharded = run_eval(cfg, tmp_path / "b", show_progress=False)
    assert [r["response"] for r in sharded] == [r["response"] for r in plain]


@pytest.mark.parametrize("extra,message", [
    ({"device": "cuda"}, "cfg.yaml: device 'cuda' needs a CUDA GPU, and this machine has none "
                         "that torch can use; use cpu (or auto)"),
    ({"device_map": {"": 0}}, "cfg.yaml: device_map names CUDA device 0, and this machine has "
                              "none that torch can use"),
    ({"guide_device": "cuda:1"}, "cfg.yaml: guide_device 'cuda:1' needs a CUDA GPU, and this "
                                 "machine has none that torch can use; use cpu (or auto)"),
])
def test_a_config_written_for_a_gpu_is_one_line_on_a_machine_without_one(tmp_path, extra,
                                                                         message):
    from w2s.evaluate import load_config

    if w2s_has_cuda():
        pytest.skip("this machine has a GPU")
    with pytest.raises(W2SError) as e:
        load_config(_config(tmp_path, **extra))
    assert str(e.value) == message
    r = CliRunner().invoke(cli, ["eval", _config(tmp_path, **extra), "--out",
                                 str(tmp_path / "o"), "--no-progress"])
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {message}", r.output
    assert not (tmp_path / "o").exists()  # nothing written


def test_w2s_serve_shards_its_base(monkeypatch):
    import w2s.serve.main as main

    built = []
    monkeypatch.setattr(main, "run_server", lambda opts, explicit: built.append(
        main.build_server(main.merge(opts, explicit))))
    r = CliRunner().invoke(cli, ["serve", *Z, "--device-map", json.dumps(SHARDED),
                                 "--guide-device", "cpu"])
    assert r.exit_code == 0, r.output
    assert built[-1].backend.device_map == SHARDED
    assert built[-1].guide.tuned.device_map is None
