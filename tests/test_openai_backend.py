"""The black-box backend over HTTP, against a local server that fails on purpose: what is sent,
how answers become continuations, retries (429 with Retry-After, 5xx, timeouts, dropped
connections, truncated JSON), and one-line errors when retrying cannot help."""

from __future__ import annotations

import time

import pytest
from cli_output import without_stages
from click.testing import CliRunner
from fake_engine import FakeEngine
from scripted import CountGuide

import w2s
from w2s import SamplingParams, SearchParams, W2SError
from w2s.cli import cli
from w2s.models.base import Request
from w2s.models.openai_api import OpenAIBackend
from w2s.rng import engine_seed

SP = SamplingParams(max_new_tokens=6, seed=3)


@pytest.fixture
def engine():
    e = FakeEngine()
    yield e
    e.close()


def backend(engine: FakeEngine, **kw) -> OpenAIBackend:
    return OpenAIBackend(engine.url, engine.model, **{"max_retries": 3, "timeout": 5.0, **kw})


def test_it_declares_text_only_capabilities(engine):
    b = backend(engine)
    assert isinstance(b, w2s.Backend)
    assert not isinstance(b, w2s.SearchBackend) and not isinstance(b, w2s.LogitsBackend)


def test_the_request_body_carries_the_knobs(engine):
    b = backend(engine)
    req = Request("Hi", " there", None, (11, 12, 13), tokens=4)
    body = b.body(req, 5, SamplingParams(seed=0, temperature=0.5, top_p=0.9, stop=("!",)))
    assert body == {"model": "fake", "prompt": "Hi there", "max_tokens": 5, "n": 3,
                    "temperature": 0.5, "top_p": 0.9, "seed": engine_seed(11, 4),
                    "stop": ["!"], "logprobs": 0}
    body = b.body(req, 5, SamplingParams(seed=0, top_k=7, ignore_eos=True))
    assert body["top_k"] == 7 and body["ignore_eos"] is True and "stop" not in body
    assert engine_seed(11, 4) != engine_seed(11, 9) != engine_seed(12, 4)
    assert 0 <= engine_seed(-5, 0) < 2**31


def test_each_continuation_carries_the_engines_log_probability_of_its_tokens(engine):
    [conts] = backend(engine).complete([Request("Hi", "", None, (1, 2))], 4, SP)
    assert [c.logprob for c in conts] == [-0.5 * 4, -0.5 * 4]  # 4 words of -0.5 each
    quiet = FakeEngine(logprobs=False)
    try:
        [conts] = backend(quiet).complete([Request("Hi", "", None, (1,))], 4, SP)
        assert conts[0].logprob is None
        with pytest.raises(W2SError, match="mcts: prior=1 needs"):
            w2s.mcts(backend(quiet), CountGuide(), ["p"], w2s.MCTSParams(2, 2, 2), SP)
    finally:
        quiet.close()


def test_cbs_runs_over_http_with_n_per_parent_and_fresh_seeds_per_round(engine):
    b = backend(engine)
    [r] = w2s.cbs(b, CountGuide(), ["p"], SearchParams(2, 3, 2), SP, return_all=True)
    first, *rest = engine.bodies
    assert first["n"] == 6 and first["prompt"] == "p" and first["max_tokens"] == 2
    assert all(x["n"] == 3 for x in rest) and len(rest) == 2 * 2  # 2 more rounds, 2 parents
    assert len({x["seed"] for x in engine.bodies}) == len(engine.bodies)
    # each later prompt is a kept prefix: the prompt plus a response of the round before
    assert all(x["prompt"].startswith("p w") for x in rest)
    assert r.cost.base_tokens == 6 * 2 + 2 * (2 * 3 * 2)  # round 1, then 2 rounds of 2x3 chunks
    assert r.token_ids == [] and len(r.text.split()) == 6
    again = w2s.cbs(backend(engine), CountGuide(), ["p"], SearchParams(2, 3, 2), SP)
    assert again[0].text == r.text  # seeds repeat


def test_kept_prefixes_travel_as_token_ids_where_the_engine_tokenizes():
    e = FakeEngine(tokenize=True)
    try:
        [r] = w2s.cbs(backend(e), CountGuide(), ["p q"], SearchParams(2, 3, 2), SP,
                      return_all=True)
        first, *rest = e.bodies
        assert e.tokenized == ["p q"]  # once per prompt, by the engine's own tokenizer
        assert first["prompt"] == [1000, 1001] and first["return_tokens_as_token_ids"] is True
        for body in rest:  # the prompt's ids, then the kept response's sampled ids, exactly
            assert body["prompt"][:2] == [1000, 1001] and len(body["prompt"]) in (4, 6)
        kept = {tuple(b["prompt"][2:]) for b in e.bodies[-2:]}
        assert all(all(0 <= i < 97 for i in k) for k in kept)
        assert r.token_ids == [int(w[1:]) for w in r.text.split()]  # the ids of the text
        # the text path draws the same continuations (the engine's randomness is the seed)
        text = FakeEngine()
        try:
            [t] = w2s.cbs(backend(text), CountGuide(), ["p q"], SearchParams(2, 3, 2), SP)
            assert t.text == r.text and all(isinstance(b["prompt"], str) for b in text.bodies)
        finally:
            text.close()
    finally:
        e.close()


def test_every_request_of_one_prompt_carries_one_affinity_key(engine):
    w2s.cbs(backend(engine), CountGuide(), ["p", "q"], SearchParams(2, 3, 2), SP)
    keys: dict[str, set[str]] = {}
    for body, headers in zip(engine.bodies, engine.headers):
        keys.setdefault(body["prompt"].split()[0], set()).add(headers["x-session-id"])
    assert set(keys) == {"p", "q"} and all(len(k) == 1 for k in keys.values())
    assert keys["p"] != keys["q"]  # prompts spread over replicas
    w2s.sample(backend(engine, affinity_header=None), None, ["p"], SP)
    assert "x-session-id" not in engine.headers[-1]


def test_an_engine_without_tokenize_gets_text_with_one_note(engine, caplog):
    b = backend(engine)
    with caplog.at_level("WARNING", logger="w2s"):
        w2s.sample(b, None, ["p"], SP, n=2)
        w2s.sample(b, None, ["q"], SP, n=2)
    notes = [r.getMessage() for r in caplog.records if r.name == "w2s"]
    assert len(notes) == 1 and "has no usable /tokenize" in notes[0] and "as text" in notes[0]
    assert all(isinstance(x["prompt"], str) for x in engine.bodies)
    with pytest.raises(W2SError, match=r"127\.0\.0\.1:\d+ has no usable /tokenize: it cannot take"):
        w2s.sample(backend(engine, token_prompts=True), None, ["p"], SP)
    w2s.sample(backend(engine, token_prompts=False), None, ["p"], SP)  # asks nothing


def test_sglang_takes_token_id_prompts_but_returns_text_tokens_so_prefixes_go_as_text():
    e, text = FakeEngine(flavour="sglang"), FakeEngine()
    try:
        [r] = w2s.cbs(backend(e), CountGuide(), ["p q"], SearchParams(2, 3, 2), SP)
        first, *rest = e.bodies
        assert e.tokenized == ["p q"] and first["prompt"] == [1000, 1001]
        # no `token_id:N` tokens come back, so no kept response has ids: it goes as text
        assert rest and all(isinstance(b["prompt"], str) for b in rest)
        [t] = w2s.cbs(backend(text), CountGuide(), ["p q"], SearchParams(2, 3, 2), SP)
        assert r.text == t.text  # the same search as through vLLM's text path
    finally:
        e.close()
        text.close()


def test_llama_cpps_documented_differences_are_met_or_refused_in_one_line(caplog):
    e = FakeEngine(flavour="llama.cpp")
    try:
        b = backend(e)
        with caplog.at_level("WARNING", logger="w2s"):
            [r] = w2s.sample(b, None, ["p q"], SP)
        # its /tokenize reads `content`: it gave no tokens for a non-empty prompt, which is
        # no tokenizer to trust, so the prompts go as text, with one note
        notes = [x.getMessage() for x in caplog.records if x.name == "w2s"]
        assert len(notes) == 1 and "/tokenize" in notes[0] and "as text" in notes[0]
        assert all(isinstance(x["prompt"], str) for x in e.bodies)
        # its logprobs ({"content": [...]}, not OpenAI's token lists) are read
        [[c]] = b.complete([Request("p", "", None, (0,))], 3, SamplingParams(seed=0))
        assert c.n_tokens == 3 and c.logprob == pytest.approx(-1.5)
        [[top]] = b.complete_top([Request("p", "", None, (0,))], 3, SamplingParams(seed=0))
        assert top.top_logprobs == [-2.3 if int(w[1:]) % 5 == 0 else -0.1
                                    for w in top.response.split()]
        assert top.prefixes[-1] == top.response
        with pytest.raises(W2SError, match=r"127\.0\.0\.1:\d+/v1/completions refused the "
                           r"request \(HTTP 400\): Only one completion choice is allowed"):
            w2s.sample(b, None, ["p"], SP, n=2)
        with pytest.raises(W2SError, match="Only no echo is supported"):
            b.loglik(["p"], [" w1"])
    finally:
        e.close()


def test_a_slow_or_failing_guide_engine_is_retried_then_reported_in_one_line():
    from w2s.models.engine_lm import EngineLM

    e = FakeEngine()
    try:
        lm = EngineLM(e.url, "zoo:tuned", model="fake", timeout=1.0, max_retries=1)
        lm._checked = True  # the fake engine's words are not the zoo's tokens (probe: vLLM tests)
        e.faults = [("status", 503, None)]
        [lp] = lm.token_logprobs([[5, 6]], [[7, 8, 9]])
        assert lp.tolist() == [-1.0, -1.0, -1.0] and lm.client.stats["retries"] == 1
        e.faults = [("slow", 1.5)]  # past the timeout once: retried
        assert lm.token_logprobs([[5]], [[7]])[0].tolist() == [-1.0]
        e.faults = [("slow", 1.5), ("slow", 1.5)]
        with pytest.raises(W2SError, match=r"^http://127\.0\.0\.1:\d+/v1/completions: gave up "
                           r"after 2 tries \(no answer within 1 s\)$"):
            lm.token_logprobs([[5]], [[7]])
    finally:
        e.close()


def test_a_guide_engine_without_a_model_name_takes_the_one_it_serves(engine):
    from w2s.models.engine_lm import EngineLM

    assert backend(engine).served_models() == ["fake"]
    assert EngineLM(engine.url, "zoo:tuned", timeout=1.0, max_retries=1).model == "fake"


def test_a_response_cut_client_side_keeps_no_token_ids():
    e = FakeEngine(tokenize=True)
    try:
        b = backend(e)
        req = Request("p", " w1", (1,), (0,), tokens=1)
        [[full]] = b.complete([req], 3, SamplingParams(seed=0))
        new = full.response[len(" w1"):]
        assert full.token_ids == [int(w[1:]) for w in new.split()] and len(full.token_ids) == 3
        assert e.bodies[-1]["prompt"] == [1000, 1]
        stop = "1" + new[:3]  # spans the kept response and the new text: found client-side
        [[cut]] = b.complete([req], 3, SamplingParams(seed=0, stop=(stop,)))
        assert cut.response == " w" and cut.ended and cut.token_ids is None
    finally:
        e.close()


def test_a_stop_string_split_across_chunks_is_found_client_side(engine):
    b = backend(engine)
    [r] = w2s.sample(b, None, ["p"], SamplingParams(max_new_tokens=4, seed=3))
    words = r.text.split()
    stop = words[1][-1] + " " + words[2][:2]  # spans the boundary between words 2 and 3
    conts = b.complete([Request("p", " " + words[0] + " " + words[1], None, (0,))], 2,
                       SamplingParams(seed=0, stop=(stop,)))[0]
    assert conts[0].response.endswith(words[1][:-1]) or stop not in conts[0].response
    [cut] = w2s.sample(b, None, ["p"], SamplingParams(max_new_tokens=4, seed=3, stop=(stop,)))
    assert cut.finished and stop not in cut.text and r.text.startswith(cut.text)


def test_a_log_likelihood_is_an_echo_that_samples_nothing(engine):
    """loglik asks for the echoed prompt's log-probabilities with max_tokens 0 (an engine's
    default would sample 16 more tokens, which the echo would then include), greedy, and asks
    nothing for an empty response; an engine that echoes no log-probabilities is one line."""
    b = backend(engine)
    assert b.loglik(["Hi", "Hi"], [" a b", ""]) == [(-2.0, 2), (0.0, 0)]
    [body] = engine.bodies  # the empty response sent no request
    assert {k: body[k] for k in ("prompt", "max_tokens", "echo", "logprobs", "temperature")} \
        == {"prompt": "Hi a b", "max_tokens": 0, "echo": True, "logprobs": 0,
            "temperature": 0.0}
    quiet = FakeEngine(logprobs=False)
    try:
        q = backend(quiet)
        with pytest.raises(W2SError) as e:
            q.loglik(["Hi"], [" a"])
        assert str(e.value) == (f"{q.base_url}/completions gave no echoed log-probabilities "
                                "(it needs echo with logprobs)")
    finally:
        quiet.close()


def test_top_log_probabilities_line_up_with_the_text_each_token_ends(engine):
    """Nudging's top-1 reading of a chunk: each token's best log-probability (0 where the
    engine lists none) and the response after each token. A partial UTF-8 token ("bytes:...")
    adds no text; prefixes stop where a client-side stop string cut the response."""
    b = backend(engine)
    lp = {"tokens": ["bytes:\\xc3", "\u00e9", "!", "x"],
          "top_logprobs": [{"a": -0.2, "b": -0.1}, {}, {"!": -0.3}, {"x": -0.4}]}
    best, prefixes = b._top(lp, "P", "\u00e9!x", "P\u00e9!")
    assert best == [-0.1, 0.0, -0.3, -0.4]
    assert prefixes == ["P", "P", "P\u00e9", "P\u00e9!", "P\u00e9!"]
    for bad in ({"tokens": ["a", "b"], "top_logprobs": [{"a": -1.0}]},  # lengths differ
                {"top_logprobs": [{"a": -1.0}]}, {"tokens": ["a"]}):
        with pytest.raises(W2SError) as e:
            b._top(bad, "", "ab", "ab")
        assert str(e.value) == (f"{b.base_url}/completions gave no top log-probabilities "
                                "(this method needs logprobs=1)")


@pytest.mark.parametrize("fault", [("status", 503, None), ("status", 500, None),
                                   ("status", 429, 1.2), ("drop",), ("truncated",),
                                   ("slow", 2.0)])
def test_transient_failures_are_retried(engine, fault):
    clean = w2s.sample(backend(engine), None, ["p", "q"], SP, n=2)
    engine.faults = [fault]
    b = backend(engine, timeout=1.0)
    t0 = time.perf_counter()
    got = w2s.sample(b, None, ["p", "q"], SP, n=2)
    assert [c.text for r in got for c in r.candidates] == \
        [c.text for r in clean for c in r.candidates]
    assert b.stats["retries"] == 1
    if fault[0] == "status" and fault[2] is not None:
        # Retry-After honoured: 1.2 s is over the longest first backoff of w2s's own (full
        # jitter, at most 1 s), so only the header explains the wait
        assert time.perf_counter() - t0 >= fault[2]


def test_choices_are_taken_by_index_and_usage_is_summed(engine):
    """The API does not promise choices in order: they are matched to streams by ``index``.
    Token usage adds up over requests; a 200 without choices, or with another number of them
    than asked, is one line naming the URL."""
    b = backend(engine)
    reqs = [Request("Hi", "", None, (1, 2)), Request("Yo", "", None, (3, 4))]
    want = b.complete(reqs, 4, SP)
    assert (b.stats["prompt_tokens"], b.stats["completion_tokens"]) == (6, 16)
    engine.faults = [("answer", lambda a: {**a, "choices": a["choices"][::-1]})]
    assert b.complete(reqs[:1], 4, SP) == want[:1]
    assert (b.stats["prompt_tokens"], b.stats["completion_tokens"]) == (9, 24)
    engine.faults = [("answer", lambda a: {**a, "choices": [  # no index: the order sent
        {k: v for k, v in c.items() if k != "index"} for c in a["choices"]]})]
    assert b.complete(reqs[:1], 4, SP) == want[:1]
    # the token count: the tokens listed, else the usage shared over the choices; text may be
    # null; an answer without usage adds nothing
    engine.faults = [("answer", lambda a: {**a, "usage": {"completion_tokens": 100}})]
    assert [c.n_tokens for c in b.complete(reqs[:1], 4, SP)[0]] == [4, 4]
    bare = [{"index": j, "text": None, "finish_reason": "length"} for j in (1, 0)]
    engine.faults = [("answer", lambda a: {"choices": bare, "usage": {"completion_tokens": 6}})]
    conts = b.complete(reqs[:1], 3, SP)[0]
    assert [(c.response, c.n_tokens, c.logprob) for c in conts] == [("", 3, None)] * 2
    engine.faults = [("answer", lambda a: {"choices": a["choices"]})]
    assert [c.finish_reason for c in b.complete(reqs[:1], 4, SP)[0]] == ["length"] * 2
    assert (b.stats["prompt_tokens"], b.stats["completion_tokens"]) == (12, 138)
    engine.faults = [("answer", lambda a: {"choices": [{"index": 0, "text": " x"}]})]
    [[one]] = b.complete([Request("Hi", "", None, (1,))], 3, SP)
    assert (one.response, one.n_tokens) == (" x", 0)  # nothing listed, no usage: 0 counted
    # a stop string that starts the response (its first part came in the chunk before) cuts
    # it all, and drops the token ids (they overrun the text); the other choice keeps its ids
    ids = {"tokens": ["token_id:5", "token_id:6"], "token_logprobs": [-0.5, -0.5]}
    engine.faults = [("answer", lambda a: {**a, "choices": [
        {"index": j, "text": text, "finish_reason": "length", "logprobs": ids}
        for j, text in enumerate(("b c", "c d"))]})]
    [[cut, kept]] = b.complete([Request("Hi", "a", None, (1, 2))], 2,
                               SamplingParams(max_new_tokens=6, seed=3, stop=("ab",)))
    assert (cut.response, cut.finish_reason, cut.token_ids) == ("", "stop", None)
    assert (kept.response, kept.finish_reason, kept.token_ids) == ("ac d", "length", [5, 6])
    for change, message in [(lambda a: {"usage": a["usage"]}, "answered without choices"),
                            (lambda a: {**a, "choices": a["choices"][:1]},
                             "returned 1 choices for n=2")]:
        engine.faults = [("answer", change)]
        with pytest.raises(W2SError) as e:
            b.complete(reqs[:1], 4, SP)
        assert str(e.value) == f"{b.base_url}/completions {message}"


def test_retry_after_and_error_bodies_are_read_as_engines_send_them():
    """Retry-After in seconds (never negative; an HTTP date falls back to w2s's own backoff),
    and the one line quoted from an error body: OpenAI's {"error": {"message"}}, a bare
    {"message"}, other JSON as it came, or the text."""
    import httpx

    from w2s.models.http import _error_message, _retry_after

    assert [_retry_after(v) for v in ("0", "2.5", "-3", "", None,
                                      "Wed, 21 Oct 2026 07:28:00 GMT")] == \
        [0.0, 2.5, 0.0, None, None, None]
    bodies = [({"error": {"message": "model not found\nmore"}}, "model not found"),
              ({"error": "plain"}, "plain"), ({"message": "bad thing"}, "bad thing"),
              ({"detail": "x"}, "{'detail': 'x'}"), (["boom"], "['boom']")]
    for body, want in bodies:
        assert _error_message(httpx.Response(400, json=body)) == want, body
    assert _error_message(httpx.Response(502, text="Bad Gateway\n<html>")) == "Bad Gateway"
    assert _error_message(httpx.Response(502, text="")) == "no message"
    long = "x" * 299 + "yz" + "w" * 99  # one line of 400 characters: the first 300 are quoted
    assert _error_message(httpx.Response(500, text=long)) == "x" * 299 + "y"


def test_a_spent_retry_budget_is_one_line(engine):
    engine.faults = [("status", 503, 0)] * 10
    with pytest.raises(W2SError, match=r"/completions: gave up after 3 tries \(HTTP 503: "):
        w2s.sample(backend(engine, max_retries=2), None, ["p"], SP)


def test_a_failing_tokenize_endpoint_is_named_once_in_its_line():
    """/tokenize lives outside the API root: its error names that URL, not the root glued to
    it (a router with no live replica answered 503 there, and the line read
    ``http://h/v1http://h/tokenize``)."""
    e = FakeEngine(tokenize=True)
    try:
        e.tokenize_faults = [503] * 3
        with pytest.raises(W2SError, match=r"^http://127\.0\.0\.1:\d+/tokenize: gave up after "
                           r"2 tries \(HTTP 503: no worker\)$"):
            w2s.sample(backend(e, max_retries=1), None, ["p"], SP)
    finally:
        e.close()


def test_errors_that_retrying_cannot_fix_are_one_line(engine, pair):
    with pytest.raises(W2SError, match=r"^base.model: 'nope' is not served by .*, which "
                                       r"serves fake$"):
        w2s.sample(OpenAIBackend(engine.url, "nope"), None, ["p"], SP)
    engine.api_key = "right"
    try:
        with pytest.raises(W2SError, match=r"^base.api_key was refused by .* \(HTTP 401\); give "
                                           r"the engine's key \(or set OPENAI_API_KEY\)$"):
            w2s.sample(OpenAIBackend(engine.url, "fake", api_key="wrong"), None, ["p"], SP)
        r = CliRunner().invoke(cli, ["generate", "--base-url", engine.url, "--base-model", "fake",
                                     "--base-api-key", "wrong", "--prompt", "p", "--quiet"])
        assert r.exit_code == 2 and r.stderr.startswith("error: --base-api-key was refused by")
    finally:
        engine.api_key = None
    engine.model = "other"  # the server stops serving our model after the check
    b = OpenAIBackend(engine.url, "fake")
    b._checked = True
    with pytest.raises(W2SError, match=r"refused the request \(HTTP 404\): The model `fake` "
                                       r"does not exist\.$"):
        w2s.sample(b, None, ["p"], SP)
    with pytest.raises(W2SError, match=r"^cannot reach http://127\.0\.0\.1:9/v1 \("):
        w2s.sample(OpenAIBackend("http://127.0.0.1:9", "m"), None, ["p"], SP)
    with pytest.raises(W2SError, match=r"^eft needs next-token log-probabilities; this backend"):
        w2s.eft(backend(engine), pair, ["p"])


def test_bad_settings_are_refused(engine):
    for kw, msg in [({"max_concurrency": 0}, "max_concurrency must be >= 1"),
                    ({"timeout": 0}, "timeout must be > 0"),
                    ({"chat": True}, "^base.tokenizer must have a chat template when chat is on"),
                    ({"token_prompts": "yes"}, "token_prompts must be true, false or unset"),
                    ({"token_prompts": True, "logprobs": False}, "token_prompts needs logprobs")]:
        with pytest.raises(W2SError, match=msg):
            OpenAIBackend(engine.url, "fake", **kw)
    with pytest.raises(W2SError, match="must start with http"):
        OpenAIBackend("localhost:8000", "m")


# ------------------------------------------------------------------ the CLI over HTTP
def test_generate_over_http_matches_the_python_api(engine, tiny_paths):
    import json

    from click.testing import CliRunner

    from w2s.cli import cli

    args = ["generate", "--base-url", engine.url, "--base-model", "fake", "--tuned",
            tiny_paths["tuned"], "--untuned", tiny_paths["untuned"], "--method", "cbs",
            "--w", "2", "--k", "2", "--l", "3", "--max-new-tokens", "6", "--seed", "5",
            "--prompt", "The movie was", "--json"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)
    [want] = w2s.cbs(backend(engine), w2s.PairGuide.load(tiny_paths["tuned"],
                                                         tiny_paths["untuned"]),
                     ["The movie was"], SearchParams(2, 2, 3), SamplingParams(max_new_tokens=6,
                                                                             seed=5))
    assert row["response"] == want.text and row["score"] == pytest.approx(want.score, abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--base-url", "URL"], "--base-url needs --base-model"),
    (["--base", "zoo:base", "--base-url", "http://x"], "give the base as --base MODEL or as"),
    (["--base", "zoo:base", "--base-model", "m"], "--base-model and --base-tokenizer go with"),
    ([], "give the base as --base MODEL or as --base-url URL --base-model NAME"),
    (["--base-url", "http://127.0.0.1:9/v1", "--base-model", "m", "--method", "sample"],
     "cannot reach http://127.0.0.1:9/v1"),
])
def test_bad_engine_flags_are_one_line(args, message):
    from click.testing import CliRunner

    from w2s.cli import cli

    out = CliRunner().invoke(cli, ["generate", *args, "--prompt", "x"])
    said = without_stages(out.output)
    assert out.exit_code == 2 and said.count("\n") == 1 and message in said, out.output


def test_eft_over_http_is_the_capability_error(engine, tiny_paths):
    from click.testing import CliRunner

    from w2s.cli import cli

    out = CliRunner().invoke(cli, ["generate", "--base-url", engine.url, "--base-model", "fake",
                                   "--tuned", tiny_paths["tuned"], "--untuned",
                                   tiny_paths["untuned"], "--method", "eft", "--prompt", "x"])
    assert out.exit_code == 2
    assert without_stages(out.output).startswith(
        f"error: eft needs next-token log-probabilities; this backend (fake@{engine.url}) does "
        "not offer them")


# ------------------------------------------------------------------ eval over HTTP
def _engine_config(url: str, methods: list) -> dict:
    return {"name": "http", "task": "sentiment", "base": {"url": url, "model": "fake"},
            "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}, "prompts": 4,
            "seeds": [0, 1], "sampling": {"max_new_tokens": 4}, "batch_size": 8,
            "methods": methods}


def test_an_interrupted_eval_over_http_resumes_without_losing_or_repeating_rows(engine,
                                                                               tmp_path):
    from w2s.evaluate.config import parse_config
    from w2s.evaluate.run import run_eval
    from w2s.evaluate.store import read_rows
    from w2s.request import BaseRef

    cfg = parse_config(_engine_config(engine.url, ["sample", {"method": "cbs", "w": 2, "k": 2,
                                                                 "l": 2}]), tmp_path / "c.yaml")
    assert cfg.base == BaseRef(model="fake", url=engine.url)
    assert cfg.base_label == f"fake@{engine.url}"
    # healthy for the first batch (4 completions, 4 scorings), then down for good
    engine.faults = [None] * 8 + [("status", 503, 0)] * 50
    with pytest.raises(W2SError, match="gave up after"):
        run_eval(cfg, tmp_path / "out", show_progress=False)
    kept = read_rows(tmp_path / "out" / "results.jsonl")
    assert 0 < len(kept) < 16
    engine.faults = []
    rows = run_eval(cfg, tmp_path / "out", show_progress=False)
    keys = [(r["method"], r["seed"], r["prompt_index"]) for r in rows]
    assert len(rows) == 16 and len(set(keys)) == 16
    on_disk = read_rows(tmp_path / "out" / "results.jsonl")
    assert len(on_disk) == 16 and on_disk[: len(kept)] == kept  # the first rows were kept as is
    for r in rows:  # the base log-likelihood comes from the engine's echoed logprobs
        assert r["kl_kind"] in ("exact", "bound") and r["base_tokens"] > 0
        assert r["base_logp"] == -r["response_tokens"] == -len(r["response"].split())


@pytest.mark.parametrize("base, message", [
    ({"url": "http://x", "model": "m", "port": 1}, "unknown base key(s) port"),
    ({"url": "x", "model": "m"}, "base.url must start with http"),
    ({"url": "http://x"}, "base.model must be a non-empty string"),
    ({"url": "http://x", "model": "m", "max_concurrency": "8"}, "base.max_concurrency has the"),
])
def test_bad_engine_bases_in_configs(tmp_path, base, message):
    from w2s.evaluate.config import parse_config

    with pytest.raises(W2SError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config({**_engine_config("http://x", ["sample"]), "base": base},
                     tmp_path / "c.yaml")


def test_overlapping_groups_give_the_same_results_and_take_turns_at_the_guide(engine):
    """An engine base splits a search's prompts into ``overlap`` groups run at once: the
    results equal one group at a time, the guide serves the groups from two threads, and
    never two calls at once (one group scores while the other waits on the engine)."""
    import threading

    class SlowGuide(CountGuide):
        def __init__(self) -> None:
            super().__init__()
            self.spans: list[tuple[float, float, str]] = []

        def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001
            t0 = time.perf_counter()
            time.sleep(0.02)
            out = super().score_with_cost(prompts, responses, ended)
            self.spans.append((t0, time.perf_counter(), threading.current_thread().name))
            return out

    prompts = ["p", "q", "r", "s"]
    results = {}
    for ways in (1, 2):
        g = SlowGuide()
        b = backend(engine, overlap=ways)
        results[ways] = (w2s.cbs(b, g, prompts, SearchParams(2, 3, 2), SP, return_all=True),
                         w2s.sample(b, None, prompts, SP, n=3))
        threads = {name for _, _, name in g.spans}
        if ways == 2:
            assert len(threads) == 2 and all(n.startswith("w2s-group") for n in threads)
            spans = sorted(g.spans)
            assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # never two at once
        else:
            assert threads == {threading.current_thread().name}
    (cbs1, s1), (cbs2, s2) = results[1], results[2]
    assert [r.to_dict() | {"cost": None} for r in cbs1] == \
        [r.to_dict() | {"cost": None} for r in cbs2]
    assert [r.cost.base_tokens for r in cbs1] == [r.cost.base_tokens for r in cbs2]
    assert [[c.text for c in r.candidates] for r in s1] == [[c.text for c in r.candidates]
                                                            for r in s2]
    with pytest.raises(W2SError, match="overlap must be >= 1"):
        backend(engine, overlap=0)


def test_chat_prompts_are_templated_client_side_and_need_a_tokenizer(engine):
    """The engine continues the chat template's rendering (the chat endpoint cannot continue
    a partial assistant turn), as tests/test_vllm.py checks with a real vLLM; here against the
    fake engine, in process, so mutation testing sees it. A ChatPrompt is templated even
    without ``chat``; plain text only with it; no tokenizer is one line naming the flag."""
    import copy

    from w2s.chat import ChatPrompt
    from w2s.models.loading import load_tokenizer
    from w2s.zoo import ZOO_DIR

    tok_dir = str(ZOO_DIR / "base")
    chat = backend(engine, chat=True, tokenizer=tok_dir)
    assert chat.format_prompt("Review this film.") == "<|user|>Review this film.<|assistant|>"
    body = chat.body(Request("Review this film.", " it"), 5, SamplingParams(seed=0))
    assert body["prompt"] == "<|user|>Review this film.<|assistant|> it"
    plain = backend(engine, tokenizer=tok_dir)
    assert plain.format_prompt("Review this film.") == "Review this film."
    turn = ChatPrompt([{"role": "user", "content": "Hi"}])
    assert plain.format_prompt(turn) == "<|user|>Hi<|assistant|>"
    tok = load_tokenizer(tok_dir)
    assert plain.prompt_tokens(turn) == len(tok("<|user|>Hi<|assistant|>",
                                                add_special_tokens=False)["input_ids"])
    assert backend(engine).prompt_tokens("Hi") is None
    with pytest.raises(W2SError, match=r"^base.tokenizer is needed to format chat messages for "
                                       r"fake@.*: a tokenizer with a chat template$"):
        backend(engine).format_prompt(turn)
    with pytest.raises(W2SError, match=r"^base.tokenizer must have a chat template when chat"):
        backend(engine, chat=True)
    bare = backend(engine, tokenizer=tok_dir)
    bare.tokenizer = copy.deepcopy(bare.tokenizer)
    bare.tokenizer.chat_template = None
    with pytest.raises(W2SError, match=r"^model 'fake@.*' has no chat template, so it cannot "):
        bare.format_prompt(turn)
    [r] = w2s.sample(chat, None, ["Review this film."], SamplingParams(seed=0, max_new_tokens=4))
    assert r.text and engine.bodies[-1]["prompt"].startswith("<|user|>Review this film.<|assistant|>")


def test_the_server_is_checked_once_and_an_empty_prompt_is_one_line(engine):
    """``check_prompts`` reaches the server (``/v1/models``) on the first call only, not once
    per call; an empty prompt is refused in one line before any request."""
    b = backend(engine)
    b.check_prompts(["p"], 4)
    b.check_prompts(["q"], 4)
    w2s.sample(b, None, ["p"], SP)
    assert engine.gets == ["/v1/models"]
    with pytest.raises(W2SError, match=r"^the prompt '' is empty; an engine needs text to "
                                       r"continue$"):
        b.check_prompts([""], 4)


def test_a_body_sends_ids_only_where_asked_and_every_top_k_it_is_given():
    """Once a prompt's ids are known, a body sends them (the default, and what sampling asks
    for), but not when ``token_ids`` is off, as Nudging's top-1 requests need the tokens'
    text; ``top_k`` goes to the engine from 1 up (0 means off, and is left out)."""
    e = FakeEngine(tokenize=True)
    try:
        b = backend(e)
        b.tokenize_prompts(["p q"])
        req = Request("p q", "")
        assert b.body(req, 4, SP)["prompt"] == [1000, 1001]
        off = b.body(req, 4, SP, token_ids=False)
        assert off["prompt"] == "p q" and "return_tokens_as_token_ids" not in off
        text_only = backend(e, token_prompts=False)
        text_only._ids.update(b._ids)  # even with the ids at hand: text was asked for
        assert text_only.body(req, 4, SP)["prompt"] == "p q"
        assert b.body(req, 4, SamplingParams(top_k=1))["top_k"] == 1
        assert "top_k" not in b.body(req, 4, SamplingParams(top_k=0))
    finally:
        e.close()


def test_token_ids_are_read_only_from_token_id_strings():
    """vLLM's ``return_tokens_as_token_ids`` writes each token ``token_id:N``; an engine that
    ignored the option sends text, and then no id may be guessed from it."""
    from w2s.models.openai_api import _token_ids

    assert _token_ids(["token_id:1", "token_id:22"]) == [1, 22]
    assert _token_ids([]) == [] and _token_ids(None) is None
    assert _token_ids(["token_id:1", "abcdefghi12"]) is None  # 9 characters, then digits
    assert _token_ids(["token_id:1", 7]) is None and _token_ids(["token_id:x"]) is None


def test_the_sync_api_answers_inside_a_running_event_loop(engine):
    """In a notebook an event loop already runs in the thread, where ``asyncio.run`` refuses:
    the requests then run in a worker thread with a loop of its own, and answer the same."""
    import asyncio

    want = [c.text for r in w2s.sample(backend(engine), None, ["p", "q"], SP, n=2)
            for c in r.candidates]

    async def inside() -> list[str]:
        return [c.text for r in w2s.sample(backend(engine), None, ["p", "q"], SP, n=2)
                for c in r.candidates]

    assert asyncio.run(inside()) == want
