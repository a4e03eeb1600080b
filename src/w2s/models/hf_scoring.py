"""Scoring with :class:`~w2s.models.hf.HFModel`: teacher-forced log-probabilities of given
tokens after given prefixes (what a guide's pair and every log-likelihood need) and the full
next-token logits along a path (what exact per-token KL needs). A mixin: the model and its
forward pass are :mod:`w2s.models.hf`'s."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class Scoring:
    """Teacher-forced scoring (mixed into ``HFModel``)."""

    vocab_size: int
    batch_size: int

    @torch.inference_mode()
    def token_logprobs(self, prefixes: Sequence[Sequence[int]],
                       targets: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """log p(target_t | prefix, target_<t) for every target token; one tensor per row."""
        out: list[torch.Tensor] = []
        for logits, nxt, tgt in self._teacher_forced(prefixes, targets):
            lp = logits.gather(-1, nxt.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)  # (B, T-1)
            for i, t in enumerate(tgt):
                out.append(lp[i, lp.shape[1] - len(t):].cpu() if t else lp.new_zeros(0).cpu())
        return out

    @torch.inference_mode()
    def target_logits(self, prefixes: Sequence[Sequence[int]],
                      targets: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """The full next-token logits ``(len(target), V)`` at every target position (teacher
        forcing): what exact per-token KL along a path needs."""
        out: list[torch.Tensor] = []
        for logits, _, tgt in self._teacher_forced(prefixes, targets):
            for i, t in enumerate(tgt):
                out.append(logits[i, logits.shape[1] - len(t):, : self.vocab_size].cpu())
        return out

    def _teacher_forced(self, prefixes: Sequence[Sequence[int]],
                        targets: Sequence[Sequence[int]]):  # noqa: ANN202
        """Per batch: logits ``(B, n, V)`` predicting the last ``n`` tokens, those tokens
        ``(B, n)``, and the batch's targets (rows are left-padded, so targets end aligned)."""
        for lo in range(0, len(prefixes), self.batch_size):
            pre, tgt = prefixes[lo: lo + self.batch_size], targets[lo: lo + self.batch_size]
            seqs = [list(p) + list(t) for p, t in zip(pre, tgt)]
            ids, mask = self._left_pad(seqs)  # (B, T)
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            keep = max(len(t) for t in tgt) + 1  # only the positions that predict targets
            logits = self._forward(keep, input_ids=ids, attention_mask=mask,
                                   position_ids=pos).logits
            yield logits[:, -keep:-1].float(), ids[:, ids.shape[1] - keep + 1:], tgt

