"""Measurement: how well the guide's score of a *partial* response predicts the gold score of
the finished one -- what early pruning, TreeBoN, particle filtering and MCTS rely on.

For each held-out zoo prompt, N base samples are drawn (temperature 0.7); each is scored by the
guide on its first t tokens (t in --prefixes) and whole, and by the gold scorers (VADER, the
guide's target; TextBlob, a second scorer) whole. Prints, per prefix length, the share of
same-prompt pairs (gold apart by >= 0.1) that the prefix score orders as the final gold does
(what a selection among one prompt's candidates needs), and Spearman's rho over all samples.

    python bench/prefix_agreement.py [--prompts 64] [--n 8] [--tokens 32]

On the SmolLM2 family (`w2s zoo get smollm2 && w2s zoo family` first):

    python bench/prefix_agreement.py --base ~/.cache/w2s/smollm2 \
        --guide ~/.cache/w2s/smollm2-family --prompt-file src/w2s/zoo/models/prompts-cased.jsonl
"""

from __future__ import annotations

import argparse

import w2s
import w2s.zoo
from w2s.quiet import quiet_libraries
from w2s.zoo.family import ranking_agreement


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--prefixes", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--base", default=None, help="base model folder (default: the zoo's)")
    ap.add_argument("--guide", default=None,
                    help="folder holding tuned/ and untuned/ (default: the zoo)")
    ap.add_argument("--prompt-file", default=None, help="task prompts (default: the zoo's)")
    a = ap.parse_args()
    quiet_libraries()
    from pathlib import Path

    z = w2s.zoo.ZOO_DIR
    g = Path(a.guide).expanduser() if a.guide else z
    base = w2s.HFModel.load(str(Path(a.base).expanduser() if a.base else z / "base"))
    guide = w2s.PairGuide.load(str(g / "tuned"), str(g / "untuned"))
    from w2s.tasks import build_task

    spec = {"name": "sentiment", **({"path": str(Path(a.prompt_file).resolve())}
                                    if a.prompt_file else {})}
    task = build_task(spec, z)
    prompts = task.prompts[: a.prompts]
    sp = w2s.SamplingParams(max_new_tokens=a.tokens, temperature=0.7, seed=0)
    results = w2s.sample(base, None, prompts, sp, n=a.n)
    cands = [(r.prompt, c) for r in results for c in r.candidates]
    groups = [p for p, _ in cands]
    golds = {name: fn([p for p, _ in cands], [c.text for _, c in cands])
             for name, fn in task.golds.items()}
    print(f"{'zoo' if not a.base else a.base}, {len(prompts)} held-out prompts x {a.n} samples of up to {a.tokens} tokens")
    print(f"{'guide scores':22s} " + "  ".join(f"{g + ' pairs':>14s} {g + ' rho':>12s}"
                                               for g in golds))
    for t in [*a.prefixes, None]:
        texts = [base.response_text(c.token_ids[:t], ()) if t else c.text for _, c in cands]
        ended = [c.finished and (t is None or len(c.token_ids) <= t) for _, c in cands]
        scores = guide.score([p for p, _ in cands], texts, ended).tolist()
        cols = []
        for vals in golds.values():
            agree = ranking_agreement(scores, vals, groups)
            cols.append(f"{agree['pairwise accuracy']:14.3f} {agree['spearman']:12.3f}")
        label = f"first {t} tokens" if t else "whole response"
        print(f"{label:22s} " + "  ".join(cols))


if __name__ == "__main__":
    main()
