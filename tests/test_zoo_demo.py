"""The shipped zoo loads through plain transformers and generates; the demo runs end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

import w2s
from w2s.zoo import ZOO_DIR

ROLES = ["base", "tuned", "untuned", "xtuned", "xuntuned"]


@pytest.mark.parametrize("role", ROLES)
def test_zoo_model_loads_with_plain_from_pretrained_and_generates(role):
    folder = ZOO_DIR / role
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok("the movie was", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] > ids.shape[1]
    card = (folder / "README.md").read_text()
    assert "held-out perplexity" in card and "parameters" in card
    assert any(folder.glob("*.safetensors"))


def test_zoo_sizes_and_vocabularies():
    total = sum(f.stat().st_size for f in ZOO_DIR.rglob("*") if f.is_file())
    assert total <= 40 * 2**20
    cards = json.loads((ZOO_DIR / "build.json").read_text())["models"]
    assert 5e6 <= cards["base"]["parameters"] <= 15e6
    for small in ("tuned", "untuned", "xtuned", "xuntuned"):
        assert 0.5e6 <= cards[small]["parameters"] <= 3e6
    # the base is the stronger language model
    assert cards["base"]["held-out perplexity"] < cards["untuned"]["held-out perplexity"]
    a = AutoTokenizer.from_pretrained(ZOO_DIR / "base").get_vocab()
    b = AutoTokenizer.from_pretrained(ZOO_DIR / "xtuned").get_vocab()
    assert a == AutoTokenizer.from_pretrained(ZOO_DIR / "tuned").get_vocab()
    assert a != b and len(a) != len(b)


def test_tuned_model_is_more_positive_than_untuned():
    from w2s.tasks.sentiment import load_prompts, vader

    prompts = load_prompts(limit=16)
    sp = w2s.SamplingParams(max_new_tokens=30, seed=0)
    means = {}
    for role in ("tuned", "untuned"):
        m = w2s.HFModel.load(str(ZOO_DIR / role))
        texts = [r.text for r in w2s.sample(m, None, prompts, sp)]
        means[role] = sum(vader(texts)) / len(texts)
    assert means["tuned"] > means["untuned"] + 0.1


def test_gold_scorers_agree_on_obvious_cases():
    from w2s.tasks.sentiment import textblob, vader

    pos, neg = "a wonderful, moving and beautiful film.", "a terrible, boring and awful mess."
    assert vader([pos])[0] > 0.5 > -0.5 > vader([neg])[0]
    assert textblob([pos])[0] > 0 > textblob([neg])[0]


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "w2s.cli", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "160"})
    assert proc.returncode == 0, proc.stderr
    header = next(x for x in proc.stdout.splitlines() if "method" in x)
    for col in ("gold: vader", "gold: textblob", "KL from base", "base logp/token", "base tokens",
                "s/prompt"):
        assert col in header
    methods = ["base sampling", "small tuned alone", "best-of-16", "eft (beta=1)", "cbs (4,4,5)",
               "cbs (4,4,5) cross-vocab"]
    for m in methods:
        assert m in proc.stdout
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == len(methods) * 4  # 4 prompts x 1 seed
    assert {r["method"] for r in rows} == set(methods)
    for r in rows:
        assert -1 <= r["gold"]["vader"] <= 1 and -1 <= r["gold"]["textblob"] <= 1
        if r["method"] == "small tuned alone":  # samples the small model, not the base
            assert r["base_tokens"] == 0 and r["small_tokens"] >= 1
        else:
            assert r["base_tokens"] >= 1
    # the KL column holds the known values: 0 for base sampling, the bounds for the searches
    for r in rows:
        want = {"base sampling": 0.0, "best-of-16": math.log(16) - 15 / 16,
                "cbs (4,4,5)": r["stats"].get("rounds", 0) * math.log(16),
                "cbs (4,4,5) cross-vocab": r["stats"].get("rounds", 0) * math.log(16)}
        if r["method"] in want:
            assert r["kl"] == pytest.approx(want[r["method"]], abs=1e-9)
        if r["method"].startswith("cbs"):  # each round adds 5 tokens; the last, up to 5
            assert r["stats"]["rounds"] == math.ceil(r["response_tokens"] / 5)
    for name in ("gold_bars.png", "gold_vs_kl.png", "gold_vs_compute.png"):
        assert Path(out / name).stat().st_size > 10_000
    assert "gold: vader" in (out / "summary.txt").read_text()
    # rerunning resumes: nothing is redone, the table is printed again
    again = subprocess.run([sys.executable, "-m", "w2s.cli", "demo", "--quick", "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "cbs (4,4,5)" in again.stdout
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)


def test_demo_without_zoo_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "w2s.cli", "demo", "--quick", "--models",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "w2s zoo build" in proc.stderr


def test_base_loglik_matches_a_direct_forward_pass():
    import reference

    from w2s.evaluate.metrics import base_loglik

    path = str(ZOO_DIR / "base")
    base = w2s.HFModel.load(path)
    prompts = ["the movie was", "i hated"]
    ids = [base.encode_response(" a great film."),
           base.encode_response(" it") + [base.tokenizer.eos_token_id]]
    got = base_loglik(base, prompts, ids)  # one batch, rows of different lengths
    for g, p, x in zip(got, prompts, ids):
        assert g == pytest.approx(reference.logprob_sum(path, p, x), abs=1e-4) and g < 0


def test_from_pretrained_keywords_pass_through_and_the_device_is_auto():
    import inspect

    plain = w2s.HFModel.load("zoo:base")
    assert plain.model.config._attn_implementation != "eager"  # so the keyword shows
    eager = w2s.HFModel.load("zoo:base", attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager"
    assert w2s.HFModel.load("zoo:base", device_map="cpu").device.type == "cpu"
    with pytest.raises(w2s.W2SError, match="give the dtype as dtype="):
        w2s.HFModel.load("zoo:base", torch_dtype="float16")
    with pytest.raises(w2s.W2SError, match="revision names a hub commit, but .* local folder"):
        w2s.HFModel.load("zoo:base", revision="main")
    assert inspect.signature(w2s.HFModel.load).parameters["device"].default == "auto"
