"""A pairwise probe exported as a reward model: the student becomes a guide.

A probe on last-token features scores a text as ``r(x) = w . h_last(x)``: exactly what a
``transformers`` sequence classifier with one output computes (its head is a bias-free linear
layer on the last token's final hidden state). So the export is the strong model's own
backbone with ``w`` as that head: ``AutoModelForSequenceClassification.from_pretrained``
loads it, and :class:`~w2s.guides.reward_model.RewardModelGuide` (``--reward-model DIR``,
``guide: {reward_model: DIR}``) scores with it; a test checks its scores are the probe's. A
probe's bias (binary form) is dropped: a constant shifts every score alike, and guides rank.

Beside the weights, ``w2s_reward.json`` says what the model was trained on and for which
eval task (``reward_for``), so using it on another task is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2s.errors import W2SError
from w2s.generalise.probe import Probe
from w2s.guides.reward_model import REWARD_CARD


def export_probe(model_path: str, probe: Probe, out: Path, card: dict[str, Any]) -> Path:
    """Write ``model_path``'s backbone with ``probe`` as its one-output head to ``out``."""
    from w2s.generalise.classifier import new_classifier

    model, tok = new_classifier(model_path)
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or head.weight.shape != (1, len(probe.w)):
        raise W2SError(f"cannot export a reward model on {model_path!r}: its classifier head "
                       "is not one linear layer on the last hidden state")
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(probe.w, dtype=torch.float32).view(1, -1))
        if head.bias is not None:
            head.bias.zero_()
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / REWARD_CARD).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def export_all(run: Any, records: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """The first seed's weak, ceiling and student reward models, under
    ``OUT/reward-models/NAME`` (each written whole; done ones are kept)."""
    cfg = run.cfg
    if cfg.train != "probe" or cfg.probe.pool != "last":
        run.log("reward models not exported: they are probes on the last token (train: probe, "
                "probe.pool: last)")
        return {}
    out: dict[str, Path] = {}
    folder = run.out / "reward-models"
    for name, rec in records.items():
        if rec.get("probe") is None or name.startswith("intermediate"):
            continue
        role = rec["model"]
        path = folder / name
        out[name] = path
        if (path / REWARD_CARD).is_file():
            continue
        probe = Probe(np.asarray(rec["probe"]["w"]), float(rec["probe"]["b"]))
        card = {"reward_for": cfg.reward_for, "trained_by": "w2s generalise",
                "model": getattr(cfg.models, role), "role": name, "seed": rec["seed"],
                "trained_on": rec["trained_on"], "data": cfg.data.model_dump(mode="json"),
                "form": cfg.form, "pool": cfg.probe.pool}
        export_probe(run.paths[role], probe, path, card)
        run.log(f"reward model {name}: {path}")
    return out
