"""What the experiments share: running the sampler, batched predictions, the Dirichlet likelihood,
run diagnostics as plain numbers, and the formatting of numbers in report text.

Every access to a :class:`~pplevelset.posterior.LevelSetPosterior` beyond its samples
(``z``, ``predictions()``, ``delta()``, ``resample``) goes through :func:`chain_diagnostics` here,
so a change in the posterior's interface is one edit.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import torch

from pplevelset.model import PROBS_EPS


def logger(experiment: str) -> Callable[[str], None]:
    """A function printing ``[reproduce <experiment>] message`` to stderr."""

    def log(message: str) -> None:
        print(f"[reproduce {experiment}] {message}", file=sys.stderr, flush=True)

    return log


def run_sampler(log: Callable[[str], None], world, spec: str, note: str, delta_format: str = ".3f", **settings):
    """``sample(world, spec, **settings)`` with a progress bar on a terminal, and one log line
    ``<world> <spec> <note>(<kernel>, <N> particles): <seconds> s, Delta <delta>``."""
    from pplevelset.infer import sample  # lazily: the experiments sit above the samplers

    started = time.perf_counter()
    post = sample(world, spec, progress=sys.stderr.isatty(), **settings)
    log(f"{world.name} {spec} {note}: {time.perf_counter() - started:.0f} s, Delta {post.delta():{delta_format}}")
    return post


def predict(world, z: torch.Tensor, batch_size: int = 1000, **decode_options) -> torch.Tensor:
    """Classifier probabilities (CPU) of latents ``z``, ``batch_size`` at a time; ``decode_options``
    go to ``world.decode`` (``circle=False`` renders a circles world without its circle)."""
    chunks = []
    with torch.no_grad():
        for start in range(0, z.shape[0], batch_size):
            images = world.decode(z[start : start + batch_size].to(world.device), **decode_options)
            chunks.append(world.classify(images).cpu())
    return torch.cat(chunks) if chunks else z.new_zeros(0, len(world.classes))


def log_dirichlet(target: torch.Tensor, probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``log Dirichlet(target; alpha probs)`` per row, with the model's floor on probabilities."""
    concentration = alpha * probs.double().clamp_min(PROBS_EPS)
    target = target.double().to(concentration.device)
    return (
        torch.lgamma(concentration.sum(-1))
        - torch.lgamma(concentration).sum(-1)
        + ((concentration - 1) * target.log()).sum(-1)
    )


def finite(value: float) -> float | None:
    """``value`` as a float, or ``None`` where it is not finite (strict JSON)."""
    return float(value) if math.isfinite(value) else None


def chain_diagnostics(post) -> dict:
    """R-hat and ESS (particles, or SMC populations, as chains), the burn-in verdict, acceptance,
    run time; with warm-up traces, the median log-likelihood at mid warm-up, end of warm-up and end."""
    convergence = post.convergence()
    verdict = post.burn_in()
    out = {
        "rhat_max": finite(convergence["rhat_max"]),
        "ess_bulk_min": finite(convergence["ess_bulk_min"]),
        "ess_tail_min": finite(convergence["ess_tail_min"]),
        "burn_in_ok": bool(verdict.ok),
        "burn_in_drift": finite(verdict.drift),
        "burn_in_z": finite(verdict.z_score),
        "burn_in": verdict.message,
        "acceptance_rate": float(post.traces["acceptance_rate"].mean()),
        "elapsed_s": round(post.elapsed_s, 1),
    }
    if post.warmup_traces:
        warm = post.warmup_traces["log_likelihood"]
        out["log_likelihood_median"] = {
            "warmup_half": float(warm[:, warm.shape[1] // 2].median()),
            "warmup_end": float(warm[:, -1].median()),
            "sampling_end": float(post.traces["log_likelihood"][:, -1].median()),
        }
    return out


def convergence_numbers(post) -> dict:
    """R-hat max and minimum bulk ESS only (SMC: populations as chains)."""
    convergence = post.convergence()
    return {"rhat_max": finite(convergence["rhat_max"]), "ess_bulk_min": finite(convergence["ess_bulk_min"])}


# -- numbers in text ------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 1, signed: bool = False) -> str:
    """``value`` as a percentage (``n/a`` for None or non-finite; never ``-0.0%``)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if round(100 * value, digits) == 0:
        value = 0.0
    return f"{100 * value:{'+' if signed else ''}.{digits}f}%"


def num(value: float | None, fmt: str = ".3f") -> str:
    """``value`` formatted with ``fmt`` (``n/a`` for None or non-finite)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)
