"""The driver: one run configuration in, one posterior out, whichever kernel runs.

:func:`run` builds what every kernel shares once (the per-particle density of the level-set
program and the seeded generator), hands them to the kernel's ``run(config, density, generator)``,
which returns :class:`~pplevelset.infer.draws.Draws`, and turns those into a
:class:`~pplevelset.posterior.LevelSetPosterior` in one place. :func:`sample` is the documented
keyword front door to the same path.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from pplevelset.infer import rwmh
from pplevelset.infer.config import RunConfig, SMCOptions
from pplevelset.infer.draws import Draws
from pplevelset.infer.mcmc import initial_positions, run_mcmc
from pplevelset.model import ParticleDensity, level_set_model
from pplevelset.posterior import LevelSetPosterior
from pplevelset.rng import generator as seeded_generator
from pplevelset.worlds.base import World


def sample(world: World | str, target: str | Sequence[float] | torch.Tensor, alpha: float = 10.0,
           num_particles: int = 1000, warmup: int = 500, steps: int = 500, kernel: str = "rwmh",
           seed: int = 0, device: str = "cpu", thin: int = 1, step_size: float | None = None,
           progress: bool = True, populations: int = 4, moves: int = 10,
           target_ess: float = 0.5) -> LevelSetPosterior:
    """Sample the level set ``{z : f(g(z)) ~ target}`` of ``world``.

    :param world: a :class:`World` or a registered name (``"houses"``).
    :param target: ``"ambiguous"``, ``"house=0.999"``, ``"1=0.46,7=0.46"`` or a probability vector.
    :param alpha: Dirichlet concentration: larger is stricter about matching the target.
    :param num_particles: N chains, advanced together as one batch.
    :param warmup: steps of adaptation, discarded.
    :param steps: T recorded steps after warm-up (every ``thin``-th is kept).
    :param kernel: ``"rwmh"`` (batched random-walk MH, no gradients), ``"ensemble"`` (population
        MCMC whose particles cross between the pieces of a level set), ``"nuts"``, or ``"smc"``
        (tempered SMC: right proportions across modes, and ``log_evidence``; ``warmup`` and
        ``steps`` do not apply, ``populations``, ``moves`` and ``target_ess`` do).
    :param seed: the only source of randomness; the caller's global RNG is left as it was.
    :param step_size: rwmh only: the initial proposal scale (default: from the prior's spread).
    :param populations: SMC only: independent populations splitting the particles (ArviZ chains).
    :param moves: SMC only: MH moves per temperature.
    :param target_ess: SMC only: ESS fraction each temperature step keeps.

    Example::

        post = pls.sample("toy", "a=0.8", alpha=20, num_particles=500, warmup=200, steps=200)
        post.delta(), post.resample(16).z
    """
    config = RunConfig.build(world, target, alpha=alpha, kernel=kernel, num_particles=num_particles, warmup=warmup,
                             steps=steps, thin=thin, seed=seed, device=device, step_size=step_size,
                             progress=progress, smc=SMCOptions(populations, moves, target_ess))
    return run(config)


def run(config: RunConfig) -> LevelSetPosterior:
    """Run ``config.kernel`` as ``config`` says and return the posterior with its traces."""
    with torch.random.fork_rng(devices=[]):  # the density's prototype trace draws from the prior
        density = ParticleDensity(level_set_model, (config.world, config.target, config.alpha, config.num_particles))
    generator = seeded_generator(config.seed, config.device)
    start = time.perf_counter()
    draws = kernel_runner(config.kernel)(config, density, generator)
    if config.device.type == "cuda":
        torch.cuda.synchronize(config.device)
    return to_posterior(config, draws, time.perf_counter() - start)


def to_posterior(config: RunConfig, draws: Draws, elapsed_s: float) -> LevelSetPosterior:
    """The one constructor from a kernel's draws to a :class:`LevelSetPosterior`."""
    return LevelSetPosterior(config.world, config.target, config.settings(), draws.z, draws.predictions,
                             traces=draws.traces, warmup_traces=draws.warmup_traces, elapsed_s=elapsed_s,
                             stats=draws.stats, stages=draws.stages, chains=draws.chains)


def kernel_runner(name: str) -> Callable[[RunConfig, ParticleDensity, torch.Generator], Draws]:
    """The kernel contract: ``run(config, density, generator) -> Draws``."""
    if name == "smc":
        from pplevelset.infer import smc

        return smc.run
    if name == "nuts":
        from pplevelset.infer import nuts

        return nuts.run
    if name == "ensemble":
        from pplevelset.infer import ensemble

        return lambda config, density, generator: _run_batched(ensemble.algorithm(), config, density, generator)
    return lambda config, density, generator: _run_batched(rwmh.algorithm(config.step_size), config, density,
                                                           generator)


def _run_batched(algorithm, config: RunConfig, density: ParticleDensity, generator: torch.Generator) -> Draws:
    """A batched MCMC kernel from prior draws (redrawn where the density is not finite)."""
    with torch.no_grad():
        z = initial_positions(density, generator)
    return run_mcmc(algorithm, density, generator, z, config.warmup, config.steps, config.thin, config.progress)
