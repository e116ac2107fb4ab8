"""Time per step and peak memory of ``pls.sample`` against N and T, one subprocess per configuration.

A fresh process per configuration keeps configurations apart. The child loads the world and
scores one batch (imports, networks, allocator warm: the baseline), then resets the kernel's
peak-RSS counter (``echo 5 > /proc/self/clear_refs``; Linux keeps ``ru_maxrss`` across ``exec``,
so without the reset every child would report its parent's peak) and notes the current RSS; runs
``pls.sample(kernel="rwmh")`` with N particles, W warm-up and T recorded steps, and reports the
time per step (elapsed over W + T + 2: finding and scoring the initial positions costs about two
forward passes) and the peak RSS. The traces the driver keeps are ``N T (d + L + 4)`` floats (z,
predictions and four sample stats) plus ``N W 4`` during warm-up, and no images.

Run a child by hand: ``python benchmarks/scaling.py WORLD N WARMUP STEPS [--device cpu] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

FLOAT_BYTES = 4


def child() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("world")
    parser.add_argument("num_particles", type=int)
    parser.add_argument("warmup", type=int)
    parser.add_argument("steps", type=int)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import pplevelset as pls

    world = pls.load_world(args.world, device=args.device)
    with torch.no_grad():
        world.predict(world.prior().sample((min(args.num_particles, 100),)))
    peak_reset = _reset_peak_rss()
    baseline = _status_mib("VmRSS") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    post = pls.sample(
        world,
        "ambiguous",
        num_particles=args.num_particles,
        warmup=args.warmup,
        steps=args.steps,
        seed=0,
        device=args.device,
        progress=False,
    )
    peak = _status_mib("VmHWM") if peak_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n, t, w = args.num_particles, args.steps, args.warmup
    d, classes = world.latent_dim, len(world.classes)
    trace_bytes = FLOAT_BYTES * (n * t * (d + classes + 4) + n * w * 4)
    image = world.decode(world.prior().sample((1,)).to(args.device))
    result = {
        "world": args.world,
        "num_particles": n,
        "warmup": w,
        "steps": t,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "step_ms": 1e3 * post.elapsed_s / (w + t + 2),
        "elapsed_s": post.elapsed_s,
        "peak_rss_mib": peak,
        "peak_rss_reset": peak_reset,
        "baseline_rss_mib": baseline,
        "sampling_rss_mib": peak - baseline,
        "trace_mib": trace_bytes / 2**20,
        "one_batch_of_images_mib": FLOAT_BYTES * n * image[0].numel() / 2**20,
        "stored_trace_mib": sum(v.numel() * v.element_size() for v in post.traces.values()) / 2**20
        + sum(v.numel() * v.element_size() for v in (post.warmup_traces or {}).values()) / 2**20,
    }
    if args.device == "cuda":
        result["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB -> MiB
    raise KeyError(field)


def run_child(
    world: str, num_particles: int, warmup: int, steps: int, device: str, threads: int, timeout: float = 3600
) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        world,
        str(num_particles),
        str(warmup),
        str(steps),
        "--device",
        device,
        "--threads",
        str(threads),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise RuntimeError(f"scaling child {command[2:]} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - start
    return result


if __name__ == "__main__":
    child()
