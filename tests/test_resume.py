"""Nothing users rely on changed: an eval folder written before the request model (by commit
3799909, with ``tests/data/resume/cfg.yaml``) resumes with nothing to redo -- every method's
hash is the same, so no row is recomputed or written twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from w2s.evaluate.config import load_config
from w2s.evaluate.run import run_eval

DATA = Path(__file__).resolve().parent / "data" / "resume"


def test_an_eval_folder_written_before_the_request_model_resumes_with_nothing_to_redo(tmp_path):
    old = (DATA / "results.jsonl").read_text(encoding="utf-8")
    cfg = load_config(str(DATA / "cfg.yaml"))
    hashes = {json.loads(line)["hash"] for line in old.splitlines()}
    assert {m.hash for m in cfg.methods} == hashes  # the same methods, the same hashes
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(DATA / "results.jsonl", out / "results.jsonl")
    rows = run_eval(cfg, out, show_progress=False)
    assert (out / "results.jsonl").read_text(encoding="utf-8") == old  # nothing was appended
    assert len(rows) == len(old.splitlines()) == 2 * len(cfg.methods)
