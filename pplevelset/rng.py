"""Randomness: a seeded ``torch.Generator`` is the only source; code that needs torch's global RNG
(Pyro distributions take no generator) runs in :func:`global_rng_from`, which leaves the caller's
global state as it was."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(seed)


@contextlib.contextmanager
def global_rng_from(source: torch.Generator) -> Iterator[None]:
    """Seed torch's global RNG (CPU, and CUDA where ``source`` lives there) from ``source`` for the
    duration of the block, then restore the caller's global state."""
    device = source.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=source, device=device)))
        yield
