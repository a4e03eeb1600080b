"""Does a student keep the search's gain without searching? The zoo, end to end, offline.

1. ``w2s distill data``: CBS(4,4,5) with the zoo pair over training-review openings (the
   zoo's own split: none of them is a held-out prompt), one response per prompt, VADER scored;
2. ``w2s distill train``: the zoo base fine-tuned with TRL's SFT on CBS's answers, once per
   training seed;
3. ``w2s eval`` on the held-out prompts x sampling seeds: base sampling, CBS, and each student
   sampled plainly; VADER (gold) and TextBlob (second scorer), the base's log-likelihood per
   token and distinct bigrams, paired over (prompt, seed).

Prints the share of CBS's gain over base sampling that each student keeps (VADER and TextBlob,
with standard errors), each step's wall time and peak memory, and the inference cost per
response (base tokens) of CBS against the student.

The guards against over-optimisation (``--guards``) train, beside the plain student, one with
``distill train --min-distinct F`` (early stopping on the distinct-2 of plain samples on
``--guard-prompts`` further training-split openings, none trained on and none an evaluation
prompt), one on ``distill data --answers N`` rows (the search's N best distinct answers per
prompt, from the same search, trained for as many optimizer steps as the plain student) and,
with ``--both``, one with both; the table then holds each model's VADER,
TextBlob and distinct-2 (jackknife SE over prompts) and each student's paired difference from
CBS on both.

    python bench/distill_zoo.py [--train-prompts 256] [--train-seeds 2] [--out runs/distill-zoo]
    python bench/distill_zoo.py --guards --train-prompts 96 --train-seeds 1 --prompts 48 \
        --seeds 1 --min-distinct 0.6 --answers 4 --out runs/distill-guard
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

W2S = [sys.executable, "-m", "w2s.cli"]


def timed(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; its wall seconds and peak resident memory (MiB), from /usr/bin/time."""
    t = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "PEAK %M", *cmd], capture_output=True,
                         text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    peak = next(int(x.split()[1]) for x in out.stderr.splitlines() if x.startswith("PEAK "))
    return time.perf_counter() - t, peak / 1024


def training_prompts(n: int, seed: int = 0) -> list[str]:
    """Lower-cased openings (2-6 words) of the zoo corpus's training snippets."""
    from w2s.zoo.data import cased_snippets, clean
    from w2s.zoo.family import openings

    corpus = cased_snippets(Path.home() / ".cache" / "w2s" / "zoo-data")
    texts = sorted({clean(t) for t in corpus.train})
    return list(dict.fromkeys(openings(texts, n, random.Random(seed))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-prompts", type=int, default=256)
    ap.add_argument("--train-seeds", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--learning-rate", type=float, default=1e-4)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/distill-zoo"))
    ap.add_argument("--guards", action="store_true",
                    help="Also train the guarded students (--min-distinct, --answers, both).")
    ap.add_argument("--min-distinct", type=float, default=0.6)
    ap.add_argument("--guard-prompts", type=int, default=32)
    ap.add_argument("--guard-steps", type=int, default=2)
    ap.add_argument("--answers", type=int, default=4)
    ap.add_argument("--both", action="store_true", help="Also a student with both guards.")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    pfile, gfile = a.out / "train-prompts.jsonl", a.out / "guard-prompts.jsonl"
    openings = training_prompts(a.train_prompts + (a.guard_prompts if a.guards else 0))
    pfile.write_text("".join(json.dumps({"prompt": p}) + "\n"
                             for p in openings[:a.train_prompts]))
    gfile.write_text("".join(json.dumps({"prompt": p}) + "\n"
                             for p in openings[a.train_prompts:]))
    data = a.out / "data"
    search = ["--base", "zoo:base", "--tuned", "zoo:tuned", "--untuned", "zoo:untuned",
              "--method", "cbs", "--w", "4", "--k", "4", "--l", "5", "--max-new-tokens", "32",
              "--temperature", "0.7", "--prompts-file", str(pfile), "--gold", "vader",
              "--no-progress", "--batch-size", "256"]
    t_data, m_data = timed([*W2S, "distill", "data", *search, "--out", str(data)])
    runs = [(f"student-s{s}", data, s, []) for s in range(a.train_seeds)]
    if a.guards:
        many = a.out / f"data-a{a.answers}"  # the same search, its N best distinct answers
        many.mkdir(exist_ok=True)
        for name in ("raw.jsonl", "distill.json"):
            (many / name).write_bytes((data / name).read_bytes())
        timed([*W2S, "distill", "data", *search, "--answers", str(a.answers), "--out",
               str(many)])
        guard = ["--min-distinct", str(a.min_distinct), "--guard-prompts-file", str(gfile),
                 "--guard-steps", str(a.guard_steps)]
        runs += [("student-guard", data, 0, guard), (f"student-a{a.answers}", many, 0, [])]
        if a.both:
            runs.append((f"student-a{a.answers}-guard", many, 0, guard))
    students, trains = [], []
    for name, rows, s, extra in runs:
        folder = a.out / name
        # as many optimizer steps as the plain student: each prompt is seen as often
        epochs = a.epochs * _rows(data) / _rows(rows)
        if not (folder / "train.json").is_file() or not json.loads(
                (folder / "train.json").read_text()).get("done"):
            trains.append(timed([*W2S, "distill", "train", str(rows), "--out", str(folder),
                                 "--epochs", f"{epochs:.4f}", "--learning-rate",
                                 str(a.learning_rate), "--batch-size", "16", "--seed", str(s),
                                 "--no-progress", "--restart", *extra]))
        students.append(folder)
    config = {"name": "distill-zoo", "task": "sentiment", "base": "zoo:base",
              "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"},
              "prompts": a.prompts, "seeds": a.seeds,
              "sampling": {"max_new_tokens": 32, "temperature": 0.7},
              "methods": [{"method": "sample", "label": "base sampling"},
                          {"method": "cbs", "w": 4, "k": 4, "l": 5, "label": "cbs"}]
              + [{"method": "sample", "model": str(f.resolve()), "label": f"student {f.name}"}
                 for f in students]}
    cfg = a.out / "eval.yaml"
    cfg.write_text(json.dumps(config, indent=1))  # JSON is YAML
    t_eval, _ = timed([*W2S, "eval", str(cfg), "--out", str(a.out / "eval"), "--no-progress"])
    report(a, t_data, m_data, trains, t_eval)


def _rows(folder: Path) -> int:
    return len((folder / "sft.jsonl").read_text().splitlines())


def report(a: argparse.Namespace, t_data: float, m_data: float,
           trains: list[tuple[float, float]], t_eval: float) -> None:
    from w2s.evaluate.report import summarize
    from w2s.evaluate.stats import paired_difference
    from w2s.evaluate.store import read_rows

    rows = read_rows(a.out / "eval" / "results.jsonl")
    print(f"distill data: {t_data:.0f} s, peak {m_data:.0f} MiB; distill train: "
          + ", ".join(f"{t:.0f} s (peak {m:.0f} MiB)" for t, m in trains))
    print(f"eval: {t_eval:.0f} s")
    for s in summarize(rows):
        gold = "  ".join(f"{k} {v[0]:+.3f} ± {v[1]:.3f}" for k, v in s["gold"].items() if v)
        print(f"  {s['method']:<22} {gold}  log-p/token {s['base_logp_per_token']:.2f}  "
              f"distinct-2 {s['distinct_2']:.2f}  base tokens {s['base_tokens']:.0f}  "
              f"wall {s['wall_time_s'] * 1000:.0f} ms")
    diversity_table(a, rows)
    for gold in ("vader", "textblob"):
        gain = paired_difference(rows, "cbs", "base sampling", gold)
        print(f"{gold}: cbs - base sampling {gain['mean']:+.3f} ± {gain['se']:.3f}")
        for label in sorted({r["method"] for r in rows if r["method"].startswith("student")}):
            d = paired_difference(rows, label, "base sampling", gold)
            c = paired_difference(rows, label, "cbs", gold)
            print(f"  {label} - base sampling {d['mean']:+.3f} ± {d['se']:.3f} "
                  f"({d['mean'] / gain['mean']:.0%} of the gain); {label} - cbs "
                  f"{c['mean']:+.3f} ± {c['se']:.3f}")



def diversity_table(a: argparse.Namespace, rows: list[dict]) -> None:
    """Score and distinct-2 side by side for every model (markdown), the students' paired
    differences from CBS (the teacher) on both, and each guard's curve."""
    from w2s.evaluate.report import distinct_bigrams
    from w2s.evaluate.stats import paired_difference, prompt_jackknife, prompt_mean_se

    def d2(sel: list[dict]) -> float:
        return distinct_bigrams([r["response"] for r in sel])

    labels = list(dict.fromkeys(r["method"] for r in rows))
    print("| model, held out | VADER | TextBlob | distinct-2 | VADER − CBS | "
          "distinct-2 − CBS |\n|---|---|---|---|---|---|")
    for label in labels:
        sel = [r for r in rows if r["method"] == label]
        v, t = (prompt_mean_se(sel, lambda r, g=g: r["gold"].get(g)) for g in ("vader",
                                                                               "textblob"))
        d, dse = prompt_jackknife(sel, d2)
        both = [r for r in rows if r["method"] in (label, "cbs")]
        diff = prompt_jackknife(both, lambda s, lab=label: d2(
            [r for r in s if r["method"] == lab]) - d2([r for r in s if r["method"] == "cbs"]))
        pv = paired_difference(rows, label, "cbs", "vader")
        rel = ("–", "–") if label == "cbs" else (
            f"{pv['mean']:+.3f} ± {pv['se']:.3f}", f"{diff[0]:+.3f} ± {diff[1]:.3f}")
        print(f"| {label} | {v[0]:+.3f} ± {v[1]:.3f} | {t[0]:+.3f} ± {t[1]:.3f} | "
              f"{d:.3f} ± {dse:.3f} | {rel[0]} | {rel[1]} |")
    for folder in sorted(a.out.glob("student-*")):
        g = json.loads((folder / "train.json").read_text()).get("guard")
        if g:
            curve = ", ".join(f"{e['step']}: {e['distinct_2']:.2f}" for e in g["evaluations"])
            print(f"{folder.name}: guard curve (step: held-out distinct-2) {curve}; stopped at "
                  f"{g['stopped_at']}, kept step {g['kept_step']}")
    for folder in sorted(a.out.glob("data*")):
        from w2s.distill.data import answers_summary

        t = answers_summary(folder, ["vader"])
        print(f"teacher {folder.name} (CBS's answers, training prompts, {t['rows']} rows): "
              f"VADER {t['vader']:+.3f} ± {t['vader_se']:.3f}, distinct-2 "
              f"{t['distinct_2']:.3f} ± {t['distinct_2_se']:.3f}")


if __name__ == "__main__":
    main()
