"""Is 500 steps of warm-up enough at high alpha? The ensemble (4 rungs) on mnist-vae ``ambiguous``,
alpha 100, with longer warm-ups and with an SMC start, against SMC with four times the particles.

    python benchmarks/warmup_length.py      # about 16 minutes on 2 cores

bench-population's one target whose ensemble mean stays off SMC's (benchmarks/population.md) has a
population whose mean moves with a tau of hundreds of draws. Does it still move because it mixes slowly
at stationarity, or because after 500 warm-up steps it is not there yet? Each run records, beside its
mean prediction and diagnostics, the recorded particles' mean log-likelihood in windows of
``WINDOW`` steps over warm-up and sampling: a population that is still climbing toward the level set's
better-fitting parts shows it there, where R-hat (which compares particles of one population) does not.
The runs with ``start="smc"`` begin at the particles of one quick tempered SMC run (its seconds are
part of the run's) instead of prior draws.

Two SMC references, both with four times the particles: bench-population's (100 MH moves per
temperature, read from ``benchmarks/population-error.json``: four seeds, their mean and its standard
error) and one run with ``LONG_SMC_MOVES`` moves (its standard error from the spread of its four
populations), since at alpha 100 SMC's answer still moves with its moves. Writes
``benchmarks/warmup-length.json`` and prints a Markdown table (benchmarks/population.md quotes it).
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

WORLD, SPEC, ALPHA = "mnist-vae", "ambiguous", 100.0
# (warm-up steps, seed, start)
RUNS = [(500, 0, "prior"), (1500, 0, "prior"), (3000, 0, "prior"), (1500, 1, "prior"), (500, 0, "smc"), (500, 1, "smc")]
LABEL = "ensemble, 4 rungs"
WINDOW = 250
LONG_SMC_MOVES = 300
STORED_SMC_MOVES = 100  # population-error.json's SMC runs: bench-population's moves at alpha 100 then


def smc_reference() -> dict:
    """SMC's mean over its four seeds in population-error.json, and the standard error of that mean."""
    stored = json.loads((HERE / "population-error.json").read_text())
    row = next(r for r in stored["targets"] if (r["world"], r["spec"], r["alpha"]) == (WORLD, SPEC, ALPHA))
    means = np.array([run["mean"] for run in row["runs"]["smc"]])
    return {"mean": means.mean(0).tolist(), "error": (means.std(0, ddof=1) / np.sqrt(len(means))).tolist()}


def long_smc() -> dict:
    """One SMC run with four times the particles and ``LONG_SMC_MOVES`` moves per temperature."""
    post = population.run_smc(pls.load_world(WORLD), SPEC, ALPHA, population.SIZES["default"], moves=LONG_SMC_MOVES)
    values = post.traces["prediction_probs"].numpy()  # (populations, particles, classes)
    means = values.mean(1)
    error = means.std(0, ddof=1) / np.sqrt(len(means))
    return {
        "mean": values.mean((0, 1)).tolist(),
        "error": error.tolist(),
        "moves": LONG_SMC_MOVES,
        "elapsed_s": post.elapsed_s,
    }


def z_against(mean: np.ndarray, error: np.ndarray, reference: dict) -> list[float]:
    return ((mean - np.array(reference["mean"])) / np.sqrt(error**2 + np.array(reference["error"]) ** 2)).tolist()


def windows(log_likelihood) -> list[float]:
    """The mean log-likelihood of the recorded particles in consecutive windows of ``WINDOW`` steps."""
    values = log_likelihood.double().mean(0).numpy()
    return [float(values[i : i + WINDOW].mean()) for i in range(0, len(values), WINDOW)]


def run(warmup: int, seed: int, start: str, references: dict) -> dict:
    sizes = population.SIZES["default"] | {"warmup": warmup}
    world = pls.load_world(WORLD)
    post, row = population.run_kernel(world, SPEC, ALPHA, LABEL, sizes, seed, start=start)
    values = post.traces["prediction_probs"].numpy()
    mean, error = population.mean_and_error(values, population=True)
    return {
        "warmup": warmup,
        "seed": seed,
        "start": start,
        "start_temperatures": post.stats.get("start_temperatures"),
        "steps": sizes["steps"],
        "mean": mean.tolist(),
        "population_error": error.tolist(),
        "z_vs_smc": {name: z_against(mean, error, reference) for name, reference in references.items()},
        "rhat_max": row["rhat_max"],
        "tau_population_max": row["tau_population_max"],
        "elapsed_s": row["elapsed_s"],
        "log_likelihood_windows": windows(post.warmup_traces["log_likelihood"])
        + windows(post.traces["log_likelihood"]),
    }


def main() -> int:
    warnings.filterwarnings("ignore")
    pls.keep_freed_memory()
    start = time.perf_counter()
    population.log(f"{WORLD} {SPEC} alpha {ALPHA:g}: SMC with {LONG_SMC_MOVES} moves")
    references = {"smc": smc_reference(), "smc_long": long_smc()}
    results = {
        "command": "python benchmarks/warmup_length.py",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "target": {"world": WORLD, "spec": SPEC, "alpha": ALPHA, "kernel": LABEL, "window": WINDOW},
        "classes": [str(c) for c in pls.load_world(WORLD).classes],
        "smc": references["smc"],
        "smc_long": references["smc_long"],
        "runs": [],
    }
    for warmup, seed, origin in RUNS:
        population.log(f"{WORLD} {SPEC} alpha {ALPHA:g}: warm-up {warmup}, seed {seed}, start {origin}")
        results["runs"].append(run(warmup, seed, origin, references))
        (HERE / "warmup-length.json").write_text(json.dumps(results, indent=1) + "\n")
    results["elapsed_s"] = time.perf_counter() - start
    (HERE / "warmup-length.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    return 0


def seconds(reference: dict) -> str:
    """A reference's seconds; bench-population's is read from its JSON, without seconds of its own."""
    return f"{reference['elapsed_s']:.0f}" if "elapsed_s" in reference else ""


def table(results: dict) -> str:
    """One row per run: the classes the two SMC references disagree on most, and the diagnostics."""
    smc, long = (np.array(results[name]["mean"]) for name in ("smc", "smc_long"))
    shown = np.argsort(-np.abs(long - smc))[:3]
    lines = [
        "| start | warm-up | seed | seconds | "
        + " | ".join(f"p({results['classes'][k]})" for k in shown)
        + f" | max abs z vs SMC, {STORED_SMC_MOVES} moves | vs SMC, {LONG_SMC_MOVES} moves "
        "| R-hat | tau (draws) | log-likelihood by 250 steps |",
        "|---|---|---|---|" + "---|" * len(shown) + "---|---|---|---|---|",
    ]
    for r in results["runs"]:
        climb = ", ".join(f"{v:.1f}" for v in r["log_likelihood_windows"])
        z = {name: np.abs(values).max() for name, values in r["z_vs_smc"].items()}
        lines.append(
            f"| {r['start']} | {r['warmup']} | {r['seed']} | {r['elapsed_s']:.0f} | "
            + " | ".join(f"{r['mean'][k]:.4f}" for k in shown)
            + f" | {z['smc']:.1f} | {z['smc_long']:.1f} | {r['rhat_max']:.3f} | {r['tau_population_max']:.0f} "
            f"| {climb} |"
        )
    for name, label in (
        ("smc", f"SMC, {STORED_SMC_MOVES} moves, 4 seeds"),
        ("smc_long", f"SMC, {LONG_SMC_MOVES} moves, 1 seed"),
    ):
        reference = results[name]
        lines.append(
            f"| {label} | | | {seconds(reference)} | "
            + " | ".join(f"{reference['mean'][k]:.4f} ± {reference['error'][k]:.4f}" for k in shown)
            + " | | | | | |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
