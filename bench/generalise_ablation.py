"""Why the weak-to-strong methods do what they do: variants of a shipped generalise config.

Each variant is the shipped config (``movies`` by default) with some keys changed, run with
``w2s generalise`` into its own folder under ``--out`` with ``--features-from`` the finished
base run, so features are extracted once (a role played by another model is extracted anew). Printed: each variant's weak, ceiling and
students' accuracy, PGR with its interval, and each student minus naive in standard errors.

Variants (``--only NAME`` runs a subset):

- ``epochs-2``, ``epochs-5``: probes trained 2 or 5 epochs instead of 20 (Burns et al.
  fine-tune for 2: a student that trains longer fits more of the weak labels' errors);
- ``strong-zoo-base``: the strong model is the zoo's 6.2 M base instead of SmolLM2-135M (the
  scale axis: Burns et al. find the auxiliary loss helps large students);
- ``weak-zoo-base``: the weak supervisor is the zoo's 6.2 M base (a better supervisor);
- ``every-method-3-seeds``: every method, 3 training seeds (for the ``finetune`` config,
  whose shipped form is one seed of naive and auxiliary confidence);
- ``refine-controls``: refinement without demonstrations (zero-shot), and with demonstrations
  whose weak labels are shuffled among the texts (the same balance, no information).

    python bench/generalise_ablation.py --base runs/movies --out runs/ablation
    python bench/generalise_ablation.py --config finetune --base runs/finetune \
        --out runs/ablation-finetune --only every-method-3-seeds
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "src" / "w2s" / "configs" / "generalise"
W2S = [sys.executable, "-m", "w2s.cli"]
REFINE = {"method": "refine", "shots": 8, "template": "Review: {text}\nSentiment:"}
VARIANTS = {
    "epochs-2": {"probe": {"epochs": 2}, "methods": ["naive", "aux_conf", "gce"]},
    "epochs-5": {"probe": {"epochs": 5}, "methods": ["naive", "aux_conf", "gce"]},
    "strong-zoo-base": {"models": {"strong": "zoo:base", "intermediate": None},
                        "methods": ["naive", "aux_conf", "gce", REFINE]},
    "weak-zoo-base": {"models": {"weak": "zoo:base", "intermediate": None},
                      "methods": ["naive", "aux_conf", "gce"]},
    "every-method-3-seeds": {"seeds": 3, "methods": ["naive", "aux_conf", "gce", "bootstrap",
                                                     REFINE]},
    "refine-controls": {"methods": [
        "naive", {**REFINE, "label": "zero-shot", "shots": 0},
        {**REFINE, "label": "shuffled", "labels": "shuffled"}]},
}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
            out[k] = {a: b for a, b in out[k].items() if b is not None}
        else:
            out[k] = v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="movies", help="a shipped generalise config")
    ap.add_argument("--base", type=Path, required=True,
                    help="a finished `w2s generalise CONFIG` folder (its features are reused)")
    ap.add_argument("--out", type=Path, default=Path("runs/generalise-ablation"))
    ap.add_argument("--only", nargs="*", choices=list(VARIANTS),
                    default=[v for v in VARIANTS if v != "every-method-3-seeds"])
    a = ap.parse_args()
    base = yaml.safe_load((SHIPPED / f"{a.config}.yaml").read_text())
    reports = {"shipped": json.loads((a.base / "report.json").read_text())}
    for name in a.only:
        cfg = merge(base, VARIANTS[name])
        cfg["name"] = f"{base['name']}-{name}"
        folder = a.out / name
        path = a.out / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        if not (folder / "report.json").is_file():
            reuse = ["--features-from", str(a.base)] if (a.base / "features").is_dir() else []
            subprocess.run([*W2S, "generalise", str(path), "--out", str(folder), *reuse,
                            "--no-progress"], check=True)
        reports[name] = json.loads((folder / "report.json").read_text())
    print_table(reports)


def print_table(reports: dict[str, dict]) -> None:
    print(f"{'variant':<18} {'student':<12} {'weak':>6} {'ceiling':>8} {'student':>8} "
          f"{'PGR [95% interval]':>24} {'- naive (SE)':>16}")
    for name, r in reports.items():
        s = r["scores"]
        for st, row in r["pgr"]["students"].items():
            p = row["pgr"]
            d = row.get("minus_student-naive")
            diff = "" if d is None else f"{d['value']:+.3f} ({d['z']:+.1f})"
            print(f"{name:<18} {st.removeprefix('student-'):<12} "
                  f"{s['weak']['accuracy']['mean']:6.3f} {s['ceiling']['accuracy']['mean']:8.3f} "
                  f"{row['accuracy']:8.3f} {p['value']:+7.3f} [{p['low']:+.3f}, {p['high']:+.3f}]"
                  f" {diff:>16}")


if __name__ == "__main__":
    main()
