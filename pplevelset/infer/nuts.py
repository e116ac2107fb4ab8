"""Pyro's NUTS on the level-set program, for worlds whose decoder and classifier are differentiable.

All N particles form one Pyro state, so they share NUTS's adapted step size, mass matrix and tree
depth while remaining independent in distribution: every particle's marginal is the posterior.
Keep N modest (tens to hundreds): the joint step size shrinks slowly as N grows.
"""

from __future__ import annotations

from typing import Callable

import pyro
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_sample

from pplevelset.errors import UserInputError
from pplevelset.model import ParticleDensity, level_set_model
from pplevelset.worlds.base import World


def check_differentiable(world: World) -> None:
    """Refuse NUTS, in one line, for a world that says (or shows) it has no gradients."""
    advice = 'use kernel="rwmh" (--kernel rwmh on the command line)'
    if not world.differentiable:
        raise UserInputError(f"world {world.name!r} is not differentiable (differentiable=False), "
                             f"so NUTS cannot run on it; {advice}")
    z = world.prior().sample((2,)).requires_grad_(True)
    try:  # a classifier that leaves torch (scikit-learn, numpy) fails here, not deep inside Pyro
        (gradient,) = torch.autograd.grad(world.predict(z).sum(), z, allow_unused=True)
    except RuntimeError as exc:
        gradient, reason = None, str(exc).splitlines()[0]
    else:
        reason = "its predictions do not depend differentiably on z"
    if gradient is None:
        raise UserInputError(f"world {world.name!r} has no gradients ({reason}), so NUTS cannot run on it; "
                             f"set differentiable = False on the world and {advice}")


def run_nuts(world: World, target: torch.Tensor, alpha: float, num_particles: int, warmup: int,
             steps: int, seed: int, record: Callable, progress: bool = True,
             target_accept_prob: float = 0.8, max_tree_depth: int = 8) -> None:
    """Run NUTS, calling ``record(stage, density, z_unconstrained, accept_prob, step_size)`` each step.

    ``stage`` is ``"warmup"`` or ``"sample"``. The recorder scores the state once per iteration,
    a small cost next to the 2^depth gradient evaluations of the iteration itself.
    """
    check_differentiable(world)
    args = (world, target, alpha, num_particles)
    density = ParticleDensity(level_set_model, args)
    kernel = NUTS(level_set_model, target_accept_prob=target_accept_prob, max_tree_depth=max_tree_depth,
                  init_strategy=init_to_sample, jit_compile=False)
    tracker = _AcceptTracker()

    def hook(kernel, params, stage, i):
        accept_prob = tracker.update(kernel, stage)
        z = density.pack(params)
        record("warmup" if stage.startswith("Warmup") else "sample", density, z, accept_prob,
               float(kernel.step_size))

    mcmc = MCMC(kernel, num_samples=steps, warmup_steps=warmup, num_chains=1, hook_fn=hook,
                disable_progbar=not progress)
    devices = [target.device] if target.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        pyro.set_rng_seed(seed)
        mcmc.run(*args)


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
