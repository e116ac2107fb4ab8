"""Replica exchange over ensembles: rungs of a likelihood-temperature ladder, swaps between neighbours.

Why. The ensemble kernel (:mod:`pplevelset.infer.ensemble`) carries particles between the pieces
of a level set it can see, but a particle on a small island far from the rest of the population
stays there for hundreds of steps: no other particle's kernel reaches it, so the KDE move's reverse
proposal density there is tiny, and local moves fall off the island. On mnist-vae that left R-hat at
1.06-1.09 (BENCHMARKS.md). Flattening the likelihood joins the islands to the bulk; swapping states
between neighbouring temperatures brings the hot rungs' mixing down to ``beta = 1``.

How (ptemcee, Vousden et al. 2016; TensorFlow Probability's ``ReplicaExchangeMC``): ``K`` rungs of
``M`` particles each, rung-major in one ``(K M, D)`` batch, rung ``k`` targeting
``p(z) p(target | z)^beta_k`` with ``1 = beta_0 > beta_1 > ... > beta_{K-1} > 0``. One step:

1. every rung makes one ensemble step, each rung (and each target group of a sweep) its own
   ensemble, all rungs in the same two batched density calls;
2. swaps: each particle of rung ``k`` is paired with a random particle of rung ``k + 1`` (of the
   same target group) and their states are exchanged with probability
   ``min(1, exp((beta_k - beta_{k+1}) (log L_b - log L_a)))``; the even pairs (0-1, 2-3, ...) and
   then the odd pairs. The pairing is drawn independently of the states, so each swap sweep leaves
   the product of the rungs' posteriors invariant.

Only rung 0 (``beta = 1``) is recorded; the others exist to help it mix. During warm-up the ladder
adapts (Robbins-Monro on each gap's ``log(log beta_k - log beta_{k+1})``) until every neighbouring
pair swaps with probability ``SWAP_TARGET``; then it is frozen with the move scales.

References: Swendsen & Wang (1986); Earl & Deem (2005), Parallel tempering: theory, applications,
and new perspectives, PCCP 7; Vousden, Farr & Mandel (2016), Dynamic temperature selection for
parallel tempering in Markov chain Monte Carlo simulations, MNRAS 455.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from pplevelset.errors import UserInputError
from pplevelset.infer import ensemble
from pplevelset.infer.mcmc import Adaptation, Algorithm

SWAP_TARGET = 0.4  # swap acceptance the warm-up steers each rung pair toward
FIRST_RATIO = 0.6  # beta_{k+1} / beta_k of the starting ladder (swap acceptance 0.40-0.48 on mnist-vae)
MAX_LOG_GAP = math.log(30.0)  # a gap of more than 30 nats of log beta is the prior already


class TemperedState(NamedTuple):
    """All rungs' particles, rung-major (rung ``k`` is rows ``k M .. (k + 1) M``), and the ladder."""

    ensemble: ensemble.EnsembleState  # (K M, D) and friends; one set of move scales for all rungs
    log_gaps: torch.Tensor  # (K - 1,) log(log beta_k - log beta_{k+1})


class TemperedInfo(NamedTuple):
    """Every rung's move statistics and this step's swap acceptance probabilities."""

    ensemble: ensemble.EnsembleInfo  # (K M,)
    swap_prob: torch.Tensor  # (K - 1,) mean swap acceptance probability per neighbouring rung pair


def betas(log_gaps: torch.Tensor) -> torch.Tensor:
    """The ladder ``(K,)`` from its gaps: ``beta_0 = 1`` and ``log beta_{k+1} = log beta_k - exp(gap_k)``."""
    log_beta = torch.cat([log_gaps.new_zeros(1), -torch.cumsum(log_gaps.exp(), 0)])
    return log_beta.exp()


def first_gaps(rungs: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The starting ladder: geometric, ``beta_k = FIRST_RATIO ** k``."""
    return torch.full((rungs - 1,), math.log(-math.log(FIRST_RATIO)), dtype=dtype, device=device)


def check_rungs(rungs: int) -> None:
    if isinstance(rungs, bool) or not isinstance(rungs, int) or rungs < 1:
        raise UserInputError(f"rungs must be an integer of at least 1, got {rungs!r}")


def swap(
    generator: torch.Generator, state: ensemble.EnsembleState, beta: torch.Tensor, groups: int, parity: int
) -> tuple[ensemble.EnsembleState, torch.Tensor]:
    """Exchange states between rungs ``k`` and ``k + 1`` for every ``k`` of the given parity, each
    particle of rung ``k`` paired with a random one of rung ``k + 1`` in the same target group.
    Returns the new state and the mean acceptance probability per pair ``(K - 1,)`` (NaN for the
    pairs of the other parity)."""
    rungs = beta.numel()
    total = state.z_unconstrained.shape[0]
    per_rung = total // rungs
    per_group = per_rung // groups
    device = state.z_unconstrained.device
    swap_prob = torch.full((rungs - 1,), math.nan, dtype=state.log_likelihood.dtype, device=device)
    pairs = list(range(parity, rungs - 1, 2))
    if not pairs:
        return state, swap_prob
    offsets = torch.arange(groups, device=device).unsqueeze(-1) * per_group
    cold, hot, gap = [], [], []
    for k in pairs:
        partner = torch.rand((groups, per_group), generator=generator, device=device).argsort(-1) + offsets
        cold.append(k * per_rung + torch.arange(per_rung, device=device))
        hot.append((k + 1) * per_rung + partner.reshape(-1))
        gap.append((beta[k] - beta[k + 1]).expand(per_rung))
    a, b, difference = torch.cat(cold), torch.cat(hot), torch.cat(gap)
    log_ratio = difference * (state.log_likelihood[b] - state.log_likelihood[a])
    probability = log_ratio.clamp(max=0.0).exp()
    accepted = torch.rand(a.shape, generator=generator, device=device, dtype=probability.dtype) < probability
    swap_prob[pairs] = probability.reshape(len(pairs), per_rung).mean(-1).to(swap_prob.dtype)
    order = torch.arange(total, device=device)
    order[a[accepted]], order[b[accepted]] = b[accepted], a[accepted]
    swapped = ensemble.EnsembleState(
        state.z_unconstrained[order],
        state.log_prior[order],
        state.log_likelihood[order],
        state.predictions[order] if state.predictions.shape[-1] else state.predictions,
        state.scales,
        state.weights,
    )
    return swapped, swap_prob


def step(
    generator: torch.Generator,
    state: TemperedState,
    log_density_fn,
    *,
    groups: int = 1,
) -> tuple[TemperedState, TemperedInfo]:
    """One ensemble step in every rung (one pair of batched density calls for all), then the even
    and the odd swaps."""
    ladder = betas(state.log_gaps)
    rungs = ladder.numel()
    per_rung = state.ensemble.z_unconstrained.shape[0] // rungs
    particle_beta = ladder.repeat_interleave(per_rung).to(state.ensemble.log_likelihood.dtype)
    moved, info = ensemble.step(generator, state.ensemble, log_density_fn, beta=particle_beta, groups=groups * rungs)
    moved, even = swap(generator, moved, ladder, groups, 0)
    moved, odd = swap(generator, moved, ladder, groups, 1)
    return TemperedState(moved, state.log_gaps), TemperedInfo(info, torch.where(torch.isnan(even), odd, even))


def adaptation(swap_target: float = SWAP_TARGET, split: bool = True) -> Adaptation:
    """The ensemble's adaptation of move scales and weights (on all rungs' pooled acceptance; see
    :func:`pplevelset.infer.ensemble.adaptation` for ``split``) and the ladder's:
    ``gap_k += (t + 1)^-0.6 (a_k - swap_target)``, a wider gap where pair ``k`` swaps too often.
    Warm-up only, like every adaptation (:func:`pplevelset.infer.mcmc.run_mcmc`)."""
    inner = ensemble.adaptation(split=split)

    def init(state: TemperedState):
        return inner.init(state.ensemble)

    def update(adapt, state: TemperedState, info: TemperedInfo):
        adapt_next, moved = inner.update(adapt, state.ensemble, info.ensemble)
        change = (adapt.iteration + 1) ** -0.6 * (info.swap_prob - swap_target)
        gaps = (state.log_gaps + change).clamp(max=MAX_LOG_GAP)
        return adapt_next, TemperedState(moved, gaps)

    return Adaptation(init, update)


def algorithm(rungs: int, moves: ensemble.Moves | None = None, groups: int = 1) -> Algorithm:
    """The replica-exchange ensemble for :func:`pplevelset.infer.mcmc.run_mcmc`: its density scores
    ``rungs`` times the recorded particles (rung-major; a sweep's ``groups`` target groups inside
    each rung), and only rung 0 (``beta = 1``) is recorded."""
    check_rungs(rungs)

    def start(z_unconstrained: torch.Tensor, density) -> TemperedState:
        if z_unconstrained.shape[0] % rungs:
            raise UserInputError(f"{z_unconstrained.shape[0]} particles do not split into {rungs} rungs")
        ensemble.check_size(z_unconstrained.shape[0] // rungs // groups)
        state = ensemble.init(z_unconstrained, density, moves=moves)
        return TemperedState(state, first_gaps(rungs, state.log_likelihood.dtype, z_unconstrained.device))

    def advance(generator: torch.Generator, state: TemperedState, density) -> tuple[TemperedState, TemperedInfo]:
        return step(generator, state, density, groups=groups)

    def recorded(state: TemperedState, info: TemperedInfo | None):
        cold = slice(0, state.ensemble.z_unconstrained.shape[0] // rungs)
        whole = state.ensemble
        shown = ensemble.EnsembleState(
            whole.z_unconstrained[cold],
            whole.log_prior[cold],
            whole.log_likelihood[cold],
            whole.predictions[cold],
            whole.scales,
            whole.weights,
        )
        if info is None:
            return shown, None
        every = info.ensemble
        return shown, ensemble.EnsembleInfo(
            every.acceptance_prob[cold],
            every.is_accepted[cold],
            every.is_invalid[cold],
            every.move[cold],
            info.swap_prob,
            betas(state.log_gaps),
        )

    return Algorithm(
        start, advance, adaptation(split=moves is None), ensemble.recorded_scale, ensemble.MOVE_NAMES, recorded
    )
