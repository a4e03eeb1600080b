"""``w2s distill train``: TRL's SFT, DPO and KTO trainers on a ``distill data`` folder.

A tiny student (the zoo's base, 6 M parameters) trains in seconds: SFT makes the searched
completions more likely than they were, DPO widens the chosen-over-rejected margin, KTO
raises the desirable completions over the undesirable ones, a seed
repeats the weights exactly, a killed run resumes from its checkpoint, and a student with
another tokenizer, a finished or foreign run in --out, or data without the needed rows are
refused in one line before any training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("trl")

import w2s  # noqa: E402
from w2s.distill import DistillPlan, run_distill_data  # noqa: E402
from w2s.distill.train import TrainPlan, train_student  # noqa: E402
from w2s.request import parse_request  # noqa: E402

PROMPTS = ["the movie was", "i thought this film", "the acting", "this book is",
           "the plot of the story", "my favourite scene"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distill") / "data"
    req = parse_request({"base": "zoo:base", "guide": {"tuned": "zoo:tuned",
                                                        "untuned": "zoo:untuned"},
                         "method": "bon", "n": 4, "sampling": {"max_new_tokens": 12}})
    run_distill_data(DistillPlan(req, PROMPTS, seeds=2), out, show_progress=False)
    return out


def _rows(data: Path, name: str) -> list[dict]:
    return [json.loads(x) for x in (data / name).read_text().splitlines()]


def _loglik(model: w2s.HFModel, prompts: list[str], texts: list[str]) -> list[float]:
    return model.token_loglik(prompts, model.encode_responses(texts))


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_sft_makes_the_searched_completions_likelier_and_a_seed_repeats(data, tmp_path):
    plan = TrainPlan(str(data), "zoo:base", "sft", epochs=3, learning_rate=1e-3, batch_size=4)
    s = train_student(plan, tmp_path / "a", show_progress=False)
    assert s["done"] and s["rows"] == 12 and s["steps"] == 9  # 3 epochs x ceil(12 / 4)
    assert s["device"] == "cpu" and s["precision"] in ("bf16", "fp16", "fp32")  # auto, no GPU
    rows = _rows(data, "sft.jsonl")
    prompts, texts = [r["prompt"] for r in rows], [r["completion"] for r in rows]
    before = sum(_loglik(w2s.HFModel.load("zoo:base"), prompts, texts))
    after = sum(_loglik(w2s.HFModel.load(tmp_path / "a"), prompts, texts))
    assert after > before + 10  # nats, over 12 completions of up to 12 tokens
    card = (tmp_path / "a" / "README.md").read_text()
    assert "**bon** (n=4)" in card and "12 rows" in card
    assert f"on cpu in {s['precision']}" in card  # TRL's mixed precision, as it ran
    train_student(plan, tmp_path / "b", show_progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_dpo_widens_the_chosen_over_rejected_margin(data, tmp_path):
    plan = TrainPlan(str(data), "zoo:base", "dpo", epochs=3, learning_rate=1e-3, batch_size=4,
                     beta=0.5, lora=True, lora_r=4)
    s = train_student(plan, tmp_path / "d", show_progress=False)
    rows = _rows(data, "preference.jsonl")
    assert s["rows"] == len(rows) > 0

    def margin(model: w2s.HFModel) -> float:
        p = [r["prompt"] for r in rows]
        return sum(_loglik(model, p, [r["chosen"] for r in rows])) - \
            sum(_loglik(model, p, [r["rejected"] for r in rows]))

    assert margin(w2s.HFModel.load(tmp_path / "d")) > margin(w2s.HFModel.load("zoo:base")) + 1
    assert not (tmp_path / "d" / "adapter_config.json").exists()  # LoRA merged: a plain model


def test_kto_raises_the_desirable_over_the_undesirable_completions(data, tmp_path):
    plan = TrainPlan(str(data), "zoo:base", "kto", epochs=3, learning_rate=1e-3, batch_size=4,
                     beta=0.5)
    s = train_student(plan, tmp_path / "t", show_progress=False)
    rows = _rows(data, "kto.jsonl")
    assert s["rows"] == len(rows) > 0 and {r["label"] for r in rows} == {True, False}

    def margin(model: w2s.HFModel) -> float:
        ll = _loglik(model, [r["prompt"] for r in rows], [r["completion"] for r in rows])
        return sum(v if r["label"] else -v for v, r in zip(ll, rows))

    assert margin(w2s.HFModel.load(tmp_path / "t")) > margin(w2s.HFModel.load("zoo:base")) + 1
    assert "KTO" in (tmp_path / "t" / "README.md").read_text()


def kill_at_step(monkeypatch, n: int):  # noqa: ANN001, ANN201
    """Training is killed (KeyboardInterrupt) at its ``n``-th step; returns the real step
    function, to put back."""
    from transformers import Trainer

    real, calls = Trainer.training_step, [0]

    def dies(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Trainer, "training_step", dies)
    return real


def test_a_killed_run_resumes_from_its_checkpoint(data, tmp_path, monkeypatch):
    from transformers import Trainer

    plan = TrainPlan(str(data), "zoo:base", "sft", epochs=2, learning_rate=1e-3, batch_size=4,
                     save_steps=2)
    real = kill_at_step(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_student(plan, tmp_path / "k", show_progress=False)
    monkeypatch.setattr(Trainer, "training_step", real)
    assert (tmp_path / "k" / "checkpoint-2").is_dir()
    s = train_student(plan, tmp_path / "k", show_progress=False)
    assert s["resumed"] and s["steps"] == 6
    assert not list((tmp_path / "k").glob("checkpoint-*"))
    whole = train_student(plan, tmp_path / "w", show_progress=False)
    assert whole["steps"] == 6


def test_what_cannot_train_is_refused_before_training(data, tmp_path):
    from w2s.zoo import ZOO_DIR

    with pytest.raises(w2s.W2SError, match="has another tokenizer than the base"):
        train_student(TrainPlan(str(data), str(ZOO_DIR / "xuntuned")), tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(w2s.W2SError, match="not a w2s distill data folder"):
        train_student(TrainPlan(str(tmp_path), "zoo:base"), tmp_path / "y")
    with pytest.raises(w2s.W2SError, match="trainer must be one of"):
        TrainPlan(str(data), "zoo:base", "ppo")  # type: ignore[arg-type]
    with pytest.raises(w2s.W2SError, match="learning_rate is out of range"):
        TrainPlan(str(data), "zoo:base", learning_rate=0.0)
    plan = TrainPlan(str(data), "zoo:base", epochs=0.5, batch_size=8)
    train_student(plan, tmp_path / "z", show_progress=False)
    with pytest.raises(w2s.W2SError, match="holds this run, finished"):
        train_student(plan, tmp_path / "z", show_progress=False)
    with pytest.raises(w2s.W2SError, match="holds another training run"):
        train_student(TrainPlan(str(data), "zoo:base", epochs=1.0), tmp_path / "z")


def test_rounds_train_each_student_on_its_own_search_and_resume(tmp_path):
    """Two ReST rounds through the CLI: round 2 searches with round 1's student as the base,
    each student is evaluated plainly on held-out prompts (rounds.json: round 0 is the base),
    and a rerun redoes nothing."""
    from click.testing import CliRunner

    from w2s.cli import cli

    train, held = tmp_path / "train.jsonl", tmp_path / "held.jsonl"
    train.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    held.write_text("".join(json.dumps({"prompt": p}) + "\n"
                            for p in ["the ending", "a film that", "the director"]))
    out = tmp_path / "rounds"
    args = ["distill", "rounds", "--base", "zoo:base", "--tuned", "zoo:tuned", "--untuned",
            "zoo:untuned", "--method", "bon", "--n", "4", "--max-new-tokens", "10",
            "--prompts-file", str(train), "--eval-prompts-file", str(held), "--rounds", "2",
            "--gold", "vader", "--epochs", "2", "--learning-rate", "5e-4",
            "--train-batch-size", "4", "--out", str(out), "--no-progress"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    summary = json.loads((out / "rounds.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["rounds"][0]["model"].endswith("base") and summary["rounds"][0]["samples"] == 3
    assert all({"guide", "guide_se", "vader", "vader_se", "distinct_2", "distinct_2_se"}
               <= set(r) for r in summary["rounds"])
    from w2s.distill.data import diversity

    for r in (1, 2):  # the teacher beside the student: the round's SFT answers, as written
        sft = [json.loads(x) for x in (out / f"round-{r}" / "data" / "sft.jsonl").open()]
        want = diversity([{"prompt_index": x["prompt_index"], "text": x["completion"]}
                          for x in sft])
        t = summary["rounds"][r]["teacher"]
        assert (t["distinct_2"], t["distinct_2_se"]) == want and t["rows"] == len(sft)
        assert t["vader"] == pytest.approx(sum(x["gold"]["vader"] for x in sft) / len(sft))
    r2 = json.loads((out / "round-2" / "data" / "distill.json").read_text())
    assert r2["request"]["base"] == str(out / "round-1" / "student")  # the last student searched
    t2 = json.loads((out / "round-2" / "student" / "train.json").read_text())
    assert t2["plan"]["student"] == str(out / "round-1" / "student") and t2["done"]
    model = out / "round-2" / "student" / "model.safetensors"
    stamp = model.stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert model.stat().st_mtime_ns == stamp and "round 2: guide" in again.output
    assert "distinct-2" in again.output and "its data (the search's answers" in again.output
    leak = CliRunner().invoke(cli, [*args[:-3], "--eval-prompts-file", str(train), "--out",
                                    str(tmp_path / "leak"), "--no-progress"])
    assert leak.exit_code == 2 and "evaluation prompts are also training prompts" in leak.output


def test_the_student_defaults_to_the_base_that_wrote_the_data(data, tmp_path):
    from w2s.distill.train import default_student

    s = train_student(TrainPlan(str(data), epochs=0.5, batch_size=8), tmp_path / "d",
                      show_progress=False)
    assert s["plan"]["student"] == "zoo:base" and s["done"]
    with pytest.raises(w2s.W2SError, match="give --student: the data's base is not a model"):
        default_student({"request": {"base": {"url": "http://127.0.0.1:9/v1", "model": "m"}}})


def test_kto_with_one_row_a_batch_and_an_indexed_gpu_are_refused(data, tmp_path):
    with pytest.raises(w2s.W2SError, match="--trainer kto needs a batch size of at least 2"):
        TrainPlan(str(data), "zoo:base", "kto", batch_size=1)
    with pytest.raises(w2s.W2SError, match="distill train runs on auto, cpu or cuda, got 'cuda:1'"):
        train_student(TrainPlan(str(data), "zoo:base"), tmp_path / "g", device="cuda:1")
    assert not (tmp_path / "g").exists()


def test_bad_settings_and_a_missing_extra_leave_nothing_written(data, tmp_path, monkeypatch):
    """``train.json`` is written only once every input is checked, and only as valid JSON:
    an infinite setting or a missing ``train`` extra leaves no folder to be refused later."""
    import importlib.util

    from w2s.errors import FieldError

    for name in ("epochs", "learning_rate", "beta"):
        with pytest.raises(FieldError, match=f"^{name} must be a finite number, got inf$"):
            TrainPlan(str(data), **{name: float("inf")})
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "datasets" else real(name, *a))
    with pytest.raises(w2s.W2SError, match=r"^distill train needs the train extra \(datasets "
                                           r"missing\): pip install 'w2s\[train\]'$"):
        train_student(TrainPlan(str(data)), tmp_path / "s")
    assert not (tmp_path / "s").exists()


# ------------------------------------------------------------------ the diversity guard
HELD = ("the ending", "a film that", "the director")


def test_the_guard_rule_keeps_the_last_evaluation_above_the_floor():
    """The decision, apart from any model: each evaluation at or above the floor is kept, the
    first under it stops, and a student under it before training is refused."""
    from w2s.distill.guard import Guard
    from w2s.errors import FieldError

    g = Guard(0.5)
    assert [g.record(s, {"distinct_2": d}) for s, d in
            [(0, 0.8), (3, 0.7), (6, 0.5), (9, 0.49)]] == [False, False, False, True]
    assert (g.kept, g.stopped) == (6, 9)  # 0.5 is at the floor: kept
    assert [e["kept"] for e in g.evaluations] == [True, True, True, False]
    assert g.line() == ("stopped at step 9: held-out distinct-2 0.490 fell under the floor 0.5; "
                        "kept step 6 (distinct-2 0.500)")
    assert Guard(0.5).line() is None
    with pytest.raises(FieldError, match=r"^min_distinct is 0.9, and the student's held-out "
                                         r"distinct-2 before any training is already 0.800"):
        Guard(0.9).record(0, {"distinct_2": 0.8})
    # when: step 0 and the last step always; each epoch's end, or every N steps
    by_epoch, every = Guard(0.5), Guard(0.5, every=4)
    assert [by_epoch.due(s, 9, e) for s, e in [(0, False), (2, False), (3, True), (9, False)]] \
        == [True, False, True, True]
    assert [every.due(s, 10, e) for s, e in [(3, False), (4, False), (6, True), (8, True),
                                             (10, False)]] == [False, True, False, True, True]
    every.record(8, {"distinct_2": 0.9})
    assert not every.due(8, 10, False)  # evaluated already (the epoch and the step both end)
    every.resume([{"step": 0, "distinct_2": 0.9, "kept": True},
                  {"step": 4, "distinct_2": 0.8, "kept": True},
                  {"step": 8, "distinct_2": 0.2, "kept": False}], 6)
    assert [e["step"] for e in every.evaluations] == [0, 4] and every.kept == 4


def _weights(model) -> str:  # noqa: ANN001
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode() + p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def test_the_guard_stops_at_the_fall_and_keeps_the_weights_the_rule_names(data, tmp_path,
                                                                           monkeypatch):
    """Evaluations made to return 0.9, 0.8, 0.3 at steps 0, 3 (epoch 1), 6 (epoch 2) with a
    floor of 0.5: training stops at step 6, and the student is step 3's weights, exactly."""
    import w2s.distill.guard as guard

    seen: dict[int, str] = {}
    diversity = iter([0.9, 0.8, 0.3, 0.9])

    def fake(model, *a):  # noqa: ANN001, ANN002
        seen[len(seen)] = _weights(model)
        return {"distinct_2": next(diversity)}

    monkeypatch.setattr(guard, "held_out", fake)
    plan = TrainPlan(str(data), "zoo:base", "sft", epochs=3, learning_rate=1e-3, batch_size=4,
                     min_distinct=0.5, guard_prompts=HELD)
    s = train_student(plan, tmp_path / "g", show_progress=False)
    g = s["guard"]
    assert [(e["step"], e["distinct_2"], e["kept"]) for e in g["evaluations"]] == \
        [(0, 0.9, True), (3, 0.8, True), (6, 0.3, False)]
    assert (g["stopped_at"], g["kept_step"], s["steps"]) == (6, 3, 6)
    final = w2s.HFModel.load(tmp_path / "g").model
    assert _weights(final) == seen[1] != seen[2]  # step 3's weights, not step 6's
    assert json.loads((tmp_path / "g" / "train.json").read_text())["guard"] == g
    assert not (tmp_path / "g" / "guard-kept.pt").exists()
    assert "stopped at step 6, weights of step 3 kept" in (tmp_path / "g" / "README.md").read_text()


def test_a_guard_that_never_fires_changes_no_weight(data, tmp_path):
    """The real evaluation (plain samples of the held-out prompts, under a forked RNG): every
    epoch is logged with its distinct-2, and the weights are those of a run without a guard."""
    from w2s.evaluate.report import distinct_bigrams

    plan = TrainPlan(str(data), "zoo:base", "sft", epochs=2, learning_rate=1e-3, batch_size=4)
    train_student(plan, tmp_path / "plain", show_progress=False)
    guarded = TrainPlan(str(data), "zoo:base", "sft", epochs=2, learning_rate=1e-3,
                        batch_size=4, min_distinct=0.01, guard_prompts=HELD)
    s = train_student(guarded, tmp_path / "g", show_progress=False)
    assert [e["step"] for e in s["guard"]["evaluations"]] == [0, 3, 6]
    assert s["guard"]["stopped_at"] is None and s["guard"]["kept_step"] == 6
    assert _digest(tmp_path / "g") == _digest(tmp_path / "plain")
    base = w2s.HFModel.load("zoo:base", dtype="float32")  # step 0: the untrained student
    texts = [r.text for r in w2s.sample(base, None, list(HELD), w2s.SamplingParams(
        max_new_tokens=12, seed=0))]
    assert s["guard"]["evaluations"][0]["distinct_2"] == distinct_bigrams(texts)


def test_the_guard_settings_are_refused_where_they_enter(data, tmp_path):
    from w2s.errors import FieldError

    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(FieldError, match=r"^min_distinct is a distinct-2 ratio in \(0, 1\]"):
            TrainPlan(str(data), min_distinct=bad, guard_prompts=HELD)
    with pytest.raises(FieldError, match="^guard_prompts is needed with a distinct-2 floor"):
        TrainPlan(str(data), min_distinct=0.3)
    with pytest.raises(FieldError, match="^guard_steps only serves the diversity guard"):
        TrainPlan(str(data), guard_steps=2)
    with pytest.raises(FieldError, match="^guard_steps must be an integer >= 1, got 0"):
        TrainPlan(str(data), min_distinct=0.3, guard_prompts=HELD, guard_steps=0)
    with pytest.raises(FieldError, match=r"^guard_prompts holds 1 training prompts of the data "
                                         r"\(e.g. 'the acting'\)"):
        train_student(TrainPlan(str(data), min_distinct=0.3, guard_prompts=(*HELD, "the acting")),
                      tmp_path / "leak")
    assert not (tmp_path / "leak").exists()
    assert "guard" not in TrainPlan(str(data)).identity()  # earlier folders keep their identity


def test_the_cli_prints_the_guards_curve_and_why_it_stopped(data, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import w2s.distill.guard as guard
    from w2s.cli import cli

    diversity = iter([0.9, 0.4])
    monkeypatch.setattr(guard, "held_out", lambda *a: {"distinct_2": next(diversity),
                                                       "vader": 0.25})
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in HELD))
    args = ["distill", "train", str(data), "--student", "zoo:base", "--epochs", "2",
            "--batch-size", "4", "--learning-rate", "1e-3", "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "s"), "--min-distinct", "0.5",
                                 "--guard-prompts-file", str(held)])
    assert r.exit_code == 0, r.output
    assert "  step     0: held-out distinct-2 0.900, vader +0.250\n" in r.output
    assert "  step     3: held-out distinct-2 0.400, vader +0.250  (under the floor)\n" in r.output
    assert r.output.endswith("stopped at step 3: held-out distinct-2 0.400 fell under the floor "
                             "0.5; kept step 0 (distinct-2 0.900)\n")
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "t"), "--min-distinct", "2"])
    assert r.exit_code == 2 and "error: --min-distinct is a distinct-2 ratio in (0, 1], got 2" \
        in r.output


def test_a_killed_guarded_run_resumes_its_curve_and_kept_weights(data, tmp_path, monkeypatch):
    """Killed after step 3 (checkpoint at 2, evaluations at 0 and 2 logged in train.json), the
    rerun takes back the curve, evaluates steps 4 and 6 only, stops at 6 and keeps step 4."""
    from transformers import Trainer

    import w2s.distill.guard as guard

    seen: list[str] = []
    diversity = iter([0.9, 0.8, 0.7, 0.3])

    def fake(model, *a):  # noqa: ANN001, ANN002
        seen.append(_weights(model))
        return {"distinct_2": next(diversity)}

    monkeypatch.setattr(guard, "held_out", fake)
    plan = TrainPlan(str(data), "zoo:base", "sft", epochs=2, learning_rate=1e-3, batch_size=4,
                     save_steps=2, min_distinct=0.5, guard_prompts=HELD, guard_steps=2)
    real = kill_at_step(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_student(plan, tmp_path / "k", show_progress=False)
    logged = json.loads((tmp_path / "k" / "train.json").read_text())["guard"]["evaluations"]
    assert [e["step"] for e in logged] == [0, 2] and len(seen) == 2
    monkeypatch.setattr(Trainer, "training_step", real)
    s = train_student(plan, tmp_path / "k", show_progress=False)
    g = s["guard"]
    assert s["resumed"] and [e["step"] for e in g["evaluations"]] == [0, 2, 4, 6]
    assert (g["stopped_at"], g["kept_step"]) == (6, 4) and len(seen) == 4
    assert _weights(w2s.HFModel.load(tmp_path / "k").model) == seen[2]
