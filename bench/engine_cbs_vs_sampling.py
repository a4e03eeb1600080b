"""Benchmark 4: black-box weak-to-strong search through a real engine vs plain sampling of the
same number of tokens through the same engine.

Starts vLLM (the CPU build from ``make engine``) serving the zoo's base, and prints, measured
side by side in one run:
  t(CBS(W,K,L) over HTTP)  /  t(sampling W*K sequences per prompt over HTTP)
for each KV-cache block size (prefix caching on; up to prompts x W requests in flight, a
round's worth), with the engine's prefix-cache hit rate
during each method (from its /metrics counters), and CBS's wall time at several
``max_concurrency`` values. EOS is ignored so every run samples exactly max_new_tokens. The
guide (the zoo's pair) runs in this process; its share of CBS's time is printed too.

    python bench/engine_cbs_vs_sampling.py [--prompts 16] [--max-new 50] [--blocks 32 128]
"""

from __future__ import annotations

import argparse
import re
import statistics
import time

import httpx
from cbs_vs_sampling import TimedGuide

import w2s
from w2s.quiet import quiet_libraries
from w2s.tasks.sentiment import load_prompts
from w2s.vllm_server import vllm_server
from w2s.zoo import ZOO_DIR


def cache_counters(url: str) -> tuple[float, float]:
    """(prefix-cache queries, hits) so far, in tokens, from vLLM's Prometheus metrics."""
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^vllm:{name}_total{{[^}}]*}} (\S+)$", text,
                                                 re.M))

    return total("prefix_cache_queries"), total("prefix_cache_hits")


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
    args = ap.parse_args()
    quiet_libraries()
    guide = TimedGuide(w2s.PairGuide.load(str(ZOO_DIR / "tuned"), str(ZOO_DIR / "untuned")))
    prompts = load_prompts(limit=args.prompts)
    sp = w2s.SamplingParams(max_new_tokens=args.max_new, temperature=0.7, ignore_eos=True, seed=0)
    n, search = args.w * args.k, w2s.SearchParams(args.w, args.k, args.l)
    print(f"vLLM (CPU build) serving the zoo base; {len(prompts)} prompts in flight, "
          f"{args.max_new} new tokens, CBS({args.w},{args.k},{args.l}) vs sampling {n} per "
          f"prompt; medians of {args.repeats}")
    print(f"{'block':>5} {'sampling s':>11} {'cbs s':>8} {'ratio':>6} {'guide share':>12} "
          f"{'hits sampling':>14} {'hits cbs':>9}")
    for block in args.blocks:
        with vllm_server(ZOO_DIR / "base", "zoo-base", block_size=block,
                         kv_cache_bytes=1024 * 2**20) as url:
            base = w2s.OpenAIBackend(url, "zoo-base", max_concurrency=len(prompts) * args.w)
            w2s.sample(base, None, prompts[:2], sp, n=2)  # warm-up

            def run(fn):  # noqa: ANN001, ANN202
                q0, h0 = cache_counters(url)  # noqa: B023
                t0 = time.perf_counter()
                fn()
                t = time.perf_counter() - t0
                q1, h1 = cache_counters(url)  # noqa: B023
                return t, (h1 - h0) / max(1.0, q1 - q0)

            t_s, t_c, share, hit_s, hit_c = [], [], [], [], []
            for _ in range(args.repeats):  # interleaved, so drift hits both alike
                t, h = run(lambda: w2s.sample(base, None, prompts, sp, n=n))  # noqa: B023
                t_s.append(t)
                hit_s.append(h)
                guide.seconds = 0.0
                t, h = run(lambda: w2s.cbs(base, guide, prompts, search, sp))  # noqa: B023
                t_c.append(t)
                hit_c.append(h)
                share.append(guide.seconds / t)
            ms, mc = statistics.median(t_s), statistics.median(t_c)
            print(f"{block:>5} {ms:>11.2f} {mc:>8.2f} {mc / ms:>5.2f}x {statistics.median(share):>11.0%}"
                  f" {statistics.median(hit_s):>13.0%} {statistics.median(hit_c):>8.0%}")
            if block == args.blocks[0]:
                rows = []
                for c in args.concurrency:
                    b = w2s.OpenAIBackend(url, "zoo-base", max_concurrency=c)
                    t0 = time.perf_counter()
                    w2s.cbs(b, guide, prompts, search, sp)
                    rows.append(f"{c}: {time.perf_counter() - t0:.2f} s")
                concurrency = "; ".join(rows)
    print(f"CBS wall time by --max-concurrency (block {args.blocks[0]}): {concurrency}")


if __name__ == "__main__":
    main()
