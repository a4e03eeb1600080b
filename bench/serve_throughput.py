"""Benchmark 6: ``w2s serve`` throughput with 1, 8 and 32 concurrent clients.

Starts ``w2s serve`` on the shipped zoo (a real process on loopback), and for each number of
concurrent clients sends the same set of requests (held-out prompts, one seed, so concurrent
requests are compatible and the server batches them) and prints requests/s, response tokens/s
and base tokens/s, for CBS(W,K,L) and, side by side, plain sampling of the same answer length.
EOS is ignored so every answer has exactly --max-new tokens.

    python bench/serve_throughput.py [--requests 64] [--max-new 32] [--clients 1 8 32]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import start_w2s_serve  # noqa: E402

from w2s.tasks.sentiment import load_prompts  # noqa: E402


def run(srv, bodies: list[dict], clients: int) -> tuple[float, int, int]:
    """Wall time, response tokens and base tokens for ``bodies`` sent by ``clients`` threads."""
    with httpx.Client(headers=srv.headers(), timeout=600) as http:
        def one(body: dict) -> dict:
            r = http.post(srv.url + "/v1/completions", json=body)
            r.raise_for_status()
            return r.json()

        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(clients) as pool:
            out = list(pool.map(one, bodies))
        wall = time.perf_counter() - t0
    return (wall, sum(o["usage"]["completion_tokens"] for o in out),
            sum(o["w2s"]["cost"]["base_tokens"] for o in out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-new", type=int, default=32)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--w", type=int, default=4)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--l", type=int, default=5)
    ap.add_argument("--max-rows", type=int, default=512)
    a = ap.parse_args()
    prompts = load_prompts()[: a.requests]
    methods = {f"cbs({a.w},{a.k},{a.l})": {"method": "cbs", "w": a.w, "k": a.k, "l": a.l},
               "sample": {"method": "sample"}}
    proc, srv = start_w2s_serve(Path(tempfile.mkdtemp()), "--batch-size", str(a.max_rows),
                                "--max-rows", str(a.max_rows), "--max-queue", "1024")
    try:
        print(f"w2s serve on the zoo, {len(prompts)} requests of {a.max_new} tokens each, "
              f"rows per batch <= {a.max_rows}")
        print(f"{'method':14s} {'clients':>7s} {'req/s':>8s} {'tok/s':>8s} {'base tok/s':>10s} "
              f"{'wall s':>7s}")
        for clients in a.clients:
            for name, w2s in methods.items():
                bodies = [{"prompt": p, "max_tokens": a.max_new, "seed": 0, "ignore_eos": True,
                           "w2s": w2s} for p in prompts]
                run(srv, bodies[:2], 2)  # warm up
                wall, tokens, base = run(srv, bodies, clients)
                print(f"{name:14s} {clients:7d} {len(bodies) / wall:8.2f} {tokens / wall:8.0f} "
                      f"{base / wall:10.0f} {wall:7.2f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
