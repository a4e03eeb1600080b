"""Benchmark 4: black-box weak-to-strong search through a real engine vs plain sampling of the
same number of tokens through the same engine.

Starts vLLM (the CPU build from ``make engine``) serving the zoo's base, and prints, measured
side by side in one run, for each KV-cache block size (prefix caching on) and each way of
sending kept prefixes (``text``: re-tokenized by the engine each round, as before;
``ids``: the engine's prompt ids + the sampled ids, exact):
  t(CBS(W,K,L)) / t(Best-of-W*K), t(CBS) / t(sampling W*K per prompt), the same ratio for the
  engine side alone (CBS minus the guide's time), the guide's share of CBS, and the engine's
  prefix-cache hit rate during each method (from its /metrics counters);
then CBS's wall time at several ``max_concurrency`` values. EOS is ignored so every run samples
exactly max_new_tokens; up to prompts x W requests are in flight (a round's worth). The guide
(the zoo's pair) runs in this process.

    python bench/engine_cbs_vs_sampling.py [--prompts 16] [--max-new 50] [--blocks 32 128]
        [--modes text ids]

On engines already running (a GPU machine: ``bench/gpu_engines.sh`` starts them), name them:

    python bench/engine_cbs_vs_sampling.py --url http://127.0.0.1:9000/v1 --model base \
        --metrics http://127.0.0.1:8000 http://127.0.0.1:8001 \
        --tuned tuned@http://127.0.0.1:8002/v1 --untuned untuned@http://127.0.0.1:8003/v1
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

from cbs_vs_sampling import TimedGuide

import w2s
from w2s.quiet import quiet_libraries
from w2s.tasks.sentiment import load_prompts
from w2s.vllm_server import metric_totals, vllm_server
from w2s.zoo import ZOO_DIR


def cache_counters(*urls: str) -> tuple[float, float]:
    """(prefix-cache queries, hits) so far, in tokens, summed over vLLM servers' Prometheus
    metrics (a router's replicas: each server's own)."""
    counts = [metric_totals(u, "prefix_cache_queries", "prefix_cache_hits") for u in urls]
    return sum(q for q, _ in counts), sum(h for _, h in counts)


def pin(cpus: list[int]) -> None:
    """This process (not the engine it started) on ``cpus``, with one torch thread each."""
    import os

    import torch

    os.sched_setaffinity(0, cpus)
    torch.set_num_threads(len(cpus))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-new", type=int, default=50)
    ap.add_argument("--w", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--l", type=int, default=5)
    ap.add_argument("--blocks", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", nargs="+", choices=["text", "ids"], default=["text", "ids"])
    ap.add_argument("--overlaps", type=int, nargs="+", default=[2],
                    help="prompt groups a search runs at once (OpenAIBackend overlap)")
    ap.add_argument("--guide-cpus", type=int, nargs="+", default=None, metavar="CPU",
                    help="run this process (the guide, the HTTP client) on these CPUs with as "
                    "many torch threads, once the engine is up: on a CPU engine, the cores "
                    "its worker is not bound to (vLLM binds it, VLLM_CPU_OMP_THREADS_BIND, and "
                    "busy-waits 1 s after each step)")
    ap.add_argument("--url", help="a running engine (or router) instead of starting vLLM here")
    ap.add_argument("--model", default="zoo-base", help="with --url: the served base's name")
    ap.add_argument("--metrics", nargs="+", default=None,
                    help="with --url: the vLLM servers whose /metrics count cache hits "
                    "(default: --url itself)")
    ap.add_argument("--tuned", default="zoo:tuned", help="guide model (REF or REF@URL)")
    ap.add_argument("--untuned", default="zoo:untuned", help="guide model (REF or REF@URL)")
    args = ap.parse_args()
    quiet_libraries()
    guide = TimedGuide(w2s.PairGuide.load(args.tuned, args.untuned))
    prompts = load_prompts(limit=args.prompts)
    sp = w2s.SamplingParams(max_new_tokens=args.max_new, temperature=0.7, ignore_eos=True, seed=0)
    n, search = args.w * args.k, w2s.SearchParams(args.w, args.k, args.l)
    where = args.url or "vLLM (CPU build) serving the zoo base"
    if args.guide_cpus:
        where += f"; guide and client on CPUs {args.guide_cpus}"
    print(f"{where}; {len(prompts)} prompts in flight, "
          f"{args.max_new} new tokens, CBS({args.w},{args.k},{args.l}) vs sampling {n} per "
          f"prompt; medians of {args.repeats}")
    print(f"{'block':>5} {'prefixes':>8} {'overlap':>7} {'sample s':>9} {'BoN s':>7} {'CBS s':>7} "
          f"{'CBS/BoN':>8} {'CBS/sample':>10} {'engine-side':>11} {'guide':>6} "
          f"{'hits sample':>11} {'hits BoN':>8} {'hits CBS':>8}")
    for block in args.blocks if not args.url else [0]:
        server = (vllm_server(ZOO_DIR / "base", "zoo-base", block_size=block,
                              kv_cache_bytes=1024 * 2**20) if not args.url
                  else contextlib.nullcontext(args.url))
        with server as url:
            if args.guide_cpus:
                pin(args.guide_cpus)
            counted = args.metrics or [url]
            for mode, overlap in [(m, o) for m in args.modes for o in args.overlaps]:
                base = w2s.OpenAIBackend(url, args.model,
                                         max_concurrency=len(prompts) * args.w,
                                         token_prompts=mode == "ids", overlap=overlap)
                w2s.sample(base, None, prompts[:2], sp, n=2)  # warm-up

                def run(fn):  # noqa: ANN001, ANN202
                    q0, h0 = cache_counters(*counted)  # noqa: B023
                    guide.seconds = 0.0
                    t0 = time.perf_counter()
                    fn()
                    t = time.perf_counter() - t0
                    q1, h1 = cache_counters(*counted)  # noqa: B023
                    return t, (h1 - h0) / max(1.0, q1 - q0), guide.seconds

                rows: dict[str, list[tuple[float, float, float]]] = {"s": [], "b": [], "c": []}
                for _ in range(args.repeats):  # interleaved, so drift hits all alike
                    rows["s"].append(run(lambda: w2s.sample(base, None, prompts, sp, n=n)))  # noqa: B023
                    rows["b"].append(run(lambda: w2s.bon(  # noqa: B023
                        base, guide, prompts, w2s.BestOfNParams(n), sp)))  # noqa: B023
                    rows["c"].append(run(lambda: w2s.cbs(base, guide, prompts, search, sp)))  # noqa: B023

                def med(key: str, col: int) -> float:
                    return statistics.median(r[col] for r in rows[key])  # noqa: B023

                ms, mb, mc = med("s", 0), med("b", 0), med("c", 0)
                engine_side = statistics.median(t - g for t, _, g in rows["c"])
                print(f"{block or '-':>5} {mode:>8} {overlap:>7} {ms:>9.2f} {mb:>7.2f} {mc:>7.2f} {mc / mb:>7.2f}x "
                      f"{mc / ms:>9.2f}x {engine_side / ms:>10.2f}x "
                      f"{med('c', 2) / mc:>6.0%} {med('s', 1):>11.0%} {med('b', 1):>8.0%} "
                      f"{med('c', 1):>8.0%}")
            if block in (0, args.blocks[0]):
                cells = []
                for c in args.concurrency:
                    b = w2s.OpenAIBackend(url, args.model, max_concurrency=c)
                    t0 = time.perf_counter()
                    w2s.cbs(b, guide, prompts, search, sp)
                    cells.append(f"{c}: {time.perf_counter() - t0:.2f} s")
                concurrency = "; ".join(cells)
    print(f"CBS wall time by --max-concurrency ({'block ' + str(args.blocks[0]) if not args.url else args.url}): {concurrency}")


if __name__ == "__main__":
    main()
