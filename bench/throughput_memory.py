"""Benchmark 3: CBS throughput (prompts/s) vs batch size, and peak memory vs W*K.

Throughput: the same prompts through ``w2s.cbs`` with the base's ``batch_size`` (candidate
rows per forward pass) capping how many prompts share one batch. Memory: each W*K runs in a
fresh subprocess and reports its peak resident memory (CPU) or peak allocated GPU memory,
minus the same process's peak after loading the models.

    python bench/throughput_memory.py [--prompts 32] [--max-new 50]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import threading
import time

import torch

import w2s
from w2s.quiet import quiet_libraries
from w2s.tasks.sentiment import load_prompts
from w2s.zoo import ZOO_DIR


def load(device: str, batch_size: int):  # noqa: ANN201
    kw = {"device": device, "batch_size": batch_size}
    base = w2s.HFModel.load(str(ZOO_DIR / "base"), **kw)
    guide = w2s.PairGuide(w2s.HFModel.load(str(ZOO_DIR / "tuned"), **kw),
                          w2s.HFModel.load(str(ZOO_DIR / "untuned"), **kw))
    return base, guide


def rss_bytes() -> int:
    """Current resident memory (Linux /proc), for peaks *during* a run: ru_maxrss would
    report the model-loading peak instead."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def one_memory_run(w: int, k: int, prompts: int, max_new: int, device: str) -> None:
    quiet_libraries()
    base, guide = load(device, 1 << 20)
    sp = w2s.SamplingParams(max_new_tokens=max_new, ignore_eos=True, seed=0)
    run = lambda: w2s.cbs(base, guide, load_prompts(limit=prompts), w2s.SearchParams(w, k, 5), sp)  # noqa: E731
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before, peak, done = rss_bytes(), [0], threading.Event()

        def poll() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes() - before)
                time.sleep(0.002)

        t = threading.Thread(target=poll, daemon=True)
        t.start()
        run()
        done.set()
        t.join()
        peak = peak[0]
    print(json.dumps({"peak_mib": peak / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new", type=int, default=50)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", type=int, nargs=2, metavar=("W", "K"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one_memory_run(*args.one, args.prompts, args.max_new, args.device)
        return
    quiet_libraries()
    prompts = load_prompts(limit=args.prompts)
    sp = w2s.SamplingParams(max_new_tokens=args.max_new, ignore_eos=True, seed=0)
    print(f"device={args.device} threads={torch.get_num_threads()} prompts={len(prompts)} "
          f"max_new_tokens={args.max_new} CBS(4,4,5)")
    print(f"{'rows/batch':>10} {'prompts/batch':>13} {'prompts/s':>10}")
    for bs in (16, 64, 256, 1024):
        base, guide = load(args.device, bs)
        w2s.cbs(base, guide, prompts[:1], w2s.SearchParams(4, 4, 5), sp)  # warm-up
        t0 = time.perf_counter()
        w2s.cbs(base, guide, prompts, w2s.SearchParams(4, 4, 5), sp)
        dt = time.perf_counter() - t0
        print(f"{bs:>10} {max(1, bs // 16):>13} {len(prompts) / dt:>10.2f}")
    print(f"\n{'W*K':>5} {'(W,K)':>8} {'peak MiB during the search':>28}")
    for w, k in ((1, 1), (2, 2), (4, 4), (8, 8)):
        out = subprocess.run([sys.executable, __file__, "--one", str(w), str(k), "--prompts",
                              str(min(args.prompts, 8)), "--max-new", str(args.max_new),
                              "--device", args.device], capture_output=True, text=True,
                             check=True)
        mib = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        print(f"{w * k:>5} {f'({w},{k})':>8} {mib:>28.1f}")


if __name__ == "__main__":
    main()
