"""Randomness: a seeded ``torch.Generator`` is the only source; code that needs torch's global RNG
(Pyro distributions take no generator) runs in :func:`global_rng_from`, which leaves the caller's
global state as it was."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

MAX_SEED = 2**63 - 1
_MT_WORDS = 624  # mt19937's state, stored as uint64 after 24 header bytes in torch's CPU generator state


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (0 .. 2**63 - 1), every bit of it counting.

    Seeds below 2**32 are ``manual_seed(seed)`` (the numbers of every earlier version). torch's
    CPU Mersenne Twister keeps only the low 32 bits of a seed, so 0 and 2**32 would give the same
    run: larger seeds fill its state with MT19937's ``init_by_array`` of the seed's two 32-bit halves
    (as NumPy's ``RandomState([lo, hi])`` does). CUDA's Philox takes all 64 bits as they are.
    """
    gen = torch.Generator(device=device).manual_seed(seed)
    if seed >= 2**32 and gen.device.type == "cpu":
        gen.set_state(_mt_state(gen.get_state(), seed))
    return gen


def _mt_state(state: torch.Tensor, seed: int) -> torch.Tensor:
    mt19937 = np.random.RandomState(np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32))
    key = np.asarray(mt19937.get_state(legacy=True)[1])  # type: ignore[index]  # a tuple when legacy
    raw = state.clone().numpy()
    raw[24 : 24 + 8 * _MT_WORDS] = key.astype("<u8").view(np.uint8)
    return torch.from_numpy(raw)


def seed_global(seed: int) -> None:
    """Seed torch's, Python's and NumPy's global generators as ``pyro.set_rng_seed`` does, for any
    seed in 0 .. 2**63 - 1 (NumPy's legacy seeding takes 32 bits: larger seeds use both halves)."""
    torch.default_generator.set_state(generator(seed).get_state())
    random.seed(seed)
    np.random.seed(seed if seed < 2**32 else np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32))


@contextlib.contextmanager
def global_rng_from(source: torch.Generator) -> Iterator[None]:
    """Seed torch's global RNG (CPU, and CUDA where ``source`` lives there) from ``source`` for the
    duration of the block, then restore the caller's global state."""
    device = source.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=source, device=device)))
        yield
