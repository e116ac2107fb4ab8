"""The MCMC loop every batched kernel shares: warm-up with adaptation, recorded steps, one collector.

A kernel is an :class:`Algorithm`: pure ``init``/``step`` functions over its own NamedTuple state
(which carries ``z_unconstrained``, ``log_prior``, ``log_likelihood`` and ``predictions``), an
``Adaptation`` pair applied during warm-up only (so the recorded steps form a valid Markov chain),
and a function that reads the per-particle proposal scale to record as ``step_size``.
:func:`run_mcmc` drives any of them and :class:`TraceCollector` records every one the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, NamedTuple

import torch
from tqdm.auto import tqdm

from pplevelset.infer.draws import Draws
from pplevelset.model import ParticleDensity
from pplevelset.rng import global_rng_from


class Adaptation(NamedTuple):
    """``init(state) -> adapt_state`` and ``update(adapt_state, state, info) -> (adapt_state, state)``,
    which returns the state with its tuned parameters (step sizes, move scales) replaced."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


class Algorithm(NamedTuple):
    """What :func:`run_mcmc` needs of a batched kernel."""

    init: Callable[[torch.Tensor, ParticleDensity], Any]  # (z_unconstrained, density) -> state
    step: Callable[[torch.Generator, Any, ParticleDensity], tuple[Any, Any]]  # -> (state, info)
    adaptation: Adaptation
    step_size: Callable[[Any], torch.Tensor]  # state -> (N,) proposal scale, recorded as step_size
    move_names: tuple[str, ...] = ()  # kernels whose info has a per-particle ``move`` index


def run_mcmc(algorithm: Algorithm, density: ParticleDensity, generator: torch.Generator,
             z_unconstrained: torch.Tensor, warmup: int, steps: int, thin: int = 1,
             progress: bool = True) -> Draws:
    """``warmup`` adapted steps, then ``steps`` recorded ones (every ``thin``-th kept) from ``z_unconstrained``."""
    collector = TraceCollector(warmup, steps, thin, algorithm.move_names)
    with torch.no_grad():
        state = algorithm.init(z_unconstrained, density)
        adapt_state = algorithm.adaptation.init(state)
        for iteration in collector.iterations(progress):
            state, info = algorithm.step(generator, state, density)
            if iteration < warmup:
                adapt_state, state = algorithm.adaptation.update(adapt_state, state, info)
            collector.record(iteration, density, state, info, algorithm.step_size(state))
    return collector.draws(density, state)


def initial_positions(density: ParticleDensity, generator: torch.Generator, max_tries: int = 100) -> torch.Tensor:
    """Unconstrained prior draws, each particle redrawn while its log density is not finite.

    Prior sampling uses torch's global RNG (distributions take no generator), so it runs inside
    :func:`~pplevelset.rng.global_rng_from`: reproducible, and the caller's RNG is left untouched.
    """
    with global_rng_from(generator):
        positions = density.sample_prior()
        for _ in range(max_tries):
            scored = density(positions)
            bad = ~torch.isfinite(scored.log_prior + scored.log_likelihood)
            if not bad.any():
                return positions
            positions = torch.where(bad.unsqueeze(-1), density.sample_prior(), positions)
    raise RuntimeError(f"{int(bad.sum())} particles still have a non-finite log density after "
                       f"{max_tries} prior redraws; check the world's decoder and classifier for NaN")


class TraceCollector:
    """Preallocated traces on the sampling device, filled one step at a time, moved once at the end.

    Traces are laid out particles first (ArviZ's chain, draw order) from the start and filled one
    column per step, so handing them over needs no transposed copy: peak memory is the traces
    once, not twice. Counters stay on the device (no host sync per step).
    """

    STATISTICS = ("lp", "log_likelihood", "acceptance_rate", "step_size")

    def __init__(self, warmup: int, steps: int, thin: int = 1, move_names: tuple[str, ...] = ()):
        self.warmup, self.steps, self.thin = warmup, steps, thin
        self.num_kept = len(range(0, steps, thin))
        self.move_names = move_names
        self.traces: dict[str, torch.Tensor] = {}
        self.warmup_traces: dict[str, torch.Tensor] = {}
        self.num_invalid: torch.Tensor | int = 0
        self.move_accepted: torch.Tensor | None = None  # per move type, sampling steps only
        self.move_counts: torch.Tensor | None = None
        self._last: tuple | None = None

    def iterations(self, progress: bool = True) -> Iterator[int]:
        bar = tqdm(range(self.warmup + self.steps), desc="warm-up", disable=not progress,
                   dynamic_ncols=True, mininterval=0.5)
        for iteration in bar:
            if iteration == self.warmup:
                bar.set_description("sampling")
            yield iteration
            if self._last is not None and iteration % 25 == 0:
                accept, log_likelihood = self._last
                bar.set_postfix(accept=f"{float(accept):.2f}", loglik=f"{float(log_likelihood.median()):.2f}",
                                refresh=False)

    def record(self, iteration: int, density: ParticleDensity, state, info, step_size: torch.Tensor) -> None:
        self._last = (info.acceptance_prob.mean(), state.log_likelihood)
        self.num_invalid = self.num_invalid + info.is_invalid.sum()
        if iteration < self.warmup:
            store, row, length = self.warmup_traces, iteration, self.warmup
        else:
            offset = iteration - self.warmup
            self._count_moves(info)
            if offset % self.thin:
                return
            store, row, length = self.traces, offset // self.thin, self.num_kept
        z = density.constrain(state.z_unconstrained)["z"] if store is self.traces else None
        if not store:
            self._allocate(store, length, state, z)
        if z is not None:
            store["z"][:, row] = z
            store["prediction_probs"][:, row] = state.predictions
        store["lp"][:, row] = state.log_prior + state.log_likelihood
        store["log_likelihood"][:, row] = state.log_likelihood
        store["acceptance_rate"][:, row] = info.acceptance_prob
        store["step_size"][:, row] = step_size

    def _allocate(self, store: dict, length: int, state, z: torch.Tensor | None) -> None:
        reference = state.log_likelihood
        n = reference.shape[0]
        new = lambda *shape: torch.empty((n, length) + shape, device=reference.device, dtype=reference.dtype)
        if z is not None:
            store["z"] = new(*z.shape[1:])
            store["prediction_probs"] = new(state.predictions.shape[-1])
        for name in self.STATISTICS:
            store[name] = new()

    def _count_moves(self, info) -> None:
        if not self.move_names:
            return
        size = len(self.move_names)
        accepted = torch.zeros(size, device=info.move.device).index_add_(0, info.move, info.acceptance_prob.float())
        counts = torch.bincount(info.move, minlength=size).float()
        self.move_accepted = accepted if self.move_accepted is None else self.move_accepted + accepted
        self.move_counts = counts if self.move_counts is None else self.move_counts + counts

    def draws(self, density: ParticleDensity, state) -> Draws:
        """The finished traces on the CPU, with the final states and counters."""
        stats: dict[str, Any] = {"num_invalid_proposals": int(self.num_invalid)}
        if self.move_counts is not None:
            rates = (self.move_accepted / self.move_counts.clamp_min(1)).tolist()
            stats["move_acceptance"] = {name: (rate if count else None) for name, rate, count
                                        in zip(self.move_names, rates, self.move_counts.tolist())}
        to_cpu = lambda store: {name: value.cpu() for name, value in store.items()}
        return Draws(density.constrain(state.z_unconstrained)["z"].cpu(), state.predictions.cpu(),
                     to_cpu(self.traces), "particles", to_cpu(self.warmup_traces) or None, stats)
