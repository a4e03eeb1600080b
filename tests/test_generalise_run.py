"""``w2s generalise`` end to end on tiny models: the protocol's files, a report that agrees
with the step records, resuming, refusing another run's folder, the pairwise form's reward
models guiding a search, and the fine-tuning path."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from w2s.cli import cli
from w2s.errors import W2SError
from w2s.zoo.tiny import CORPUS

pytestmark = pytest.mark.slow
LINES = [s for s in CORPUS.splitlines() if s.strip()]  # even lines praise, odd lines pan


def _data(tmp_path, n: int = 160) -> str:
    """Texts cut from the tiny corpus's reviews, rated by the review they came from."""
    rng = random.Random(0)
    rows, seen = [], set()
    while len(rows) < n:
        k = rng.randrange(len(LINES))
        words = LINES[k].split()
        lo = rng.randrange(0, len(words) - 3)
        text = " ".join(words[lo: lo + rng.randrange(3, 8)])
        if text in seen:
            continue
        seen.add(text)
        rows.append({"text": text, "rating": (2.0 if k % 2 == 0 else -2.0) + rng.uniform(-1, 1)})
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _config(tmp_path, tiny_paths, **over) -> str:
    cfg = {"name": "tiny", "data": {"source": _data(tmp_path), "rating": "rating"},
           "splits": {"weak_train": 30, "strong_train": 50, "test": 40},
           "models": {"weak": tiny_paths["untuned"], "intermediate": tiny_paths["tuned"],
                      "strong": tiny_paths["base"]},
           "probe": {"epochs": 5, "batch_size": 16}, "seeds": 2,
           "bootstrap": {"draws": 200},
           "methods": ["naive", "aux_conf", "gce", "bootstrap",
                       {"method": "refine", "shots": 2, "block": 8}], **over}
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _run(config: str, out, *extra: str):
    return CliRunner().invoke(cli, ["generalise", config, "--out", str(out), "--no-progress",
                                    *extra], prog_name="w2s")


def test_a_run_writes_its_steps_and_a_report_that_agrees_with_them(tmp_path, tiny_paths):
    out = tmp_path / "run"
    res = _run(_config(tmp_path, tiny_paths), out)
    assert res.exit_code == 0, res.output
    assert "ceiling - weak:" in res.output and "PGR" in res.output
    for f in ("report.md", "report.json", "pgr.png", "sizes.png", "deception.png",
              "items.json", "features/weak.safetensors", "features/strong.safetensors",
              "features/intermediate.safetensors"):
        assert (out / f).is_file(), f
    assert not list(out.rglob("*.tmp")) and not (out / "generalise.json.lock").exists()
    report = json.loads((out / "report.json").read_text())
    y = None
    steps = {s: {p.stem: json.loads(p.read_text()) for p in (out / "steps" / f"seed-{s}")
                 .glob("*.json")} for s in (0, 1)}
    assert set(steps[0]) == {"weak", "ceiling", "intermediate-gt", "intermediate-naive",
                             "student-naive", "student-aux_conf", "student-gce",
                             "student-bootstrap", "student-refine"}
    # the report's PGR is (student - weak) / (ceiling - weak) of the records' predictions
    from w2s.generalise.config import load_config
    from w2s.generalise.protocol import prepare

    cfg, path = load_config(str(tmp_path / "g.yaml"))
    y = prepare(cfg, path.parent, out, lambda m: None).items.splits["test"].y

    def acc(name: str) -> float:
        return float(np.mean([((np.asarray(steps[s][name]["test"]) >= 0.5) == (y >= 0.5))
                              .mean() for s in (0, 1)]))

    for m in ("naive", "aux_conf", "gce", "bootstrap", "refine"):
        want = (acc(f"student-{m}") - acc("weak")) / (acc("ceiling") - acc("weak"))
        assert report["pgr"]["students"][f"student-{m}"]["pgr"]["value"] == pytest.approx(want)
    assert report["scores"]["weak"]["accuracy"]["mean"] == pytest.approx(acc("weak"))
    # the weak labels are the weak model's predictions on strong-train, and the refined and
    # bootstrapped students trained on labels of their own
    assert len(steps[0]["weak"]["labels"]) == 50
    assert steps[0]["student-refine"]["labels"] != steps[0]["weak"]["labels"]
    assert "label_accuracy" in steps[0]["student-bootstrap"]
    md = (out / "report.md").read_text()
    for heading in ("Performance gap recovered", "The deception split", "Time and peak memory"):
        assert heading in md


def test_a_killed_run_resumes_and_a_finished_one_reports_again(tmp_path, tiny_paths):
    config, out = _config(tmp_path, tiny_paths, methods=["naive", "gce"]), tmp_path / "run"
    assert _run(config, out).exit_code == 0
    lost = out / "steps" / "seed-1" / "student-gce.json"
    kept = out / "steps" / "seed-0" / "weak.json"
    before = lost.read_text()
    stamp = kept.stat().st_mtime_ns
    lost.unlink()  # as if killed during this step
    (out / "generalise.json").write_text(
        (out / "generalise.json").read_text().replace('"done": true', '"done": false'))
    res = _run(config, out)
    assert res.exit_code == 0, res.output
    assert "seed 1 student-gce" in res.output and "seed 0 weak" not in res.output
    assert kept.stat().st_mtime_ns == stamp
    assert json.loads(lost.read_text())["test"] == json.loads(before)["test"]  # seeded
    again = _run(config, out)
    assert again.exit_code == 0 and "seed " not in again.output


def test_a_variant_reuses_the_features_of_a_finished_run(tmp_path, tiny_paths):
    first, second = tmp_path / "a", tmp_path / "b"
    assert _run(_config(tmp_path, tiny_paths, methods=["naive"]), first).exit_code == 0
    res = _run(_config(tmp_path, tiny_paths, methods=["gce"], probe={"epochs": 2}), second,
               "--features-from", str(first))
    assert res.exit_code == 0, res.output
    assert f"features reused from {first}: weak, intermediate, strong" in res.output
    for role in ("weak", "intermediate", "strong"):
        name = f"features/{role}.safetensors"
        assert (second / name).read_bytes() == (first / name).read_bytes()
    # another model in a role is extracted anew, never taken from the other run
    paths = {**tiny_paths, "base": tiny_paths["tuned"]}
    third = tmp_path / "c"
    res = _run(_config(tmp_path, paths, methods=["naive"]), third, "--features-from",
               str(first))
    assert "features reused from" in res.output and ": weak, intermediate\n" in res.output


def test_another_config_on_a_used_folder_is_refused(tmp_path, tiny_paths):
    out = tmp_path / "run"
    assert _run(_config(tmp_path, tiny_paths, methods=["naive"]), out).exit_code == 0
    res = _run(_config(tmp_path, tiny_paths, methods=["naive", "gce"]), out)
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (f"error: {out} holds another generalise run (its config "
                                  "differs at methods); use another --out, or --restart "
                                  "to discard it")
    assert _run(_config(tmp_path, tiny_paths, methods=["naive", "gce"]), out,
                "--restart").exit_code == 0


def test_bad_data_writes_nothing(tmp_path, tiny_paths):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "rating": 1}\n{"text": "b"}\n')
    config = _config(tmp_path, tiny_paths)
    data = yaml.safe_load(open(config))
    data["data"]["source"] = str(bad)
    open(config, "w").write(yaml.safe_dump(data))
    res = _run(config, tmp_path / "run")
    assert res.exit_code == 2
    assert res.output.strip() == f"error: {bad}:2: the label 'rating' is missing; every record " \
                                 "needs its ground truth"
    assert not (tmp_path / "run").exists()


def test_pairwise_reward_models_guide_a_search(tmp_path, tiny_paths):
    """The students are reward models; exported, each guides Best-of-N beside the weak pair,
    the weak reward model and the ceiling's, in an eval run of their own."""
    pair = {"tuned": tiny_paths["tuned"], "untuned": tiny_paths["untuned"]}
    config = _config(tmp_path, tiny_paths, form="pairwise", margin=1.0,
                     pairs={"weak_train": 150, "strong_train": 200, "test": 200},
                     methods=["naive", {"method": "refine", "shots": 2, "block": 8}],
                     seeds=1, reward_for="sentiment",
                     search={"base": tiny_paths["base"], "prompts": 2, "seeds": 1,
                             "sampling": {"max_new_tokens": 4},
                             "methods": [{"method": "bon", "n": 2}],
                             "guides": {"tiny pair": pair}, "batch_size": 8})
    out = tmp_path / "run"
    res = _run(config, out)
    assert res.exit_code == 0, res.output
    for name in ("weak", "ceiling", "student-naive", "student-refine"):
        card = json.loads((out / "reward-models" / name / "w2s_reward.json").read_text())
        assert card["reward_for"] == "sentiment" and card["form"] == "pairwise"
    rows = [json.loads(x) for x in (out / "search" / "results.jsonl").read_text().splitlines()]
    labels = {r["method"] for r in rows}
    assert labels == {"base sampling", "bon(n=2) · tiny pair", "bon(n=2) · weak RM",
                      "bon(n=2) · w2s RM (naive)", "bon(n=2) · w2s RM (refine)",
                      "bon(n=2) · ceiling RM"}
    report = json.loads((out / "report.json").read_text())
    pairs = {(d["a"], d["b"]) for d in report["search"]["differences"]}
    assert ("bon(n=2) · w2s RM (naive)", "bon(n=2) · ceiling RM") in pairs
    assert "Search guided by the reward models" in (out / "report.md").read_text()
    # the search can be extended on the finished folder: the trained models stay, eval
    # resumes and adds only the new guide's rows
    steps = {p: p.stat().st_mtime_ns for p in (out / "steps").rglob("*.json")}
    before = len(rows)
    data = yaml.safe_load(open(config))
    data["search"]["guides"]["tiny x-pair"] = {"tuned": tiny_paths["xtuned"],
                                               "untuned": tiny_paths["xuntuned"]}
    open(config, "w").write(yaml.safe_dump(data))
    res = _run(config, out)
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in (out / "steps").rglob("*.json")} == steps
    rows = [json.loads(x) for x in (out / "search" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == before + 2  # 2 prompts x 1 seed of the one new method-guide point
    # the exported reward model was trained for sentiment: an eval of another task refuses it
    from w2s.evaluate.config import parse_config

    with pytest.raises(W2SError, match="is a reward model for the task 'sentiment'.*not for "
                                       "'instructions'"):
        parse_config({"task": "instructions", "base": tiny_paths["base"], "methods": [
            {"method": "bon", "n": 2, "guide": {"reward_model": str(out / "reward-models" /
                                                                   "ceiling")}}]},
                     tmp_path / "e.yaml")


def test_the_fine_tuning_path(tmp_path, tiny_paths):
    config = _config(tmp_path, tiny_paths, train="finetune", seeds=1,
                     finetune={"epochs": 1, "batch_size": 16, "lr": 1e-3},
                     methods=["naive", "aux_conf", "bootstrap"])
    out = tmp_path / "run"
    res = _run(config, out)
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "steps" / "seed-0" / "student-aux_conf.json").read_text())
    assert rec["probe"] is None and len(rec["test"]) == 40
    assert all(0 <= p <= 1 for p in rec["test"])
    assert not (out / "features").exists()  # no probes, no features


def test_fine_tuning_through_lora_adapters_trains_the_new_head_too(tmp_path, tiny_paths):
    pytest.importorskip("peft")
    from w2s.generalise.finetune import load_classifier

    model, _ = load_classifier(tiny_paths["base"], "cpu", True, 2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and any("score" in n for n in trainable)
    assert not any("embed_tokens" in n for n in trainable)
    config = _config(tmp_path, tiny_paths, train="finetune", seeds=1, methods=["naive"],
                     finetune={"epochs": 1, "batch_size": 16, "lr": 1e-3, "lora": True,
                               "lora_r": 2})
    res = _run(config, tmp_path / "run")
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "run" / "steps" / "seed-0" / "student-naive.json").read_text())
    assert len(set(rec["test"])) > 1  # the head learned something: not one constant


@pytest.mark.parametrize("shipped", ["movies", "tweets", "reward", "finetune"])
def test_the_shipped_configs_parse(shipped):
    from w2s.generalise.config import load_config

    cfg, path = load_config(shipped)
    assert path.is_file() and cfg.methods
    assert os.fspath(path).endswith((".yaml", ".yml", ".toml"))
