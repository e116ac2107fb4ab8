"""Pyro's NUTS on the level-set program, for worlds whose decoder and classifier are differentiable.

All N particles form one Pyro state, so they share NUTS's adapted step size, mass matrix and tree
depth while remaining independent in distribution: every particle's marginal is the posterior.
Keep N modest (tens to hundreds): the joint step size shrinks slowly as N grows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_sample

from pplevelset.errors import UserInputError
from pplevelset.infer.draws import Draws
from pplevelset.model import ParticleDensity, level_set_model
from pplevelset.rng import seed_global
from pplevelset.worlds.base import World

if TYPE_CHECKING:
    from pplevelset.infer.config import RunConfig

SCORE_BATCH = 8192  # particle-states scored per batched pass when the run is over


def check_differentiable(world: World) -> None:
    """Refuse NUTS, in one line, for a world that says (or shows) it has no gradients."""
    advice = 'use kernel="rwmh" (--kernel rwmh on the command line)'
    if not world.differentiable:
        raise UserInputError(
            f"world {world.name!r} is not differentiable (differentiable=False), so NUTS cannot run on it; {advice}"
        )
    with torch.random.fork_rng(devices=[]):  # the probe's prior draw leaves the caller's RNG alone
        z = world.prior().sample((2,)).requires_grad_(True)
    try:  # a classifier that leaves torch (scikit-learn, numpy) fails here, not deep inside Pyro
        (gradient,) = torch.autograd.grad(world.predict(z).sum(), z, allow_unused=True)
    except RuntimeError as exc:
        gradient, reason = None, str(exc).splitlines()[0]
    else:
        reason = "its predictions do not depend differentiably on z"
    if gradient is None:
        raise UserInputError(
            f"world {world.name!r} has no gradients ({reason}), so NUTS cannot run on it; "
            f"set differentiable = False on the world and {advice}"
        )


def run(
    config: RunConfig,
    density: ParticleDensity,
    generator: torch.Generator | None = None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 8,
    on_iteration: Callable[[bool, torch.Tensor], None] | None = None,
) -> Draws:
    """Run Pyro's NUTS (seeded with ``config.seed``; ``generator`` is unused) and record its draws.

    Each iteration records the position, NUTS's acceptance probability, step size and whether it
    diverged; the per-particle log densities and predictions of the recorded states are computed
    in batched passes once sampling is over (as NumPyro's ``log_likelihood`` does), since NUTS
    itself only knows the joint potential energy of all particles. ``on_iteration(warming_up,
    z_unconstrained)`` is called after each iteration (a benchmark stops a run by raising in it).
    """
    check_differentiable(config.world)
    kernel = NUTS(
        level_set_model,
        target_accept_prob=target_accept_prob,
        max_tree_depth=max_tree_depth,
        init_strategy=init_to_sample,
        jit_compile=False,
    )
    record = _Record(config.warmup, config.steps, config.thin)

    def hook(kernel, params, stage, i):
        z_unconstrained = density.pack(params)
        record.add(stage.startswith("Warmup"), z_unconstrained, kernel)
        if on_iteration is not None:
            on_iteration(stage.startswith("Warmup"), z_unconstrained)

    mcmc = MCMC(
        kernel,
        num_samples=config.steps,
        warmup_steps=config.warmup,
        num_chains=1,
        hook_fn=hook,
        disable_progbar=not config.progress,
    )
    devices = [config.device] if config.device.type == "cuda" else []
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            seed_global(config.seed)  # pyro.set_rng_seed, for seeds up to 2**63 - 1
            mcmc.run(config.world, config.target, config.alpha, config.num_particles, **config.model_kwargs())
    finally:  # seed_global (like pyro.set_rng_seed) also seeds Python's and NumPy's global generators
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return record.draws(density)


class _Record:
    """NUTS's own draws: positions and per-iteration statistics, warm-up and sampling apart."""

    def __init__(self, warmup: int, steps: int, thin: int):
        self.warmup, self.thin = warmup, thin
        self.z: list[torch.Tensor] = []
        self.stats: dict[bool, dict[str, list[float]]] = {
            phase: {"acceptance_rate": [], "step_size": [], "diverging": []} for phase in (True, False)
        }
        self._tracker = _AcceptTracker()
        self._divergences_seen = 0
        self._sampling_index = 0

    def add(self, warming_up: bool, z_unconstrained: torch.Tensor, kernel) -> None:
        accept_prob = self._tracker.update(kernel, "warmup" if warming_up else "sample")
        diverged = len(kernel._divergences) > self._divergences_seen
        self._divergences_seen = len(kernel._divergences)
        if not warming_up:
            self.last = z_unconstrained.detach().clone()
            self._sampling_index += 1
            if (self._sampling_index - 1) % self.thin:
                return
            self.z.append(z_unconstrained.detach().clone())
        stats = self.stats[warming_up]
        stats["acceptance_rate"].append(accept_prob)
        stats["step_size"].append(float(kernel.step_size))
        stats["diverging"].append(float(diverged))

    def draws(self, density: ParticleDensity) -> Draws:
        flat = torch.stack(self.z, 1)  # (N, T, D)
        n, t = flat.shape[:2]
        scored = [density(chunk) for chunk in flat.reshape(n * t, -1).split(SCORE_BATCH)]
        unflatten = lambda values: torch.cat(values).reshape((n, t) + values[0].shape[1:]).cpu()
        log_prior = unflatten([s.log_prior for s in scored])
        log_likelihood = unflatten([s.log_likelihood for s in scored])
        per_step = lambda values: torch.tensor(values, dtype=log_prior.dtype).expand(n, len(values)).clone()
        traces = {
            "z": density.constrain(flat.reshape(n * t, -1))["z"].reshape(n, t, -1).cpu(),
            "prediction_probs": unflatten([s.predictions for s in scored]),
            "lp": log_prior + log_likelihood,
            "log_likelihood": log_likelihood,
            **{name: per_step(values) for name, values in self.stats[False].items()},
        }
        warmup = {name: per_step(values) for name, values in self.stats[True].items() if values}
        stats = {"num_divergent": int(sum(self.stats[False]["diverging"]))}
        final = density(self.last)  # the last state, which thinning may have left out of the traces
        return Draws(
            density.constrain(self.last)["z"].cpu(), final.predictions.cpu(), traces, "particles", warmup or None, stats
        )


class _AcceptTracker:
    """Recover each iteration's acceptance probability from the running mean Pyro keeps."""

    def __init__(self):
        self.previous, self.count, self.stage = 0.0, 0, None

    def update(self, kernel, stage: str) -> float:
        if stage != self.stage:  # Pyro restarts the running mean when sampling begins
            self.previous, self.count, self.stage = 0.0, 0, stage
        self.count += 1
        mean = float(kernel._mean_accept_prob)
        value = mean + (self.count - 1) * (mean - self.previous)
        self.previous = mean
        return min(1.0, max(0.0, value))
