"""The training losses of weak-to-strong generalisation, on one logit per item.

An item's logit ``z`` gives ``p = sigmoid(z)``, the probability of class 1 (positive; in the
pairwise form, "A is rated above B"). Targets ``t`` are soft: the weak supervisor's
probability of class 1, or 0/1 ground truth. All losses are means over the batch.

- **cross-entropy** (naive weak-to-strong, and the ceiling on ground truth):
  ``CE(p, t) = -t log p - (1 - t) log(1 - p)``.
- **auxiliary confidence** (Burns et al. 2023, eq. 1):
  ``(1 - a) CE(p, t) + a CE(p, hard(p))``, where ``hard(p)`` is the student's own prediction
  thresholded so that the batch's share of hard positives equals the weak labels' share
  (``mean(t)``; the paper's adaptive threshold), held fixed (no gradient through it). ``a``
  warms up linearly from 0 to ``alpha`` over the first ``warmup`` of training (Burns et al.:
  0.75, the first fifth), so the student first learns the weak labels, then trusts itself.
  Since CE is linear in its target, this is ``CE(p, (1 - a) t + a hard(p))``.
- **generalised cross-entropy** (Zhang & Sabuncu 2018, a noise-robust loss):
  ``t (1 - p^q) / q + (1 - t) (1 - (1 - p)^q) / q``; ``q -> 0`` is CE, ``q = 1`` the mean
  absolute error, which ignores how confidently wrong a label is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from w2s.generalise.config import GCE, AuxConf


def cross_entropy(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(z, t)


def aux_weight(step_frac: float, alpha: float, warmup: float) -> float:
    """``a`` at this point of training: ``alpha * min(1, step_frac / warmup)``."""
    if warmup <= 0:
        return alpha
    return alpha * min(1.0, step_frac / warmup)


def hard_self_labels(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The student's own 0/1 predictions, thresholded at the quantile of ``p`` that makes the
    share of ones equal to the targets' mean (the weak labels' class balance)."""
    share = float(t.mean())
    threshold = torch.quantile(p.detach().float(), 1.0 - share)
    return (p.detach() >= threshold).to(t.dtype)


def aux_confidence(z: torch.Tensor, t: torch.Tensor, step_frac: float, alpha: float,
                   warmup: float) -> torch.Tensor:
    a = aux_weight(step_frac, alpha, warmup)
    hard = hard_self_labels(torch.sigmoid(z), t)
    return cross_entropy(z, (1 - a) * t + a * hard)


def generalised_ce(z: torch.Tensor, t: torch.Tensor, q: float) -> torch.Tensor:
    p = torch.sigmoid(z)
    return (t * (1 - p.pow(q)) / q + (1 - t) * (1 - (1 - p).pow(q)) / q).mean()


def loss_fn(method: object):  # noqa: ANN201
    """``loss(z, t, step_frac)`` for a method's config (the others train with CE)."""
    if isinstance(method, AuxConf):
        return lambda z, t, f: aux_confidence(z, t, f, method.alpha, method.warmup)
    if isinstance(method, GCE):
        return lambda z, t, f: generalised_ce(z, t, method.q)
    return lambda z, t, f: cross_entropy(z, t)
