"""Many targets in one batched run: each contiguous group of particles is conditioned on its own target.

The Dirichlet likelihood is per particle, so a batch of ``K * n`` particles can hold ``K`` targets
as an ``(N, L)`` target matrix (one row per particle, grouped contiguously): one decode + classify
of all particles per step serves every target. The kernels are the library's own, unchanged in
what they compute per particle:

- ``rwmh``: independent chains, so nothing couples the groups;
- ``ensemble``: the red/blue halves are taken within each group and proposals are built from the
  group's own complement (:func:`pplevelset.infer.ensemble.step` with ``groups=K``);
- ``smc``: ``K * P`` populations, ``P`` per target, each tempered and resampled within itself.

``nuts`` is not batched over particles (one Pyro state), so it has no sweep. The draws are split
per group and each becomes a :class:`~pplevelset.posterior.LevelSetPosterior` through the driver's
one constructor, with everything a single run has (summary, resampling, InferenceData: one per
target, exactly as ``sample`` writes it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import torch

from pplevelset.errors import UserInputError
from pplevelset.infer import rwmh
from pplevelset.infer.config import DEFAULT_KERNEL, RunConfig, SMCOptions
from pplevelset.infer.draws import Draws
from pplevelset.infer.driver import chain_start, ensemble_algorithm, to_posterior
from pplevelset.infer.mcmc import run_mcmc
from pplevelset.model import DEFAULT_SIGMA, ParticleDensity, level_set_model
from pplevelset.posterior import LevelSetPosterior
from pplevelset.rng import generator as seeded_generator
from pplevelset.targets import NamedTarget, expand_targets, parse_target
from pplevelset.worlds.base import World

SWEEP_KERNELS = ("rwmh", "ensemble", "smc")


@dataclasses.dataclass
class SweepResult:
    """One batched run over ``K`` targets: ``posteriors[k]`` is target ``k``'s
    :class:`LevelSetPosterior` (its ``settings`` and ``summary()`` as a single run of
    ``particles_per_target`` particles would have them; ``stats["batch"]`` says it shared a batch)."""

    targets: list[NamedTarget]
    posteriors: list[LevelSetPosterior]
    config: RunConfig  # the batch: target matrix (N, L), N = K * particles_per_target
    elapsed_s: float

    def __len__(self) -> int:
        return len(self.posteriors)

    def __getitem__(self, key: int | str) -> LevelSetPosterior:
        if isinstance(key, str):
            for target, posterior in zip(self.targets, self.posteriors):
                if target.spec == key:
                    return posterior
            raise KeyError(key)
        return self.posteriors[key]

    def __iter__(self):
        return iter(self.posteriors)

    def summaries(self, keep: int | None = 64, seed: int = 0) -> list[dict]:
        return [posterior.summary(keep=keep, seed=seed) for posterior in self.posteriors]


def sweep(
    world: World | str,
    targets: str | Sequence[str] | Sequence[NamedTarget],
    particles_per_target: int = 100,
    kernel: str | None = None,
    alpha: float = 10.0,
    warmup: int = 500,
    steps: int = 500,
    thin: int = 1,
    seed: int = 0,
    device: str = "cpu",
    step_size: float | None = None,
    progress: bool = True,
    populations: int = 4,
    moves: int = 10,
    target_ess: float = 0.5,
    likelihood: str = "dirichlet",
    sigma: float = DEFAULT_SIGMA,
    rungs: int = 1,
    start: str = "prior",
) -> SweepResult:
    """Sample the level sets of many targets in one batched run.

    :param targets: a family (``"graded:house"``, ``"pairs"``, ``"corners"``, ``"file:targets.txt"``),
        one target, or a list of either (see :func:`pplevelset.targets.expand_targets`).
    :param particles_per_target: ``n`` particles per target; the batch holds ``K * n``.
    :param kernel: ``rwmh``, ``ensemble`` or ``smc`` (default: the library's default kernel).
    The other parameters are :func:`pplevelset.sample`'s (``likelihood``, ``sigma``, ``rungs`` and ``start``
    included), per target (SMC: ``populations`` per target; ``start="smc"``: one tempered population per
    target and rung).

    Example::

        result = pls.sweep("houses", "graded:house", particles_per_target=100, warmup=200, steps=200)
        [post.delta() for post in result]; result["house=0.5,rocket=0.5"].summary()
    """
    kernel = DEFAULT_KERNEL if kernel is None else kernel
    if kernel not in SWEEP_KERNELS:
        raise UserInputError(
            f"kernel {kernel!r} cannot run a sweep; choose one of {', '.join(SWEEP_KERNELS)} "
            "(nuts moves all particles as one Pyro state)"
        )
    smc = SMCOptions(populations, moves, target_ess)
    first = RunConfig.build(
        world,
        "ambiguous",
        alpha=alpha,
        kernel=kernel,
        num_particles=particles_per_target,
        warmup=warmup,
        steps=steps,
        thin=thin,
        seed=seed,
        device=device,
        step_size=step_size,
        progress=progress,
        smc=smc,
        likelihood=likelihood,
        sigma=sigma,
        rungs=rungs,
        start=start,
    )
    named = _resolve(targets, first.world.classes)
    return run_batch(first, named)


def _resolve(targets, classes) -> list[NamedTarget]:
    if isinstance(targets, str):
        return expand_targets(targets, classes)
    items = list(targets)
    if not items:
        raise UserInputError("no targets given")
    out = []
    for item in items:
        if isinstance(item, NamedTarget):
            out.append(item)
        elif isinstance(item, str):
            out.extend(expand_targets(item, classes))
        else:  # a probability vector
            vector = parse_target(item, classes)
            out.append(NamedTarget(",".join(f"{float(v):g}" for v in vector), vector, "single", {}))
    return out


def run_batch(config: RunConfig, targets: Sequence[NamedTarget]) -> SweepResult:
    """``config`` (validated for one target of ``config.num_particles`` particles) run for every
    target at once; ``config.target`` is ignored."""
    if config.kernel not in SWEEP_KERNELS:
        raise UserInputError(f"kernel {config.kernel!r} cannot run a sweep; choose one of {', '.join(SWEEP_KERNELS)}")
    targets = list(targets)
    count, per = len(targets), config.num_particles
    device = config.device
    matrix = torch.stack([target.vector.to(device) for target in targets]).repeat_interleave(per, 0)
    batch = dataclasses.replace(
        config,
        target=matrix,
        target_spec=f"{count} targets",
        num_particles=count * per,
        smc=dataclasses.replace(config.smc, populations=count * config.smc.populations),
    )
    with torch.random.fork_rng(devices=[]):  # the density's prototype trace draws from the prior
        density = ParticleDensity(  # a tempered ensemble's rungs each hold every target's particles
            level_set_model,
            (batch.world, matrix.repeat(batch.replicas, 1), batch.alpha, batch.num_particles * batch.replicas),
            batch.model_kwargs(),
        )
    generator = seeded_generator(batch.seed, device)
    start = time.perf_counter()
    draws = _run_kernel(batch, density, generator, count)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    posteriors = []
    for index, target in enumerate(targets):
        single = dataclasses.replace(config, target=target.vector.to(device), target_spec=target.spec)
        part = split_draws(draws, index, count, config)
        part.stats["batch"] = {
            "targets": count,
            "particles": count * per,
            "elapsed_s": round(elapsed, 3),
            "group": index,
        }
        posteriors.append(to_posterior(single, part, elapsed / count))
    return SweepResult(targets, posteriors, batch, elapsed)


def _run_kernel(batch: RunConfig, density: ParticleDensity, generator: torch.Generator, groups: int) -> Draws:
    if batch.kernel == "smc":
        from pplevelset.infer import smc

        return smc.run(batch, density, generator)
    algorithm = ensemble_algorithm(batch, groups) if batch.kernel == "ensemble" else rwmh.algorithm(batch.step_size)
    z, started = chain_start(batch, density, generator, batch.replicas * groups)  # a population per target and rung
    draws = run_mcmc(algorithm, density, generator, z, batch.warmup, batch.steps, batch.thin, batch.progress)
    draws.stats.update(started)
    return draws


SHARED_STATS = (
    "num_invalid_proposals",
    "move_acceptance",
    "move_weights",
    "swap_acceptance",
    "betas",
    "start_temperatures",
)  # the batch's, not a target's


def split_draws(draws: Draws, index: int, groups: int, config: RunConfig) -> Draws:
    """Group ``index`` of ``groups`` from a batch's draws: its particles (MCMC) or its populations
    (SMC, with its own log evidence and number of temperatures)."""
    per = config.num_particles
    rows = slice(index * per, (index + 1) * per)
    stats = {
        ("batch_" + key if key in SHARED_STATS else key): value
        for key, value in draws.stats.items()
        if key not in ("log_evidence", "log_evidence_per_population", "num_temperatures")
    }
    stages = None
    if draws.chains == "populations":
        populations = config.smc.populations
        chains = slice(index * populations, (index + 1) * populations)
        traces = {name: value[chains] for name, value in draws.traces.items()}
        stages = {name: value[chains] for name, value in (draws.stages or {}).items()}
        per_population = draws.stats["log_evidence_per_population"][chains]
        values = torch.tensor(per_population, dtype=torch.float64)
        stats["log_evidence"] = float(torch.logsumexp(values, 0) - math.log(populations))
        stats["log_evidence_per_population"] = per_population
        reached = (stages["beta"] >= 1).all(0)
        used = int(reached.nonzero()[0]) + 1 if bool(reached.any()) else int(stages["beta"].shape[-1])
        stats["num_temperatures"] = used
        stages = {name: value[:, :used] for name, value in stages.items()}
    else:
        traces = {name: value[rows] for name, value in draws.traces.items()}
    warmup = {name: value[rows] for name, value in draws.warmup_traces.items()} if draws.warmup_traces else None
    return Draws(draws.z[rows], draws.predictions[rows], traces, draws.chains, warmup, stats, stages)
