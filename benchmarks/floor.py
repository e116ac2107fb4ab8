"""The floor: a step of N particles costs at least one batched decode + classify of N latents.

For each N we time, interleaved, (a) the bare forward pass ``world.classify(world.decode(z))``
under ``torch.no_grad`` and (b) one iteration of the driver's loop for a batched kernel (``rwmh``
or ``ensemble``): its ``step`` (propose, score through :class:`ParticleDensity`, accept) plus the
:class:`TraceCollector` writing the traces, exactly as ``pls.sample`` runs it. The ratio (b)/(a)
is what sampling costs beyond the networks. The ensemble kernel scores its two halves in two
calls of N/2 particles each, and draws one move type per half update, so its steps differ in cost:
each timed call is a block of ``BLOCK`` steps (or forward passes), and the median over rounds of
the blocks' mean per step is what is compared. With ``warmup``, that many adapted steps first tune
the kernel as a run's warm-up does, so the steps timed use the scales and move weights a run
samples with (the ensemble's KDE/Student-t split depends on the world; rwmh's cost does not).
"""

from __future__ import annotations

import torch
from timing import interleaved

from pplevelset.infer import ensemble, replica, rwmh
from pplevelset.infer.mcmc import TraceCollector, initial_positions
from pplevelset.model import ParticleDensity, level_set_model

ALGORITHMS = {
    "rwmh": rwmh.algorithm,
    "ensemble": ensemble.algorithm,
    "ensemble, 2 rungs": lambda: replica.algorithm(2),  # N particles in all, N / 2 per rung
    "ensemble, 4 rungs": lambda: replica.algorithm(4),
}
BLOCK = 10  # steps per timed call: their mean covers the mix of move types
WARMUP = 100  # adapted steps before timing the ensemble (bench-population)


def adapted(algorithm, density, generator, warmup: int):
    """The initial positions and the kernel's state after ``warmup`` adapted steps from them, as a
    run's warm-up leaves it (the step sizes and move weights it samples with)."""
    with torch.no_grad():
        z_unconstrained = initial_positions(density, generator)
        state = algorithm.init(z_unconstrained, density)
        adapt = algorithm.adaptation.init(state)
        for _ in range(warmup):
            state, info = algorithm.step(generator, state, density)
            adapt, state = algorithm.adaptation.update(adapt, state, info)
    return z_unconstrained, state


def measure_floor(
    world,
    target,
    alpha: float,
    num_particles: int,
    repeats: int,
    device,
    kernel: str = "rwmh",
    block: int = BLOCK,
    warmup: int = 0,
) -> dict:
    density = ParticleDensity(level_set_model, (world, target, alpha, num_particles))
    generator = torch.Generator(device=target.device).manual_seed(0)
    algorithm = ALGORITHMS[kernel]()
    collector = TraceCollector(warmup=0, steps=block * (repeats + 4), thin=1, move_names=algorithm.move_names)
    z_unconstrained, state = adapted(algorithm, density, generator, warmup)
    z = density.constrain(z_unconstrained)["z"]
    holder = {"state": state, "iteration": 0}

    def forward():
        with torch.no_grad():
            for _ in range(block):
                world.classify(world.decode(z))

    def driver_steps():
        with torch.no_grad():
            for _ in range(block):
                state, info = algorithm.step(generator, holder["state"], density)
                shown, shown_info = algorithm.shown(state, info)
                collector.record(holder["iteration"], density, shown, shown_info, algorithm.step_size(shown))
                holder["state"], holder["iteration"] = state, holder["iteration"] + 1

    times = interleaved({"forward": forward, "step": driver_steps}, repeats, device)
    return {
        "forward_ms": 1e3 * times["forward"] / block,
        "step_ms": 1e3 * times["step"] / block,
        "ratio": times["step"] / times["forward"],
    }
