"""The package builds as PyPI would take it: ``python -m build`` makes the sdist and the wheel,
``twine check --strict`` accepts both (metadata, the README as the long description), the wheel
holds the shipped zoo, the eval configs and the playground, and its version is the one version
string, ``w2s.__version__`` (pyproject.toml reads it: ``[tool.setuptools.dynamic]``).

The build runs with ``--no-isolation``: in an isolated environment pip would download
setuptools for every run; here the installed setuptools builds (it is the build backend the
editable install already used), which takes seconds and needs no network. The tree is copied
first, so the build's egg-info and build/ folders never land in the checkout."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
import zipfile

import pytest
from snippets import ROOT

pytestmark = pytest.mark.slow

# what a checkout holds that is no part of the package's sources
IGNORED = shutil.ignore_patterns(".git", ".venv*", "__pycache__", "*.egg-info", "build", "dist",
                                 "runs", "mutants", "w2s-demo", ".browser", ".pytest_cache",
                                 ".ruff_cache", ".hypothesis", "artifacts", "site")


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pkg")
    src = tmp / "src-tree"
    shutil.copytree(ROOT, src, ignore=IGNORED)
    out = tmp / "dist"
    # no --sdist/--wheel: the sdist first, then the wheel built from the unpacked sdist, so a
    # file the sdist leaves out fails here
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                        str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [wheel] = out.glob("w2s-*.whl")
    [sdist] = out.glob("w2s-*.tar.gz")
    return wheel, sdist


def test_twine_accepts_the_wheel_and_the_sdist(dists):
    r = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dists)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASSED") == 2, r.stdout


def test_the_wheel_carries_the_one_version_string(dists):
    import w2s

    wheel, sdist = dists
    with zipfile.ZipFile(wheel) as z:
        [meta] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(z.read(meta).decode("utf-8"))
    assert metadata["Name"] == "w2s"
    assert metadata["Version"] == w2s.__version__
    assert wheel.name.startswith(f"w2s-{w2s.__version__}-")
    assert sdist.name == f"w2s-{w2s.__version__}.tar.gz"
    assert metadata["License-Expression"] == "MIT"


def test_the_wheel_holds_the_zoo_the_configs_and_the_playground(dists):
    wheel, _ = dists
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    models = ROOT / "src" / "w2s" / "zoo" / "models"
    shipped = [p.relative_to(ROOT / "src").as_posix() for p in models.rglob("*") if p.is_file()]
    assert len(shipped) >= 40  # six models, their tokenizers and cards, the prompts
    assert set(shipped) <= names, sorted(set(shipped) - names)[:10]
    configs = ROOT / "src" / "w2s" / "configs"
    shipped = [p.relative_to(ROOT / "src").as_posix() for p in configs.rglob("*")
               if p.is_file() and p.suffix in (".yaml", ".toml")]
    assert "w2s/configs/sentiment.yaml" in shipped
    assert set(shipped) <= names, sorted(set(shipped) - names)
    assert {"w2s/serve/static/index.html", "w2s/zoo/README.md"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith(".dist-info/entry_points.txt") for n in names)  # the `w2s` command
