"""``w2s serve`` as a real process on loopback, driven by the official ``openai`` client and
plain HTTP: answers equal the library's own for the same settings, streams reassemble to them,
errors are OpenAI's bodies with 4xx codes, concurrent clients get what they would get alone,
a full queue says 429, and a client that leaves frees its rows."""

from __future__ import annotations

import concurrent.futures as cf
import json
import time

import httpx
import openai
import pytest

import w2s
from w2s import SamplingParams
from w2s.chat import ChatPrompt
from w2s.decoding import get_decoder
from w2s.zoo import ZOO_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def zoo():
    """The zoo loaded in this process: the reference the server's answers must equal."""
    from w2s import HFModel, PairGuide

    return (HFModel.load(str(ZOO_DIR / "base")),
            PairGuide.load(str(ZOO_DIR / "tuned"), str(ZOO_DIR / "untuned")))


def local(zoo, method, knobs, prompt, **sampling):
    base, guide = zoo
    spec = get_decoder(method)
    [r] = spec.run(base, guide, [prompt], spec.make_params(knobs), SamplingParams(**sampling))
    return r


@pytest.fixture(scope="module")
def client(w2s_server):
    return openai.OpenAI(base_url=w2s_server.url + "/v1", api_key=w2s_server.api_key)


def wait_until_cancelled(server, before):
    """Poll /w2s/status until nothing runs and one more request was cancelled, not served."""
    deadline = time.monotonic() + 20
    while True:
        now = httpx.get(server.url + "/w2s/status", headers=server.headers()).json()
        if now["running_requests"] == 0 and now["cancelled"] > before["cancelled"]:
            break
        assert time.monotonic() < deadline, now
        time.sleep(0.1)
    assert now["served"] == before["served"]  # it was stopped, not finished


def post(server, path, body, timeout=120.0):
    return httpx.post(server.url + path, json=body, headers=server.headers(), timeout=timeout)


@pytest.mark.parametrize("method,knobs", [("cbs", {"w": 2, "k": 3, "l": 4}), ("sample", {}),
                                          ("bon", {"n": 4}), ("eft", {"beta": 1.5}),
                                          ("nudging", {"gamma": 0.5})])
def test_completions_equal_the_library_for_the_same_settings(client, zoo, method, knobs):
    out = client.completions.create(model="w2s", prompt="The movie was", max_tokens=14, seed=7,
                                    temperature=0.8, extra_body={"w2s": {"method": method,
                                                                         **knobs}})
    ref = local(zoo, method, knobs, "The movie was", max_new_tokens=14, seed=7, temperature=0.8)
    assert out.choices[0].text == ref.text
    assert out.choices[0].finish_reason == ("stop" if ref.finished else "length")
    extra = out.model_extra["w2s"]
    assert extra["method"] == method and extra["score"] == pytest.approx(ref.score)
    assert extra["cost"]["base_tokens"] == ref.cost.base_tokens
    assert out.usage.completion_tokens == len(ref.token_ids)
    assert out.usage.prompt_tokens == len(zoo[0].encode_prompt("The movie was"))


def test_chat_formats_messages_with_each_models_template(client, zoo):
    msgs = [{"role": "system", "content": "You love films."},
            {"role": "user", "content": "The movie was"}]
    out = client.chat.completions.create(model="w2s", messages=msgs, max_tokens=12, seed=3,
                                         extra_body={"w2s": {"method": "cbs", "w": 2, "k": 2,
                                                             "l": 4}})
    ref = local(zoo, "cbs", {"w": 2, "k": 2, "l": 4}, ChatPrompt(msgs), max_new_tokens=12,
                seed=3)
    assert out.choices[0].message.content == ref.text
    assert out.choices[0].message.role == "assistant"


@pytest.mark.parametrize("method,knobs", [("cbs", {"w": 2, "k": 2, "l": 3}), ("sample", {}),
                                          ("eft", {"beta": 1.0}), ("nudging", {})])
def test_streamed_chunks_reassemble_to_the_answer(client, method, knobs):
    kw = dict(model="w2s", prompt=["The movie was", "I thought the plot"], max_tokens=24,
              seed=11, stop=[". ", "!"], extra_body={"w2s": {"method": method, **knobs}})
    whole = client.completions.create(**kw)
    parts: dict[int, list[str]] = {0: [], 1: []}
    finish = {}
    for chunk in client.completions.create(stream=True, **kw):
        for c in chunk.choices:
            parts[c.index].append(c.text)
            if c.finish_reason:
                finish[c.index] = c.finish_reason
    for i, choice in enumerate(whole.choices):
        assert "".join(parts[i]) == choice.text
        assert finish[i] == choice.finish_reason
    if method != "cbs":  # token-level methods send text while sampling, not all at the end
        assert max(len([p for p in v if p]) for v in parts.values()) > 1


def test_chat_streaming_and_usage_chunk(client):
    kw = dict(model="w2s", messages=[{"role": "user", "content": "The acting"}], max_tokens=10,
              seed=1, extra_body={"w2s": {"method": "sample"}})
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True,
                                                 stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].model_extra["w2s"]["method"] == "sample"


def test_request_weights_reweigh_the_servers_guide(client, zoo):
    base, pair = zoo
    out = client.completions.create(model="w2s", prompt="The movie was", max_tokens=12, seed=6,
                                    extra_body={"w2s": {"method": "eft", "weights": [2.5]}})
    [ref] = w2s.eft(base, 2.5 * pair, ["The movie was"], w2s.EFTParams(),
                    SamplingParams(max_new_tokens=12, seed=6))
    assert out.choices[0].text == ref.text
    with pytest.raises(openai.BadRequestError, match="1 term"):
        client.completions.create(model="w2s", prompt="x", max_tokens=2,
                                  extra_body={"w2s": {"method": "cbs", "weights": [1, 2]}})


def test_n_choices_are_the_answers_of_seed_plus_i(client):
    kw = dict(model="w2s", prompt="The movie was", max_tokens=10,
              extra_body={"w2s": {"method": "bon", "n": 2}})
    both = client.completions.create(n=2, seed=4, **kw)
    second = client.completions.create(n=1, seed=5, **kw)
    assert [c.index for c in both.choices] == [0, 1]
    assert both.choices[1].text == second.choices[0].text


def test_models_health_and_api_keys(w2s_server, client):
    assert [m.id for m in client.models.list().data] == ["w2s"]
    assert httpx.get(w2s_server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(w2s_server.url + "/").status_code == 200  # the page itself is public
    wrong = openai.OpenAI(base_url=w2s_server.url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.completions.create(model="w2s", prompt="x", max_tokens=2)
    r = httpx.post(w2s_server.url + "/v1/completions", json={"prompt": "x"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.get(w2s_server.url + "/v1/models")
    assert r.status_code == 401
    key = w2s_server.api_key  # the whole key, and only it: not a prefix, an extension or a case
    for near in (key[:-1], key + "x", key[:1], key.upper(), key + " x"):
        r = httpx.get(w2s_server.url + "/v1/models", headers={"Authorization": f"Bearer {near}"})
        assert r.status_code == 401, near
    assert httpx.get(w2s_server.url + "/v1/models", headers=w2s_server.headers()).status_code == 200


@pytest.mark.parametrize("body,status,needle", [
    ({"prompt": "x", "w2s": {"method": "cbs", "beta": 1}}, 400, "w2s.beta"),
    ({"prompt": "x", "w2s": {"method": "cbs", "w": 0}}, 400, "w must be >= 1"),
    ({"prompt": "x", "w2s": {"method": "nope"}}, 400, "w2s"),
    ({"prompt": "x", "max_tokens": 100000}, 400, "--max-tokens-limit"),
    ({"prompt": "x", "n": 99}, 400, "--max-n"),
    ({"prompt": "x", "w2s": {"method": "bon", "n": 100000}}, 400, "--max-rows"),
    ({"prompt": "x", "logprobs": 2}, 400, "logprobs is not supported"),
    ({"prompt": "x", "model": "gpt-4"}, 404, "not served here"),
    ({"prompt": []}, 400, "prompt"),
    ({"prompt": "x", "stop": [""]}, 400, "stop"),
    ({"prompt": "x", "temperature": "hot"}, 400, "temperature"),
    ({"messages": []}, 400, "prompt"),
])
def test_bad_requests_get_one_line_openai_errors(w2s_server, body, status, needle):
    r = post(w2s_server, "/v1/completions", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"] or needle == err.get("param"), err
    assert "\n" not in err["message"] and "Traceback" not in err["message"]


def test_unknown_routes_and_big_bodies_are_openai_errors(w2s_server):
    r = httpx.get(w2s_server.url + "/v1/nothing", headers=w2s_server.headers())
    assert r.status_code == 404 and "error" in r.json()
    r = post(w2s_server, "/v1/completions", {"prompt": "x" * (2 << 20)})
    assert r.status_code == 413 and "--max-body-bytes" in r.json()["error"]["message"]
    r = httpx.post(w2s_server.url + "/v1/completions", content=b"{not json",
                   headers={**w2s_server.headers(), "content-type": "application/json"})
    assert r.status_code == 400


def test_32_concurrent_clients_get_their_sequential_answers(w2s_server):
    bodies = [{"prompt": p, "max_tokens": 12, "seed": s % 3,
               "w2s": {"method": "cbs", "w": 2, "k": 2, "l": 4}}
              for s, p in enumerate(["The movie was", "I thought", "The acting was",
                                     "This film"] * 8)]
    before = httpx.get(w2s_server.url + "/w2s/status", headers=w2s_server.headers()).json()
    with cf.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(lambda b: post(w2s_server, "/v1/completions", b), bodies))
    after = httpx.get(w2s_server.url + "/w2s/status", headers=w2s_server.headers()).json()
    alone = [post(w2s_server, "/v1/completions", b) for b in bodies]
    assert all(r.status_code == 200 for r in together + alone)
    assert ([r.json()["choices"][0]["text"] for r in together]
            == [r.json()["choices"][0]["text"] for r in alone])
    assert after["batches"] - before["batches"] < len(bodies)  # they were batched


def test_a_full_queue_answers_429_with_retry_after(tmp_path):
    from conftest import start_w2s_serve

    proc, srv = start_w2s_serve(tmp_path, "--max-queue", "2", "--max-rows", "4",
                                "--gather-ms", "50")
    try:
        body = {"prompt": "The movie was", "max_tokens": 40, "w2s": {"method": "bon", "n": 4}}
        with cf.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda s: post(srv, "/v1/completions",
                                                   {**body, "seed": s}), range(12)))
        codes = [r.status_code for r in answers]
        assert 429 in codes and 200 in codes and set(codes) <= {200, 429}
        busy = next(r for r in answers if r.status_code == 429)
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["type"] == "rate_limit_error"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_client_that_leaves_mid_stream_frees_its_rows(w2s_server):
    body = {"prompt": "The movie was", "max_tokens": 240, "stream": True, "seed": 9,
            "w2s": {"method": "sample"}, "ignore_eos": True}
    status = w2s_server.url + "/w2s/status"
    before = httpx.get(status, headers=w2s_server.headers()).json()
    with httpx.stream("POST", w2s_server.url + "/v1/completions", json=body,
                      headers=w2s_server.headers(), timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["text"]:
                break  # one chunk of text, then the client goes away
    wait_until_cancelled(w2s_server, before)  # it was stopped, not finished


def test_a_chunked_body_over_the_limit_is_refused(w2s_server):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    r = httpx.post(w2s_server.url + "/v1/completions", content=chunks(),
                   headers={**w2s_server.headers(), "content-type": "application/json"})
    assert r.status_code == 413


def test_a_client_that_leaves_before_a_plain_answer_frees_its_rows(w2s_server):
    body = {"prompt": "The acting was", "max_tokens": 240, "seed": 3, "ignore_eos": True,
            "w2s": {"method": "cbs", "w": 4, "k": 4, "l": 1}}
    status = w2s_server.url + "/w2s/status"
    before = httpx.get(status, headers=w2s_server.headers()).json()
    with pytest.raises(httpx.ReadTimeout):
        post(w2s_server, "/v1/completions", body, timeout=1.0)  # gives up after a second
    wait_until_cancelled(w2s_server, before)


def test_a_server_without_a_guide_serves_sampling_and_says_why_not_the_rest(tmp_path):
    from conftest import start_w2s_serve

    cfg = tmp_path / "serve.yaml"
    cfg.write_text("defaults: {method: sample, max_tokens: 5, temperature: 0}\n"
                   "served_name: tiny\n")
    proc, srv = start_w2s_serve(tmp_path, "--base", "zoo:base", "--config", str(cfg))
    try:
        info = httpx.get(srv.url + "/w2s/methods", headers=srv.headers()).json()
        why = {m["name"]: m["why"] for m in info["methods"] if not m["available"]}
        from w2s.decoding import DECODERS

        assert set(why) == {n for n, d in DECODERS.items() if d.guide != "optional"}
        assert "--tuned and --untuned" in why["cbs"]
        assert info["defaults"]["method"] == "sample" and info["model"] == "tiny"
        r = post(srv, "/v1/completions", {"prompt": "The movie was"})
        assert r.status_code == 200 and r.json()["w2s"]["method"] == "sample"
        assert r.json()["usage"]["completion_tokens"] <= 5 and r.json()["w2s"]["score"] is None
        r = post(srv, "/v1/completions", {"prompt": "x", "w2s": {"method": "cbs"}})
        assert r.status_code == 400 and "not available" in r.json()["error"]["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_bad_settings_in_one_line(tmp_path):
    import subprocess
    import sys

    for args, msg in [(["--tuned", "zoo:tuned"], "give the base"),
                      (["--base", "zoo:nope"], "no zoo model"),
                      (["--method", "zzz"], "unknown method"),
                      (["--config", str(tmp_path / "none.yaml")], "does not exist")]:
        out = subprocess.run([sys.executable, "-m", "w2s.cli", "serve", "--port", "1", *args],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and msg in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_finished_eval_runs_are_listed_with_their_table_and_plots(w2s_server):
    h = w2s_server.headers()
    [run] = httpx.get(w2s_server.url + "/w2s/runs", headers=h).json()["runs"]
    assert run["name"] == "demo-quick" and "| method" in run["summary_md"].lower()
    assert {p.rsplit("/", 1)[1] for p in run["plots"]} >= {"gold_vs_kl.png", "gold_bars.png"}
    png = httpx.get(w2s_server.url + run["plots"][0], headers=h)
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert httpx.get(w2s_server.url + run["plots"][0]).status_code == 401
    for bad in ("/w2s/runs/demo-quick/results.jsonl", "/w2s/runs/demo-quick/../../etc/passwd",
                "/w2s/runs/nope/gold_bars.png", "/w2s/runs/..%2F..%2Fetc/passwd"):
        r = httpx.get(w2s_server.url + bad, headers=h)
        assert r.status_code == 404, bad


def test_every_request_is_logged_at_the_default_level(w2s_server):
    """``--log-level info`` (the default) logs each request: method, path and status."""
    import time
    from pathlib import Path

    import httpx

    r = httpx.get(w2s_server.url + "/v1/models", headers=w2s_server.headers(), timeout=30)
    assert r.status_code == 200
    for _ in range(50):
        text = Path(w2s_server.log).read_text()
        if '"GET /v1/models HTTP/1.1" 200' in text:
            break
        time.sleep(0.1)
    assert '"GET /v1/models HTTP/1.1" 200' in text


def test_error_bodies_carry_openais_code_ids_and_the_param_at_fault(w2s_server):
    """``code`` is a string id or null (never the status as a string), ``param`` the field."""
    def error(body: dict, key: str | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {key or w2s_server.api_key}"}
        r = httpx.post(w2s_server.url + "/v1/completions", json=body, headers=headers,
                       timeout=30)
        return r.status_code, r.json()["error"]

    status, e = error({"model": "gpt-9", "prompt": "x"})
    assert status == 404 and e["code"] == "model_not_found" and e["param"] == "model"
    status, e = error({"prompt": "x", "top_p": 2})
    assert status == 400 and e["code"] is None and e["param"] == "top_p"
    status, e = error({"prompt": "x"}, key="wrong")
    assert status == 401 and e["code"] == "invalid_api_key" and e["param"] is None


def test_best_of_is_best_of_n_ranked_by_the_guide(client):
    a = client.completions.create(model="w2s", prompt="the movie was", best_of=4, seed=3,
                                  max_tokens=8)
    b = client.completions.create(model="w2s", prompt="the movie was", seed=3, max_tokens=8,
                                  extra_body={"w2s": {"method": "bon", "n": 4}})
    assert a.choices[0].text == b.choices[0].text
    assert a.model_extra["w2s"]["method"] == "bon"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="w2s", prompt="x", best_of=4, max_tokens=8,
                                  extra_body={"w2s": {"method": "cbs"}})
    assert e.value.body["param"] == "best_of" and "disagrees" in e.value.body["message"]
