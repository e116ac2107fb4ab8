"""The floor: an MH step of N particles costs at least one batched decode + classify of N latents.

For each N we time, interleaved, (a) the bare forward pass ``world.classify(world.decode(z))``
under ``torch.no_grad`` and (b) one iteration of the driver's loop: ``rwmh.step`` (propose, score
through :class:`ParticleDensity`, accept) plus the :class:`_Recorder` writing the traces, exactly
as ``pls.sample`` runs it. The ratio (b)/(a) is what sampling costs beyond the networks.
"""

from __future__ import annotations

import torch

from pplevelset.infer import rwmh
from pplevelset.infer.run import _Recorder
from pplevelset.model import ParticleDensity, level_set_model
from timing import interleaved


def measure_floor(world, target, alpha: float, num_particles: int, repeats: int, device) -> dict:
    density = ParticleDensity(level_set_model, (world, target, alpha, num_particles))
    generator = torch.Generator(device=target.device).manual_seed(0)
    recorder = _Recorder(warmup=0, steps=repeats + 4, thin=1, progress=False, kernel="rwmh")
    with torch.no_grad():
        z_unconstrained = rwmh.initial_positions(density, generator)
        state = rwmh.init(z_unconstrained, density, rwmh.default_step_size(z_unconstrained))
    z = density.constrain(z_unconstrained)["z"]
    holder = {"state": state, "iteration": 0}

    def forward():
        with torch.no_grad():
            return world.classify(world.decode(z))

    def driver_step():
        with torch.no_grad():
            state, info = rwmh.step(generator, holder["state"], density)
            recorder.record(holder["iteration"], density, state, info)
        holder["state"], holder["iteration"] = state, holder["iteration"] + 1

    times = interleaved({"forward": forward, "step": driver_step}, repeats, device)
    return {"forward_ms": 1e3 * times["forward"], "step_ms": 1e3 * times["step"],
            "ratio": times["step"] / times["forward"]}
