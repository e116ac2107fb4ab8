"""The explorer's sampling sizes, in one place for the command line, the page and notebooks."""

from __future__ import annotations

import dataclasses

REFINE_KERNELS = ("rwmh", "ensemble")  # batched over particles; NUTS and SMC answer too slowly for a slider


@dataclasses.dataclass(frozen=True)
class Settings:
    """How much sampling each answer gets. With the defaults, start-up (one sweep of 11 targets per
    pair) took 0.2 s on toy, 10 s on mnist-vae and 18 s on houses, and a Refine about 3 s (one torch
    thread on a busy two-core machine): quick enough to explore; raise them for answers you keep."""

    alpha: float = 10.0
    particles: int = 48  # per precomputed target
    refine_particles: int = 128
    warmup: int = 100
    steps: int = 25
    kernel: str = "rwmh"  # the sweep's kernel, and the refine kernel unless the page picks another
    seed: int = 0
    device: str = "cpu"
