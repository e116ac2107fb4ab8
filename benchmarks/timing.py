"""Side-by-side timing: interleave the contenders round by round and keep each one's median.

On a shared machine the load drifts; interleaving exposes every contender to the same drift, so
their ratio is meaningful even when the absolute times are not.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(
    contenders: dict[str, Callable[[], object]], repeats: int, device="cpu", warm: int = 1
) -> dict[str, float]:
    """Median seconds per call of each contender, called in turn ``repeats`` times after ``warm`` calls."""
    for function in contenders.values():
        for _ in range(warm):
            function()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            sync(device)
            start = time.perf_counter()
            function()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]
