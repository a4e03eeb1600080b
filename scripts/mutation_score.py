"""Per-module mutation score table for `make mutants`, read from mutmut's own result files.

Why this exists: mutmut 3 prints one running total for the whole run (and `mutmut results`
lists only the names of the mutants that were not killed), but a baseline has to be read, and
compared, module by module. mutmut keeps each mutated file's verdicts in
``mutants/<source path>.meta`` (JSON, ``exit_code_by_key``: mutant name -> exit code of its
test run, null while not yet tested); this script turns those into one row per module:
killed / total, the score (killed / total, and killed / checked while a run is unfinished), and
how many survived, timed out, had no tests or were not checked yet (a run stopped early). It
uses the standard library only, so it runs with any python and does not import mutmut, whose
internals change between releases.

    python scripts/mutation_score.py               # the table
    python scripts/mutation_score.py --markdown    # the same table as Markdown
    python scripts/mutation_score.py --survivors   # also list the survivors, timeouts, no tests
    python scripts/mutation_score.py --names       # only the survivors' names, one a line

Then `mutmut show <name>` prints one mutant's diff. mutmut never re-tests a mutant that already
has a verdict, so after adding tests re-check the survivors by name:
``mutmut run $(python scripts/mutation_score.py --names)`` (or delete mutants/ for a fresh run).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3.8's exit code -> status (mutmut/stats.py: status_by_exit_code); others are suspicious
STATUS = {
    None: "not checked",
    0: "survived",
    1: "killed",
    3: "killed",  # pytest internal error while the mutant is active counts as a kill
    2: "interrupted",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "type check",
    -9: "segfault",
    -11: "segfault",
}
COLUMNS = ["survived", "timeout", "no tests", "not checked"]
LISTED = ["survived", "timeout", "no tests", "suspicious", "segfault", "interrupted"]


def only_mutate(root: Path) -> list[str]:
    """The ``only_mutate`` globs of ``[tool.mutmut]``, so files dropped from it do not count."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: count every result file
        return []
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    return list(data.get("tool", {}).get("mutmut", {}).get("only_mutate", []))


def load(root: Path) -> dict[str, dict[str, int | None]]:
    """Source path -> {mutant name: exit code} for every mutated file with results."""
    globs = only_mutate(root)
    results = {}
    for meta in sorted((root / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(root / "mutants").as_posix()[: -len(".meta")]
        if not (root / source).is_file():
            continue  # a file since deleted or renamed
        if globs and not any(fnmatch.fnmatch(source, g) for g in globs):
            continue
        codes = json.loads(meta.read_text("utf-8"))["exit_code_by_key"]
        if codes:
            results[source] = codes
    return results


def function_of(name: str) -> str:
    """``w2s.guides.xǁPairGuideǁscore__mutmut_3`` -> ``PairGuide.score``."""
    mangled = name.rsplit(".", 1)[-1].partition("__mutmut_")[0]
    if mangled.startswith("x_"):
        return mangled[2:]
    return ".".join(part for part in mangled[1:].split("ǁ") if part)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--survivors", action="store_true",
                    help="list every mutant that was not killed, by module and function")
    ap.add_argument("--names", action="store_true",
                    help="print only the names of the surviving mutants, one a line")
    args = ap.parse_args(argv)

    results = load(args.root)
    if not results:
        print("no mutation results under mutants/: run `make mutants` first", file=sys.stderr)
        return 1
    if args.names:
        for codes in results.values():
            for name, code in codes.items():
                if STATUS.get(code, "suspicious") == "survived":
                    print(name)
        return 0

    head = ["module", "killed/total", "score", "of checked", *COLUMNS]
    rows = []
    grand: Counter[str] = Counter()
    for source, codes in results.items():
        counts = Counter(STATUS.get(code, "suspicious") for code in codes.values())
        grand += counts
        grand["total"] += len(codes)
        rows.append([source, counts, len(codes)])
    rows.append(["TOTAL", grand, grand["total"]])

    table = []
    for source, counts, total in rows:
        checked = total - counts["not checked"]
        score = f"{100 * counts['killed'] / total:.1f}%" if total else "-"
        of_checked = f"{100 * counts['killed'] / checked:.1f}%" if checked else "-"
        table.append([source, f"{counts['killed']}/{total}", score, of_checked,
                      *(str(counts[c]) for c in COLUMNS)])
    other = sum(grand[s] for s in ("suspicious", "segfault", "interrupted", "skipped", "type check"))

    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for r in table:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *table)]
        line = lambda r: "  ".join(  # noqa: E731
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        print(line(head))
        print("  ".join("-" * w for w in widths))
        for r in table[:-1]:
            print(line(r))
        print("  ".join("-" * w for w in widths))
        print(line(table[-1]))
    if other:
        print(f"\n{other} mutant(s) suspicious / segfault / interrupted / skipped: "
              "see --survivors, `mutmut show NAME`")
    if grand["not checked"]:
        print(f"\n{grand['not checked']} mutant(s) not checked yet: rerun `make mutants` to resume")

    if args.survivors:
        for source, codes in results.items():
            listed = [(STATUS.get(c, "suspicious"), n) for n, c in codes.items()
                      if STATUS.get(c, "suspicious") in LISTED]
            if not listed:
                continue
            print(f"\n{source}")
            listed.sort(key=lambda x: (LISTED.index(x[0]), x[1].rpartition("_")[0],
                                       int(x[1].rpartition("_")[2])))
            for status, name in listed:
                print(f"  {status:<11} {function_of(name):<40} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
