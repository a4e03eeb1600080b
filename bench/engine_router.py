"""Benchmark: two vLLM replicas behind vllm-router against one replica, for a search.

Starts two vLLM servers (the CPU build from ``make engine``) serving the zoo's base on
loopback and vllm-router in front of them (consistent hashing on ``X-Session-ID``, which w2s
sets per prompt), then measures, side by side in one run:

* affinity: each prompt's CBS alone through the router; from each server's
  ``vllm:request_success_total`` before and after, how many prompts had requests on both
  replicas (should be none) and how the prompts split between them;
* agreement: CBS(W,K,L) on every prompt x seed through one replica and through the router
  (the same seeds): identical outputs, and the gold scores' paired difference with its SE
  over prompts (the two should agree in distribution; with the engine's seeded sampling
  they are mostly token-identical);
* throughput: wall time of each, with each replica's requests and prefix-cache hit rate.
  Each replica's worker is bound to its own core (0 and 1); the API servers, the router and
  the guide share both. On a 2-core machine this checks correctness, not speed.

    python bench/engine_router.py [--prompts 64] [--seeds 0 1] [--max-new 32]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from engine_cbs_vs_sampling import cache_counters

import w2s
from w2s.plots import mean_se
from w2s.quiet import quiet_libraries
from w2s.tasks.gold import textblob, vader
from w2s.tasks.sentiment import load_prompts
from w2s.vllm_server import metric_totals, vllm_router, vllm_server
from w2s.zoo import ZOO_DIR


def served(url: str) -> float:
    """Requests a vLLM server has finished."""
    return metric_totals(url, "request_success")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--w", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--l", type=int, default=4)
    args = ap.parse_args()
    quiet_libraries()
    guide = w2s.PairGuide.load("zoo:tuned", "zoo:untuned")
    prompts = load_prompts(limit=args.prompts)
    search = w2s.SearchParams(args.w, args.k, args.l)
    logs = Path(tempfile.mkdtemp(prefix="w2s-router-"))
    print(f"vLLM (CPU build) x 2 serving the zoo base behind vllm-router (consistent_hash); "
          f"CBS({args.w},{args.k},{args.l}), {len(prompts)} prompts x seeds {args.seeds}, "
          f"{args.max_new} new tokens; logs in {logs}")

    def sp(seed: int) -> w2s.SamplingParams:
        return w2s.SamplingParams(max_new_tokens=args.max_new, temperature=0.7, seed=seed)

    # each worker on its own core (both would take core 0 by default)
    with vllm_server(ZOO_DIR / "base", "zoo-base", log=logs / "a.log", cpus="0") as a, \
            vllm_server(ZOO_DIR / "base", "zoo-base", log=logs / "b.log", cpus="1") as b, \
            vllm_router([a, b], log=logs / "router.log") as router:
        replicas = [a, b]
        routed = w2s.OpenAIBackend(router, "zoo-base", max_concurrency=len(prompts) * args.w)
        direct = w2s.OpenAIBackend(a, "zoo-base", max_concurrency=len(prompts) * args.w)
        w2s.sample(routed, None, prompts[:2], sp(0), n=2)  # warm-up, both paths
        w2s.sample(direct, None, prompts[:2], sp(0), n=2)

        # affinity: one prompt's whole search at a time
        split, first = 0, [0, 0]
        t0 = time.perf_counter()
        for p in prompts:
            before = [served(u) for u in replicas]
            w2s.cbs(routed, guide, [p], search, sp(0))
            grew = [served(u) - x for u, x in zip(replicas, before)]
            split += min(grew) > 0
            first[grew.index(max(grew))] += 1
        print(f"affinity: {split} of {len(prompts)} prompts had requests on both replicas; "
              f"prompts per replica {first[0]} / {first[1]} "
              f"({time.perf_counter() - t0:.0f} s, one prompt at a time)")

        out: dict[str, dict[int, list[w2s.Result]]] = {"one": {}, "router": {}}
        stats: dict[str, list[tuple[float, list[float], list[float]]]] = {"one": [], "router": []}
        for seed in args.seeds:
            for name, backend in (("one", direct), ("router", routed)):  # interleaved
                reqs0 = [served(u) for u in replicas]
                cache0 = [cache_counters(u) for u in replicas]
                t0 = time.perf_counter()
                out[name][seed] = w2s.cbs(backend, guide, prompts, search, sp(seed))
                t = time.perf_counter() - t0
                reqs = [served(u) - x for u, x in zip(replicas, reqs0)]
                hits = [(h1 - h0) / max(1.0, q1 - q0) for (q0, h0), (q1, h1)
                        in zip(cache0, (cache_counters(u) for u in replicas))]
                stats[name].append((t, reqs, hits))

        print(f"{'path':<20} {'wall s':>7} {'tokens/s':>9} {'requests a / b':>15} "
              f"{'hits a / b':>11}")
        for name, label in (("one", "one replica"), ("router", "router, 2 replicas")):
            t = sum(s[0] for s in stats[name])
            tokens = sum(sum(r.cost.base_tokens for r in out[name][s])
                         for s in args.seeds)
            reqs = [sum(s[1][i] for s in stats[name]) for i in range(2)]
            hits = [statistics.fmean(s[2][i] for s in stats[name]) for i in range(2)]
            print(f"{label:<20} {t:>7.1f} {tokens / t:>9.0f} {reqs[0]:>7.0f} / {reqs[1]:<5.0f} "
                  f"{hits[0]:>4.0%} / {hits[1]:<4.0%}")

        same = sum(x.text == y.text for s in args.seeds
                   for x, y in zip(out["one"][s], out["router"][s]))
        print(f"identical outputs: {same} of {len(prompts) * len(args.seeds)}")
        for gold_name, gold in (("VADER", vader), ("TextBlob", textblob)):
            per: dict[str, list[float]] = {}
            for name in out:  # per prompt, averaged over seeds: SEs over prompts
                scores = [gold([r.text for r in out[name][s]]) for s in args.seeds]
                per[name] = [statistics.fmean(col) for col in zip(*scores)]
            (m1, s1), (m2, s2) = mean_se(per["one"]), mean_se(per["router"])
            diff = mean_se([y - x for x, y in zip(per["one"], per["router"])])
            ratio = diff[0] / diff[1] if diff[1] else 0.0
            print(f"{gold_name:<9} one {m1:+.3f} ± {s1:.3f}   router {m2:+.3f} ± {s2:.3f}   "
                  f"router - one {diff[0]:+.3f} ± {diff[1]:.3f} ({ratio:+.2f} SE)")


if __name__ == "__main__":
    main()
