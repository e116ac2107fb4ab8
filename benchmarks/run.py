"""Benchmarks, side by side: samplers at equal wall-clock budgets, the floor, scaling, speed-ups.

    python benchmarks/run.py                 # quick (make bench): under 10 minutes on 2 cores
    python benchmarks/run.py --full          # longer budgets, more sizes
    python benchmarks/run.py --device cuda   # the same suite on a GPU (benchmarks/gpu.sh)

Writes ``benchmarks/results.json`` (``results-full.json`` with ``--full``; ``results-<device>.json``
off the CPU) and regenerates ``BENCHMARKS.md`` from whichever of those files exist. Every
comparison runs its contenders in one process, on the same world, target and thread count, and
reports ratios; absolute times are context. See :mod:`samplers` for how each method is run and
what its ESS means.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="ArviZ is undergoing")

import floor as floor_module  # noqa: E402
import optimisations  # noqa: E402
import report  # noqa: E402
import samplers  # noqa: E402
import scaling  # noqa: E402
import torch  # noqa: E402
from timing import load_average  # noqa: E402

import pplevelset as pls  # noqa: E402
from pplevelset.infer.config import resolve_device  # noqa: E402

METHODS = tuple(samplers.RUNNERS)
ALPHA = 10.0
# two-class targets: MNIST as in the paper (a 1 that is also a 7); houses has only two classes, so
# "two-class" is a lean, not a tie: 70% house sits between the boundary (ambiguous) and the bulk
# of the house class (house=0.999, where the prior already matches and every sampler has it easy)
TWO_CLASS = {
    "mnist-vae": "1=0.46,7=0.46",
    "mnist-gan": "1=0.46,7=0.46",
    "houses": "house=0.7",
    "houses-circles": "house=0.7",
}

MODES = {
    # make bench: under 10 minutes on 2 cores. Short budgets are mostly warm-up: read them as
    # "what each method delivers in its first 15 seconds"; --full gives the settled comparison.
    "quick": dict(
        budget_s=15.0,
        rwmh_particles=1000,
        nuts_particles=4,
        smc_particles=1000,
        populations=4,
        moves=10,
        floor_sizes=(100, 1000, 10000),
        floor_repeats={100: 15, 1000: 7, 10000: 5},
        scaling_n=(100, 1000, 3000),
        scaling_steps=10,
        scaling_warmup=2,
        scaling_t=(100, 1000),
        scaling_t_particles=10000,
        scaling_t_worlds=("toy",),
        optim_particles=1000,
        optim_repeats=7,
        trace_sizes=(100, 1000),
        optimisations=("grad_mode", "layout", "threads", "render", "chunk", "trace"),
        chunk_sizes=(1000, 3000),
    ),
    "full": dict(
        budget_s=120.0,
        rwmh_particles=1000,
        nuts_particles=16,
        smc_particles=1000,
        populations=4,
        moves=10,
        floor_sizes=(100, 1000, 10000),
        floor_repeats={100: 40, 1000: 15, 10000: 5},
        scaling_n=(100, 300, 1000, 3000, 10000),
        scaling_steps=20,
        scaling_warmup=5,
        scaling_t=(100, 1000, 3000),
        scaling_t_particles=10000,
        scaling_t_worlds=("toy",),
        optim_particles=1000,
        optim_repeats=15,
        trace_sizes=(100, 1000, 10000),
        optimisations=tuple(optimisations.EXPERIMENTS),
        chunk_sizes=(1000, 3000, 10000),
    ),
    "tiny": dict(
        budget_s=1.0,
        rwmh_particles=40,
        nuts_particles=4,
        smc_particles=40,
        populations=2,
        moves=2,
        floor_sizes=(100,),
        floor_repeats={100: 2},
        scaling_n=(50,),
        scaling_steps=3,
        scaling_warmup=1,
        scaling_t=(),
        scaling_t_particles=20,
        scaling_t_worlds=(),
        optim_particles=50,
        optim_repeats=1,
        trace_sizes=(50,),
        optimisations=("grad_mode", "threads", "bfloat16", "trace"),
        chunk_sizes=(50,),
    ),
}


def auto_threads() -> int:
    """The cores the 1-minute load average leaves free, at least one."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - round(os.getloadavg()[0])))


def two_class_spec(world) -> str:
    if world.name in TWO_CLASS:
        return TWO_CLASS[world.name]
    first, second = world.classes[:2]
    return f"{first}=0.7" if len(world.classes) == 2 else f"{first}=0.46,{second}=0.46"


def machine_facts(args, device) -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import arviz
    import numpy
    import pyro

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    facts = {
        "cpu_model": model,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "arviz": arviz.__version__,
        "numpy": numpy.__version__,
        "pplevelset": pls.__version__,
        "platform": platform.platform(),
        "git_commit": commit,
        "command": " ".join(["python benchmarks/run.py", *sys.argv[1:]]),
        "load_average_start": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if torch.device(device).type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()[0]:.2f}] {message}", flush=True)


def compare(world, settings, methods, device, seed) -> dict:
    out = {}
    for target_name, spec in (("ambiguous", "ambiguous"), ("two_class", two_class_spec(world))):
        target = pls.parse_target(spec, world.classes).to(device)
        details = {}
        for method in methods:
            log(f"{world.name} {target_name} ({spec}): {method} for {settings['budget_s']:g} s")
            details[method] = samplers.measure(
                method,
                world,
                spec,
                target,
                ALPHA,
                settings["budget_s"],
                seed,
                device,
                num_particles=settings["rwmh_particles"],
                nuts_particles=settings["nuts_particles"],
                smc_particles=settings["smc_particles"],
                populations=settings["populations"],
                moves=settings["moves"],
            )
            details[method]["load_average"] = load_average()
        out[target_name] = {
            "spec": spec,
            "alpha": ALPHA,
            "budget_s": settings["budget_s"],
            "ess_per_s": {m: d["ess_per_s"] for m, d in details.items()},
            "hits_per_s": {m: d["hits_per_s"] for m, d in details.items()},
            "rhat": {m: d["rhat"] for m, d in details.items()},
            "ratios": ratios(details),
            "details": details,
        }
    return out


def ratios(details: dict) -> dict:
    """Ours (rwmh) over each other method, for ESS/s and hits/s. A method with nothing in its budget
    gets a rate bound of one per budget, and the ratio is then a lower bound (``at_least``); where
    neither has anything the ratio is undefined (None)."""
    if "rwmh" not in details:
        return {}
    ours = details["rwmh"]
    out = {}
    for method, other in details.items():
        if method == "rwmh":
            continue
        entry = {}
        for key in ("ess_per_s", "hits_per_s"):
            rate = other[key]
            if not (ours[key] and ours[key] > 0) and not (rate and rate > 0):
                entry[key], entry[key + "_at_least"] = None, False
            elif rate and rate > 0:
                entry[key] = ours[key] / rate
                entry[key + "_at_least"] = False
            else:
                entry[key] = ours[key] * other["elapsed_s"]  # other < 1 per elapsed
                entry[key + "_at_least"] = True
        out[method] = entry
    return out


def run_floor(world, settings, device) -> tuple[dict, dict]:
    target = pls.parse_target("ambiguous", world.classes).to(device)
    ratios_by_n, details = {}, {}
    for n in settings["floor_sizes"]:
        log(f"floor {world.name} N={n}")
        # rwmh's steps all cost the same: one step per timed call
        result = floor_module.measure_floor(world, target, ALPHA, n, settings["floor_repeats"][n], device, block=1)
        result["load_average"] = load_average()
        ratios_by_n[str(n)], details[str(n)] = result["ratio"], result
    return ratios_by_n, details


def run_scaling(world_names, settings, device, threads) -> dict:
    rows = []
    for name in world_names:
        for n in settings["scaling_n"]:
            log(f"scaling {name} N={n} T={settings['scaling_steps']}")
            rows.append(
                {
                    "axis": "N",
                    **scaling.run_child(
                        name, n, settings["scaling_warmup"], settings["scaling_steps"], str(device), threads
                    ),
                }
            )
    for name in settings["scaling_t_worlds"]:
        for t in settings["scaling_t"]:
            log(f"scaling {name} N={settings['scaling_t_particles']} T={t}")
            rows.append(
                {
                    "axis": "T",
                    **scaling.run_child(
                        name, settings["scaling_t_particles"], settings["scaling_warmup"], t, str(device), threads
                    ),
                }
            )
    return {"rows": rows}


def run_optimisations(world, settings, device) -> dict:
    target = pls.parse_target("ambiguous", world.classes).to(device)
    n, repeats = settings["optim_particles"], settings["optim_repeats"]
    out = {}
    for name, experiment in optimisations.EXPERIMENTS.items():
        if name == "layout" and not hasattr(world, "classifier"):
            continue
        if name == "render" and not world.name.startswith("houses"):
            continue
        if name == "threads" and torch.device(device).type == "cuda":
            continue
        if name not in settings["optimisations"]:
            continue
        log(f"optimisation {world.name}: {name}")
        try:
            if name == "trace":
                out[name] = {
                    str(size): experiment(world, target, ALPHA, size, repeats, device)
                    for size in settings["trace_sizes"]
                }
            elif name == "chunk":
                out[name] = {
                    str(size): experiment(world, target, ALPHA, size, max(3, repeats // 3), device)
                    for size in settings["chunk_sizes"]
                }
            else:
                out[name] = experiment(world, target, ALPHA, n, repeats, device)
        except Exception as exc:  # one failed experiment should not sink the suite
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        torch.set_num_threads(settings["threads"])
    return out


def goals(results: dict, worlds: list[str]) -> dict:
    out = {}
    if "mnist-vae" in worlds and "mnist-vae" in results:
        two = results["mnist-vae"]["two_class"]
        r = two["ratios"]
        for baseline in ("pyro_nuts_single", "pyro_rw_single"):
            if baseline in r:
                out[f"mnist-vae ESS/s rwmh over {baseline} >= 10 at R-hat <= 1.05 (two-class)"] = {
                    "ratio": r[baseline]["ess_per_s"],
                    "ratio_is_lower_bound": r[baseline]["ess_per_s_at_least"],
                    "rhat_rwmh": two["rhat"].get("rwmh"),
                    "met": bool(r[baseline]["ess_per_s"] >= 10 and (two["rhat"].get("rwmh") or math.inf) <= 1.05),
                    "ratio_met": bool(r[baseline]["ess_per_s"] >= 10),
                }
    for world in worlds:
        amb = results.get(world, {}).get("ambiguous", {})
        if "prior_rejection" in amb.get("ratios", {}):
            entry = amb["ratios"]["prior_rejection"]
            out[f"{world} ambiguous hits/s rwmh over prior_rejection >= 100"] = {
                "ratio": entry["hits_per_s"],
                "ratio_is_lower_bound": entry["hits_per_s_at_least"],
                "met": entry["hits_per_s"] is not None and entry["hits_per_s"] >= 100,
            }
    for world, by_n in results.get("floor", {}).items():
        big = {n: r for n, r in by_n.items() if int(n) >= 1000}
        if big:
            out[f"{world} step / bare forward <= 1.10 at N >= 1000"] = {
                "ratios": big,
                "met": all(r <= 1.10 for r in big.values()),
            }
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="longer budgets and more sizes")
    parser.add_argument("--tiny", action="store_true", help="seconds-long smoke run (tests)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        default="auto",
        help="torch threads for every contender; auto (default): the cores the 1-minute load "
        "average leaves free, at least 1 (on a busy 2-core machine 2 threads ran 2-2.6x slower "
        "than 1, on a quiet one 1.6x faster: see the threads experiment)",
    )
    parser.add_argument("--worlds", nargs="+", default=["mnist-vae", "houses"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["compare", "floor", "scaling", "optimisations"],
        choices=["compare", "floor", "scaling", "optimisations"],
    )
    parser.add_argument("--budget", type=float, default=None, help="seconds per sampler (overrides the mode)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-json", default=None)
    parser.add_argument("--out-md", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)

    mode = "tiny" if args.tiny else "full" if args.full else "quick"
    threads_auto = args.threads == "auto"
    args.threads = auto_threads() if threads_auto else int(args.threads)
    settings = dict(MODES[mode], threads=args.threads)
    if args.budget:
        settings["budget_s"] = args.budget
    try:
        device = resolve_device(args.device)
    except pls.UserInputError as exc:
        parser.exit(2, f"benchmarks/run.py: {exc}\n")
    torch.set_num_threads(args.threads)
    suffix = "" if mode == "quick" else f"-{mode}"
    if device.type != "cpu":
        suffix += f"-{device.type}"
    out_json = Path(args.out_json) if args.out_json else HERE / f"results{suffix}.json"

    started = time.perf_counter()
    results: dict = {"machine": machine_facts(args, device), "mode": mode, "settings": settings}
    results["machine"]["torch_threads_choice"] = "auto (cores left free by the load)" if threads_auto else "--threads"
    worlds = {name: pls.load_world(name, device=device) for name in args.worlds}
    if "compare" in args.sections:
        for name, world in worlds.items():
            results[name] = compare(world, settings, args.methods, device, args.seed)
    if "floor" in args.sections:
        results["floor"], results["floor_details"] = {}, {}
        for name, world in worlds.items():
            results["floor"][name], results["floor_details"][name] = run_floor(world, settings, device)
    if "optimisations" in args.sections:
        results["optimisations"] = {name: run_optimisations(world, settings, device) for name, world in worlds.items()}
    if "scaling" in args.sections:
        results["scaling"] = run_scaling(list(worlds), settings, device, args.threads)
    results["goals"] = goals(results, list(worlds))
    results["machine"]["load_average_end"] = load_average()
    results["machine"]["wall_s"] = time.perf_counter() - started
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    log(f"wrote {out_json} in {results['machine']['wall_s']:.0f} s")
    if args.out_md:
        sources = [out_json] if args.out_json else sorted(HERE.glob("results*.json"), key=report.order)
        Path(args.out_md).write_text(report.render([json.loads(p.read_text()) | {"_file": p.name} for p in sources]))
        log(f"wrote {args.out_md}")


if __name__ == "__main__":
    main()
