"""Weak-to-strong generalisation on the SmolLM2 family: how much of the gap does a student recover?

Weak = the family's small tuned model; strong = SmolLM2-135M. The strong model is fine-tuned
(TRL SFT, the same settings for every condition, once per training seed) on 255 training-review
openings (256 drawn, one repeat removed) answered by:

  (a) weak    -- the weak model's own samples (naive weak-to-strong fine-tuning);
  (b) icl     -- SmolLM2's samples with four of the weak model's answers in context (the
                 transfer-learning framework's refinement, Somerstep et al.);
  (c) cbs     -- w2s's search: CBS(W 4, K 4, L 2) with the family pair, the best setting of
                 the equal-compute sweep (bench/sweep_smollm2.yaml);
  (d) gold    -- Best-of-16 of SmolLM2's samples chosen by VADER itself (the ceiling).

Then ``w2s eval`` samples every student plainly on the 64 held-out prompts x 2 sampling seeds,
beside base sampling, the weak model alone and CBS; VADER is the gold reward, TextBlob the
second scorer, with SmolLM2's log-likelihood per token and distinct bigrams beside them.

A second gold repairs PGR, which VADER and TextBlob leave undefined here (the weak model
writes positive but broken English, scored as high as the would-be ceiling): sentiment counted
only in fluent text, ``GOLD·fluent = GOLD if the response's SmolLM2 log-likelihood per token
>= --fluency-floor (default -3.0 nats; SmolLM2's own samples average -2.0) else 0``, reported
beside the plain golds, with the share of each model's responses above the floor.

Printed: each model's scores; the performance gap recovered,
PGR = (student - weak) / (ceiling - weak) (Burns et al.), and the gap recovered from the
untrained strong model, (student - base) / (ceiling - base), each with a bootstrap standard
error over prompts (every quantity on the same resampled prompts) -- flagged undefined when the
ceiling is not above the floor by 2 SE; the share of CBS's gain that each student keeps when
sampled plainly; students against each other, paired; wall time and peak memory of every step.
Every step resumes: a rerun does only what is missing.

    python bench/w2s_generalisation.py [--train-prompts 256] [--train-seeds 2] \
        [--out runs/w2s-generalisation] [--fluency-floor -3.0]
    python bench/w2s_generalisation.py --report [--fluency-floor -2.5]   # the tables again
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

from distill_zoo import W2S, timed

CACHE = Path.home() / ".cache" / "w2s"
CONDITIONS = ("weak", "icl", "cbs", "gold")


def training_prompts(n: int, seed: int) -> list[str]:
    """Openings (2-6 words, their own case) of the cased corpus's training snippets: the split
    the family was trained on, never a held-out prompt."""
    from w2s.zoo.data import cased_snippets
    from w2s.zoo.family import openings

    corpus = cased_snippets(CACHE / "zoo-data")
    return list(dict.fromkeys(openings(corpus.train, n, random.Random(seed))))


def data_commands(a: argparse.Namespace, pfile: Path) -> dict[str, list[str]]:
    fam, base = str(a.family), str(a.base)
    pair = ["--tuned", f"{fam}/tuned", "--untuned", f"{fam}/untuned"]
    common = ["--prompts-file", str(pfile), "--max-new-tokens", str(a.max_new_tokens),
              "--temperature", "0.7", "--pairs", "none", "--gold", "vader", "--gold",
              "textblob", "--no-progress", "--batch-size", "256"]
    return {
        "weak": ["--base", f"{fam}/tuned", "--method", "sample", *common],
        "icl": ["--base", base, "--method", "sample", "--demos",
                str(a.out / "data" / "weak" / "sft.jsonl"), "--shots", "4", *common],
        "cbs": ["--base", base, *pair, "--method", "cbs", "--w", "4", "--k", "4", "--l", "2",
                *common],
        "gold": ["--base", base, *pair, "--method", "bon", "--n", "16", "--rank-by", "vader",
                 *common],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, default=CACHE / "smollm2")
    ap.add_argument("--family", type=Path, default=CACHE / "smollm2-family")
    ap.add_argument("--train-prompts", type=int, default=256)
    ap.add_argument("--train-seeds", type=int, default=2)
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--learning-rate", type=float, default=3e-5)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/w2s-generalisation"))
    ap.add_argument("--fluency-floor", type=float, default=-3.0)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    def timed_step(name: str, cmd: list[str]) -> None:
        """Run one step; its wall time and peak memory land in times.json at once."""
        seconds, peak = timed(cmd)
        path = a.out / "times.json"
        had = json.loads(path.read_text()) if path.is_file() else {}
        had[name] = {"seconds": seconds, "peak_mib": peak}
        path.write_text(json.dumps(had, indent=1))

    pfile = a.out / "train-prompts.jsonl"
    if not pfile.is_file():
        pfile.write_text("".join(json.dumps({"prompt": p}) + "\n"
                                 for p in training_prompts(a.train_prompts, seed=11)))
    for name, args in data_commands(a, pfile).items():
        folder = a.out / "data" / name
        if not (folder / "sft.jsonl").is_file():
            timed_step(f"distill data {name}", [*W2S, "distill", "data", *args,
                                                "--out", str(folder)])
    students = {}
    for name in CONDITIONS:
        for s in range(a.train_seeds):
            folder = a.out / "students" / f"{name}-s{s}"
            students[f"{name} s{s}"] = folder
            done = folder / "train.json"
            if done.is_file() and json.loads(done.read_text()).get("done"):
                continue
            timed_step(
                f"distill train {name} s{s}", [*W2S, "distill", "train", str(a.out / "data" / name), "--student",
                 str(a.base), "--out", str(folder), "--epochs", str(a.epochs),
                 "--learning-rate", str(a.learning_rate), "--batch-size", "8", "--seed",
                 str(s), "--no-progress"])
    config = {"name": "w2s-generalisation", "task": {
                  "name": "sentiment",
                  "path": str(Path(__file__).resolve().parent.parent
                              / "src/w2s/zoo/models/prompts-cased.jsonl")},
              "base": str(a.base),
              "guide": {"tuned": f"{a.family}/tuned", "untuned": f"{a.family}/untuned"},
              "prompts": a.prompts, "seeds": a.seeds, "batch_size": 256,
              "sampling": {"max_new_tokens": a.max_new_tokens, "temperature": 0.7},
              "methods": [{"method": "sample", "label": "base"},
                          {"method": "sample", "model": f"{a.family}/tuned", "label": "weak"},
                          {"method": "cbs", "w": 4, "k": 4, "l": 2, "label": "cbs"}]
              + [{"method": "sample", "model": str(f.resolve()), "label": label}
                 for label, f in students.items()]}
    cfg = a.out / "eval.yaml"
    cfg.write_text(json.dumps(config, indent=1))  # JSON is YAML
    timed_step("w2s eval", [*W2S, "eval", str(cfg), "--out", str(a.out / "eval"),
                            "--no-progress"])
    report(a)


def per_prompt(rows: list[dict], labels: list[str], gold: str) -> dict[int, float]:
    """Each prompt's gold mean over ``labels`` (training seeds) and sampling seeds."""
    got: dict[int, list[float]] = {}
    for r in rows:
        if r["method"] in labels and r["gold"].get(gold) is not None:
            got.setdefault(r["prompt_index"], []).append(r["gold"][gold])
    return {p: statistics.fmean(v) for p, v in got.items()}


def gap_recovered(rows: list[dict], student: list[str], floor: list[str], ceiling: list[str],
                  gold: str, draws: int = 2000) -> tuple[float, float]:
    """(S - F) / (C - F) over prompt means, and its bootstrap SE (prompts resampled jointly)."""
    s, f, c = (per_prompt(rows, x, gold) for x in (student, floor, ceiling))
    keys = sorted(set(s) & set(f) & set(c))

    def ratio(ks: list[int]) -> float:
        num = statistics.fmean(s[k] - f[k] for k in ks)
        den = statistics.fmean(c[k] - f[k] for k in ks)
        return num / den if den else float("nan")

    rng = random.Random(0)
    boots = [ratio([rng.choice(keys) for _ in keys]) for _ in range(draws)]
    return ratio(keys), statistics.stdev(b for b in boots if b == b)


def with_fluent(rows: list[dict], floor: float) -> list[dict]:
    """Each row with ``GOLD·fluent`` golds: the gold where the response's base log-likelihood
    per token is at least ``floor``, else 0 (sentiment counted only in fluent text)."""
    out = []
    for r in rows:
        lp = r.get("base_logp_per_token")
        fluent = lp is not None and lp >= floor
        extra = {f"{g}·fluent": (v if fluent else 0.0) for g, v in r["gold"].items()
                 if v is not None and g in ("vader", "textblob")}
        out.append({**r, "gold": {**r["gold"], **extra}, "fluent": fluent})
    return out


def report(a: argparse.Namespace) -> None:
    from w2s.evaluate.report import summarize
    from w2s.evaluate.store import read_rows

    rows = with_fluent(read_rows(a.out / "eval" / "results.jsonl"), a.fluency_floor)
    times = json.loads((a.out / "times.json").read_text())
    for k, v in times.items():
        print(f"{k:<26} {v['seconds']:7.0f} s  peak {v['peak_mib']:6.0f} MiB")
    for s in summarize(rows):
        gold = "  ".join(f"{k} {v[0]:+.3f} ± {v[1]:.3f}" for k, v in s["gold"].items() if v)
        print(f"  {s['method']:<10} {gold}  log-p/token {s['base_logp_per_token']:.2f}  "
              f"distinct-2 {s['distinct_2']:.2f}  base tokens {s['base_tokens']:.0f}  "
              f"wall {s['wall_time_s'] * 1000:.0f} ms")
    seeds = [f"s{s}" for s in range(a.train_seeds)]
    ceiling = [f"gold {s}" for s in seeds]
    print(f"\nshare of responses at or above the fluency floor ({a.fluency_floor:g} nats per "
          "token under SmolLM2):")
    for label in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == label]
        print(f"  {label:<10} {statistics.fmean(r['fluent'] for r in sel):.0%}")
    for gold in ("vader", "textblob", "vader·fluent", "textblob·fluent"):
        print(f"\n{gold}: gap recovered (bootstrap SE over prompts; students' seeds averaged)")
        for floor in ("weak", "base"):
            d = paired(rows, ceiling, [floor], gold)
            usable = d[0] > 2 * d[1]
            print(f"  ceiling - {floor}: {d[0]:+.3f} ± {d[1]:.3f} ({d[0] / d[1]:.1f} SE)"
                  + ("" if usable else "  (not above the floor: (S - F) / (C - F) is undefined)"))
            for cond in CONDITIONS[:-1]:
                labels = [f"{cond} {s}" for s in seeds]
                r = gap_recovered(rows, labels, [floor], ceiling, gold)
                each = ", ".join(f"{gap_recovered(rows, [x], [floor], ceiling, gold)[0]:+.2f}"
                                 for x in labels)
                print(f"    {cond:<5} (S - {floor}) / (C - {floor}) = {r[0]:+.2f} ± {r[1]:.2f} "
                      f"(per seed {each})" + ("" if usable else "  [undefined]"))
        gain = paired(rows, ["cbs"], ["base"], gold)
        print(f"  CBS - base {gain[0]:+.3f} ± {gain[1]:.3f}; each student - base, and its share "
              "of CBS's gain:")
        for cond in CONDITIONS:
            d = paired(rows, [f"{cond} {s}" for s in seeds], ["base"], gold)
            c = paired(rows, [f"{cond} {s}" for s in seeds], ["cbs"], gold)
            print(f"    {cond:<5} {d[0]:+.3f} ± {d[1]:.3f} ({d[0] / gain[0]:.0%}); - CBS "
                  f"{c[0]:+.3f} ± {c[1]:.3f}")
        print("  between students (seeds averaged):")
        for x, y in (("cbs", "gold"), ("cbs", "weak"), ("weak", "gold"), ("icl", "weak")):
            d = paired(rows, [f"{x} {s}" for s in seeds], [f"{y} {s}" for s in seeds], gold)
            print(f"    {x} - {y} {d[0]:+.3f} ± {d[1]:.3f}")


def paired(rows: list[dict], a: list[str], b: list[str], gold: str) -> tuple[float, float]:
    """Mean over prompts of (a - b), each side its labels' and seeds' mean, and its SE."""
    x, y = per_prompt(rows, a, gold), per_prompt(rows, b, gold)
    diffs = [x[k] - y[k] for k in sorted(set(x) & set(y))]
    return statistics.fmean(diffs), statistics.stdev(diffs) / len(diffs) ** 0.5

if __name__ == "__main__":
    if "--report" in sys.argv:
        sys.argv.remove("--report")
        ap = argparse.ArgumentParser()
        ap.add_argument("--train-seeds", type=int, default=2)
        ap.add_argument("--out", type=Path, default=Path("runs/w2s-generalisation"))
        ap.add_argument("--fluency-floor", type=float, default=-3.0)
        report(ap.parse_args())
    else:
        main()
