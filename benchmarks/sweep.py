"""Sweeps: K targets in one batch against one run of N particles and against K separate runs; the
local and Ray backends on the same sweep; Ray's overhead per task.

    python benchmarks/sweep.py                  # quick (make bench): a few minutes on 2 cores
    python benchmarks/sweep.py --tiny           # seconds (smoke test)
    python benchmarks/sweep.py --no-ray         # without the Ray section

Writes ``benchmarks/sweep-results.json`` and prints a Markdown summary. Contenders of one comparison
run in one process, interleaved round by round (``timing.interleaved``), on the same world and
thread count; the goals are ratios of their median times. Times include everything a user waits
for in Python (configuration, world checks, density, initial positions, the steps), with the world
loaded once beforehand; writing run directories is not included (it is the same per item either way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from timing import interleaved, load_average  # noqa: E402

import pplevelset as pls  # noqa: E402

MODES = {
    "quick": {"particles_per_target": 100, "warmup": 50, "steps": 50, "repeats": 2, "ray_tasks": 50},
    "tiny": {"particles_per_target": 20, "warmup": 3, "steps": 3, "repeats": 1, "ray_tasks": 5},
}
FAMILIES = {"houses": "graded:house", "mnist-vae": "graded:1,7", "toy": "graded:a"}


def log(text: str) -> None:
    print(f"[sweep-bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def auto_threads() -> int:
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def batching(world_name: str, kernel: str, settings: dict) -> dict:
    """One batched sweep of K targets x n particles, one run of N = K n particles with one target,
    and K separate runs of n particles: median seconds and the two goal ratios."""
    world = pls.load_world(world_name)
    targets = pls.expand_targets(FAMILIES[world_name], world.classes)
    n, count = settings["particles_per_target"], len(targets)
    common = dict(alpha=10.0, warmup=settings["warmup"], steps=settings["steps"], kernel=kernel, seed=0, progress=False)
    middle = targets[count // 2].spec
    contenders = {
        "sweep": lambda: pls.sweep(world, targets, particles_per_target=n, **common),
        "one_run": lambda: pls.sample(world, middle, num_particles=count * n, **common),
        "separate_runs": lambda: [pls.sample(world, t.spec, num_particles=n, **common) for t in targets],
    }
    log(f"{world_name} {kernel}: K = {count} targets x n = {n}, {settings['warmup']} + {settings['steps']} steps")
    times = interleaved(contenders, settings["repeats"], warm=0)
    out = {
        "world": world_name,
        "family": FAMILIES[world_name],
        "kernel": kernel,
        "targets": count,
        "particles_per_target": n,
        "warmup": settings["warmup"],
        "steps": settings["steps"],
        "seconds": times,
        "sweep_over_one_run": times["sweep"] / times["one_run"],
        "separate_over_sweep": times["separate_runs"] / times["sweep"],
    }
    out["goals"] = {
        "sweep <= 1.2x one run": out["sweep_over_one_run"] <= 1.2,
        "sweep >= 5x faster than separate runs": out["separate_over_sweep"] >= 5,
    }
    log(
        f"  {json.dumps({k: round(v, 2) for k, v in times.items()})}; sweep/one run "
        f"{out['sweep_over_one_run']:.2f}, separate/sweep {out['separate_over_sweep']:.1f}"
    )
    return out


def backends(world_name: str, settings: dict, threads: int) -> dict:
    """The same sweep through ``execute`` on the local backend and on a local Ray (2 CPUs), with
    run directories written; then Ray's own cost per task (no-op tasks, and a task returning the
    bytes one batch returns)."""
    import ray

    from pplevelset.audit.execute import execute
    from pplevelset.audit.plan import SweepSettings, build_plan

    plan = build_plan(
        [world_name],
        [FAMILIES[world_name]],
        seeds=[0],
        settings=SweepSettings(
            particles_per_target=settings["particles_per_target"],
            warmup=settings["warmup"],
            steps=settings["steps"],
            keep=16,
            chunk_size=4,
        ),
    )
    chunks = len(plan.chunks())
    quiet = lambda text: None  # noqa: E731
    out: dict = {"world": world_name, "family": FAMILIES[world_name], "items": len(plan.items), "tasks": chunks}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        local = execute(plan, Path(tmp) / "local", backend="local", progress=False, log=quiet)
        out["local_s"] = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
        )
        out["ray_init_s"] = time.perf_counter() - start
        start = time.perf_counter()
        remote = execute(plan, Path(tmp) / "ray", backend="ray", progress=False, log=quiet)
        out["ray_s"] = time.perf_counter() - start
        same = [{k: r.get(k) for k in ("delta", "mean_prediction", "hits_tv_0.1")} for r in local] == [
            {k: r.get(k) for k in ("delta", "mean_prediction", "hits_tv_0.1")} for r in remote
        ]
        out["same_numbers"] = same
        sizes = [sum(p.stat().st_size for p in (Path(tmp) / "ray" / row["run_dir"]).iterdir()) for row in remote]
        out["bytes_per_item"] = sum(sizes) / len(sizes)
        out["bytes_per_task"] = sum(sizes) / chunks

    @ray.remote(num_cpus=1)
    def noop(index):
        return index

    @ray.remote(num_cpus=1)
    def payload(size):
        return b"x" * size

    ray.get([noop.remote(i) for i in range(5)])  # workers up
    count = settings["ray_tasks"]
    start = time.perf_counter()
    ray.get([noop.remote(i) for i in range(count)])
    out["noop_tasks_per_s"] = count / (time.perf_counter() - start)
    size = int(out["bytes_per_task"])
    start = time.perf_counter()
    ray.get([payload.remote(size) for _ in range(count)])
    out["payload_tasks_per_s"] = count / (time.perf_counter() - start)
    ray.shutdown()
    log(f"  backends: {json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()})}")
    return out


def markdown(results: dict) -> str:
    lines = [
        "| world, kernel | K x n | one batched sweep | one run of N = K n | K separate runs | sweep / one run "
        "(goal <= 1.2) | separate / sweep (goal >= 5) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["batching"]:
        s = row["seconds"]
        lines.append(
            f"| {row['world']}, {row['kernel']} | {row['targets']} x {row['particles_per_target']} | "
            f"{s['sweep']:.1f} s | {s['one_run']:.1f} s | {s['separate_runs']:.1f} s | "
            f"{row['sweep_over_one_run']:.2f} | {row['separate_over_sweep']:.1f}x |"
        )
    ray = results.get("backends")
    if ray:
        lines += [
            "",
            "| backend | items (tasks) | wall | same numbers |",
            "|---|---|---|---|",
            f"| local | {ray['items']} (1 process) | {ray['local_s']:.1f} s | |",
            f"| ray, 2 CPUs | {ray['items']} ({ray['tasks']} tasks) | {ray['ray_s']:.1f} s "
            f"(+ {ray['ray_init_s']:.1f} s ray.init) | {'yes' if ray['same_numbers'] else 'NO'} |",
            "",
            f"Ray overhead: {ray['noop_tasks_per_s']:.0f} no-op tasks/s, "
            f"{ray['payload_tasks_per_s']:.0f} tasks/s returning {ray['bytes_per_task'] / 1e6:.2f} MB "
            f"(one task's results: {ray['bytes_per_item'] / 1e3:.0f} kB per item).",
        ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--worlds", nargs="+", default=["toy", "houses", "mnist-vae"])
    parser.add_argument("--kernels", nargs="+", default=["rwmh", "ensemble", "smc"])
    parser.add_argument("--threads", default="auto", help="torch threads (auto: cores the load leaves free)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds per comparison (default: the mode's)")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--ray-world", default="houses", help="the world of the backends section")
    parser.add_argument("--out-json", default=str(HERE / "sweep-results.json"))
    args = parser.parse_args(argv)
    mode = "tiny" if args.tiny else "quick"
    settings = dict(MODES[mode])
    if args.repeats:
        settings["repeats"] = args.repeats
    threads = auto_threads() if args.threads == "auto" else int(args.threads)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    results = {
        "mode": mode,
        "settings": settings,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": threads,
            "load_average_start": load_average(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    results["batching"] = [batching(world, kernel, settings) for world in args.worlds for kernel in args.kernels]
    if not args.no_ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            log("Ray is not installed: skipping the backends section (pip install 'pplevelset[ray]')")
        else:
            results["backends"] = backends(args.ray_world, settings, threads)
    results["machine"]["load_average_end"] = load_average()
    results["machine"]["wall_s"] = time.perf_counter() - started
    Path(args.out_json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(markdown(results))
    log(f"wrote {args.out_json} in {results['machine']['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
