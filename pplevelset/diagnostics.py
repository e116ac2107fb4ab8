"""Convergence diagnostics over particles-as-chains, as pure statistics: ArviZ R-hat and ESS, a
burn-in check, and the warnings a careful reader of them would give."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

with warnings.catch_warnings():  # ArviZ 0.2x announces its 1.0 refactor on import; only here, not process-wide
    warnings.filterwarnings("ignore", message="ArviZ is undergoing", category=FutureWarning)
    import arviz as az

EARLY_FRACTION = 0.1  # window at the start of sampling compared with ...
LATE_FRACTION = 0.5  # ... the last half of sampling
Z_THRESHOLD = 4.0  # drift this many standard errors from zero is not noise
MIN_EFFECT = 0.1  # ... and it must be at least this fraction of the log-likelihood's spread


def convergence(idata: az.InferenceData, var_names=("z",)) -> dict[str, float]:
    """Worst rank-normalised split R-hat and smallest bulk/tail ESS over the latent dimensions."""
    posterior = idata.posterior[list(var_names)]
    if posterior.sizes["draw"] < 4:
        return {"rhat_max": math.nan, "ess_bulk_min": math.nan, "ess_tail_min": math.nan}
    return {
        "rhat_max": _extreme(az.rhat(posterior), np.nanmax),
        "ess_bulk_min": _extreme(az.ess(posterior, method="bulk"), np.nanmin),
        "ess_tail_min": _extreme(az.ess(posterior, method="tail"), np.nanmin),
    }


def population_convergence(idata: az.InferenceData, var_names=("z",)) -> dict[str, float]:
    """ESS and autocorrelation time of the population's mean, for kernels whose particles interact.

    An ensemble's particles are not independent chains: each moves by the others' positions, so the
    share of the population on each piece of a level set drifts as a whole, and per-particle ESS
    does not see it (mnist-vae ``ambiguous`` at alpha 100: standard errors from it 10-20x below
    the spread over seeds; benchmarks/population.md). The mean over particles at each draw is one
    time series of the product-space chain, so its Monte Carlo standard error holds whatever the
    particles share. Per coordinate: ``ess_population`` is the posterior variance over that squared
    error (comparable with independent chains' ESS), ``tau_population`` the series' integrated
    autocorrelation time in draws (emcee's tau of the ensemble mean)."""
    posterior = idata.posterior[list(var_names)]
    draws = posterior.sizes["draw"]
    if draws < 4:
        return {"ess_population_min": math.nan, "tau_population_max": math.nan}
    values = np.concatenate(
        [posterior[name].values.reshape(posterior.sizes["chain"], draws, -1) for name in var_names], axis=-1
    )
    series = az.convert_to_dataset({"mean": values.mean(0)[None]})  # one chain: the population's mean
    series_ess = np.asarray(az.ess(series, method="mean")["mean"], dtype=float)
    series_var = values.mean(0).var(0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = values.var((0, 1)) * series_ess / series_var  # variance / (series variance / series ESS)
        tau = draws / series_ess
    return {"ess_population_min": float(np.nanmin(ess)), "tau_population_max": float(np.nanmax(tau))}


def pooled_convergence(runs: list[az.InferenceData], var_names=("z",)) -> dict[str, float]:
    """:func:`convergence` over the chains of several runs of one posterior (other seeds), their
    common draws. Why: a population kernel's particles can all sit in the same part of a level set,
    which no diagnostic within the run can see; independent runs that disagree show it as R-hat."""
    draws = min(idata.posterior.sizes["draw"] for idata in runs)
    values = {
        name: np.concatenate([idata.posterior[name].values[:, :draws] for idata in runs], axis=0) for name in var_names
    }
    return convergence(az.convert_to_inference_data(values), tuple(var_names))


def _extreme(dataset, reduce) -> float:
    return float(reduce([reduce(np.asarray(value)) for value in dataset.data_vars.values()]))


LOW_ACCEPTANCE = {"rwmh": 0.1, "nuts": 0.5}  # far below the targets 0.234 (rwmh) and 0.8 (nuts)
HIGH_RHAT = 1.1
# From this alpha on the advice is 4 rungs, not 2: on mnist-vae 1=0.46,7=0.46 at alpha 100, one of five
# 2-rung runs got p_1 right (0.453), two were 0.02 off with R-hat below 1.02; all seven runs with 3 or
# 4 rungs got it right (README, "Which kernel when"; benchmarks/population.md)
HIGH_ALPHA = 50.0
# A population kernel's recorded draws should span this many autocorrelation times of the population's
# mean (emcee asks 50 to estimate tau itself): with fewer, its error is unreliable. bench-population's
# 500 draws span 38-330 on the worlds with exact answers (all right), one or two on mnist-vae
# ambiguous at alpha 100 (tau 293-480; its runs' spread over seeds 16x their per-particle error)
TAU_DRAWS = 20


def run_warnings(
    kernel: str,
    acceptance_rate: float,
    rhat_max: float | None,
    warmup: int | None,
    rungs: int = 1,
    alpha: float | None = None,
    tau_population: float | None = None,
    draws: int | None = None,
    start: str = "prior",
) -> list[str]:
    """What a careful reader of the diagnostics would point out, in plain sentences (``start``: where
    the chains started, so the advice offers an SMC start only to runs that did not have one)."""
    found = []
    if tau_population is not None and draws is not None and draws < TAU_DRAWS * tau_population:
        found.append(
            f"the population's mean has an autocorrelation time of {tau_population:.0f} draws, so the "
            f"{draws} recorded hold fewer than {TAU_DRAWS} independent states of the whole population: "
            "its particles move together, and the share on each part of the level set drifts as a whole, "
            "which per-particle R-hat and ESS do not see (ess_population_min is the ESS to trust); "
            f"record at least {math.ceil(TAU_DRAWS * tau_population)} draws (--steps, over --thin)"
        )
    floor = LOW_ACCEPTANCE.get(kernel)
    if floor is not None and acceptance_rate < floor:
        found.append(
            f"acceptance {acceptance_rate:.3f} is far below what the warm-up aims for: the chains barely "
            f"move, so their states are strongly correlated; increase the warm-up (now {warmup}) so the "
            "step sizes can adapt"
        )
    if rhat_max is not None and rhat_max > HIGH_RHAT:
        advised = 4 if alpha is not None and alpha >= HIGH_ALPHA else 2
        if kernel != "ensemble":
            advice = (
                f"use the ensemble kernel (--kernel ensemble --rungs {advised}), whose particles move between "
                "modes, or smc"
            )
        elif rungs == 1:
            advice = f"add replica exchange (--rungs {advised}), which frees particles stuck on small pieces"
        elif rungs < advised:
            advice = f"use {advised} rungs (--rungs {advised}): at alpha {alpha:g} two can leave whole pieces unvisited"
        elif alpha is not None and alpha >= HIGH_ALPHA:  # at alpha 100 4 rungs took 375-625 steps to settle
            longer = f"--warmup {max(1000, 2 * (warmup or 0))}" + ("" if start == "smc" else " --start smc")
            advice = f"warm up longer ({longer}), or add rungs"
        else:
            advice = "add rungs (--rungs) or particles"
        found.append(
            f"R-hat {rhat_max:.2f} > {HIGH_RHAT}: each particle explored only part of the level set in "
            f"the recorded steps, or particles sit in modes they do not leave; run more steps, or {advice}"
        )
    return found


@dataclass(frozen=True)
class BurnInVerdict:
    """Whether the chains had stopped drifting when sampling began, and what to do if not."""

    ok: bool
    drift: float  # mean log-likelihood, early window minus late window
    z_score: float  # drift / its standard error
    message: str


def burn_in_check(
    log_likelihood: np.ndarray, warmup: int, kernel: str | None = None, start: str = "prior"
) -> BurnInVerdict:
    """Compare each chain's mean log-likelihood early in sampling with its last half.

    With N independent chains the per-chain differences ``d_i`` are independent, so
    ``mean(d) / (sd(d) / sqrt(N))`` is a z-score with no autocorrelation correction needed (a
    Geweke test over the ensemble). Chains still climbing toward the level set show a large
    negative drift. A single chain falls back to batch means. ``log_likelihood`` is ``(N, T)``,
    the post-warm-up trace; ``kernel`` and ``start`` say what the advice may offer (an SMC start for
    the batched MCMC kernels, unless the chains had one).
    """
    values = np.asarray(log_likelihood, dtype=np.float64)
    num_chains, num_draws = values.shape
    if num_draws < 10:
        return BurnInVerdict(True, math.nan, math.nan, f"only {num_draws} sampling steps: too few to judge burn-in")
    early = values[:, : max(1, int(EARLY_FRACTION * num_draws))]
    late = values[:, -max(1, int(LATE_FRACTION * num_draws)) :]
    finite = np.isfinite(early).all(1) & np.isfinite(late).all(1)
    if num_chains >= 4:
        d = early[finite].mean(1) - late[finite].mean(1)
        drift, stderr = float(d.mean()), float(d.std(ddof=1) / math.sqrt(max(1, d.size)))
    else:
        batches = np.array_split(values[finite].mean(0), 20)
        means = np.array([b.mean() for b in batches])
        drift = float(means[:2].mean() - means[10:].mean())
        stderr = float(means[10:].std(ddof=1) * math.sqrt(1 / 2 + 1 / 10))  # noise from the settled half
    spread = float(np.nanstd(late[finite])) or 1.0
    z_score = drift / stderr if stderr > 0 else (0.0 if drift == 0 else math.inf * np.sign(drift))
    ok = not (abs(z_score) > Z_THRESHOLD and abs(drift) > MIN_EFFECT * spread)
    if ok:
        message = (
            f"burn-in ok: the log-likelihood was stable across sampling "
            f"(drift {drift:+.3g}, {z_score:+.1f} standard errors)"
        )
    else:
        direction = "still rising" if drift < 0 else "still falling"
        message = (
            f"burn-in too short: the log-likelihood was {direction} when sampling began "
            f"(early minus late {drift:+.3g}, {z_score:+.1f} standard errors); "
            f"increase the warm-up (try warmup={max(2 * warmup, 200)}, --warmup on the command line)"
            + (
                ", or start the chains at a tempered SMC run's particles (start='smc', --start smc)"
                if kernel in ("rwmh", "ensemble") and start == "prior"
                else ""
            )
        )
    return BurnInVerdict(ok, drift, float(z_score), message)
