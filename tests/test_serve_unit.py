"""The pieces of ``w2s serve`` that need no server process: watching a decode (it must change
nothing, and what it reports must never be taken back), the stream's hold-back of text that may
still change, chat prompts, the request schema derived from the registry, the config file."""

from __future__ import annotations

import pytest

from w2s import SamplingParams, W2SError
from w2s.chat import ChatPrompt
from w2s.decoding import DECODERS, get_decoder
from w2s.decoding.observe import Cancelled, common_prefix, watching
from w2s.serve.stream import Committed


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.reports: dict[int, list[str]] = {}
        self.stop_after = stop_after
        self.calls = 0

    def committed(self, index: int, text: str) -> None:
        self.reports.setdefault(index, []).append(text)

    def cancelled(self) -> bool:
        self.calls += 1
        return self.stop_after is not None and self.calls > self.stop_after


PROMPTS = ["The movie was", "I thought the plot", "The movie was"]
KNOBS = {"sample": {}, "bon": {"n": 3}, "cbs": {"w": 2, "k": 2, "l": 3}, "eft": {"beta": 1.0},
         "nudging": {"gamma": 0.4, "chunk": 4}}


@pytest.mark.parametrize("method", list(KNOBS))
def test_watching_changes_no_answer_and_reports_only_prefixes(method, base, pair):
    spec = get_decoder(method)
    params = spec.make_params(KNOBS[method])
    sampling = SamplingParams(max_new_tokens=12, seed=5, stop=(".",))
    plain = spec.run(base, pair, PROMPTS, params, sampling)
    rec = Recorder()
    with watching(rec):
        watched = spec.run(base, pair, PROMPTS, params, sampling)
    assert [r.text for r in watched] == [r.text for r in plain]
    assert [r.score for r in watched] == [r.score for r in plain]
    if method != "bon":  # Best-of-N commits nothing before the end
        assert set(rec.reports) == {0, 1, 2}
    for i, texts in rec.reports.items():
        final = watched[i].text
        held = Committed(sampling.stop)
        for a, b in zip(texts, texts[1:]):  # what is safe to send only grows
            assert held.safe(b).startswith(held.safe(a))
        assert final.startswith(held.safe(texts[-1]))
    if method in ("sample", "eft", "nudging"):  # token-level: reports as tokens arrive
        assert max(len(t) for t in rec.reports.values()) >= 3


def test_cbs_reports_the_prefix_every_kept_entry_shares(base, pair):
    spec = get_decoder("cbs")
    params = spec.make_params({"w": 3, "k": 2, "l": 2})
    sampling = SamplingParams(max_new_tokens=10, seed=2)
    rec = Recorder()
    with watching(rec):
        [res] = spec.run(base, pair, ["The acting"], params, sampling, return_all=True)
    assert rec.reports[0][-1] == common_prefix([c.text for c in res.candidates])
    assert len(rec.reports[0]) == 5  # one report per round: 10 tokens in chunks of 2


def test_a_cancelled_decode_stops_at_its_next_checkpoint(base, pair):
    rec = Recorder(stop_after=2)
    spec = get_decoder("cbs")
    with watching(rec), pytest.raises(Cancelled):
        spec.run(base, pair, ["The movie was"], spec.make_params({"w": 2, "k": 2, "l": 2}),
                 SamplingParams(seed=0, max_new_tokens=20))
    assert rec.calls == 3


@pytest.mark.parametrize("text,stop,safe", [
    ("a great film", (), "a great film"),
    ("a great film ", (), "a great film"),  # a space may merge with what follows
    ("caf\ufffd", (), "caf"),  # half a character
    ("the end.\n", ("\n\n",), "the end."),  # may begin the stop string
    ("the end. The", ("The End",), "the end."),
    ("no stop here", ("XYZ",), "no stop here"),
])
def test_committed_holds_back_what_may_still_change(text, stop, safe):
    assert Committed(stop).safe(text) == safe


def test_committed_deltas_reassemble_to_the_answer():
    c = Committed(("\n\n",))
    parts = [c.delta(t) for t in ["Hel", "Hello wor", "Hello world.\n", "Hello world."]]
    parts.append(c.final("Hello world."))
    assert "".join(parts) == "Hello world." and c.ok
    assert parts[:3] == ["Hel", "lo wor", "ld."]


def test_a_chat_prompt_is_the_chat_flag_for_one_user_turn(tiny_paths):
    from w2s import HFModel

    plain = HFModel.load(tiny_paths["base"])
    chat = HFModel.load(tiny_paths["base"], chat=True)
    p = ChatPrompt([{"role": "user", "content": "Hi there"}])
    assert plain.encode_prompt(p) == chat.encode_prompt("Hi there")
    assert plain.encode_prompt("Hi there") != chat.encode_prompt("Hi there")
    two = ChatPrompt([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}])
    assert two != p and len(plain.encode_prompt(two)) > len(plain.encode_prompt(p))
    with pytest.raises(W2SError, match="messages\\[0\\]"):
        ChatPrompt([{"role": "robot", "content": "x"}])
    with pytest.raises(W2SError, match="at least one"):
        ChatPrompt([])


def test_the_request_schema_lists_every_registered_method_and_its_knobs():
    from w2s.serve.schema import request_models

    completion, chat = request_models(DECODERS)
    schema = completion.model_json_schema()
    names = {d["properties"]["method"]["const"] for d in schema["$defs"].values()
             if "method" in d.get("properties", {})}
    assert names == set(DECODERS)
    cbs = schema["$defs"]["Method_cbs"]
    assert set(cbs["properties"]) == {"method", "w", "k", "l", "schedule", "weights", "trace"}
    assert cbs["additionalProperties"] is False
    ok = completion.model_validate({"prompt": "x", "w2s": {"method": "cbs", "w": 2}})
    assert ok.w2s.w == 2 and ok.w2s.k is None
    for bad in ({"prompt": "x", "w2s": {"method": "cbs", "beta": 1}},
                {"prompt": "x", "logprobs": 3}, {"prompt": "x", "frequency_penalty": 0.5},
                {"prompt": "x", "stop": [""]}, {"prompt": "x", "temperature": -1},
                {"prompt": "x", "mystery": 1}):
        with pytest.raises(ValueError):
            completion.model_validate(bad)
    # what client libraries send by default is accepted
    completion.model_validate({"prompt": "x", "frequency_penalty": 0, "logprobs": None,
                               "echo": False, "best_of": 1, "logit_bias": {}})
    chat.model_validate({"messages": [{"role": "user", "content": "x"}], "tools": None})


def test_the_config_file_is_checked_key_by_key(tmp_path):
    from w2s.serve.config import read_serve_config

    good = tmp_path / "serve.yaml"
    good.write_text("base: zoo:base\nmax_rows: 32\ndefaults: {method: bon, max_tokens: 16}\n"
                    "methods: {cbs: {w: 2}}\n")
    cfg = read_serve_config(good)
    assert cfg.max_rows == 32 and cfg.defaults.method == "bon" and cfg.methods["cbs"] == {"w": 2}
    for text, msg in [("prot: 1\n", "prot: unknown key"),
                      ("methods: {cbs: {beta: 1}}\n", "unknown option"),
                      ("methods: {cbs: {w: 0}}\n", "w must be >= 1"),
                      ("methods: {zzz: {}}\n", "unknown method"),
                      ("defaults: {method: zzz}\n", "unknown method"),
                      ("max_rows: 0\n", "max_rows")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(W2SError, match=msg):
            read_serve_config(bad)


def test_a_batch_of_unseeded_jobs_takes_each_prompt_once():
    """Without a seed, one decoder call draws one fresh seed for all its prompts: two choices of
    one prompt in one call would be the same text, so they go to separate calls; seeded jobs
    with equal keys share a call as before (the same seed and prompt: the same answer)."""
    import asyncio

    from w2s.serve.batcher import Batcher, Job

    loop = asyncio.new_event_loop()
    try:
        b = Batcher(max_rows=100, max_queue=10)

        def job(prompt: str, fresh: bool) -> Job:
            return Job(prompt, ("sample", fresh), 1, lambda p: [], loop, fresh=fresh)

        b.queue = [job("a", True), job("a", True), job("b", True), job("a", False),
                   job("a", False)]
        assert [(j.prompt, j.fresh) for j in b._take()] == [("a", True), ("b", True)]
        assert [(j.prompt, j.fresh) for j in b._take()] == [("a", True)]
        assert [(j.prompt, j.fresh) for j in b._take()] == [("a", False), ("a", False)]
    finally:
        loop.close()


def test_the_servers_default_answer_length_is_the_cli_and_pythons(monkeypatch):
    """One set of defaults: a request without max_tokens gets SamplingParams' 50 tokens (cut
    to --max-tokens-limit when that is lower), as `w2s generate` and w2s.sample do."""
    from click.testing import CliRunner

    import w2s.serve.main as main
    from w2s.cli import cli

    built = []
    monkeypatch.setattr(main, "run_server",
                        lambda opts, explicit: built.append(main.build_server(
                            main.merge(opts, explicit))))
    for extra, want in (([], 50), (["--max-tokens-limit", "20"], 20)):
        out = CliRunner().invoke(cli, ["serve", "--base", "zoo:base", *extra])
        assert out.exit_code == 0, out.output
        assert built[-1].defaults.max_tokens == want
    assert SamplingParams().max_new_tokens == 50


def test_the_api_key_is_the_whole_key_and_only_it(base, pair):
    """In process (so mutation testing sees it; tests/test_serve.py checks the same through a
    real `w2s serve`): without a key, with a near key (a prefix, an extension, another case,
    one character changed) the API answers 401 with OpenAI's error body; with the key, 200;
    /health and the playground page are public. A server without a key lets everyone in."""
    from fastapi.testclient import TestClient

    from w2s.serve.app import Server, create_app

    key = "sk-w2s-0123456789"
    with TestClient(create_app(Server(base, pair, api_key=key))) as c:
        def models(k: str | None):  # noqa: ANN202
            return c.get("/v1/models", headers={"Authorization": f"Bearer {k}"} if k else {})

        none = models(None)
        assert none.status_code == 401 and none.json()["error"] == {
            "message": "this server needs an API key: send Authorization: Bearer KEY",
            "type": "authentication_error", "param": None, "code": "invalid_api_key"}
        # (extra spaces between "Bearer" and the key are allowed, RFC 9110's 1*SP: the key is
        # still the whole key)
        for near in (key[:-1], key + "x", key[:1], key.upper(), key[:-1] + "8", key + " x", ""):
            r = models(near)
            assert r.status_code == 401, near
            assert r.json()["error"]["type"] == "authentication_error", near
        assert models(key[:-1] + "8").json()["error"]["message"] == "wrong API key"
        assert models(key).status_code == 200
        assert c.post("/v1/completions", json={"prompt": "x", "max_tokens": 1}).status_code == 401
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert schemes == {"HTTPBearer": {"type": "http", "scheme": "bearer",
                                          "description": "--api-key (when the server has one)"}}
    with TestClient(create_app(Server(base, pair))) as c:
        assert c.get("/v1/models").status_code == 200


def test_the_methods_list_parses_no_source_while_serving(base, pair, monkeypatch):
    """The knobs' help is read from the params classes' source once, when the server is built,
    never per request. Bug (CI, 2026-12-05): ``GET /w2s/methods`` parsed ``params.py`` with
    ``ast.parse`` on every call; after a test session's worth of requests CPython 3.11 raised
    "SystemError: AST constructor recursion depth mismatch" there, the route answered 500 and
    the playground showed no columns. Here, once the app is built, parsing is made to fail:
    the methods list and the request schema must not need it."""
    import ast
    import traceback

    from fastapi.testclient import TestClient

    from w2s.serve.app import Server, create_app

    with TestClient(create_app(Server(base, pair))) as c:
        parse, ours = ast.parse, []

        def watched(*a, **k):  # noqa: ANN002, ANN003, ANN202
            if any(f.name == "field_docs" for f in traceback.extract_stack()):
                ours.append("".join(traceback.format_stack(limit=8)))
            return parse(*a, **k)

        monkeypatch.setattr(ast, "parse", watched)
        r = c.get("/w2s/methods")
        assert r.status_code == 200, r.text
        cbs = next(m for m in r.json()["methods"] if m["name"] == "cbs")
        assert next(k for k in cbs["knobs"] if k["name"] == "w")["doc"]
        r = c.post("/v1/completions", json={"prompt": "x", "max_tokens": 2,
                                            "w2s": {"method": "sample"}})
        assert r.status_code == 200, r.text
        assert c.get("/openapi.json").status_code == 200
        assert ours == []


def test_the_schema_describes_a_stream_by_its_events(base):
    """A streamed answer is server-sent events: the schema describes one event (``data``, a
    string), as schemathesis and OpenAPI 3.2's itemSchema read it, not the stream as a string
    (which every event of a real stream would violate)."""
    from w2s.serve.app import Server, create_app

    spec = create_app(Server(base, None)).openapi()
    for path in ("/v1/completions", "/v1/chat/completions"):
        event = spec["paths"][path]["post"]["responses"]["200"]["content"]["text/event-stream"]
        assert event["schema"]["type"] == "object"
        assert event["schema"]["properties"]["data"] == {"type": "string",
                                                         "description": "a chunk as JSON, or "
                                                                        "[DONE]"}
