"""Fuzzing ``w2s serve`` from its own OpenAPI schema with schemathesis: well over 1,000
generated requests (valid and invalid) against a real server process, and not one 5xx, not
one undocumented status code, content type or response body."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_schemathesis_finds_no_server_error_or_schema_violation(tmp_path):
    from conftest import start_w2s_serve

    # small limits keep each valid decode to milliseconds on the zoo
    proc, srv = start_w2s_serve(tmp_path, "--max-tokens-limit", "6", "--max-rows", "16",
                                "--max-n", "2", "--runs", str(tmp_path / "runs"))
    try:
        exe = Path(sys.executable).with_name("schemathesis")
        out = subprocess.run(
            [str(exe), "run", srv.url + "/openapi.json", "-H",
             f"Authorization: Bearer {srv.api_key}", "--max-examples", "40", "--seed", "1",
             "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
             "response_schema_conformance", "--request-timeout", "60",
             "--generation-database", "none", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
        report = out.stdout + out.stderr
        assert out.returncode == 0, report[-4000:]
        m = re.search(r"(\d+) generated, (\d+) passed", report)
        assert m, report[-2000:]
        assert int(m.group(1)) >= 1000 and m.group(1) == m.group(2), report[-2000:]
        assert "500 Internal" not in Path(srv.log).read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
