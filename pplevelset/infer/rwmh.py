"""Batched Gaussian random-walk Metropolis-Hastings: N independent chains as one tensor computation.

Written in BlackJAX's shape: :func:`init` and :func:`step` are pure functions over the
:class:`RWState` / :class:`RWInfo` NamedTuples, batched over the leading particle dimension. The
proposal is isotropic, ``z' = z + k_i * eps`` with ``eps ~ N(0, I)`` in unconstrained space (the
Jacobian of the constraining bijection is in the log prior), one step size ``k_i`` per particle.
During warm-up each ``k_i`` follows a Robbins-Monro recursion toward acceptance 0.234; after it the
step sizes are frozen, so every chain is a valid MH chain.
:class:`pplevelset.infer.pyro_kernels.BatchedRandomWalk` wraps the same functions as a
``pyro.infer.mcmc.MCMCKernel``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from pplevelset.infer.mcmc import Adaptation, Algorithm
from pplevelset.infer.tempering import tempered
from pplevelset.model import Density, ParticleDensity

TARGET_ACCEPT = 0.234  # optimal for random-walk proposals in moderate dimension (Roberts et al. 1997)


class RWState(NamedTuple):
    """Everything the next step needs, per particle."""

    z_unconstrained: torch.Tensor  # (N, D)
    log_prior: torch.Tensor  # (N,) includes the Jacobian
    log_likelihood: torch.Tensor  # (N,)
    predictions: torch.Tensor  # (N, L) classifier output at z (auxiliary, like a cached gradient)
    step_size: torch.Tensor  # (N,)


class RWInfo(NamedTuple):
    """What diagnostics need about one step, per particle."""

    acceptance_prob: torch.Tensor  # (N,) min(1, target ratio)
    is_accepted: torch.Tensor  # (N,) bool
    is_invalid: torch.Tensor  # (N,) bool: the proposal's density was NaN or infinite (rejected)


def init(
    z_unconstrained: torch.Tensor,
    log_density_fn: Callable[[torch.Tensor], Density],
    step_size: float | torch.Tensor = 0.1,
) -> RWState:
    """The state at ``z_unconstrained`` (shape ``(N, D)``), scored in one batched call."""
    density = log_density_fn(z_unconstrained)
    step = torch.as_tensor(step_size, dtype=z_unconstrained.dtype, device=z_unconstrained.device)
    step = step.expand(z_unconstrained.shape[0]).clone()
    return RWState(z_unconstrained, density.log_prior, density.log_likelihood, density.predictions, step)


def step(
    generator: torch.Generator,
    state: RWState,
    log_density_fn: Callable[[torch.Tensor], Density],
    *,
    beta: float | torch.Tensor = 1.0,
) -> tuple[RWState, RWInfo]:
    """One MH step of every particle against ``p(z) p(target | z)^beta``, step sizes unchanged.

    :param generator: the only source of randomness, so a seed fixes the trace bit for bit.
    """
    z = state.z_unconstrained
    noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    proposal = z + state.step_size.unsqueeze(-1) * noise
    density = log_density_fn(proposal)
    proposed = tempered(density.log_prior, density.log_likelihood, beta)
    current = tempered(state.log_prior, state.log_likelihood, beta)
    is_invalid = ~torch.isfinite(proposed)
    log_ratio = torch.where(is_invalid, torch.full_like(proposed, -math.inf), proposed - current)
    acceptance_prob = log_ratio.clamp(max=0.0).exp()
    uniform = torch.rand(z.shape[0], generator=generator, device=z.device, dtype=z.dtype)
    is_accepted = uniform < acceptance_prob

    keep = is_accepted.unsqueeze(-1)
    new_state = RWState(
        torch.where(keep, proposal, z),
        torch.where(is_accepted, density.log_prior, state.log_prior),
        torch.where(is_accepted, density.log_likelihood, state.log_likelihood),
        torch.where(keep, density.predictions, state.predictions) if state.predictions.numel() else state.predictions,
        state.step_size,
    )
    return new_state, RWInfo(acceptance_prob, is_accepted, is_invalid)


class AdaptState(NamedTuple):
    iteration: int
    target_accept: float


def adaptation(target_accept: float = TARGET_ACCEPT) -> Adaptation:
    """Per-particle Robbins-Monro step sizes, ``log k += (t + 1)^-0.6 (a - target_accept)``.

    The driver applies it during warm-up only; afterwards the step sizes are frozen, so every
    chain is a valid MH chain.
    """

    def init(state: RWState) -> AdaptState:
        return AdaptState(0, target_accept)

    def update(adapt: AdaptState, state: RWState, info: RWInfo) -> tuple[AdaptState, RWState]:
        rate = (adapt.iteration + 1) ** -0.6
        step_size = state.step_size * torch.exp(rate * (info.acceptance_prob - adapt.target_accept))
        return adapt._replace(iteration=adapt.iteration + 1), state._replace(step_size=step_size)

    return Adaptation(init, update)


def algorithm(step_size: float | None = None, target_accept: float = TARGET_ACCEPT) -> Algorithm:
    """The batched random walk for :func:`pplevelset.infer.mcmc.run_mcmc`."""

    def start(z_unconstrained: torch.Tensor, density: ParticleDensity) -> RWState:
        return init(
            z_unconstrained, density, step_size if step_size is not None else default_step_size(z_unconstrained)
        )

    return Algorithm(start, step, adaptation(target_accept), lambda state: state.step_size)


def default_step_size(z_unconstrained: torch.Tensor) -> float:
    """``2.38 / sqrt(D)`` times the prior cloud's spread: optimal for a Gaussian of that scale."""
    spread = z_unconstrained.std(dim=0).mean() if z_unconstrained.shape[0] > 1 else torch.tensor(1.0)
    value = float(2.38 / math.sqrt(z_unconstrained.shape[-1]) * spread)
    return value if math.isfinite(value) and value > 0 else 0.1
