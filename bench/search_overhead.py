"""Benchmark: each search's cost per base token against Best-of-N at the same budget.

Every search is sized by its registry entry's ``at_budget`` to spend at most B responses' worth
of base tokens per prompt, run on the shipped zoo (base + tuned/untuned pair) with EOS ignored
(so every method spends its budget and the token counts are comparable), interleaved over
repeats; prints seconds, base tokens sampled and read, estimated FLOPs, and each method's
seconds per sampled base token as a ratio to Best-of-N's.

    python bench/search_overhead.py [--budget 16] [--prompts 8] [--tokens 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import w2s
import w2s.zoo
from w2s.quiet import quiet_libraries

METHODS = {"bon": {}, "pruned_bon": {"prune": 0.5, "every": 8}, "cbs": {"k": 4, "l": 5},
           "particles": {"chunk": 8, "tau": 1.0}, "treebon": {"branch": 4, "first": 4},
           "mcts": {"k": 4, "l": 8}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    quiet_libraries()
    z = w2s.zoo.ZOO_DIR
    base = w2s.HFModel.load(str(z / "base"))
    guide = w2s.PairGuide.load(str(z / "tuned"), str(z / "untuned"))
    from w2s.tasks import build_task

    prompts = build_task({"name": "sentiment"}, z).prompts[: a.prompts]
    sp = w2s.SamplingParams(max_new_tokens=a.tokens, ignore_eos=True, seed=0)
    specs = {m: w2s.decoders()[m] for m in METHODS}
    knobs = {m: s.at_budget(s.make_params(METHODS[m]), a.budget, a.tokens)
             for m, s in specs.items()}
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    costs: dict[str, w2s.Cost] = {}
    for m in METHODS:  # warm-up
        specs[m].run(base, guide, prompts[:1], knobs[m], sp)
    for _ in range(a.repeats):
        for m in METHODS:  # interleaved: drift hits every method alike
            t0 = time.perf_counter()
            res = specs[m].run(base, guide, prompts, knobs[m], sp)
            times[m].append(time.perf_counter() - t0)
            costs[m] = w2s.Cost(sum(r.cost.base_tokens for r in res),
                                sum(r.cost.guide_tokens for r in res), 0.0,
                                sum(r.cost.base_read for r in res),
                                sum(r.cost.flops for r in res))
    print(f"zoo, {a.prompts} prompts x {a.tokens} tokens (EOS ignored), budget {a.budget}x "
          f"= {a.budget * a.tokens} base tokens per prompt; median of {a.repeats}")
    print(f"{'method':12s} {'knobs':46s} {'s':>7s} {'sampled':>8s} {'read':>6s} "
          f"{'GFLOP':>7s} {'ms/token':>9s} {'vs BoN':>7s}")
    ref = statistics.median(times["bon"]) / costs["bon"].base_tokens
    for m in METHODS:
        s, c = statistics.median(times[m]), costs[m]
        per = s / c.base_tokens
        knob = ", ".join(f"{k}={v}" for k, v in knobs[m].to_dict().items())
        print(f"{m:12s} {knob:46s} {s:7.3f} {c.base_tokens:8d} {c.base_read:6d} "
              f"{c.flops / 1e9:7.2f} {1000 * per:9.3f} {per / ref:6.2f}x")


if __name__ == "__main__":
    main()
