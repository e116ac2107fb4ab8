"""Where an ensemble step's time goes, beside the bare forward pass: the parts of the floor at N = 1,000.

    python benchmarks/floor_parts.py      # about 2 minutes on 2 cores

The floor (``floor.py``) compares one driver step with one batched decode + classify of the same N.
Here the same step, after the same 100 adapted steps, is split by wall clock into the two density
calls of N / 2 (networks, prior, likelihood), building the proposals (``ensemble._propose``, wrapped
here to time it), the rest of the half updates (acceptance, merging the states) and the trace
collector, in rounds that alternate with the bare forward pass of N and with the forward pass as
two calls of N / 2. Prints one Markdown row per world: ms per step, and each part over the forward.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from floor import WARMUP, adapted  # noqa: E402

import pplevelset as pls  # noqa: E402
from pplevelset.infer import ensemble  # noqa: E402
from pplevelset.infer.mcmc import TraceCollector  # noqa: E402
from pplevelset.model import ParticleDensity, level_set_model  # noqa: E402

NUM, BLOCK, ROUNDS = 1000, 10, 15


class Stopwatch:
    """Seconds spent inside wrapped callables, by name."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


def parts(world_name: str) -> dict[str, float]:
    world = pls.load_world(world_name)
    target = pls.parse_target("ambiguous", world.classes)
    density = ParticleDensity(level_set_model, (world, target, 10.0, NUM))
    generator = torch.Generator().manual_seed(0)
    algorithm = ensemble.algorithm()
    watch = Stopwatch()
    scored = watch.wrap("density", density)
    propose = ensemble._propose
    collector = TraceCollector(warmup=0, steps=BLOCK * (ROUNDS + 1), thin=1, move_names=algorithm.move_names)
    rounds: dict[str, list[float]] = {}
    z_unconstrained, state = adapted(algorithm, density, generator, WARMUP)
    with torch.no_grad():
        z = density.constrain(z_unconstrained)["z"]
        half = NUM // 2
        iteration = 0
        ensemble._propose = watch.wrap("propose", propose)
        try:
            for round_ in range(ROUNDS + 1):  # the first round warms up and is dropped
                start = time.perf_counter()
                for _ in range(BLOCK):
                    world.classify(world.decode(z))
                forward = time.perf_counter() - start
                start = time.perf_counter()
                for _ in range(BLOCK):
                    world.classify(world.decode(z[:half]))
                    world.classify(world.decode(z[half:]))
                halves = time.perf_counter() - start
                watch.seconds = {}
                start = time.perf_counter()
                for _ in range(BLOCK):
                    state, info = algorithm.step(generator, state, scored)
                    shown, shown_info = algorithm.shown(state, info)
                    record_start = time.perf_counter()
                    collector.record(iteration, density, shown, shown_info, algorithm.step_size(shown))
                    watch.seconds["collector"] = (
                        watch.seconds.get("collector", 0.0) + time.perf_counter() - record_start
                    )
                    iteration += 1
                step = time.perf_counter() - start
                if round_ == 0:
                    continue
                measured = {"forward": forward, "forward as two halves": halves, "step": step, **watch.seconds}
                measured["rest"] = step - sum(watch.seconds.values())
                for name, seconds in measured.items():
                    rounds.setdefault(name, []).append(1e3 * seconds / BLOCK)
        finally:
            ensemble._propose = propose
    return {name: statistics.median(values) for name, values in rounds.items()}


def main() -> int:
    pls.keep_freed_memory()
    names = ("forward as two halves", "step", "density", "propose", "rest", "collector")
    print(f"N = {NUM:,}, median over {ROUNDS} rounds of {BLOCK} steps; ms per step, and over the forward pass of N")
    print()
    print("| world | forward | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for world_name in ("mnist-vae", "houses"):
        found = parts(world_name)
        forward = found["forward"]
        cells = [f"{found[name]:.2f} ({found[name] / forward:.3f}x)" for name in names]
        print(f"| {world_name} | {forward:.2f} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
