"""Benchmark 1: weak-to-strong search vs plain batched sampling of the same number of tokens.

Prints, measured side by side in one run on the shipped zoo (or --base/--tuned/--untuned):
  t(CBS(W,K,L))  /  t(sampling W*K sequences of the same length from the same base)
and where CBS's time goes (base model vs guide). EOS is ignored so every run samples exactly
max_new_tokens per sequence.

    python bench/cbs_vs_sampling.py [--prompts 8] [--max-new 64] [--repeats 3]
    python bench/cbs_vs_sampling.py --shape wide   # random models, base ~14x each guide model

The zoo's pair is large next to its base (2 x 1.4 M beside 6.2 M: each guide model is 23% of
the base), so the guide's share of CBS is far larger than with real models (a 124 M pair beside
a 7 B base: 2%). ``--shape wide`` measures the same ratio with random-initialised models whose
proportions are closer to real use (weights need not be trained to measure time).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import w2s
from w2s.guides import Guide
from w2s.quiet import quiet_libraries
from w2s.tasks.sentiment import load_prompts
from w2s.zoo import ZOO_DIR


class TimedGuide(Guide):
    """Wraps a guide (and its incremental scoring sessions) and adds up the time spent scoring."""

    def __init__(self, inner: Guide) -> None:
        self.inner, self.seconds = inner, 0.0

    def session(self, prompts):  # noqa: ANN001, ANN201
        inner, timer = self.inner.session(prompts), self

        class Timed:
            guide = timer

            def __getattr__(self, name):  # noqa: ANN001, ANN204 - the session's other parts
                return getattr(inner, name)

            def reindex(self, rows):  # noqa: ANN001, ANN202
                t0 = time.perf_counter()
                inner.reindex(rows)
                timer.seconds += time.perf_counter() - t0

            def score(self, *args):  # noqa: ANN002, ANN202
                t0 = time.perf_counter()
                out = inner.score(*args)
                timer.seconds += time.perf_counter() - t0
                return out

        return Timed()

    def score_with_cost(self, prompts, responses, ended=None):  # noqa: ANN001, ANN201
        t0 = time.perf_counter()
        out = self.inner.score_with_cost(prompts, responses, ended)
        self.seconds += time.perf_counter() - t0
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=str(ZOO_DIR / "base"))
    ap.add_argument("--tuned", default=str(ZOO_DIR / "tuned"))
    ap.add_argument("--untuned", default=str(ZOO_DIR / "untuned"))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--w", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--l", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--shape", choices=["zoo", "wide"], default="zoo",
                    help="zoo: the shipped models; wide: random models, a 8x512 base and "
                    "2x128 guide models")
    args = ap.parse_args()
    quiet_libraries()
    if args.shape == "wide":
        import tempfile
        from pathlib import Path

        from naive_vs_fast import WIDE_SHAPES, build_models

        tmp = tempfile.TemporaryDirectory()
        paths = build_models(Path(tmp.name), 512, WIDE_SHAPES)
        args.base, args.tuned, args.untuned = paths["base"], paths["tuned"], paths["untuned"]

    kw = {"device": args.device, "dtype": args.dtype, "batch_size": 4096}
    base = w2s.HFModel.load(args.base, **kw)
    guide = TimedGuide(w2s.PairGuide(w2s.HFModel.load(args.tuned, **kw),
                                     w2s.HFModel.load(args.untuned, **kw)))
    prompts = load_prompts(limit=args.prompts)
    sp = w2s.SamplingParams(max_new_tokens=args.max_new, temperature=0.7, ignore_eos=True, seed=0)
    n = args.w * args.k

    def timed(fn):  # noqa: ANN001, ANN202
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    timed(lambda: w2s.sample(base, None, prompts[:2], sp, n=2))  # warm-up
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"prompts={len(prompts)} max_new_tokens={args.max_new} W={args.w} K={args.k} "
          f"base={base.model.num_parameters() / 1e6:.1f}M "
          f"guide=2x{guide.inner.tuned.model.num_parameters() / 1e6:.1f}M")
    print(f"{'L':>4} {'sampling s':>11} {'cbs s':>9} {'ratio':>7} {'guide share':>12}")
    for chunk in args.l:
        search = w2s.SearchParams(args.w, args.k, chunk)
        t_s, t_c, g_share = [], [], []
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            t_s.append(timed(lambda: w2s.sample(base, None, prompts, sp, n=n)))
            guide.seconds = 0.0
            t = timed(lambda: w2s.cbs(base, guide, prompts, search, sp))  # noqa: B023
            t_c.append(t)
            g_share.append(guide.seconds / t)
        ms, mc = statistics.median(t_s), statistics.median(t_c)
        print(f"{chunk:>4} {ms:>11.3f} {mc:>9.3f} {mc / ms:>6.2f}x {statistics.median(g_share):>11.0%}")


if __name__ == "__main__":
    main()
