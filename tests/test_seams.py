"""The seams: declared capabilities, one decoder registry, one owner for search state.

- A decoder registered in one place (here) appears in ``w2s generate --help``, runs from the
  CLI, is accepted by an eval config and runs in an eval, with no other file touched.
- A text-only backend (``Backend`` only, as a remote engine) runs sample, Best-of-N and CBS
  (and gives the same answers whether or not it reports token ids); EFT refuses it in one line.
- Real backends are checked against their protocols.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from scripted import CountGuide, ScriptedBackend

import w2s
import w2s.zoo
from w2s import BestOfNParams, SamplingParams, SearchParams, W2SError
from w2s.cli import cli
from w2s.decoding import DECODERS, DecoderSpec, get_decoder, register, unregister
from w2s.decoding.common import Frontier, prepare
from w2s.evaluate.config import parse_config
from w2s.evaluate.run import run_eval
from w2s.models import Backend, LogitsBackend, SearchBackend
from w2s.result import Cost


# ------------------------------------------------------------------ a toy decoder
@dataclass(frozen=True)
class ToyParams:
    """Knobs of the toy decoder."""

    copies: int = 2
    """How many base samples the toy draws per prompt (it returns the last)."""

    def to_dict(self) -> dict:
        return {"copies": self.copies}

    def __post_init__(self) -> None:
        if not isinstance(self.copies, int) or self.copies < 1:
            raise W2SError(f"copies must be >= 1, got {self.copies}")


def toy(backend, guide, prompts, params: ToyParams, sampling=None):  # noqa: ANN001, ANN201
    """The last of ``copies`` base samples (a decoder in eleven lines)."""
    results = w2s.sample(backend, guide, prompts, sampling, n=params.copies)
    for r in results:
        last = r.candidates[-1]
        r.method, r.text, r.token_ids, r.score = "toy", last.text, last.token_ids, last.score
        r.params = {"method": "toy", **params.to_dict()}
    return results


@pytest.fixture
def toy_registered():
    register(DecoderSpec("toy", toy, "the last of several base samples (a registry test)",
                         ToyParams, guide="optional", rows_per_prompt=lambda p: p.copies,
                         kl="exact"))
    yield
    unregister("toy")


def test_a_registered_decoder_shows_in_help_and_runs_from_the_cli(toy_registered, tiny_paths,
                                                                 base):
    runner = CliRunner()
    help_text = " ".join(runner.invoke(cli, ["generate", "--help"]).output.split())
    assert f"[{'|'.join(DECODERS)}]" in help_text and "|toy]" in help_text
    assert "toy: the last of several base samples" in help_text
    assert "--copies INTEGER" in help_text and "[toy] How many base samples" in help_text
    out = runner.invoke(cli, ["generate", "--base", tiny_paths["base"], "--method", "toy",
                              "--copies", "3", "--prompt", "The movie was",
                              "--max-new-tokens", "6", "--seed", "0", "--json"])
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout)
    s = w2s.sample(base, None, ["The movie was"], SamplingParams(seed=0, max_new_tokens=6), n=3)[0]
    assert row["method"] == "toy" and row["token_ids"] == s.candidates[2].token_ids
    assert row["params"] == {"method": "toy", "copies": 3}
    # its knob is validated by its dataclass, and refused for other methods
    bad = runner.invoke(cli, ["generate", "--base", tiny_paths["base"], "--method", "toy",
                              "--copies", "0", "--prompt", "x"])
    assert bad.exit_code == 2 and bad.output.strip() == "error: copies must be >= 1, got 0"
    bad = runner.invoke(cli, ["generate", "--base", tiny_paths["base"], "--method", "sample",
                              "--copies", "2", "--prompt", "x"])
    assert "--copies is not a knob of --method sample" in bad.output


def test_a_registered_decoder_is_accepted_and_run_by_eval(toy_registered, tmp_path):
    data = {"name": "toy", "task": "sentiment", "base": "zoo:base", "prompts": 2, "seeds": 1,
            "sampling": {"max_new_tokens": 5}, "methods": [{"method": "toy", "copies": [2, 3]}]}
    cfg = parse_config(data, tmp_path / "cfg.yaml")
    assert [m.label for m in cfg.methods] == ["toy(copies=2)", "toy(copies=3)"]
    assert cfg.methods[1].params == ToyParams(3)
    with pytest.raises(W2SError, match=r"unknown option\(s\) for toy: width"):
        parse_config({**data, "methods": [{"method": "toy", "width": 2}]}, tmp_path / "c.yaml")
    rows = run_eval(cfg, tmp_path / "out", show_progress=False)
    assert len(rows) == 4 and {r["method_name"] for r in rows} == {"toy"}
    assert all(r["kl"] == 0.0 and r["kl_kind"] == "exact" for r in rows)


def test_the_cli_takes_the_same_model_references_as_eval_configs(base):
    """One loader: ``zoo:ROLE`` works on the command line as in a config."""
    out = CliRunner().invoke(cli, ["generate", "--base", "zoo:base", "--tuned", "zoo:tuned",
                                   "--untuned", "zoo:untuned", "--method", "bon", "--n", "2",
                                   "--prompt", "the film", "--max-new-tokens", "4", "--seed", "0", "--json"])
    assert out.exit_code == 0, out.output
    zoo = w2s.zoo.ZOO_DIR
    [want] = w2s.bon(w2s.HFModel.load(str(zoo / "base")),
                           w2s.PairGuide.load(str(zoo / "tuned"), str(zoo / "untuned")),
                           ["the film"], BestOfNParams(2), SamplingParams(seed=0, max_new_tokens=4))
    assert json.loads(out.stdout)["token_ids"] == want.token_ids


def test_registry_refuses_a_second_decoder_of_the_same_name():
    with pytest.raises(W2SError, match="already registered"):
        register(DecoderSpec("cbs", toy, "another cbs"))
    with pytest.raises(W2SError, match="unknown method 'beam'; choose one of sample, bon"):
        get_decoder("beam")
    assert list(DECODERS)[:4] == ["sample", "bon", "cbs", "eft"]


def test_registry_entries_describe_their_decoders():
    assert DECODERS["cbs"].rows_per_prompt(SearchParams(3, 5, 2)) == 15
    assert DECODERS["bon"].rows_per_prompt(BestOfNParams(7)) == 7
    assert [DECODERS[n].kl for n in ("sample", "bon", "cbs", "eft")] == \
        ["exact", "bound", "bound", "exact"]
    assert DECODERS["eft"].needs == (LogitsBackend,) and DECODERS["eft"].guide == "pair"
    assert DECODERS["cbs"].guide_problem(False, False) == \
        "cbs needs a guide: a tuned/untuned pair or a reward model"
    assert DECODERS["eft"].guide_problem(True, True).startswith("eft needs a tuned/untuned pair")
    assert DECODERS["sample"].guide_problem(False, False) is None


# ------------------------------------------------------------------ capabilities
def test_backends_declare_their_capabilities(base):
    assert isinstance(base, Backend) and isinstance(base, SearchBackend)
    assert isinstance(base, LogitsBackend)
    text_only = ScriptedBackend()
    assert isinstance(text_only, Backend)
    assert not isinstance(text_only, SearchBackend) and not isinstance(text_only, LogitsBackend)


SP = SamplingParams(max_new_tokens=9, seed=4, stop=("ed",))


@pytest.mark.parametrize("run", [
    lambda b, g: w2s.sample(b, g, ["p", "q"], SP, n=3),
    lambda b, g: w2s.bon(b, g, ["p", "q"], BestOfNParams(4), SP, return_all=True),
    lambda b, g: w2s.cbs(b, g, ["p", "q"], SearchParams(2, 3, 2), SP, return_all=True),
], ids=["sample", "bon", "cbs"])
def test_text_only_backend_runs_the_sampling_methods(run):
    """An engine that reports text only (no token ids) gets exactly the answers of one that
    reports ids: the search keeps texts and token counts, the ids are extra."""
    with_ids = run(ScriptedBackend(eos_weight=0.5), CountGuide())
    text_only = run(ScriptedBackend(eos_weight=0.5, ids=False), CountGuide())
    for a, b in zip(with_ids, text_only):
        assert [(c.text, c.score, c.finished) for c in a.candidates] == \
            [(c.text, c.score, c.finished) for c in b.candidates]
        assert a.cost.base_tokens == b.cost.base_tokens > 0
        assert b.token_ids == [] and a.token_ids


def test_text_only_backend_gets_one_requests_per_parent_with_n():
    backend = ScriptedBackend()
    w2s.cbs(backend, CountGuide(), ["p"], SearchParams(2, 3, 2), SamplingParams(seed=0, max_new_tokens=4))
    first, second = backend.calls[:2]
    assert first["parents"] == [[]] * 6 and len(second["parents"]) == 6


def test_eft_refuses_a_text_only_backend_in_one_line(pair):
    with pytest.raises(W2SError, match=r"^eft needs next-token log-probabilities; this backend "
                                       r"\(scripted\) returns text only$"):
        w2s.eft(ScriptedBackend(), pair, ["p"])
    with pytest.raises(W2SError, match=r"^eft needs next-token log-probabilities; this backend "
                                       r"\(scripted\) returns text only$"):
        DECODERS["eft"].run(ScriptedBackend(), pair, ["p"], w2s.EFTParams(), SP)


# ------------------------------------------------------------------ one owner of rows
def test_the_frontier_refuses_a_parent_that_is_not_a_live_row(base):
    prep = prepare(base, ["The movie was"], SP)
    frontier = Frontier(base, prep, SP, [Cost()], 2)
    root = frontier.entries[0]
    kids = frontier.grow([(0, root, 0), (0, root, 1)], 2)
    assert [k.row for k in kids] == [0, 1] and frontier.entries == kids
    with pytest.raises(RuntimeError, match="not a live row"):
        frontier.grow([(0, root, 0)], 2)  # the root was replaced by its children
