"""How well samples match a target prediction: Delta (paper Eq. 5), confidence, hits, diversity."""

from __future__ import annotations

import torch


def delta(target: torch.Tensor, predictions: torch.Tensor) -> float:
    """Average deviation ``1/(n|L|) sum_i sum_l |p_l - f(x_i)_l|`` (paper Eq. 5)."""
    return float((predictions - target.to(predictions)).abs().mean())


def total_variation(target: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Per-sample total variation distance ``0.5 sum_l |p_l - f(x_i)_l|``."""
    return 0.5 * (predictions - target.to(predictions)).abs().sum(-1)


def hits(target: torch.Tensor, predictions: torch.Tensor, eps: float = 0.1) -> int:
    """Number of samples whose prediction is within total variation ``eps`` of the target."""
    return int((total_variation(target, predictions) < eps).sum())


def confidence(target: torch.Tensor, predictions: torch.Tensor) -> dict[str, float]:
    """Mean, min and max predicted probability of the target's most likely class.

    When the target ties several classes (``ambiguous``, ``0.5,0.5``), each sample counts the
    probability of whichever tied class the classifier favours, so a 50/50 target reads as the
    classifier's top probability (always >= 0.5 for two classes).
    """
    top = target.max()
    tied = (target >= top - 1e-6).to(predictions.device)
    values = predictions.masked_fill(~tied, -1.0).max(-1).values
    return {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}


def distinct_samples(z: torch.Tensor) -> int:
    """Number of distinct latent vectors (rows) in ``z``."""
    return int(torch.unique(z.reshape(z.shape[0], -1), dim=0).shape[0])
