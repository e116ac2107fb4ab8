"""The six samplers of the side-by-side comparison, each run for one wall-clock budget.

Every runner takes ``(world, spec, target, alpha, budget_s, seed, **settings)`` and returns a
:class:`Outcome`: the samples it produced after warm-up, how they group into chains, and the wall
time it spent (warm-up included). Calibration runs that size a run to the budget are timed
separately and not charged. Classifying the samples afterwards to count hits is not charged to
any method either (our kernels get the predictions for free; the Pyro kernels do not keep them).

- ``rwmh``: ``pls.sample(kernel="rwmh")``, N particles; steps sized from a calibration of the
  step function, half warm-up, half sampling. Chains = particles.
- ``ensemble``: ``pls.sample(kernel="ensemble")``, sized like ``rwmh``. Chains = particles.
- ``nuts``: our NUTS (:func:`pplevelset.infer.nuts.run`, what ``pls.sample(kernel="nuts")``
  runs), N particles sharing one Pyro state; warm-up sized from the first iterations, then
  sampling until the budget is spent. Chains = particles.
- ``pyro_nuts_single``: Pyro's ``NUTS`` (defaults: target acceptance 0.8, tree depth 10, diagonal
  mass matrix) on ``level_set_model(world, target, alpha, 1)``, one chain started from a prior
  draw: the Bayes-TrEx setup.
- ``pyro_rw_single``: Pyro's ``RandomWalkKernel`` (target acceptance 0.234) on the same program,
  one chain from a prior draw, run under ``torch.no_grad`` (Pyro does not, so this is kinder to
  the baseline than ``pyro.infer.MCMC`` would be).
- ``prior_rejection``: exact rejection sampling: batches of prior draws, each accepted with
  probability ``Dirichlet(target; alpha f(g(z))) / M``, ``M`` the maximum of the Dirichlet density
  at the target over all classifier outputs (:func:`likelihood_bound`). Accepted draws are iid
  posterior samples: ESS = their number.
- ``smc``: ``pls.sample(kernel="smc")`` repeated with fresh seeds while budget remains (a run is
  never cut short). ESS = ArviZ bulk ESS with populations as chains and final particles as
  draws, summed over the independent runs; distinct final particles are reported beside it.
"""

from __future__ import annotations

import functools
import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.infer import NUTS, RandomWalkKernel
from pyro.infer.autoguide.initialization import init_to_sample
from scipy.optimize import minimize
from scipy.special import gammaln
from timing import sync

import pplevelset as pls
from pplevelset.infer.mcmc import initial_positions
from pplevelset.metrics import total_variation
from pplevelset.model import PROBS_EPS, ParticleDensity, level_set_model

logging.getLogger("arviz").setLevel(logging.ERROR)  # "shape validation failed" for one short chain

HIT_TV = 0.1  # a hit: a distinct sample whose prediction is within this total variation of the target


@dataclass
class Outcome:
    """What a sampler produced within its budget."""

    z: np.ndarray  # (chains, draws, d) post-warm-up samples, constrained space
    predictions: np.ndarray | None  # (chains, draws, L) or None: classified afterwards
    elapsed_s: float  # wall time charged: warm-up + sampling
    settings: dict = field(default_factory=dict)
    ess: float | None = None  # set by runners whose ESS is not ArviZ's over (chains, draws)
    rhat: float | None = None
    extra: dict = field(default_factory=dict)


def ess_rhat(z: np.ndarray) -> tuple[float, float]:
    """Smallest bulk ESS and largest rank-normalised split R-hat over the dimensions of ``z``
    ``(chains, draws, d)``; NaN when there are fewer than 4 draws."""
    if z.shape[1] < 4:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = az.convert_to_dataset({"z": z})
        ess = float(np.nanmin(az.ess(data, method="bulk")["z"].values))
        if z.shape[0] == 1:  # ArviZ wants two chains for R-hat: split the one chain in halves (then again, as always)
            if z.shape[1] < 8:
                return ess, math.nan
            half = z.shape[1] // 2
            data = az.convert_to_dataset({"z": np.stack([z[0, :half], z[0, half : 2 * half]])})
        return ess, float(np.nanmax(az.rhat(data)["z"].values))


def count_hits(z: np.ndarray, predictions: np.ndarray, target: torch.Tensor, eps: float = HIT_TV) -> tuple[int, int]:
    """(distinct samples within total variation ``eps`` of the target, distinct samples)."""
    flat_z = torch.as_tensor(z.reshape(-1, z.shape[-1]))
    flat_p = torch.as_tensor(predictions.reshape(-1, predictions.shape[-1]))
    close = total_variation(target.cpu(), flat_p) < eps
    distinct = torch.unique(flat_z, dim=0).shape[0] if flat_z.shape[0] else 0
    hits = torch.unique(flat_z[close], dim=0).shape[0] if bool(close.any()) else 0
    return int(hits), int(distinct)


@torch.no_grad()
def classify_samples(world, z: np.ndarray, device, batch: int = 2000) -> np.ndarray:
    flat = torch.as_tensor(z.reshape(-1, z.shape[-1]), dtype=torch.float32)
    out = [world.predict(part.to(device)).cpu() for part in flat.split(batch)] or [torch.zeros(0, len(world.classes))]
    return torch.cat(out).numpy().reshape(*z.shape[:-1], len(world.classes))


# --- the likelihood bound for exact rejection ----------------------------------------------------


def log_dirichlet(target: np.ndarray, concentration: np.ndarray) -> np.ndarray:
    return (
        gammaln(concentration.sum(-1)) - gammaln(concentration).sum(-1) + ((concentration - 1) * np.log(target)).sum(-1)
    )


@functools.lru_cache(maxsize=32)
def _bound_cached(target: tuple, alpha: float) -> dict:
    return likelihood_bound(torch.tensor(target, dtype=torch.float64), alpha)


def likelihood_bound(target: torch.Tensor, alpha: float, starts: int = 64, seed: int = 0) -> dict:
    """``log M = max_q log Dirichlet(target; alpha max(q, eps))`` over q in the probability simplex.

    The model's concentration is ``alpha * q.clamp_min(PROBS_EPS)``, exactly as here. The maximum is
    found numerically: L-BFGS on ``q = softmax(u)`` from ``starts`` points (the target, the uniform
    vector, the target sharpened and flattened, and Dirichlet(1) draws), keeping the best. It is then
    checked against 200,000 random points of the simplex (Dirichlet(1) and Dirichlet(alpha * target))
    and the local optimum's neighbourhood; a point beating it would raise. A factor ``e^{1e-6}`` of
    headroom absorbs float32 rounding in the sampler's own likelihood.
    """
    p = target.double().cpu().numpy()
    rng = np.random.default_rng(seed)

    def negative(u):
        q = np.exp(u - u.max())
        q /= q.sum()
        return -float(log_dirichlet(p, alpha * np.maximum(q, PROBS_EPS)))

    inits = [np.log(p), np.zeros_like(p), 2 * np.log(p), 0.5 * np.log(p)]
    inits += [np.log(rng.dirichlet(np.ones_like(p))) for _ in range(max(0, starts - len(inits)))]
    best = min((minimize(negative, u, method="L-BFGS-B") for u in inits), key=lambda r: r.fun)
    log_m = -float(best.fun)
    q_best = np.exp(best.x - best.x.max())
    q_best /= q_best.sum()
    checks = np.concatenate(
        [
            rng.dirichlet(np.ones_like(p), 100_000),
            rng.dirichlet(alpha * p + 1e-3, 100_000),
            rng.dirichlet(1e4 * q_best + 1e-3, 10_000),
        ]
    )
    check_max = float(log_dirichlet(p, alpha * np.maximum(checks, PROBS_EPS)).max())
    if check_max > log_m + 1e-9:
        raise RuntimeError(f"likelihood bound: a random simplex point ({check_max}) beats the optimiser ({log_m})")
    return {
        "log_bound": log_m + 1e-6,
        "argmax_q": [round(float(v), 6) for v in q_best],
        "at_target": float(log_dirichlet(p, alpha * np.maximum(p, PROBS_EPS))),
        "check_max": check_max,
    }


# --- the runners ---------------------------------------------------------------------------------


def run_batched(world, spec, target, alpha, budget_s, seed, device, num_particles=1000, kernel="rwmh", **_):
    """A batched kernel of ``pls.sample`` (``rwmh`` or ``ensemble``) sized to the budget."""
    # calibration: two short runs of the driver itself; their difference cancels the fixed costs
    # (prior draws, initial scoring, first-call allocations) that a single short run would spread thin
    short, longer = (
        pls.sample(
            world,
            spec,
            alpha=alpha,
            num_particles=num_particles,
            warmup=w,
            steps=t,
            kernel=kernel,
            seed=seed + 7919,
            device=str(device),
            progress=False,
        )
        for w, t in ((2, 2), (5, 10))
    )
    # (floored at half the longer run's average, in case noise makes the difference tiny)
    per_step = max((longer.elapsed_s - short.elapsed_s) / 11, longer.elapsed_s / 17 / 2)
    fixed = max(0.0, short.elapsed_s - 4 * per_step)
    total = min(20_000, max(8, int((budget_s - fixed) / per_step)))
    warmup = total // 2
    post = pls.sample(
        world,
        spec,
        alpha=alpha,
        num_particles=num_particles,
        warmup=warmup,
        steps=total - warmup,
        kernel=kernel,
        seed=seed,
        device=str(device),
        progress=False,
    )
    conv = post.convergence()
    extra = {
        "calibration_s": short.elapsed_s + longer.elapsed_s,
        "calibrated_step_s": per_step,
        "acceptance_rate": float(post.traces["acceptance_rate"].mean()),
        "burn_in_ok": bool(post.burn_in().ok),
    }
    if "move_acceptance" in post.stats:
        extra["move_acceptance"] = post.stats["move_acceptance"]
    return Outcome(
        post.traces["z"].numpy(),
        post.traces["prediction_probs"].numpy(),
        post.elapsed_s,
        settings={"num_particles": num_particles, "warmup": warmup, "steps": total - warmup},
        ess=conv["ess_bulk_min"],
        rhat=conv["rhat_max"],
        extra=extra,
    )


run_rwmh = functools.partial(run_batched, kernel="rwmh")
run_ensemble = functools.partial(run_batched, kernel="ensemble")


class _BudgetSpent(Exception):
    pass


def run_nuts(world, spec, target, alpha, budget_s, seed, device, nuts_particles=32, **_):
    """Our NUTS (:func:`pplevelset.infer.nuts.run`, what ``pls.sample(kernel="nuts")`` runs), stopped
    when the budget is spent."""
    from pplevelset.infer import nuts
    from pplevelset.infer.config import RunConfig

    def run(warmup, steps, run_seed, on_iteration):
        config = RunConfig.build(
            world,
            target,
            alpha=alpha,
            kernel="nuts",
            num_particles=nuts_particles,
            warmup=warmup,
            steps=steps,
            seed=run_seed,
            device=device,
            progress=False,
        )
        density = ParticleDensity(level_set_model, (world, config.target, alpha, nuts_particles))
        try:
            nuts.run(config, density, on_iteration=on_iteration)
        except _BudgetSpent:
            pass

    # calibration: the first iterations of warm-up are the dearest (step-size search, deep trees)
    first = []

    def probe(warming_up, z):
        first.append(time.perf_counter())
        if len(first) == 4:
            raise _BudgetSpent

    calibration_start = time.perf_counter()
    run(1000, 10, seed + 1, probe)
    calibration_s = time.perf_counter() - calibration_start
    per_iteration = (first[-1] - first[1]) / max(1, len(first) - 2)
    warmup = int(min(500, max(10, 0.4 * budget_s / max(per_iteration, 1e-6))))

    samples, start = [], time.perf_counter()
    deadline = start + budget_s
    density = ParticleDensity(level_set_model, (world, target, alpha, nuts_particles))

    def record(warming_up, z):
        if not warming_up:
            samples.append(density.constrain(z)["z"].detach().cpu())
        if time.perf_counter() > deadline:
            raise _BudgetSpent

    run(warmup, 10**9, seed, record)
    sync(device)
    elapsed = time.perf_counter() - start
    z = torch.stack(samples, 1).numpy() if samples else np.zeros((nuts_particles, 0, world.latent_dim), np.float32)
    return Outcome(
        z,
        None,
        elapsed,
        settings={"num_particles": nuts_particles, "warmup": warmup, "steps": z.shape[1]},
        extra={"calibration_s": calibration_s, "warmup_finished": bool(samples)},
    )


def _prior_draw_unconstrained(world, target, alpha, seed):
    density = ParticleDensity(level_set_model, (world, target, alpha, 1))
    generator = torch.Generator(device=target.device).manual_seed(seed + 104729)
    with torch.no_grad():
        return density, density.unpack(initial_positions(density, generator))


def _pyro_single_chain(kernel, world, target, alpha, budget_s, seed, device, warmup, no_grad):
    """One chain for ``budget_s`` seconds (setup included). ``warmup=None``: adapt for half the
    budget, then freeze (Pyro's RandomWalkKernel adapts while ``_t <= _warmup_steps``)."""
    timed_warmup = warmup is None
    if timed_warmup:
        warmup = 10**9
    density, initial = _prior_draw_unconstrained(world, target, alpha, seed)
    pyro.set_rng_seed(seed)
    context = torch.no_grad if no_grad else torch.enable_grad
    samples, start = [], time.perf_counter()
    kernel.setup(warmup, world, target, alpha, 1)  # Pyro checks the initial state with a gradient
    with context():
        kernel.initial_params = {name: value.clone() for name, value in initial.items()}
        if isinstance(kernel, RandomWalkKernel):
            kernel._energy_last = kernel.potential_fn(kernel.initial_params)
        params = kernel.initial_params
        iteration = 0
        while time.perf_counter() - start < budget_s:
            if timed_warmup and iteration < warmup and time.perf_counter() - start > budget_s / 2:
                warmup = kernel._warmup_steps = iteration  # adaptation stops: from here a valid MH chain
            params = kernel.sample(params)
            if iteration >= warmup:
                samples.append(density.constrain(density.pack({k: v.detach() for k, v in params.items()}))["z"].cpu())
            iteration += 1
    sync(device)
    elapsed = time.perf_counter() - start
    kernel.cleanup()
    z = torch.cat(samples).numpy()[None] if samples else np.zeros((1, 0, world.latent_dim), np.float32)
    return z, elapsed, iteration, warmup


def _calibrate_pyro(make_kernel, world, target, alpha, seed, device, no_grad, iterations=3):
    """Seconds per iteration of a fresh kernel's first few warm-up iterations (dearest for NUTS)."""
    kernel = make_kernel()
    density, initial = _prior_draw_unconstrained(world, target, alpha, seed + 1)
    context = torch.no_grad if no_grad else torch.enable_grad
    kernel.setup(1000, world, target, alpha, 1)
    with context():
        kernel.initial_params = initial
        if isinstance(kernel, RandomWalkKernel):
            kernel._energy_last = kernel.potential_fn(initial)
        for _ in range(2):
            params = kernel.sample(kernel.initial_params)
        start = time.perf_counter()
        for _ in range(iterations):
            params = kernel.sample(params)
    kernel.cleanup()
    return (time.perf_counter() - start) / iterations


def run_pyro_nuts_single(world, spec, target, alpha, budget_s, seed, device, **_):
    make = lambda: NUTS(level_set_model, init_strategy=init_to_sample, jit_compile=False)
    calibration_start = time.perf_counter()
    per_iteration = _calibrate_pyro(make, world, target, alpha, seed, device, no_grad=False, iterations=4)
    calibration_s = time.perf_counter() - calibration_start
    warmup = int(min(1000, max(10, 0.4 * budget_s / per_iteration)))
    z, elapsed, iterations, warmup = _pyro_single_chain(
        make(), world, target, alpha, budget_s, seed, device, warmup, False
    )
    return Outcome(
        z,
        None,
        elapsed,
        settings={"num_particles": 1, "warmup": warmup, "steps": z.shape[1]},
        extra={"calibration_s": calibration_s, "iterations": iterations},
    )


def run_pyro_rw_single(world, spec, target, alpha, budget_s, seed, device, **_):
    make = lambda: RandomWalkKernel(level_set_model, target_accept_prob=0.234)
    z, elapsed, iterations, warmup = _pyro_single_chain(
        make(), world, target, alpha, budget_s, seed, device, None, True
    )
    return Outcome(
        z,
        None,
        elapsed,
        settings={"num_particles": 1, "warmup": warmup, "steps": z.shape[1]},
        extra={"calibration_s": 0.0, "iterations": iterations},
    )


def run_prior_rejection(world, spec, target, alpha, budget_s, seed, device, batch=1000, **_):
    bound = _bound_cached(tuple(float(v) for v in target.cpu()), float(alpha))
    density = ParticleDensity(level_set_model, (world, target, alpha, batch))
    generator = torch.Generator(device=target.device).manual_seed(seed + 15485863)
    accepted_z, accepted_p, proposed, prior_hits = [], [], 0, 0
    start = time.perf_counter()
    with torch.inference_mode(), torch.random.fork_rng(devices=[target.device] if target.device.type == "cuda" else []):
        torch.manual_seed(seed)
        while time.perf_counter() - start < budget_s:
            z = world.prior().sample((batch,))
            probs = world.predict(z)
            log_likelihood = dist.Dirichlet(alpha * probs.clamp_min(PROBS_EPS)).log_prob(target)
            uniform = torch.rand(batch, generator=generator, device=z.device)
            accept = uniform.log() < log_likelihood - bound["log_bound"]
            accepted_z.append(z[accept].cpu())
            accepted_p.append(probs[accept].cpu())
            proposed += batch
            prior_hits += int((total_variation(target, probs) < HIT_TV).sum())
    sync(device)
    elapsed = time.perf_counter() - start
    z = torch.cat(accepted_z).numpy()
    predictions = torch.cat(accepted_p).numpy()
    chains = 4 if z.shape[0] >= 16 else 1
    usable = z.shape[0] // chains * chains
    rhat = ess_rhat(z[:usable].reshape(chains, -1, z.shape[-1]))[1] if usable >= 4 * chains else math.nan
    del density
    return Outcome(
        z[None],
        predictions[None],
        elapsed,
        settings={"batch": batch},
        ess=float(z.shape[0]),
        rhat=rhat,
        extra={
            "proposed": proposed,
            "accepted": int(z.shape[0]),
            "acceptance_rate": z.shape[0] / max(proposed, 1),
            "prior_draws_within_tv": prior_hits,
            "bound": bound,
        },
    )


def run_smc(world, spec, target, alpha, budget_s, seed, device, smc_particles=1000, populations=4, moves=10, **_):
    runs, start = [], time.perf_counter()
    while not runs or time.perf_counter() - start < budget_s:
        post = pls.sample(
            world,
            spec,
            alpha=alpha,
            num_particles=smc_particles,
            kernel="smc",
            seed=seed + len(runs),
            device=str(device),
            progress=False,
            populations=populations,
            moves=moves,
        )
        runs.append(post)
        remaining = budget_s - (time.perf_counter() - start)
        if remaining < 0.5 * post.elapsed_s:  # a run cut short would waste its time; start one only if it may fit
            break
    elapsed = time.perf_counter() - start
    convergences = [post.convergence() for post in runs]
    ess = float(sum(c["ess_bulk_min"] for c in convergences))
    rhat = float(max(c["rhat_max"] for c in convergences))
    z = np.concatenate([post.z.numpy() for post in runs])[None]
    predictions = np.concatenate([post.predictions().numpy() for post in runs])[None]
    distinct = sum(post.distinct_samples() for post in runs)
    return Outcome(
        z,
        predictions,
        elapsed,
        ess=ess,
        rhat=rhat,
        settings={"num_particles": smc_particles, "populations": populations, "moves": moves, "runs": len(runs)},
        extra={"distinct_final_particles": distinct, "temperatures": [post.stats["num_temperatures"] for post in runs]},
    )


RUNNERS = {
    "rwmh": run_rwmh,
    "ensemble": run_ensemble,
    "nuts": run_nuts,
    "pyro_nuts_single": run_pyro_nuts_single,
    "pyro_rw_single": run_pyro_rw_single,
    "prior_rejection": run_prior_rejection,
    "smc": run_smc,
}


def measure(method, world, spec, target, alpha, budget_s, seed, device, **settings) -> dict:
    """Run ``method`` for ``budget_s`` and summarise: ESS, R-hat, hits, rates."""
    outcome = RUNNERS[method](world, spec, target, alpha, budget_s, seed, device, **settings)
    ess, rhat = outcome.ess, outcome.rhat
    if ess is None:
        ess, rhat = ess_rhat(outcome.z)
    predictions = outcome.predictions
    if predictions is None:
        predictions = classify_samples(world, outcome.z, device)
    hits, distinct = count_hits(outcome.z, predictions, target)
    elapsed = outcome.elapsed_s
    finite = lambda v: None if v is None or not math.isfinite(v) else float(v)
    return {
        "ess": finite(ess),
        "rhat": finite(rhat),
        "hits": hits,
        "distinct": distinct,
        "elapsed_s": elapsed,
        "ess_per_s": (ess / elapsed) if finite(ess) is not None else 0.0,
        "hits_per_s": hits / elapsed,
        "chains": int(outcome.z.shape[0]),
        "draws": int(outcome.z.shape[1]),
        "settings": outcome.settings,
        **outcome.extra,
    }
