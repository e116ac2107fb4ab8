"""Population MCMC against independent chains, per target: does each piece get its mass, and do the
traces say so?

    python benchmarks/population.py            # make bench-population: about 70 minutes on 2 cores
    python benchmarks/population.py --tiny     # smoke run, about a minute: the numbers mean nothing

Every kernel runs with the library's defaults (N = 1,000 particles, 500 warm-up + 500 steps) in one
process, one after the other, on the same world, target and seed, with freed memory kept for reuse
as the command line does (:func:`pplevelset.keep_freed_memory`):

- worlds with exact answers (``tests/exact_worlds.py``: bands along a direction, so piece masses
  are 1-D integrals): piece masses from all recorded draws against exact; these runs take seconds,
  so each is repeated three times, the kernels interleaved, and timed by the median;
- the shipped worlds: the mean prediction over all recorded draws against tempered SMC with four
  times the particles (``SMC_MOVES`` MH moves per temperature, ``SMC_SEEDS`` runs pooled), with a
  Monte Carlo standard error from each side's ESS (and, for pooled SMC runs, their spread).

ESS per second counts only where R-hat <= 1.05 and, for the population kernels, the recorded draws
span at least ``TAU_DRAWS`` autocorrelation times of the population's mean; elsewhere the kernel is
"not converged" (its traces do not describe the posterior, so their ESS means nothing). A population
kernel's particles are not independent chains, so its ESS is the smaller of the per-particle bulk ESS
and the population mean's (:func:`pplevelset.diagnostics.population_convergence`), and its standard
error against SMC is the population mean's. Seconds per step include the
trace collection. Writes ``benchmarks/results-population.json``; ``benchmarks/run.py`` renders it
into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import exact_worlds  # noqa: E402
import floor as floor_module  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import load_average  # noqa: E402

import pplevelset as pls  # noqa: E402
from pplevelset.diagnostics import TAU_DRAWS, az  # noqa: E402

RHAT_OK = 1.05
# label -> pls.sample settings; "rungs" runs replica exchange with the same particles in all
# (num_particles / rungs per rung), so every configuration scores the same N particles per step
CONFIGS = {
    "rwmh": dict(kernel="rwmh"),
    "ensemble": dict(kernel="ensemble"),
    "ensemble, 2 rungs": dict(kernel="ensemble", rungs=2),
    "ensemble, 4 rungs": dict(kernel="ensemble", rungs=4),  # the README's advice at high alpha
    # the same, started at one tempered SMC run's particles (the README's command at high alpha)
    "ensemble, 4 rungs, SMC start": dict(kernel="ensemble", rungs=4, start="smc"),
}
KERNELS = tuple(CONFIGS)
EXACT = {  # name -> a factory of (world, target spec, alpha, piece labeller, exact masses)
    "toy ambiguous": lambda: _toy_pieces(),
    "toy a=0.8 (one piece)": lambda: _toy_pieces("a=0.8"),
    "two pieces (2-D)": lambda: _bands(exact_worlds.two_pieces_2d()),
    "three pieces (2-D)": lambda: _bands(exact_worlds.three_pieces_2d()),
    "two pieces along a random direction (5-D)": lambda: _bands(exact_worlds.pieces_5d()),
    "prior scales 0.01-100 (4-D)": lambda: _bands(exact_worlds.wide_scales_4d()),
}


def _bands(world):
    return world, exact_worlds.TARGET, exact_worlds.ALPHA, world.piece, world.exact_masses()


def _toy_pieces(spec: str = "ambiguous"):
    pieces = exact_worlds.ToyPieces(spec, exact_worlds.ALPHA)
    return pieces.world, spec, exact_worlds.ALPHA, pieces.piece, pieces.exact_masses()


REAL = [
    ("mnist-vae", "1=0.46,7=0.46", 10.0),
    ("mnist-vae", "1=0.46,7=0.46", 100.0),
    ("mnist-vae", "ambiguous", 10.0),
    ("mnist-vae", "ambiguous", 100.0),
    ("houses", "ambiguous", 10.0),
    ("houses", "house=0.95", 10.0),  # one piece? rwmh's R-hat says (the unimodal speed goal)
    ("houses-circles", "ambiguous", 10.0),
]
# SMC's reference runs 4x the particles; at alpha 100 its default 10 MH moves per temperature leave it
# biased (mnist-vae 1=0.46,7=0.46, 4,000 particles, seed 0: p_1 0.475 with 10 moves, 0.460 with 30,
# 0.4526 with 100), and 100 moves still were on `ambiguous` (p(1) 0.1054 over four seeds, 0.1115 with
# 300: warmup_length.py), so there it makes 300; one such run's answer still moved by about 0.005 with
# its seed and moves (population.md), so there SMC_SEEDS runs are pooled and their spread counts
SMC_MOVES = {10.0: 10, 100.0: 300}
SMC_SEEDS = {10.0: 1, 100.0: 2}
SIZES = {
    "default": dict(
        num_particles=1000,
        warmup=500,
        steps=500,
        smc_factor=4,
        floor_repeats=15,
        floor_warmup=floor_module.WARMUP,
        floor_sizes=(1000, 4000),
        timings=3,
    ),
    "tiny": dict(
        num_particles=40,
        warmup=10,
        steps=10,
        smc_factor=1,
        floor_repeats=1,
        floor_warmup=2,
        floor_sizes=(40,),
        timings=1,
    ),
}


def run_kernel(world, spec, alpha, label, sizes, seed=0, start=None) -> tuple[pls.LevelSetPosterior, dict]:
    """One run of configuration ``label``; ``start`` (``"prior"`` or ``"smc"``: warmup_length.py), when
    given, replaces the configuration's own (prior draws unless it names one)."""
    settings = CONFIGS[label] | ({"start": start} if start is not None else {})
    rungs = settings.get("rungs", 1)
    post = pls.sample(
        world,
        spec,
        alpha=alpha,
        num_particles=sizes["num_particles"] // rungs,
        warmup=sizes["warmup"],
        steps=sizes["steps"],
        seed=seed,
        progress=False,
        **settings,
    )
    conv = post.convergence()
    tau = conv.get("tau_population_max")  # population kernels only: their particles are not independent
    row = {
        "kernel": label,
        "rungs": rungs,
        "particles_recorded": sizes["num_particles"] // rungs,
        "rhat_max": conv["rhat_max"],
        "ess_bulk_min": conv["ess_bulk_min"],
        "ess_population_min": conv.get("ess_population_min"),
        "tau_population_max": tau,
        "ess": min(conv["ess_bulk_min"], conv.get("ess_population_min", math.inf)),
        "converged": bool(conv["rhat_max"] <= RHAT_OK and (tau is None or sizes["steps"] >= TAU_DRAWS * tau)),
        "acceptance_rate": float(post.traces["acceptance_rate"].mean()),
        "move_acceptance": post.stats.get("move_acceptance"),
        "move_weights": post.stats.get("move_weights"),
        "swap_acceptance": post.stats.get("swap_acceptance"),
        "betas": post.stats.get("betas"),
    }
    return post, timed(row, [post.elapsed_s], sizes)


def timed(row: dict, elapsed: list[float], sizes) -> dict:
    """``row`` with its seconds (the median of ``elapsed``, identical runs) and what follows from them."""
    seconds = statistics.median(elapsed)
    return row | {
        "elapsed_s": seconds,
        "elapsed_runs_s": elapsed,
        "s_per_step": seconds / (sizes["warmup"] + sizes["steps"]),
        "ess_per_s": row["ess"] / seconds if row["converged"] else None,
    }


def exact_rows(sizes) -> list[dict]:
    out = []
    for name, factory in EXACT.items():
        world, spec, alpha, piece_of, exact = factory()
        exact = np.asarray(exact)
        runs: dict[str, list] = {kernel: [] for kernel in KERNELS}
        for _ in range(sizes["timings"]):  # cheap worlds: identical runs, interleaved, so a slow spell hits all
            for kernel in KERNELS:
                log(f"{name}: {kernel}")
                runs[kernel].append(run_kernel(world, spec, alpha, kernel, sizes))
        for kernel in KERNELS:
            post, row = runs[kernel][0]
            row = timed(row, [again["elapsed_s"] for _, again in runs[kernel]], sizes)
            pieces = piece_of(post.traces["z"].reshape(-1, post.z.shape[-1]))
            masses = np.bincount(np.asarray(pieces), minlength=len(exact)) / np.asarray(pieces).size
            row.update(
                target=name,
                spec=spec,
                alpha=alpha,
                masses=masses.tolist(),
                exact=exact.tolist(),
                max_mass_error=float(np.abs(masses - exact).max()),
                load_average=load_average(),
            )
            out.append(row)
    return out


def mean_and_error(values: np.ndarray, population: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the mean over (chains, draws) and its Monte Carlo standard error, from the ESS with
    chains as independent or, with ``population`` (kernels whose particles interact, whose chains are
    not independent), from the population's mean at each draw: one series of the product-space chain
    (:func:`pplevelset.diagnostics.population_convergence`; benchmarks/population_error.py)."""
    if population:
        series = az.convert_to_dataset(values.mean(0)[None])
        return values.mean((0, 1)), np.asarray(az.mcse(series, method="mean")["x"])
    dataset = az.convert_to_dataset(values)
    ess = np.asarray(az.ess(dataset, method="mean")["x"])
    mean, sd = values.mean((0, 1)), values.std((0, 1))
    return mean, sd / np.sqrt(np.maximum(ess, 1.0))


def run_smc(world, spec, alpha, sizes, seed=0, moves=None) -> pls.LevelSetPosterior:
    """The shipped worlds' reference: tempered SMC with ``smc_factor`` times the particles and
    ``moves`` MH moves per temperature (default ``SMC_MOVES`` at ``alpha``)."""
    return pls.sample(
        world,
        spec,
        alpha=alpha,
        num_particles=sizes["smc_factor"] * sizes["num_particles"],
        kernel="smc",
        moves=moves or SMC_MOVES[alpha],
        seed=seed,
        progress=False,
    )


def smc_reference(world, spec, alpha, sizes) -> dict:
    """The pooled mean prediction of ``SMC_SEEDS[alpha]`` SMC runs (seeds 0, 1, ...) and its standard
    error: the larger of the one the runs report (from their ESS) and, with several seeds, the one their
    spread implies, since at high alpha a run's answer moves by more than its own error says."""
    runs = [run_smc(world, spec, alpha, sizes, seed) for seed in range(SMC_SEEDS[alpha])]
    found = [mean_and_error(post.traces["prediction_probs"].numpy()) for post in runs]
    means = np.array([mean for mean, _ in found])
    error = np.sqrt(sum(error**2 for _, error in found)) / len(found)
    if len(found) > 1:
        error = np.maximum(error, means.std(0, ddof=1) / np.sqrt(len(found)))
    return {
        "mean": means.mean(0),
        "error": error,
        "seed_means": means.tolist(),
        "elapsed_s": sum(post.elapsed_s for post in runs),
    }


def real_rows(sizes) -> list[dict]:
    out = []
    for world_name, spec, alpha in REAL:
        world = pls.load_world(world_name)
        log(f"{world_name} {spec} alpha {alpha}: smc, {sizes['smc_factor']}x the particles, {SMC_SEEDS[alpha]} seed(s)")
        smc_particles = sizes["smc_factor"] * sizes["num_particles"]
        smc = smc_reference(world, spec, alpha, sizes)
        smc_mean, smc_error = smc["mean"], smc["error"]
        for kernel in KERNELS:
            log(f"{world_name} {spec} alpha {alpha}: {kernel}")
            post, row = run_kernel(world, spec, alpha, kernel, sizes)
            population = CONFIGS[kernel]["kernel"] == "ensemble"
            mean, error = mean_and_error(post.traces["prediction_probs"].numpy(), population=population)
            z_scores = (mean - smc_mean) / np.sqrt(error**2 + smc_error**2)
            top = np.argsort(-smc_mean)[:2]
            row.update(
                target=f"{world_name} {spec}",
                world=world_name,
                spec=spec,
                alpha=alpha,
                classes=[str(c) for c in world.classes],
                mean_prediction=mean.tolist(),
                smc_mean_prediction=smc_mean.tolist(),
                smc_elapsed_s=smc["elapsed_s"],
                smc_particles=smc_particles,
                smc_moves=SMC_MOVES[alpha],
                smc_seeds=SMC_SEEDS[alpha],
                smc_seed_means=smc["seed_means"],
                top_classes=[str(world.classes[i]) for i in top],
                max_abs_z_vs_smc=float(np.abs(z_scores).max()),
                max_abs_diff_vs_smc=float(np.abs(mean - smc_mean).max()),
                load_average=load_average(),
            )
            out.append(row)
    return out


def floor_rows(sizes) -> list[dict]:
    rows = []
    for world_name in ("mnist-vae", "houses"):
        world = pls.load_world(world_name)
        target = pls.parse_target("ambiguous", world.classes)
        for num in sizes["floor_sizes"]:  # the goal: at N >= 1,000
            for kernel in (label for label in KERNELS if "start" not in CONFIGS[label]):  # a start costs no step
                log(f"floor {world_name} N={num} {kernel}")
                result = floor_module.measure_floor(
                    world,
                    target,
                    10.0,
                    num,
                    sizes["floor_repeats"],
                    torch.device("cpu"),
                    kernel=kernel,
                    warmup=sizes["floor_warmup"],
                )
                rows.append({"world": world_name, "kernel": kernel, "num_particles": num, **result})
    return rows


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()[0]:.2f}] {message}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run: tiny sizes, numbers mean nothing")
    parser.add_argument("--out", type=Path, default=HERE / "results-population.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    sizes = SIZES["tiny" if args.tiny else "default"]
    allocator = pls.keep_freed_memory()  # as the command line runs: timings without page-fault storms
    start = time.perf_counter()
    results = {
        "mode": "tiny" if args.tiny else "default",
        "sizes": sizes,
        "rhat_ok": RHAT_OK,
        "command": " ".join(["python benchmarks/population.py", *sys.argv[1:]]),
        "torch_threads": torch.get_num_threads(),
        "keep_freed_memory": allocator,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "exact": exact_rows(sizes),
        "real": real_rows(sizes),
        "floor": floor_rows(sizes),
    }
    results["elapsed_s"] = time.perf_counter() - start
    args.out.write_text(
        json.dumps(results, indent=1, default=lambda v: None if isinstance(v, float) and not math.isfinite(v) else v)
        + "\n"
    )
    log(f"wrote {args.out} in {results['elapsed_s']:.0f} s")
    if not args.tiny:  # BENCHMARKS.md is rendered from every results file, as benchmarks/run.py does
        import report

        sources = sorted(HERE.glob("results*.json"), key=report.order)
        (HERE.parent / "BENCHMARKS.md").write_text(
            report.render([json.loads(path.read_text()) | {"_file": path.name} for path in sources])
        )
        log("wrote BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
