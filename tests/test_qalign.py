"""QAlign / QUEST (w2s.decoding.qalign): the chain's distribution against the enumerated target.

The scripted base (tests/scripted.py: letters a..e with weight 1 each, EOS with weight w) has
a small, exactly known response space when max_new_tokens is 2 or 3, so the Metropolis-Hastings
kernel the method should implement can be written out here as a matrix, independently of the
code: for a current response y, a cut i uniform in {0..|y|-1}, the suffix resampled from the
base, accepted with min(1, exp((r' - r) / beta) |y| / |y'|). The tests check that

- that kernel leaves the target pi(y) ~ p_base(y) exp(r(y) / beta) invariant (the formula is
  right), and that the kernel without the length correction does not (the test has power);
- many independent chains of the real decoder, after S steps, are distributed as
  p_base K^S (exact for any S) within a tolerance set by the sample size, and that K^S is
  within 0.02 of the target, so the chains sample the aligned target;
- with beta -> infinity acceptance is min(1, |y| / |y'|) alone, and the chains stay
  distributed as the base.
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import numpy as np
import pytest
import torch
from fake_engine import FakeEngine
from scripted import EOS, LETTERS, CountGuide, ScriptedBackend

import w2s
from w2s.errors import FieldError, W2SError
from w2s.models.base import Continuation
from w2s.models.openai_api import OpenAIBackend
from w2s.params import QAlignParams, SamplingParams
from w2s.request import parse_request
from w2s.rng import stream_keys, uniforms
from w2s.stopping import Stopper

qa = importlib.import_module("w2s.decoding.qalign")  # the package's `qalign` is the function


class FastScripted(ScriptedBackend):
    """The scripted backend with its uniforms drawn in one batch per call: the same tokens
    (a pure function of stream and position), fast enough for thousands of chains."""

    def complete(self, requests, max_tokens, sampling):  # noqa: ANN001
        stopper = Stopper(self.decode, [EOS], sampling.stop)
        probs = torch.tensor([1.0] * 5 + [self.eos_weight])
        cdf = (probs / probs.sum()).cumsum(0)
        rows = [(list(r.response_ids), s) for r in requests for s in r.streams]
        streams = torch.tensor([s for _, s in rows], dtype=torch.long).repeat_interleave(
            max_tokens)
        pos = torch.tensor([len(r) + t for r, _ in rows for t in range(max_tokens)])
        u = uniforms(streams, pos).view(len(rows), max_tokens)
        toks = (cdf[None, None, :] <= u[:, :, None]).sum(-1).clamp(max=5).tolist()
        flat = []
        for (resp, _), row in zip(rows, toks):
            new: list[int] = []
            for t in row:
                new.append(t)
                if stopper.ended(resp + new):
                    break
            ended = stopper.ended(resp + new)
            flat.append(Continuation(
                stopper.text(resp + new), new, len(new), "stop" if ended else "length"))
        out, lo = [], 0
        for r in requests:
            out.append(flat[lo: lo + len(r.streams)])
            lo += len(r.streams)
        return out


# ------------------------------------------------------------------ the exact reference
def responses(m: int) -> list[tuple[int, ...]]:
    """Every response of at most ``m`` tokens: letters, ended by EOS or by length."""
    out: list[tuple[int, ...]] = []

    def rec(y: tuple[int, ...]) -> None:
        if (y and y[-1] == EOS) or len(y) == m:
            out.append(y)
            return
        for t in range(6):
            rec(y + (t,))

    rec(())
    return out


def suffixes(prefix: tuple[int, ...], m: int, w: float) -> list[tuple[tuple[int, ...], float]]:
    """Every base continuation of ``prefix`` to the end of a response, with its probability."""
    p = [1 / (5 + w)] * 5 + [w / (5 + w)]
    out = []

    def rec(s: tuple[int, ...], q: float) -> None:
        y = prefix + s
        if s and (s[-1] == EOS or len(y) == m):
            out.append((s, q))
            return
        for t in range(6):
            rec(s + (t,), q * p[t])

    rec((), 1.0)
    return out


def reward(y: tuple[int, ...]) -> float:
    """CountGuide's score (float32, as it returns it)."""
    text = "".join(LETTERS[t] for t in y if t != EOS)
    return float(torch.tensor([text.count("a") - 0.1 * text.count("e")])[0])


def kernel(m: int, w: float, beta: float, correct: bool = True):  # noqa: ANN201
    """(responses, p_base, target pi, the Metropolis-Hastings transition matrix K); the
    probability of accepting from each response goes to ``ACCEPT``."""
    ys = responses(m)
    ACCEPT[(m, w, beta, correct)] = np.zeros(len(ys))
    at = {y: k for k, y in enumerate(ys)}
    base = np.zeros(len(ys))
    for s, q in suffixes((), m, w):
        base[at[s]] = q
    r = np.array([reward(y) for y in ys])
    k_ = np.zeros((len(ys), len(ys)))
    for a, y in enumerate(ys):
        for i in range(len(y)):
            for s, q in suffixes(y[:i], m, w):
                b = at[y[:i] + s]
                log_a = (r[b] - r[a]) / beta
                if correct:
                    log_a += math.log(len(y)) - math.log(len(ys[b]))
                acc = min(1.0, math.exp(log_a))
                k_[a, b] += q * acc / len(y)
                k_[a, a] += q * (1 - acc) / len(y)
                ACCEPT[(m, w, beta, correct)][a] += q * acc / len(y)
    pi = base * np.exp(r / beta)
    return ys, base, pi / pi.sum(), k_


ACCEPT: dict = {}
"""P(the proposal is accepted | current response), per kernel built: not 1 - K[y, y], as a
proposal can equal y."""


def stat(y: tuple[int, ...]) -> tuple[int, bool, int, int]:
    """What the target depends on: length, ended, number of a's and of e's."""
    return len(y), bool(y) and y[-1] == EOS, y.count(0), y.count(4)


def coarse(ys: list[tuple[int, ...]], p: np.ndarray) -> dict:
    out: dict = {}
    for y, q in zip(ys, p):
        out[stat(y)] = out.get(stat(y), 0.0) + q
    return out


def tv(a: dict, b: dict) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def expected_tv(p: dict, n: int) -> float:
    """E[TV] of an n-sample empirical distribution from p (normal approximation per cell:
    E|p_hat - p| = sqrt(2 p (1 - p) / (pi n)))."""
    return 0.5 * sum(math.sqrt(2 * q * (1 - q) / (math.pi * n)) for q in p.values())


def run_chains(prompts: int, chains: int, steps: int, beta: float, m: int, w: float,
               seed: int = 0) -> tuple[list[w2s.Result], dict]:
    got = w2s.qalign(FastScripted(eos_weight=w), CountGuide(),
                     [f"p{i}" for i in range(prompts)], QAlignParams(steps, chains, beta),
                     SamplingParams(max_new_tokens=m, seed=seed), return_all=True)
    counts: dict = {}
    for r in got:
        for c in r.candidates:
            counts[stat(tuple(c.token_ids))] = counts.get(stat(tuple(c.token_ids)), 0) + 1
    n = sum(counts.values())
    return got, {k: v / n for k, v in counts.items()}


# ------------------------------------------------------------------ the key test
def test_the_kernel_leaves_the_aligned_target_invariant_only_with_the_length_correction():
    ys, base, pi, k_ = kernel(3, 5.0, 1.0)
    assert np.allclose(k_.sum(1), 1) and np.abs(pi @ k_ - pi).max() < 1e-15
    *_, wrong = kernel(3, 5.0, 1.0, correct=False)
    assert np.abs(pi @ wrong - pi).max() > 1e-3  # |y| / |y'| is what makes it exact


def test_chains_sample_the_aligned_target():
    """2000 chains (500 prompts x 4), 10 steps, max_new_tokens 3, EOS weight 5, beta 1:
    the empirical distribution of (length, ended, #a, #e) is within 3x its expected sampling
    TV of base K^10, which is within 0.02 of the target; a chain without the length
    correction would be 0.18 away (checked)."""
    m, w, beta, steps, prompts, chains = 3, 5.0, 1.0, 10, 500, 4
    ys, base, pi, k_ = kernel(m, w, beta)
    p_s = coarse(ys, base @ np.linalg.matrix_power(k_, steps))
    assert tv(p_s, coarse(ys, pi)) < 0.02 < tv(coarse(ys, base), coarse(ys, pi))
    *_, wrong = kernel(m, w, beta, correct=False)
    tol = 3 * expected_tv(p_s, prompts * chains)
    assert tol < 0.1
    assert tv(p_s, coarse(ys, base @ np.linalg.matrix_power(wrong, steps))) > 1.8 * tol
    got, emp = run_chains(prompts, chains, steps, beta, m, w)
    assert tv(emp, p_s) < tol
    # and the chains' acceptance rate is the kernel's, within 3 standard errors
    acc = ACCEPT[(m, w, beta, True)]
    want = float(sum(base @ np.linalg.matrix_power(k_, s) @ acc for s in range(steps)) / steps)
    rate = np.mean([r.stats["accept_rate"] for r in got])
    assert abs(rate - want) < 3 * math.sqrt(want * (1 - want) / (prompts * chains)) + 0.01


def test_with_a_huge_beta_acceptance_is_the_length_ratio_alone_and_the_base_is_kept():
    assert qa.acceptance(5.0, -5.0, 2, 3, 1e12) == pytest.approx(2 / 3)
    assert qa.acceptance(-5.0, 5.0, 3, 2, 1e12) == 1.0
    assert qa.acceptance(0.0, -1.0, 2, 3, 1.0) == pytest.approx(math.exp(-1) * 2 / 3)
    assert qa.acceptance(0.0, -0.5, 3, 2, 1.0) == pytest.approx(math.exp(-0.5) * 3 / 2)
    assert qa.acceptance(0.0, 2.0, 2, 3, 1.0) == 1.0
    m, w, steps, prompts, chains = 3, 5.0, 6, 250, 4
    ys, base, pi, k_ = kernel(m, w, 1e12)
    assert np.abs(pi - base).max() < 1e-9  # the target is the base: no reward left
    got, emp = run_chains(prompts, chains, steps, 1e12, m, w)
    assert tv(emp, coarse(ys, base)) < 3 * expected_tv(coarse(ys, base), prompts * chains)
    # at stationarity the accept rate is E[min(1, |y| / |y'|)] over the proposal
    want = float(base @ ACCEPT[(m, w, 1e12, True)])
    rate = np.mean([r.stats["accept_rate"] for r in got])
    assert abs(rate - want) < 3 * math.sqrt(want * (1 - want) / (prompts * chains)) + 0.01


# ------------------------------------------------------------------ one step, by hand
def test_one_step_cuts_resamples_and_accepts_as_specified():
    """steps=1: chain j starts from Best-of-N's sample j (slot j), cuts at floor(u |y|) with
    its own slot's uniform, resamples from slot chains + j, and keeps the proposal iff the
    second uniform is below the acceptance."""
    sp, chains, beta = SamplingParams(max_new_tokens=4, seed=7), 3, 0.7
    backend = ScriptedBackend(eos_weight=0.5)
    [r] = w2s.qalign(backend, CountGuide(), ["p"], QAlignParams(1, chains, beta), sp,
                     return_all=True)
    [b] = w2s.bon(ScriptedBackend(eos_weight=0.5), CountGuide(), ["p"],
                  w2s.BestOfNParams(chains), sp, return_all=True)
    start = backend.calls[0]["children"]
    assert sorted(s[0] for s in start) == sorted(c.token_ids for c in b.candidates)
    key = torch.tensor([w2s.rng.prompt_key(7, "p")] * chains)
    u_stream = stream_keys(key, qa.CHAIN_SLOT - torch.arange(chains))
    cut_u = uniforms(u_stream, torch.zeros(chains, dtype=torch.long)).tolist()
    acc_u = uniforms(u_stream, torch.ones(chains, dtype=torch.long)).tolist()
    proposals = {s: child for call in backend.calls[1:]
                 for s, child in zip(call["streams"], call["children"])}
    want = []
    for j, (y, _) in enumerate(start):
        cut = min(int(cut_u[j] * len(y)), len(y) - 1)
        slot = stream_keys(key[:1], torch.tensor([chains + j]))[0].item()
        y2 = proposals[slot][0]
        assert y2[:cut] == y[:cut] and len(y2) > cut  # the prefix kept, a suffix resampled
        a = qa.acceptance(reward(tuple(y)), reward(tuple(y2)), len(y), len(y2), beta)
        want.append(y2 if acc_u[j] < a else y)
    assert sorted(c.token_ids for c in r.candidates) == sorted(want)
    assert [c.score for c in r.candidates] == sorted((c.score for c in r.candidates),
                                                     reverse=True)
    assert r.stats["accept_rate"] == sum(y2 is not y for y2, (y, _) in zip(want, start)) / 3


def test_cost_counts_every_sampled_and_read_token():
    backend = ScriptedBackend(eos_weight=0.5)
    sp, knob = SamplingParams(max_new_tokens=5, seed=1), QAlignParams(4, 3, 0.5)
    [r] = w2s.qalign(backend, CountGuide(), ["p"], knob, sp)
    sampled = sum(len(c[0]) - len(p) for call in backend.calls
                  for c, p in zip(call["children"], call["parents"]))
    read = sum(len(p) for call in backend.calls for p in call["parents"])
    assert r.cost.base_tokens == sampled and r.cost.base_read == read  # no prompt counter
    assert 0 < r.cost.base_tokens <= 3 * (4 + 1) * 5


def test_runs_repeat_and_chains_differ():
    sp = SamplingParams(max_new_tokens=6, seed=2)
    run = [w2s.qalign(ScriptedBackend(), CountGuide(), ["p", "q"], QAlignParams(5, 4, 0.5), sp,
                      return_all=True) for _ in range(2)]
    assert [[(c.text, c.score) for c in r.candidates] for r in run[0]] == \
        [[(c.text, c.score) for c in r.candidates] for r in run[1]]
    assert [r.stats for r in run[0]] == [r.stats for r in run[1]]
    assert len({c.text for c in run[0][0].candidates}) > 1
    other = w2s.qalign(ScriptedBackend(), CountGuide(), ["p", "q"], QAlignParams(5, 4, 0.5),
                       dataclasses.replace(sp, seed=3), return_all=True)
    assert [c.text for c in other[0].candidates] != [c.text for c in run[0][0].candidates]
    # one prompt alone gives what it gets in a batch (counter-based randomness)
    [alone] = w2s.qalign(ScriptedBackend(), CountGuide(), ["q"], QAlignParams(5, 4, 0.5), sp,
                         return_all=True)
    assert [c.text for c in alone.candidates] == [c.text for c in run[0][1].candidates]


# ------------------------------------------------------------------ what it refuses
def test_a_text_only_base_is_refused_in_one_line():
    with pytest.raises(W2SError, match="qalign cuts responses at a token and needs their "
                       "token ids; this backend .scripted. reports text only") as e:
        w2s.qalign(ScriptedBackend(ids=False), CountGuide(), ["p"], QAlignParams(2, 2),
                   SamplingParams(max_new_tokens=3, seed=0))
    assert "\n" not in str(e.value)

    class NoDecode(ScriptedBackend):
        decode = None

    with pytest.raises(W2SError, match="needs the base to decode token ids"):
        w2s.qalign(NoDecode(), CountGuide(), ["p"], QAlignParams(2, 2),
                   SamplingParams(max_new_tokens=3, seed=0))


@pytest.mark.parametrize("knobs,field", [
    ({"steps": 0}, "steps"), ({"chains": 0}, "chains"), ({"steps": 1.5}, "steps"),
    ({"beta": 0}, "beta"), ({"beta": -1.0}, "beta"), ({"beta": math.nan}, "beta"),
    ({"beta": math.inf}, "beta"),
])
def test_bad_knobs_are_one_line_naming_the_knob(knobs, field):
    with pytest.raises(FieldError) as e:
        parse_request({"method": "qalign", **knobs,
                       "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}})
    assert e.value.field == field and "\n" not in str(e.value)
    with pytest.raises(FieldError):
        QAlignParams(**knobs)


def test_it_needs_a_guide():
    with pytest.raises(W2SError, match="qalign needs a guide"):
        w2s.qalign(ScriptedBackend(), None, ["p"])


# ------------------------------------------------------------------ budgets
def test_the_budget_rule_keeps_the_worst_case_within_the_budget():
    at = w2s.decoders()["qalign"].at_budget
    assert at(QAlignParams(9, 4, 0.5), 16, 50) == QAlignParams(3, 4, 0.5)  # 4 x (3 + 1) = 16
    assert at(QAlignParams(9, 4, 0.5), 7, 50) == QAlignParams(1, 3, 0.5)  # chains <= b // 2
    assert at(QAlignParams(9, 1, 0.5), 5, 50) == QAlignParams(4, 1, 0.5)
    with pytest.raises(W2SError, match="at least 2 responses"):
        at(QAlignParams(), 1, 50)
    for b in range(2, 12):
        for chains in (1, 2, 3, 5):
            k = at(QAlignParams(chains=chains), b, 4)
            assert k.steps >= 1 and k.chains * (k.steps + 1) <= b
            # ignore_eos: every response runs to max_new_tokens, the worst case
            sp = SamplingParams(max_new_tokens=4, seed=b, ignore_eos=True)
            [r] = w2s.qalign(ScriptedBackend(), CountGuide(), ["p"], k, sp)
            assert r.cost.base_tokens <= b * 4


# ------------------------------------------------------------------ engines
class WordTokenizer:
    """The fake engine's vocabulary: token k is the word " w<k>"."""

    def decode(self, ids, skip_special_tokens=False):  # noqa: ANN001, ANN201, ARG002
        return "".join(f" w{i}" for i in ids)

    def __call__(self, text, add_special_tokens=False):  # noqa: ANN001, ANN204, ARG002
        return {"input_ids": list(range(len(text.split())))}


def test_an_engine_with_token_ids_and_a_tokenizer_runs_the_chains():
    """Through the stateless path only: each proposal is one request whose prompt is the
    prompt's ids then the kept prefix's sampled ids; the texts are the ids' words."""
    e = FakeEngine(tokenize=True)
    try:
        b = OpenAIBackend(e.url, e.model, tokenizer=WordTokenizer(), max_retries=3, timeout=5.0)
        sp, knob = SamplingParams(max_new_tokens=5, seed=3), QAlignParams(3, 2, 0.5)
        [r] = w2s.qalign(b, CountGuide(), ["p q"], knob, sp, return_all=True)
        assert len(r.candidates) == 2 and r.cost.base_tokens <= 2 * 4 * 5
        for c in r.candidates:
            assert c.text == WordTokenizer().decode(c.token_ids) and len(c.token_ids) == 5
        first, *rest = e.bodies
        assert first["prompt"] == [1000, 1001] and first["n"] == 2 and len(rest) >= 3
        for body in rest:  # a kept prefix of at most 4 tokens, then at least one new token
            assert body["prompt"][:2] == [1000, 1001] and len(body["prompt"]) <= 6
            assert len(body["prompt"]) - 2 + body["max_tokens"] == 5 and body["n"] == 1
        # an engine without a tokenizer cannot give a cut prefix's text
        with pytest.raises(W2SError, match="give it a tokenizer"):
            w2s.qalign(OpenAIBackend(e.url, e.model), CountGuide(), ["p q"], knob, sp)
    finally:
        e.close()


# ------------------------------------------------------------------ a real model
def test_a_tiny_model_runs_in_process_and_its_texts_are_its_tokens(base, pair):
    sp, knob = SamplingParams(max_new_tokens=6, seed=5), QAlignParams(2, 2, 1.0)
    got = w2s.qalign(base, pair, ["the film", "a movie"], knob, sp, return_all=True)
    for r in got:
        assert len(r.candidates) == 2 and 0 <= r.stats["accept_rate"] <= 1
        for c in r.candidates:
            assert c.text == base.decode(c.token_ids)  # the cut prefixes' text was consistent
        want = pair.score([r.prompt] * 2, [c.text for c in r.candidates],
                          [c.finished for c in r.candidates])
        assert [c.score for c in r.candidates] == pytest.approx(want.tolist(), abs=1e-3)
        assert 0 < r.cost.base_tokens <= 2 * 3 * 6
    again = w2s.qalign(base, pair, ["the film", "a movie"], knob, sp, return_all=True)
    assert [[c.text for c in r.candidates] for r in again] == \
        [[c.text for c in r.candidates] for r in got]
