"""The layering rules of docs/architecture.md, checked on the source (imports inside functions
count): decoders see backends only through the protocols and probe nothing with ``hasattr``;
lower layers import nothing above them; only the CLI and the demo reach the zoo's training
script; and no two modules import each other, directly or round a cycle."""

import ast
from pathlib import Path

import w2s

ROOT = Path(w2s.__file__).resolve().parent
# group -> groups it must not import (a group is the first package under w2s, or a module)
BELOW = {
    "models": {"guides", "decoding", "request", "evaluate", "tasks", "serve", "cli", "demo",
               "zoo"},
    "guides": {"decoding", "request", "evaluate", "tasks", "serve", "cli", "demo", "zoo"},
    "decoding": {"request", "evaluate", "tasks", "serve", "cli", "demo", "zoo"},
    "tasks": {"decoding", "request", "evaluate", "serve", "cli", "demo"},
    "request": {"evaluate", "tasks", "serve", "cli", "demo", "zoo"},
    "evaluate": {"serve", "cli", "demo"},
    "serve": {"cli", "demo", "generalise"},
    # w2s generalise trains and reports; it reaches search only through eval's runs
    "generalise": {"serve", "cli", "demo", "distill"},
}
for low in ("models", "guides", "decoding", "tasks", "request", "evaluate", "distill"):
    BELOW.setdefault(low, set()).add("generalise")
for low in ("params", "rng", "errors", "result", "logits", "stopping", "quiet", "chat", "textfile",
            "token_loop", "plugins", "configfile", "stages"):
    BELOW[low] = {"models", "guides", "decoding", "request", "evaluate", "tasks", "serve", "cli",
                  "demo", "zoo", "generalise"}
CONCRETE = ("w2s.models.hf", "w2s.models.hf_search", "w2s.models.hf_scoring", "w2s.models.kv_cache", "w2s.models.loading", "w2s.models.backends",
            "w2s.models.openai_api", "w2s.models.http", "w2s.vllm_server", "transformers", "httpx")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(mod: str, path: Path) -> list[str]:
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{a.name}" for a in node.names]
    return names


def _group(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_layers_import_only_downward():
    broken = []
    for mod, path in _modules().items():
        g = _group(mod)
        for name in _imports(mod, path):
            if name.startswith("w2s.") and _group(name) in BELOW.get(g, set()):
                broken.append(f"{mod} imports {name}")
            if name.startswith("w2s.zoo.build") and g not in {"cli", "demo", "zoo"}:
                broken.append(f"{mod} reaches the zoo's training script")
            if g == "decoding" and any(name == c or name.startswith(c + ".") for c in CONCRETE):
                broken.append(f"{mod} imports the concrete backend {name}")
        if g == "decoding" and "hasattr(" in path.read_text(encoding="utf-8"):
            broken.append(f"{mod} probes capabilities with hasattr")
    assert not broken, "\n".join(broken)


def test_no_import_cycles():
    mods = _modules()
    graph = {m: {n for n in (_resolve(x, mods) for x in _imports(m, p)) if n and n != m}
             for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, " -> ".join(cycle)


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The module an imported name lives in (``w2s.a.b.Name`` -> ``w2s.a.b``)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def test_the_protocol_table_of_architecture_md_is_true():
    """docs/architecture.md's table of which class implements which capability protocol is
    what isinstance says, row for row."""
    import re

    from fake_engine import FakeEngine

    import w2s.models.base as B
    from w2s.models.engine_lm import EngineLM
    from w2s.models.hf import HFModel
    from w2s.models.openai_api import OpenAIBackend

    doc = (ROOT.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = {name: set(re.findall(r"`(\w+)`", protos))
             for name, protos in re.findall(r"^\| `(\w+)`[^|]*\| (`.+`) \|$", doc, re.M)}
    protocols = ["Backend", "SearchBackend", "LogitsBackend", "TopLogprobsBackend",
                 "TextScoringBackend", "TokenScoringBackend", "ScoringLM", "OverlappingBackend", "PromptCounter",
                 "ParamCount"]
    engine = FakeEngine()
    try:
        objects = {"HFModel": HFModel.load(str(ROOT / "zoo" / "models" / "base")),
                   "OpenAIBackend": OpenAIBackend(engine.url, engine.model),
                   "EngineLM": EngineLM(engine.url, "zoo:tuned", model=engine.model)}
        assert set(table) == set(objects)
        for name, obj in objects.items():
            assert {p for p in protocols if isinstance(obj, getattr(B, p))} == table[name], name
    finally:
        engine.close()


FACE_FREE = ("models", "guides", "decoding", "request", "params", "logits", "tasks")
"""Layers below every face: the CLI, a config and the server name the same field differently
(``--batch-size``, ``batch_size``, ``max_tokens``), so these raise the field's path only
(:class:`~w2s.errors.FieldError`) and each face renames it by its own map."""


def test_lower_layers_name_no_flag_in_their_errors():
    import re

    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    found = []
    for mod, path in _modules().items():
        if _group(mod) not in FACE_FREE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for const in ast.walk(node.exc):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str) \
                            and flag.search(const.value):
                        found.append(f"{mod}:{node.lineno}: {const.value.strip()}")
    assert not found, "\n".join(found)


def test_no_function_is_over_60_lines():
    """Small functions with one job each (docstrings count): the number the guide asks for."""
    long = []
    for mod, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long.append(f"{mod}.{node.name}: {n} lines")
    assert not long, "\n".join(long)
