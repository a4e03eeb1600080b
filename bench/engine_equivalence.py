"""The black-box path against the in-process one: the sentiment sweep's sample, Best-of-16 and
CBS(4,4,5) with the zoo base served by vLLM (CPU build) over HTTP, next to the same methods with
the same base loaded in this process (same prompts, seeds, guide). Sampling through the engine
uses the engine's own random numbers, so the two runs agree in distribution, not token for
token: the gold reward of each method should lie within 2 standard errors.

    python bench/engine_equivalence.py [--prompts 64] [--seeds 3] [--out runs/engine-equivalence]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from w2s.evaluate.config import parse_config
from w2s.evaluate.report import summarize
from w2s.evaluate.run import run_eval
from w2s.quiet import quiet_libraries
from w2s.vllm_server import vllm_server
from w2s.zoo import ZOO_DIR

METHODS = [{"method": "sample", "label": "base sampling"}, {"method": "bon", "n": 16},
           {"method": "cbs", "w": 4, "k": 4, "l": 5}]


def config(base: object, prompts: int, seeds: int) -> dict:
    return {"name": "equivalence", "task": "sentiment", "base": base,
            "guide": {"tuned": "zoo:tuned", "untuned": "zoo:untuned"}, "prompts": prompts,
            "seeds": seeds, "sampling": {"max_new_tokens": 50, "temperature": 0.7},
            "batch_size": 256, "methods": METHODS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="runs/engine-equivalence")
    args = ap.parse_args()
    quiet_libraries()
    out, here = Path(args.out), Path.cwd() / "equivalence.yaml"
    local = run_eval(parse_config(config("zoo:base", args.prompts, args.seeds), here),
                     out / "in-process", show_progress=False)
    with vllm_server(ZOO_DIR / "base", "zoo-base", kv_cache_bytes=1024 * 2**20) as url:
        engine = run_eval(parse_config(config({"url": url, "model": "zoo-base"}, args.prompts,
                                              args.seeds), here),
                          out / "engine", show_progress=False)
    a, b = summarize(local), summarize(engine)
    print(f"{args.prompts} prompts x {args.seeds} seeds, 50 new tokens; gold = VADER, mean ± "
          "standard error over prompts")
    print(f"{'method':<16} {'in-process':>16} {'through vLLM':>16} {'diff / SE':>10} "
          f"{'log-p/token':>18}")
    for x, y in zip(a, b):
        (ma, sa), (mb, sb) = x["gold"]["vader"], y["gold"]["vader"]
        z = (mb - ma) / math.hypot(sa, sb)
        print(f"{x['method']:<16} {ma:+.3f} ± {sa:.3f}   {mb:+.3f} ± {sb:.3f} {z:>+9.2f}  "
              f"{x['base_logp_per_token']:>8.2f} {y['base_logp_per_token']:>8.2f}")


if __name__ == "__main__":
    main()
