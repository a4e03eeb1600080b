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

    python bench/distill_zoo.py [--train-prompts 256] [--train-seeds 2] [--out runs/distill-zoo]
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
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    pfile = a.out / "train-prompts.jsonl"
    pfile.write_text("".join(json.dumps({"prompt": p}) + "\n"
                             for p in training_prompts(a.train_prompts)))
    data = a.out / "data"
    guide = ["--tuned", "zoo:tuned", "--untuned", "zoo:untuned"]
    t_data, m_data = timed([*W2S, "distill", "data", "--base", "zoo:base", *guide,
                            "--method", "cbs", "--w", "4", "--k", "4", "--l", "5",
                            "--max-new-tokens", "32", "--temperature", "0.7",
                            "--prompts-file", str(pfile), "--gold", "vader", "--no-progress",
                            "--batch-size", "256",
                            "--out", str(data)])
    students, trains = [], []
    for s in range(a.train_seeds):
        folder = a.out / f"student-s{s}"
        if not (folder / "train.json").is_file() or not json.loads(
                (folder / "train.json").read_text()).get("done"):
            trains.append(timed([*W2S, "distill", "train", str(data), "--out", str(folder),
                                 "--epochs", str(a.epochs), "--learning-rate",
                                 str(a.learning_rate), "--batch-size", "16", "--seed", str(s),
                                 "--no-progress", "--restart"]))
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
    for gold in ("vader", "textblob"):
        gain = paired_difference(rows, "cbs", "base sampling", gold)
        print(f"{gold}: cbs - base sampling {gain['mean']:+.3f} ± {gain['se']:.3f}")
        for label in sorted({r["method"] for r in rows if r["method"].startswith("student")}):
            d = paired_difference(rows, label, "base sampling", gold)
            c = paired_difference(rows, label, "cbs", gold)
            print(f"  {label} - base sampling {d['mean']:+.3f} ± {d['se']:.3f} "
                  f"({d['mean'] / gain['mean']:.0%} of the gain); {label} - cbs "
                  f"{c['mean']:+.3f} ± {c['se']:.3f}")


if __name__ == "__main__":
    main()
