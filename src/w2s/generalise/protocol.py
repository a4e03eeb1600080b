"""The protocol of ``w2s generalise``, step by step, resumable.

Per training seed ``s`` (the splits are fixed by ``split_seed``):

- ``weak``: the weak model trained on weak-train's ground truth; it labels strong-train (soft
  labels, kept) and test;
- ``ceiling``: the strong model trained on strong-train's ground truth;
- ``intermediate-gt`` and ``intermediate-naive`` (with an intermediate model): its accuracy
  trained on ground truth and on the weak labels (the size axis);
- ``student-LABEL``, one per method: the strong model trained on strong-train's labels from
  the weak supervisor (naive, aux_conf, gce), from the intermediate model cross-fitted on them
  (bootstrap), or from its own in-context relabelling (refine).

Every step writes ``steps/seed-S/NAME.json`` (its test predictions, the labels it made, its
probe, its time and peak memory) atomically when it finishes, so a killed run loses at most the
step in flight, and a rerun does only what is missing. ``generalise.json`` names the run; a
folder that holds another run is refused, never mixed. Nothing is written before the config,
the data and the splits are checked.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from w2s.errors import W2SError
from w2s.generalise.config import Bootstrap, GeneraliseConfig, Naive, Refine
from w2s.generalise.items import Items, build_items
from w2s.generalise.losses import loss_fn
from w2s.generalise.measure import measured
from w2s.generalise.probe import Probe, train_probe
from w2s.generalise.sources import describe, load_labelled
from w2s.generalise.store import write_json

MANIFEST = "generalise.json"
Subset = tuple[str, "np.ndarray | None"]
"""Items of a split: ``(split name, row indices)``, all of them when the rows are None."""
ROLES = ("weak", "intermediate", "strong")
SMOLLM2 = Path.home() / ".cache" / "w2s" / "smollm2"


def resolve_models(cfg: GeneraliseConfig, base_dir: Path) -> dict[str, str]:
    """Each role's model folder (or hub id), resolved before anything is written."""
    from w2s.models.resolve import resolve_model

    out = {}
    for role in ROLES:
        ref = getattr(cfg.models, role)
        if ref is None:
            continue
        try:
            out[role] = resolve_model(ref, base_dir)
        except W2SError as e:
            hint = " (make it with `w2s zoo get smollm2`)" if "smollm2" in ref else ""
            raise W2SError(f"models.{role}: {e}{hint}") from None
    return out


@dataclass
class Run:
    """One run's state: the checked config, its items, its folder, and lazily its features."""

    cfg: GeneraliseConfig
    base_dir: Path
    out: Path
    items: Items
    paths: dict[str, str]
    log: Callable[[str], None]
    progress: Any = None
    about: list[str] = field(default_factory=list)
    """What the data and splits are (logged once the folder is claimed)."""
    _features: dict[str, np.ndarray] = field(default_factory=dict)
    _lm: Any = None

    # ------------------------------------------------------------------ inputs
    @property
    def pairwise(self) -> bool:
        return self.items.form == "pairwise"

    def features(self, role: str) -> np.ndarray:
        if role not in self._features:
            from w2s.generalise.features import cached_features

            p = self.cfg.probe
            feats, cost = cached_features(
                role, getattr(self.cfg.models, role), self.paths[role], self.items.texts,
                self.items.digest(), self.out / "features", pool=p.pool,
                max_tokens=p.max_tokens, batch=p.feature_batch, device=self.cfg.device,
                dtype=self.cfg.dtype, progress=self.progress)
            self.log(f"features of {role} ({getattr(self.cfg.models, role)}): "
                     f"{cost['texts']:,} texts x {cost['dim']}, {cost['seconds']:.0f} s, peak "
                     f"{cost['peak_mib']:.0f} MiB")
            self._features[role] = feats
        return self._features[role]

    def design(self, role: str, split: str) -> np.ndarray:
        """A split's inputs to a probe: a text's features, or A's minus B's for a pair."""
        f = self.features(role)
        sp = self.items.splits[split]
        return f[sp.a] if sp.b is None else f[sp.a] - f[sp.b]

    def truth(self, split: str) -> np.ndarray:
        return self.items.splits[split].y

    def texts(self, split: str) -> list[str]:
        return [self.items.texts[i] for i in self.items.splits[split].a]

    # ------------------------------------------------------------------ training
    def subset_x(self, role: str, subset: Subset) -> np.ndarray:
        split, rows = subset
        x = self.design(role, split)
        return x if rows is None else x[rows]

    def subset_texts(self, subset: Subset) -> list[str]:
        split, rows = subset
        texts = self.texts(split)
        return texts if rows is None else [texts[i] for i in rows]

    def train(self, role: str, on: Subset, targets: np.ndarray, method: Any, seed: int,
              predict: dict[str, Subset]) -> tuple[dict[str, np.ndarray], Probe | None]:
        """Train ``role`` on the items ``on`` for ``targets``; its probabilities of class 1 on
        each subset of ``predict``, and the probe (None when fine-tuned)."""
        loss = loss_fn(method)
        if self.cfg.train == "probe":
            p = self.cfg.probe
            probe = train_probe(self.subset_x(role, on), targets, loss, bias=not self.pairwise,
                                epochs=p.epochs, lr=p.lr, batch_size=p.batch_size,
                                weight_decay=p.weight_decay, seed=seed)
            return {k: probe.probs(self.subset_x(role, v)) for k, v in predict.items()}, probe
        from w2s.generalise.finetune import finetune, steps

        train_texts = self.subset_texts(on)
        bar = self.progress
        task = bar.add_task(f"fine-tune {role}", total=steps(len(train_texts),
                                                             self.cfg.finetune)) if bar else None
        try:
            out = finetune(self.paths[role], train_texts, targets, loss, self.cfg.finetune,
                           lr=self.cfg.finetune.lr_of(role), seed=seed, device=self.cfg.device,
                           predict={k: self.subset_texts(v) for k, v in predict.items()},
                           advance=(lambda n: bar.advance(task, n)) if bar else None)
        finally:
            if bar:
                bar.remove_task(task)
        return out, None

    def strong_lm(self) -> Any:
        if self._lm is None:
            from w2s.models.hf import HFModel

            self._lm = HFModel.load(self.paths["strong"], dtype=self.cfg.dtype,
                                    device=self.cfg.device)
        return self._lm

    # ------------------------------------------------------------------ steps
    def step(self, seed: int, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The record of step ``name`` of ``seed``: read when done, else run and written."""
        path = self.out / "steps" / f"seed-{seed}" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        with measured() as cost:
            rec = fn()
        rec = {"step": name, "seed": seed, **rec, "cost": cost}
        write_json(path, rec)
        extra = ""
        if "test" in rec:
            acc = float(((np.asarray(rec["test"]) >= 0.5) == (self.truth("test") >= 0.5)).mean())
            extra = f", test accuracy {acc:.3f}"
        self.log(f"seed {seed} {name}: {cost['seconds']:.1f} s, peak {cost['peak_mib']:.0f} "
                 f"MiB{extra}")
        return rec


def ALL(split: str) -> Subset:  # noqa: N802 - reads as a constant: every item of a split
    return (split, None)


def _r(x: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in x]


def _probe(p: Probe | None) -> dict[str, Any] | None:
    return None if p is None else {"w": _r(p.w), "b": round(p.b, 8)}


def label_accuracy(probs: np.ndarray, truth: np.ndarray) -> float:
    return float(((probs >= 0.5) == (truth >= 0.5)).mean())


# ---------------------------------------------------------------------- one seed
def run_seed(run: Run, seed: int) -> dict[str, dict[str, Any]]:
    """Every step of one training seed; the records by step name."""
    cfg, recs = run.cfg, {}
    truth_st = run.truth("strong_train")

    def weak() -> dict[str, Any]:
        probs, probe = run.train("weak", ALL("weak_train"), run.truth("weak_train"), Naive(),
                                 seed, {"strong_train": ALL("strong_train"),
                                        "test": ALL("test")})
        return {"model": "weak", "trained_on": "weak_train ground truth",
                "test": _r(probs["test"]), "labels": _r(probs["strong_train"]),
                "label_accuracy": label_accuracy(probs["strong_train"], truth_st),
                "probe": _probe(probe)}

    recs["weak"] = run.step(seed, "weak", weak)
    weak_labels = np.asarray(recs["weak"]["labels"])

    def ceiling() -> dict[str, Any]:
        probs, probe = run.train("strong", ALL("strong_train"), truth_st, Naive(), seed,
                                 {"test": ALL("test")})
        return {"model": "strong", "trained_on": "strong_train ground truth",
                "test": _r(probs["test"]), "probe": _probe(probe)}

    recs["ceiling"] = run.step(seed, "ceiling", ceiling)
    if "intermediate" in run.paths:
        for name, targets, what in (("intermediate-gt", truth_st, "ground truth"),
                                    ("intermediate-naive", weak_labels, "weak labels")):
            def inter(targets: np.ndarray = targets, what: str = what) -> dict[str, Any]:
                probs, _ = run.train("intermediate", ALL("strong_train"), targets, Naive(),
                                     seed, {"test": ALL("test")})
                return {"model": "intermediate", "trained_on": f"strong_train {what}",
                        "test": _r(probs["test"])}

            recs[name] = run.step(seed, name, inter)
    for method in cfg.methods:
        recs[f"student-{method.name()}"] = run.step(
            seed, f"student-{method.name()}",
            lambda method=method: _student(run, method, seed, weak_labels))
    return recs


def _student(run: Run, method: Any, seed: int, weak_labels: np.ndarray) -> dict[str, Any]:
    truth_st = run.truth("strong_train")
    targets, source, extra = weak_labels, "weak labels", {}
    if isinstance(method, Bootstrap):
        targets = _cross_fitted(run, method, seed, weak_labels)
        source = f"the intermediate model's labels ({method.folds}-fold cross-fitted)"
    elif isinstance(method, Refine):
        targets = _refined(run, method, seed)
        source = ("the strong model's in-context labels, zero-shot" if method.shots == 0 else
                  f"the strong model's in-context labels ({method.shots} "
                  f"{'weak' if method.labels == 'weak' else 'shuffled-label'} shots)")
    if targets is not weak_labels:
        extra = {"labels": _r(targets), "label_accuracy": label_accuracy(targets, truth_st)}
    loss_method = method if not isinstance(method, (Bootstrap, Refine)) else Naive()
    probs, probe = run.train("strong", ALL("strong_train"), targets, loss_method, seed,
                             {"test": ALL("test")})
    return {"model": "strong", "method": method.model_dump(), "trained_on":
            f"strong_train {source}", "test": _r(probs["test"]), "probe": _probe(probe),
            **extra}


def _cross_fitted(run: Run, method: Bootstrap, seed: int, weak_labels: np.ndarray
                  ) -> np.ndarray:
    """The intermediate model's labels of strong-train, each item labelled by a model trained
    (on the weak labels) on the other folds only."""
    n = len(weak_labels)
    fold = np.random.default_rng([seed, 7]).permutation(n) % method.folds
    out = np.empty(n)
    for k in range(method.folds):
        rows = np.flatnonzero(fold != k)
        probs, _ = run.train("intermediate", ("strong_train", rows), weak_labels[rows], Naive(),
                             seed, {"held": ("strong_train", np.flatnonzero(fold == k))})
        out[fold == k] = probs["held"]
    return out


def _refined(run: Run, method: Refine, seed: int) -> np.ndarray:
    """Strong-train's labels from the strong model in context (pairs: from its labels of each
    text, as ``sigmoid(logodds(A) - logodds(B))``)."""
    from w2s.generalise.refine import in_context_logodds, refined_probs

    sp = run.items.splits["strong_train"]
    weak_rec = json.loads((run.out / "steps" / f"seed-{seed}" / "weak.json").read_text())
    if sp.b is None:
        idx = sp.a
        weak_hard = (np.asarray(weak_rec["labels"]) >= 0.5).astype(int)
    else:  # the weak reward model's score of each text, cut at its median
        idx = np.unique(np.concatenate([sp.a, sp.b]))
        if weak_rec.get("probe") is None:
            raise W2SError("pairwise refinement needs the weak reward model's probe")
        reward = run.features("weak")[idx] @ np.asarray(weak_rec["probe"]["w"])
        weak_hard = (reward > np.median(reward)).astype(int)
    texts = [run.items.texts[i] for i in idx]
    lm = run.strong_lm()
    task = run.progress.add_task("refine in context", total=len(texts)) if run.progress else None
    try:
        logodds = in_context_logodds(lm, texts, weak_hard, method, seed,
                                     max_tokens=run.cfg.probe.max_tokens,
                                     advance=(lambda k: run.progress.advance(task, k))
                                     if task is not None else None)
    finally:
        if task is not None:
            run.progress.remove_task(task)
    if sp.b is None:
        return refined_probs(logodds, float(weak_hard.mean()))
    pos = {int(t): k for k, t in enumerate(idx)}
    a = logodds[[pos[int(t)] for t in sp.a]]
    b = logodds[[pos[int(t)] for t in sp.b]]
    return 1.0 / (1.0 + np.exp(-(a - b)))


# ---------------------------------------------------------------------- the folder
def open_folder(out: Path, identity: dict[str, Any], restart: bool) -> bool:
    """Claim ``out`` for this run; True when it already holds this run, finished."""
    if out.exists() and not out.is_dir():
        raise W2SError(f"--out {str(out)!r} is a file; give a folder")
    if restart and out.exists():
        shutil.rmtree(out)
    path = out / MANIFEST
    if path.is_file():
        try:
            had = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise W2SError(f"{path} is not valid JSON; use another --out, or --restart") from None
        stored = _steps_identity(had.get("identity"))
        if stored != identity:
            key = _first_difference((stored or {}).get("config", {}), identity["config"])
            raise W2SError(f"{out} holds another generalise run (its config differs at {key}); "
                           "use another --out, or --restart to discard it")
        return bool(had.get("done"))
    if out.exists() and any(out.iterdir()):
        raise W2SError(f"{out} is not empty and holds no generalise run; give an empty or new "
                       "folder")
    write_json(path, {"identity": identity, "done": False})
    return False


def _steps_identity(identity: Any) -> Any:
    """A stored identity as this version compares it: without a search section (which
    folders written before it was left out still hold)."""
    if isinstance(identity, dict) and isinstance(identity.get("config"), dict):
        return {**identity, "config": {k: v for k, v in identity["config"].items()
                                       if k != "search"}}
    return identity


def _first_difference(a: Any, b: Any, at: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{at}.{k}" if at else k)
    return at or "the top level"


def prepare(cfg: GeneraliseConfig, base_dir: Path, out: Path, log: Callable[[str], None]
            ) -> Run:
    """Everything checked before anything is written: models, data, splits."""
    paths = resolve_models(cfg, base_dir)
    data = load_labelled(cfg.data, base_dir)
    items = build_items(data, cfg)
    run = Run(cfg, base_dir, out, items, paths, log)
    run.about = [describe(data), items.describe()]
    return run


def reuse_features(run: Run, other: Path) -> list[str]:
    """Copy another run's feature files that this run would extract alike (same role, model,
    items and settings); the roles reused."""
    from w2s.generalise.features import matches

    if not (other / "features").is_dir():
        raise W2SError(f"--features-from {str(other)!r} holds no features/ of a generalise run")
    reused = []
    for role in run.paths:
        src = other / "features" / f"{role}.safetensors"
        dst = run.out / "features" / f"{role}.safetensors"
        p = run.cfg.probe
        if not dst.exists() and src.is_file() and matches(
                src, role, getattr(run.cfg.models, role), run.items.digest(), p.pool,
                p.max_tokens):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst.with_suffix(".tmp"))
            dst.with_suffix(".tmp").replace(dst)
            reused.append(role)
    return reused


def run_generalise(cfg: GeneraliseConfig, cfg_path: Path, out: Path, *, restart: bool = False,
                   show_progress: bool = True, log: Callable[[str], None] = print,
                   features_from: Path | None = None) -> dict[str, Any]:
    """Run (or resume) every step; write and return the report. ``features_from``: a finished
    run whose matching feature files are copied instead of extracted again."""
    from w2s.evaluate.run import exclusive, progress_bar
    from w2s.generalise.report import build_report, write_report

    base_dir = cfg_path.resolve().parent
    run = prepare(cfg, base_dir, out, log)
    identity = {**cfg.identity(base_dir), "items": run.items.digest()}
    open_folder(out, identity, restart)
    with exclusive(out / (MANIFEST + ".lock")), progress_bar(show_progress) as bar:
        if show_progress:  # log lines above the live bar, not through it
            run.progress = bar
            run.log = lambda m: bar.console.print(m, markup=False, highlight=False)
        for line in run.about:
            run.log(line)
        if features_from is not None:
            reused = reuse_features(run, features_from)
            run.log(f"features reused from {features_from}: {', '.join(reused) or 'none'}")
        write_json(out / "items.json", {
            "texts": len(run.items.texts), "form": run.items.form, "digest": run.items.digest(),
            "splits": {k: {"items": len(v), "positive": float(v.y.mean())}
                       for k, v in run.items.splits.items()}})
        if cfg.train == "probe":  # once per model, timed on their own
            for role in run.paths:
                run.features(role)
        records = {s: run_seed(run, s) for s in cfg.seed_list()}
        if run.pairwise:
            from w2s.generalise.reward import export_all

            export_all(run, records[cfg.seed_list()[0]])
        report = build_report(run, records)
        if cfg.search is not None:
            from w2s.generalise.search import run_search

            report["search"] = run_search(run, show_progress=show_progress, log=log)
        write_report(report, out)
    write_json(out / MANIFEST, {"identity": identity, "done": True})
    return report
