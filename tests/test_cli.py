"""The CLI contract. Most tests call the real ``w2s`` click group in this process (click's
``CliRunner``: the same parsing, loading and one-line errors, without a new interpreter
importing torch for ~3 s each); ``run_w2s_process`` runs ``python -m w2s.cli`` as a real
process where the process itself is under test: exit codes and a clean stderr from the
entry point, and the warnings a fresh interpreter would print."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

import w2s

pytestmark = pytest.mark.slow


@dataclass
class Ran:
    """What a run of ``w2s`` gave: the fields of ``subprocess.CompletedProcess`` tests read."""

    returncode: int
    stdout: str
    stderr: str


def run_w2s(*args: str, input: str | None = None) -> Ran:
    """``w2s ARGS`` through the real click group, in this process."""
    from w2s.cli import cli

    result = CliRunner().invoke(cli, list(args), prog_name="w2s", input=input,
                                catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def run_w2s_process(*args: str, timeout: int = 120) -> Ran:
    """``python -m w2s.cli ARGS`` as a real process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "w2s.cli", *args], capture_output=True,
                       text=True, timeout=timeout, env=env)
    return Ran(p.returncode, p.stdout, p.stderr)


def assert_one_line_error(proc: Ran, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.strip().splitlines()
             if x.strip() and not x.startswith("w2s: [")]  # less the stages shown before
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def models(tiny_paths):
    return ["--base", tiny_paths["base"], "--tuned", tiny_paths["tuned"],
            "--untuned", tiny_paths["untuned"]]


def test_help_reads_well():
    top = run_w2s_process("--help")
    assert top.returncode == 0 and "generate" in top.stdout and "demo" in top.stdout
    gen = run_w2s("generate", "--help")
    assert gen.returncode == 0
    for flag in ("--method", "--w", "--k", "--l", "--n", "--beta", "--max-new-tokens",
                 "--temperature", "--top-p", "--seed", "--chat", "--json", "--prompts-file"):
        assert flag in gen.stdout
    assert "Beam width" in gen.stdout  # field docstrings feed --help


def test_help_and_import_w2s_load_no_torch():
    """`w2s --help` and every command's `--help` answer at once: neither torch nor
    transformers is imported for them (the decoders are listed from the registry, imported on
    first use), nor by `import w2s` (its names load on first use), while `w2s.cbs`, the
    registry's decoders and `w2s.zoo` still work."""
    code = ("import sys, w2s; from w2s.cli import cli\n"
            "for args in (['--help'], ['generate', '--help'], ['eval', '--help'],\n"
            "             ['serve', '--help'], ['distill', 'data', '--help'],\n"
            "             ['zoo', 'build', '--help'], ['demo', '--help']):\n"
            "    try:\n        cli(args, prog_name='w2s')\n    except SystemExit:\n        pass\n"
            "    heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
            "    print('HEAVY', args[0], heavy)\n"
            "from w2s.decoding import get_decoder\n"
            "print('LAZY', w2s.cbs.__name__, w2s.zoo.ZOO_DIR.name, 'torch' in sys.modules,\n"
            "      get_decoder('cbs').at_budget(w2s.SearchParams(w=9, k=4, l=5), 16, 50))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    heavy = [line for line in out.stdout.splitlines() if line.startswith("HEAVY")]
    assert len(heavy) == 7 and all(line.endswith(" []") for line in heavy), heavy
    assert "LAZY cbs models True SearchParams(w=4, k=4, l=5" in out.stdout, out.stdout
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        w2s.nope  # noqa: B018
    from w2s import decoding, models

    for module in (decoding, models):
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            module.nope  # noqa: B018
    assert models.HFModel is w2s.HFModel
    # each method's function lives in the module named after it, under the method's name;
    # the registry names it "module:function" and imports it on first call
    for name, spec in decoding.decoders().items():
        module = importlib.import_module(f"w2s.decoding.{name}")
        assert spec.fn.resolve() is getattr(module, name) is getattr(w2s, name), name
    assert w2s.best_of_n is w2s.bon and w2s.particle_filter is w2s.particles  # earlier names


@pytest.mark.parametrize("method", ["sample", "bon", "cbs", "eft"])
def test_generate_json_contract(models, tmp_path, method, base, pair):
    pf = tmp_path / "prompts.jsonl"
    pf.write_text(json.dumps({"prompt": "The movie was"}) + "\n\n"
                  + json.dumps({"prompt": "I thought", "id": 7}) + "\n")
    knob_flags = {"sample": [], "bon": ["--n", "3"], "cbs": ["--w", "2", "--k", "2", "--l", "3"],
                  "eft": []}[method]
    proc = run_w2s("generate", *models, "--method", method, "--prompts-file", str(pf),
                   "--prompt", "A", *knob_flags, "--max-new-tokens", "8", "--seed", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.strip().splitlines()]
    prompts = ["A", "The movie was", "I thought"]
    assert [r["prompt"] for r in rows] == prompts
    # the same numbers as the Python API with the same knobs
    sp = w2s.SamplingParams(max_new_tokens=8, seed=1)
    knobs = {"sample": (), "bon": (w2s.BestOfNParams(3),), "cbs": (w2s.SearchParams(2, 2, 3),),
             "eft": (w2s.EFTParams(),)}[method]
    want = getattr(w2s, method)(base, pair, prompts, *knobs,
                                                                   sampling=sp)
    for r, x in zip(rows, want):
        assert r["method"] == method
        assert (r["response"], r["token_ids"]) == (x.text, x.token_ids)
        assert r["score"] == pytest.approx(x.score, abs=1e-4)


def test_generate_matches_python_api(models, tiny_paths):
    """The entry point as a user runs it: same tokens as the Python API, nothing on stderr but
    its stages (no warning)."""
    proc = run_w2s_process("generate", *models, "--method", "cbs", "--prompt", "The movie was",
                   "--w", "2", "--k", "3", "--l", "4", "--max-new-tokens", "10", "--seed", "3",
                   "--json", "--return-all")
    assert proc.returncode == 0, proc.stderr
    assert all(x.startswith("w2s: [") for x in proc.stderr.splitlines()), proc.stderr  # stages
    row = json.loads(proc.stdout)
    base = w2s.HFModel.load(tiny_paths["base"])
    guide = w2s.PairGuide.load(tiny_paths["tuned"], tiny_paths["untuned"])
    [r] = w2s.cbs(base, guide, ["The movie was"], w2s.SearchParams(2, 3, 4),
                  w2s.SamplingParams(max_new_tokens=10, seed=3), return_all=True)
    assert row["token_ids"] == r.token_ids and row["response"] == r.text
    assert len(row["candidates"]) == 2


def test_generate_cross_vocabulary_and_chat(tiny_paths):
    proc = run_w2s("generate", "--base", tiny_paths["base"], "--tuned", tiny_paths["xtuned"],
                   "--untuned", tiny_paths["xuntuned"], "--method", "cbs", "--chat",
                   "--prompt", "Review this film.", "--max-new-tokens", "6", "--seed", "0",
                   "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    base = w2s.HFModel.load(tiny_paths["base"], chat=True)
    guide = w2s.PairGuide.load(tiny_paths["xtuned"], tiny_paths["xuntuned"], chat=True)
    [want] = w2s.cbs(base, guide, ["Review this film."], w2s.SearchParams(),
                     w2s.SamplingParams(seed=0, max_new_tokens=6))
    assert (row["response"], row["token_ids"]) == (want.text, want.token_ids)
    assert row["score"] == pytest.approx(want.score, abs=1e-4)


def test_plain_text_output(models, base):
    proc = run_w2s("generate", *models, "--method", "sample", "--prompt", "The movie was",
                   "--max-new-tokens", "5", "--seed", "0")
    [want] = w2s.sample(base, None, ["The movie was"], w2s.SamplingParams(seed=0, max_new_tokens=5))
    assert proc.returncode == 0 and proc.stdout.startswith("The movie was\u2192" + want.text)


@pytest.mark.parametrize("flag,value,needle", [
    ("--w", "0", "w must be >= 1, got 0"),
    ("--k", "-2", "k must be >= 1, got -2"),
    ("--l", "0", "l must be >= 1, got 0"),
    ("--n", "0", "n must be >= 1, got 0"),
])
def test_bad_knobs_are_one_line_errors(models, flag, value, needle):
    method = "bon" if flag == "--n" else "cbs"
    assert_one_line_error(run_w2s("generate", *models, "--method", method, "--prompt", "x",
                                  flag, value), needle)


def test_knobs_of_another_method_are_refused_not_ignored(models):
    assert_one_line_error(run_w2s("generate", *models, "--method", "cbs", "--prompt", "x",
                                  "--beta", "2"),
                          "--beta is not a knob of --method cbs (its knobs: --w, --k, --l, --schedule)")
    assert_one_line_error(run_w2s("generate", *models, "--method", "sample", "--prompt", "x",
                                  "--n", "2", "--w", "3"),
                          "--n, --w are not knobs of --method sample (it has none)")
    assert_one_line_error(run_w2s("generate", *models, "--method", "eft", "--prompt", "x",
                                  "--return-all"), "--return-all is for ranked methods (bon, cbs, pruned_bon, treebon, particles, mcts, qalign), not eft")


def test_missing_model_path(tmp_path):
    missing = str(tmp_path / "nope")  # a real process: nothing printed above the error
    assert_one_line_error(run_w2s_process("generate", "--base", missing, "--method", "sample",
                                  "--prompt", "x"), f"model {missing!r} does not exist")
    # the guide's references are resolved before the base is loaded
    assert_one_line_error(run_w2s("generate", "--base", "zoo:base", "--tuned", "zoo:tuned",
                                  "--untuned", "zoo:nope", "--prompt", "x"),
                          "no zoo model 'zoo:nope'; the zoo has zoo:base")


def test_eft_with_mismatched_vocabularies(tiny_paths):
    proc = run_w2s("generate", "--base", tiny_paths["base"], "--tuned", tiny_paths["xtuned"],
                   "--untuned", tiny_paths["xuntuned"], "--method", "eft", "--prompt", "x")
    assert_one_line_error(proc, "eft needs one vocabulary", tiny_paths["base"],
                          tiny_paths["xtuned"])


def test_empty_prompts_file(models, tmp_path):
    pf = tmp_path / "empty.jsonl"
    pf.write_text("\n")
    assert_one_line_error(run_w2s("generate", *models, "--prompts-file", str(pf)),
                          "has no prompts")


def test_bad_prompts_file_lines(models, tmp_path):
    pf = tmp_path / "bad.jsonl"
    pf.write_text('{"prompt": "ok"}\n{"text": "no prompt field"}\n')
    assert_one_line_error(run_w2s("generate", *models, "--prompts-file", str(pf)), "bad.jsonl:2")


def test_prompt_longer_than_context(models):
    long_prompt = "word " * 400  # the tiny models have a 256-token context
    assert_one_line_error(run_w2s("generate", *models, "--prompt", long_prompt),
                          "exceeds the context")


def test_guide_required_and_pairs_go_together(tiny_paths):
    assert_one_line_error(run_w2s("generate", "--base", tiny_paths["base"], "--method", "cbs",
                                  "--prompt", "x"), "needs a guide")
    assert_one_line_error(run_w2s("generate", "--base", tiny_paths["base"], "--tuned",
                                  tiny_paths["tuned"], "--method", "sample", "--prompt", "x"),
                          "go together")


def test_eval_shipped_sentiment_config_quick_look(tmp_path):
    proc = run_w2s("eval", "sentiment", "--limit", "1", "--seeds", "1", "--out", str(tmp_path),
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for label in ("base sampling", "small tuned alone", "bon(n=16)", "eft(beta=1.0)",
                  "nudging(gamma=0.3)", "cbs(w=4,k=4,l=5)", "cbs cross-vocab"):
        assert label in proc.stdout
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 14 and all(r["prompt_index"] == 0 and r["seed"] == 0 for r in rows)
    for name in ("summary.md", "gold_vs_kl.png", "gold_vs_compute.png", "gold_bars.png"):
        assert (tmp_path / name).stat().st_size > 0
    again = run_w2s("eval", "sentiment", "--limit", "1", "--seeds", "1", "--out", str(tmp_path),
                    "--no-progress", "--dtype", "float16")  # other settings: refused
    assert_one_line_error(again, "made with other settings", "--restart")


def test_eval_and_report_help():
    ev = run_w2s("eval", "--help")
    assert ev.returncode == 0
    for flag in ("--out", "--limit", "--seeds", "--restart", "--batch-size", "sentiment"):
        assert flag in ev.stdout
    rep = run_w2s("report", "--help")
    assert rep.returncode == 0 and "--gold" in rep.stdout
    missing = run_w2s("report", "/no/such/results.jsonl")
    assert_one_line_error(missing, "does not exist")


def test_bare_commands_print_their_help_and_usage_errors_are_one_line():
    out = run_w2s_process()
    assert out.returncode == 0 and out.stdout.startswith("Usage: w2s") and not out.stderr
    bad = run_w2s_process("generate", "--method", "beam", "--prompt", "x")
    assert_one_line_error(bad, "Invalid value for '--method'", "(see 'w2s generate --help')")
    assert bad.returncode == 2


def test_vllms_flag_names_and_dtype_names_are_taken_too(models):
    """A vLLM user's --served-model-name and --dtype half / float work unchanged."""
    import torch

    from w2s.cli.serve import serve
    from w2s.models.loading import choose_dtype

    assert choose_dtype("half", torch.device("cpu")) is torch.float16
    assert choose_dtype("float", torch.device("cpu")) is torch.float32
    names = {n for p in serve.params for n in getattr(p, "opts", [])}
    assert {"--served-name", "--served-model-name"} <= names
    proc = run_w2s("generate", *models[:2], "--method", "sample", "--dtype", "float",
                   "--max-new-tokens", "3", "--seed", "0", "--prompt", "the movie was", "--json")
    assert proc.returncode == 0, proc.stderr


def test_prompts_files_take_messages_stdin_and_pass_other_fields_through(models, tmp_path):
    lines = [{"prompt": "the movie was", "id": "a-1"},
             {"messages": [{"role": "user", "content": "the film"}], "id": "a-2", "k": [1]}]
    text = "".join(json.dumps(x) + "\n" for x in lines)
    proc = run_w2s("generate", *models[:2], "--method", "sample", "--max-new-tokens", "3",
                   "--seed", "0", "--prompts-file", "-", "--json", input=text)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a-1", "a-2"] and rows[1]["k"] == [1]
    assert json.loads(rows[1]["prompt"]) == lines[1]["messages"]  # a chat prompt, as sent
    bad = tmp_path / "bad.jsonl"
    for line, needle in [({"prompt": "x", "response": 1}, "field 'response' is one of the "
                          "output's own"),
                         ({"prompt": "x", "messages": []}, "needs a string field 'prompt' or "
                          "a list 'messages' (one of them)"),
                         ({"messages": [{"role": "bot", "content": "x"}]},
                          "bad.jsonl:1: messages[0] must be")]:
        bad.write_text(json.dumps(line) + "\n")
        assert_one_line_error(run_w2s("generate", *models[:2], "--method", "sample",
                                      "--prompts-file", str(bad)), needle)


def test_a_load_error_names_its_field_as_each_face_writes_it(tmp_path):
    """A model layer raises a field's path (``chat``), never a flag: the CLI says ``--chat``,
    an eval config names its file and its key ``chat``, the Python API the path itself."""
    import shutil

    from w2s.evaluate import load_config, run_eval
    from w2s.models.backends import load_model
    from w2s.zoo import ZOO_DIR

    bare = tmp_path / "bare"
    shutil.copytree(ZOO_DIR / "base", bare)
    (bare / "chat_template.jinja").unlink()
    want = (f"chat needs a chat template, and model {str(bare)!r} has none; leave chat off or "
            "use a tokenizer that has one")
    r = run_w2s("generate", "--base", str(bare), "--chat", "--prompt", "x",
                "--max-new-tokens", "2", "--quiet")
    assert r.returncode == 2 and r.stderr.strip() == f"error: --{want}", r.stderr
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"task: sentiment\nbase: {bare}\nchat: true\nprompts: 1\nmethods: [sample]\n")
    with pytest.raises(w2s.W2SError) as e:
        run_eval(load_config(str(cfg)), tmp_path / "out", show_progress=False)
    assert str(e.value) == f"cfg.yaml: {want}"
    with pytest.raises(w2s.W2SError) as e:
        load_model(str(bare), chat=True)
    assert str(e.value) == want
