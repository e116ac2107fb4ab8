"""What every kernel returns: one structure, turned into a posterior in one place (the driver)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Draws:
    """A kernel's output, on the CPU.

    ``traces`` hold ``(chains, draws, ...)`` arrays: ``z``, ``prediction_probs``, ``lp``,
    ``log_likelihood``, ``acceptance_rate``, ``step_size`` (and any kernel-specific statistic);
    ``warmup_traces`` the statistics during warm-up. ``chains`` says what ArviZ's ``chain`` holds:
    ``"particles"`` (MCMC kernels: one chain per particle) or ``"populations"`` (SMC: independent
    populations, their final particles as draws). ``stages`` holds SMC's per-temperature
    statistics, ``(populations, temperatures)``.
    """

    z: torch.Tensor  # final states, constrained, (N, d)
    predictions: torch.Tensor  # classifier output at the final states, (N, L)
    traces: dict[str, torch.Tensor]
    chains: str = "particles"
    warmup_traces: dict[str, torch.Tensor] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, torch.Tensor] | None = None
