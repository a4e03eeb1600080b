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
    ``zoo-base`` on a free loopback port; skips with one line saying why when the engine is
    not installed here."""
    from w2s.errors import W2SError
    from w2s.vllm_server import engine_python, vllm_server
    from w2s.zoo import ZOO_DIR

    try:
        engine_python()
    except W2SError as e:
        pytest.skip(str(e))
    with vllm_server(ZOO_DIR / "base", "zoo-base") as url:
        yield url
