"""Run a network over a large batch in chunks, so its feature maps stay in the CPU's caches."""

from __future__ import annotations

from collections.abc import Callable

import torch

# Measured on two EPYC cores (benchmarks/, "chunk" experiment): the MNIST and houses networks cost
# 1.5-2x more per particle on one batch of 10,000 than on batches of a few hundred, whose feature
# maps fit in cache. 512 is at or near the best for both worlds from N = 1,000 up.
CHUNK = 512


def in_chunks(
    function: Callable[[torch.Tensor], torch.Tensor], batch: torch.Tensor, size: int | None = None
) -> torch.Tensor:
    """``function(batch)`` computed on consecutive slices of at most ``size`` rows along dim 0 and
    concatenated: the same result for any per-row function (no batch statistics), less memory.
    On a GPU the whole batch goes at once (its kernels want large batches)."""
    size = size or CHUNK
    if batch.shape[0] <= size or batch.device.type != "cpu":
        return function(batch)
    return torch.cat([function(part) for part in batch.split(size)])
