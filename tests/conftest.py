"""Shared fixtures: a tiny random-initialised model set built once per test session, saved to
disk and loaded back through the real ``from_pretrained`` path."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs the test files in pytest-xdist workers, one per core (`--dist loadfile`:
    # a file's tests share a worker, so test_vllm.py's vLLM server starts once): one torch
    # thread each, in the processes they start too, or their thread pools fight over the same
    # cores. Set before torch is imported, which reads it once.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory):
    from w2s.zoo.tiny import build_tiny_set

    return {k: str(v) for k, v in build_tiny_set(tmp_path_factory.mktemp("tiny")).items()}


@pytest.fixture(scope="session")
def base(tiny_paths):
    from w2s import HFModel

    return HFModel.load(tiny_paths["base"], batch_size=7)  # odd batch size exercises chunking


@pytest.fixture(scope="session")
def pair(tiny_paths):
    from w2s import PairGuide

    return PairGuide.load(tiny_paths["tuned"], tiny_paths["untuned"])


@pytest.fixture(scope="session")
def xpair(tiny_paths):
    from w2s import PairGuide

    return PairGuide.load(tiny_paths["xtuned"], tiny_paths["xuntuned"])


@pytest.fixture(scope="session")
def ending_paths(tmp_path_factory):
    """base/tuned/untuned (one vocabulary) whose responses mostly end by EOS within 20 tokens."""
    from w2s.zoo.tiny import build_ending_set

    return {k: str(v) for k, v in build_ending_set(tmp_path_factory.mktemp("ending")).items()}


@pytest.fixture(scope="session")
def ebase(ending_paths):
    from w2s import HFModel

    return HFModel.load(ending_paths["base"], batch_size=512)


@pytest.fixture(scope="session")
def epair(ending_paths):
    from w2s import PairGuide

    return PairGuide.load(ending_paths["tuned"], ending_paths["untuned"])


@pytest.fixture(scope="session")
def vllm_url():
    """A real vLLM server (CPU build, set up by `make engine`) serving the zoo base as
    ``zoo-base`` on a free loopback port; skips with one line saying why when the engine is
    not installed here."""
    from w2s.errors import W2SError
    from w2s.vllm_server import engine_python, vllm_server
    from w2s.zoo import ZOO_DIR

    try:
        engine_python()
    except W2SError as e:
        pytest.skip(str(e))
    with vllm_server(ZOO_DIR / "base", "zoo-base", one_process=True) as url:
        yield url


class ServedW2S:
    """A running ``w2s serve`` process: its URL, API key and log file."""

    def __init__(self, url: str, api_key: str, log: str) -> None:
        self.url, self.api_key, self.log = url, api_key, log

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def start_w2s_serve(tmp_dir, *args: str, api_key: str = "test-key", timeout: float = 90.0):
    """Start ``w2s serve ARGS`` as a real process on a free loopback port; returns
    ``(process, ServedW2S)`` once /health answers."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_dir / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "w2s.cli", "serve", "--port", str(port), "--api-key", api_key,
           *args]
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"w2s serve exited ({proc.returncode}): {log.read_text()}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"w2s serve did not start: {log.read_text()}")
        time.sleep(0.2)
    return proc, ServedW2S(url, api_key, str(log))


@pytest.fixture(scope="session")
def w2s_server(tmp_path_factory):
    """``w2s serve`` on the shipped zoo (its defaults), with an API key and one finished eval
    run (the quick demo's) under ``--runs``, for the whole session."""
    from w2s.demo import run_demo

    tmp = tmp_path_factory.mktemp("serve")
    run_demo(tmp / "runs" / "demo-quick", quick=True)  # a finished eval run to show (8 s)
    proc, served = start_w2s_serve(tmp, "--runs", str(tmp / "runs"))
    yield served
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except Exception:  # noqa: BLE001
        proc.kill()


@pytest.fixture(scope="module")
def zoo_base():
    """The shipped zoo's base, loaded once per test file."""
    import w2s
    from w2s.zoo import ZOO_DIR

    return w2s.HFModel.load(str(ZOO_DIR / "base"))


@pytest.fixture(scope="module")
def zoo_pair():
    """The shipped zoo's tuned/untuned pair, loaded once per test file."""
    import w2s
    from w2s.zoo import ZOO_DIR

    return w2s.PairGuide.load(str(ZOO_DIR / "tuned"), str(ZOO_DIR / "untuned"))
