"""Guides: things that score a (partial or complete) response to a prompt.

The central guide is the tuned/untuned **pair** (Weak-to-Strong Search, Zhou et al. 2024):

    r(x, y) = sum_t [ log pi_tuned(y_t | x, y_<t) - log pi_untuned(y_t | x, y_<t) ]

Each model of the pair formats the prompt with its *own* template and tokenizes the response
text with its *own* tokenizer, so the pair may use a different vocabulary from the base model
(the guide sees text, never the base's token ids). A **reward model** guide scores text with a
sequence-classification head. Guides combine with ``+`` and scalar ``*`` into a weighted sum.

Guides hold no per-request state, so one guide can serve concurrent requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from w2s.errors import W2SError
from w2s.models.hf import HFModel, _load_error, load_tokenizer, resolve_device, resolve_dtype


class ScoringSession:
    """Scores a search's candidates round after round (one session per decode call).

    Each candidate has a key (any hashable) and a parent key; the roots are the prompts' empty
    responses. This default re-scores every candidate's whole text; a guide that can do better
    (the pair: only the new tokens, from a KV cache) overrides :meth:`Guide.session`. Sessions
    hold the per-request state, so guides themselves stay stateless values.
    """

    def __init__(self, guide: Guide, prompts: Sequence[str], roots: Sequence[Any]) -> None:
        self.guide, self.prompts = guide, list(prompts)

    def score(self, owners: Sequence[int], parents: Sequence[Any], keys: Sequence[Any],
              texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        """Scores ``(B,)`` of candidates ``keys`` (children of ``parents``, for prompts
        ``owners``) with response ``texts``, and the number of tokens the guide processed."""
        return self.guide.score_with_cost([self.prompts[i] for i in owners], texts, ended)

    def keep(self, keys: Sequence[Any]) -> None:
        """Only these candidates will have children; forget the others."""


class Guide:
    """Base class: ``score(prompts, responses) -> (B,)`` float tensor, higher is better."""

    def session(self, prompts: Sequence[str], roots: Sequence[Any]) -> ScoringSession:
        """A scoring session for one search over ``prompts`` (root keys: empty responses)."""
        return ScoringSession(self, prompts, roots)

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              ended: Sequence[bool] | None = None) -> torch.Tensor:
        """Scores ``(B,)``. ``ended[i]`` marks a complete response (it ended by EOS or a stop
        string): language-model guides then also score the end of the sequence."""
        return self.score_with_cost(prompts, responses, ended)[0]

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        """Scores ``(B,)`` and the number of response tokens the guide's models processed."""
        raise NotImplementedError

    def __add__(self, other: Guide) -> WeightedGuide:
        if not isinstance(other, Guide):
            return NotImplemented
        return WeightedGuide(_terms(self) + _terms(other))

    def __mul__(self, weight: float) -> WeightedGuide:
        if not isinstance(weight, (int, float)):
            return NotImplemented
        return WeightedGuide([(w * float(weight), g) for w, g in _terms(self)])

    __rmul__ = __mul__


def _terms(g: Guide) -> list[tuple[float, Guide]]:
    return list(g.terms) if isinstance(g, WeightedGuide) else [(1.0, g)]


class PairGuide(Guide):
    """Tuned/untuned pair: the log-likelihood ratio of the response, summed over its tokens."""

    def __init__(self, tuned: HFModel, untuned: HFModel) -> None:
        self.tuned = tuned
        self.untuned = untuned

    @classmethod
    def load(cls, tuned: str, untuned: str, *, dtype: str = "auto", device: str = "cpu",
             chat: bool = False) -> PairGuide:
        return cls(HFModel.load(tuned, dtype=dtype, device=device, chat=chat),
                   HFModel.load(untuned, dtype=dtype, device=device, chat=chat))

    @staticmethod
    def targets(model: HFModel, responses: Sequence[str],
                ended: Sequence[bool] | None) -> list[list[int]]:
        """Response tokens in ``model``'s tokenization; a complete response also gets EOS, so
        the score is the log-ratio of the whole sequence, its end included."""
        return PairGuide.with_eos(model, model.encode_responses(responses), ended)

    @staticmethod
    def with_eos(model: HFModel, ids: Sequence[list[int]],
                 ended: Sequence[bool] | None) -> list[list[int]]:
        """``ids`` (response tokens), with EOS appended to the complete ones (new lists)."""
        eos = model.tokenizer.eos_token_id
        ended = ended if ended is not None else [False] * len(ids)
        return [list(x) + ([eos] if e and eos is not None else []) for x, e in zip(ids, ended)]

    @classmethod
    def _logprob_sums(cls, model: HFModel, prompts: Sequence[str], responses: Sequence[str],
                      ended: Sequence[bool] | None) -> tuple[torch.Tensor, int]:
        prefixes = [model.encode_prompt(p) for p in prompts]
        targets = cls.targets(model, responses, ended)
        per_token = model.token_logprobs(prefixes, targets)
        sums = torch.tensor([float(t.double().sum()) for t in per_token], dtype=torch.float64)
        return sums, sum(len(t) for t in targets)

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        tuned, n1 = self._logprob_sums(self.tuned, prompts, responses, ended)
        untuned, n2 = self._logprob_sums(self.untuned, prompts, responses, ended)
        return (tuned - untuned).float(), n1 + n2

    def session(self, prompts: Sequence[str], roots: Sequence[Any]) -> ScoringSession:
        return PairSession(self, prompts, roots)


class PairSession(ScoringSession):
    """Incremental pair scoring: each model scores only each child's new tokens, from the KV
    cache of its parent, and tokenizes only a tail of each child's text after its parent's
    (see :mod:`w2s.models.hf_scoring`). Models with the same tokenization share one
    tokenizer state; a model whose ``encode_responses`` is overridden tokenizes whole texts
    with it, as :meth:`PairGuide.targets` does."""

    def __init__(self, guide: PairGuide, prompts: Sequence[str], roots: Sequence[Any]) -> None:
        from w2s.models.hf_scoring import IncrementalScorer

        super().__init__(guide, prompts, roots)
        self.models = (guide.tuned, guide.untuned)
        self.scorers = [IncrementalScorer(m) for m in self.models]
        self.states: list[Any] = [sc.open([m.encode_prompt(p) for p in prompts])
                                  for sc, m in zip(self.scorers, self.models)]
        self.encoders = self._encoders(len(roots))
        self.row_of = {k: i for i, k in enumerate(roots)}

    def _encoders(self, roots: int) -> list[Any]:
        """Per model, its :class:`ResponseTokenizer` (one per distinct tokenization), or None
        where the model's own ``encode_responses`` must be used."""
        from w2s.models.hf_scoring import ResponseTokenizer, same_tokenization

        out: list[Any] = []
        for m in self.models:
            if type(m).encode_responses is not HFModel.encode_responses:
                out.append(None)
                continue
            twin = next((e for e in out if e is not None
                         and same_tokenization(e.tok, m.tokenizer)), None)
            out.append(twin or ResponseTokenizer(m.tokenizer, roots))
        return out

    def _response_ids(self, rows: list[int], texts: Sequence[str]
                      ) -> list[tuple[list[list[int]], list[int] | None]]:
        """Per model: each child's response tokens and how many lead its parent's unchanged."""
        done: dict[int, tuple[list[list[int]], list[int] | None]] = {}
        out = []
        for m, enc in zip(self.models, self.encoders):
            if enc is None:
                out.append((m.encode_responses(texts), None))
                continue
            if id(enc) not in done:  # a shared encoder advances once per round
                done[id(enc)] = enc.encode(rows, texts)
            out.append(done[id(enc)])
        return out

    def score(self, owners: Sequence[int], parents: Sequence[Any], keys: Sequence[Any],
              texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        rows = [self.row_of[k] for k in parents]
        sums, tokens = [], 0
        encoded = self._response_ids(rows, texts)
        for n, (sc, m) in enumerate(zip(self.scorers, self.models)):
            ids, shared = encoded[n]
            self.states[n], s, fed = sc.extend(self.states[n], rows,
                                               PairGuide.with_eos(m, ids, ended), shared)
            sums.append(torch.tensor(s, dtype=torch.float64))
            tokens += fed
        self.row_of = {k: i for i, k in enumerate(keys)}
        return (sums[0] - sums[1]).float(), tokens

    def keep(self, keys: Sequence[Any]) -> None:
        # rows are gathered by the next extend (one cache copy per round, not two)
        self.row_of = {k: self.row_of[k] for k in keys}


class RewardModelGuide(Guide):
    """A ``transformers`` sequence-classification model as the guide.

    With one output the score is that logit; with several it is the log-probability of
    ``label`` (default: the last label, e.g. "positive" in a negative/positive classifier).
    ``chat=True`` formats (prompt, response) as a user and an assistant turn.
    """

    def __init__(self, model: Any, tokenizer: Any, *, chat: bool = False, label: int | None = None,
                 name: str = "", batch_size: int = 32) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chat = chat
        self.name = name or type(model).__name__
        self.batch_size = batch_size
        n = model.config.num_labels
        self.label = (n - 1) if label is None else label
        if not 0 <= self.label < n:
            raise W2SError(f"label must be in [0, {n}) for {self.name!r}, got {label}")
        if chat and not getattr(tokenizer, "chat_template", None):
            raise W2SError(f"reward model {self.name!r} has no chat template; drop chat")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_id = pad
        if model.config.pad_token_id is None:
            model.config.pad_token_id = pad

    @classmethod
    def load(cls, path: str, *, dtype: str = "auto", device: str = "cpu", chat: bool = False,
             label: int | None = None) -> RewardModelGuide:
        from transformers import AutoModelForSequenceClassification

        dev = resolve_device(device)
        tok = load_tokenizer(path)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                path, dtype=resolve_dtype(dtype, dev))
        except Exception as e:  # noqa: BLE001
            raise _load_error(path, e) from None
        return cls(model.to(dev), tok, chat=chat, label=label, name=path)

    def _encode(self, prompt: str, response: str) -> list[int]:
        tok = self.tokenizer
        if self.chat:
            text = tok.apply_chat_template([{"role": "user", "content": prompt},
                                            {"role": "assistant", "content": response}],
                                           tokenize=False)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(prompt + response, add_special_tokens=True)["input_ids"])

    @torch.inference_mode()
    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        seqs = [self._encode(p, r) for p, r in zip(prompts, responses)]
        dev = next(self.model.parameters()).device
        scores: list[torch.Tensor] = []
        for lo in range(0, len(seqs), self.batch_size):
            chunk = seqs[lo: lo + self.batch_size]
            width = max(len(s) for s in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, s in enumerate(chunk):  # right padding: the head reads the last real token
                ids[i, : len(s)] = torch.tensor(s)
                mask[i, : len(s)] = 1
            logits = self.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits.float()
            if logits.shape[-1] == 1:
                scores.append(logits[:, 0].cpu())
            else:
                scores.append(logits.log_softmax(-1)[:, self.label].cpu())
        return torch.cat(scores), sum(len(s) for s in seqs)


class WeightedGuide(Guide):
    """A weighted sum of guides: ``sum_i w_i * guide_i``."""

    def __init__(self, terms: Sequence[tuple[float, Guide]]) -> None:
        if not terms:
            raise W2SError("a weighted guide needs at least one term")
        self.terms = [(float(w), g) for w, g in terms]

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        total = torch.zeros(len(prompts), dtype=torch.float32)
        tokens = 0
        for w, g in self.terms:
            s, n = g.score_with_cost(prompts, responses, ended)
            total += w * s.float()
            tokens += n
        return total, tokens

    def session(self, prompts: Sequence[str], roots: Sequence[Any]) -> ScoringSession:
        return WeightedSession(self, prompts, roots)


class WeightedSession(ScoringSession):
    """One session per term; the score is the weighted sum of theirs."""

    def __init__(self, guide: WeightedGuide, prompts: Sequence[str], roots: Sequence[Any]) -> None:
        super().__init__(guide, prompts, roots)
        self.parts = [(w, g.session(prompts, roots)) for w, g in guide.terms]

    def score(self, owners: Sequence[int], parents: Sequence[Any], keys: Sequence[Any],
              texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        total, tokens = torch.zeros(len(keys), dtype=torch.float32), 0
        for w, sess in self.parts:
            s, n = sess.score(owners, parents, keys, texts, ended)
            total += w * s.float()
            tokens += n
        return total, tokens

    def keep(self, keys: Sequence[Any]) -> None:
        for _, sess in self.parts:
            sess.keep(keys)
