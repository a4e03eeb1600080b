"""Start a local vLLM server (CPU build, from ``make engine``) for tests and benchmarks.

The flags are the ones that work on a small CPU machine: float32, eager mode, a fixed KV-cache
budget (the default memory fraction is refused), prefix caching with 32-token blocks (the CPU
default of 128 gives no hits on short prompts), and no chunked prefill (the CPU build's sampler
crashes on a seeded request whose prefill is split). The server runs in its own process group and is
stopped with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from w2s.errors import W2SError

ENGINE_VENV = Path(__file__).resolve().parents[2] / ".venv-engine"
_RUNNING: dict[str, subprocess.Popen] = {}  # API root -> the server this process started


RECOMMENDED: tuple[tuple[str, str], ...] = (
    ("--enable-prefix-caching",
     "a search re-sends every kept prefix each round; cached blocks skip its prefill "
     "(vLLM's V1 default; keep it on)"),
    ("--block-size 16 on a GPU, 32 on the CPU build (its smallest)",
     "only whole blocks hit the cache: on 32-token responses 128-token blocks hit 0 %, "
     "32-token blocks 49 % (bench/RESULTS.md section 4)"),
    ("--max-num-seqs >= W*K x prompts in flight",
     "a CBS round sends W*K continuations of each prompt at once; fewer slots queue them"),
    ("--max-logprobs >= 1",
     "a guide served by the engine scores candidates by echoed prompt log-probabilities"),
    ("on a CPU build: the guide on the cores the engine's worker is not bound to",
     "vLLM binds its worker (VLLM_CPU_OMP_THREADS_BIND) and busy-waits 1 s after each step; "
     "a guide sharing that core runs at half speed (taskset; bench/RESULTS.md section 4e)"),
    ("the same --served-model-name on every replica, behind vllm-router "
     "--policy consistent_hash",
     "w2s sends X-Session-ID per prompt, so all of one prompt's requests reach the replica "
     "that caches its prefixes"),
)
"""Engine settings for search traffic, with why; printed by ``make engine`` and
``python -m w2s.vllm_server``."""


def recommended_settings() -> str:
    return "w2s recommends, for a vLLM server that a search talks to:\n" + "\n".join(
        f"  {flag}\n      {why}" for flag, why in RECOMMENDED)


def engine_python(venv: Path | None = None) -> Path:
    """The engine venv's Python, or a one-line error saying why there is none."""
    venv = Path(os.environ.get("W2S_ENGINE_VENV", venv or ENGINE_VENV))
    if (venv / "UNAVAILABLE").is_file():
        raise W2SError("vLLM engine unavailable: " + (venv / "UNAVAILABLE").read_text().strip())
    python = venv / "bin" / "python"
    if not python.is_file():
        raise W2SError(f"vLLM engine not set up in {venv}: run `make engine` (make test does)")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def vllm_server(model: str | Path, name: str, *, max_model_len: int = 256,
                block_size: int = 32, kv_cache_bytes: int = 256 * 2**20,
                prefix_caching: bool = True, log: Path | None = None,
                timeout: float = 300.0, port: int | None = None,
                cpus: str | None = None, one_process: bool = False) -> Iterator[str]:
    """Serve ``model`` as ``name`` on loopback (``port``, else a free one); yields the API
    root URL. A fixed port keeps the URL, and so an eval's method hashes, the same across
    runs: a rerun resumes. ``cpus``: the cores its worker is bound to (vLLM's
    ``VLLM_CPU_OMP_THREADS_BIND``, e.g. ``"1"`` or ``"0-3"``); by default vLLM picks, and two
    servers on one machine both pick the same core. ``one_process``: run the engine in the API
    server's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): it answers in ~15 s instead of
    ~22 s on 2 cores (each process imports vLLM anew) with the same outputs, which the tests
    want; the benches keep vLLM's default, which is what a deployment runs."""

    python = engine_python()
    port = port or free_port()
    log = log or python.parent.parent / "server.log"
    args = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
            "--dtype", "float32", "--max-model-len", str(max_model_len), "--enforce-eager",
            "--block-size", str(block_size), "--kv-cache-memory-bytes", str(kv_cache_bytes),
            # a seeded request whose prefill is split into chunks crashes the CPU build's
            # sampler (vllm-cpu 0.32.0: "CPU Generator does not use offset"): never split
            "--no-enable-chunked-prefill", "--max-num-batched-tokens", str(8 * max_model_len)]
    args.append("--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching")
    env = dict(os.environ)
    if cpus:
        env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
    if one_process:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    with _started(args, port, log, timeout, "the vLLM server", env) as (url, proc):
        _RUNNING[url] = proc
        try:
            yield url
        finally:
            _RUNNING.pop(url, None)


def stop_server(url: str) -> None:
    """Stop a server :func:`vllm_server` started, before its block ends (a replica going
    down, in tests of what a router and w2s do then)."""
    proc = _RUNNING.get(url)
    if proc is None:
        raise W2SError(f"no vLLM server started here answers at {url}")
    _stop(proc)


def metric_totals(url: str, *names: str) -> list[float]:
    """A vLLM server's counters ``vllm:<name>_total`` (e.g. ``request_success``,
    ``prefix_cache_hits``), each summed over its labels, from one read of its Prometheus
    ``/metrics`` (``url``: the server's root or API root; a router's replicas are read one by
    one)."""
    import re

    import httpx

    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
    return [sum(float(v) for v in re.findall(rf"^vllm:{name}_total(?:{{[^}}]*}})? (\S+)$",
                                             text, re.M)) for name in names]


ROUTER_VERSION = "0.1.17"


def router_binary(venv: Path | None = None) -> Path:
    """vllm-router in the engine venv (``make engine`` installs it), or a one-line error."""
    venv = Path(os.environ.get("W2S_ENGINE_VENV", venv or ENGINE_VENV))
    if (venv / "ROUTER_UNAVAILABLE").is_file():
        raise W2SError("vllm-router unavailable: "
                       + (venv / "ROUTER_UNAVAILABLE").read_text().strip())
    binary = venv / "bin" / "vllm-router"
    if not binary.is_file():
        raise W2SError(f"vllm-router not set up in {venv}: run `make engine` (make test does)")
    return binary


@contextlib.contextmanager
def vllm_router(workers: list[str], *, policy: str = "consistent_hash",
                log: Path | None = None, timeout: float = 120.0,
                port: int | None = None, flags: Sequence[str] = ()) -> Iterator[str]:
    """vllm-router (the vLLM project's router, pip ``vllm-router``) on loopback in front of
    ``workers`` (their API roots); yields the router's API root. ``consistent_hash`` sends
    every request that carries the same ``X-Session-ID`` header to the same worker, which is
    how w2s keeps all of one prompt's requests on the replica that caches its prefix.
    ``flags``: more of vllm-router's own (e.g. ``--health-check-interval-secs 2``: a replica
    that failed is tried again only after its circuit breaker's timeout and a health check,
    60 s by default)."""

    binary = router_binary()
    port = port or free_port()
    log = log or binary.parent.parent / "router.log"
    args = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--policy", policy,
            "--worker-urls", *[w.removesuffix("/v1") for w in workers],
            "--log-level", "warning",
            # its metrics listener takes a fixed port (29000) by default: a second router on
            # the machine would exit with "Address already in use"
            "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()), *flags]
    with _started(args, port, log, timeout, "vllm-router") as (url, _):
        yield url


@contextlib.contextmanager
def _started(args: list[str], port: int, log: Path, timeout: float, what: str,
             env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``args`` in its own process group, logging to ``log``, until its ``/v1/models``
    answers (one line naming ``what`` if it exits or stays silent); stopped at the end."""
    import httpx

    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise W2SError(f"{what} exited ({proc.returncode}); see {log}")
                try:
                    if httpx.get(url + "/models", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise W2SError(f"{what} did not answer within {timeout:g} s; see {log}")
                time.sleep(0.5)
            yield url, proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group (its engine workers too)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return  # it had exited already
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


if __name__ == "__main__":
    print(recommended_settings())
