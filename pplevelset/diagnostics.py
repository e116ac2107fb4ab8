"""Convergence diagnostics over particles-as-chains: ArviZ R-hat and ESS, and a burn-in check."""

from __future__ import annotations

import math
from dataclasses import dataclass

import arviz as az
import numpy as np

EARLY_FRACTION = 0.1  # window at the start of sampling compared with ...
LATE_FRACTION = 0.5  # ... the last half of sampling
Z_THRESHOLD = 4.0  # drift this many standard errors from zero is not noise
MIN_EFFECT = 0.1  # ... and it must be at least this fraction of the log-likelihood's spread


def convergence(idata: az.InferenceData, var_names=("z",)) -> dict[str, float]:
    """Worst rank-normalised split R-hat and smallest bulk/tail ESS over the latent dimensions."""
    posterior = idata.posterior[list(var_names)]
    if posterior.sizes["draw"] < 4:
        return {"rhat_max": math.nan, "ess_bulk_min": math.nan, "ess_tail_min": math.nan}
    return {"rhat_max": _extreme(az.rhat(posterior), np.nanmax),
            "ess_bulk_min": _extreme(az.ess(posterior, method="bulk"), np.nanmin),
            "ess_tail_min": _extreme(az.ess(posterior, method="tail"), np.nanmin)}


def _extreme(dataset, reduce) -> float:
    return float(reduce([reduce(np.asarray(value)) for value in dataset.data_vars.values()]))


LOW_ACCEPTANCE = {"rwmh": 0.1, "nuts": 0.5}  # far below the targets 0.234 (rwmh) and 0.8 (nuts)
HIGH_RHAT = 1.1


def run_warnings(kernel: str, acceptance_rate: float, rhat_max: float | None, warmup: int | None) -> list[str]:
    """What a careful reader of the diagnostics would point out, in plain sentences."""
    found = []
    floor = LOW_ACCEPTANCE.get(kernel)
    if floor is not None and acceptance_rate < floor:
        found.append(f"acceptance {acceptance_rate:.3f} is far below what the warm-up aims for: the chains barely "
                     f"move, so their states are strongly correlated; increase the warm-up (now {warmup}) so the "
                     "step sizes can adapt")
    if rhat_max is not None and rhat_max > HIGH_RHAT:
        found.append(f"R-hat {rhat_max:.2f} > {HIGH_RHAT}: each particle explored only part of the level set in "
                     "the recorded steps, or particles sit in modes they do not leave; run more steps, or use "
                     "the smc kernel for the right share of particles in each mode")
    return found


@dataclass(frozen=True)
class BurnInVerdict:
    """Whether the chains had stopped drifting when sampling began, and what to do if not."""

    ok: bool
    drift: float  # mean log-likelihood, early window minus late window
    z_score: float  # drift / its standard error
    message: str


def burn_in_check(log_likelihood: np.ndarray, warmup: int) -> BurnInVerdict:
    """Compare each chain's mean log-likelihood early in sampling with its last half.

    With N independent chains the per-chain differences ``d_i`` are independent, so
    ``mean(d) / (sd(d) / sqrt(N))`` is a z-score with no autocorrelation correction needed (a
    Geweke test over the ensemble). Chains still climbing toward the level set show a large
    negative drift. A single chain falls back to batch means. ``log_likelihood`` is ``(N, T)``,
    the post-warm-up trace.
    """
    values = np.asarray(log_likelihood, dtype=np.float64)
    num_chains, num_draws = values.shape
    if num_draws < 10:
        return BurnInVerdict(True, math.nan, math.nan, f"only {num_draws} sampling steps: too few to judge burn-in")
    early = values[:, : max(1, int(EARLY_FRACTION * num_draws))]
    late = values[:, -max(1, int(LATE_FRACTION * num_draws)):]
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
        message = (f"burn-in ok: the log-likelihood was stable across sampling "
                   f"(drift {drift:+.3g}, {z_score:+.1f} standard errors)")
    else:
        direction = "still rising" if drift < 0 else "still falling"
        message = (f"burn-in too short: the log-likelihood was {direction} when sampling began "
                   f"(early minus late {drift:+.3g}, {z_score:+.1f} standard errors); "
                   f"increase the warm-up (try warmup={max(2 * warmup, 200)}, --warmup on the command line)")
    return BurnInVerdict(ok, drift, float(z_score), message)


def traces_from_arviz(idata: az.InferenceData) -> tuple[dict, dict]:
    """``(traces, warmup_traces)`` as arrays with particles first, from a run's InferenceData."""
    traces = {name: idata.posterior[name].values for name in ("z",) if name in idata.posterior}
    traces.update({name: idata.sample_stats[name].values for name in idata.sample_stats.data_vars})
    warmup = {}
    if "warmup_sample_stats" in idata.groups():
        warmup = {name: idata.warmup_sample_stats[name].values
                  for name in idata.warmup_sample_stats.data_vars}
    return traces, warmup


def smc_report(stages: dict) -> str:
    """Per population: temperatures used, the ESS and acceptance at each, and log Z if recorded."""
    lines = ["SMC temperatures (beta: ESS before resampling, mean MH acceptance):"]
    for population in range(stages["beta"].shape[0]):
        beta = stages["beta"][population]
        used = int(np.argmax(beta >= 1.0)) + 1 if (beta >= 1.0).any() else beta.size
        cells = [f"{b:.3g}: {e:.0f}, {a:.2f}" for b, e, a in
                 zip(beta[:used], stages["ess"][population][:used], stages["acceptance_rate"][population][:used])]
        lines.append(f"  population {population}: {used} temperatures | " + " | ".join(cells))
    return "\n".join(lines)


def diagnose_run(run_dir) -> str:
    """Read a run directory, write ``rank.png`` and ``trace.png`` into it, return the report text."""
    import json
    from pathlib import Path

    import matplotlib.pyplot as plt

    from pplevelset.errors import UserInputError
    from pplevelset.plotting import save_figure, smc_figure, trace_figure

    run_dir = Path(run_dir)
    for name in ("summary.json", "posterior.nc"):
        if not (run_dir / name).is_file():
            raise UserInputError(f"{run_dir} is not a run directory: {name} is missing")
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        idata = az.from_netcdf(str(run_dir / "posterior.nc"))
    except Exception as exc:
        raise UserInputError(f"cannot read the run in {run_dir}: {type(exc).__name__}: {exc}") from None
    traces, warmup = traces_from_arviz(idata)
    table = az.summary(idata, var_names=["z"], kind="all", round_to=3)
    smc = "smc_stages" in idata.groups()
    if smc:
        stages = {name: idata.smc_stages[name].values for name in idata.smc_stages.data_vars}
        verdict = BurnInVerdict(True, math.nan, math.nan, "no burn-in to check: SMC tempers from the prior")
        save_figure(smc_figure(stages), run_dir / "trace.png")
    else:
        verdict = burn_in_check(traces["log_likelihood"], int(idata.posterior.attrs.get("warmup") or 0))
        save_figure(trace_figure(traces, warmup, verdict, thin=int(idata.posterior.attrs.get("thin", 1))),
                    run_dir / "trace.png")
    few = idata.posterior[["z"]].isel(chain=slice(0, 8))
    axes = az.plot_rank(few, var_names=["z"])
    save_figure(np.atleast_1d(axes).flat[0].get_figure(), run_dir / "rank.png")
    plt.close("all")

    from pplevelset.cli import format_summary

    layout = ("populations as chains, their final particles as draws" if smc else "particles as chains, steps as draws")
    lines = [format_summary(summary), "", f"ArviZ summary of z ({idata.posterior.sizes['chain']} chains x "
             f"{idata.posterior.sizes['draw']} draws: {layout}):", table.to_string(), ""]
    if verdict.message != summary.get("burn_in"):
        lines.append(verdict.message)
    if smc:
        lines.append(smc_report(stages))
    if "warmup_sample_stats" in idata.groups():
        accept = float(idata.warmup_sample_stats["acceptance_rate"][:, -max(1, idata.warmup_sample_stats.sizes['draw'] // 10):].mean())
        lines.append(f"acceptance at the end of warm-up {accept:.3f} (the adaptation aims at 0.234 for rwmh)")
    lines.append(f"wrote {run_dir}/trace.png and {run_dir}/rank.png")
    return "\n".join(lines)
