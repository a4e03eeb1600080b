"""A prompt's search does not depend on the prompts searched beside it, and never passes
max_new_tokens: every guided search, run on a batch of prompts and on each prompt alone (the
same seed), returns the same candidates, scores and stats, on the scripted backend (EOS likely
enough that prompts finish at different times, and max_new_tokens no multiple of the chunks).

Found by these tests, and fixed: particle filtering crashed (``max() arg is an empty
sequence``) when resampling copied finished particles over all the unfinished ones, and
re-resampled a finished prompt while others ran on; pruned Best-of-N kept pruning a prompt
whose candidates had all finished while others ran on; TreeBoN reported the batch's layers
as every prompt's; MCTS grew a deep leaf by a chunk sized for the batch's shallowest, past
max_new_tokens (and so its answers changed with the batch).
"""

from __future__ import annotations

import pytest
from scripted import ScriptedBackend
from test_search_direction import NOT_SEARCHES, LetterGuide

import w2s
from w2s import (
    BestOfNParams,
    MCTSParams,
    ParticleParams,
    PrunedBoNParams,
    QAlignParams,
    SamplingParams,
    SearchParams,
    TreeBoNParams,
)
from w2s.decoding import decoders

KNOBS = {
    "bon": BestOfNParams(n=6),
    "cbs": SearchParams(w=2, k=3, l=4),
    "pruned_bon": PrunedBoNParams(n=6, prune=0.5, every=4),
    "treebon": TreeBoNParams(n=6, branch=2, first=3),
    "particles": ParticleParams(particles=6, chunk=4, tau=0.5),
    "mcts": MCTSParams(expansions=6, k=3, l=4, c=0.5, prior=0),
    "qalign": QAlignParams(steps=4, chains=3, beta=0.5),
}
PROMPTS = [f"prompt {i}" for i in range(6)]


def _view(r: w2s.Result) -> tuple:
    return (r.text, r.token_ids, r.score, r.finished, r.stats,
            [(c.text, c.token_ids, c.score, c.finished) for c in r.candidates])


def test_every_search_is_here():
    assert set(KNOBS) == set(decoders()) - set(NOT_SEARCHES)


@pytest.mark.parametrize("method", sorted(KNOBS))
@pytest.mark.parametrize("eos,max_new,seed", [(0.3, 10, 0), (0.3, 11, 1), (1.0, 10, 0),
                                              (1.0, 11, 1), (3.0, 10, 0), (3.0, 11, 1)])
def test_a_prompts_search_is_the_same_alone_and_in_a_batch(method, eos, max_new, seed):
    spec, sp = decoders()[method], SamplingParams(max_new_tokens=max_new, seed=seed)
    together = spec.run(ScriptedBackend(eos_weight=eos), LetterGuide(), PROMPTS, KNOBS[method],
                        sp, return_all=True)
    for p, r in zip(PROMPTS, together):
        [alone] = spec.run(ScriptedBackend(eos_weight=eos), LetterGuide(), [p], KNOBS[method],
                           sp, return_all=True)
        assert _view(r) == _view(alone), p
        assert all(len(c.token_ids) <= max_new for c in r.candidates)


def test_particles_end_when_resampling_leaves_only_finished_ones():
    """Seed 8: after a step every unfinished particle weighs little next to the finished
    ones, and resampling copies finished particles over all of them; the filter then ends
    (it used to grow an empty set of rows and crash)."""
    sp = SamplingParams(max_new_tokens=10, seed=8)
    [r] = w2s.particles(ScriptedBackend(eos_weight=3.0), LetterGuide(), ["p"],
                        ParticleParams(particles=6, chunk=4, tau=0.5), sp, return_all=True)
    assert r.stats["resamples"] >= 1
    assert all(c.finished for c in r.candidates)
    assert r.score == max(c.score for c in r.candidates)
