"""What ``w2s serve`` promises under load and at its edges, checked in-process on the app itself
(its batcher, its queue, its wire), each by a test that a planted bug of its kind fails:

- a queue filled to exactly ``--max-queue`` by requests of several jobs each takes no more: the
  newcomer's own jobs are counted, and it gets 429 with ``Retry-After``;
- concurrent requests that differ only in the guide's weights never share a decoder call (each
  gets the answer it gets alone, with weights that flip the ranking);
- a response's totals are the sums of their parts, field by field, and each part is what the
  library reports for that choice;
- chat ``messages`` get every check ``prompt`` gets, from one table, in the same words.

A decoder ``hold`` (registered here) keeps the batcher's worker busy until the test opens its
gate, so what waits in the queue is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time

import httpx
import pytest

import w2s
from w2s import SamplingParams
from w2s.chat import ChatPrompt
from w2s.decoding import DecoderSpec, get_decoder, register, unregister

GATE = threading.Event()


def hold(backend, guide, prompts, sampling=None):  # noqa: ANN001, ANN201
    """Plain sampling, once the test opens the gate."""
    if not GATE.wait(60):
        raise RuntimeError("the test never opened the gate")
    return w2s.sample(backend, None, prompts, sampling)


@pytest.fixture(scope="module", autouse=True)
def _hold_decoder():
    register(DecoderSpec("hold", hold, "plain sampling once the test's gate opens",
                         guide="optional"))
    yield
    unregister("hold")


@contextlib.asynccontextmanager
async def served(server):  # noqa: ANN001
    """The app with its batcher running (its lifespan), and a client that talks to it."""
    from w2s.serve.app import create_app

    app = create_app(server)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w2s",
                                     timeout=120) as client:
            yield app.state.batcher, client


async def until(condition, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.005)


async def held(batcher, client):  # noqa: ANN001
    """Start a ``hold`` request and wait until the worker runs it: from now on, what is
    posted waits in the queue until :data:`GATE` opens."""
    GATE.clear()
    task = asyncio.create_task(client.post("/v1/completions", json={
        "prompt": "hold", "max_tokens": 2, "seed": 0, "w2s": {"method": "hold"}}))
    await until(lambda: batcher.running, "the hold request runs")
    return task


def post(client, body):  # noqa: ANN001, ANN201
    return asyncio.create_task(client.post("/v1/completions", json=body))


async def refused(batcher, client, body) -> httpx.Response:  # noqa: ANN001
    """Post ``body`` and return its answer, which must come at once: it is not queued."""
    queued, task = len(batcher.queue), post(client, body)
    await until(lambda: task.done() or len(batcher.queue) > queued, "answered or queued")
    assert task.done(), f"queued ({len(batcher.queue)} jobs wait), not refused"
    return task.result()


# ------------------------------------------------------------------ a queue full to the job
def test_a_queue_full_to_exactly_max_queue_refuses_the_next_request_counting_its_jobs(base,
                                                                                     pair):
    """--max-queue 5, the worker busy: a request of n=2 (2 jobs) waits; one of 2 prompts x n=2
    (4 jobs, 6 in all) is refused though 2 < 5 jobs wait; one of 3 prompts (3 jobs) fills the
    queue to exactly 5 and waits; one more single job is 429 with Retry-After. Each accepted
    request then gets the answers it would get alone, and the refused one succeeds on retry."""
    from w2s.serve.app import Limits, Server

    server = Server(base, pair, limits=Limits(max_queue=5, gather_ms=1))
    sample = {"max_tokens": 6, "w2s": {"method": "sample"}}

    async def scenario():
        async with served(server) as (batcher, client):
            first = await held(batcher, client)
            try:
                two = post(client, {**sample, "prompt": "The movie was", "n": 2, "seed": 1})
                await until(lambda: len(batcher.queue) == 2 or two.done(), "2 jobs wait")
                four = await refused(batcher, client, {
                    **sample, "prompt": ["The plot", "I thought"], "n": 2, "seed": 2})
                assert four.status_code == 429, four.text  # 2 + 4 > 5
                three = post(client, {**sample, "prompt": ["a", "b", "c"], "seed": 3})
                await until(lambda: len(batcher.queue) == 5 or three.done(), "5 jobs wait")
                assert not three.done(), three.result().text  # 2 + 3 = 5: it fits
                assert batcher.status()["queued_requests"] == 5
                one = await refused(batcher, client, {**sample, "prompt": "x", "seed": 4})
                assert one.status_code == 429, one.text  # 5 + 1 > 5
                assert len(batcher.queue) == 5  # neither refused request left a job behind
            finally:
                GATE.set()
            done = [await t for t in (first, two, three)]
            retried = await client.post("/v1/completions", json={**sample, "prompt": "x",
                                                                 "seed": 4})
            return four, one, done, retried

    four, one, (first, two, three), retried = asyncio.run(scenario())
    for busy, adds in ((four, 4), (one, 1)):
        assert busy.status_code == 429, busy.text
        assert busy.headers["retry-after"] == "1"
        err = busy.json()["error"]
        assert err["type"] == "rate_limit_error" and err["code"] == "rate_limit_exceeded"
        assert f"this request adds {adds}, over --max-queue 5" in err["message"], err
    assert all(r.status_code == 200 for r in (first, two, three, retried))

    def alone(prompt: str, seed: int) -> str:
        [r] = w2s.sample(base, None, [prompt], SamplingParams(seed=seed, max_new_tokens=6))
        return r.text

    assert [c["text"] for c in two.json()["choices"]] == [alone("The movie was", 1),
                                                         alone("The movie was", 2)]
    assert [c["text"] for c in three.json()["choices"]] == [alone(p, 3) for p in "abc"]
    assert retried.json()["choices"][0]["text"] == alone("x", 4)


def test_a_request_larger_than_the_whole_queue_is_a_400_not_a_429_forever(base, pair):
    """Retry-After would be a lie for a request no empty queue can take: 3 prompts x n=2 is
    6 jobs against --max-queue 5 (the defaults, 64 prompts x n=8 against 256, allow it too)."""
    from fastapi.testclient import TestClient

    from w2s.serve.app import Limits, Server, create_app

    server = Server(base, pair, limits=Limits(max_queue=5))
    with TestClient(create_app(server)) as c:
        r = c.post("/v1/completions", json={"prompt": ["a", "b", "c"], "n": 2, "max_tokens": 2,
                                            "w2s": {"method": "sample"}})
        assert r.status_code == 400, r.text
        assert r.json()["error"] == {
            "message": "3 prompt(s) x n 2 = 6 choices, more than this server's queue holds "
                       "(5, --max-queue); send fewer per request",
            "type": "invalid_request_error", "param": "n", "code": None}
        ok = c.post("/v1/completions", json={"prompt": ["a", "b", "c", "d", "e"],
                                             "max_tokens": 2, "w2s": {"method": "sample"}})
        assert ok.status_code == 200, ok.text


# ------------------------------------------------------------------ weights in the batch key
@pytest.fixture(scope="module")
def zoo_sum():
    """The zoo's base and a guide that sums two experts (positive sentiment and objectivity),
    as ``w2s serve --tuned zoo:tuned --tuned zoo:otuned --untuned zoo:untuned`` loads it."""
    from w2s.guides.spec import GuideRef
    from w2s.request import BaseRef, Loader

    loader = Loader()
    guide = loader.guide(GuideRef.parse({"tuned": ["zoo:tuned", "zoo:otuned"],
                                         "untuned": "zoo:untuned"}, where=""))
    assert len(guide.parts()) == 2
    return loader.base(BaseRef.parse("zoo:base", where="base")), guide


@pytest.mark.parametrize("method,knobs", [("bon", {"n": 4}), ("cbs", {"w": 2, "k": 2, "l": 4})])
def test_concurrent_requests_that_differ_only_in_weights_get_their_lone_answers(zoo_sum, method,
                                                                                knobs):
    """[1, -1] and [-1, 1] rank the same candidates in opposite orders: two such requests,
    queued together with the same prompt, seed and knobs, must not share a decoder call (a
    batch runs one guide, so one of them would get the other's answer)."""
    from w2s.serve.app import Limits, Server

    base, guide = zoo_sum
    server = Server(base, guide, limits=Limits(gather_ms=1))
    ups, downs = [1.0, -1.0], [-1.0, 1.0]

    def body(weights: list[float]) -> dict:
        return {"prompt": "The movie was", "max_tokens": 12, "seed": 3,
                "w2s": {"method": method, **knobs, "weights": weights}}

    async def scenario():
        async with served(server) as (batcher, client):
            first = await held(batcher, client)
            before = batcher.stats["batches"]
            try:
                up, down = post(client, body(ups)), post(client, body(downs))
                await until(lambda: len(batcher.queue) == 2, "both wait together")
            finally:
                GATE.set()
            together = [await t for t in (up, down)]
            await first
            batches = batcher.stats["batches"] - before
            alone = [await client.post("/v1/completions", json=body(w)) for w in (ups, downs)]
            return together, alone, batches

    together, alone, batches = asyncio.run(scenario())
    texts = [[r.json()["choices"][0]["text"] for r in rs] for rs in (together, alone)]
    spec = get_decoder(method)
    lib = [spec.run(base, guide.reweighted(w), ["The movie was"], spec.make_params(knobs),
                    SamplingParams(seed=3, max_new_tokens=12))[0].text for w in (ups, downs)]
    assert texts[1] == lib
    assert lib[0] != lib[1]  # the weights flip the ranking visibly
    assert texts[0] == lib
    assert batches == 2  # each ran in its own call


# ------------------------------------------------------------------ usage: the sum of its parts
def test_usage_and_cost_totals_are_the_sums_of_each_choices_own(zoo_sum):
    """2 prompts x n=2 by CBS: each choice's base and guide tokens are the library's for that
    prompt and seed (in the call the server makes: one per seed, both prompts in it); ``w2s.cost`` sums them (wall time: the slowest); ``usage`` counts each
    prompt's tokens once and every choice's response tokens; the streamed last chunk says the
    same; and the totals are not one another (guide tokens differ from base tokens here)."""
    from fastapi.testclient import TestClient

    from w2s.serve.app import Server, create_app

    base, guide = zoo_sum
    prompts, seed, knobs = ["The movie was", "I thought the plot"], 5, {"w": 2, "k": 2, "l": 3}
    body = {"prompt": prompts, "n": 2, "max_tokens": 9, "seed": seed,
            "w2s": {"method": "cbs", **knobs}}
    with TestClient(create_app(Server(base, guide))) as c:
        out = c.post("/v1/completions", json=body).json()
        lines = c.post("/v1/completions", json={**body, "stream": True,
                                                "stream_options": {"include_usage": True}}
                       ).text.splitlines()
    spec = get_decoder("cbs")  # the server runs one call per seed, both prompts in it
    calls = [spec.run(base, guide, prompts, spec.make_params(knobs),
                      SamplingParams(seed=seed + i, max_new_tokens=9)) for i in range(2)]
    refs = [calls[i][j] for j in range(len(prompts)) for i in range(2)]  # choice order
    choices = out["w2s"]["choices"]
    assert [c["text"] for c in out["choices"]] == [r.text for r in refs]
    for c, r in zip(choices, refs):
        assert (c["cost"]["base_tokens"], c["cost"]["guide_tokens"]) == \
            (r.cost.base_tokens, r.cost.guide_tokens)
    total, usage = out["w2s"]["cost"], out["usage"]
    assert total["base_tokens"] == sum(c["cost"]["base_tokens"] for c in choices)
    assert total["guide_tokens"] == sum(c["cost"]["guide_tokens"] for c in choices)
    assert total["wall_time_s"] == max(c["cost"]["wall_time_s"] for c in choices)
    assert total["guide_tokens"] != total["base_tokens"]
    assert usage["prompt_tokens"] == sum(len(base.encode_prompt(p)) for p in prompts)
    assert usage["completion_tokens"] == sum(len(r.token_ids) for r in refs)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    last = json.loads([x for x in lines if x.startswith("data: {")][-1][6:])
    assert last["usage"] == usage

    def tokens(cost: dict) -> tuple[int, int]:
        return cost["base_tokens"], cost["guide_tokens"]

    assert tokens(last["w2s"]["cost"]) == tokens(total)
    assert [tokens(c["cost"]) for c in last["w2s"]["choices"]] == \
        [tokens(c["cost"]) for c in choices]


@pytest.mark.xfail(strict=True, reason="decoding/common.py score_entries splits a batched "
                   "call's guide tokens among its prompts by their share of entries, so a "
                   "request's reported guide_tokens depend on the requests batched with it")
def test_a_requests_guide_tokens_do_not_depend_on_whom_it_was_batched_with(zoo_sum):
    """Two clients' requests (other prompts, the same seed and knobs) share one CBS call; each
    is billed the guide tokens it costs alone. Today the call's total is split evenly."""
    from w2s.serve.app import Limits, Server

    base, guide = zoo_sum
    server = Server(base, guide, limits=Limits(gather_ms=1))
    knobs = {"method": "cbs", "w": 2, "k": 2, "l": 3}
    bodies = [{"prompt": p, "max_tokens": 9, "seed": 6, "w2s": knobs}
              for p in ("The movie was", "I thought the plot")]

    async def scenario():
        async with served(server) as (batcher, client):
            first = await held(batcher, client)
            try:
                tasks = [post(client, b) for b in bodies]
                await until(lambda: len(batcher.queue) == 2, "both wait together")
            finally:
                GATE.set()
            together = [(await t).json() for t in tasks]
            await first
            alone = [(await client.post("/v1/completions", json=b)).json() for b in bodies]
            return together, alone

    together, alone = asyncio.run(scenario())
    assert [r["choices"][0]["text"] for r in together] == \
        [r["choices"][0]["text"] for r in alone]  # the answers are each one's own
    assert [r["w2s"]["cost"]["guide_tokens"] for r in together] == \
        [r["w2s"]["cost"]["guide_tokens"] for r in alone]


# ------------------------------------------------------------------ chat messages: prompt's checks
LONG = "the film " * 200  # over the zoo's 256-token context

TEXTS = [  # (a value, the status it gets as a prompt and as a message's content, the reason)
    ("\ud800", 400, 'surrogates not allowed in "\\ud800"; it is not text any model can read'),
    ("bad \udfff end", 400,
     'surrogates not allowed in "bad \\udfff end"; it is not text any model can read'),
    ("", 200, None),
    ("   ", 200, None),
    ("a\x00b", 200, None),
    (5, 400, "Input should be a valid string"),
    (None, 400, "Input should be a valid string"),
    (True, 400, "Input should be a valid string"),
    ({"text": "x"}, 400, "Input should be a valid string"),
    (LONG, 400, None),  # the context check: a message that names the whole prompt
]


@pytest.fixture(scope="module")
def client(base, pair):
    from fastapi.testclient import TestClient

    from w2s.serve.app import Server, create_app

    with TestClient(create_app(Server(base, pair))) as c:
        yield c


def send(client, path: str, body: dict) -> httpx.Response:  # noqa: ANN001
    return client.post(path, content=json.dumps(body).encode(),  # lone surrogates too
                       headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("value,status,reason", TEXTS,
                         ids=[repr(v)[:16] for v, _, _ in TEXTS])
@pytest.mark.parametrize("where", ["prompt", "prompt[1]", "messages[0].content",
                                   "messages[1].content"])
def test_chat_messages_get_every_check_a_prompt_gets(client, value, status, reason, where):
    """One table, four places: a prompt, the second of a list of prompts, a chat message's
    content and the second message's: each value gets the same status, the 400 names the field
    (``param``) and gives the same reason after it."""
    body = {"max_tokens": 2, "seed": 0, "w2s": {"method": "sample"}}
    if where.startswith("prompt"):
        body["prompt"] = value if where == "prompt" else ["fine", value]
        path, param = "/v1/completions", "prompt"
    else:
        lead = [] if where == "messages[0].content" else [{"role": "system", "content": "ok"}]
        body["messages"] = [*lead, {"role": "user", "content": value}]
        path, param = "/v1/chat/completions", where
    r = send(client, path, body)
    assert r.status_code == status, r.text
    if status == 200:
        return
    err = r.json()["error"]
    if value is LONG:  # the rendered prompt is checked whole: the field is the prompt/messages
        assert err["param"] == param.split("[")[0], err
        assert "exceeds the context" in err["message"], err
        return
    assert err["param"] == param, err
    assert err["message"] == f"{param}: {reason}", err


def test_a_prompt_and_a_chat_message_refuse_a_lone_surrogate_in_the_same_words(client):
    """The reason after the field's path is the same text for a prompt and a message (one
    check, run before each field's type is checked), and for ``stop`` and ``user`` too."""
    reasons = []
    for path, body, param in [
            ("/v1/completions", {"prompt": "\ud800"}, "prompt"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud800"}]},
             "messages[0].content"),
            ("/v1/completions", {"prompt": "x", "stop": "\ud800"}, "stop"),
            ("/v1/completions", {"prompt": "x", "user": "\ud800"}, "user")]:
        err = send(client, path, body).json()["error"]
        assert err["param"] == param and err["message"].startswith(param + ": "), err
        reasons.append(err["message"][len(param) + 2:])
    assert len(set(reasons)) == 1, reasons


def test_a_chat_prompt_counts_its_tokens_as_the_base_formats_it(client, base):
    r = send(client, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}],
                                              "max_tokens": 3, "seed": 1,
                                              "w2s": {"method": "sample"}}).json()
    prompt = ChatPrompt([{"role": "user", "content": "Hi"}])
    [ref] = w2s.sample(base, None, [prompt], SamplingParams(seed=1, max_new_tokens=3))
    assert r["usage"] == {"prompt_tokens": len(base.encode_prompt(prompt)),
                          "completion_tokens": len(ref.token_ids),
                          "total_tokens": len(base.encode_prompt(prompt)) + len(ref.token_ids)}
