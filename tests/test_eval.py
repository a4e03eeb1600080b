"""The evaluation harness: configs, metrics (KL), resumable JSONL, reports and plots."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from w2s.cli import cli
from w2s.decoding.cbs import selection_kl_bound
from w2s.decoding.eft import eft, eft_logprobs
from w2s.errors import W2SError
from w2s.evaluate.config import parse_config
from w2s.evaluate.report import summarize, write_report
from w2s.evaluate.run import run_eval
from w2s.evaluate.store import ResultStore, read_rows, row_key
from w2s.params import EFTParams, SamplingParams

ZOO = {"base": "zoo:base", "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}}


def config(tmp_path: Path, methods: list, **extra) -> dict:
    return {"name": "t", "task": "sentiment", **ZOO, "prompts": 3, "seeds": [0, 1],
            "sampling": {"max_new_tokens": 8, "temperature": 0.7}, "batch_size": 32,
            "methods": methods, **extra}


def parse(tmp_path: Path, data: dict):
    return parse_config(data, tmp_path / "cfg.yaml")


# ------------------------------------------------------------------ configs
def test_sweep_expands_lists_into_labelled_points(tmp_path):
    cfg = parse(tmp_path, config(tmp_path, [
        "sample", {"method": "bon", "n": [2, 4]}, {"method": "cbs", "w": [1, 2], "k": 2, "l": 3},
        {"method": "sample", "model": "tuned", "label": "tuned alone"},
        {"method": "eft", "beta": [0.5], "label": "proxy", "temperature": [0.7, 1.0]}]))
    labels = [m.label for m in cfg.methods]
    assert labels == ["sample", "bon(n=2)", "bon(n=4)", "cbs(w=1,k=2,l=3)", "cbs(w=2,k=2,l=3)",
                      "tuned alone", "proxy (temperature=0.7)", "proxy (temperature=1.0)"]
    assert [m.params.n for m in cfg.methods[1:3]] == [2, 4]
    assert cfg.methods[-1].sampling.temperature == 1.0 and cfg.methods[-1].params.beta == 0.5
    assert len({m.hash for m in cfg.methods}) == len(cfg.methods)
    # the hash is a function of the settings, not of the order or the label
    again = parse(tmp_path, config(tmp_path, [{"method": "bon", "n": 4, "label": "x"}]))
    assert again.methods[0].hash == cfg.methods[2].hash
    changed = parse(tmp_path, config(tmp_path, [{"method": "bon", "n": 4}],
                                     sampling={"max_new_tokens": 9}))
    assert changed.methods[0].hash != cfg.methods[2].hash


def test_a_folder_made_before_a_new_field_still_resumes(tmp_path):
    """Method hashes are pinned (folders written since 2026-12 resume), and a sampling field or
    knob added to params.py enters a hash only when set off its default."""
    import dataclasses

    from w2s.evaluate.config import hashed

    data = {"task": "sentiment", **ZOO, "budgets": [4],
            "sampling": {"max_new_tokens": 10, "stop": ["."]},
            "methods": ["sample", {"method": "cbs", "k": 2, "l": 3},
                        {"method": "treebon", "per_token": False}, "eft"]}
    cfg = parse_config(data, Path("/tmp/pin.yaml"))
    assert [(m.label, m.hash) for m in cfg.methods] == [  # the shipped zoo's fingerprints
        ("sample", "042b80c70083"), ("cbs(k=2,l=3)@4x", "aad2d91fa245"),
        ("treebon(per_token=False)@4x", "08d17738e801"), ("eft", "35f012c936a0")]
    grown = dataclasses.make_dataclass("SamplingParams", [("min_p", float, 0.0)],
                                       bases=(SamplingParams,), frozen=True)
    grown.__module__ = "w2s.params"  # as if min_p were added to params.py
    assert hashed(grown(max_new_tokens=10)) == hashed(SamplingParams(max_new_tokens=10))
    assert hashed(grown(min_p=0.1)) == {**hashed(SamplingParams()), "min_p": 0.1}
    import w2s.params as P

    for name, stable in P.STABLE_FIELDS.items():  # no stale name: each is a field there
        assert stable <= {f.name for f in dataclasses.fields(getattr(P, name))}, name


@pytest.mark.parametrize("bad, message", [
    ({"methods": [{"method": "beam"}]}, "unknown method 'beam'"),
    ({"methods": [{"method": "bon", "n": -3}]}, "n must be >= 1, got -3"),
    ({"methods": [{"method": "cbs", "width": 4}]}, "unknown option(s) for cbs: width"),
    ({"base": "./no/such/model"}, "model './no/such/model' does not exist"),
    ({"base": "zoo:huge"}, "no zoo model 'zoo:huge'"),
    ({"guide": {"tuned": "zoo:tuned"}}, "needs both tuned and untuned"),
    ({"guide": None, "methods": ["cbs"]}, "cbs needs a guide"),
    ({"seeds": 0}, "seeds must be a count from 1 to 10000"),
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"methods": []}, "methods must be a non-empty list"),
    ({"sampling": {"temperature": -1}}, "temperature must be >= 0"),
    ({"sampling": {"temperature": "hot"}}, "temperature must be a number, got 'hot'"),
    ({"sampling": {"stop": 5}}, "stop must be a string or a list of strings"),
    ({"sampling": {"ignore_eos": "no"}}, "ignore_eos must be true or false"),
    ({"methods": [{"method": "bon", "n": "16"}]}, "n must be an integer, got '16'"),
    ({"methods": [{"method": "sample", "label": 5}]}, "label must be a non-empty string"),
    ({"chat": "yes"}, "chat must be true or false"),
    ({"dtype": "int3"}, "dtype must be one of"),
    ({"prompts": True}, "prompts must be a count"),
    ({"seeds": [0, 0]}, "seeds repeat"),
    ({"methods": ["sample", {"method": "sample", "label": "base"}]}, "are the same method"),
    ({"methods": [{"method": "eft", "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned",
                                               "reward_model": "zoo:base"}}]}, "no reward_model"),
    ({"methods": [{"method": "cbs", "guide": {"tuned": "./t", "untuned": "./u"}}]},
     "methods[1] guide.tuned"),
])
def test_bad_configs_say_what_is_wrong(tmp_path, bad, message):
    data = config(tmp_path, ["sample"])
    data.update(bad)
    with pytest.raises(W2SError) as e:
        parse(tmp_path, data)
    assert message in str(e.value)


def test_model_paths_are_relative_to_the_config_and_fingerprinted(tmp_path):
    import shutil

    from w2s.zoo import ZOO_DIR

    for role in ("tuned", "untuned"):
        shutil.copytree(ZOO_DIR / role, tmp_path / "m" / role)
    data = config(tmp_path, [{"method": "cbs", "guide": {"tuned": "./m/tuned",
                                                          "untuned": "./m/untuned"}}])
    first = parse(tmp_path, data).methods[0]
    assert first.guide.to_dict() == {"tuned": "./m/tuned", "untuned": "./m/untuned"}
    cfg = json.loads((tmp_path / "m" / "tuned" / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-5 if cfg.get("rms_norm_eps") != 1e-5 else 1e-6  # a "rebuilt" model
    (tmp_path / "m" / "tuned" / "config.json").write_text(json.dumps(cfg))
    assert parse(tmp_path, data).methods[0].hash != first.hash


def test_bad_config_files_are_one_line_errors(tmp_path):
    runner = CliRunner()
    (tmp_path / "broken.yaml").write_text("task: [sentiment\n")
    (tmp_path / "neg.toml").write_text('task = "sentiment"\nbase = "zoo:base"\n'
                                       '[guide]\ntuned = "zoo:tuned"\nuntuned = "zoo:untuned"\n'
                                       '[[methods]]\nmethod = "bon"\nn = -2\n')
    (tmp_path / "task.yaml").write_text("task: poetry\nbase: zoo:base\nmethods: [sample]\n")
    cases = [("broken.yaml", "not valid YAML"), ("neg.toml", "n must be >= 1"),
             ("task.yaml", "unknown task 'poetry'"), ("nothing.yaml", "is not a file")]
    for name, message in cases:
        res = runner.invoke(cli, ["eval", str(tmp_path / name), "--out", str(tmp_path / "o")])
        assert res.exit_code == 2, res.output
        assert res.output.count("\n") == 1 and message in res.output, res.output


# ------------------------------------------------------------------ KL metrics
def test_selection_count_bound_is_rounds_times_log_wk(base, pair):
    from w2s import SearchParams, cbs

    sp = SamplingParams(max_new_tokens=7, ignore_eos=True, seed=2)
    for r in cbs(base, pair, ["the cat", "a dog"], SearchParams(2, 2, 3), sp):
        assert r.stats["rounds"] == 3  # chunks of 3, 3 and 1 tokens
        assert r.stats["kl_bound"] == pytest.approx(3 * math.log(4))
    assert selection_kl_bound(2, 6) == pytest.approx(2 * math.log(6))


def test_eft_kl_is_the_exact_per_token_kl_along_the_path(base, pair):
    sampling = SamplingParams(max_new_tokens=6, temperature=0.8, seed=3, ignore_eos=True)
    prompts = ["the cat", "a dog sat on"]
    [r0, _] = eft(base, pair, prompts, EFTParams(beta=0.0), sampling)
    assert abs(r0.stats["kl"]) < 1e-9  # beta = 0 is base sampling
    results = eft(base, pair, prompts, EFTParams(beta=1.5), sampling)
    for p, r in zip(prompts, results):
        ids = [r.token_ids]
        lg = [m.target_logits([m.encode_prompt(p)], ids)[0]
              for m in (base, pair.tuned, pair.untuned)]
        v = min(x.shape[-1] for x in lg)
        q = (eft_logprobs(*(x[:, :v] for x in lg), 1.5).double() / 0.8).log_softmax(-1)
        pb = (lg[0][:, :v].double() / 0.8).log_softmax(-1)
        want = float((q.exp() * (q - pb)).sum())
        assert want > 0.01
        assert r.stats["kl"] == pytest.approx(want, rel=1e-3)


def test_path_kl_of_a_model_to_itself_is_zero(base):
    from w2s.evaluate.metrics import path_kl

    assert path_kl(base, base, ["the cat"], [[5, 6, 7]], 0.7) == [pytest.approx(0.0, abs=1e-9)]


# ------------------------------------------------------------------ runs
SMALL = ["sample", {"method": "sample", "model": "tuned"}, {"method": "bon", "n": 2},
         {"method": "eft", "beta": 1.0}, {"method": "cbs", "w": 2, "k": 2, "l": 4}]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = parse_config(config(out, SMALL), out / "cfg.yaml")
    return cfg, out, run_eval(cfg, out, show_progress=False)


def test_a_small_sweep_runs_end_to_end(small_run):
    cfg, out, rows = small_run
    assert len(rows) == 5 * 3 * 2 == len(read_rows(out / "results.jsonl"))
    assert len({row_key(r) for r in rows}) == len(rows)
    by = {m.label: [r for r in rows if r["method"] == m.label] for m in cfg.methods}
    assert all(r["kl"] == 0.0 and r["kl_kind"] == "exact" for r in by["sample"])
    assert all(r["kl"] == pytest.approx(math.log(2) - 0.5) for r in by["bon(n=2)"])
    for r in by["cbs(w=2,k=2,l=4)"]:
        rounds = r["stats"]["rounds"]
        assert r["kl_kind"] == "bound" and 1 <= rounds <= 2
        assert r["kl"] == pytest.approx(rounds * math.log(4))
    assert all(r["kl"] > 0 and r["small_tokens"] > 0 and r["base_tokens"] == 0
               for r in by["sample[tuned]"])
    for r in rows:
        assert set(r["gold"]) == {"vader", "textblob"} and -1 <= r["gold"]["vader"] <= 1
        assert r["base_logp"] <= 0 and r["guide_tokens"] > 0 and r["wall_time_s"] > 0
    # rows are deterministic functions of (prompt, seed, knobs): seeds differ, reruns agree
    s = by["sample"]
    assert [r["response"] for r in s if r["seed"] == 0] != [r["response"] for r in s if r["seed"] == 1]


def test_row_metrics_equal_an_independent_recomputation(small_run):
    """Each row's base log-likelihood and KL, recomputed from plain transformers forward passes
    on that row's own prompt and response: a value written to the wrong row, a KL of the wrong
    direction or at the wrong temperature, or another model's text on a different footing
    (its EOS), all fail here."""
    import reference

    import w2s
    from w2s.zoo import ZOO_DIR

    _, _, rows = small_run
    paths = {role: str(ZOO_DIR / role) for role in ("base", "tuned", "untuned")}
    base = w2s.HFModel.load(paths["base"])
    tuned = w2s.HFModel.load(paths["tuned"])
    pair = w2s.PairGuide(tuned, w2s.HFModel.load(paths["untuned"]))
    base_tok = reference.load(paths["base"])[0]
    checked = 0
    for r in rows:
        sp = SamplingParams.from_dict(r["sampling"])
        p = r["prompt"]
        if r["method"] == "sample":
            [res] = w2s.sample(base, None, [p], sp)
            ids = res.token_ids
        elif r["method"] == "eft(beta=1.0)":
            [res] = eft(base, pair, [p], EFTParams(1.0), sp)
            ids = res.token_ids
        elif r["method"] == "sample[tuned]":
            [res] = w2s.sample(tuned, None, [p], sp)
            ids = list(base_tok(res.text, add_special_tokens=False)["input_ids"])
            ids += [base_tok.eos_token_id] if res.finished else []  # the tuned model's EOS
            # KL(tuned || base) along the tuned model's own tokens, at the sampling temperature
            lt, lb = (reference.next_token_logits(paths[m], p, res.token_ids)
                      for m in ("tuned", "base"))
            n, v = len(res.token_ids), min(lt.shape[-1], lb.shape[-1])
            want_kl = reference.kl_sum(lt[:n, :v], lb[:n, :v], sp.temperature)
            assert r["kl"] == pytest.approx(want_kl, rel=1e-4)
        else:
            continue
        assert res.text == r["response"] and res.finished == r["finished"]
        assert r["response_tokens"] == len(ids)
        want = reference.logprob_sum(paths["base"], p, ids)
        assert r["base_logp"] == pytest.approx(want, abs=1e-3)
        assert r["base_logp_per_token"] == pytest.approx(want / len(ids), abs=1e-4)
        checked += 1
    assert checked == 3 * 3 * 2


def test_another_models_responses_end_with_the_bases_eos_only_where_they_ended_on_eos(
        base, xpair):
    """A small model's text goes to the base's tokens; where the small model ended on its own
    EOS (id 3 in the cross-vocabulary tokenizer), the base's EOS (id 2) closes it, so its
    log-likelihood is on the same footing as the base's own samples. A stop string's end or a
    length cut adds nothing."""
    from types import SimpleNamespace

    from w2s.evaluate.run import _in_base_tokens

    other = xpair.tuned
    eos, other_eos = base.tokenizer.eos_token_id, other.tokenizer.eos_token_id
    assert eos != other_eos
    text = " a delight"
    ids = other.encode_response(text)
    results = [SimpleNamespace(text=text, finished=True, token_ids=ids + [other_eos]),
               SimpleNamespace(text=text, finished=True, token_ids=ids),  # a stop string
               SimpleNamespace(text=text, finished=False, token_ids=ids)]
    mine = base.encode_response(text)
    assert _in_base_tokens(base, other, results) == [mine + [eos], mine, mine]


def test_rerun_skips_what_is_done_and_grows_with_limit(small_run, tmp_path):
    cfg, out, rows = small_run
    before = (out / "results.jsonl").read_bytes()
    assert run_eval(cfg, out, limit=2, show_progress=False)  # all done: nothing appended
    assert (out / "results.jsonl").read_bytes() == before
    sub = tmp_path / "sub"
    run_eval(cfg, sub, limit=2, seeds=[0], show_progress=False)
    first = (sub / "results.jsonl").read_text().splitlines()
    assert len(first) == 5 * 2
    grown = run_eval(cfg, sub, limit=3, seeds=[0], show_progress=False)
    lines = (sub / "results.jsonl").read_text().splitlines()
    assert lines[: len(first)] == first and len(lines) == 5 * 3 == len(grown)
    # resumed rows (other batch compositions) equal the uninterrupted run's, byte for byte
    full = {row_key(r): r["response"] for r in rows}
    assert all(full[row_key(json.loads(x))] == json.loads(x)["response"] for x in lines)


def test_changed_settings_never_mix_with_old_rows(small_run, tmp_path):
    cfg, out, _ = small_run
    other = parse_config(config(out, SMALL, sampling={"max_new_tokens": 9}), out / "cfg.yaml")
    with pytest.raises(W2SError, match="made with other settings"):
        run_eval(other, out, show_progress=False)


def test_renamed_labels_reuse_rows_and_changed_prompts_are_refused(small_run, tmp_path):
    import shutil

    cfg, out, rows = small_run
    shutil.copy(out / "results.jsonl", tmp_path / "results.jsonl")
    renamed = SMALL[:2] + [{"method": "bon", "n": 2, "label": "best of two"}] + SMALL[3:]
    cfg2 = parse_config(config(out, renamed), out / "cfg.yaml")
    again = run_eval(cfg2, tmp_path, show_progress=False)
    assert (tmp_path / "results.jsonl").read_bytes() == (out / "results.jsonl").read_bytes()
    assert sum(r["method"] == "best of two" for r in again) == 6
    prompts = tmp_path / "p.jsonl"
    own = parse_config(config(tmp_path, ["sample"], task={"name": "sentiment", "path": "p.jsonl"},
                              seeds=[0]), tmp_path / "cfg.yaml")
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in ["a", "b", "c"]))
    run_eval(own, tmp_path / "own", show_progress=False)
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in ["x", "b", "c"]))  # edited
    with pytest.raises(W2SError, match="different prompt #0"):
        run_eval(own, tmp_path / "own", show_progress=False)


def test_a_torn_last_line_is_dropped_and_redone(small_run, tmp_path):
    cfg, out, rows = small_run
    path = tmp_path / "results.jsonl"
    good = [x for x in (out / "results.jsonl").read_text().splitlines()]
    path.write_text("\n".join(good[:-1]) + "\n" + good[-1][: len(good[-1]) // 2])  # killed mid-write
    assert len(read_rows(path)) == len(good) - 1
    store = ResultStore(path)
    assert len(store.rows) == len(good) - 1 and path.read_text().endswith("\n")
    again = run_eval(cfg, tmp_path, show_progress=False)
    assert sorted(map(row_key, again)) == sorted(map(row_key, rows))
    assert len(path.read_text().splitlines()) == len(good)


def test_report_numbers_equal_a_direct_computation(small_run, tmp_path):
    _, out, _ = small_run
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    paths = write_report(rows, tmp_path)
    summary = {s["method"]: s for s in paths["summary"]}
    for label in {r["method"] for r in rows}:
        sel = [r for r in rows if r["method"] == label]
        # prompts are the independent samples: average each prompt's seeds, then over prompts
        g = [statistics.fmean(r["gold"]["vader"] for r in sel if r["prompt_index"] == i)
             for i in range(3)]
        mean, se = summary[label]["gold"]["vader"]
        assert mean == pytest.approx(sum(g) / 3)
        assert mean == pytest.approx(statistics.fmean(r["gold"]["vader"] for r in sel))
        assert se == pytest.approx(statistics.stdev(g) / math.sqrt(3))
        assert summary[label]["kl"][0] == pytest.approx(statistics.fmean(r["kl"] for r in sel))
        assert summary[label]["rows"] == len(sel) == 6
        assert f"{mean:+.3f} ± {se:.3f}" in paths["markdown"].read_text()
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(
        json.dumps(paths["summary"]))
    import matplotlib.image as mpimg

    for name in ("gold_vs_kl.png", "gold_vs_compute.png", "gold_bars.png"):
        img = mpimg.imread(tmp_path / name)
        assert img.shape[0] > 200 and img.shape[1] > 200 and float(img.std()) > 0.05, name


def test_report_skips_missing_golds_and_refuses_foreign_rows(tmp_path):
    row = {"method": "a", "seed": 0, "prompt_index": 0, "gold": {"x": -0.5}, "kl": 0.0,
           "base_logp_per_token": -3.0, "base_tokens": 5, "guide_tokens": 5, "wall_time_s": 0.1}
    rows = [row, {**row, "method": "b", "gold": {}}]
    summary = write_report(rows, tmp_path)["summary"]
    assert summary[1]["gold"] == {} and (tmp_path / "gold_bars.png").stat().st_size > 0
    with pytest.raises(W2SError, match="row 1 lacks gold"):
        write_report([{k: v for k, v in row.items() if k != "gold"}], tmp_path)


def test_report_cli(small_run, tmp_path):
    _, out, _ = small_run
    res = CliRunner().invoke(cli, ["report", str(out / "results.jsonl"), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "bon(n=2)" in res.output and (tmp_path / "gold_vs_kl.png").stat().st_size > 10_000
    res = CliRunner().invoke(cli, ["report", str(out / "results.jsonl"), "--gold", "nope"])
    assert res.exit_code == 2 and "no gold scorer 'nope'" in res.output
    assert summarize([]) == []


# ------------------------------------------------------------------ other tasks
def test_instructions_task_writes_alpaca_eval_outputs(tmp_path):
    (tmp_path / "inst.json").write_text(json.dumps([
        {"instruction": "Write a review of a film", "input": ""},
        {"instruction": "Describe the plot", "input": "A heist movie"}]))
    data = config(tmp_path, ["sample", {"method": "bon", "n": 2}],
                  task={"name": "instructions", "path": "inst.json"}, seeds=1)
    cfg = parse(tmp_path, data)
    rows = run_eval(cfg, tmp_path / "out", show_progress=False)
    assert rows[1]["prompt"] == "Describe the plot\n\nA heist movie"
    assert all(r["gold"] == {} for r in rows)
    paths = write_report(rows, tmp_path / "out")
    assert [p.name for p in paths["alpaca_eval"]] == ["sample.json", "bon_n=2.json"]
    outputs = json.loads(paths["alpaca_eval"][1].read_text())
    assert [set(o) for o in outputs] == [{"instruction", "output", "generator"}] * 2
    assert outputs[0]["generator"] == "bon(n=2)"
    data["task"] = {"name": "instructions", "dataset": "tatsu-lab/alpaca_eval"}
    # one line either way: without the datasets package (install it), or offline (no hub)
    with pytest.raises(W2SError, match="datasets|could not load dataset 'tatsu-lab/alpaca_eval'"):
        run_eval(parse(tmp_path, data), tmp_path / "o2", show_progress=False)


def test_summarization_with_a_reward_model_as_gold(tmp_path, tiny_paths):
    from w2s import RewardModelGuide

    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"document": d}) for d in
                                                   ["the cat sat on the mat all day",
                                                    "a dog ran in the park"]) + "\n")
    data = {"task": {"name": "summarization", "path": "docs.jsonl",
                     "gold": [{"model": tiny_paths["reward"], "name": "rm"}]},
            "base": tiny_paths["base"],
            "guide": {"tuned": tiny_paths["tuned"], "untuned": tiny_paths["untuned"]},
            "sampling": {"max_new_tokens": 5}, "methods": [{"method": "bon", "n": 2}]}
    rows = run_eval(parse(tmp_path, data), tmp_path / "out", show_progress=False)
    rm = RewardModelGuide.load(tiny_paths["reward"])
    want = rm.score([r["prompt"] for r in rows], [r["response"] for r in rows])
    assert rows[0]["prompt"] == "the cat sat on the mat all day\nTL;DR:"
    assert [r["gold"]["rm"] for r in rows] == pytest.approx(want.tolist(), abs=1e-5)
    del data["task"]["gold"]
    with pytest.raises(W2SError, match="needs a gold reward model"):
        run_eval(parse(tmp_path, data), tmp_path / "o2", show_progress=False)


def test_shipped_configs_parse():
    from w2s.configfile import find_config, read_config_file
    from w2s.evaluate.config import SHIPPED, load_config

    cfg = load_config("sentiment")
    assert cfg.prompts == 64 and cfg.seeds == [0, 1, 2]
    assert {"base sampling", "bon(n=16)", "bon(n=32)", "eft(beta=1.0)", "cbs(w=4,k=4,l=5)"} <= {
        m.label for m in cfg.methods}
    for name in ("instructions", "instructions-70b", "summarization"):  # real models named:
        assert read_config_file(find_config(name, SHIPPED))["methods"]  # they parse as data
    assert (SHIPPED / "instructions.yaml").is_file()
    inst = read_config_file(find_config("instructions", SHIPPED))
    assert inst["sampling"]["max_new_tokens"] == 2048
    assert {"method": "cbs", "w": 2, "k": 2, "l": 30} in inst["methods"]
    big = read_config_file(find_config("instructions-70b", SHIPPED))
    assert big["device_map"] == "balanced_low_0" and big["guide_device"] == "cuda:0"


def test_the_gpu_configs_fit_their_hardware_by_the_memory_plans_arithmetic():
    """What each GPU config's comment claims, from the models' published shapes (bf16): the
    7 B config on one 24 GB card, the 70 B one on four 80 GB cards."""
    gib, kib = 2**30, 2**10

    def kv_per_token(layers: int, kv_heads: int, head_dim: int) -> int:
        return layers * 2 * kv_heads * head_dim * 2

    qwen7b = kv_per_token(28, 4, 128)  # Qwen2.5-7B: 28 layers, 4 KV heads of 128
    llama70b = kv_per_token(80, 8, 128)  # Llama-3-70B: 80 layers, 8 KV heads of 128
    assert (qwen7b // kib, llama70b // kib) == (56, 320)
    rows, tokens = 16, 2048 + 300  # batch_size rows of a long AlpacaEval prompt + the answer
    one_gpu = 7.6e9 * 2 + 2 * 0.5e9 * 2 + rows * tokens * qwen7b
    assert one_gpu / gib < 0.9 * 24
    many = 70.6e9 * 2 + 2 * 7.2e9 * 2 + rows * tokens * llama70b
    assert 2 * 80 < many / gib < 0.9 * 4 * 80


# ------------------------------------------------------------------ a real kill
@pytest.mark.slow
def test_a_killed_run_resumes_without_losing_or_duplicating_rows(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    data = config(tmp_path, ["sample", {"method": "cbs", "w": 2, "k": 2, "l": 4}],
                  prompts=24, seeds=[0], batch_size=4)  # one prompt per cbs call: many appends
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "w2s.cli", "eval", str(tmp_path / "cfg.yaml"), "--out", str(out),
           "--no-progress"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once some cbs rows are on disk, mid-run
        if results.exists() and '"cbs(' in results.read_text():
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_rows(results)
    assert 24 < len(before) < 48, "the kill should land mid-run"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = read_rows(results)
    keys = [row_key(r) for r in after]
    assert len(keys) == len(set(keys)) == 48  # nothing lost, nothing twice
    assert after[: len(before)] == before  # rows written before the kill are kept as they were
    # and the resumed rows equal an uninterrupted run's
    clean = run_eval(parse(tmp_path, data), tmp_path / "clean", show_progress=False)
    want = {row_key(r): r["response"] for r in clean}
    assert {row_key(r): r["response"] for r in after} == want


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    import yaml

    data = config(tmp_path, ["sample", {"method": "cbs", "w": 2, "k": 2, "l": 4}],
                  prompts=24, seeds=[0], batch_size=4)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    results = tmp_path / "out" / "results.jsonl"
    # as from a terminal: a suite started in the background (`cmd &`, nohup) hands its children
    # SIGINT ignored, and Python then keeps ignoring it, so the child gets Ctrl-C's default back
    proc = subprocess.Popen([sys.executable, "-m", "w2s.cli", "eval", str(tmp_path / "cfg.yaml"),
                             "--out", str(tmp_path / "out"), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (results.exists() and results.stat().st_size):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "run the same command again to resume" in err
    assert read_rows(results)


# ------------------------------------------------------------------ one writer, no double counts
def test_a_second_eval_on_the_same_folder_is_refused_while_the_first_runs(tmp_path):
    from w2s.evaluate.run import exclusive

    lock = tmp_path / "results.jsonl.lock"
    with exclusive(lock):
        with pytest.raises(W2SError, match=r"another w2s eval \(pid \d+\) is writing to"):
            with exclusive(lock):
                pass
    with exclusive(lock):  # released: the next run may go
        pass


def test_the_report_counts_a_duplicated_row_once(small_run, tmp_path):
    cfg, out, rows = small_run
    once = write_report(rows, tmp_path / "a")
    twice = write_report(rows + rows[:5], tmp_path / "b")
    assert twice["duplicates"] == 5 and once["duplicates"] == 0
    assert twice["summary"] == once["summary"]


@pytest.mark.slow
def test_a_second_eval_process_on_the_same_folder_is_refused(tmp_path):
    import subprocess
    import sys
    import time

    import yaml

    data = config(tmp_path, [{"method": "cbs", "w": 2, "k": 2, "l": 4}], prompts=24,
                  seeds=[0], batch_size=4)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "w2s.cli", "eval", str(tmp_path / "cfg.yaml"), "--out", str(out),
           "--no-progress"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while not (results.exists() and results.read_text()) and time.time() < deadline:
        time.sleep(0.05)  # the first run is writing
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.wait(timeout=300) == 0
    assert second.returncode == 2
    assert "another w2s eval (pid" in second.stderr and len(second.stderr.splitlines()) == 1
    keys = [row_key(r) for r in read_rows(results)]
    assert len(keys) == len(set(keys)) == 24  # nothing written twice


def test_nudging_rows_have_the_base_loglik_of_their_text(tmp_path):
    """Nudging's response is written partly by the small model, so it carries no base token
    ids; its row must still hold the base's log-likelihood of the text (in the base's tokens),
    not 0 over 0 tokens (a bug: the table showed nan)."""
    import reference

    from w2s.zoo import ZOO_DIR

    out = tmp_path / "run"
    cfg = parse(tmp_path, config(tmp_path, [{"method": "nudging", "gamma": 0.4}], prompts=2,
                                 seeds=[0]))
    rows = run_eval(cfg, out, show_progress=False)
    base_tok = reference.load(str(ZOO_DIR / "base"))[0]
    assert len(rows) == 2
    for r in rows:
        ids = list(base_tok(r["response"], add_special_tokens=False)["input_ids"])
        assert ids and r["response_tokens"] == len(ids)
        want = reference.logprob_sum(str(ZOO_DIR / "base"), r["prompt"], ids)
        assert r["base_logp"] == pytest.approx(want, abs=1e-3)
        assert r["base_logp_per_token"] == pytest.approx(want / len(ids), abs=1e-4)


def test_the_printed_table_keeps_each_method_on_one_line():
    """A long method label ("cbs (4,4,5) cross-vocab") once wrapped in the demo's table and read
    as an extra row; the method column does not wrap, even at 160 columns (a terminal of that width)."""
    import io

    from rich.console import Console

    from w2s.evaluate.report import rich_table

    row = {"gold": {"vader": (0.7, 0.02), "textblob": (0.3, 0.01)}, "kl": (27.41, 0.0),
           "kl_kind": "bound", "base_logp_per_token": -3.47, "words": 36.6, "distinct_2": 0.58,
           "base_tokens": 710.0, "guide_tokens": 1420.0, "wall_time_s": 1.234, "rows": 192}
    summary = [{**row, "method": m} for m in ("base sampling", "cbs (4,4,5) cross-vocab")]
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(rich_table(summary, "w2s demo"))
    lines = console.export_text().splitlines()
    assert any("cbs (4,4,5) cross-vocab" in line for line in lines), "\n".join(lines)
    assert sum(line.startswith("│") for line in lines) == 2  # two rows, no continuation line


def test_off_a_terminal_the_table_is_as_wide_as_its_rows():
    """Off a terminal (a log, a pipe, summary.txt) no cell wraps: at a fixed 160 columns the
    real demo's six methods, with "nudging (gamma=0.1) (small wrote 17%)" and a KL of 128.92 ±
    2.30, wrapped every '±' cell onto a second line."""
    import io

    from rich.console import Console

    from w2s.evaluate.report import rich_table, unwrapped_width

    row = {"gold": {"vader": (0.397, 0.039), "textblob": (0.128, 0.020)}, "kl": (128.92, 2.30),
           "kl_kind": "exact", "base_logp_per_token": -1.86, "words": 35.4, "distinct_2": 0.79,
           "base_tokens": 791.0, "guide_tokens": 1901.0, "wall_time_s": 2.875, "rows": 128}
    labels = ["base sampling", "small tuned alone", "best-of-16", "cbs (4,4,5)", "eft (beta=1)",
              "nudging (gamma=0.1) (small wrote 17%)"]
    table = rich_table([{**row, "method": m} for m in labels], "w2s demo --real")

    def body_lines(width: int) -> int:
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(table)
        return sum(line.startswith("│") for line in console.export_text().splitlines())

    assert body_lines(160) > len(labels)  # what the fixed width did
    assert body_lines(unwrapped_width(table)) == len(labels)
    assert unwrapped_width(rich_table([{**row, "method": "x"}], "t")) >= 80


def test_the_writer_lock_leaves_no_file_and_a_late_opener_does_not_share_it(tmp_path):
    """One writer per results folder (an OS lock), and no ``results.jsonl.lock`` left in the
    folder after the run (a newcomer found one after ``w2s demo --quick``). Removing the file
    on release must not let two writers in: one that opened the file just before it was
    removed gets the lock of a file no longer there, and must see that and take the new one."""
    import fcntl

    from w2s.evaluate.run import _still_there, exclusive

    lock = tmp_path / "results.jsonl.lock"
    with exclusive(lock):
        assert lock.read_text().startswith("pid ")
        late = open(lock, "a+")  # noqa: SIM115 - opened before the holder lets go
        with pytest.raises(W2SError, match="another w2s eval"), exclusive(lock):
            pass
    assert not lock.exists()
    fcntl.flock(late, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old file's lock is free now...
    assert not _still_there(late, lock)  # ...but it is no longer the folder's lock
    with exclusive(lock):  # the next writer is not kept out by the stale holder
        assert lock.exists() and _still_there(open(lock), lock)
    late.close()
    assert list(tmp_path.iterdir()) == []
