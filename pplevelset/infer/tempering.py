"""Likelihood tempering: the density ``p(z) p(target | z)^beta`` that SMC and replica moves target."""

from __future__ import annotations

import torch


def tempered(log_prior: torch.Tensor, log_likelihood: torch.Tensor, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``log_prior + beta * log_likelihood`` with ``0 * -inf = 0``, so beta = 0 is the prior exactly.

    ``beta`` is a number or a per-particle tensor (tempered SMC runs populations at different betas).
    """
    if not torch.is_tensor(beta):
        if beta == 1.0:
            return log_prior + log_likelihood
        if beta == 0.0:
            return log_prior
    return log_prior + torch.where(torch.as_tensor(beta) == 0, torch.zeros_like(log_likelihood), beta * log_likelihood)
