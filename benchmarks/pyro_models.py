"""Plain Pyro models, vectorized: our kernels with N particles against Pyro's NUTS and random walk.

    .venv/bin/python benchmarks/pyro_models.py              # the table: results-pyro-models.json + markdown
    .venv/bin/python benchmarks/pyro_models.py --reference  # the eight-schools reference run (tests/data/)

The models are the four of ``tests/pyro_examples.py``. Every contender runs under
``pyro.infer.MCMC`` with a fixed number of warm-up and recorded steps; its score is the smallest
bulk ESS (ArviZ, chains as chains) over every scalar latent, per second of wall time (warm-up,
and for Pyro's ``num_chains`` its worker processes, included). A run whose largest R-hat is over
1.05 has not converged: its ESS is not reported.

- ``pls_rw``, ``pls_ensemble``: ``BatchedRandomWalk`` / ``EnsembleKernel(model, num_particles=N)``,
  N chains in one process and one batched computation.
- ``pyro_nuts``, ``pyro_rw``: Pyro's ``NUTS`` / ``RandomWalkKernel`` with defaults and
  ``num_chains=N``: one process per chain, Pyro's way.

``--reference`` runs Pyro NUTS long on eight schools (4 chains one after the other, JIT) and
stores the moments of ``mu``, ``tau`` and ``theta`` with their Monte Carlo standard errors
(ArviZ, ESS-based) for ``tests/test_pyro_models.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pyro  # noqa: E402
import pyro_examples  # noqa: E402
import torch  # noqa: E402
from pyro.infer import MCMC, NUTS, RandomWalkKernel  # noqa: E402
from timing import load_average  # noqa: E402

import pplevelset as pls  # noqa: E402

warnings.filterwarnings("ignore", message="ArviZ is undergoing")
warnings.filterwarnings("ignore", category=FutureWarning)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()[0]:.2f}] {message}", flush=True)


def scalar_dataset(samples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every scalar component of every site as its own ``(chain, draw)`` array, named ``site[i]``."""
    out = {}
    for site, value in samples.items():
        flat = value.reshape(value.shape[0], value.shape[1], -1)
        if flat.shape[-1] == 1 and value.ndim == 2:
            out[site] = flat[..., 0]
        else:
            out.update({f"{site}[{i}]": flat[..., i] for i in range(flat.shape[-1])})
    return out


def reference(chains: int, warmup: int, samples: int, out: Path) -> dict:
    """Long Pyro NUTS run on eight schools: moments and MC standard errors of mu, tau, theta."""
    example = pyro_examples.EXAMPLES["eight_schools"]
    draws = []
    start = time.perf_counter()
    for chain in range(chains):
        pyro.set_rng_seed(1000 + chain)
        kernel = NUTS(example.model, target_accept_prob=0.9, jit_compile=True, ignore_jit_warnings=True)
        mcmc = MCMC(kernel, num_samples=samples, warmup_steps=warmup, disable_progbar=True)
        mcmc.run(*example.args)
        draws.append({name: value.double().numpy() for name, value in mcmc.get_samples().items()})
        log(f"reference chain {chain} done")
    stacked = {name: np.stack([d[name] for d in draws]) for name in ("mu", "tau", "eta")}
    stacked = {**stacked, **example.derived(stacked)}  # theta: MCMC does not record deterministic sites
    del stacked["eta"]
    dataset = scalar_dataset(stacked)
    summary = az.summary(dataset, kind="all", round_to="none")
    moments = {
        name: {
            "mean": float(row["mean"]),
            "sd": float(row["sd"]),
            "mcse_mean": float(row["mcse_mean"]),
            "mcse_sd": float(row["mcse_sd"]),
            "ess_bulk": float(row["ess_bulk"]),
            "r_hat": float(row["r_hat"]),
        }
        for name, row in summary.iterrows()
    }
    result = {
        "what": "eight schools (non-centred), Pyro NUTS reference",
        "settings": {
            "chains": chains,
            "warmup": warmup,
            "samples": samples,
            "target_accept_prob": 0.9,
            "seeds": [1000 + c for c in range(chains)],
            "pyro": pyro.__version__,
            "torch": torch.__version__,
            "seconds": round(time.perf_counter() - start, 1),
        },
        "moments": moments,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    log(f"wrote {out}")
    return result


KERNELS = {
    "pls_rw": lambda model, n: pls.BatchedRandomWalk(model, num_particles=n, seed=0),
    "pls_ensemble": lambda model, n: pls.EnsembleKernel(model, num_particles=n, seed=0),
    "pyro_nuts": lambda model, n: NUTS(model),
    "pyro_rw": lambda model, n: RandomWalkKernel(model),
}


def run_one(example, method: str, chains: int, warmup: int, samples: int) -> dict:
    """One timed run: min bulk ESS over scalar latents, its per-second rate, and the largest R-hat."""
    pyro.set_rng_seed(0)
    ours = method.startswith("pls")
    mcmc = MCMC(
        KERNELS[method](example.model, chains),
        num_samples=samples,
        warmup_steps=warmup,
        num_chains=1 if ours else chains,
        disable_progbar=True,
    )
    start = time.perf_counter()
    mcmc.run(*example.args)
    seconds = time.perf_counter() - start
    draws = {name: value.double().numpy() for name, value in mcmc.get_samples(group_by_chain=True).items()}
    if ours:  # MCMC's one chain holds the N particles: particles are the chains
        draws = {name: np.swapaxes(value[0], 0, 1) for name, value in draws.items()}
    dataset = scalar_dataset(draws)
    ess = min(float(az.ess(dataset, var_names=[name], method="bulk")[name]) for name in dataset)
    rhat = max(float(az.rhat(dataset, var_names=[name])[name]) for name in dataset)
    converged = rhat <= 1.05
    return {
        "method": method,
        "chains": chains,
        "warmup": warmup,
        "samples": samples,
        "seconds": round(seconds, 2),
        "ess_bulk_min": round(ess, 1),
        "rhat_max": round(rhat, 3),
        "ess_per_s": round(ess / seconds, 2) if converged else None,
    }


ENSEMBLE_MIN = 6  # the ensemble moves each half with the other's positions: 3 per half at least


def plan(args) -> list[tuple[str, int, int, int]]:
    """(method, chains, warmup, samples): the head-to-head at each of ``--chains`` (the ensemble from
    ENSEMBLE_MIN particles), then ours at ``--large``."""
    runs = []
    for chains in args.chains:
        runs += [
            ("pyro_nuts", chains, args.nuts_steps, args.nuts_steps),
            ("pyro_rw", chains, args.rw_steps, args.rw_steps),
            ("pls_rw", chains, args.rw_steps, args.rw_steps),
        ]
        if chains >= ENSEMBLE_MIN:
            runs.append(("pls_ensemble", chains, args.rw_steps, args.rw_steps))
    runs += [
        ("pls_rw", args.large, args.large_steps, args.large_steps),
        ("pls_ensemble", args.large, args.large_steps, args.large_steps),
    ]
    return runs


def markdown(results: dict, command: str) -> str:
    machine = results["machine"]
    lines = [
        "## Any Pyro model, vectorized: ESS per second against Pyro's kernels",
        "",
        f"    {command}",
        "",
        "Min bulk ESS over every scalar latent per second of wall time (warm-up and Pyro's worker "
        "processes included); `-` where the largest R-hat is over 1.05. "
        f"Machine: {machine['cpu_cores']} cores, torch threads {machine['torch_threads']}, "
        f"load average {machine['load_average_start']} at the start and {machine['load_average_end']} "
        "at the end.",
        "",
    ]
    columns = [(row["method"], row["chains"]) for row in next(iter(results["models"].values()))]
    lines.append("| model | " + " | ".join(f"{m} N={n}" for m, n in columns) + " |")
    lines.append("|---" * (len(columns) + 1) + "|")
    for model, rows in results["models"].items():
        cells = [
            f"{row['ess_per_s']:.1f}" if row["ess_per_s"] is not None else f"- (R-hat {row['rhat_max']:.2f})"
            for row in rows
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ratio of each contender to Pyro NUTS with the same number of chains (ours at the "
        "large N: to Pyro NUTS at the largest head-to-head N):",
        "",
    ]
    lines.append("| model | " + " | ".join(f"{m} N={n}" for m, n in columns if m != "pyro_nuts") + " |")
    lines.append("|---" * (sum(m != "pyro_nuts" for m, _ in columns) + 1) + "|")
    largest = max(n for m, n in columns if m == "pyro_nuts")
    for model, rows in results["models"].items():
        nuts = {row["chains"]: row["ess_per_s"] for row in rows if row["method"] == "pyro_nuts"}
        cells = []
        for row in rows:
            if row["method"] == "pyro_nuts":
                continue
            base = nuts.get(row["chains"], nuts.get(largest))
            cells.append(f"{row['ess_per_s'] / base:.2f}x" if row["ess_per_s"] is not None and base else "-")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", action="store_true", help="compute the eight-schools reference instead")
    parser.add_argument("--reference-chains", type=int, default=4)
    parser.add_argument("--reference-warmup", type=int, default=1000)
    parser.add_argument("--reference-samples", type=int, default=10000)
    names = list(pyro_examples.EXAMPLES)
    parser.add_argument("--models", nargs="+", default=names, choices=names)
    parser.add_argument("--chains", nargs="+", type=int, default=[4, 8], help="head-to-head numbers of chains")
    parser.add_argument("--large", type=int, default=1000, help="particles of our kernels' vectorized runs")
    parser.add_argument("--nuts-steps", type=int, default=300, help="NUTS warm-up steps, and as many recorded")
    parser.add_argument(
        "--rw-steps", type=int, default=2000, help="random-walk and ensemble warm-up steps, and as many recorded"
    )
    parser.add_argument("--large-steps", type=int, default=2000, help="warm-up and recorded steps at --large")
    parser.add_argument("--out-json", type=Path, default=HERE / "results-pyro-models.json")
    parser.add_argument(
        "--out-md",
        type=Path,
        default=HERE / "pyro_models.md",
        help="the tables; the reading of them is benchmarks/pyro_models_reading.md",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.reference:
        reference(args.reference_chains, args.reference_warmup, args.reference_samples, pyro_examples.REFERENCE)
        return 0
    command = "python benchmarks/pyro_models.py " + " ".join(argv if argv is not None else sys.argv[1:])
    machine = {
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "python": platform.python_version(),
        "load_average_start": load_average(),
        "command": command.strip(),
    }
    results = {"machine": machine, "models": {}}
    for name in args.models:
        example = pyro_examples.EXAMPLES[name]
        results["models"][name] = []
        for method, chains, warmup, samples in plan(args):
            row = run_one(example, method, chains, warmup, samples)
            results["models"][name].append(row)
            log(f"{name} {method} N={chains}: {row}")
    machine["load_average_end"] = load_average()
    args.out_json.write_text(json.dumps(results, indent=1) + "\n")
    args.out_md.write_text(markdown(results, command.strip()))
    log(f"wrote {args.out_json} and {args.out_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
