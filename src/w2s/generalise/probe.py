"""Linear probes on frozen features: the fast path, the same trainer for every model.

The weak supervisor, the ceiling and every student are trained by this one loop (minibatch
AdamW, features standardised on the training set, an L2 penalty on the weights) and differ
only in their targets and loss, so PGR compares labels and losses, not optimisers. With
ground-truth targets and cross-entropy it is L2-regularised logistic regression: a test checks
it reaches scikit-learn's ``LogisticRegression`` solution.

A pairwise item's feature is ``f(A) - f(B)`` and its probe has no bias, so that
``P(A > B) = 1 - P(B > A)`` (Bradley-Terry with reward ``r(x) = w . f(x)``); features are then
scaled but not centred, which would add a bias back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Loss = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Probe:
    """``logit(x) = x . w + b`` on raw features (the standardisation folded in)."""

    w: np.ndarray
    b: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x.astype(np.float64) @ self.w + self.b

    def probs(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(x)))


def fit_logistic(z: np.ndarray, t: np.ndarray, loss: Loss, *, bias: bool, epochs: int,
                 lr: float, batch_size: int, l2: float, seed: int) -> tuple[np.ndarray, float]:
    """Minimise ``mean loss(z_i . w + b, t_i) + l2/2 |w|^2`` by minibatch Adam from zero;
    ``(w, b)``. The seed orders the minibatches (the start is always zero)."""
    x = torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(t, dtype=np.float32))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b] if bias else [w], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(y)
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for lo in range(0, n, batch_size):
            idx = order[lo: lo + batch_size]
            logit = x[idx] @ w + (b if bias else 0.0)  # (B,)
            obj = loss(logit, y[idx], step / total) + 0.5 * l2 * (w * w).sum()
            opt.zero_grad()
            obj.backward()
            opt.step()
            step += 1
    return w.detach().double().numpy(), float(b.detach()) if bias else 0.0


def train_probe(x: np.ndarray, t: np.ndarray, loss: Loss, *, bias: bool, epochs: int, lr: float,
                batch_size: int, weight_decay: float, seed: int) -> Probe:
    """A probe on raw features ``x`` (N, D) for soft targets ``t`` (N,)."""
    x = x.astype(np.float64)
    scale = x.std(0) if bias else np.sqrt((x * x).mean(0))
    scale = np.where(scale > 1e-12, scale, 1.0)
    shift = x.mean(0) if bias else np.zeros(x.shape[1])
    w, b = fit_logistic((x - shift) / scale, t, loss, bias=bias, epochs=epochs, lr=lr,
                        batch_size=batch_size, l2=weight_decay, seed=seed)
    w_raw = w / scale
    return Probe(w_raw, float(b - shift @ w_raw))
