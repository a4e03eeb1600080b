"""Benchmark: the guide in process against the guide served by vLLM (``REF@URL`` models).

Starts two vLLM servers (the CPU build from ``make engine``) serving the zoo's tuned and
untuned models, samples candidates from the zoo base in process, and prints, side by side in
one run:
- the pair's scores of the same candidates from both guides (largest absolute difference);
- the wall time of scoring them (whole responses, one batch);
- CBS end to end with each guide (the base in process), its outputs and their agreement.
An engine-served guide re-scores whole responses each round (one batched request per model;
vLLM's prompt log-probability requests may skip its prefix cache, vllm#13409: the guide
engines' hit rates are printed, and a second scoring of the same candidates shows whether a
cached prefix is used at all), where the
in-process pair extends KV caches: on 2 cores with the engines competing for them, this is
about correctness and the price of the HTTP path, not speed.

    python bench/engine_guides.py [--prompts 16] [--n 16] [--max-new 32]
"""

from __future__ import annotations

import argparse
import time

from engine_cbs_vs_sampling import cache_counters

import w2s
from w2s.quiet import quiet_libraries
from w2s.tasks.sentiment import load_prompts
from w2s.vllm_server import vllm_server
from w2s.zoo import ZOO_DIR


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new", type=int, default=32)
    args = ap.parse_args()
    quiet_libraries()
    base = w2s.HFModel.load("zoo:base")
    local = w2s.PairGuide.load("zoo:tuned", "zoo:untuned")
    prompts = load_prompts(limit=args.prompts)
    sp = w2s.SamplingParams(max_new_tokens=args.max_new, temperature=0.7, seed=0)
    results = w2s.sample(base, None, prompts, sp, n=args.n)
    cands = [(r.prompt, c.text, c.finished) for r in results for c in r.candidates]
    ps, texts, ended = zip(*cands)
    with vllm_server(ZOO_DIR / "tuned", "zoo-tuned") as t_url, \
            vllm_server(ZOO_DIR / "untuned", "zoo-untuned") as u_url:
        served = w2s.PairGuide.load(f"zoo:tuned@{t_url}", f"zoo:untuned@{u_url}")
        served.score(list(ps[:2]), list(texts[:2]), list(ended[:2]))  # warm-up
        t0 = time.perf_counter()
        a = local.score(list(ps), list(texts), list(ended))
        t_local = time.perf_counter() - t0
        def hits(before: tuple[float, float]) -> str:
            q, h = cache_counters(t_url, u_url)
            return f"{(h - before[1]) / max(1.0, q - before[0]):.0%}"

        c0 = cache_counters(t_url, u_url)
        t0 = time.perf_counter()
        b = served.score(list(ps), list(texts), list(ended))
        t_served = time.perf_counter() - t0
        first_hits = hits(c0)
        c0 = cache_counters(t_url, u_url)
        t0 = time.perf_counter()
        served.score(list(ps), list(texts), list(ended))
        t_again, again_hits = time.perf_counter() - t0, hits(c0)
        diff = float((a - b).abs().max())
        print(f"{len(cands)} candidates ({len(prompts)} prompts x {args.n}, up to "
              f"{args.max_new} tokens): max |score in process - score behind vLLM| = "
              f"{diff:.2e} (scores span {float(a.min()):.2f}..{float(a.max()):.2f})")
        print(f"scoring them once: in process {t_local:.2f} s, behind vLLM {t_served:.2f} s "
              f"({t_served / t_local:.1f}x; prefix-cache hits {first_hits}); the same again "
              f"behind vLLM {t_again:.2f} s (hits {again_hits})")
        search = w2s.SearchParams(4, 4, 5)
        t0 = time.perf_counter()
        ra = w2s.cbs(base, local, prompts, search, sp)
        t_a = time.perf_counter() - t0
        c0 = cache_counters(t_url, u_url)
        t0 = time.perf_counter()
        rb = w2s.cbs(base, served, prompts, search, sp)
        t_b = time.perf_counter() - t0
        cbs_hits = hits(c0)
        same = sum(x.text == y.text for x, y in zip(ra, rb))
        print(f"CBS(4,4,5), base in process: guide in process {t_a:.2f} s, guide behind vLLM "
              f"{t_b:.2f} s ({t_b / t_a:.1f}x; the guide engines' prefix-cache hits "
              f"{cbs_hits}); the same output for {same}/{len(prompts)} prompts")


if __name__ == "__main__":
    main()
