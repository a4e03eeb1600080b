"""``w2s distill data``: search outputs as TRL datasets.

- the rows are exactly TRL's shapes (standard and conversational) with the search's scores,
  built from hand-made searches;
- a run on the zoo writes SFT rows of the search's answers and preference/KTO rows of its best
  against its worst candidate (or a plain sample), resumes after a kill with the same bytes,
  and refuses what it cannot do in one line with nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import w2s
from w2s.cli import cli
from w2s.distill import DistillPlan, Scored, Searched, run_distill_data
from w2s.distill.rows import kto_rows, preference_row, sft_row
from w2s.request import parse_request

PROMPTS = ["the movie was", "i thought this film", "the acting"]
ZOO = {"base": "zoo:base", "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}}


def _searched() -> Searched:
    return Searched("p", 3, 1, [Scored("best", 2.0, True, {"vader": 0.5}),
                                Scored("mid", 1.0, False, {"vader": 0.1}),
                                Scored("worst", -1.0, True, {"vader": -0.2})],
                    Scored("plain", None, True, {"vader": 0.0}))


def test_rows_are_trls_shapes_with_their_origin_and_scores():
    s, knobs = _searched(), {"w": 2}
    origin = {"method": "cbs", "knobs": {"w": 2}, "seed": 1, "prompt_index": 3}
    assert sft_row(s, "cbs", knobs, chat=False) == {
        "prompt": "p", "completion": "best", "score": 2.0, "gold": {"vader": 0.5}, **origin}
    assert sft_row(s, "cbs", knobs, chat=True)["messages"] == [
        {"role": "user", "content": "p"}, {"role": "assistant", "content": "best"}]
    assert preference_row(s, "cbs", knobs, False, "best-worst") == {
        "prompt": "p", "chosen": "best", "rejected": "worst", "score_chosen": 2.0,
        "score_rejected": -1.0, "gold_chosen": {"vader": 0.5}, "gold_rejected": {"vader": -0.2},
        "pairs": "best-worst", **origin}
    chat = preference_row(s, "cbs", knobs, True, "vs-sample")
    assert chat["prompt"] == [{"role": "user", "content": "p"}]
    assert chat["chosen"] == [{"role": "assistant", "content": "best"}]
    assert chat["rejected"] == [{"role": "assistant", "content": "plain"}]
    assert [(r["completion"], r["label"]) for r in kto_rows(s, "cbs", knobs, False,
                                                             "best-worst")] == \
        [("best", True), ("worst", False)]


def test_a_pair_of_equal_texts_is_left_out_and_one_candidate_cannot_pair():
    same = Searched("p", 0, 0, [Scored("a", 1.0, True), Scored("a", 0.0, True)])
    assert preference_row(same, "bon", {}, False, "best-worst") is None
    assert kto_rows(same, "bon", {}, False, "best-worst") == []
    one = Searched("p", 0, 0, [Scored("a", 1.0, True)])
    with pytest.raises(w2s.W2SError, match="at least two candidates"):
        preference_row(one, "cbs", {}, False, "best-worst")


def _plan(method: dict, **kw) -> DistillPlan:
    req = parse_request({**ZOO, **method, "sampling": {"max_new_tokens": 10}})
    return DistillPlan(req, kw.pop("prompts", PROMPTS), **kw)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_a_run_writes_the_searches_answers_and_resumes_after_a_kill(tmp_path):
    plan = _plan({"method": "cbs", "w": 2, "k": 2, "l": 5}, seeds=2, gold=("vader",))
    out = tmp_path / "d"
    assert run_distill_data(plan, out, show_progress=False, prompts_per_call=2) == \
        {"sft": 6, "preference": 6, "kto": 12}
    sft, pref = _lines(out / "sft.jsonl"), _lines(out / "preference.jsonl")
    raw = _lines(out / "raw.jsonl")
    assert [(r["seed"], r["prompt_index"]) for r in sft] == [(s, i) for s in (0, 1)
                                                             for i in range(3)]
    # the SFT completion is CBS's own answer for that prompt and seed
    sp = w2s.SamplingParams(max_new_tokens=10, seed=1)
    base, pair = w2s.HFModel.load("zoo:base"), w2s.PairGuide.load("zoo:tuned", "zoo:untuned")
    again = w2s.cbs(base, pair, PROMPTS, w2s.SearchParams(2, 2, 5), sp, return_all=True)
    assert [r["completion"] for r in sft[3:]] == [r.text for r in again]
    assert [r["rejected"] for r in pref[3:]] == [r.candidates[-1].text for r in again]
    assert all(r["score_chosen"] >= r["score_rejected"] for r in pref)
    assert all(set(r["gold_chosen"]) == {"vader"} for r in pref)
    assert all(len(r["candidates"]) == 2 for r in raw)  # the final beam, all of it
    before = {n: (out / n).read_bytes() for n in ("sft.jsonl", "preference.jsonl", "kto.jsonl")}
    # a kill after the first batch: the rest is searched again, with the same bytes at the end
    (out / "raw.jsonl").write_bytes(b"".join((out / "raw.jsonl").read_bytes()
                                             .splitlines(keepends=True)[:2]) + b'{"hash": "')
    run_distill_data(plan, out, show_progress=False, prompts_per_call=2)
    assert {n: (out / n).read_bytes() for n in before} == before
    assert len(_lines(out / "raw.jsonl")) == 6


def test_pairs_against_a_plain_sample_and_sft_only(tmp_path):
    plan = _plan({"method": "sample"}, pairs="vs-sample")
    run_distill_data(plan, tmp_path / "v", show_progress=False)
    raw = _lines(tmp_path / "v" / "raw.jsonl")
    assert all(r["sample"]["text"] == r["candidates"][0]["text"] for r in raw)  # same seed
    assert _lines(tmp_path / "v" / "preference.jsonl") == []  # nothing to prefer
    plan = _plan({"method": "bon", "n": 3}, pairs=None)
    assert run_distill_data(plan, tmp_path / "s", show_progress=False) == {"sft": 3}
    assert not (tmp_path / "s" / "preference.jsonl").exists()


@pytest.mark.parametrize("make,needle", [
    (lambda: _plan({"method": "cbs"}, prompts=[]), "the prompt set is empty"),
    (lambda: _plan({"method": "cbs"}, prompts=["a", "b", "a"]), "prompt 2 repeats prompt 0"),
    (lambda: _plan({"method": "sample"}), "returns one response per prompt"),
    (lambda: _plan({"method": "cbs"}, pairs="best"), "pairs must be one of"),
    (lambda: _plan({"method": "cbs"}, gold=("nope",)), "unknown gold scorer 'nope'"),
    (lambda: _plan({"method": "cbs"}, seeds=0), "seeds must be an integer >= 1"),
])
def test_bad_plans_are_one_line(make, needle):
    with pytest.raises(w2s.W2SError, match=needle):
        make()


def test_a_folder_of_another_run_or_other_files_is_refused_untouched(tmp_path):
    out = tmp_path / "d"
    run_distill_data(_plan({"method": "bon", "n": 2}), out, show_progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(w2s.W2SError, match="holds another distill run .*request differs"):
        run_distill_data(_plan({"method": "bon", "n": 3}), out, show_progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(w2s.W2SError, match="not empty and holds no distill run"):
        run_distill_data(_plan({"method": "bon", "n": 2}), tmp_path / "other",
                         show_progress=False)
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["notes.txt"]
    # refused on its first search (CBS with W = 1 keeps one candidate): no folder, no claim
    with pytest.raises(w2s.W2SError, match="at least two candidates"):
        run_distill_data(_plan({"method": "cbs", "w": 1, "k": 2, "l": 5}), tmp_path / "one",
                         show_progress=False)
    assert not (tmp_path / "one").exists()


def test_the_cli_writes_the_datasets_and_refuses_in_one_line(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:2]))
    args = ["distill", "data", "--base", "zoo:base", "--tuned", "zoo:tuned", "--untuned",
            "zoo:untuned", "--method", "bon", "--n", "3", "--max-new-tokens", "8",
            "--prompts-file", str(prompts), "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    assert "2 sft rows, 2 preference rows, 4 kto rows" in r.output
    from w2s.distill.data import diversity

    d, se = diversity([{"prompt_index": x["prompt_index"], "text": x["completion"]}
                       for x in _lines(tmp_path / "d" / "sft.jsonl")])
    assert r.output.endswith(f"the SFT answers: distinct-2 {d:.3f} ± {se:.3f}\n")
    r = CliRunner().invoke(cli, [*args, "--w", "2", "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "--w is not a knob of --method bon" in r.output
    assert not (tmp_path / "e").exists()
    r = CliRunner().invoke(cli, [*args, "--return-all", "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "--return-all is implied" in r.output


def test_rank_by_a_gold_scorer_writes_the_candidate_it_prefers(tmp_path):
    plan = _plan({"method": "bon", "n": 4}, seeds=2, pairs="best-worst", rank_by="vader")
    assert plan.gold == ("vader",)  # the ranking scorer is scored
    run_distill_data(plan, tmp_path / "d", show_progress=False)
    raw, sft = _lines(tmp_path / "d" / "raw.jsonl"), _lines(tmp_path / "d" / "sft.jsonl")
    pref = _lines(tmp_path / "d" / "preference.jsonl")
    assert len(sft) == 6 and all(r["rank_by"] == "vader" for r in sft + pref)
    moved = 0
    for r, row in zip(raw, sft):
        by_vader = sorted(r["candidates"], key=lambda c: -c["gold"]["vader"])
        assert row["completion"] == by_vader[0]["text"]
        assert row["gold"]["vader"] == max(c["gold"]["vader"] for c in r["candidates"])
        moved += by_vader[0]["text"] != r["candidates"][0]["text"]  # the guide's first
    assert moved >= 1  # the gold scorer chose otherwise than the guide at least once
    for p in pref:
        assert p["gold_chosen"]["vader"] >= p["gold_rejected"]["vader"]
    assert json.loads((tmp_path / "d" / "distill.json").read_text())["rank_by"] == "vader"


def test_demonstrations_are_shown_before_each_prompt_and_the_rows_keep_the_bare_prompt(
        tmp_path):
    from w2s.decoding import get_decoder
    from w2s.distill.data import DEMO_SEP, DEMO_STOP
    from w2s.params import SamplingParams
    from w2s.request import Loader

    demos = (("the movie was", " great"), ("a b", " fine\n###\nnext"), ("c d", " sad"),
             ("e f", " ok"))
    plan = _plan({"method": "sample"}, pairs=None, demos=demos, shots=2)
    shown = plan.in_context(0, 0)
    blocks = shown.split(DEMO_SEP)
    assert blocks[-1] == "the movie was" and len(blocks) == 3
    assert set(blocks[:2]) <= {"a b fine \nnext", "c d sad", "e f ok"}  # never its own
    assert plan.in_context(0, 0) == shown and DEMO_STOP not in "".join(blocks[:2])
    assert {plan.in_context(0, s) for s in range(8)} != {shown}  # seeds draw other demos
    run_distill_data(plan, tmp_path / "d", show_progress=False)
    sft = _lines(tmp_path / "d" / "sft.jsonl")
    assert [r["prompt"] for r in sft] == PROMPTS and all(r["in_context_shots"] == 2
                                                        for r in sft)
    # each completion is the base's answer to the prompt after its demonstrations
    backend = Loader().base(plan.request.base)
    sampling = SamplingParams(max_new_tokens=10, seed=0, stop=(DEMO_STOP,))
    want = get_decoder("sample").run(backend, None, [plan.in_context(i, 0) for i in range(3)],
                                     None, sampling)
    assert [r["completion"] for r in sft] == [w.text for w in want]
    manifest = json.loads((tmp_path / "d" / "distill.json").read_text())
    assert manifest["demos"]["shots"] == 2 and manifest["demos"]["count"] == 4


@pytest.mark.parametrize("make,needle", [
    (lambda: _plan({"method": "sample"}, pairs=None, rank_by="vader"),
     "--rank-by vader orders a method's candidates"),
    (lambda: _plan({"method": "sample"}, pairs=None, demos=(("x", " y"),) * 2, shots=2),
     "--shots 2 needs more than 2 demonstrations"),
    (lambda: _plan({"method": "sample"}, pairs=None, demos=(("x", " y"), ("z", " w")), shots=0),
     "shots must be an integer >= 1"),
    (lambda: _plan({"method": "sample", "chat": True}, pairs=None, demos=(("x", " y"),) * 3,
                   shots=2),
     "^demos shows plain-text demonstrations before each prompt, so it cannot go with chat on$"),
])
def test_bad_ranking_and_demonstrations_are_one_line(make, needle):
    with pytest.raises(w2s.W2SError, match=needle):
        make()


def test_the_cli_reads_demonstrations_and_refuses_bad_ones(tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:2]))
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps({"prompt": p, "completion": " good"}) + "\n"
                             for p in ("a", "b", "c")))
    args = ["distill", "data", "--base", "zoo:base", "--method", "sample", "--pairs", "none",
            "--max-new-tokens", "6", "--prompts-file", str(prompts), "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--demos", str(demos), "--shots", "2", "--out",
                                 str(tmp_path / "d")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, [*args, "--shots", "2", "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "give them with --demos FILE" in r.output
    demos.write_text(json.dumps({"messages": []}) + "\n")
    r = CliRunner().invoke(cli, [*args, "--demos", str(demos), "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "demos.jsonl: record 1: a demonstration needs string 'prompt'" \
        in r.output
    demos.write_text('{"prompt": "a", "completion": "x\\ud800"}\n')  # a lone surrogate
    r = CliRunner().invoke(cli, [*args, "--demos", str(demos), "--out", str(tmp_path / "e")])
    assert r.exit_code == 2 and "demos.jsonl: record 1: surrogates not allowed" in r.output
    assert not (tmp_path / "e").exists()


def test_answers_keeps_the_best_distinct_candidates_ranked_by_score(tmp_path):
    """``answers=3``: each (seed, prompt) gives its three best distinct candidates, best first
    (as the guide ranked them), a repeated text skipped; a rerun with another count rewrites
    sft.jsonl from the stored search, searching nothing again."""
    from w2s.distill.rows import sft_rows

    s = Searched("p", 0, 0, [Scored("a", 3.0, True), Scored("a", 2.5, True),
                             Scored("b", 2.0, True), Scored("c", 1.0, True),
                             Scored("d", 0.0, True)])
    rows = sft_rows(s, "bon", {}, False, 3)
    assert [(r["completion"], r["score"], r["answer_rank"]) for r in rows] == \
        [("a", 3.0, 0), ("b", 2.0, 1), ("c", 1.0, 2)]
    assert sft_rows(s, "bon", {}, False, 1) == [sft_row(s, "bon", {}, False)]  # as before
    assert [r["completion"] for r in sft_rows(s, "bon", {}, False, 9)] == ["a", "b", "c", "d"]
    out = tmp_path / "d"
    run_distill_data(_plan({"method": "bon", "n": 4}, seeds=2, answers=3), out,
                     show_progress=False)
    raw, sft = _lines(out / "raw.jsonl"), _lines(out / "sft.jsonl")
    want = []
    for r in raw:
        texts = list(dict.fromkeys(c["text"] for c in r["candidates"]))[:3]
        want += [(r["seed"], r["prompt_index"], t, k) for k, t in enumerate(texts)]
    assert [(x["seed"], x["prompt_index"], x["completion"], x["answer_rank"]) for x in sft] \
        == want and len(sft) > len(raw)
    for r in raw:  # ranked by the guide's score, best first
        got = [x["score"] for x in sft if (x["seed"], x["prompt_index"]) ==
               (r["seed"], r["prompt_index"])]
        assert got == sorted(got, reverse=True) and got[0] == r["candidates"][0]["score"]
    stamp = (out / "raw.jsonl").read_bytes()
    assert run_distill_data(_plan({"method": "bon", "n": 4}, seeds=2), out,
                            show_progress=False)["sft"] == len(raw)
    assert (out / "raw.jsonl").read_bytes() == stamp


@pytest.mark.parametrize("answers,needle", [
    (0, "^answers must be an integer >= 1, got 0$"),
    (2, "^answers keeps 2 candidates per prompt, and method sample returns one"),
])
def test_bad_answers_are_one_line(answers, needle):
    from w2s.errors import FieldError

    with pytest.raises(FieldError, match=needle):
        _plan({"method": "sample"}, pairs=None, answers=answers)


def test_the_jackknife_of_distinct_2_over_prompts():
    """For a mean of one value per prompt the jackknife SE is the usual SE exactly; for
    distinct-2 it is computed by hand; paired, a prompt leaves both methods at once."""
    import math

    from w2s.distill.data import diversity
    from w2s.evaluate.stats import prompt_jackknife
    from w2s.plots import mean_se

    xs = [0.1, 0.5, 0.2, 0.9]
    rows = [{"prompt_index": i, "v": x} for i, x in enumerate(xs)]
    got = prompt_jackknife(rows, lambda s: sum(r["v"] for r in s) / len(s))
    assert got == pytest.approx(mean_se(xs))
    texts = [(0, "a b a b"), (1, "c d"), (1, "c d"), (2, "e f g")]
    d, se = diversity([{"prompt_index": p, "text": t} for p, t in texts])
    assert d == 5 / 7  # (a b) (b a) (a b) (c d) (c d) (e f) (f g): 5 distinct of 7
    loo = [3 / 4, 4 / 5, 3 / 5]  # without prompt 0, 1, 2
    m = sum(loo) / 3
    assert se == pytest.approx(math.sqrt(2 / 3 * sum((x - m) ** 2 for x in loo)))
    assert prompt_jackknife([{"prompt_index": 0}], lambda s: 0.5) == (0.5, 0.0)
