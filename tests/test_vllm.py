"""The black-box backend against a real engine: vLLM's CPU build serving the zoo base over
HTTP on loopback (started by the ``vllm_url`` fixture; skipped, with the reason, where the
engine cannot be installed). Sampling, Best-of-N and CBS run unchanged; ``n``, stop strings,
finish reasons, token counts, repeatable seeds and client-side chat templates are checked."""

from __future__ import annotations

import contextlib
import json

import pytest
from click.testing import CliRunner

import w2s
from w2s import BestOfNParams, SamplingParams, SearchParams
from w2s.cli import cli
from w2s.models.base import Request
from w2s.models.openai_api import OpenAIBackend
from w2s.zoo import ZOO_DIR

pytestmark = pytest.mark.slow
PROMPTS = ["the movie was", "i thought this film"]


@pytest.fixture(scope="module")
def engine(vllm_url):
    return OpenAIBackend(vllm_url, "zoo-base")


def test_n_continuations_with_counted_tokens_and_finish_reasons(engine):
    before = engine.stats["completion_tokens"]
    [conts] = engine.complete([Request("the movie was", streams=(1, 2, 3))], 8,
                              SamplingParams(seed=0, temperature=1.0))
    assert len(conts) == 3 and len({c.response for c in conts}) == 3
    assert all(c.finish_reason == "length" and c.n_tokens == 8 for c in conts)
    assert engine.stats["completion_tokens"] - before == 24  # usage agrees with the count
    again = engine.complete([Request("the movie was", streams=(1, 2, 3))], 8,
                            SamplingParams(seed=0, temperature=1.0))[0]
    assert [c.response for c in again] == [c.response for c in conts]  # seeds repeat


def test_stop_strings_end_a_response_where_they_start(engine):
    sp = SamplingParams(max_new_tokens=40, temperature=1.0, seed=2, stop=(".",))
    results = w2s.sample(engine, None, PROMPTS, sp, n=4)
    ended = [c for r in results for c in r.candidates if c.finished]
    assert ended, "no sample hit the stop string"
    free = w2s.sample(engine, None, PROMPTS, SamplingParams(max_new_tokens=40, temperature=1.0,
                                                            seed=2), n=4)
    for r, f in zip(results, free):
        for c, g in zip(r.candidates, f.candidates):
            assert "." not in c.text and g.text.startswith(c.text)
            assert c.finished == ("." in g.text)


def test_a_stop_string_that_spans_two_chunks_is_cut_client_side(engine):
    """The engine sees only a chunk's new text, so a stop string that begins in the response
    so far and ends in the new chunk is the client's to find (as CBS grows a response)."""
    sp = SamplingParams(seed=0, temperature=1.0)
    [[a]] = engine.complete([Request("the movie was", streams=(7,))], 4, sp)
    grow = Request("the movie was", a.response, None, (7,), tokens=4)
    [[b]] = engine.complete([grow], 4, sp)
    new = b.response[len(a.response):]
    assert len(a.response) >= 2 and len(new) >= 2
    stop = a.response[-2:] + new[:2]
    full = a.response + new
    [[cut]] = engine.complete([grow], 4, SamplingParams(seed=0, temperature=1.0, stop=(stop,)))
    assert cut.response == full[: full.index(stop)] and cut.finish_reason == "stop"


def test_sampling_bon_and_cbs_run_through_the_engine(engine, zoo_pair):
    sp = SamplingParams(max_new_tokens=12, seed=4)
    s = w2s.sample(engine, None, PROMPTS, sp)
    b = w2s.bon(engine, zoo_pair, PROMPTS, BestOfNParams(4), sp, return_all=True)
    c = w2s.cbs(engine, zoo_pair, PROMPTS, SearchParams(2, 2, 4), sp, return_all=True)
    for r in s + b + c:
        assert r.text and r.cost.base_tokens > 0
    for r in b + c:  # ranked by the guide, and the guide's scores are of the returned texts
        assert [x.score for x in r.candidates] == sorted([x.score for x in r.candidates],
                                                         reverse=True)
        want = zoo_pair.score([r.prompt] * len(r.candidates), [x.text for x in r.candidates],
                              [x.finished for x in r.candidates])
        assert [x.score for x in r.candidates] == pytest.approx(want.tolist(), abs=1e-3)
    for r in b:  # N samples of at most max_new_tokens each, all counted
        unfinished = sum(not x.finished for x in r.candidates)
        assert 12 * unfinished <= r.cost.base_tokens <= 12 * 4
    again = w2s.cbs(engine, zoo_pair, PROMPTS, SearchParams(2, 2, 4), sp)
    assert [r.text for r in again] == [r.text for r in c]  # seeds repeat


@pytest.mark.parametrize("method,knob", [("pruned_bon", w2s.PrunedBoNParams(4, 0.5, 4)),
                                         ("particles", w2s.ParticleParams(4, 4, 0.5)),
                                         ("treebon", w2s.TreeBoNParams(4, 2, 4)),
                                         ("mcts", w2s.MCTSParams(3, 2, 4))])
def test_the_budget_searches_run_through_the_engine(engine, zoo_pair, method, knob):
    sp = SamplingParams(max_new_tokens=12, seed=4)
    spec = w2s.decoders()[method]
    got = spec.run(engine, zoo_pair, PROMPTS, knob, sp, return_all=True)
    for r in got:
        assert r.text and 0 < r.cost.base_tokens <= 4 * 12 + (12 if method == "mcts" else 0)
        assert [x.score for x in r.candidates] == sorted([x.score for x in r.candidates],
                                                         reverse=True)
        want = zoo_pair.score([r.prompt] * len(r.candidates), [x.text for x in r.candidates],
                              [x.finished for x in r.candidates])
        assert [x.score for x in r.candidates] == pytest.approx(want.tolist(), abs=1e-3)
    again = spec.run(engine, zoo_pair, PROMPTS, knob, sp)
    assert [r.text for r in again] == [r.text for r in got]  # seeds repeat


def test_chat_prompts_are_templated_client_side(vllm_url):
    chat = OpenAIBackend(vllm_url, "zoo-base", chat=True,
                         tokenizer=str(ZOO_DIR / "base"))
    body = chat.body(Request("Review this film.", " it"), 5, SamplingParams(seed=0))
    assert body["prompt"] == "<|user|>Review this film.<|assistant|> it"
    [r] = w2s.sample(chat, None, ["Review this film."], SamplingParams(seed=0, max_new_tokens=6))
    assert r.text and "<|" not in r.text


def test_generate_cli_over_vllm(vllm_url):
    out = CliRunner().invoke(cli, ["generate", "--base-url", vllm_url, "--base-model",
                                   "zoo-base", "--tuned", "zoo:tuned", "--untuned",
                                   "zoo:untuned", "--method", "cbs", "--w", "2", "--k", "2",
                                   "--l", "4", "--max-new-tokens", "8", "--prompt",
                                   "the movie was", "--json"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)
    assert row["response"] and row["cost"]["base_tokens"] >= 8


def test_eval_with_an_engine_base_scores_text_like_the_same_model_in_process(vllm_url,
                                                                            tmp_path):
    from w2s.evaluate.config import parse_config
    from w2s.evaluate.metrics import base_loglik
    from w2s.evaluate.run import run_eval

    cfg = parse_config({"name": "vllm", "task": "sentiment",
                        "base": {"url": vllm_url, "model": "zoo-base"},
                        "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
                        "prompts": 3, "seeds": 1, "sampling": {"max_new_tokens": 10},
                        "methods": ["sample", {"method": "cbs", "w": 2, "k": 2, "l": 5}]},
                       tmp_path / "c.yaml")
    rows = run_eval(cfg, tmp_path / "out", show_progress=False)
    assert len(rows) == 6
    local = w2s.HFModel.load(str(ZOO_DIR / "base"))
    ids = local.encode_responses([r["response"] for r in rows])
    want = base_loglik(local, [r["prompt"] for r in rows], ids)
    for r, w, x in zip(rows, want, ids):
        if r["response"]:
            assert r["base_logp"] == pytest.approx(w, abs=1e-3)
            assert r["response_tokens"] == len(x)
        assert set(r["gold"]) == {"vader", "textblob"}


def test_nudging_through_the_engine_reports_the_small_models_share(engine, zoo_pair):
    got = w2s.nudging(engine, zoo_pair, PROMPTS, w2s.NudgingParams(gamma=0.3),
                      SamplingParams(max_new_tokens=12, seed=1))
    for r in got:
        assert r.text and 0 <= r.stats["small_fraction"] <= 1 and r.cost.base_tokens > 0
    assert any(r.stats["nudges"] > 0 for r in got)
    top = engine.complete_top([Request("the movie was", streams=(5,))], 4, SamplingParams(seed=0))[0][0]
    assert len(top.top_logprobs) == 4 == len(top.prefixes) - 1
    assert all(lp <= 0 for lp in top.top_logprobs) and top.prefixes[-1] == top.response
    assert all(a == b[: len(a)] for a, b in zip(top.prefixes, top.prefixes[1:]))


def test_w2s_serve_in_front_of_the_engine_answers_like_the_library(vllm_url, engine, zoo_pair,
                                                                   tmp_path):
    """``w2s serve --base-url``: the base behind vLLM, the guide in the server, a client on
    the OpenAI API in front; its answers (streamed too) equal the library's through the same
    engine."""
    import httpx
    import openai
    from conftest import start_w2s_serve

    from w2s.decoding import get_decoder

    proc, srv = start_w2s_serve(tmp_path, "--base-url", vllm_url, "--base-model", "zoo-base",
                                "--base-tokenizer", "zoo:base", "--tuned", "zoo:tuned",
                                "--untuned", "zoo:untuned")
    try:
        methods = httpx.get(srv.url + "/w2s/methods", headers=srv.headers()).json()["methods"]
        why = {m["name"]: m["why"] for m in methods if not m["available"]}
        assert set(why) == {"eft", "dlf", "wsd"} and "log-probabilities" in why["eft"]  # text only
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.api_key)
        knobs = {"w": 2, "k": 2, "l": 4}
        kw = dict(model="w2s", prompt="The movie was", max_tokens=12, seed=2,
                  extra_body={"w2s": {"method": "cbs", **knobs}})
        out = client.completions.create(**kw)
        spec = get_decoder("cbs")
        [ref] = spec.run(engine, zoo_pair, ["The movie was"], spec.make_params(knobs),
                         w2s.SamplingParams(max_new_tokens=12, seed=2))
        assert out.choices[0].text == ref.text
        streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw)
                           if c.choices)
        assert streamed == ref.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_token_id_prompts_continue_exactly_like_text_prompts(vllm_url):
    """A kept prefix sent as the engine's own prompt ids + the sampled ids draws the same
    continuation as its text, for the same seed, wherever the text re-tokenizes to those ids
    (and only the ids are exact where it does not)."""
    from w2s.models.loading import load_tokenizer

    by_ids = OpenAIBackend(vllm_url, "zoo-base", token_prompts=True)
    by_text = OpenAIBackend(vllm_url, "zoo-base", token_prompts=False)
    sp = SamplingParams(seed=0, temperature=0.8)
    first = [Request(p, streams=(3, 4)) for p in PROMPTS]
    a, b = by_ids.complete(first, 6, sp), by_text.complete(first, 6, sp)
    assert [[c.response for c in x] for x in a] == [[c.response for c in x] for x in b]
    tok = load_tokenizer(str(ZOO_DIR / "base"))
    for x in a:
        for c in x:  # the ids are the engine's sampled tokens: they decode to the response
            assert c.token_ids is not None and len(c.token_ids) == c.n_tokens
            assert tok.decode(c.token_ids) == c.response
    second = [Request(p, x[0].response, tuple(x[0].token_ids), (5,), tokens=6)
              for p, x in zip(PROMPTS, a)]
    a2, b2 = by_ids.complete(second, 6, sp), by_text.complete(second, 6, sp)
    assert by_ids.stats["token_prompts"] == 4 and by_text.stats["token_prompts"] == 0
    canonical = 0
    for p, r, x, y in zip(PROMPTS, second, a2, b2):
        prompt_ids = by_ids._ids[p]
        if tok(p + r.response)["input_ids"] == prompt_ids + list(r.response_ids):
            canonical += 1
            assert x[0].response == y[0].response
    assert canonical >= 1, "no kept prefix re-tokenized to its sampled ids: nothing compared"


def test_token_ids_out_of_the_engines_vocabulary_are_one_line(vllm_url):
    b = OpenAIBackend(vllm_url, "zoo-base", token_prompts=True, max_retries=0)
    with pytest.raises(w2s.W2SError, match=r"127\.0\.0\.1:\d+/v1/completions refused the "
                                           r"request \(HTTP 400\)") as e:
        b.complete([Request("the movie was", " x", (10**7,), (0,), tokens=1)], 4,
                   SamplingParams(seed=0))
    assert "\n" not in str(e.value)


def test_a_guide_model_behind_the_engine_scores_like_the_same_model_in_process(vllm_url):
    """The zoo base served by vLLM as one model of a pair (``REF@URL``): its log-likelihoods,
    and the pair's scores, equal the in-process model's within float tolerance; searches pick
    the same candidates."""
    from w2s.models.backends import load_model
    from w2s.models.engine_lm import EngineLM

    served = load_model(f"zoo:base@{vllm_url}")
    assert isinstance(served, EngineLM) and served.model == "zoo-base"
    local = w2s.HFModel.load("zoo:base")
    texts = [" a great film, i loved it", " boring and far too long", " ok", ""]
    ids = local.encode_responses(texts)
    prompts = PROMPTS + PROMPTS
    assert served.encode_prompt(PROMPTS[0]) == local.encode_prompt(PROMPTS[0])
    got, want = served.token_loglik(prompts, ids), local.token_loglik(prompts, ids)
    assert got[-1] == want[-1] == 0.0
    assert got == pytest.approx(want, abs=2e-3, rel=1e-4)
    remote = w2s.PairGuide.load(f"zoo:base@{vllm_url}", "zoo:untuned")
    inproc = w2s.PairGuide(local, remote.untuned)
    ended = [True, False, True, False]
    assert remote.score(prompts, texts, ended).tolist() == pytest.approx(
        inproc.score(prompts, texts, ended).tolist(), abs=2e-3, rel=1e-4)
    sp = SamplingParams(max_new_tokens=12, temperature=0.8, seed=4)
    a = w2s.cbs(local, remote, PROMPTS, SearchParams(2, 2, 4), sp)
    b = w2s.cbs(local, inproc, PROMPTS, SearchParams(2, 2, 4), sp)
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=2e-3, rel=1e-4)
    args = ["generate", "--base", "zoo:base", "--untuned", "zoo:untuned", "--method", "cbs",
            "--w", "2", "--k", "2", "--l", "4", "--max-new-tokens", "12", "--seed", "4",
            "--prompt", PROMPTS[0], "--json"]
    rows = [json.loads(CliRunner().invoke(cli, [*args, "--tuned", t]).stdout)
            for t in (f"zoo:base@{vllm_url}", "zoo:base")]  # the CLI takes REF@URL too
    assert rows[0]["response"] == rows[1]["response"] and rows[0]["response"]


def test_a_guide_url_serving_another_tokenizer_is_one_line(vllm_url, tiny_paths):
    from w2s.models.engine_lm import EngineLM

    other = EngineLM(vllm_url, tiny_paths["base"])
    with pytest.raises(w2s.W2SError, match=r"/v1 serves 'zoo-base' with another tokenizer "
                                           r"than .* names") as e:
        other.token_loglik(["hi"], [[1, 2]])
    assert "\n" not in str(e.value)
    with pytest.raises(w2s.W2SError, match=r"'http://' is not an engine URL"):
        w2s.PairGuide.load("zoo:base@http://", "zoo:untuned")
    with pytest.raises(w2s.W2SError, match=r"'nope' is not served by .*, which serves zoo-base"):
        EngineLM(vllm_url, "zoo:base", model="nope")


def _served(url: str) -> float:
    """Requests a vLLM server has finished, from its metrics."""
    from w2s.vllm_server import metric_totals

    return metric_totals(url, "request_success")[0]


def _eval_config(url: str, where, retries: int = 1):  # noqa: ANN001, ANN202
    from w2s.evaluate.config import parse_config

    return parse_config({"name": "routed", "task": "sentiment",
                         "base": {"url": url, "model": "zoo-base", "max_retries": retries,
                                  "timeout": 20},
                         "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
                         "prompts": 4, "seeds": [0, 1], "sampling": {"max_new_tokens": 8},
                         "methods": ["sample", {"method": "cbs", "w": 2, "k": 2, "l": 4}]},
                        where / "c.yaml")


def _eval_until_a_replica_dies(cfg, out, replica):  # noqa: ANN001, ANN202
    """Run the eval in a thread, stop ``replica`` once 4 rows are written; the eval's error
    (None if it finished)."""
    import threading
    import time

    from w2s.evaluate.run import run_eval
    from w2s.vllm_server import stop_server

    failed: list[BaseException | None] = [None]

    def go() -> None:
        try:
            run_eval(cfg, out, show_progress=False)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            failed[0] = e

    thread = threading.Thread(target=go)
    thread.start()
    results, deadline = out / "results.jsonl", time.monotonic() + 120
    while not (results.is_file() and results.read_text().count("\n") >= 4):
        assert thread.is_alive() and time.monotonic() < deadline, failed[0]
        time.sleep(0.05)
    stop_server(replica)
    thread.join()
    return failed[0]


def _rows(out):  # noqa: ANN001, ANN202
    from w2s.evaluate.store import read_rows

    return {(r["method"], r["prompt"], r["seed"]): r for r in read_rows(out / "results.jsonl")}


def test_two_replicas_behind_vllm_router_keep_each_prompt_on_one(vllm_url, tmp_path):
    """Two vLLM servers behind vllm-router (consistent hashing on X-Session-ID): every request
    of one prompt's search lands on one replica (read from each server's metrics), prompts use
    both, results equal one replica's (seeded). Faults lose nothing: an eval whose router loses
    its only replica stops with one line and resumes once the replica is back; an eval that
    loses one of two replicas is finished by the other, with the same rows."""
    import time

    import httpx

    from w2s.evaluate.run import run_eval
    from w2s.vllm_server import free_port, router_binary, vllm_router, vllm_server

    try:
        router_binary()
    except w2s.W2SError as e:
        pytest.skip(str(e))
    port = free_port()  # the second replica comes back on the same port
    quick = ["--health-check-interval-secs", "1", "--cb-timeout-duration-secs", "2"]
    with contextlib.ExitStack() as stack:
        b = stack.enter_context(vllm_server(ZOO_DIR / "base", "zoo-base", port=port,
                                            log=tmp_path / "b.log", one_process=True))
        lonely = stack.enter_context(vllm_router([b], log=tmp_path / "r1.log", flags=quick))
        cfg, out = _eval_config(lonely, tmp_path), tmp_path / "lonely"
        e = _eval_until_a_replica_dies(cfg, out, b)
        assert isinstance(e, w2s.W2SError), e  # the router's only replica went down
        assert "\n" not in str(e) and str(e).startswith(lonely), str(e)
        before = _rows(out)
        assert 4 <= len(before) < 16
        other = stack.enter_context(vllm_server(ZOO_DIR / "base", "zoo-base", port=port,
                                                log=tmp_path / "b2.log", one_process=True))
        deadline = time.monotonic() + 60  # until the router's health check admits it again
        while httpx.post(lonely + "/completions", json={"model": "zoo-base", "prompt": "a",
                                                        "max_tokens": 1}).status_code != 200:
            assert time.monotonic() < deadline, "the router did not take the replica back"
            time.sleep(0.5)
        run_eval(cfg, out, show_progress=False)  # resumes where it stopped
        after = _rows(out)
        assert len(after) == 16 and all(after[k] == r for k, r in before.items())

        _two_replicas(vllm_url, other, tmp_path)


def _two_replicas(vllm_url: str, other: str, tmp_path) -> None:  # noqa: ANN001
    from w2s.evaluate.run import run_eval
    from w2s.vllm_server import vllm_router

    prompts = ["the movie was", "i thought this film", "the plot", "what a"]
    sp = SamplingParams(max_new_tokens=12, temperature=0.8, seed=1)
    guide = w2s.PairGuide.load("zoo:tuned", "zoo:untuned")
    with vllm_router([vllm_url, other], log=tmp_path / "router.log") as router:
        routed = OpenAIBackend(router, "zoo-base")
        used = []
        for i, p in enumerate(prompts + [f"review number {k}:" for k in range(8)]):
            before = (_served(vllm_url), _served(other))
            if i < len(prompts):  # a search's rounds: 3 requests or more, one replica
                w2s.cbs(routed, guide, [p], SearchParams(2, 2, 4), sp)
            else:
                w2s.sample(routed, None, [p], sp)
            after = (_served(vllm_url), _served(other))
            grew = [b - a for a, b in zip(before, after)]
            assert min(grew) == 0 and max(grew) >= (3 if i < len(prompts) else 1), (p, grew)
            used.append(grew.index(max(grew)))
        assert 0 < sum(used) < len(used), f"12 prompts, replicas used: {used}"
        direct = w2s.cbs(OpenAIBackend(vllm_url, "zoo-base"), guide, prompts,
                         SearchParams(2, 2, 4), sp)
        again = w2s.cbs(routed, guide, prompts, SearchParams(2, 2, 4), sp)
        assert [r.text for r in again] == [r.text for r in direct]

        # one of two replicas dies during an eval: w2s retries (its default budget) until the
        # router's circuit breaker sends that replica's prompts to the other
        run_eval(_eval_config(vllm_url, tmp_path), tmp_path / "direct", show_progress=False)
        e = _eval_until_a_replica_dies(_eval_config(router, tmp_path, retries=6),
                                       tmp_path / "routed", other)
        assert e is None, e
        routed_rows, direct_rows = _rows(tmp_path / "routed"), _rows(tmp_path / "direct")
        assert len(routed_rows) == 16 and \
            {k: r["response"] for k, r in routed_rows.items()} == \
            {k: r["response"] for k, r in direct_rows.items()}
