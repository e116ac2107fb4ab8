"""How precise is a population kernel's mean? Independent seeds against the standard errors a run reports.

    python benchmarks/population_error.py      # about 25 minutes on 2 cores

An ensemble's particles move by each other's positions, so they are not independent chains: per-particle
ESS (particles as ArviZ chains) can overstate how precise the run's averages are. For each target this
runs the ensemble kernel (4 rungs, the library's defaults otherwise) and tempered SMC with four times the
particles, each with ``SEEDS`` seeds, and compares, per class, the spread of the mean prediction over
seeds with the standard error one run reports: from per-particle ESS (``bench-population``'s z until
this script) and from the population's mean (:func:`pplevelset.diagnostics.population_convergence`).
Then the ensemble's mean over seeds against SMC's, in standard errors from the seeds' spread. Writes
``benchmarks/population-error.json`` and prints a Markdown table (benchmarks/population.md quotes it).
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import population  # noqa: E402

import pplevelset as pls  # noqa: E402

SEEDS = (0, 1, 2, 3)
TARGETS = [
    ("mnist-vae", "ambiguous", 100.0),  # bench-population's one target 4 SEs off SMC
    ("mnist-vae", "1=0.46,7=0.46", 10.0),
    ("houses-circles", "ambiguous", 10.0),
]
RUNGS = 4
SIZES = population.SIZES["default"]


def run(world, spec: str, alpha: float, kernel: str, seed: int) -> dict:
    if kernel == "smc":
        post = population.run_smc(world, spec, alpha, SIZES, seed)
    else:
        post, _ = population.run_kernel(world, spec, alpha, f"ensemble, {RUNGS} rungs", SIZES, seed)
    values = post.traces["prediction_probs"].numpy()
    mean, particle_error = population.mean_and_error(values)
    # SMC's chains are its independent populations, and its draws their particles: no series over time,
    # so its own error stands in (the table shows "–")
    population_error = particle_error if kernel == "smc" else population.mean_and_error(values, population=True)[1]
    convergence = post.convergence()
    return {
        "seed": seed,
        "mean": mean.tolist(),
        "particle_error": particle_error.tolist(),
        "population_error": population_error.tolist(),
        "rhat_max": convergence["rhat_max"],
        "tau_population_max": convergence.get("tau_population_max"),
        "elapsed_s": post.elapsed_s,
    }


def main() -> int:
    warnings.filterwarnings("ignore")
    pls.keep_freed_memory()
    start = time.perf_counter()
    results = {"command": "python benchmarks/population_error.py", "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    rows = []
    for world_name, spec, alpha in TARGETS:
        world = pls.load_world(world_name)
        runs = {kernel: [] for kernel in ("ensemble", "smc")}
        for kernel in runs:
            for seed in SEEDS:
                population.log(f"{world_name} {spec} alpha {alpha:g}: {kernel} seed {seed}")
                runs[kernel].append(run(world, spec, alpha, kernel, seed))
        summary = {}
        for kernel, done in runs.items():
            means = np.array([r["mean"] for r in done])
            summary[kernel] = {
                "mean": means.mean(0).tolist(),
                "seed_sd": means.std(0, ddof=1).tolist(),
                "particle_error": np.mean([r["particle_error"] for r in done], 0).tolist(),
                "population_error": np.mean([r["population_error"] for r in done], 0).tolist(),
            }
        ens, smc = (np.array(summary[k]["mean"]) for k in ("ensemble", "smc"))
        spread = np.sqrt(
            (np.array(summary["ensemble"]["seed_sd"]) ** 2 + np.array(summary["smc"]["seed_sd"]) ** 2) / len(SEEDS)
        )
        rows.append(
            {
                "world": world_name,
                "spec": spec,
                "alpha": alpha,
                "classes": [str(c) for c in world.classes],
                "runs": runs,
                "summary": summary,
                "z_seed_means": ((ens - smc) / spread).tolist(),
            }
        )
        results["targets"] = rows
        (HERE / "population-error.json").write_text(json.dumps(results, indent=1) + "\n")
    results["elapsed_s"] = time.perf_counter() - start
    (HERE / "population-error.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    return 0


def table(results: dict) -> str:
    """Per target, the class whose spread over seeds is largest: the errors side by side."""
    lines = [
        "| target | alpha | kernel | class | sd over seeds | error from particles | error from the population's mean "
        "| R-hat | tau (draws) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["targets"]:
        worst = int(np.argmax(row["summary"]["ensemble"]["seed_sd"]))
        for kernel, stats in row["summary"].items():
            rhats = [r["rhat_max"] for r in row["runs"][kernel]]
            taus = [r["tau_population_max"] for r in row["runs"][kernel] if r["tau_population_max"] is not None]
            lines.append(
                f"| {row['world']} {row['spec']} | {row['alpha']:g} | {kernel} | {row['classes'][worst]} "
                f"| {stats['seed_sd'][worst]:.4f} | {stats['particle_error'][worst]:.4f} "
                + ("| – " if kernel == "smc" else f"| {stats['population_error'][worst]:.4f} ")
                + f"| {min(rhats):.3f}-{max(rhats):.3f} | "
                + (f"{min(taus):.0f}-{max(taus):.0f}" if taus else "–")
                + " |"
            )
        z = np.abs(row["z_seed_means"])
        lines.append(f"| | | ensemble vs SMC, means over seeds | | max abs z {z.max():.2f} | | | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
