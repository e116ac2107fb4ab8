"""Sequential Monte Carlo with adaptive likelihood tempering, from the prior to the level set.

Independent MH chains keep roughly the share of particles that started near each mode, not the
mode's posterior mass. Tempered SMC fixes the proportions: particles move through
``p(z) p(target | z)^beta`` for ``beta`` from 0 to 1, reweighted and resampled at every step, so a
mode's share follows its mass. The same run estimates ``log Z = log p(target)``, how much of the
world's data distribution produces the target prediction.

Composed of small named parts, as BlackJAX's SMC is: :func:`ess`, :func:`incremental_log_weights`,
:func:`next_beta` (bisection so that the ESS of the incremental weights
``exp((beta' - beta) log_likelihood)`` is ``target_ess`` x M), :func:`systematic_resample` and
:func:`resample_populations`, :func:`proposal_scale` and :func:`tune_scale`; :func:`init` and
:func:`step` advance an :class:`SMCState` by one temperature (reweight, add to the evidence,
resample, then K batched random-walk MH moves, :func:`pplevelset.infer.rwmh.step`, whose isotropic
scale follows the cloud's spread and is tuned to the population's acceptance after every move).
P independent populations run in one batch, so R-hat and ESS across them mean something; a
population that reaches beta = 1 stops while the others go on (a sweep puts ``P`` populations per
target in one batch, each with its own target rows, see :mod:`pplevelset.audit.batched`). Anchors
read: PyMC's ``sample_smc``, BlackJAX's ``adaptive_tempered_smc``.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from tqdm.auto import tqdm

from pplevelset.infer import rwmh
from pplevelset.infer.draws import Draws
from pplevelset.model import Density, ParticleDensity
from pplevelset.rng import global_rng_from

if TYPE_CHECKING:
    from pplevelset.infer.config import RunConfig, SMCOptions

BISECTION_STEPS = 50
SCALE_FACTOR_BOUNDS = (1e-3, 20.0)
STAGE_STATISTICS = ("beta", "ess", "acceptance_rate", "step_size")


class SMCState(NamedTuple):
    """Populations stacked along the particle dimension: ``(P * M, ...)`` particles, ``(P,)`` the rest."""

    particles: rwmh.RWState
    beta: torch.Tensor  # current inverse temperature per population
    log_evidence: torch.Tensor  # running log Z estimate per population
    scale_factor: torch.Tensor  # multiplies the spread-based proposal scale, tuned by acceptance


class SMCInfo(NamedTuple):
    """One temperature per population, ``(P,)`` each (the stage statistics), and the last MH move."""

    beta: torch.Tensor
    ess: torch.Tensor  # of the incremental weights, before resampling
    acceptance_rate: torch.Tensor  # mean over the stage's moves
    step_size: torch.Tensor  # the proposal scale at the end of the stage
    last_move: rwmh.RWInfo


class SMCResult(NamedTuple):
    state: SMCState  # final particles at beta = 1, and the evidence
    last: SMCInfo  # the last temperature
    stages: dict[str, torch.Tensor]  # (P, S) per temperature: STAGE_STATISTICS


def ess(log_weights: torch.Tensor) -> torch.Tensor:
    """Effective sample size ``(sum w)^2 / sum w^2`` of unnormalised log weights, along the last dim."""
    return torch.exp(2 * torch.logsumexp(log_weights, -1) - torch.logsumexp(2 * log_weights, -1))


def incremental_log_weights(log_likelihood: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``delta * log_likelihood`` per population (``delta`` is ``(P,)``), with ``-inf`` kept at ``-inf``."""
    delta = delta.unsqueeze(-1)
    return torch.where(
        torch.isneginf(log_likelihood), torch.full_like(log_likelihood, -math.inf), delta * log_likelihood
    )


def next_beta(log_likelihood: torch.Tensor, beta: torch.Tensor, target_ess: float) -> torch.Tensor:
    """Per population (rows of ``log_likelihood``, shape ``(P, M)``), the largest ``beta' <= 1`` whose
    incremental weights keep ESS >= ``target_ess * M``; particles with ``-inf`` likelihood weigh 0."""
    enough = lambda delta: ess(incremental_log_weights(log_likelihood, delta)) >= target_ess * log_likelihood.shape[-1]
    low, high = torch.zeros_like(beta), 1.0 - beta
    done = enough(high)
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        ok = enough(mid)
        low, high = torch.where(ok, mid, low), torch.where(ok, high, mid)
    step = torch.where(done, 1.0 - beta, low)
    step = torch.where(step > 0, step, torch.minimum(1.0 - beta, torch.full_like(beta, 1e-6)))  # always move on
    return torch.where(done, torch.ones_like(beta), (beta + step).clamp(max=1.0))


def systematic_resample(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Ancestor indices ``(P, M)`` within each population, by systematic resampling."""
    populations, num = log_weights.shape
    weights = torch.softmax(log_weights, -1)
    cumulative = weights.cumsum(-1)
    cumulative[:, -1] = 1.0
    offsets = torch.rand(populations, 1, generator=generator, device=log_weights.device, dtype=log_weights.dtype)
    positions = (offsets + torch.arange(num, device=log_weights.device, dtype=log_weights.dtype)) / num
    return torch.searchsorted(cumulative, positions).clamp(max=num - 1)


def resample_populations(
    particles: rwmh.RWState, log_weights: torch.Tensor, generator: torch.Generator
) -> rwmh.RWState:
    """Each population ``(P, M)`` resampled within itself; particles stay stacked ``(P * M, ...)``."""
    populations, per = log_weights.shape
    ancestors = systematic_resample(log_weights, generator)
    ancestors = (ancestors + per * torch.arange(populations, device=log_weights.device).unsqueeze(-1)).reshape(-1)
    return rwmh.RWState(*(field[ancestors] if field.numel() else field for field in particles))


def proposal_scale(spread: torch.Tensor, scale_factor: torch.Tensor, dim: int) -> torch.Tensor:
    """``factor * 2.38 / sqrt(D) * spread`` per population: optimal for a Gaussian of that spread."""
    return scale_factor * 2.38 / math.sqrt(dim) * spread


def tune_scale(scale_factor: torch.Tensor, acceptance: torch.Tensor) -> torch.Tensor:
    """Raise the factor when a population accepts more than 0.234, lower it when less (bounded)."""
    return (scale_factor * torch.exp(acceptance - rwmh.TARGET_ACCEPT)).clamp(*SCALE_FACTOR_BOUNDS)


def init(density: ParticleDensity, generator: torch.Generator, num_populations: int) -> SMCState:
    """Prior draws at beta = 0 (one global-RNG draw, seeded from ``generator``)."""
    with global_rng_from(generator):
        z = density.sample_prior()
    particles = rwmh.init(z, density, 1.0)
    # a NaN likelihood (a classifier failing somewhere) weighs zero, like -inf: weights stay finite
    particles = particles._replace(log_likelihood=torch.nan_to_num(particles.log_likelihood, nan=-math.inf))
    zeros = torch.zeros(num_populations, device=z.device, dtype=z.dtype)
    return SMCState(particles, zeros, zeros.clone(), torch.ones_like(zeros))


def step(
    generator: torch.Generator,
    state: SMCState,
    density: ParticleDensity | _Rows,
    *,
    moves: int = 10,
    target_ess: float = 0.5,
    final: bool = False,
) -> tuple[SMCState, SMCInfo]:
    """One temperature: choose beta', reweight, update log Z, resample, then ``moves`` MH moves.

    ``final`` jumps straight to beta = 1 (the cap on temperatures was reached).
    """
    populations = state.beta.shape[0]
    per = state.particles.log_likelihood.shape[0] // populations
    log_likelihood = state.particles.log_likelihood.reshape(populations, per)
    new_beta = torch.ones_like(state.beta) if final else next_beta(log_likelihood, state.beta, target_ess)
    log_w = incremental_log_weights(log_likelihood, new_beta - state.beta)
    log_w = torch.where((state.beta >= 1).unsqueeze(-1), torch.zeros_like(log_w), log_w)
    if torch.isneginf(log_w.max(-1).values).any():
        raise RuntimeError(
            "every particle of a population has zero likelihood; the target is unreachable from the prior at this alpha"
        )
    log_evidence = state.log_evidence + torch.logsumexp(log_w, -1) - math.log(per)
    stage_ess = ess(log_w)
    particles = resample_populations(state.particles, log_w, generator)
    dim = particles.z_unconstrained.shape[-1]
    spread = particles.z_unconstrained.reshape(populations, per, dim).std(1).mean(-1).clamp_min(1e-6)
    scale_factor = state.scale_factor
    particles = particles._replace(step_size=proposal_scale(spread, scale_factor, dim).repeat_interleave(per))
    particle_beta = new_beta.repeat_interleave(per)
    accepted = torch.zeros_like(new_beta)
    if moves < 1:
        raise ValueError(f"an SMC stage needs at least one MH move, got moves={moves}")
    for _ in range(moves):
        particles, info = rwmh.step(generator, particles, density, beta=particle_beta)
        move_acceptance = info.acceptance_prob.reshape(populations, per).mean(-1)
        accepted = accepted + move_acceptance
        # tuned after every move from the population's mean acceptance, so narrow late temperatures
        # are met within a stage
        scale_factor = tune_scale(scale_factor, move_acceptance)
        particles = particles._replace(step_size=proposal_scale(spread, scale_factor, dim).repeat_interleave(per))
    new_state = SMCState(particles, new_beta, log_evidence, scale_factor)
    # (``info`` is the last move's: ``moves >= 1``)
    return new_state, SMCInfo(
        new_beta, stage_ess, accepted / max(1, moves), proposal_scale(spread, scale_factor, dim), info
    )


class _Rows:
    """The density of the particles ``rows`` only (:class:`ParticleDensity` scores any subset of its
    rows in place, with a per-particle target taken at those rows)."""

    def __init__(self, density: ParticleDensity, rows: torch.Tensor):
        self.density, self.rows = density, rows

    def __call__(self, flat: torch.Tensor, rows=None) -> Density:
        return self.density(flat, self.rows if rows is None else self.rows[rows])


def _active_step(
    generator: torch.Generator, state: SMCState, density: ParticleDensity, active: torch.Tensor, **kwargs
) -> tuple[SMCState, SMCInfo]:
    """:func:`step` for the populations in ``active`` (a bool ``(P,)``) only; the others, already at
    beta = 1, stay as they are (no reweighting, no moves) and record beta 1, ESS M and NaN
    acceptance and step size for this temperature."""
    populations = state.beta.shape[0]
    per = state.particles.log_likelihood.shape[0] // populations
    chosen = active.nonzero().squeeze(-1)
    rows = (chosen.unsqueeze(-1) * per + torch.arange(per, device=chosen.device)).reshape(-1)
    sub = SMCState(
        rwmh.RWState(*(field[rows] if field.numel() else field for field in state.particles)),
        state.beta[chosen],
        state.log_evidence[chosen],
        state.scale_factor[chosen],
    )
    sub, sub_info = step(generator, sub, _Rows(density, rows), **kwargs)

    def put(full: torch.Tensor, part: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if not full.numel():
            return full
        out = full.clone()
        out[index] = part
        return out

    particles = rwmh.RWState(*(put(full, part, rows) for full, part in zip(state.particles, sub.particles)))
    new_state = SMCState(
        particles,
        put(state.beta, sub.beta, chosen),
        put(state.log_evidence, sub.log_evidence, chosen),
        put(state.scale_factor, sub.scale_factor, chosen),
    )
    nan = torch.full_like(state.beta, math.nan)
    last = sub_info.last_move
    full_last = rwmh.RWInfo(
        put(torch.full_like(state.particles.log_likelihood, math.nan), last.acceptance_prob, rows),
        put(torch.zeros_like(state.particles.log_likelihood, dtype=torch.bool), last.is_accepted, rows),
        put(torch.zeros_like(state.particles.log_likelihood, dtype=torch.bool), last.is_invalid, rows),
    )
    info = SMCInfo(
        put(torch.ones_like(state.beta), sub_info.beta, chosen),
        put(torch.full_like(state.beta, float(per)), sub_info.ess, chosen),
        put(nan, sub_info.acceptance_rate, chosen),
        put(nan, sub_info.step_size, chosen),
        full_last,
    )
    return new_state, info


def run_smc(
    density: ParticleDensity,
    generator: torch.Generator,
    num_populations: int,
    moves: int = 10,
    target_ess: float = 0.5,
    max_stages: int = 200,
    progress: bool = True,
) -> SMCResult:
    """Temper each of ``num_populations`` populations to beta = 1.

    A population that reaches beta = 1 stops there (no more moves) while the others go on, so a
    batch of populations with different targets (a sweep) costs each population its own
    temperatures, not the slowest one's.
    """
    if density.num_particles % num_populations:
        raise ValueError(f"{density.num_particles} particles do not split into {num_populations} equal populations")
    state = init(density, generator, num_populations)
    stages: dict[str, list] = {name: [] for name in STAGE_STATISTICS}
    bar = tqdm(
        total=1000,
        desc="tempering",
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5,
        bar_format="{l_bar}{bar}| beta {postfix}",
    )
    info: SMCInfo | None = None
    last_acceptance: torch.Tensor | None = None
    for stage in range(max_stages):
        if bool((state.beta >= 1).all()):
            break
        final = stage == max_stages - 1
        if final:
            warnings.warn(
                f"SMC hit its cap of {max_stages} temperatures before beta reached 1; the last "
                "step jumped to beta = 1, so the final weights may be degenerate. Lower alpha, "
                "raise the number of particles or the cap.",
                RuntimeWarning,
                stacklevel=2,
            )
        active = state.beta < 1
        if bool(active.all()):
            state, info = step(generator, state, density, moves=moves, target_ess=target_ess, final=final)
        else:
            state, info = _active_step(
                generator, state, density, active, moves=moves, target_ess=target_ess, final=final
            )
        last_acceptance = (
            info.last_move.acceptance_prob
            if last_acceptance is None
            else torch.where(
                torch.isnan(info.last_move.acceptance_prob), last_acceptance, info.last_move.acceptance_prob
            )
        )
        for name in STAGE_STATISTICS:
            stages[name].append(getattr(info, name))
        bar.n = int(1000 * float(state.beta.min()))
        bar.set_postfix_str(f"{float(state.beta.min()):.3g} (stage {stage + 1})", refresh=False)
        bar.refresh()
    bar.close()
    if info is None or last_acceptance is None:
        raise RuntimeError("SMC ran no temperature: every population started at beta = 1")
    # each particle's last MH move is its own population's last
    info = info._replace(last_move=info.last_move._replace(acceptance_prob=last_acceptance))
    return SMCResult(state, info, {name: torch.stack(values, -1) for name, values in stages.items()})


def start_positions(
    density: ParticleDensity,
    generator: torch.Generator,
    options: SMCOptions,
    populations: int = 1,
    progress: bool = True,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Unconstrained positions for MCMC chains: the particles of a tempered run to beta = 1, each of
    ``populations`` contiguous blocks (a sweep's targets, a ladder's rungs) its own population, in
    random order within it (resampling leaves copies side by side, and an ensemble's halves are
    contiguous), and what to record about the run.

    Why. Chains that start from the prior spend their warm-up finding the level set, and a population
    can still be climbing toward its better-fitting parts when sampling begins (mnist-vae ``ambiguous``
    at alpha 100: about 1,000 steps; benchmarks/population.md). Tempering reaches the level set in a
    few dozen batched moves and puts particles on each piece in about its share, which independent
    chains then keep and an ensemble refines. With few moves per temperature it need not reach the
    best-fitting part of a piece (mnist-vae ``1=0.46,7=0.46`` at alpha 100: a median log-likelihood
    of 18 where the posterior sits at 26.5), so the warm-up that follows still matters as well as
    adapting the kernel; the recorded steps are a valid chain whatever the start.
    """
    result = run_smc(
        density, generator, populations, moves=options.moves, target_ess=options.target_ess, progress=progress
    )
    z = result.state.particles.z_unconstrained
    blocks = z.reshape(populations, -1, z.shape[-1])
    order = torch.rand(blocks.shape[:2], generator=generator, device=z.device).argsort(-1)
    shuffled = blocks.gather(1, order.unsqueeze(-1).expand_as(blocks)).reshape(z.shape)
    return shuffled, {"start_temperatures": int(result.stages["beta"].shape[-1])}


def run(config: RunConfig, density: ParticleDensity, generator: torch.Generator) -> Draws:
    """The SMC kernel under the driver's contract: populations as chains, their final particles as draws."""
    options = config.smc
    with torch.no_grad():
        state, info, stages = run_smc(
            density,
            generator,
            options.populations,
            moves=options.moves,
            target_ess=options.target_ess,
            progress=config.progress,
        )
    particles, populations = state.particles, options.populations
    per = config.num_particles // populations
    z = density.constrain(particles.z_unconstrained)["z"]
    grouped = lambda value: value.reshape((populations, per) + value.shape[1:]).cpu()
    traces = {
        "z": grouped(z),
        "prediction_probs": grouped(particles.predictions),
        "lp": grouped(particles.log_prior + particles.log_likelihood),
        "log_likelihood": grouped(particles.log_likelihood),
        "acceptance_rate": grouped(info.last_move.acceptance_prob),  # of the last MH move
        "step_size": grouped(particles.step_size),
    }
    log_evidence = state.log_evidence.cpu()
    stats = {
        "log_evidence": float(torch.logsumexp(log_evidence, 0) - math.log(populations)),
        "log_evidence_per_population": [float(v) for v in log_evidence],
        "num_temperatures": int(stages["beta"].shape[-1]),
    }
    return Draws(
        z.cpu(),
        particles.predictions.cpu(),
        traces,
        "populations",
        None,
        stats,
        {name: value.cpu() for name, value in stages.items()},
    )
