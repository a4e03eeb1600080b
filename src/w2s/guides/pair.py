"""The tuned/untuned pair as a guide (Weak-to-Strong Search, Zhou et al. 2024):

    r(x, y) = sum_t [ log pi_tuned(y_t | x, y_<t) - log pi_untuned(y_t | x, y_<t) ]

Each model of the pair formats the prompt with its *own* template and tokenizes the response
text with its *own* tokenizer, so the pair may use a different vocabulary from the base model
(the guide sees text, never the base's token ids). During search, :class:`PairSession` scores
only each child's new tokens (:mod:`w2s.guides.incremental`, :mod:`w2s.guides.tail_tokenizer`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from w2s.errors import W2SError
from w2s.guides.base import Guide, ScoringSession
from w2s.guides.incremental import IncrementalScorer
from w2s.guides.tail_tokenizer import ResponseTokenizer, same_tokenization
from w2s.logits import same_vocabulary
from w2s.models.backends import load_model
from w2s.models.base import Backend, LogitsBackend, ParamCount
from w2s.models.hf import HFModel


def check_guide_model(model: HFModel, prompts: Sequence[str], max_new_tokens: int) -> None:
    """The base's check, for a guide's model (+1 for the end-of-sequence token it scores)."""
    if isinstance(model, Backend):  # a declared capability, not a probe
        try:
            model.check_prompts(prompts, max_new_tokens + 1)
        except W2SError as e:
            raise W2SError(f"guide: {e}") from None


def finite_scores(model: HFModel, sums: torch.Tensor) -> torch.Tensor:
    """``sums`` after refusing NaN or inf: a broken guide model must not rank candidates."""
    if not bool(torch.isfinite(sums).all()):
        raise W2SError(f"guide model {model.name!r} gives non-finite log-probabilities (NaN or "
                       "inf): its weights are broken or its dtype overflows")
    return sums


class PairGuide(Guide):
    """Tuned/untuned pair: the log-likelihood ratio of the response, summed over its tokens."""

    def __init__(self, tuned: HFModel, untuned: HFModel) -> None:
        if (isinstance(tuned, LogitsBackend)  # per-token ratios need one vocabulary
                and isinstance(untuned, LogitsBackend) and not same_vocabulary(tuned, untuned)):
            raise W2SError(f"the tuned model {tuned.name!r} and the untuned model "
                           f"{untuned.name!r} have different vocabularies, so their "
                           "log-likelihood ratio means nothing; pair a tuned model with the "
                           "model it was tuned from")
        self.tuned = tuned
        self.untuned = untuned

    def expert(self) -> tuple[Any, Any | None]:
        return (self.tuned, self.untuned)

    def writer(self) -> Any:
        return self.tuned

    def n_params(self) -> int:
        """Each of the pair's models counts its own tokens: their mean size."""
        sizes = [m.n_params if isinstance(m, ParamCount) else 0
                 for m in (self.tuned, self.untuned)]
        return round(sum(sizes) / 2)

    @classmethod
    def load(cls, tuned: str | os.PathLike[str], untuned: str | os.PathLike[str], *,
             dtype: str = "auto", device: str = "auto", chat: bool = False) -> PairGuide:
        """Each model from a folder, ``zoo:ROLE``, a hub id, or ``REF@URL`` (served by an
        engine)."""
        return cls(load_model(os.fspath(tuned), dtype=dtype, device=device, chat=chat),
                   load_model(os.fspath(untuned), dtype=dtype, device=device, chat=chat))

    def check_prompts(self, prompts: Sequence[str], max_new_tokens: int) -> None:
        for m in (self.tuned, self.untuned):
            check_guide_model(m, prompts, max_new_tokens)

    def lengths(self, responses: Sequence[str], ended: Sequence[bool] | None
                ) -> torch.Tensor:
        """Tokens the score sums over: the response in the tuned model's tokens (+ EOS)."""
        return torch.tensor([len(t) for t in self.targets(self.tuned, responses, ended)])

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
        eos = model.eos_id
        ended = ended if ended is not None else [False] * len(ids)
        return [list(x) + ([eos] if e and eos is not None else []) for x, e in zip(ids, ended)]

    @classmethod
    def _logprob_sums(cls, model: HFModel, prompts: Sequence[str], responses: Sequence[str],
                      ended: Sequence[bool] | None) -> tuple[torch.Tensor, int]:
        prefixes = [model.encode_prompt(p) for p in prompts]
        targets = cls.targets(model, responses, ended)
        per_token = model.token_logprobs(prefixes, targets)
        sums = torch.tensor([float(t.double().sum()) for t in per_token], dtype=torch.float64)
        return finite_scores(model, sums), sum(len(t) for t in targets)

    def score_with_cost(self, prompts: Sequence[str], responses: Sequence[str],
                        ended: Sequence[bool] | None = None) -> tuple[torch.Tensor, int]:
        tuned, n1 = self._logprob_sums(self.tuned, prompts, responses, ended)
        untuned, n2 = self._logprob_sums(self.untuned, prompts, responses, ended)
        return (tuned - untuned).float(), n1 + n2

    def session(self, prompts: Sequence[str]) -> ScoringSession:
        """KV-cached incremental scoring when both models are in process; a model behind an
        engine re-scores whole responses each round (one batched request per model)."""
        if not all(isinstance(m, HFModel) for m in (self.tuned, self.untuned)):
            return ScoringSession(self, prompts)
        return PairSession(self, prompts)


class PairSession(ScoringSession):
    """Incremental pair scoring: each model scores only each child's new tokens, from the KV
    cache of its parent, and tokenizes only a tail of each child's text after its parent's
    (see :mod:`w2s.guides.incremental`). Models with the same tokenization share one
    tokenizer state; a model whose ``encode_responses`` is overridden tokenizes whole texts
    with it, as :meth:`PairGuide.targets` does.

    :meth:`reindex` only records which old row each new row copies; the next :meth:`score`
    gathers and extends the cache rows in one step (one cache copy per round, not two)."""

    def __init__(self, guide: PairGuide, prompts: Sequence[str]) -> None:
        super().__init__(guide, prompts)
        self.models = (guide.tuned, guide.untuned)
        self.scorers = [IncrementalScorer(m) for m in self.models]
        self.states: list[Any] = [sc.open([m.encode_prompt(p) for p in prompts])
                                  for sc, m in zip(self.scorers, self.models)]
        self.encoders = self._encoders(len(self.prompts))
        self.parents = list(range(len(self.prompts)))  # row -> row of the scorers' states

    def _encoders(self, roots: int) -> list[Any]:
        """Per model, its :class:`ResponseTokenizer` (one per distinct tokenization), or None
        where the model's own ``encode_responses`` must be used."""
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
        out: list[tuple[list[list[int]], list[int] | None]] = []
        for n, (m, enc) in enumerate(zip(self.models, self.encoders)):
            if enc is None:
                out.append((m.encode_responses(texts), None))
                continue
            first = next(j for j in range(n + 1) if self.encoders[j] is enc)
            # a shared encoder advances once per round: reuse the first model's result
            out.append(out[first] if first < n else enc.encode(rows, texts))
        return out

    def reindex(self, rows: Sequence[int]) -> None:
        super().reindex(rows)
        self.parents = [self.parents[r] for r in rows]

    def score(self, texts: Sequence[str], ended: Sequence[bool] | None = None
              ) -> tuple[torch.Tensor, int]:
        rows = self.parents
        sums, tokens = [], 0
        encoded = self._response_ids(rows, texts)
        for n, (sc, m) in enumerate(zip(self.scorers, self.models)):
            ids, shared = encoded[n]
            self.states[n], s, fed = sc.extend(self.states[n], rows,
                                               PairGuide.with_eos(m, ids, ended), shared)
            sums.append(finite_scores(m, torch.tensor(s, dtype=torch.float64)))
            tokens += fed
        self.parents = list(range(len(texts)))
        return (sums[0] - sums[1]).float(), tokens
