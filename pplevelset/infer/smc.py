"""Sequential Monte Carlo with adaptive likelihood tempering, from the prior to the level set.

Independent MH chains keep roughly the share of particles that started near each mode, not the
mode's posterior mass. Tempered SMC fixes the proportions: particles move through
``p(z) p(target | z)^beta`` for ``beta`` from 0 to 1, reweighted and resampled at every step, so a
mode's share follows its mass. The same run estimates ``log Z = log p(target)``, how much of the
world's data distribution produces the target prediction.

Each stage, per population: the next beta is found by bisection so that the effective sample size
of the incremental weights ``exp((beta' - beta) log_likelihood)`` is ``target_ess`` x M; the
evidence gains ``log mean(weights)``; systematic resampling; then K batched random-walk MH moves
(:func:`pplevelset.infer.rwmh.step`) with an isotropic scale set from the cloud's spread and tuned
to the population's acceptance rate after every move. P independent populations run in one batch, so R-hat and
ESS across them mean something. Anchors read: PyMC's ``sample_smc``, BlackJAX's
``adaptive_tempered_smc``.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from pplevelset.infer import rwmh
from pplevelset.model import ParticleDensity

BISECTION_STEPS = 50


class SMCResult(NamedTuple):
    state: rwmh.RWState  # final particles, populations stacked: (P * M, ...)
    info: rwmh.RWInfo  # the last MH move
    log_evidence: torch.Tensor  # (P,)
    stages: dict[str, torch.Tensor]  # (P, S) per stage: beta, ess (before resampling), acceptance_rate, step_size


def next_beta(log_likelihood: torch.Tensor, beta: torch.Tensor, target_ess: float) -> torch.Tensor:
    """Per population (rows of ``log_likelihood``, shape ``(P, M)``), the largest ``beta' <= 1`` whose
    incremental weights keep ESS >= ``target_ess * M``; particles with ``-inf`` likelihood weigh 0."""
    num = log_likelihood.shape[-1]

    def ess(delta):
        log_w = _incremental(log_likelihood, delta)
        return torch.exp(2 * torch.logsumexp(log_w, -1) - torch.logsumexp(2 * log_w, -1))

    low, high = torch.zeros_like(beta), 1.0 - beta
    done = ess(high) >= target_ess * num
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        ok = ess(mid) >= target_ess * num
        low, high = torch.where(ok, mid, low), torch.where(ok, high, mid)
    step = torch.where(done, 1.0 - beta, low)
    step = torch.where(step > 0, step, torch.minimum(1.0 - beta, torch.full_like(beta, 1e-6)))  # always move on
    return torch.where(done, torch.ones_like(beta), (beta + step).clamp(max=1.0))


def _incremental(log_likelihood: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    delta = delta.unsqueeze(-1)
    return torch.where(torch.isneginf(log_likelihood), torch.full_like(log_likelihood, -math.inf),
                       delta * log_likelihood)


def systematic_resample(log_weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Ancestor indices ``(P, M)`` within each population, by systematic resampling."""
    populations, num = log_weights.shape
    weights = torch.softmax(log_weights, -1)
    cumulative = weights.cumsum(-1)
    cumulative[:, -1] = 1.0
    offsets = torch.rand(populations, 1, generator=generator, device=log_weights.device, dtype=log_weights.dtype)
    positions = (offsets + torch.arange(num, device=log_weights.device, dtype=log_weights.dtype)) / num
    return torch.searchsorted(cumulative, positions).clamp(max=num - 1)


def run_smc(density: ParticleDensity, generator: torch.Generator, num_populations: int, moves: int = 10,
            target_ess: float = 0.5, max_stages: int = 200, progress: bool = True) -> SMCResult:
    """Temper each of ``num_populations`` populations of ``density.num_particles / P`` particles to beta = 1."""
    total = density.num_particles
    if total % num_populations:
        raise ValueError(f"{total} particles do not split into {num_populations} equal populations")
    per = total // num_populations
    device, dim = density.device, density.dim
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator, device=device)))
        z = density.sample_prior()
    state = rwmh.init(z, density, 1.0)
    # a NaN likelihood (a classifier failing somewhere) weighs zero, like -inf: weights stay finite
    state = state._replace(log_likelihood=torch.nan_to_num(state.log_likelihood, nan=-math.inf))
    beta = torch.zeros(num_populations, device=device, dtype=z.dtype)
    log_evidence = torch.zeros_like(beta)
    scale_factor = torch.ones_like(beta)
    stages = {name: [] for name in ("beta", "ess", "acceptance_rate", "step_size")}
    info = None
    bar = tqdm(total=1000, desc="tempering", disable=not progress, dynamic_ncols=True, mininterval=0.5,
               bar_format="{l_bar}{bar}| beta {postfix}")
    for stage in range(max_stages):
        if bool((beta >= 1).all()):
            break
        log_likelihood = state.log_likelihood.reshape(num_populations, per)
        if stage == max_stages - 1:
            new_beta = torch.ones_like(beta)
            warnings.warn(f"SMC hit its cap of {max_stages} temperatures before beta reached 1; the last "
                          "step jumped to beta = 1, so the final weights may be degenerate. Lower alpha, "
                          "raise the number of particles or the cap.", RuntimeWarning, stacklevel=2)
        else:
            new_beta = next_beta(log_likelihood, beta, target_ess)
        log_w = _incremental(log_likelihood, new_beta - beta)
        finished = beta >= 1
        log_w = torch.where(finished.unsqueeze(-1), torch.zeros_like(log_w), log_w)
        if torch.isneginf(log_w.max(-1).values).any():
            raise RuntimeError("every particle of a population has zero likelihood; the target is unreachable "
                               "from the prior at this alpha")
        log_evidence = log_evidence + torch.logsumexp(log_w, -1) - math.log(per)
        ess = torch.exp(2 * torch.logsumexp(log_w, -1) - torch.logsumexp(2 * log_w, -1))
        ancestors = systematic_resample(log_w, generator)
        ancestors = (ancestors + per * torch.arange(num_populations, device=device).unsqueeze(-1)).reshape(-1)
        state = rwmh.RWState(*(field[ancestors] if field.numel() else field for field in state))
        beta = new_beta

        spread = state.z_unconstrained.reshape(num_populations, per, dim).std(1).mean(-1).clamp_min(1e-6)
        scale = scale_factor * 2.38 / math.sqrt(dim) * spread
        step_size = scale.repeat_interleave(per)
        state = state._replace(step_size=step_size)
        particle_beta = beta.repeat_interleave(per)
        accepted = torch.zeros_like(beta)
        for _ in range(moves):
            state, info = rwmh.step(generator, state, density, beta=particle_beta)
            move_acceptance = info.acceptance_prob.reshape(num_populations, per).mean(-1)
            accepted = accepted + move_acceptance
            # tune the population's scale after every move from its mean acceptance (a statistic of
            # the whole population, as between stages), so narrow late temperatures are met within a stage
            scale_factor = (scale_factor * torch.exp(move_acceptance - rwmh.TARGET_ACCEPT)).clamp(1e-3, 20.0)
            state = state._replace(step_size=(scale_factor * 2.38 / math.sqrt(dim) * spread).repeat_interleave(per))
        acceptance = accepted / max(1, moves)
        final_scale = scale_factor * 2.38 / math.sqrt(dim) * spread
        for name, value in zip(stages, (beta, ess, acceptance, final_scale)):
            stages[name].append(value)
        bar.n = int(1000 * float(beta.min()))
        bar.set_postfix_str(f"{float(beta.min()):.3g} (stage {stage + 1})", refresh=False)
        bar.refresh()
    bar.close()
    return SMCResult(state, info, log_evidence, {name: torch.stack(values, -1) for name, values in stages.items()})
