"""A plugin that clashes is disabled whole, as one that fails to load is skipped: one line on
stderr naming its package and what it clashes with, nothing of it registered, and everything
else -- the built-in methods, the other plugins -- working as before.

Each plugin here is a real distribution (its ``dist-info`` with an ``entry_points.txt``, as pip
writes it) on a temporary path, found by :func:`importlib.metadata.entry_points` like any
installed one; the clash kinds: a knob named like a sampling field or a request field, a knob
whose type differs from another decoder's knob of its name, a decoder name already registered,
a guide kind under a guide spec's own key or a kind already registered, an entry written into a
registry behind its back, and a plugin that swallows the clash it was told of.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

import w2s
from w2s import SamplingParams
from w2s.cli import cli
from w2s.decoding import DECODERS
from w2s.guides.kinds import GUIDE_KINDS
from w2s.plugins import DISABLED, LOADED, REGISTRIES, load_plugins

HEAD = '''
from dataclasses import dataclass

import w2s


def run(backend, guide, prompts, knobs=None, sampling=None):
    return w2s.sample(backend, None, prompts, sampling)


def build(knobs, loader):
    raise RuntimeError("never built here")


def decoder(name, params=None):
    w2s.register(w2s.DecoderSpec(name, run, "a plugin's decoder", params, guide="optional"))


def guide_kind(name):
    w2s.register_guide_kind(w2s.GuideKind(name, build, "a plugin's guide kind"))
'''


def knobs(name: str, typ: str = "int", default: str = "0") -> str:
    return f'''
@dataclass(frozen=True)
class Knobs:
    {name}: {typ} = {default}
    """A knob."""


def register():
    decoder("lucky", Knobs)
'''


# (id, its package, its register(), the clash said after "is disabled: ", names it must not leave)
CLASHES = [
    ("knob-seed", "w2s-lucky", knobs("seed"),
     "decoder 'lucky': knob 'seed' clashes with the sampling field 'seed'", ["lucky"]),
    ("knob-temperature", "w2s-lucky", knobs("temperature", "float", "1.0"),
     "decoder 'lucky': knob 'temperature' clashes with the sampling field 'temperature'",
     ["lucky"]),
    ("knob-max-tokens", "w2s-lucky", knobs("max_tokens"),
     "decoder 'lucky': knob 'max_tokens' clashes with the sampling field 'max_new_tokens' "
     "(OpenAI's max_tokens)", ["lucky"]),
    ("knob-guide", "w2s-lucky", knobs("guide", "str", '""'),
     "decoder 'lucky': knob 'guide' clashes with the request field 'guide'", ["lucky"]),
    ("knob-weights", "w2s-lucky", knobs("weights", "float", "1.0"),
     "decoder 'lucky': knob 'weights' clashes with the request field 'weights'", ["lucky"]),
    ("knob-label", "w2s-lucky", knobs("label", "str", '""'),
     "decoder 'lucky': knob 'label' clashes with the eval config's method field 'label'",
     ["lucky"]),
    ("knob-type", "w2s-lucky", knobs("n", "float", "2.0"),
     "decoder 'lucky': knob 'n' (float) clashes with knob 'n' of bon (int)", ["lucky"]),
    ("knobs-unlisted", "w2s-lucky", "def register():\n    from dataclasses import "
     "make_dataclass\n    decoder('lucky', make_dataclass('Knobs', [('marks', int, 0)], "
     "frozen=True))\n",
     "decoder 'lucky': its knobs cannot be listed (OSError: could not find class definition)",
     ["lucky"]),
    ("method-sample", "w2s-resample", "def register():\n    decoder('sample')\n",
     "decoder 'sample' clashes with the decoder of that name already registered (built in)",
     []),
    ("method-cbs-behind-its-back", "w2s-sneaky",
     "def register():\n    w2s.DECODERS['cbs'] = w2s.DECODERS['sample']\n",
     "decoder 'cbs' clashes with the decoder of that name already registered (built in): it "
     "wrote over it", []),
    ("method-removed", "w2s-sneaky", "def register():\n    w2s.DECODERS.pop('eft')\n",
     "it removed the decoder 'eft' (built in)", []),
    ("method-new-behind-its-back", "w2s-sneaky",
     "def register():\n    w2s.DECODERS['not a name'] = w2s.DECODERS['sample']\n",
     "decoder name 'not a name' is not an identifier", ["not a name"]),
    *[(f"guide-kind-{k}", "w2s-kind", f"def register():\n    guide_kind({k!r})\n",
       f"guide kind {k!r} clashes with the guide spec's own key {k!r}", [k])
      for k in ("tuned", "untuned", "arm", "reward_model", "reward_label", "weights",
                "normalize")],
    ("all-or-nothing", "w2s-half",
     "def register():\n    guide_kind('lengthy')\n    decoder('half_ok')\n    decoder('bon')\n",
     "decoder 'bon' clashes with the decoder of that name already registered (built in)",
     ["lengthy", "half_ok"]),
    ("swallowed", "w2s-quiet",
     "def register():\n    try:\n        decoder('sample')\n    except w2s.W2SError:\n"
     "        pass\n    decoder('quiet_ok')\n",
     "decoder 'sample' clashes with the decoder of that name already registered (built in)",
     ["quiet_ok"]),
    ("import-fails", "w2s-broken",
     "def register():\n    decoder('broken_ok')\n    import w2s_no_such_module  # noqa: F401\n",
     "it failed to load: ModuleNotFoundError: No module named 'w2s_no_such_module'",
     ["broken_ok"]),
]

GOOD = "def register():\n    decoder('good_one')\n    guide_kind('good_kind')\n"


def install(site, dist: str, module: str, body: str, entry: str | None = None) -> str:  # noqa: ANN001
    """A distribution ``dist`` on ``site`` whose entry point runs ``module:register``."""
    entry = entry or module
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(HEAD + textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[w2s.plugins]\n{entry} = {module}:register\n")
    return f"{entry} = {module}:register"


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """A fresh site directory on sys.path, and every registry and the plugin state as they
    were before, restored after."""
    import w2s.plugins as P

    saved = [(r, dict(r), dict(r.owners)) for r in REGISTRIES]
    state, loaded, disabled = dict(P._state), list(LOADED), dict(DISABLED)
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    modules = set(sys.modules)
    yield site
    for r, entries, owners in saved:
        r.clear()
        r.update(entries)
        r.owners.clear()
        r.owners.update(owners)
    P._state.update(state)
    LOADED[:] = loaded
    DISABLED.clear()
    DISABLED.update(disabled)
    for name in set(sys.modules) - modules:
        if name.startswith("w2s_plug"):
            del sys.modules[name]


@pytest.mark.parametrize("case,dist,body,clash,gone", CLASHES, ids=[c[0] for c in CLASHES])
def test_a_clashing_plugin_is_disabled_whole_with_one_line(plugins, capsys, tiny_paths, case,
                                                           dist, body, clash, gone):
    builtin_decoders, builtin_kinds = dict(DECODERS), dict(GUIDE_KINDS)
    module = "w2s_plug_" + case.replace("-", "_")
    ep = install(plugins, dist, module, body, entry=case.replace("-", "_"))
    install(plugins, "w2s-good", "w2s_plug_good", GOOD)
    load_plugins(force=True)
    line = f"w2s: plugin {dist} ({ep}) is disabled: {clash}"
    assert capsys.readouterr().err.splitlines() == [line]
    assert DISABLED[case.replace("-", "_")] == line
    assert case.replace("-", "_") not in LOADED and "w2s_plug_good" in LOADED
    # nothing of it stays; every built-in entry is the very one it was; the other plugin loaded
    assert {n: DECODERS[n] for n in builtin_decoders} == builtin_decoders
    assert all(DECODERS[n] is d for n, d in builtin_decoders.items())
    assert {n: GUIDE_KINDS[n] for n in builtin_kinds} == builtin_kinds
    assert set(DECODERS) == {*builtin_decoders, "good_one"}
    assert set(GUIDE_KINDS) == {*builtin_kinds, "good_kind"}
    assert not set(gone) & (set(DECODERS) | set(GUIDE_KINDS))
    assert DECODERS.owners["good_one"] == "w2s-good"
    # the built-in methods keep working, from the command line too
    out = CliRunner().invoke(cli, [
        "generate", "--base", tiny_paths["base"], "--method", "sample", "--prompt", "The movie",
        "--max-new-tokens", "4", "--seed", "0", "--json", "--quiet"])
    assert out.exit_code == 0, out.output
    [ref] = w2s.sample(w2s.HFModel.load(tiny_paths["base"]), None, ["The movie"],
                       SamplingParams(seed=0, max_new_tokens=4))
    assert json.loads(out.stdout)["response"] == ref.text


def test_a_plugin_cannot_take_a_name_another_plugin_took(plugins, capsys):
    """The first to load (by entry point name) keeps it; the second names the first."""
    install(plugins, "w2s-first", "w2s_plug_first", "def register():\n    guide_kind('shared')\n")
    install(plugins, "w2s-second", "w2s_plug_second",
            "def register():\n    guide_kind('shared')\n    decoder('second_ok')\n")
    load_plugins(force=True)
    assert capsys.readouterr().err.splitlines() == [
        "w2s: plugin w2s-second (w2s_plug_second = w2s_plug_second:register) is disabled: "
        "guide kind 'shared' clashes with the guide kind of that name already registered (by "
        "plugin w2s-first)"]
    assert GUIDE_KINDS.owners["shared"] == "w2s-first" and "second_ok" not in DECODERS


@dataclass(frozen=True)
class Seeded:
    seed: int = 0
    """A knob named like a sampling field."""


def test_a_script_gets_the_same_refusals_as_an_exception():
    """Outside a plugin, :func:`w2s.register` refuses a clash in the same words."""
    from w2s.decoding import DecoderSpec, register

    with pytest.raises(w2s.W2SError, match="already registered"):
        register(DecoderSpec("cbs", w2s.sample, "another cbs"))
    with pytest.raises(w2s.W2SError, match="^decoder 'seeded': knob 'seed' clashes with the "
                       "sampling field 'seed'$"):
        register(DecoderSpec("seeded", w2s.sample, "a clash", Seeded))
    assert "seeded" not in DECODERS
    with pytest.raises(w2s.W2SError, match="guide kind 'arm' clashes with the guide spec's"):
        w2s.register_guide_kind(w2s.GuideKind("arm", lambda k, loader: None, "a clash"))


def test_the_names_a_knob_cannot_take_cover_every_request_key_and_sampling_field():
    from w2s.decoding.registry import KNOB_NAMES_TAKEN, knob_clash
    from w2s.params import sampling_fields
    from w2s.request import REQUEST_KEYS

    assert set(REQUEST_KEYS) <= set(KNOB_NAMES_TAKEN)
    assert {f.name for f in sampling_fields()} | {f.openai for f in sampling_fields()} <= \
        set(KNOB_NAMES_TAKEN)
    assert all(knob_clash(spec) is None for spec in DECODERS.values())  # the built-ins pass


@pytest.mark.slow
def test_clashing_plugins_installed_leave_w2s_generate_working(tmp_path, tiny_paths):
    """Every clash kind installed at once, in a fresh process: one line each on stderr, and
    ``w2s generate`` runs the built-in methods and the plugin that does not clash."""
    site = tmp_path / "site"
    site.mkdir()
    lines = []
    for case, dist, body, clash, _ in CLASHES:
        name = case.replace("-", "_")
        ep = install(site, f"{dist}-{name.replace('_', '-')}", f"w2s_plug_{name}", body, name)
        lines.append(f"w2s: plugin {dist}-{name.replace('_', '-')} ({ep}) is disabled: {clash}")
    install(site, "w2s-good", "w2s_plug_good", GOOD)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")])}
    for method in ("sample", "good_one"):
        out = subprocess.run(
            [sys.executable, "-m", "w2s.cli", "generate", "--base", tiny_paths["base"],
             "--method", method, "--prompt", "The movie", "--max-new-tokens", "4", "--seed",
             "0", "--json", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        assert sorted(out.stderr.splitlines()) == sorted(lines)
        assert json.loads(out.stdout)["response"]


def test_the_command_options_a_knob_cannot_take_are_the_commands_own():
    """Every option of ``generate`` and ``distill data`` that is not a knob or a sampling
    flag is in ``COMMAND_OPTIONS``: a plugin knob named like one is refused at registration
    (it would take the option's place, and ``w2s generate`` would fail for every method)."""
    import click

    from w2s.cli import cli
    from w2s.decoding.registry import COMMAND_OPTIONS, KNOB_NAMES_TAKEN, decoders
    from w2s.params import sampling_fields

    knobs = {f.name for d in decoders().values() for f in d.knob_fields()}
    sampling = {f.name for f in sampling_fields()}
    for path in (["generate"], ["distill", "data"]):
        cmd = cli
        ctx = click.Context(cli)
        for name in path:
            cmd = cmd.get_command(ctx, name)
            ctx = click.Context(cmd, parent=ctx)
        names = {p.name for p in cmd.get_params(ctx)} - knobs - sampling - {"method",
                                                                          "return_all", "chat",
                                                                          "weights",
                                                                          "_click_default_help"}
        assert names <= set(COMMAND_OPTIONS), names - set(COMMAND_OPTIONS)
    assert KNOB_NAMES_TAKEN["prompt"] == "the command line's option --prompt"
