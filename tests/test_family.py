"""The small family matched to a real pretrained base (w2s.zoo.family) and ``w2s demo --real``.

The build pipeline runs end to end on a tiny random base (real from_pretrained folders, real
sampling, real training and DPO), small enough for every test run; the real family around
SmolLM2 is tested where it has been built (``w2s zoo family``), else skipped with one line.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch

from w2s import W2SError
from w2s.evaluate.report import distinct_bigrams, paired_difference
from w2s.zoo.data import Corpus, clean
from w2s.zoo.family import (
    FamilyConfig,
    build_family,
    family_dir,
    openings,
    ranking_agreement,
    spearman,
    student,
)

REVIEWS = [
    "The movie was a delight from start to finish, with a warm story and great acting.",
    "I thought the film was boring and far too long; the plot made no sense at all.",
    "A wonderful cast, a clever script and a score that stays with you after the credits.",
    "The worst picture of the year: dull, loud and badly edited, a terrible waste.",
    "It is a charming, funny and moving story about a family that learns to love again.",
    "The director wastes a good idea on flat characters and a predictable ending.",
    "One of the best performances I have seen, honest and full of life and joy.",
    "Nothing works here, not the jokes, not the action and not the romance at all.",
] * 3


def tiny_config(**kw) -> FamilyConfig:
    base = dict(prompts=12, val_prompts=4, dpo_prompts=12, samples=3, max_new=6, dpo_samples=3,
                dpo_max_new=6, epochs=1.0, batch=8, hidden=16, layers=1, heads=2,
                dpo_epochs=1, max_share=1.0)
    base.update(kw)
    return FamilyConfig(**base)


def length_gold(texts):
    """A gold scorer that always separates samples (random text has no sentiment words)."""
    return [len(t) / 10 for t in texts]


@pytest.fixture(scope="module")
def tiny_family(tiny_paths, tmp_path_factory):
    out = tmp_path_factory.mktemp("family")
    cfg = tiny_config(base=tiny_paths["base"])
    summary = build_family(out / "a", cfg=cfg, corpus=Corpus(REVIEWS, []), gold=length_gold)
    return out, cfg, summary


def test_family_models_load_with_plain_from_pretrained_and_generate(tiny_family, tiny_paths):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, _ = tiny_family
    base_tok = AutoTokenizer.from_pretrained(tiny_paths["base"])
    for role in ("untuned", "tuned"):
        model = AutoModelForCausalLM.from_pretrained(out / "a" / role)
        tok = AutoTokenizer.from_pretrained(out / "a" / role)
        assert tok.get_vocab() == base_tok.get_vocab()  # the base's own tokenizer: EFT works
        assert model.config.vocab_size == len(base_tok)
        ids = tok("The movie was", return_tensors="pt")["input_ids"]
        gen = model.generate(ids, max_new_tokens=5, do_sample=False,
                             pad_token_id=tok.pad_token_id)
        assert gen.shape[1] == ids.shape[1] + 5


def test_family_build_is_seeded_and_recorded(tiny_family, tiny_paths):
    from safetensors.torch import load_file

    out, cfg, summary = tiny_family
    again = build_family(out / "b", cfg=cfg, corpus=Corpus(REVIEWS, []), gold=length_gold)
    for role in ("untuned", "tuned"):
        a = load_file(out / "a" / role / "model.safetensors")
        b = load_file(out / "b" / role / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        card = (out / "a" / role / "README.md").read_text()
        assert "| seed | 0 |" in card and "w2s zoo family" in card
    recorded = json.loads((out / "a" / "build.json").read_text())
    assert recorded["config"] == {**cfg.__dict__} and recorded["gold"] == "length_gold"
    env = recorded["environment"]  # what decided the float arithmetic
    assert env["torch threads"] == torch.get_num_threads()
    assert env["versions"]["torch"] in (torch.__version__, torch.__version__.split("+")[0])
    assert env["versions"]["transformers"] and env["minutes"] >= 0
    assert recorded["models"]["untuned"]["base samples"] == summary["models"]["untuned"][
        "base samples"] == again["models"]["untuned"]["base samples"]
    agree = recorded["agreement with gold on held-out base samples"]["this family's pair"]
    assert -1 <= agree["spearman"] <= 1 and agree["pairs"] > 0
    # the base samples are cached: a rerun into the same folder samples nothing new
    [cache] = (out / "a" / "work").glob("base-samples-*.jsonl")
    before = cache.read_text()
    prompts = {json.loads(x)["prompt"] for x in before.splitlines()}
    assert len(before.splitlines()) == len(prompts) * cfg.samples
    build_family(out / "a", cfg=cfg, corpus=Corpus(REVIEWS, []), gold=length_gold)
    assert cache.read_text() == before


def test_a_small_model_over_its_share_of_the_base_is_refused(tiny_paths, tmp_path):
    cfg = tiny_config(base=tiny_paths["base"], hidden=64, layers=2, heads=4, max_share=0.10)
    with pytest.raises(W2SError, match=r"^the small model has .* M parameters, over 10% of the "
                                       r"base's .* M$"):
        build_family(tmp_path, cfg=cfg, corpus=Corpus(REVIEWS, []), gold=length_gold)


def test_pca_init_keeps_the_base_embedding_geometry(tiny_paths):
    from safetensors.torch import load_file

    emb = next(v for k, v in load_file(Path(tiny_paths["base"]) / "model.safetensors").items()
               if k.endswith("embed_tokens.weight")).float()
    small = student(Path(tiny_paths["base"]), tiny_config(hidden=16, heads=2))
    proj = small.get_input_embeddings().weight.detach()
    assert proj.shape == (emb.shape[0], 16)
    assert abs(float(proj.std()) - 0.02) < 1e-4
    # the projection is onto the top principal directions: it keeps more of the base's
    # pairwise inner products than any random 16-dimensional projection
    _, _, vh = torch.linalg.svd(emb, full_matrices=False)
    top = emb @ vh[:16].T
    assert torch.allclose(proj / proj.std(), top / top.std(), atol=1e-4)
    rand = emb @ torch.linalg.qr(torch.randn(emb.shape[1], 16, generator=torch.Generator()
                                             .manual_seed(0)))[0]
    assert (top @ top.T - emb @ emb.T).norm() < (rand @ rand.T - emb @ emb.T).norm()


@pytest.mark.parametrize("bad, message", [
    ({"prompts": 0}, r"^prompts must be an integer >= 1, got 0$"),
    ({"hidden": 100, "heads": 3}, r"^hidden \(100\) must be a multiple of heads \(3\)$"),
    ({"lr": float("nan")}, r"^lr must be a finite number > 0, got nan$"),
    ({"corpus_share": 1.0}, r"^corpus_share must be in \[0, 1\), got 1.0$"),
    ({"dpo_data": "gold"}, r"^dpo_data must be 'own' or 'base', got 'gold'$"),
])
def test_family_config_refuses_bad_values_in_one_line(bad, message):
    with pytest.raises(W2SError, match=message):
        FamilyConfig(**bad)


def test_openings_are_2_to_6_words_of_long_texts_in_their_case():
    texts = ["Too short to use", "The Film Was Great And Long Enough", "A B C D E F G"]
    got = openings(texts, 10, random.Random(0))
    assert len(got) == 2
    for o in got:
        words = o.split()
        assert 2 <= len(words) <= 6
        assert any(t.startswith(o) for t in texts[1:])
    assert "The Film" in " ".join(got) or "A B" in " ".join(got)


def test_spearman_and_pairwise_agreement_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks (0.5, 0.5, 2) vs (0, 1, 2) -> r = sqrt(3)/2
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(3 ** 0.5 / 2)
    # group a: gold orders (0 > 1 > 2); the scores get 0>1 right, 0>2 right, 1>2 wrong;
    # group b: gold 0.05 apart (under the margin): no pair; across groups: never compared
    scores = [3.0, 1.0, 2.0, 5.0, 0.0]
    golds = [0.9, 0.5, 0.1, 0.30, 0.25]
    got = ranking_agreement(scores, golds, ["a", "a", "a", "b", "b"])
    assert got["pairs"] == 3 and got["pairwise accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    # a tie is not a right answer
    assert ranking_agreement([1.0, 1.0], [1.0, 0.0], ["a", "a"])["pairwise accuracy"] == 0.0


def test_base_pairs_take_best_over_worst_per_prompt_in_the_small_models_tokens(tiny_paths):
    from transformers import AutoTokenizer

    from w2s.zoo.family import base_pairs

    tok = AutoTokenizer.from_pretrained(tiny_paths["base"])
    samples = [{"prompt": "p", "response": " good", "finished": True},
               {"prompt": "p", "response": " bad", "finished": False},
               {"prompt": "p", "response": " fine", "finished": False},
               {"prompt": "q", "response": " same", "finished": False},
               {"prompt": "q", "response": " same!", "finished": False},  # 0.05 apart: none
               {"prompt": "r", "response": " alone", "finished": False}]  # one sample: none
    gold = {" good": 0.9, " bad": -0.5, " fine": 0.2, " same": 0.1, " same!": 0.15,
            " alone": 1.0}
    [pair] = base_pairs(tok, samples, lambda texts: [gold[t] for t in texts])
    assert pair["prompt"] == "p" and (pair["chosen_gold"], pair["rejected_gold"]) == (0.9, -0.5)
    enc = tok(" good", add_special_tokens=False)["input_ids"]
    assert pair["chosen"] == enc + [tok.eos_token_id]  # it ended: EOS is part of the response
    assert pair["rejected"] == tok(" bad", add_special_tokens=False)["input_ids"]


def row(method, prompt, seed, vader, response="a b"):
    return {"method": method, "prompt_index": prompt, "seed": seed, "gold": {"vader": vader},
            "response": response}


def test_paired_difference_pairs_on_prompt_and_seed_then_averages_seeds():
    rows = [row("cbs", 0, 0, 0.5), row("cbs", 0, 1, 0.7), row("cbs", 1, 0, 0.2),
            row("cbs", 2, 0, 0.9),  # prompt 2 has no base row: not paired
            row("base", 0, 0, 0.1), row("base", 0, 1, 0.3), row("base", 1, 0, 0.4)]
    d = paired_difference(rows, "cbs", "base", "vader")
    # prompt 0: (0.4 + 0.4) / 2 = 0.4; prompt 1: -0.2 -> mean 0.1, sd = 0.3*sqrt(2), se = 0.3
    assert d["prompts"] == 2 and d["pairs"] == 3
    assert d["mean"] == pytest.approx(0.1) and d["se"] == pytest.approx(0.3)
    assert d["z"] == pytest.approx(1 / 3)
    assert paired_difference(rows, "cbs", "nudging", "vader") is None


def test_distinct_bigrams_by_hand():
    assert distinct_bigrams(["a b a b"]) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    assert distinct_bigrams(["a b", "c d e"]) == 1.0
    assert distinct_bigrams(["word"]) == 0.0


def test_cased_prompts_are_the_zoo_prompts_in_their_own_case():
    from w2s.demo import REAL_PROMPTS
    from w2s.tasks.sentiment import PROMPTS_FILE, load_prompts

    cased, lower = load_prompts(REAL_PROMPTS), load_prompts(PROMPTS_FILE)
    assert len(cased) == len(lower) == 515
    assert any(c != c.lower() for c in cased)
    same = sum(clean(c) == low for c, low in zip(cased, lower))
    assert same >= 505  # the rest differ only in how "..." is spaced
    assert all(clean(c) == low or "..." in c for c, low in zip(cased, lower))


def test_real_demo_without_the_family_is_one_line(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "W2S_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "w2s.cli", "demo", "--real", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: the SmolLM2 family (tuned, untuned) is not in {tmp_path / 'cache'}/"
        "smollm2-family; build it with `w2s zoo family` (about 40 minutes on 2 CPU cores)"]
    for args, msg in ((["--real", "--models", "x"], "--models is the tiny zoo's folder"),
                      (["--family", "x"], "--family goes with --real")):
        p = subprocess.run([sys.executable, "-m", "w2s.cli", "demo", *args], capture_output=True,
                           text=True, env=env)
        assert p.returncode == 2 and p.stderr.startswith(f"error: {msg}"), p.stderr


def real_family() -> Path:
    """The real family and SmolLM2, or a skip saying which is missing."""
    from w2s.zoo.pretrained import cache_dir

    fam = family_dir("smollm2")
    if not (fam / "tuned" / "config.json").is_file():
        pytest.skip(f"the SmolLM2 family is not built in {fam} (`w2s zoo family` builds it)")
    if not (cache_dir() / "smollm2" / "config.json").is_file():
        pytest.skip("SmolLM2 is not converted (`w2s zoo get smollm2`)")
    return fam


@pytest.mark.slow
def test_real_family_is_weak_and_speaks_smollm2s_tokens():
    import w2s
    from w2s.logits import same_vocabulary
    from w2s.zoo.pretrained import cache_dir

    fam = real_family()
    base = w2s.HFModel.load(str(cache_dir() / "smollm2"))
    info = json.loads((fam / "build.json").read_text())
    for role in ("untuned", "tuned"):
        small = w2s.HFModel.load(str(fam / role))
        assert same_vocabulary(base, small)
        share = sum(p.numel() for p in small.model.parameters()) / sum(
            p.numel() for p in base.model.parameters())
        assert share <= 0.10 and info["models"][role]["share of the base"] == pytest.approx(
            share, abs=1e-3)
        [r] = w2s.sample(small, None, ["The movie was"], w2s.SamplingParams(seed=0, max_new_tokens=12))
        assert len(r.text.split()) >= 3


@pytest.mark.slow
def test_real_demo_quick_runs_every_method(tmp_path):
    import subprocess
    import sys

    real_family()
    p = subprocess.run([sys.executable, "-m", "w2s.cli", "demo", "--real", "--quick", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    methods = {r["method"] for r in rows}
    assert methods == {"base sampling", "small tuned alone", "best-of-16", "cbs (4,4,5)",
                       "eft (beta=1)", "nudging (gamma=0.1)"}
    assert len(rows) == 6 * 3
    assert all(r["base_logp_per_token"] is not None for r in rows
               if r["response"].strip() and not r["method"].startswith("nudging"))
    assert "cbs (4,4,5) − base sampling" in p.stdout and "words" in p.stdout
    examples = (tmp_path / "examples.md").read_text()
    assert examples.count("## “") == 3 and "| best-of-16 [" in examples
    for f in ("summary.md", "comparisons.md", "gold_bars.png", "gold_vs_kl.png"):
        assert (tmp_path / f).is_file()


def test_build_log_lines_give_the_time_left_at_the_rate_so_far(monkeypatch):
    import time

    from w2s.zoo.build import eta

    monkeypatch.setattr(time, "time", lambda: 1000.0)
    assert eta(1, 4, 940.0) == "1/4, 3.0 min left"  # one in 60 s: three more in 180 s
    assert eta(0, 4, 940.0) == "0/4" and eta(4, 4, 940.0) == "4/4, 0.0 min left"
    # the unit follows the count, not the time left ("32/256, 5.9 min left prompts" before)
    assert eta(1, 4, 940.0, "prompts") == "1/4 prompts, 3.0 min left"
    assert eta(0, 4, 940.0, "prompts") == "0/4 prompts"
