"""One request behind every face.

- :func:`w2s.request.parse_request` is the one parser: errors name the field's path, bounds come
  from the knob dataclasses, a request survives its own ``to_dict``.
- A decoder with a new knob and a guide kind with its own knobs, declared in this file alone,
  reach every face: ``w2s generate`` (flags, help, a run), an eval config (and a sweep over the
  knob), the server (a request carrying the knob, ``/w2s/methods`` that the playground reads)
  and the Python API -- and a plugin package, installed as a real distribution on a temporary
  path, does the same through the entry-point group ``w2s.plugins``.
- ``Result.to_dict`` / ``Result.from_dict`` are the wire form.
- The server answers malformed requests with a 400 naming the field, never a 500.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import w2s
from w2s import SamplingParams, W2SError
from w2s.cli import cli
from w2s.decoding import DecoderSpec, decoders, register, unregister
from w2s.errors import FieldError
from w2s.evaluate.config import parse_config
from w2s.evaluate.run import run_eval
from w2s.guides import Guide
from w2s.guides.kinds import GuideKind, register_guide_kind, unregister_guide_kind
from w2s.guides.spec import GuideRef
from w2s.params import sampling_fields
from w2s.request import BaseRef, Loader, Request, parse_request, run
from w2s.result import Candidate, Cost, Result

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ the one parser
@pytest.mark.parametrize("data,path,needle", [
    ({"method": "cbs", "w": 0}, "w", "w must be >= 1, got 0"),
    ({"method": "cbs", "knobs": {"k": -1}}, "k", "k must be >= 1, got -1"),
    ({"method": "cbs", "sampling": {"top_p": 2}}, "sampling.top_p",
     "sampling.top_p must be in (0, 1], got 2"),
    ({"method": "sample", "sampling": {"temperature": math.nan}}, "sampling.temperature",
     "sampling.temperature must be a finite number, got nan"),
    ({"method": "sample", "sampling": {"tempreature": 1}}, "sampling.tempreature",
     "sampling.tempreature is not a sampling field"),
    ({"method": "bon", "guide": {"tuned": ["a", "b"], "untuned": "u",
                                 "weights": [1, math.nan]}},
     "guide.weights[1]", "guide.weights[1] must be a finite number, got nan"),
    ({"method": "bon", "guide": {"tuned": "a", "untuned": "u", "weights": [1, 2]}},
     "guide.weights", "guide.weights: give 1 finite numbers (one per tuned model), got [1, 2]"),
    ({"method": "bon", "guide": {"tuned": "a", "untuned": "u", "normalize": "max"}},
     "guide.normalize", "guide.normalize must be one of raw, per_token, zscore"),
    ({"method": "bon", "guide": {"tuned": "a"}}, "guide", "guide needs both tuned and untuned"),
    ({"method": "bon", "guide": {"tunned": "a"}}, "guide.tunned", "guide.tunned is not a guide"),
    ({"method": "sample", "base": {"url": "ftp://x", "model": "m"}}, "base.url",
     "base.url must start with http:// or https://"),
    ({"method": "sample", "base": {"url": "http://x"}}, "base.model", "base.model must be"),
    ({"method": "sample", "base": {"model": "m", "timeout": 3}}, "base.timeout",
     "base.timeout goes with an engine base"),
    ({"method": "beam"}, "method", "method must be one of sample, bon, cbs"),
    ({"method": "eft", "w": 4}, "w", "w is not a field of a request nor a knob of eft"),
    ({"method": "eft", "return_all": True}, "return_all", "return_all is for ranked methods"),
    ({"method": "cbs", "chat": "yes"}, "chat", "chat must be true or false"),
    ({"method": "cbs"}, "guide", "guide: does not suit: cbs needs a guide"),
    ({"method": "eft", "guide": {"reward_model": "rm"}}, "guide",
     "eft needs {tuned, untuned} (or arm) as its guide and no reward_model"),
])
def test_every_error_names_the_field_path(data, path, needle):
    with pytest.raises(FieldError) as e:
        parse_request(data)
    assert e.value.field == path and needle in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_paths_are_prefixed_where_a_face_nests_the_request():
    with pytest.raises(FieldError) as e:
        parse_request({"method": "cbs", "w": 0}, where="w2s.", guide_given=False)
    assert (e.value.field, str(e.value)) == ("w2s.w", "w2s.w must be >= 1, got 0")


def test_a_request_is_what_its_dict_says_and_reads_back():
    data = {"base": {"url": "http://127.0.0.1:9/v1", "model": "big", "api_key": "sk-1"},
            "guide": {"tuned": ["zoo:tuned", "zoo:otuned"], "untuned": "zoo:untuned",
                      "weights": [0.7, 0.3], "normalize": "zscore"},
            "method": "cbs", "w": 2, "knobs": {"l": 3},
            "sampling": {"max_new_tokens": 7, "stop": ["."], "seed": 5}, "return_all": True}
    r = parse_request(data)
    assert r.knobs == w2s.SearchParams(w=2, k=4, l=3)
    assert r.sampling == SamplingParams(max_new_tokens=7, stop=(".",), seed=5)
    assert r.base == BaseRef("big", "http://127.0.0.1:9/v1", api_key="sk-1")
    assert r.guide == GuideRef(("zoo:tuned", "zoo:otuned"), ("zoo:untuned",),
                               weights=(0.7, 0.3), normalize="zscore")
    back = parse_request(r.to_dict())
    assert back == Request(r.method, r.knobs, r.sampling,
                           BaseRef("big", "http://127.0.0.1:9/v1"), r.guide, False, True)
    assert "sk-1" not in json.dumps(r.to_dict()) and "sk-1" not in repr(r)  # never echoed


def test_defaults_fill_what_a_request_leaves_out():
    r = parse_request({}, default_method="bon", default_knobs={"bon": {"n": 3}},
                      default_sampling=SamplingParams(temperature=0.2), guide_given=False)
    assert (r.method, r.knobs, r.sampling.temperature) == ("bon", w2s.BestOfNParams(3), 0.2)
    assert parse_request({"n": 5}, default_method="bon", default_knobs={"bon": {"n": 3}},
                         guide_given=False).knobs.n == 5


def test_the_python_api_runs_a_request_like_the_decoder(tiny_paths, base, pair):
    req = parse_request({"base": tiny_paths["base"], "method": "bon", "n": 3,
                         "guide": {"tuned": tiny_paths["tuned"],
                                   "untuned": tiny_paths["untuned"]},
                         "sampling": {"max_new_tokens": 6, "seed": 2}})
    [got] = run(req, ["The movie was"])
    [want] = w2s.bon(base, pair, ["The movie was"], w2s.BestOfNParams(3),
                           SamplingParams(max_new_tokens=6, seed=2))
    assert (got.text, got.token_ids) == (want.text, want.token_ids)


def test_the_resolver_loads_each_model_once(tiny_paths):
    res = Loader()
    g1 = res.guide(GuideRef((tiny_paths["tuned"],), (tiny_paths["untuned"],)))
    g2 = res.guide(GuideRef((tiny_paths["tuned"], tiny_paths["tuned"]),
                            (tiny_paths["untuned"],), weights=(1.0, 2.0)))
    assert res.lm(tiny_paths["tuned"]) is g1.tuned
    assert all(g.untuned is g1.untuned for _, g in g2.parts())


def test_a_result_round_trips_through_its_dict():
    r = Result("p", "cbs", "text", [1, 2], 0.5, True,
               [Candidate("text", [1, 2], 0.5, True), Candidate("t", [1], -1.0, False)],
               Cost(10, 4, 0.25), {"method": "cbs", "w": 2}, {"kl_bound": 1.5})
    d = r.to_dict()
    assert d["response"] == "text" and d["finish_reason"] == "stop"
    assert d["candidates"][1] == {"response": "t", "token_ids": [1], "score": -1.0,
                                  "finished": False}
    assert Result.from_dict(json.loads(json.dumps(d))) == r


# ------------------------------------------------------------------ a new decoder, a new guide
@dataclass(frozen=True)
class EchoKnobs:
    """Knobs of the echo decoder."""

    times: int = 2
    """How often the echo repeats the base's sample."""

    def to_dict(self) -> dict:
        return {"times": self.times}

    def __post_init__(self) -> None:
        if not isinstance(self.times, int) or isinstance(self.times, bool) or self.times < 1:
            raise FieldError("times", f"must be >= 1, got {self.times!r}")


def echo(backend, guide, prompts, knobs: EchoKnobs, sampling=None):  # noqa: ANN001, ANN201
    """A base sample, repeated ``times`` times (a decoder declared in a test file)."""
    results = w2s.sample(backend, None, prompts, sampling)
    for r in results:
        r.method, r.text = "echo", r.text * knobs.times
        r.params = {"method": "echo", **knobs.to_dict()}
    return results


@dataclass(frozen=True)
class LengthKnobs:
    """Knobs of the length guide."""

    target: int = 3
    """Words a response should have."""

    def __post_init__(self) -> None:
        if not isinstance(self.target, int) or self.target < 0:
            raise FieldError("target", f"must be >= 0, got {self.target!r}")


class LengthGuide(Guide):
    """Minus the distance of a response's word count from a target (a toy guide kind)."""

    def __init__(self, target: int) -> None:
        self.target = target

    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001, ANN201
        return torch.tensor([-abs(len(r.split()) - self.target) for r in responses],
                            dtype=torch.float32), 0


@pytest.fixture
def extended():
    register(DecoderSpec("echo", echo, "a base sample, repeated (a request-model test)",
                         EchoKnobs, guide="optional", kl="none"))
    register_guide_kind(GuideKind("length", lambda k, loader: LengthGuide(k.target),
                                  "words of a response near a target", LengthKnobs))
    yield
    unregister("echo")
    unregister_guide_kind("length")


def _want_echo(base, times, n=6):  # noqa: ANN001, ANN202
    [s] = w2s.sample(base, None, ["The movie was"], SamplingParams(seed=0, max_new_tokens=n))
    return s.text * times


def test_a_new_decoder_and_guide_kind_reach_the_cli(extended, tiny_paths, base):
    runner = CliRunner()
    text = " ".join(runner.invoke(cli, ["generate", "--help"]).output.split())
    assert "echo: a base sample, repeated" in text
    assert "--times INTEGER [echo] How often the echo repeats" in text
    out = runner.invoke(cli, ["generate", "--base", tiny_paths["base"], "--method", "echo",
                              "--times", "3", "--prompt", "The movie was",
                              "--max-new-tokens", "6", "--seed", "0", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["response"] == _want_echo(base, 3)
    bad = runner.invoke(cli, ["generate", "--base", tiny_paths["base"], "--method", "echo",
                              "--times", "0", "--prompt", "x"])
    assert bad.exit_code == 2 and bad.output.strip() == "error: --times must be >= 1, got 0"
    # the guide kind: its term on the command line, its knobs checked, Best-of-N ranks by it
    out = runner.invoke(cli, ["generate", "--base", tiny_paths["base"], "--method", "bon",
                              "--n", "4", "--guide-term", 'length:{"target": 2}',
                              "--prompt", "The movie was", "--max-new-tokens", "6", "--seed", "0", "--json",
                              "--return-all"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)
    want = w2s.bon(base, LengthGuide(2), ["The movie was"], w2s.BestOfNParams(4),
                         SamplingParams(seed=0, max_new_tokens=6))[0]
    assert row["response"] == want.text and row["score"] == want.score
    bad = runner.invoke(cli, ["generate", "--base", tiny_paths["base"], "--method", "bon",
                              "--guide-term", 'length:{"target": -1}', "--prompt", "x"])
    assert bad.exit_code == 2 and "length[0].target must be >= 0, got -1" in bad.output


def test_a_new_decoder_and_guide_kind_reach_eval_configs(extended, tmp_path):
    data = {"name": "echo", "task": "sentiment", "base": "zoo:base", "prompts": 2, "seeds": 1,
            "sampling": {"max_new_tokens": 4},
            "methods": [{"method": "echo", "times": [1, 2]},
                        {"method": "bon", "n": 2, "guide": {"length": {"target": 2}}}]}
    cfg = parse_config(data, tmp_path / "cfg.yaml")
    assert [m.label for m in cfg.methods] == ["echo(times=1)", "echo(times=2)",
                                              "bon(n=2)[guide length]"]
    with pytest.raises(W2SError, match="times must be >= 1, got 0"):
        parse_config({**data, "methods": [{"method": "echo", "times": 0}]}, tmp_path / "c.yaml")
    with pytest.raises(W2SError, match=r"guide.length.size is not a knob of guide kind length"):
        parse_config({**data, "methods": [{"method": "bon", "guide": {"length": {"size": 1}}}]},
                     tmp_path / "c.yaml")
    rows = run_eval(cfg, tmp_path / "out", show_progress=False)
    assert len(rows) == 6
    one, two = ({r["prompt_index"]: r for r in rows if r["method"] == f"echo(times={t})"}
                for t in (1, 2))
    assert all(two[i]["response"] == one[i]["response"] * 2 for i in one)


def test_a_new_decoder_and_guide_kind_reach_the_server(extended, base):
    from fastapi.testclient import TestClient

    from w2s.serve.app import Server, create_app

    server = Server(base, LengthGuide(2))
    server.probe()
    with TestClient(create_app(server)) as client:
        methods = {m["name"]: m for m in client.get("/w2s/methods").json()["methods"]}
        assert methods["echo"]["available"] and methods["echo"]["knobs"] == [
            {"name": "times", "type": "integer", "default": 2,
             "doc": "How often the echo repeats the base's sample."}]
        r = client.post("/v1/completions", json={"prompt": "The movie was", "max_tokens": 6, "seed": 0,
                                                 "w2s": {"method": "echo", "times": 3}})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["text"] == _want_echo(base, 3)
        assert r.json()["w2s"]["params"] == {"times": 3}
        bad = client.post("/v1/completions", json={"prompt": "x",
                                                   "w2s": {"method": "echo", "times": 0}})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "w2s.times"
        assert bad.json()["error"]["message"] == "w2s.times must be >= 1, got 0"
        # the server's guide is the new kind: Best-of-N ranks by it
        r = client.post("/v1/completions", json={"prompt": "The movie was", "max_tokens": 6, "seed": 0,
                                                 "w2s": {"method": "bon", "n": 4}})
        want = w2s.bon(base, LengthGuide(2), ["The movie was"], w2s.BestOfNParams(4),
                             SamplingParams(seed=0, max_new_tokens=6))[0]
        assert r.json()["choices"][0]["text"] == want.text


def test_w2s_serve_builds_its_guide_from_a_guide_term(extended, tmp_path):
    """``w2s serve --guide-term length:{...}``: the server's settings become its guide."""
    from click.testing import CliRunner as Runner

    from w2s.cli import cli as w2s_cli
    from w2s.serve.main import build_server, merge

    captured = {}

    def fake_run(opts, explicit):  # noqa: ANN001, ANN202 - stop before uvicorn starts
        captured["server"] = build_server(merge(opts, explicit))

    import w2s.serve.main as main

    real, main.run_server = main.run_server, fake_run
    try:
        out = Runner().invoke(w2s_cli, ["serve", "--base", "zoo:base", "--guide-term",
                                        'length:{"target": 2}', "--method", "bon"])
    finally:
        main.run_server = real
    assert out.exit_code == 0, out.output
    server = captured["server"]
    assert isinstance(server.guide, LengthGuide) and server.guide.target == 2
    assert server.defaults.method == "bon" and "bon" not in server.why_not
    assert "eft" in server.why_not  # a text-only guide: no pair to step


def test_the_playground_lists_what_the_methods_endpoint_lists():
    page = (ROOT / "src" / "w2s" / "serve" / "static" / "index.html").read_text()
    assert 'api("/w2s/methods")' in page
    for name in decoders():  # no list of its own
        assert f'"{name}"' not in page
    for f in sampling_fields():  # nor of the sampling fields (max_tokens: its limit is set)
        assert f.openai not in page or f.openai == "max_tokens", f.openai


# ------------------------------------------------------------------ a plugin package
PLUGIN = '''
from dataclasses import dataclass

import w2s
from w2s.errors import FieldError
from w2s.guides import Guide


@dataclass(frozen=True)
class ShoutKnobs:
    """Knobs of the shout decoder."""

    marks: int = 1
    """Exclamation marks after the base's sample."""

    def to_dict(self):
        return {"marks": self.marks}

    def __post_init__(self):
        if self.marks < 0:
            raise FieldError("marks", f"must be >= 0, got {self.marks}")


def shout(backend, guide, prompts, knobs, sampling=None):
    results = w2s.sample(backend, None, prompts, sampling)
    for r in results:
        r.method, r.text = "shout", r.text + "!" * knobs.marks
    return results


def register():
    w2s.register(w2s.DecoderSpec("shout", shout, "a base sample, shouted (a plugin)",
                                 ShoutKnobs, guide="optional"))
'''


@pytest.mark.slow
def test_a_plugin_package_reaches_every_face(tmp_path, tiny_paths, base):
    """An installed distribution (its dist-info with an entry point, as pip writes it) on a
    temporary path: its decoder shows in ``--help``, runs from the CLI, and is listed by the
    server's schema, with no edit to w2s."""
    site = tmp_path / "site"
    (site / "w2s_shout").mkdir(parents=True)
    (site / "w2s_shout" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "w2s_shout-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: w2s-shout\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[w2s.plugins]\nshout = w2s_shout:register\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")])}

    def w2s_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "w2s.cli", *args], capture_output=True,
                              text=True, env=env, timeout=300)

    help_text = " ".join(w2s_cli("generate", "--help").stdout.split())
    assert "shout: a base sample, shouted (a plugin)" in help_text
    assert "--marks INTEGER [shout] Exclamation marks" in help_text
    out = w2s_cli("generate", "--base", tiny_paths["base"], "--method", "shout", "--marks", "3",
                  "--prompt", "The movie was", "--max-new-tokens", "6", "--seed", "0", "--json")
    assert out.returncode == 0, out.stderr
    [s] = w2s.sample(base, None, ["The movie was"], SamplingParams(seed=0, max_new_tokens=6))
    assert json.loads(out.stdout)["response"] == s.text + "!!!"
    bad = w2s_cli("generate", "--base", tiny_paths["base"], "--method", "shout", "--marks",
                  "-1", "--prompt", "x")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --marks must be >= 0, got -1"
    schema = subprocess.run(
        [sys.executable, "-c", "from w2s.decoding import decoders; from w2s.serve.schema "
         "import request_models; c, _ = request_models(decoders()); "
         "print(sorted(c.model_json_schema()['$defs']))"],
        capture_output=True, text=True, env=env, timeout=300)
    assert "Method_shout" in schema.stdout, schema.stderr
    off = subprocess.run([sys.executable, "-m", "w2s.cli", "generate", "--help"],
                         capture_output=True, text=True, env={**env, "W2S_PLUGINS": "0"})
    assert "shout" not in off.stdout


# ------------------------------------------------------------------ the server's bad input
@pytest.fixture(scope="module")
def client(base, pair):
    from fastapi.testclient import TestClient

    from w2s.serve.app import Server, create_app

    server = Server(base, pair)
    server.probe()
    with TestClient(create_app(server)) as c:
        yield c


@pytest.mark.parametrize("body,param", [
    ({"prompt": "\ud800"}, None),
    ({"prompt": ["ok", "bad \udfff"]}, None),
    ({"prompt": 5}, "prompt"),
    ({"prompt": [1, 2]}, "prompt"),
    ({"prompt": {"text": "x"}}, "prompt"),
    ({"prompt": "x", "stop": "\ud800"}, None),
    ({"prompt": "x", "w2s": {"method": "cbs", "width": 4}}, "w2s.width"),
    ({"prompt": "x", "w2s": {"w": 4}}, "w2s.method"),
    ({"prompt": "x", "w2s": {"method": "beam"}}, "w2s.method"),
    ({"prompt": "x", "w2s": {"method": "cbs", "w": "four"}}, "w2s.w"),
    ({"prompt": "x", "w2s": {"method": "cbs", "w": 0}}, "w2s.w"),
    ({"prompt": "x", "temperature": -1}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": "x", "top_k": -3}, "top_k"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "seed": 2**70}, "seed"),
])
def test_malformed_completions_are_400_naming_the_field(client, body, param):
    r = client.post("/v1/completions", content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert "\n" not in err["message"]
    if param is not None:
        assert err["param"] == param, err


@pytest.mark.parametrize("body", [
    {"messages": "hello"},
    {"messages": [{"role": "user", "content": 5}]},
    {"messages": [{"role": "user", "content": "\ud800"}]},
    {"messages": [{"role": "robot", "content": "x"}]},
    {"messages": [{"role": "user", "content": "x"}], "w2s": {"method": "eft", "bogus": 1}},
])
def test_malformed_chat_requests_are_400(client, body):
    r = client.post("/v1/chat/completions", content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] is not None


def test_field_paths_of_validation_errors():
    from w2s.serve.app import field_path

    assert field_path(("body", "w2s", "cbs", "w")) == "w2s.w"
    assert field_path(("body", "prompt", "list[str]", 1)) == "prompt[1]"
    assert field_path(("body", "messages", 0, "content")) == "messages[0].content"


# ------------------------------------------------------------------ one sampling surface
def _off_default(f):  # noqa: ANN001, ANN202 - a value unlike the field's default, in bounds
    return {"integer": (f.default or 0) + 3, "number": f.default / 2 if f.default else 0.5,
            "boolean": not f.default, "array": ["zz"], "string": "zz"}[f.kind]


@pytest.mark.parametrize("field", sampling_fields(), ids=lambda f: f.name)
def test_every_sampling_field_reaches_every_face_unchanged(field, tmp_path):
    """Each SamplingParams field, set off its default, arrives unchanged through the CLI's
    flags, an eval config, a server request under its OpenAI name (and ``/w2s/methods``, whose
    list the playground draws), and an engine's request body where an engine takes it. Every
    face is generated from params.py, so a field added there alone passes this test."""
    import click
    from scripted import ScriptedBackend

    from w2s.cli.options import flag, sampling_options, sampling_values
    from w2s.models.openai_api import PER_CALL, engine_sampling
    from w2s.serve import schema as S
    from w2s.serve.plan import plan
    from w2s.serve.server import Defaults, Server

    value = _off_default(field)
    want = tuple(value) if isinstance(value, list) else value
    # the CLI: one flag per field
    got: dict = {}

    @click.command()
    @sampling_options
    def cmd(**opts):  # noqa: ANN003, ANN202
        got.update(sampling_values(opts))

    args = [flag(field.name)] if field.kind == "boolean" else [flag(field.name), str(
        value[0] if isinstance(value, list) else value)]
    out = CliRunner().invoke(cmd, args)
    assert out.exit_code == 0, out.output
    assert got == {field.name: want}
    # an eval config (seeds are its own key: `seeds:`)
    if field.name != "seed":
        cfg = parse_config({"task": "sentiment", "base": "zoo:base", "methods": ["sample"],
                            "sampling": {field.name: value}}, tmp_path / "c.yaml")
        assert getattr(cfg.methods[0].sampling, field.name) == want
    # a server request, under the OpenAI name
    server = Server(ScriptedBackend(), None, defaults=Defaults(method="sample"))
    completion, _ = S.request_models(decoders())
    req = completion.model_validate({"prompt": "p", field.openai: value})
    [sampling] = plan(server, req, ["p"], req.max_tokens).samplings
    assert getattr(sampling, field.name) == want
    listed = server.method_list()
    assert field.openai in {k.name for k in listed.sampling} and field.openai in listed.defaults
    # an engine's request body
    if field.engine == "none":
        with pytest.raises(FieldError, match=f"^{field.openai} cannot be sent"):
            engine_sampling(sampling)
    elif field.name not in PER_CALL:
        assert engine_sampling(sampling)[field.openai] == value


def test_a_field_no_engine_takes_is_a_400_naming_it_through_an_engine_base(monkeypatch):
    """Were ignore_eos a field no engine takes, a request setting it through an engine base
    is refused before any HTTP, naming it; at its default it is not sent at all."""
    import dataclasses as dc

    from w2s.models import openai_api
    from w2s.serve import schema as S
    from w2s.serve.errors import ApiError
    from w2s.serve.plan import plan
    from w2s.serve.server import Defaults, Server

    table = tuple(dc.replace(f, engine="none") if f.name == "ignore_eos" else f
                  for f in sampling_fields())
    monkeypatch.setattr(openai_api, "sampling_fields", lambda: table)
    server = Server(openai_api.OpenAIBackend("http://127.0.0.1:9", "m"), None,
                    defaults=Defaults(method="sample"))
    completion, _ = S.request_models(decoders())
    with pytest.raises(ApiError) as e:
        plan(server, completion.model_validate({"prompt": "p", "ignore_eos": True}), ["p"], None)
    assert (e.value.status, e.value.param) == (400, "ignore_eos")
    assert str(e.value).startswith("ignore_eos cannot be sent to an OpenAI-compatible engine")
    assert "ignore_eos" not in openai_api.engine_sampling(SamplingParams())


def _knob_off_default(name, kind, default):  # noqa: ANN001, ANN202 - in bounds, not default
    if name == "schedule":
        return "8:4"
    return {"integer": (default or 0) + 1, "number": default / 2 if default else 0.5,
            "boolean": not default, "string": "x"}[kind]


@pytest.mark.parametrize("method, knob", [(m, k) for m, s in decoders().items()
                                          for k in s.knobs()], ids=lambda x: getattr(x, "name", x))
def test_every_knob_reaches_every_face_unchanged(method, knob, tmp_path, monkeypatch):
    """Each knob of each decoder, set off its default, arrives unchanged through the CLI's
    flags, an eval config, a server request's ``w2s`` field, and ``/w2s/methods``."""
    from scripted import ScriptedBackend

    import w2s.request as R
    from w2s.serve import schema as S
    from w2s.serve.plan import plan
    from w2s.serve.server import Defaults, Server

    value = _knob_off_default(knob.name, knob.kind, knob.default)
    pair = ["--tuned", "zoo:tuned", "--untuned", "zoo:untuned"]
    seen = []
    monkeypatch.setattr(R, "run", lambda request, prompts, loader=None: seen.append(request)
                        or [])
    flag = "--" + knob.name.replace("_", "-")
    args = [flag, str(value).lower() if knob.kind == "boolean" else str(value)]
    out = CliRunner().invoke(cli, ["generate", "--base", "zoo:base", *pair, "--method", method,
                                   *args, "--prompt", "p"])
    assert out.exit_code == 0, out.output
    assert getattr(seen[0].knobs, knob.name) == value
    cfg = parse_config({"task": "sentiment", "base": "zoo:base",
                        "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
                        "methods": [{"method": method, knob.name: value}]}, tmp_path / "c.yaml")
    assert getattr(cfg.methods[0].params, knob.name) == value
    server = Server(ScriptedBackend(), None, defaults=Defaults(method="sample"))
    completion, _ = S.request_models(decoders())
    req = completion.model_validate({"prompt": "p", "w2s": {"method": method,
                                                            knob.name: value}})
    assert getattr(plan(server, req, ["p"], None).params, knob.name) == value
    [listed] = [m for m in server.method_list().methods if m.name == method]
    assert knob.name in {k.name for k in listed.knobs}
