"""The memory plan against the memory a search really takes, for three sizes of W*K.

For each W*K, a fresh process loads the base, warms it up, then decodes every prompt in one
call of W*K rows each while a thread samples its resident memory every 2 ms; what the call
adds is the peak minus the resident memory just before it. The plan (:mod:`w2s.models.memory`)
is printed beside it: the KV cache of the rows plus the logits buffers. ``--method sample``
(the default) draws W*K samples per prompt with no guide: the base's memory alone, which is
what the plan covers; ``--method cbs`` runs CBS (W*K/4 x 4, L 8) with the pair, whose
in-process models keep KV caches of their own for incremental scoring (on the guide's
device; not in the base's plan). On a GPU the script reads ``torch.cuda.max_memory_allocated``
instead.

    python bench/memory_plan.py [--prompts 8] [--tokens 128] [--wk 4 16 64] [--base zoo:base]
        [--pair TUNED UNTUNED] [--method sample|cbs]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

PROMPTS = ["The movie was", "I watched this film", "The acting in this one", "This story",
           "What a", "The director", "Its ending", "The cast"]


def child(base: str, pair: list[str], wk: int, prompts: int, tokens: int, method: str) -> dict:
    import torch

    import w2s
    from w2s.request import Loader

    torch.set_num_threads(2)
    model = Loader(batch_size=1 << 16).base(w2s.request.BaseRef(base))  # one call, all rows
    guide = Loader().guide(w2s.request.GuideRef((pair[0],), (pair[1],)))
    k = 4 if wk >= 4 else wk
    knobs = w2s.SearchParams(w=wk // k, k=k, l=8)
    ps = (PROMPTS * prompts)[:prompts]
    sp = w2s.SamplingParams(max_new_tokens=tokens, seed=0, ignore_eos=True)
    length = max(len(model.encode_prompt(p)) for p in ps) + tokens
    plan = model.plan_memory(wk * prompts, length)
    w2s.sample(model, None, ps[:1], sp)  # warm up: allocator pools, kernels
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = rss()
    peak = [before]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    t = None if cuda else threading.Thread(target=watch, daemon=True)
    if t:
        t.start()
    if method == "cbs":
        w2s.cbs(model, guide, ps, knobs, sp)
    else:
        w2s.sample(model, None, ps, sp, n=wk)
    done.set()
    if t:
        t.join()
    used = (torch.cuda.max_memory_allocated() - before) if cuda else peak[0] - before
    return {"wk": wk, "rows": plan.rows, "length": plan.length, "plan_kv": plan.kv_cache,
            "plan_logits": plan.logits, "plan_search": plan.search, "weights": plan.weights,
            "measured": used, "device": plan.device}


def rss() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--wk", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--base", default="zoo:base")
    ap.add_argument("--pair", nargs=2, default=["zoo:tuned", "zoo:untuned"],
                    metavar=("TUNED", "UNTUNED"))
    ap.add_argument("--method", choices=["sample", "cbs"], default="sample")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(child(a.base, a.pair, a.child, a.prompts, a.tokens, a.method)))
        return
    mib = 2**20
    print(f"base {a.base}, {a.method}, {a.prompts} prompts x {a.tokens} new tokens in one call; "
          "MiB; measured = peak resident memory during the call - before it")
    print(f"{'W*K':>5} {'rows':>5} {'tokens':>6} {'plan KV':>9} {'plan logits':>11} "
          f"{'plan search':>11} {'measured':>9} {'measured/plan':>13}")
    for wk in a.wk:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(wk),
                              "--prompts", str(a.prompts), "--tokens", str(a.tokens),
                              "--base", a.base, "--pair", *a.pair, "--method", a.method],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{wk:>5} {r['rows']:>5} {r['length']:>6} {r['plan_kv'] / mib:>9.1f} "
              f"{r['plan_logits'] / mib:>11.1f} {r['plan_search'] / mib:>11.1f} "
              f"{r['measured'] / mib:>9.1f} {r['measured'] / r['plan_search']:>13.2f}")
    print(f"weights {r.get('weights', 0) / mib:.1f} MiB on {r.get('device')}")


if __name__ == "__main__":
    main()
