"""Particle filtering over the base (sequential Monte Carlo), weighted by the weak guide.

Puri et al., "A Probabilistic Inference Approach to Inference-Time Scaling of LLMs using
Particle-Based Monte Carlo Methods" (2025, arXiv 2502.01618; the its_hub library): instead of
keeping the top W partial responses (CBS), keep a population whose members are copied in
proportion to their weight, so a guide that is only roughly right steers without collapsing
onto its favourite. With the weak-to-strong guide r = log pi_tuned - log pi_untuned, the
weight of a particle is the exponentiated increment of r over its last chunk. Knobs
(P, chunk, tau, ess):

    particles <- P base samples of `chunk` tokens (slots 0..P-1); log w_j = r_j / tau
    while a particle is unfinished:
        if ESS = (sum w)^2 / sum w^2 < ess * P: systematic resampling (one seeded uniform
            per prompt and step): particle j <- a copy of particle a_j; log w <- 0
        every unfinished particle j grows by `chunk` tokens from slot j
        log w_j += (r_j(after) - r_j(before)) / tau      (finished particles: += 0)
    return the particles ranked by the guide's score of the whole response (best first)

Particle j always draws from slot j, so with no resampling (tau -> infinity: equal weights,
ESS = P) particle j is plain sampling's sample j token for token, and the answer is
Best-of-P's. Every step grows at most P rows by `chunk` tokens, so the base tokens never exceed
P * max_new_tokens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from w2s.decoding.common import (
    Entry,
    Frontier,
    Prepared,
    rank,
    run_search,
)
from w2s.decoding.observe import active, common_prefix, emit
from w2s.guides import Guide
from w2s.models.base import Backend
from w2s.params import ParticleParams, SamplingParams
from w2s.result import Cost, Result
from w2s.rng import stream_keys, uniforms

RESAMPLE_SLOT = -1
"""The random slot whose uniforms (one per step) drive a prompt's systematic resampling."""


def particles(backend: Backend, guide: Guide | None, prompts: Sequence[str],
                    knob: ParticleParams | None = None, sampling: SamplingParams | None = None,
                    *, return_all: bool = False) -> list[Result]:
    """Sequential Monte Carlo over the base's chunks, weighted by the guide's increments."""
    return run_search("particles", backend, guide, prompts, knob, ParticleParams, sampling,
                      return_all, lambda k: k.particles, _filter)


def systematic(weights: Sequence[float], u0: float) -> list[int]:
    """Systematic resampling: ``len(weights)`` indices, index ``i`` drawn at the points
    ``(u0 + k) / P`` of the weights' CDF. Unbiased (E[count_i] = P w_i for ``u0`` uniform in
    [0, 1)) and low-variance (each count is floor or ceil of P w_i)."""
    p, total = len(weights), float(sum(weights))
    out, cdf, i = [], weights[0] / total, 0
    for k in range(p):
        point = (u0 + k) / p
        while point >= cdf and i < p - 1:
            i += 1
            cdf += weights[i] / total
        out.append(i)
    return out


def ess(log_w: Sequence[float]) -> float:
    """Effective sample size (sum w)^2 / sum w^2 of log-weights (shifted for stability)."""
    top = max(log_w)
    w = [math.exp(x - top) for x in log_w]
    return sum(w) ** 2 / sum(x * x for x in w)


def _filter(backend: Backend, guide: Guide, prep: Prepared, knob: ParticleParams,
            sampling: SamplingParams, cost: list[Cost], index: list[int]
            ) -> list[tuple[list[Entry], dict[str, float]]]:
    """One group of prompts; each prompt's particles ranked (each distinct entry once), and
    how many times they were resampled."""
    max_new, p = sampling.max_new_tokens, knob.particles
    frontier = Frontier(backend, prep, sampling, cost, p, guide.session(prep.prompts))
    parts: list[list[Entry]] = [[root] * p for root in frontier.entries]  # particle j: slot j
    log_w = [[0.0] * p for _ in prep.prompts]
    resamples, step = [0] * len(prep.prompts), 0
    while any(not e.done(max_new) for ps in parts for e in ps):
        if step > 0:
            _resample(prep, parts, log_w, resamples, knob, step, max_new)
        live = [(i, j) for i in range(len(parts)) for j in range(p)
                if not parts[i][j].done(max_new)]
        if not live:  # resampling copied finished particles over the last unfinished ones
            break
        rows = [(i, parts[i][j], j) for i, j in live]
        before = [e.score or 0.0 for _, e, _ in rows]
        chunk = min(knob.chunk, max_new - max(e.tokens for _, e, _ in rows))
        children = frontier.grow(rows, chunk)
        frontier.score()
        for (i, j), b, c in zip(live, before, children):
            parts[i][j] = c
            log_w[i][j] += (float(c.score) - b) / knob.tau  # type: ignore[arg-type]
        step += 1
        if active():
            for i, ps in zip(index, parts):
                emit(i, common_prefix([e.text for e in ps]))
    return [(rank(list({id(e): e for e in ps}.values())), {"resamples": float(n)})
            for ps, n in zip(parts, resamples)]


def _resample(prep: Prepared, parts: list[list[Entry]], log_w: list[list[float]],
              resamples: list[int], knob: ParticleParams, step: int, max_new: int) -> None:
    """Each prompt whose ESS fell below ess * P: systematic resampling, weights reset. A
    prompt whose particles are all finished is left as it is (its search is over, whatever
    the prompts beside it still do)."""
    p = knob.particles
    keys = torch.tensor(prep.keys, dtype=torch.long)
    u0s = uniforms(stream_keys(keys, torch.full_like(keys, RESAMPLE_SLOT)),
                   torch.full_like(keys, step)).tolist()  # one uniform per prompt and step
    for i, lw in enumerate(log_w):
        if ess(lw) >= knob.ess * p or all(e.done(max_new) for e in parts[i]):
            continue
        top = max(lw)
        picks = systematic([math.exp(x - top) for x in lw], u0s[i])
        parts[i] = [parts[i][a] for a in picks]
        log_w[i] = [0.0] * p
        resamples[i] += 1


def particles_at_budget(knob: ParticleParams, b: int, max_new: int) -> ParticleParams:
    """P = b particles (each step grows at most P rows)."""
    return dataclasses.replace(knob, particles=b)
