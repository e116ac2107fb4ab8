"""The driver: one run configuration in, one posterior out, whichever kernel runs.

:func:`run` builds what every kernel shares once (the per-particle density of the level-set
program and the seeded generator), hands them to the kernel's ``run(config, density, generator)``,
which returns :class:`~pplevelset.infer.draws.Draws`, and turns those into a
:class:`~pplevelset.posterior.LevelSetPosterior` in one place. :func:`sample` is the documented
keyword front door to the same path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from pplevelset.errors import UserInputError
from pplevelset.infer import rwmh
from pplevelset.infer.config import DEFAULT_KERNEL, RunConfig, SMCOptions, check_count
from pplevelset.infer.draws import Draws
from pplevelset.infer.mcmc import initial_positions, run_mcmc
from pplevelset.infer.resume import RESUMABLE_KERNELS, WHY_NOT, Checkpoints, RunInterrupted, stop_on_signals
from pplevelset.infer.resume import load as load_checkpoint
from pplevelset.model import DEFAULT_SIGMA, ParticleDensity, level_set_model
from pplevelset.posterior import LevelSetPosterior
from pplevelset.rng import generator as seeded_generator
from pplevelset.worlds.base import World


def sample(
    world: World | str,
    target: str | Sequence[float] | torch.Tensor,
    alpha: float = 10.0,
    num_particles: int = 1000,
    warmup: int = 500,
    steps: int = 500,
    kernel: str = DEFAULT_KERNEL,
    seed: int = 0,
    device: str = "cpu",
    thin: int = 1,
    step_size: float | None = None,
    progress: bool = True,
    populations: int = 4,
    moves: int = 10,
    target_ess: float = 0.5,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: str | Path | None = None,
    likelihood: str = "dirichlet",
    sigma: float = DEFAULT_SIGMA,
    rungs: int = 1,
    start: str = "prior",
) -> LevelSetPosterior:
    """Sample the level set ``{z : f(g(z)) ~ target}`` of ``world``.

    :param world: a :class:`World` or a registered name (``"houses"``).
    :param target: ``"ambiguous"``, ``"house=0.999"``, ``"1=0.46,7=0.46"`` or a probability vector.
    :param alpha: Dirichlet concentration: larger is stricter about matching the target.
    :param likelihood: ``"dirichlet"`` (default, the paper's ``Dirichlet(alpha f(x))``) or ``"normal"``
        (Bayes-TrEx's: ``Normal(f_i(x), sigma)`` independently per class; ``alpha`` is then unused).
    :param sigma: the Normal likelihood's standard deviation (default 0.05, Bayes-TrEx's).
    :param num_particles: N chains, advanced together as one batch.
    :param warmup: steps of adaptation, discarded.
    :param steps: T recorded steps after warm-up (every ``thin``-th is kept).
    :param kernel: ``"rwmh"`` (batched random-walk MH, no gradients), ``"ensemble"`` (population
        MCMC whose particles cross between the pieces of a level set), ``"nuts"``, or ``"smc"``
        (tempered SMC: right proportions across modes, and ``log_evidence``; ``warmup`` and
        ``steps`` do not apply, ``populations``, ``moves`` and ``target_ess`` do).
    :param rungs: ensemble only: replica exchange over this many likelihood temperatures (default 1:
        none). Each rung is ``num_particles`` particles, so a step costs ``rungs`` times as much; only
        the ``beta = 1`` rung is recorded. Use 3-4 when R-hat stays above 1.05 on a multi-piece level set.
    :param start: rwmh and ensemble: where the chains start, ``"prior"`` (default) or ``"smc"``: the
        particles of one tempered SMC run (``moves`` and ``target_ess`` apply), already on the level
        set and spread over its pieces, so the warm-up need not find it. Use it at high alpha, where the
        burn-in check says a population was still climbing; there the warm-up may still have to settle
        into the level set's best-fitting part (give it 1,000 steps: README, "Which kernel when").
    :param seed: the only source of randomness (0 .. 2**63 - 1, every bit counts); the caller's
        global RNGs (torch, NumPy, Python) are left as they were.
    :param step_size: rwmh only: the initial proposal scale (default: from the prior's spread).
    :param populations: SMC only: independent populations splitting the particles (ArviZ chains).
    :param moves: SMC only: MH moves per temperature.
    :param target_ess: SMC only: ESS fraction each temperature step keeps.
    :param checkpoint: rwmh and ensemble only: a folder to save the run's state into, every
        ``checkpoint_every`` steps (default: every 60 seconds) and when SIGINT or SIGTERM arrives;
        the run then stops at the next step boundary with :class:`~pplevelset.infer.resume.RunInterrupted`
        (a ``KeyboardInterrupt``) saying how to resume.
    :param resume: a folder written by ``checkpoint``: continue that run (called with the same
        settings) bit for bit, as if it had never stopped; further checkpoints go to the same folder.

    Example::

        post = pls.sample("toy", "a=0.8", alpha=20, num_particles=500, warmup=200, steps=200)
        post.delta(), post.resample(16).z
    """
    config = RunConfig.build(
        world,
        target,
        alpha=alpha,
        kernel=kernel,
        num_particles=num_particles,
        warmup=warmup,
        steps=steps,
        thin=thin,
        seed=seed,
        device=device,
        step_size=step_size,
        progress=progress,
        smc=SMCOptions(populations, moves, target_ess),
        likelihood=likelihood,
        sigma=sigma,
        rungs=rungs,
        start=start,
    )
    folder = resume if resume is not None else checkpoint
    if folder is None:
        if checkpoint_every is not None:
            raise UserInputError("checkpoint_every needs checkpoint=FOLDER")
        return run(config)
    checkpoints = make_checkpoints(config, folder, every_steps=checkpoint_every, resume=resume is not None)
    with stop_on_signals() as stop:
        checkpoints.stop = stop
        try:
            return run(config, checkpoints)
        except RunInterrupted as exc:
            exc.message = (
                f"{exc.message}; the checkpoint is in {folder}; continue with pls.sample(..., resume={str(folder)!r})"
            )
            raise


def make_checkpoints(
    config: RunConfig,
    folder: str | Path,
    every_steps: int | None = None,
    every_seconds: float | None = 60.0,
    resume: bool = False,
) -> Checkpoints:
    """Checkpoints of ``config``'s run in ``folder`` (refused, in one line, for kernels that cannot
    resume); with ``resume``, loaded from there and checked against ``config``'s settings."""
    if config.kernel not in RESUMABLE_KERNELS:
        raise UserInputError(
            f"the {config.kernel} kernel cannot checkpoint or resume ({WHY_NOT[config.kernel]}); "
            f"use {' or '.join(RESUMABLE_KERNELS)}"
        )
    if every_steps is not None:
        check_count(every_steps, "checkpoint_every", 1)
    settings = checkpoint_settings(config)
    payload = load_checkpoint(folder, settings) if resume else None
    return Checkpoints(Path(folder), settings, every_steps, every_seconds if every_steps is None else None, payload)


def checkpoint_settings(config: RunConfig) -> dict:
    """What a checkpoint must agree with to be resumed by ``config``'s run."""
    return {
        **config.settings(),
        "world": config.world.name,
        "step_size": config.step_size,
        "target_vector": [float(v) for v in config.target.cpu()],
    }


def run(config: RunConfig, checkpoints: Checkpoints | None = None) -> LevelSetPosterior:
    """Run ``config.kernel`` as ``config`` says and return the posterior with its traces.

    ``checkpoints`` (batched kernels only) saves the run as it goes, resumes it, and stops it at a
    step boundary on request (:mod:`pplevelset.infer.resume`)."""
    if checkpoints is not None and config.kernel not in RESUMABLE_KERNELS:
        raise UserInputError(f"the {config.kernel} kernel cannot checkpoint ({WHY_NOT[config.kernel]})")
    with torch.random.fork_rng(devices=[]):  # the density's prototype trace draws from the prior
        density = ParticleDensity(
            level_set_model,
            (config.world, config.target, config.alpha, config.num_particles * config.replicas),
            config.model_kwargs(),
        )
    generator = seeded_generator(config.seed, config.device)
    start = time.perf_counter()
    draws = kernel_runner(config.kernel, checkpoints)(config, density, generator)
    if config.device.type == "cuda":
        torch.cuda.synchronize(config.device)
    return to_posterior(config, draws, time.perf_counter() - start)


def to_posterior(config: RunConfig, draws: Draws, elapsed_s: float) -> LevelSetPosterior:
    """The one constructor from a kernel's draws to a :class:`LevelSetPosterior`."""
    return LevelSetPosterior(
        config.world,
        config.target,
        config.settings(),
        draws.z,
        draws.predictions,
        traces=draws.traces,
        warmup_traces=draws.warmup_traces,
        elapsed_s=elapsed_s,
        stats=draws.stats,
        stages=draws.stages,
        chains=draws.chains,
    )


def kernel_runner(
    name: str, checkpoints: Checkpoints | None = None
) -> Callable[[RunConfig, ParticleDensity, torch.Generator], Draws]:
    """The kernel contract: ``run(config, density, generator) -> Draws`` (the batched kernels'
    runners carry ``checkpoints`` with them)."""
    if name == "smc":
        from pplevelset.infer import smc

        return smc.run
    if name == "nuts":
        from pplevelset.infer import nuts

        return nuts.run
    if name == "ensemble":
        return lambda config, density, generator: _run_batched(
            ensemble_algorithm(config), config, density, generator, checkpoints
        )
    return lambda config, density, generator: _run_batched(
        rwmh.algorithm(config.step_size), config, density, generator, checkpoints
    )


def ensemble_algorithm(config: RunConfig, groups: int = 1):
    """The ensemble kernel ``config`` asks for: plain, or replica exchange over ``config.rungs``."""
    if config.rungs > 1:
        from pplevelset.infer import replica

        return replica.algorithm(config.rungs, groups=groups)
    from pplevelset.infer import ensemble

    return ensemble.algorithm(groups=groups)


def _run_batched(
    algorithm,
    config: RunConfig,
    density: ParticleDensity,
    generator: torch.Generator,
    checkpoints: Checkpoints | None = None,
) -> Draws:
    """A batched MCMC kernel from :func:`chain_start`'s positions (prior draws whatever the start
    when resumed: the saved state and generator replace them)."""
    resumed = checkpoints is not None and checkpoints.resume is not None
    z, started = chain_start(config, density, generator, prior=resumed)
    draws = run_mcmc(
        algorithm, density, generator, z, config.warmup, config.steps, config.thin, config.progress, checkpoints
    )
    draws.stats.update(started)
    return draws


def chain_start(
    config: RunConfig, density: ParticleDensity, generator: torch.Generator, populations: int = 1, prior: bool = False
) -> tuple[torch.Tensor, dict]:
    """Where a batched MCMC run's chains start, and what to record about it: prior draws (redrawn where
    the density is not finite), or with ``config.start == "smc"`` (unless ``prior``) the particles of a
    tempered run, ``populations`` contiguous blocks each its own (:func:`pplevelset.infer.smc.start_positions`)."""
    with torch.no_grad():
        if config.start == "smc" and not prior:
            from pplevelset.infer import smc

            return smc.start_positions(density, generator, config.smc, populations, progress=config.progress)
        return initial_positions(density, generator), {}
