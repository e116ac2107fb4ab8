"""Batched Gaussian random-walk Metropolis-Hastings: N independent chains as one tensor computation.

Written in BlackJAX's shape: :func:`init` and :func:`step` are pure functions over the
:class:`RWState` / :class:`RWInfo` NamedTuples, batched over the leading particle dimension. The
proposal is isotropic, ``z' = z + k_i * eps`` with ``eps ~ N(0, I)`` in unconstrained space (the
Jacobian of the constraining bijection is in the log prior), one step size ``k_i`` per particle.
During warm-up each ``k_i`` follows a Robbins-Monro recursion toward acceptance 0.234; after it the
step sizes are frozen, so every chain is a valid MH chain. :class:`BatchedRandomWalk` wraps the same
functions as a ``pyro.infer.mcmc.MCMCKernel``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable, NamedTuple

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

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


def tempered(log_prior: torch.Tensor, log_likelihood: torch.Tensor,
             beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``log_prior + beta * log_likelihood`` with ``0 * -inf = 0``, so beta = 0 is the prior exactly.

    ``beta`` is a number or a per-particle tensor (tempered SMC runs populations at different betas).
    """
    if not torch.is_tensor(beta):
        if beta == 1.0:
            return log_prior + log_likelihood
        if beta == 0.0:
            return log_prior
    return log_prior + torch.where(torch.as_tensor(beta) == 0, torch.zeros_like(log_likelihood),
                                   beta * log_likelihood)


def init(z_unconstrained: torch.Tensor, log_density_fn: Callable[[torch.Tensor], Density],
         step_size: float | torch.Tensor = 0.1) -> RWState:
    """The state at ``z_unconstrained`` (shape ``(N, D)``), scored in one batched call."""
    density = log_density_fn(z_unconstrained)
    step = torch.as_tensor(step_size, dtype=z_unconstrained.dtype, device=z_unconstrained.device)
    step = step.expand(z_unconstrained.shape[0]).clone()
    return RWState(z_unconstrained, density.log_prior, density.log_likelihood, density.predictions, step)


def step(generator: torch.Generator, state: RWState, log_density_fn: Callable[[torch.Tensor], Density],
         *, beta: float | torch.Tensor = 1.0, adapt_rate: float = 0.0,
         target_accept: float = TARGET_ACCEPT) -> tuple[RWState, RWInfo]:
    """One MH step of every particle against ``p(z) p(target | z)^beta``.

    :param generator: the only source of randomness, so a seed fixes the trace bit for bit.
    :param adapt_rate: gain of the per-particle step-size update ``log k += rate (a - target)``;
        non-zero only during warm-up.
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

    step_size = state.step_size
    if adapt_rate:
        step_size = step_size * torch.exp(adapt_rate * (acceptance_prob - target_accept))
    keep = is_accepted.unsqueeze(-1)
    new_state = RWState(
        torch.where(keep, proposal, z),
        torch.where(is_accepted, density.log_prior, state.log_prior),
        torch.where(is_accepted, density.log_likelihood, state.log_likelihood),
        torch.where(keep, density.predictions, state.predictions) if state.predictions.numel() else state.predictions,
        step_size,
    )
    return new_state, RWInfo(acceptance_prob, is_accepted, is_invalid)


def adapt_rate(iteration: int, warmup: int) -> float:
    """Robbins-Monro gain ``(t + 1)^-0.6`` during warm-up, 0 afterwards (a valid MH chain)."""
    return (iteration + 1) ** -0.6 if iteration < warmup else 0.0


def initial_positions(density: ParticleDensity, generator: torch.Generator, max_tries: int = 100) -> torch.Tensor:
    """Unconstrained prior draws, each particle redrawn while its log density is not finite.

    Prior sampling uses torch's global RNG (distributions take no generator), so it runs inside
    ``fork_rng`` seeded from ``generator``: reproducible, and the caller's RNG is left untouched.
    """
    device = generator.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=device)))
        positions = density.sample_prior()
        for _ in range(max_tries):
            scored = density(positions)
            bad = ~torch.isfinite(scored.log_prior + scored.log_likelihood)
            if not bad.any():
                return positions
            positions = torch.where(bad.unsqueeze(-1), density.sample_prior(), positions)
    raise RuntimeError(f"{int(bad.sum())} particles still have a non-finite log density after "
                       f"{max_tries} prior redraws; check the world's decoder and classifier for NaN")


def default_step_size(z_unconstrained: torch.Tensor) -> float:
    """``2.38 / sqrt(D)`` times the prior cloud's spread: optimal for a Gaussian of that scale."""
    spread = z_unconstrained.std(dim=0).mean() if z_unconstrained.shape[0] > 1 else torch.tensor(1.0)
    value = float(2.38 / math.sqrt(z_unconstrained.shape[-1]) * spread)
    return value if math.isfinite(value) and value > 0 else 0.1


class BatchedRandomWalk(MCMCKernel):
    """The batched random walk as a Pyro kernel, for ``pyro.infer.MCMC``.

    The model must put its sample sites in ``pyro.plate("particles", N)``; each MCMC "sample" then
    holds all N particles. Step sizes adapt during ``warmup_steps`` only.

    :param model: a Pyro model such as :func:`pplevelset.level_set_model`.
    :param float step_size: initial proposal scale (default: from the prior's spread).
    :param float target_accept_prob: acceptance rate the warm-up adapts toward.
    :param int seed: seed of the kernel's generator (default: drawn from torch's global RNG, so
        ``pyro.set_rng_seed`` controls it).

    Example::

        kernel = BatchedRandomWalk(pls.level_set_model)
        mcmc = pyro.infer.MCMC(kernel, num_samples=200, warmup_steps=200)
        mcmc.run(world, target, 10.0, 500)
        z = mcmc.get_samples()["z"]  # (200, 500, latent_dim)
    """

    def __init__(self, model: Callable, step_size: float | None = None,
                 target_accept_prob: float = TARGET_ACCEPT, seed: int | None = None):
        self.model = model
        self.initial_step_size = step_size
        self.target_accept_prob = target_accept_prob
        self.seed = seed
        self._initial_params = None
        super().__init__()

    def setup(self, warmup_steps, *args, **kwargs):
        self._warmup_steps = warmup_steps
        self._t = 0
        self._accepted = 0
        self._mean_accept_prob = 0.0
        self.density = ParticleDensity(self.model, args, kwargs)
        # Pyro's convention: transforms map constrained -> unconstrained; MCMC applies .inv to samples.
        self.transforms = {name: transform.inv for name, transform in self.density.transforms.items()}
        seed = self.seed if self.seed is not None else int(torch.randint(2**62, (1,)))
        self.generator = torch.Generator(device=self.density.device).manual_seed(seed)
        if self._initial_params is None:
            self._initial_params = self.density.unpack(initial_positions(self.density, self.generator))
        self._state = None

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def sample(self, params):
        flat = self.density.pack(params)
        if self._state is None or not torch.equal(flat, self._state.z_unconstrained):
            step_size = self.initial_step_size or default_step_size(flat)
            old_step = self._state.step_size if self._state is not None else step_size
            self._state = init(flat, self.density, old_step)
        rate = adapt_rate(self._t, self._warmup_steps)
        with torch.no_grad():
            self._state, info = step(self.generator, self._state, self.density, adapt_rate=rate,
                                     target_accept=self.target_accept_prob)
        self._t += 1
        mean_accept = float(info.acceptance_prob.mean())
        n = self._t - self._warmup_steps if self._t > self._warmup_steps else self._t
        if self._t > self._warmup_steps:
            self._accepted += float(info.is_accepted.float().mean())
        self._mean_accept_prob += (mean_accept - self._mean_accept_prob) / n
        return self.density.unpack(self._state.z_unconstrained)

    def logging(self):
        return OrderedDict([("step size", f"{float(self._state.step_size.median()):.2e}"),
                            ("acc. prob", f"{self._mean_accept_prob:.3f}")])

    def diagnostics(self):
        samples = max(1, self._t - self._warmup_steps)
        return {"acceptance rate": self._accepted / samples}
