"""The memory plan a search makes before its first forward pass: its arithmetic on the zoo's
base (every term from the config, by hand), the refusals naming the knob to lower, the plan
shown on stderr, and what ``w2s generate`` says of each answer (seed, tokens, time)."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

import w2s
from w2s.cli import cli
from w2s.errors import FieldError
from w2s.models.memory import GIB, MemoryPlan
from w2s.zoo import ZOO_DIR

Z = ["--base", "zoo:base", "--tuned", "zoo:tuned", "--untuned", "zoo:untuned"]
G = ["generate", *Z, "--method", "cbs", "--w", "2", "--k", "2", "--l", "3", "--prompt",
     "The movie was", "--prompt", "A film", "--max-new-tokens", "6", "--seed", "1"]


@pytest.fixture(scope="module")
def base():
    return w2s.HFModel.load(str(ZOO_DIR / "base"))


def test_the_plan_is_the_configs_arithmetic(base):
    cfg = json.loads((ZOO_DIR / "base" / "config.json").read_text())
    per_token = cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * cfg["head_dim"] * 4
    assert per_token == 12288  # fp32 on the CPU: 6 layers x K and V x 4 heads x 64 x 4 bytes
    plan = base.plan_memory(16, 20)
    assert plan.kv_cache == 16 * 20 * per_token
    assert plan.logits == 16 * base.vocab_size * 4 * 4
    weights = sum(p.numel() * 4 for p in base.model.parameters()) + \
        sum(b.numel() * b.element_size() for b in base.model.buffers())
    assert plan.weights == weights and plan.total == weights + plan.kv_cache + plan.logits
    assert plan.device == "cpu" and plan.free is not None and plan.free > 0


def test_a_plan_over_the_free_memory_or_the_limit_names_the_knob_to_lower():
    plan = MemoryPlan("cuda:0", 64, 1000, 2 * GIB, 3 * GIB, GIB, free=4 * GIB)
    with pytest.raises(FieldError) as e:
        plan.check()
    assert str(e.value) == ("batch_size is too large here: 64 candidate rows x 1000 tokens need "
                            "about 4.0 GiB of KV cache and logits on cuda:0, but only 4.0 GiB is "
                            "free; lower it, W*K (or N) or max_new_tokens")
    MemoryPlan("cuda:0", 64, 1000, 2 * GIB, GIB, GIB // 2, free=4 * GIB).check()  # 1.5 < 3.6
    with pytest.raises(FieldError, match=r"^batch_size is too large for the memory limit: memory "
                                         r"plan on cuda:0: weights 2\.00 GiB \+ KV cache 1\.00 "
                                         r"GiB \(64 rows x 1000 tokens\) \+ logits 0\.50 GiB = "
                                         r"3\.50 GiB; 40\.00 GiB free, limit 3\.00 GiB; lower it"):
        MemoryPlan("cuda:0", 64, 1000, 2 * GIB, GIB, GIB // 2, 40 * GIB, limit=3 * GIB).check()
    with pytest.raises(FieldError) as e:
        MemoryPlan("cpu", 1, 1, 2 * GIB, 0, 0, None, limit=GIB).check()
    assert str(e.value) == "memory_limit 1.00 GiB is below the base's weights alone (2.00 GiB)"


def test_the_cli_shows_the_stages_and_the_plan_off_a_terminal():
    r = CliRunner().invoke(cli, G)
    assert r.exit_code == 0, r.output
    lines = r.stderr.splitlines()
    assert all(re.match(r"^w2s: \[ *\d+\.\d s\] ", x) for x in lines), lines
    said = [x.split("] ", 1)[1] for x in lines]
    assert said[:4] == ["loading the base zoo:base", "loading a guide model zoo:tuned",
                        "loading a guide model zoo:untuned", "decoding 2 prompts with cbs"]
    assert re.fullmatch(r"memory plan on cpu: weights 0\.02 GiB \+ KV cache 0\.00 GiB \(8 rows x "
                        r"\d+ tokens\) \+ logits 0\.00 GiB = 0\.02 GiB; [\d.]+ GiB free",
                        said[4]), said
    assert CliRunner().invoke(cli, [*G, "--quiet"]).stderr == ""


def test_each_answer_says_its_seed_tokens_cost_and_time_and_the_seed_repeats_it():
    r = CliRunner().invoke(cli, [a for a in G if a not in ("--seed", "1")] + ["--quiet"])
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert len(out) == 4  # answer, details, answer, details
    m = re.fullmatch(r"   seed (\d+) · (\d+) tokens \((ended|cut at max-new-tokens)\) · (\d+) "
                     r"base tokens · \d+\.\d\d s for the batch of 2 prompts", out[1])
    assert m, out[1]
    again = CliRunner().invoke(cli, [*G[:-2], "--seed", m.group(1), "--quiet"])
    assert again.stdout.splitlines()[0] == out[0]


def test_json_names_the_batch_its_time_is_for():
    r = CliRunner().invoke(cli, [*G, "--json", "--quiet"])
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["cost"]["batch_prompts"] for x in rows] == [2, 2]
    assert rows[0]["cost"]["wall_time_s"] == rows[1]["cost"]["wall_time_s"] > 0


def test_a_memory_limit_is_checked_through_the_cli():
    r = CliRunner().invoke(cli, [*G, "--memory-limit", "0.001"])
    assert r.exit_code == 2
    assert r.stderr.splitlines()[-1] == ("error: --memory-limit 0.00 GiB is below the base's "
                                         "weights alone (0.02 GiB)")
    r = CliRunner().invoke(cli, [*G, "--memory-limit", "0.0235", "--quiet"])
    assert r.exit_code == 2 and r.stderr.startswith(
        "error: --batch-size is too large for the memory limit: memory plan on cpu"), r.stderr
    r = CliRunner().invoke(cli, [*G, "--memory-limit", "-1"])
    assert r.exit_code == 2 and r.stderr.strip() == ("error: --memory-limit must be a number of "
                                                     "GiB > 0, got -1.0")


def test_an_answer_two_models_wrote_says_the_small_models_share_not_a_token_count():
    """Nudging's and WSD's answers have no one token sequence: the line said "0 tokens"."""
    r = CliRunner().invoke(cli, ["generate", "--base", "zoo:base", "--tuned", "zoo:tuned",
                                 "--untuned", "zoo:untuned", "--method", "wsd", "--max-draft",
                                 "4", "--prompt", "The movie", "--max-new-tokens", "10",
                                 "--seed", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    details = r.stdout.splitlines()[1]
    assert re.fullmatch(r"   seed 1 · (ended|cut at max-new-tokens) · \d+ base tokens · the "
                        r"small model wrote \d+% · \d+\.\d\d s", details), details
