"""The bad-input table: every bad input below, through the CLI, the Python API, eval configs
and the server, gets one line (no traceback) and the exit code or HTTP status listed in
docs/errors.md, which this test writes with W2S_UPDATE_ERRORS=1 and otherwise checks, so the
published table is always what a user sees."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from cli_output import without_stages
from click.testing import CliRunner

import w2s
from w2s import W2SError
from w2s.cli import cli
from w2s.request import parse_request
from w2s.zoo import ZOO_DIR

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"
Z = ["--base", "zoo:base", "--tuned", "zoo:tuned", "--untuned", "zoo:untuned"]
G = ["generate", *Z, "--prompt", "The movie was", "--max-new-tokens", "4"]
PROMPTS = b'{"prompt": "the movie was"}\n{"prompt": "the acting"}\n{"prompt": "a film"}\n'
D = ["distill", "data", *Z, "--max-new-tokens", "4", "--no-progress"]
DATA = [*D, "--method", "bon", "--n", "2", "--prompts-file", "TMP/p.jsonl", "--out", "TMP/d"]
"""A small distill data folder (TMP/d) that the distill train cases start from."""



def _row(**changed: object) -> bytes:
    """One line of an eval results file with the keys a report reads, some changed."""
    import json

    row = {"method": "bon", "seed": 0, "prompt_index": 0, "gold": {"vader": 0.5}, "kl": 0.0,
           "base_logp_per_token": -1.0, "base_tokens": 8, "guide_tokens": 8,
           "wall_time_s": 1.0, **changed}
    return (json.dumps(row) + "\n").encode()

def write_files(tmp: Path, files: dict[str, bytes] | None) -> None:
    for name, data in (files or {}).items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)


def cli_case(*args: str, files: dict[str, bytes] | None = None,
             stdin: bytes | None = None) -> Callable:
    def run(tmp: Path) -> tuple[str, str]:
        write_files(tmp, files)
        argv = [a.replace("TMP", str(tmp)) for a in args]
        res = CliRunner().invoke(cli, argv, prog_name="w2s", input=stdin)
        return without_stages(res.output), f"exit {res.exit_code}"
    return run


def cli_after(first: Sequence[str], *args: str, files: dict[str, bytes] | None = None,
              then: dict[str, bytes] | None = None) -> Callable:
    """The last of two commands, the first one (which must succeed) making what it needs;
    ``then``: files written (or damaged) between the two."""
    def run(tmp: Path) -> tuple[str, str]:
        write_files(tmp, files)
        res = CliRunner().invoke(cli, [a.replace("TMP", str(tmp)) for a in first])
        assert res.exit_code == 0, res.output
        write_files(tmp, then)
        return cli_case(*args)(tmp)
    return run


def chat_rows_into_a_bare_student(tmp: Path) -> tuple[str, str]:
    """Chat-form training rows (data made with --chat) into a student of the same tokenizer
    but no chat template."""
    import shutil

    shutil.copytree(ZOO_DIR / "base", tmp / "bare")
    (tmp / "bare" / "chat_template.jinja").unlink()
    write_files(tmp, {"p.jsonl": PROMPTS})
    res = CliRunner().invoke(cli, [a.replace("TMP", str(tmp)) for a in [*DATA, "--chat"]])
    assert res.exit_code == 0, res.output
    return cli_case("distill", "train", "TMP/d", "--student", "TMP/bare", "--out",
                    "TMP/s")(tmp)


def api_case(fn: Callable[[], object]) -> Callable:
    def run(tmp: Path) -> tuple[str, str]:
        try:
            fn()
        except W2SError as e:
            return str(e), "W2SError"
        except TypeError as e:  # a wrong kind of argument at a Python entry point
            return str(e), "TypeError"
        return "(accepted)", "no error"
    return run


def config_case(data: dict) -> Callable:
    def run(tmp: Path) -> tuple[str, str]:
        from w2s.evaluate.config import parse_config

        base = {"name": "t", "task": "sentiment", "base": "zoo:base",
                "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
                "methods": ["sample"]}
        try:
            parse_config({**base, **data}, tmp / "cfg.yaml")
        except W2SError as e:
            return str(e), "W2SError"
        return "(accepted)", "no error"
    return run


def http_case(path: str, body: object, headers: dict | None = None, method: str = "POST"
              ) -> Callable:
    def run(tmp: Path, server) -> tuple[str, str]:  # noqa: ANN001
        h = server.headers() if headers is None else headers
        r = (httpx.post(server.url + path, content=json.dumps(body).encode(),  # \ud800 too
                        headers={**h, "Content-Type": "application/json"}, timeout=60)
             if method == "POST" else httpx.get(server.url + path, headers=h, timeout=60))
        return r.json()["error"]["message"], f"HTTP {r.status_code}"
    return run


def _second_writer() -> None:
    import tempfile

    from w2s.evaluate.run import exclusive

    lock = Path(tempfile.mkdtemp()) / "results.jsonl.lock"
    with exclusive(lock), exclusive(lock):
        pass


def _generalise(rows: Sequence[object], **over: object) -> dict[str, bytes]:
    """The files of a small ``w2s generalise`` run (TMP/g.yaml over TMP/d.jsonl) on the zoo."""
    import yaml

    cfg = {"name": "t", "data": {"source": "d.jsonl", "rating": "r", "scale": [-4, 4]},
           "splits": {"weak_train": 8, "strong_train": 8, "test": 8},
           "models": {"weak": "zoo:xuntuned", "strong": "zoo:untuned"}, "seeds": 1,
           "probe": {"epochs": 1}, "bootstrap": {"draws": 100}, "methods": ["naive"], **over}
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    return {"g.yaml": yaml.safe_dump(cfg).encode(), "d.jsonl": "\n".join(lines).encode()}


GOOD = [{"text": f"the film number {i} was {'good' if i % 2 else 'bad'}",
         "r": 2.0 if i % 2 else -2.0} for i in range(30)]
GEN = ["generalise", "TMP/g.yaml", "--out", "TMP/o", "--no-progress"]


def _other_tokenizer() -> None:
    """Features cached for a model folder whose tokenizer was replaced since."""
    import shutil
    import tempfile

    from w2s.generalise.features import cached_features

    tmp = Path(tempfile.mkdtemp())
    shutil.copytree(ZOO_DIR / "untuned", tmp / "m")
    kw = dict(pool="last", max_tokens=16, batch=4, device="cpu", dtype="float32")
    cached_features("strong", "m", str(tmp / "m"), ["a film"], "d", tmp / "f", **kw)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ZOO_DIR / "xuntuned" / f, tmp / "m" / f)
    cached_features("strong", "m", str(tmp / "m"), ["a film"], "d", tmp / "f", **kw)


def _no_head() -> None:
    """Fine-tuning a causal LM that transformers gives no sequence-classification head."""
    import shutil
    import tempfile

    from transformers import CodeGenConfig

    from w2s.generalise.finetune import load_classifier

    tmp = Path(tempfile.mkdtemp())
    CodeGenConfig(n_embd=16, n_layer=1, n_head=2, vocab_size=4096).save_pretrained(tmp)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(ZOO_DIR / "untuned" / f, tmp / f)
    load_classifier(str(tmp), "cpu", False, 4)


def _reward_for(task: str) -> Callable:
    """An eval config whose guide is a reward model w2s trained for another task."""
    def run(tmp: Path) -> tuple[str, str]:
        import shutil

        rm = tmp / "rm"
        rm.mkdir()
        shutil.copy(ZOO_DIR / "base" / "config.json", rm / "config.json")
        (rm / "w2s_reward.json").write_text(json.dumps({"reward_for": task}))
        return config_case({"methods": [{"method": "bon", "n": 2,
                                         "guide": {"reward_model": str(rm)}}]})(tmp)
    return run


@pytest.fixture(scope="module")
def zoo():
    return (w2s.HFModel.load(str(ZOO_DIR / "base")),
            w2s.PairGuide.load(str(ZOO_DIR / "tuned"), str(ZOO_DIR / "untuned")))


def cases(zoo) -> list[tuple[str, str, Callable]]:  # noqa: ANN001
    base, pair = zoo
    S = w2s.SamplingParams  # noqa: N806
    return [
        # ---------------------------------------------------------------- CLI
        ("CLI", "no base", cli_case("generate", "--prompt", "x")),
        ("CLI", "no prompt", cli_case("generate", *Z)),
        ("CLI", "unknown method", cli_case(*G, "--method", "beam")),
        ("CLI", "knob of another method (--beta with cbs)", cli_case(*G, "--beta", "2")),
        ("CLI", "W = 0", cli_case(*G, "--w", "0")),
        ("CLI", "infinite temperature", cli_case(*G, "--temperature", "inf")),
        ("CLI", "NaN beta", cli_case(*G, "--method", "eft", "--beta", "nan")),
        ("CLI", "WSD threshold 0", cli_case(*G, "--method", "wsd", "--threshold", "0")),
        ("CLI", "negative top-k", cli_case(*G, "--top-k", "-1")),
        ("CLI", "top-p 0", cli_case(*G, "--top-p", "0")),
        ("CLI", "seed beyond 64 bits", cli_case(*G, "--seed", str(2**70))),
        ("CLI", "max-new-tokens 0", cli_case(*G, "--max-new-tokens", "0")),
        ("CLI", "prompt longer than the context", cli_case(
            "generate", *Z, "--prompt", "word " * 300, "--max-new-tokens", "4")),
        ("CLI", "--tuned without --untuned", cli_case(
            "generate", "--base", "zoo:base", "--tuned", "zoo:tuned", "--prompt", "x")),
        ("CLI", "a missing model folder", cli_case(
            "generate", "--base", "./no/such/model", "--method", "sample", "--prompt", "x")),
        ("CLI", "an unknown zoo role", cli_case("generate", "--base", "zoo:giant", "--method", "sample",
                                                   "--prompt", "x")),
        ("CLI", "a guide model at a URL that is not one", cli_case(
            "generate", "--base", "zoo:base", "--tuned", "zoo:tuned@http://", "--untuned",
            "zoo:untuned", "--method", "bon", "--prompt", "x")),
        ("CLI", "a guide model at a URL with no tokenizer named", cli_case(
            "generate", "--base", "zoo:base", "--tuned", "@http://127.0.0.1:9/v1", "--untuned",
            "zoo:untuned", "--method", "bon", "--prompt", "x")),
        ("CLI", "a guide model at a URL nobody answers", cli_case(
            "generate", "--base", "zoo:base", "--tuned", "zoo:tuned@http://127.0.0.1:9/v1",
            "--untuned", "zoo:untuned", "--method", "bon", "--prompt", "x")),
        ("CLI", "a pair of two vocabularies", cli_case(
            "generate", "--base", "zoo:base", "--tuned", "zoo:tuned", "--untuned", "zoo:xuntuned",
            "--prompt", "x", "--max-new-tokens", "2")),
        ("CLI", "EFT across vocabularies", cli_case(
            "generate", "--base", "zoo:base", "--tuned", "zoo:xtuned", "--untuned",
            "zoo:xuntuned", "--method", "eft", "--prompt", "x", "--max-new-tokens", "2")),
        ("CLI", "a causal LM as --reward-model", cli_case(
            "generate", "--base", "zoo:base", "--reward-model", "zoo:tuned", "--prompt", "x",
            "--max-new-tokens", "2")),
        ("CLI", "--weights with the wrong count", cli_case(*G, "--weights", "1,2")),
        ("CLI", "--weights not numbers", cli_case(*G, "--weights", "a,b")),
        ("CLI", "--return-all on sampling", cli_case(*G, "--method", "sample", "--return-all")),
        ("CLI", "a bad CBS schedule", cli_case(*G, "--schedule", "4x4")),
        ("CLI", "--device cuda without a GPU", cli_case(*G, "--device", "cuda")),
        ("CLI", "a device map naming a GPU this machine lacks",
         cli_case(*G, "--device-map", '{"": 0}')),
        ("CLI", "a device map that leaves layers unplaced",
         cli_case(*G, "--device-map", '{"model.embed_tokens": "cpu", "lm_head": "cpu"}')),
        ("CLI", "a guide device that is not there", cli_case(*G, "--guide-device", "cuda:3")),
        ("CLI", "a memory plan over the limit given", cli_case(*G, "--memory-limit", "0.001")),
        ("CLI", "a config written for a GPU on a machine without one",
         cli_case("eval", "TMP/gpu.yaml", "--out", "TMP/o", "--no-progress", files={
             "gpu.yaml": b"task: sentiment\nbase: zoo:base\ndevice: cuda\nmethods: [sample]\n"})),
        ("CLI", "--batch-size 0", cli_case(*G, "--batch-size", "0")),
        ("CLI", "a missing prompts file", cli_case("generate", *Z, "--prompts-file",
                                                 "TMP/none.jsonl")),
        ("CLI", "a prompts file that is not UTF-8", cli_case(
            "generate", *Z, "--prompts-file", "TMP/latin1.jsonl",
            files={"latin1.jsonl": '{"prompt": "caf\u00e9"}\n'.encode("latin-1")})),
        ("CLI", "a prompts file with a lone surrogate", cli_case(
            "generate", *Z, "--prompts-file", "TMP/sur.jsonl",
            files={"sur.jsonl": b'{"prompt": "bad \\ud800 text"}\n'})),
        ("CLI", "a prompts line that is not JSON", cli_case(
            "generate", *Z, "--prompts-file", "TMP/bad.jsonl", files={"bad.jsonl": b"{nope\n"})),
        ("CLI", "a prompts line without 'prompt'", cli_case(
            "generate", *Z, "--prompts-file", "TMP/np.jsonl", files={"np.jsonl": b'{"q": 1}\n'})),
        ("CLI", "--trace in a folder that does not exist", cli_case(
            *G, "--trace", "TMP/no/such/trace.jsonl")),
        ("CLI", "--trace naming a folder", cli_case(*G, "--trace", "TMP")),
        ("CLI", "eval: an unknown config", cli_case("eval", "no-such-config")),
        ("CLI", "eval: a config that is not YAML", cli_case(
            "eval", "TMP/c.yaml", files={"c.yaml": b"name: [unclosed\n"})),
        ("CLI", "report: a missing results file", cli_case("report", "TMP/none.jsonl")),
        ("CLI", "report: a file of foreign rows", cli_case(
            "report", "TMP/r.jsonl", files={"r.jsonl": b'{"a": 1}\n'})),
        ("CLI", "report: a malformed middle line", cli_case(
            "report", "TMP/m.jsonl", files={"m.jsonl": b'{"a": 1}\nnot json\n{"b": 2}\n'})),
        ("CLI", "report: a JSON array line", cli_case(
            "report", "TMP/a.jsonl", files={"a.jsonl": b'[1, 2]\n'})),
        ("CLI", "report: a row with a seed of the wrong type", cli_case(
            "report", "TMP/t.jsonl", files={"t.jsonl": _row(seed="x")})),
        ("CLI", "report: a row whose gold is not a mapping", cli_case(
            "report", "TMP/g.jsonl", files={"g.jsonl": _row(gold=5)})),
        ("CLI", "serve: --tuned without a base", cli_case("serve", "--tuned", "zoo:tuned")),
        ("CLI", "serve: an unknown default method", cli_case("serve", "--method", "zzz")),
        ("CLI", "zoo get: an unknown model", cli_case("zoo", "get", "gpt5")),
        ("CLI", "zoo family: an unknown base", cli_case("zoo", "family", "gpt5", "--out",
                                                         "TMP/fam")),
        ("CLI", "demo: --family without --real", cli_case("demo", "--family", "TMP")),
        ("CLI", "demo: --real with --models", cli_case("demo", "--real", "--models", "TMP")),
        ("CLI", "an infinite tau", cli_case(*G, "--method", "particles", "--tau", "inf")),
        ("CLI", "a pruning fraction of 0", cli_case(*G, "--method", "pruned_bon", "--prune", "0")),
        ("CLI", "MCMC with 0 steps", cli_case(*G, "--method", "qalign", "--steps", "0")),
        ("CLI", "MCMC with a NaN beta", cli_case(*G, "--method", "qalign", "--beta", "nan")),
        ("CLI", "--guide-term of an unknown kind", cli_case(*G, "--guide-term", "lenght:{}")),
        ("CLI", "--guide-term with knobs that are not JSON",
         cli_case(*G, "--guide-term", "length:{target: 2}")),
        # ---------------------------------------------------------------- w2s distill
        ("CLI", "distill: an empty prompt set", cli_case(
            *D, "--method", "bon", "--prompts-file", "TMP/p.jsonl", "--out", "TMP/d",
            files={"p.jsonl": b""})),
        ("CLI", "distill: a prompt twice", cli_case(
            *D, "--method", "bon", "--prompts-file", "TMP/p.jsonl", "--out", "TMP/d",
            files={"p.jsonl": PROMPTS + b'{"prompt": "the acting"}\n'})),
        ("CLI", "distill: preference rows from a method with one answer", cli_case(
            *D, "--method", "sample", "--prompt", "x", "--out", "TMP/d")),
        ("CLI", "distill: --rank-by on a method with one answer", cli_case(
            *D, "--method", "sample", "--pairs", "none", "--rank-by", "vader", "--prompt", "x",
            "--out", "TMP/d")),
        ("CLI", "distill: --shots without --demos", cli_case(
            *D, "--method", "bon", "--shots", "2", "--prompt", "x", "--out", "TMP/d")),
        ("CLI", "distill: demonstrations that are chat rows", cli_case(
            *D, "--method", "bon", "--demos", "TMP/demos.jsonl", "--prompt", "x", "--out",
            "TMP/d", files={"demos.jsonl": b'{"messages": []}\n'})),
        ("CLI", "distill: an output folder holding another run", cli_after(
            DATA, *DATA[:-6], "--n", "3", *DATA[-4:], files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: training data that is not a distill folder",
         cli_case("distill", "train", "TMP", "--out", "TMP/s")),
        ("CLI", "distill: a student with another tokenizer than the data's base", cli_after(
            DATA, "distill", "train", "TMP/d", "--student", "zoo:xtuned", "--out", "TMP/s",
            files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: DPO on data made without pairs", cli_after(
            [*DATA, "--pairs", "none"], "distill", "train", "TMP/d", "--trainer", "dpo",
            "--out", "TMP/s", files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: KTO with one row a batch", cli_after(
            DATA, "distill", "train", "TMP/d", "--trainer", "kto", "--batch-size", "1",
            "--out", "TMP/s", files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: a training folder that holds other files", cli_after(
            DATA, "distill", "train", "TMP/d", "--out", "TMP", files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: a torn distill.json in the data folder", cli_after(
            DATA, "distill", "train", "TMP/d", "--out", "TMP/s", files={"p.jsonl": PROMPTS},
            then={"d/distill.json": b'{"request": {"method"'})),
        ("CLI", "distill: a line of sft.jsonl that is not JSON", cli_after(
            DATA, "distill", "train", "TMP/d", "--out", "TMP/s", files={"p.jsonl": PROMPTS},
            then={"d/sft.jsonl": b'{"prompt": "a", "completion": " b"}\nnot json\n'})),
        ("CLI", "distill: --epochs inf", cli_after(
            DATA, "distill", "train", "TMP/d", "--epochs", "inf", "--out", "TMP/s",
            files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: a torn train.json in the output folder", cli_after(
            DATA, "distill", "train", "TMP/d", "--out", "TMP/s", files={"p.jsonl": PROMPTS},
            then={"s/train.json": b'{"plan": '})),
        ("CLI", "distill: chat rows into a student without a chat template",
         chat_rows_into_a_bare_student),
        ("CLI", "distill: --answers 2 on a method with one answer", cli_case(
            *D, "--method", "sample", "--pairs", "none", "--answers", "2", "--prompt", "x",
            "--out", "TMP/d")),
        ("CLI", "distill: --min-distinct above 1", cli_after(
            DATA, "distill", "train", "TMP/d", "--min-distinct", "1.5", "--guard-prompts-file",
            "TMP/g.jsonl", "--out", "TMP/s",
            files={"p.jsonl": PROMPTS, "g.jsonl": b'{"prompt": "held out"}\n'})),
        ("CLI", "distill: --min-distinct without held-out prompts", cli_after(
            DATA, "distill", "train", "TMP/d", "--min-distinct", "0.5", "--out", "TMP/s",
            files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: --guard-steps without --min-distinct", cli_after(
            DATA, "distill", "train", "TMP/d", "--guard-steps", "2", "--out", "TMP/s",
            files={"p.jsonl": PROMPTS})),
        ("CLI", "distill: --guard-steps 0", cli_after(
            DATA, "distill", "train", "TMP/d", "--min-distinct", "0.5", "--guard-prompts-file",
            "TMP/g.jsonl", "--guard-steps", "0", "--out", "TMP/s",
            files={"p.jsonl": PROMPTS, "g.jsonl": b'{"prompt": "held out"}\n'})),
        ("CLI", "distill: guard prompts that are training prompts", cli_after(
            DATA, "distill", "train", "TMP/d", "--min-distinct", "0.5", "--guard-prompts-file",
            "TMP/p.jsonl", "--out", "TMP/s", files={"p.jsonl": PROMPTS})),
        ("CLI", "distill rounds: --out is a file", cli_case(
            "distill", "rounds", *Z, "--method", "bon", "--n", "2", "--max-new-tokens", "4",
            "--prompts-file", "TMP/p.jsonl", "--eval-prompts-file", "TMP/e.jsonl", "--out",
            "TMP/f", "--no-progress",
            files={"p.jsonl": PROMPTS, "e.jsonl": b'{"prompt": "held out"}\n', "f": b"x"})),
        ("CLI", "--prompts-file - with bytes that are not UTF-8", cli_case(
            *G[:-4], "--prompts-file", "-", stdin=b'{"prompt": "caf\xe9"}\n')),
        ("CLI", "eval: a results row without its seed", cli_case(
            "eval", "sentiment", "--limit", "1", "--out", "TMP/o", "--no-progress",
            files={"o/results.jsonl": b'{"hash": "abc", "method": "x", "prompt_index": 0}\n'})),
        ("CLI", "serve: a --host this machine cannot listen on",
         cli_case("serve", "--host", "203.0.113.7", "--port", "8123")),
        # ---------------------------------------------------------------- Python API
        ("API", "SamplingParams in the knobs' place",
         api_case(lambda: w2s.cbs(base, pair, ["x"], S()))),
        ("API", "a plain dict to request.run (not parse_request's Request)",
         api_case(lambda: w2s.request.run({"method": "sample", "base": "zoo:base"}, ["x"]))),
        ("API", "a dict as the sampling settings",
         api_case(lambda: w2s.sample(base, None, ["x"], {"max_new_tokens": 5}))),
        ("API", "an infinite temperature", api_case(lambda: S(temperature=float("inf")))),
        ("API", "a seed beyond 64 bits", api_case(lambda: S(seed=2**64))),
        ("API", "a string as max_new_tokens", api_case(lambda: S(max_new_tokens="5"))),
        ("API", "an empty stop string", api_case(lambda: S(stop=("",)))),
        ("API", "beta = inf", api_case(lambda: w2s.EFTParams(beta=float("inf")))),
        ("API", "W and a schedule", api_case(lambda: w2s.SearchParams(w=2, schedule="2:2"))),
        ("API", "an AdaSearch decay of 1", api_case(
            lambda: w2s.SearchParams(schedule="adasearch:1"))),
        ("API", "WSD threshold 1", api_case(lambda: w2s.WSDParams(threshold=1.0))),
        ("API", "WSD threshold NaN", api_case(lambda: w2s.WSDParams(threshold=float("nan")))),
        ("API", "WSD without a pair", api_case(lambda: w2s.wsd(base, None, ["x"]))),
        ("API", "no prompts", api_case(lambda: w2s.sample(base, None, []))),
        ("API", "a prompt that is not a string", api_case(lambda: w2s.sample(base, None, [3]))),
        ("API", "a lone surrogate in a prompt",
         api_case(lambda: w2s.sample(base, None, ["bad \ud800"]))),
        ("API", "CBS without a guide", api_case(lambda: w2s.cbs(base, None, ["x"]))),
        ("API", "a string as the guide", api_case(lambda: w2s.cbs(base, "pair", ["x"]))),
        ("API", "EFT with a reward-model-free sum that is not pairs",
         api_case(lambda: w2s.eft(base, None, ["x"]))),
        ("API", "negative expert weights", api_case(
            lambda: w2s.eft(base, -1.0 * pair + pair, ["x"], None, S(max_new_tokens=2)))),
        ("API", "a weighted guide with no terms", api_case(lambda: w2s.WeightedGuide([]))),
        ("API", "an unknown normalisation",
         api_case(lambda: (pair + pair).normalized("softmax"))),
        ("API", "device cuda without a GPU",
         api_case(lambda: w2s.HFModel.load(str(ZOO_DIR / "base"), device="cuda"))),
        ("API", "a chat message with an unknown role",
         api_case(lambda: w2s.chat.ChatPrompt([{"role": "robot", "content": "x"}]))),
        ("API", "a guide weighted by NaN through *", api_case(lambda: pair * float("nan"))),
        ("API", "a guide weighted by inf through *", api_case(lambda: float("inf") * pair)),
        ("API", "a request: a NaN expert weight", api_case(lambda: parse_request(
            {"method": "bon", "guide": {"tuned": ["zoo:tuned", "zoo:otuned"],
                                        "untuned": "zoo:untuned", "weights": [1, float("nan")]}}))),
        ("API", "a request: an unknown sampling field", api_case(lambda: parse_request(
            {"method": "sample", "sampling": {"temprature": 1}}))),
        ("API", "a request: a knob of another method",
         api_case(lambda: parse_request({"method": "eft", "n": 4}))),
        ("API", "a request: an engine base without its model name",
         api_case(lambda: parse_request({"method": "sample", "base": {"url": "http://h/v1"}}))),
        ("API", "a request: an unknown guide kind", api_case(lambda: parse_request(
            {"method": "bon", "guide": {"lenght": {}}}))),
        # ---------------------------------------------------------------- eval configs
        ("config", "an unknown top-level key", config_case({"sampler": {}})),
        ("config", "an unknown method", config_case({"methods": ["beam"]})),
        ("config", "a device map naming a GPU this machine lacks",
         config_case({"device_map": {"model": 0, "lm_head": "cpu"}})),
        ("config", "a memory limit that is not a size", config_case({"memory_limit": "lots"})),
        ("config", "an unknown knob", config_case({"methods": [{"method": "cbs", "beta": 1}]})),
        ("config", "W = 0 in a sweep", config_case({"methods": [{"method": "cbs", "w": [4, 0]}]})),
        ("config", "an empty sweep", config_case({"methods": [{"method": "bon", "n": []}]})),
        ("config", "an infinite temperature",
         config_case({"sampling": {"temperature": float("inf")}})),
        ("config", "a guide with tuned only", config_case({"guide": {"tuned": "zoo:tuned"}})),
        ("config", "a missing model", config_case({"base": "./missing"})),
        ("config", "expert weights of the wrong count", config_case(
            {"guide": {"tuned": ["zoo:tuned", "zoo:otuned"], "untuned": "zoo:untuned",
                       "weights": [1]}})),
        ("config", "an unknown normalisation", config_case(
            {"guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned", "normalize": "max"}})),
        ("config", "weights that are not numbers",
         config_case({"methods": [{"method": "eft", "weights": ["a"]}]})),
        ("config", "model: tuned for a guided method",
         config_case({"methods": [{"method": "cbs", "model": "tuned"}]})),
        ("config", "a seed beyond 64 bits", config_case({"seeds": [2**64]})),
        ("config", "a budget smaller than one response", config_case({"budgets": [0, 4]})),
        ("config", "knobs that cannot spend the budget",
         config_case({"budgets": [2], "methods": [{"method": "cbs", "k": 4}]})),
        ("config", "a fixed knob that a budget must change",
         config_case({"budgets": [2], "methods": [{"method": "bon", "n": 64}]})),
        ("config", "a pruning fraction of 1",
         config_case({"methods": [{"method": "pruned_bon", "prune": 1}]})),
        ("config", "tau = 0", config_case({"methods": [{"method": "particles", "tau": 0}]})),
        ("config", "MCMC with beta <= 0",
         config_case({"methods": [{"method": "qalign", "beta": 0}]})),
        ("config", "a billion seeds", config_case({"seeds": 10**9})),
        ("API", "a second eval writing to the same folder", api_case(_second_writer)),
        # ---------------------------------------------------------------- w2s generalise
        ("CLI", "generalise: a record without its label", cli_case(
            *GEN, files=_generalise([*GOOD[:3], {"text": "no rating"}]))),
        ("CLI", "generalise: a NaN rating", cli_case(
            *GEN, files=_generalise([*GOOD[:3], '{"text": "x", "r": NaN}']))),
        ("CLI", "generalise: a rating outside its scale", cli_case(
            *GEN, files=_generalise([*GOOD[:3], {"text": "x", "r": 9}]))),
        ("CLI", "generalise: one class only", cli_case(
            *GEN, files=_generalise([{"text": f"t{i}", "r": 1.5} for i in range(30)]))),
        ("CLI", "generalise: splits larger than the data", cli_case(
            *GEN, files=_generalise(GOOD, splits={"weak_train": 10, "strong_train": 10,
                                                  "test": 20}))),
        ("CLI", "generalise: fractions of splits that overlap", cli_case(
            *GEN, files=_generalise(GOOD, splits={"weak_train": 0.5, "strong_train": 0.4,
                                                  "test": 0.3}))),
        ("CLI", "generalise: the user's splits share a text", cli_case(
            *GEN, files=_generalise([{**g, "s": "weak_train"} for g in GOOD[:4]]
                                    + [{**GOOD[0], "s": "test"}],
                                    data={"source": "d.jsonl", "rating": "r",
                                          "split_column": "s"}))),
        ("CLI", "generalise: a rerun with another config on a finished folder", cli_after(
            GEN, "generalise", "TMP/g2.yaml", "--out", "TMP/o", "--no-progress",
            files=_generalise(GOOD) | {"g2.yaml": _generalise(
                GOOD, methods=["naive", "gce"])["g.yaml"]})),
        ("CLI", "generalise: reward models for one task searching another", cli_case(
            *GEN, files=_generalise(GOOD, form="pairwise", reward_for="toxicity",
                                    search={"task": "sentiment"}))),
        ("API", "generalise: features cached with another tokenizer", api_case(_other_tokenizer)),
        ("API", "generalise: fine-tuning a model without a classification head",
         api_case(_no_head)),
        ("config", "a reward model trained for another task", _reward_for("toxicity")),
        # ---------------------------------------------------------------- server
        ("server", "no API key", http_case("/v1/completions", {"prompt": "x"}, headers={})),
        ("server", "a wrong API key", http_case("/v1/completions", {"prompt": "x"},
                                                headers={"Authorization": "Bearer nope"})),
        ("server", "an unknown field", http_case("/v1/completions", {"prompt": "x", "foo": 1})),
        ("server", "logprobs (not implemented)",
         http_case("/v1/completions", {"prompt": "x", "logprobs": 2})),
        ("server", "an unknown method",
         http_case("/v1/completions", {"prompt": "x", "w2s": {"method": "beam"}})),
        ("server", "a knob of another method",
         http_case("/v1/completions", {"prompt": "x", "w2s": {"method": "cbs", "beta": 1}})),
        ("server", "W = 0", http_case("/v1/completions",
                                      {"prompt": "x", "w2s": {"method": "cbs", "w": 0}})),
        ("server", "max_tokens over the limit",
         http_case("/v1/completions", {"prompt": "x", "max_tokens": 10**6})),
        ("server", "n over the limit", http_case("/v1/completions", {"prompt": "x", "n": 99})),
        ("server", "more rows than --max-rows", http_case(
            "/v1/completions", {"prompt": "x", "w2s": {"method": "bon", "n": 10**6}})),
        ("server", "another model's name",
         http_case("/v1/completions", {"prompt": "x", "model": "gpt-4"})),
        ("server", "a prompt longer than the context",
         http_case("/v1/completions", {"prompt": "word " * 300, "max_tokens": 4})),
        ("server", "request weights of the wrong count", http_case(
            "/v1/completions", {"prompt": "x", "w2s": {"method": "cbs", "weights": [1, 2]}})),
        ("server", "empty chat messages", http_case("/v1/chat/completions", {"messages": []})),
        ("server", "a chat message with an unknown role", http_case(
            "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]})),
        ("server", "an unknown route", http_case("/v1/engines", None, method="GET")),
        ("server", "a lone surrogate in a prompt",
         http_case("/v1/completions", {"prompt": "bad \ud800"})),
        ("server", "a lone surrogate in a chat message", http_case(
            "/v1/chat/completions", {"messages": [{"role": "user", "content": "\udfff"}]})),
        ("server", "a prompt that is a number", http_case("/v1/completions", {"prompt": 5})),
        ("server", "a list of prompts holding a number",
         http_case("/v1/completions", {"prompt": ["x", 5]})),
        ("server", "chat messages that are a string",
         http_case("/v1/chat/completions", {"messages": "hello"})),
        ("server", "a knob of the wrong type",
         http_case("/v1/completions", {"prompt": "x", "w2s": {"method": "cbs", "w": "four"}})),
        ("server", "w2s without a method", http_case("/v1/completions",
                                                      {"prompt": "x", "w2s": {"w": 2}})),
        ("server", "a negative temperature",
         http_case("/v1/completions", {"prompt": "x", "temperature": -1})),
        ("server", "max_tokens 0", http_case("/v1/completions", {"prompt": "x", "max_tokens": 0})),
    ]


def _clean(msg: str, tmp: Path) -> str:
    msg = msg.strip().removeprefix("error: ")
    msg = msg.replace(str(tmp), "<tmp>").replace(str(ZOO_DIR), "<zoo>")
    msg = re.sub(r"/tmp/pytest-of-[^/\s']+/pytest-\d+/[^/\s']+", "<tmp>", msg)
    msg = re.sub(r"/tmp/tmp\w+", "<tmp>", msg)
    msg = re.sub(r"pid \d+", "pid N", msg)
    msg = re.sub(r"relative to \S+ and to the working directory",  # where the test runs
                 "relative to <cwd> and to the working directory", msg)
    return msg.replace("|", "\\|")


def test_every_bad_input_gets_one_line_and_the_published_table_is_true(zoo, w2s_server,
                                                                         tmp_path):
    rows, problems = [], []
    for surface, what, run in cases(zoo):
        tmp = tmp_path / f"c{len(rows)}"
        tmp.mkdir()
        msg, code = run(tmp, w2s_server) if surface == "server" else run(tmp)
        lines = [x for x in msg.strip().splitlines() if x.strip()]
        if (len(lines) != 1 or "Traceback" in msg or code in ("no error", "exit 0", "exit 1")
                or code.startswith("HTTP 5")):
            problems.append(f"{surface} / {what}: {code}: {msg!r}")
        rows.append(f"| {surface} | {what} | {_clean(msg, tmp)} | {code} |")
    assert not problems, "\n".join(problems)
    assert len(rows) >= 60
    text = ("# Bad inputs and what w2s says\n\n"
            "Every row is tried by `tests/test_errors.py` on each test run (regenerate this "
            "page with `W2S_UPDATE_ERRORS=1 make test`); no bad input reaches a user as a "
            "Python traceback (set `W2S_DEBUG=1` to see one for an unexpected error). CLI "
            "errors exit 2, API errors raise `w2s.W2SError`, server errors are OpenAI's JSON "
            f"error body with a 4xx status. {len(rows)} inputs.\n\n"
            "| where | bad input | the message | result |\n|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    if os.environ.get("W2S_UPDATE_ERRORS") == "1":
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, (
        "docs/errors.md is out of date: run W2S_UPDATE_ERRORS=1 pytest tests/test_errors.py")
