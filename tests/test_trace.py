"""Search traces (w2s.decoding.trace): exact trees on the scripted backend (no network)."""

from __future__ import annotations

import json

import pytest
from scripted import CountGuide, ScriptedBackend

import w2s
from w2s.decoding import get_decoder, trace
from w2s.decoding.cbs import cbs
from w2s.params import (
    BestOfNParams,
    MCTSParams,
    ParticleParams,
    SamplingParams,
    SearchParams,
    TreeBoNParams,
)

SAMPLING = SamplingParams(max_new_tokens=6, seed=3)


def _rounds(t: dict) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for n in t["nodes"]:
        out.setdefault(n["round"], []).append(n)
    return out


def _check_tree(t: dict, answer_text: str) -> None:
    """Ids in creation order, parents in the round before (or the root), the answer's path
    spells the answer, every kept node's parent is kept."""
    by_id = {n["id"]: n for n in t["nodes"]}
    assert [n["id"] for n in t["nodes"]] == list(range(1, len(t["nodes"]) + 1))
    for n in t["nodes"]:
        if n["parent"] == 0:
            assert n["round"] == 1
        else:
            assert by_id[n["parent"]]["round"] == n["round"] - 1
            if n["kept"]:
                assert by_id[n["parent"]]["kept"]
    assert by_id[t["answer"]]["kept"]
    assert trace.path_text(t, t["answer"]) == answer_text
    for n in t["nodes"]:  # every node's text is its path's
        assert isinstance(n["delta"], str) and "back" not in n


@pytest.mark.parametrize("return_all", [False, True])
def test_cbs_trace_is_the_beam_search(return_all: bool) -> None:
    """W=2, K=2, L=2, 6 tokens, no EOS: 3 rounds of W*K = 4 children; rounds 1-2 keep the W
    that the next round grows; the last keeps the answer (all W with return_all)."""
    backend, guide = ScriptedBackend(eos_weight=0.0), CountGuide()
    prompts = ["p", "q"]
    with w2s.tracing() as rec:
        results = cbs(backend, guide, prompts, SearchParams(w=2, k=2, l=2), SAMPLING,
                      return_all=return_all)
    assert len(rec.traces) == 2
    for t, r in zip(rec.traces, results):
        assert t["prompt"] == r.prompt and t["method"] == "cbs" and t["rounds"] is True
        assert t["params"]["w"] == 2 and t["params"]["seed"] == 3
        rounds = _rounds(t)
        assert sorted(rounds) == [1, 2, 3]
        assert [len(rounds[k]) for k in (1, 2, 3)] == [4, 4, 4]
        assert [sum(n["kept"] for n in rounds[k]) for k in (1, 2, 3)] == \
            [2, 2, 2 if return_all else 1]
        assert all(n["tokens"] == 2 * n["round"] for n in t["nodes"])
        # the kept of a round are its top W scores, and they are the next round's parents
        for k in (1, 2):
            top = sorted(rounds[k], key=lambda n: -n["score"])[:2]
            assert {n["id"] for n in top} == {n["id"] for n in rounds[k] if n["kept"]}
            assert {n["parent"] for n in rounds[k + 1]} == {n["id"] for n in top}
        _check_tree(t, r.text)
        ans = next(n for n in t["nodes"] if n["id"] == t["answer"])
        assert ans["score"] == pytest.approx(r.score)
        json.dumps(t)  # plain JSON


def test_scores_are_the_guides() -> None:
    """Each node's score is the guide's score of its whole response (CountGuide: a's - e's/10)."""
    with w2s.tracing() as rec:
        cbs(ScriptedBackend(eos_weight=0.0), CountGuide(), ["p"], SearchParams(w=2, k=2, l=3),
            SAMPLING)
    [t] = rec.traces
    for n in t["nodes"]:
        text = trace.path_text(t, n["id"])
        assert n["score"] == pytest.approx(text.count("a") - 0.1 * text.count("e"))


@pytest.mark.parametrize("return_all", [False, True])
def test_bon_trace_is_n_leaves_of_the_root(return_all: bool) -> None:
    """Best-of-N: N leaves of the root, one round; kept: the answer (all N with return_all)."""
    spec = get_decoder("bon")
    with w2s.tracing() as rec:
        [r] = spec.run(ScriptedBackend(), CountGuide(), ["p"], BestOfNParams(n=5), SAMPLING,
                       return_all=return_all)
    [t] = rec.traces
    assert t["method"] == "bon" and t["params"]["n"] == 5  # the knobs the user gave
    assert len(t["nodes"]) == 5 and all(n["parent"] == 0 for n in t["nodes"])
    assert sum(n["kept"] for n in t["nodes"]) == (5 if return_all else 1)
    best = max(t["nodes"], key=lambda n: n["score"])
    assert t["answer"] == best["id"] and best["delta"] == r.text


def test_tracing_off_changes_nothing_and_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same tokens with and without a recorder; without one, no recorder call is made."""
    def run() -> list:
        return cbs(ScriptedBackend(), CountGuide(), ["p", "q"], SearchParams(w=2, k=2, l=2),
                   SAMPLING, return_all=True)

    with w2s.tracing() as rec:
        traced = run()
    assert rec.traces
    calls = []
    for name in ("node", "flush", "answer", "record"):
        monkeypatch.setattr(trace, name, lambda *a, _n=name, **k: calls.append(_n))
    plain = run()
    assert calls == []
    assert [[c.token_ids for c in r.candidates] for r in plain] == \
        [[c.token_ids for c in r.candidates] for r in traced]


def test_sample_has_no_rounds_one_node() -> None:
    spec = get_decoder("sample")
    with w2s.tracing() as rec:
        [r] = spec.run(ScriptedBackend(), CountGuide(), ["p"], None, SAMPLING)
    [t] = rec.traces
    assert t["rounds"] is False and "no search rounds" in t["note"]
    assert t["nodes"] == [{"id": 1, "parent": 0, "round": 1, "delta": r.text,
                           "score": round(r.score, 6), "tokens": len(r.token_ids),
                           "ended": r.finished, "kept": True}]
    assert t["answer"] == 1


def test_mcts_records_its_own_tree() -> None:
    """MCTS's nodes: k per expansion (parents: the selected leaves) and the completion of the
    most visited path; the answer's path spells it; the expanded leaves are kept."""
    spec = get_decoder("mcts")
    knob = MCTSParams(expansions=3, k=2, l=2)
    with w2s.tracing() as rec:
        [r] = spec.run(ScriptedBackend(eos_weight=0.0), CountGuide(), ["p"], knob, SAMPLING)
    [t] = rec.traces
    assert len(t["nodes"]) in (3 * 2, 3 * 2 + 1)  # + the completion when the path is open
    parents = {n["parent"] for n in t["nodes"]} - {0}
    assert all(n["kept"] for n in t["nodes"] if n["id"] in parents)
    _check_tree(t, r.text)


@pytest.mark.parametrize("method,knob", [
    ("particles", ParticleParams(particles=3, chunk=2)),
    ("treebon", TreeBoNParams(n=4, branch=2)),
])
def test_other_frontier_searches_trace(method: str, knob: object) -> None:
    spec = get_decoder(method)
    with w2s.tracing() as rec:
        [r] = spec.run(ScriptedBackend(), CountGuide(), ["p"], knob, SAMPLING)
    [t] = rec.traces
    assert t["rounds"] is True and t["method"] == method
    _check_tree(t, r.text)


def test_a_listener_sees_each_round_with_scores() -> None:
    seen: list[tuple[int, list[int], list[int]]] = []
    with trace.recording(lambda i, nodes, kept: seen.append(
            (i, [n["id"] for n in nodes if n["score"] is not None], kept))) as rec:
        cbs(ScriptedBackend(eos_weight=0.0), CountGuide(), ["p"], SearchParams(w=2, k=2, l=2),
            SAMPLING)
    [t] = rec.traces
    assert [ids for _, ids, _ in seen if ids] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    kept = sorted(k for _, _, ks in seen for k in ks)
    assert kept == sorted(n["id"] for n in t["nodes"] if n["kept"])


def test_cli_refuses_an_unwritable_trace_file_before_any_model(tmp_path) -> None:  # noqa: ANN001
    """The trace file is checked before the base is even resolved (a missing model would be
    the other error)."""
    from click.testing import CliRunner

    from w2s.cli import cli

    for target, says in ((tmp_path / "no" / "t.jsonl", "does not exist"),
                         (tmp_path, "is a folder")):
        res = CliRunner().invoke(cli, ["generate", "--base", "./no/such/model", "--method",
                                       "sample", "--prompt", "x", "--trace", str(target)])
        assert res.exit_code != 0 and says in res.output and "no/such/model" not in res.output
        assert len(res.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_eval_writes_one_trace_per_row_and_the_report_links_them(tmp_path) -> None:  # noqa: ANN001
    """``trace: true``: traces/HASH/SEED/I.json per row (named by the row), the same tree a
    direct call records, rewritten not duplicated on resume; the report's traces.md links
    each one and summary.md links traces.md."""
    from w2s.evaluate.config import parse_config
    from w2s.evaluate.report import write_report
    from w2s.evaluate.run import run_eval
    from w2s.zoo import ZOO_DIR

    zoo = {"base": str(ZOO_DIR / "base"), "guide": {"tuned": str(ZOO_DIR / "tuned"),
                                                    "untuned": str(ZOO_DIR / "untuned")}}
    data = {"name": "t", "task": "sentiment", **zoo, "prompts": 2, "seeds": [0],
            "sampling": {"max_new_tokens": 6}, "trace": True,
            "methods": ["sample", {"method": "cbs", "w": 2, "k": 2, "l": 3}]}
    cfg = parse_config(data, tmp_path / "cfg.yaml")
    assert cfg.trace
    rows = run_eval(cfg, tmp_path, show_progress=False)
    assert len(rows) == 4
    for r in rows:
        m = next(m for m in cfg.methods if m.hash == r["hash"])
        assert r["trace"] == f"traces/{m.hash}/0/{r['prompt_index']}.json"
        [t] = [json.loads(x) for x in (tmp_path / r["trace"]).read_text().splitlines()]
        assert t["prompt"] == r["prompt"] and t["rounds"] is (r["method_name"] == "cbs")
        assert trace.path_text(t, t["answer"]) == r["response"]
        if t["rounds"]:
            assert [len(v) for v in _rounds(t).values()] == [4, 4]
    paths = write_report(rows, tmp_path / "rep")
    index = (tmp_path / "rep" / "traces.md").read_text()
    assert all(f"]({r['trace']})" in index for r in rows) and index.count("](traces/") == 4
    assert "[traces.md](traces.md)" in paths["markdown"].read_text()
    with pytest.raises(Exception, match="trace must be true or false"):
        parse_config({**data, "trace": "yes"}, tmp_path / "cfg.yaml")


@pytest.mark.slow
def test_the_server_streams_trace_chunks_only_to_who_asks(w2s_server) -> None:  # noqa: ANN001
    """With w2s.trace: chunks without choices carry each round's nodes, their union is the
    final trace (w2s.traces, equal to the plain response's); without it the stream is the
    plain OpenAI stream (no trace chunk, no traces field)."""
    import httpx

    url, h = w2s_server.url + "/v1/completions", w2s_server.headers()
    body = {"prompt": "The movie was", "max_tokens": 8, "seed": 3,
            "w2s": {"method": "cbs", "w": 2, "k": 2, "l": 4}}

    def chunks(b: dict) -> list[dict]:
        with httpx.stream("POST", url, json={**b, "stream": True}, headers=h, timeout=60) as r:
            lines = [x[6:] for x in r.iter_lines() if x.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        return [json.loads(x) for x in lines[:-1]]

    plain = chunks(body)
    assert not any("trace" in (c.get("w2s") or {}) or "traces" in (c.get("w2s") or {})
                   for c in plain)
    traced_body = {**body, "w2s": {**body["w2s"], "trace": True}}
    traced = chunks(traced_body)
    rounds = [c["w2s"]["trace"] for c in traced if "trace" in (c.get("w2s") or {})]
    assert all(c["choices"] == [] for c in traced if "trace" in (c.get("w2s") or {}))
    [final] = traced[-1]["w2s"]["traces"]
    nodes = {n["id"]: n for r in rounds for n in r["nodes"]}
    for r in rounds:
        for k in r["kept"]:
            nodes[k]["kept"] = True
    assert list(nodes.values()) == final["nodes"] and len(final["nodes"]) == 8
    text = "".join(c["choices"][0]["text"] for c in traced if c["choices"])
    assert trace.path_text(final, final["answer"]) == text
    whole = httpx.post(url, json=traced_body, headers=h, timeout=60).json()
    assert whole["w2s"]["traces"] == [final]
    assert httpx.post(url, json=body, headers=h, timeout=60).json()["w2s"].get("traces") is None


@pytest.mark.parametrize("return_all", [False, True])
def test_qalign_trace_is_its_chains(return_all: bool) -> None:
    """Each chain's start is a child of the root, each proposal (round s + 2 for step s) a
    child of the state it was cut from; a state proposed from or returned is kept, so with
    return_all the kept nodes are the starts and the accepted proposals exactly; the answer's
    path (taking back what each cut removed) spells the answer."""
    from w2s.params import QAlignParams

    knob = QAlignParams(steps=5, chains=3, beta=0.5)
    with w2s.tracing() as rec:
        [r] = get_decoder("qalign").run(ScriptedBackend(), CountGuide(), ["p"], knob, SAMPLING,
                                        return_all=return_all)
    [t] = rec.traces
    nodes = t["nodes"]
    assert len(nodes) == 3 * (5 + 1) and t["rounds"] is True
    assert [n["parent"] for n in nodes[:3]] == [0, 0, 0]
    assert [n["round"] for n in nodes] == [1] * 3 + [s + 2 for s in range(5) for _ in range(3)]
    by_id = {n["id"]: n for n in nodes}
    for n in nodes[3:]:
        assert by_id[n["parent"]]["round"] < n["round"] and by_id[n["parent"]]["kept"]
    accepted = round(r.stats["accept_rate"] * 5 * 3)
    kept = sum(n["kept"] for n in nodes)
    if return_all:
        assert kept == 3 + accepted
    else:
        assert 3 <= kept <= 3 + accepted
    assert trace.path_text(t, t["answer"]) == r.text
    assert all(n["score"] is not None for n in nodes)
