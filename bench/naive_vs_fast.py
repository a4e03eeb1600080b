"""Benchmark 2: w2s's CBS vs a faithful re-implementation of the naive cost structure.

The naive structure (as in the published implementation): every chunk re-encodes the prompt
and the whole response with the base model, the guide re-scores every candidate's whole
response with both small models (fp32), and prompts are served one at a time. Both paths use
the same sampling primitives and random streams, so the benchmark also checks that they return
*identical* responses: the speed is not bought with a different algorithm.

The zoo's context (256) is too short for 1024 new tokens, so by default this builds random-
initialised models of the zoo's shapes with a 2048-token context (timing does not need trained
weights). Prints seconds per length, the ratio, and the fitted growth exponent t ~ n^a.

    python bench/naive_vs_fast.py [--lengths 128 512 1024] [--prompts 2] [--shape zoo|wide]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

import w2s
from w2s.quiet import quiet_libraries
from w2s.rng import prompt_key, stream_keys


def naive_cbs(base: w2s.HFModel, guide: w2s.PairGuide, prompt: str, search: w2s.SearchParams,
              sp: w2s.SamplingParams) -> list[int]:
    """CBS for one prompt, re-encoding everything every chunk (the naive cost structure)."""
    w, k, max_new = search.w, search.k, sp.max_new_tokens
    p_ids = base.encode_prompt(prompt)
    key = prompt_key(sp.seed, prompt)
    beam: list[tuple[list[int], bool, float]] = [([], False, 0.0)]  # (ids, done, score)
    first = True
    while not all(d for _, d, _ in beam):
        rows = [(beam[0][0], j) for j in range(w * k)] if first else [
            (ids, r * k + j) for r, (ids, d, _) in enumerate(beam) if not d for j in range(k)]
        chunk = min(search.l, max_new - len(rows[0][0]))
        streams = stream_keys(torch.full((len(rows),), key), torch.tensor([s for _, s in rows]))
        # re-encodes prompt + response for every row (HFModel.sample is the stateless path)
        conts = base.sample([p_ids] * len(rows), [ids for ids, _ in rows], streams, chunk, sp)
        kids = [(ids + c.token_ids, c.ended or len(ids) + len(c.token_ids) >= max_new)
                for (ids, _), c in zip(rows, conts)]
        texts = [base.response_text(ids, sp.stop) for ids, _ in kids]
        ended = [c.ended for c in conts]
        scores = guide.score([prompt] * len(kids), texts, ended).tolist()  # full re-scoring
        pool = [(ids, d, s) for (ids, d), s in zip(kids, scores)] + [b for b in beam if b[1]
                                                                    and not first]
        beam = sorted(pool, key=lambda x: -x[2])[:w]
        first = False
    return beam[0][0]


ZOO_SHAPES = {"base": (256, 6, 0), "tuned": (128, 4, 1), "untuned": (128, 4, 2)}
WIDE_SHAPES = {"base": (512, 8, 0), "tuned": (128, 2, 1), "untuned": (128, 2, 2)}


def build_models(root: Path, ctx: int, shapes: dict[str, tuple[int, int, int]] = ZOO_SHAPES
                 ) -> dict[str, str]:
    """Random-initialised Llama models with the zoo's tokenizer: role -> (hidden, layers, seed)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from w2s.zoo import ZOO_DIR

    tok = AutoTokenizer.from_pretrained(ZOO_DIR / "base")
    out = {}
    for role, (hidden, layers, seed) in shapes.items():
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3,
                          num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=4,
                          max_position_embeddings=ctx, tie_word_embeddings=True,
                          eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
        LlamaForCausalLM(cfg).save_pretrained(root / role)
        tok.save_pretrained(root / role)
        out[role] = str(root / role)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024])
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--w", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--l", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default=None, help="folder with base/ tuned/ untuned/")
    ap.add_argument("--shape", choices=["zoo", "wide"], default="zoo",
                    help="random models of the zoo's shapes, or wide: a 8x512 base and 2x128 "
                    "guide models (proportions closer to real use)")
    args = ap.parse_args()
    quiet_libraries()

    tmp = tempfile.TemporaryDirectory()
    paths = ({r: str(Path(args.models) / r) for r in ("base", "tuned", "untuned")} if args.models
             else build_models(Path(tmp.name), max(args.lengths) + 64,
                               WIDE_SHAPES if args.shape == "wide" else ZOO_SHAPES))
    kw = {"device": args.device, "batch_size": 4096}
    base = w2s.HFModel.load(paths["base"], **kw)
    guide = w2s.PairGuide(w2s.HFModel.load(paths["tuned"], dtype="float32", **kw),
                          w2s.HFModel.load(paths["untuned"], dtype="float32", **kw))
    prompts = ["the movie was", "i thought the film", "this picture is", "the acting in it"]
    prompts = prompts[: args.prompts]
    search = w2s.SearchParams(args.w, args.k, args.l)
    print(f"device={args.device} threads={torch.get_num_threads()} prompts={len(prompts)} "
          f"CBS(W={args.w}, K={args.k}, L={args.l}) base={base.model.num_parameters() / 1e6:.1f}M "
          f"guide=2x{guide.tuned.model.num_parameters() / 1e6:.1f}M")
    print(f"{'new tokens':>10} {'naive s':>9} {'w2s s':>8} {'speed-up':>9} {'same output':>12}")
    t_fast, t_naive = [], []
    for n in args.lengths:
        sp = w2s.SamplingParams(max_new_tokens=n, temperature=0.7, ignore_eos=True, seed=0)
        t0 = time.perf_counter()
        fast = w2s.cbs(base, guide, prompts, search, sp)
        tf = time.perf_counter() - t0
        t0 = time.perf_counter()
        naive = [naive_cbs(base, guide, p, search, sp) for p in prompts]
        tn = time.perf_counter() - t0
        same = all(f.token_ids == s for f, s in zip(fast, naive))
        t_fast.append(tf)
        t_naive.append(tn)
        print(f"{n:>10} {tn:>9.2f} {tf:>8.2f} {tn / tf:>8.1f}x {str(same):>12}")
    if len(args.lengths) > 1:
        xs = [math.log(n) for n in args.lengths]

        def slope(ts: list[float]) -> float:
            ys = [math.log(t) for t in ts]
            mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
            return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)

        print(f"growth exponent (t ~ n^a): naive a={slope(t_naive):.2f}, w2s a={slope(t_fast):.2f}")


if __name__ == "__main__":
    main()
