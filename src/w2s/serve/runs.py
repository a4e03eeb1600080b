"""The eval-run browser of the playground: finished ``w2s eval`` runs under ``--runs``."""

from pathlib import Path

from w2s.serve import schema as S
from w2s.serve.errors import ApiError


def list_runs(runs_dir: Path | None) -> list[S.RunInfo]:
    if runs_dir is None or not runs_dir.is_dir():
        return []
    out = []
    for summary in sorted(runs_dir.rglob("summary.md")):
        folder = summary.parent
        name = folder.relative_to(runs_dir).as_posix()
        if name == ".":
            name = folder.name
        plots = [f"/w2s/runs/{name}/{p.name}" for p in sorted(folder.glob("*.png"))]
        out.append(S.RunInfo(name=name, summary_md=summary.read_text(encoding="utf-8")[:200_000],
                             plots=plots))
    return out


def run_file(runs_dir: Path | None, run: str, name: str) -> Path:
    if runs_dir is None:
        raise ApiError(404, "this server shows no eval runs (--runs)", kind="not_found_error")
    known = {r.name: r for r in list_runs(runs_dir)}
    if run not in known or not (name == "summary.md" or name.endswith(".png")):
        raise ApiError(404, f"no run file {run}/{name}", kind="not_found_error")
    path = (runs_dir / run / name) if (runs_dir / run).is_dir() else runs_dir / name
    if not path.is_file():
        raise ApiError(404, f"no run file {run}/{name}", kind="not_found_error")
    return path

