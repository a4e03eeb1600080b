"""A real pretrained base steered through an engine: SmolLM2-135M-Instruct (``w2s zoo get
smollm2``) served by vLLM (CPU build), guided by the zoo's cross-vocabulary pair (a 1 M GPT-2
shaped model DPO-tuned toward positive movie reviews, and its untuned start, with another
tokenizer). The sentiment task's held-out review openings; gold = VADER (never seen by any
method). Prints gold reward mean ± standard error for base sampling, Best-of-16, CBS(4,4,5) and
Nudging, with words per response, distinct bigrams and the base's own log-likelihood per token
of each output (from the engine), so degenerate text cannot pass for success, and the small
model's share of Nudging's tokens.

    python bench/smollm2_steering.py [--prompts 32] [--seeds 1] [--max-new 40]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from w2s.evaluate.config import parse_config
from w2s.evaluate.report import distinct_bigrams, summarize
from w2s.evaluate.run import run_eval
from w2s.quiet import quiet_libraries
from w2s.vllm_server import vllm_server
from w2s.zoo.pretrained import get_pretrained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--max-new", type=int, default=40)
    ap.add_argument("--out", default="runs/smollm2-steering")
    ap.add_argument("--port", type=int, default=18431,
                    help="the engine's port (fixed, so that a rerun resumes)")
    args = ap.parse_args()
    quiet_libraries()
    folder = get_pretrained("smollm2")
    with vllm_server(folder, "smollm2", max_model_len=512, kv_cache_bytes=1024 * 2**20,
                     port=args.port) as url:
        cfg = parse_config({
            "name": "smollm2-steering", "task": "sentiment",
            "base": {"url": url, "model": "smollm2"},
            "guide": {"tuned": "zoo:xtuned", "untuned": "zoo:xuntuned"},
            "prompts": args.prompts, "seeds": args.seeds,
            "sampling": {"max_new_tokens": args.max_new, "temperature": 0.7},
            "methods": [{"method": "sample", "label": "base sampling"},
                        {"method": "bon", "n": 16}, {"method": "cbs", "w": 4, "k": 4, "l": 5},
                        {"method": "nudging", "gamma": 0.3}]}, Path.cwd() / "smollm2.yaml")
        rows = run_eval(cfg, Path(args.out), show_progress=False)
    print(f"SmolLM2-135M-Instruct via vLLM, guided by the zoo's cross-vocabulary pair; "
          f"{args.prompts} prompts x {args.seeds} seeds, {args.max_new} new tokens")
    print(f"{'method':<18} {'gold (VADER)':>15} {'words':>6} {'distinct-2':>10} "
          f"{'base log-p/token':>16} {'small share':>11}")
    for s in summarize(rows):
        texts = [r["response"] for r in rows if r["method"] == s["method"]]
        words = statistics.fmean(len(t.split()) for t in texts)
        share = "" if s["small_fraction"] is None else f"{s['small_fraction']:.0%}"
        m, se = s["gold"]["vader"]
        print(f"{s['method']:<18} {m:+.3f} ± {se:.3f} {words:>6.1f} {distinct_bigrams(texts):>10.2f}"
              f" {s['base_logp_per_token']:>16.2f} {share:>11}")


if __name__ == "__main__":
    main()
