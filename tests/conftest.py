"""Shared fixtures: a tiny random-initialised model set built once per test session, saved to
disk and loaded back through the real ``from_pretrained`` path."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


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
    ``zoo-base`` on a free loopback port, in its own process group; skips with one line saying
    why when the engine is not installed here."""
    import signal
    import socket
    import subprocess
    import time
    from pathlib import Path

    import httpx

    from w2s.zoo import ZOO_DIR

    root = Path(__file__).resolve().parent.parent
    venv = Path(os.environ.get("W2S_ENGINE_VENV", root / ".venv-engine"))
    python = venv / "bin" / "python"
    if (venv / "UNAVAILABLE").is_file():
        pytest.skip("vLLM engine unavailable: " + (venv / "UNAVAILABLE").read_text().strip())
    if not python.is_file():
        pytest.skip(f"vLLM engine not set up in {venv}: run `make engine` (make test does)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(venv / "server.log", "w")  # noqa: SIM115 - kept open for the server's life
    proc = subprocess.Popen(
        [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model",
         str(ZOO_DIR / "base"), "--served-model-name", "zoo-base", "--host", "127.0.0.1",
         "--port", str(port), "--dtype", "float32", "--max-model-len", "256",
         "--enforce-eager", "--enable-prefix-caching", "--block-size", "32",
         "--kv-cache-memory-bytes", str(256 * 2**20)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited ({proc.returncode}); see {log.name}")
            try:
                if httpx.get(url + "/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not answer within 300 s; see {log.name}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
