"""The MCMC loop every batched kernel shares: warm-up with adaptation, recorded steps, one collector.

A kernel is an :class:`Algorithm`: pure ``init``/``step`` functions over its own NamedTuple state
(which carries ``z_unconstrained``, ``log_prior``, ``log_likelihood`` and ``predictions``), an
``Adaptation`` pair applied during warm-up only (so the recorded steps form a valid Markov chain),
and a function that reads the per-particle proposal scale to record as ``step_size``.
:func:`run_mcmc` drives any of them and :class:`TraceCollector` records every one the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from pplevelset.errors import UserInputError
from pplevelset.infer.draws import Draws
from pplevelset.infer.resume import Checkpoints
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
    # (state, info) -> the recorded particles' (state, info): all of them (None), or the beta = 1
    # rung of a replica-exchange ladder, whose hotter rungs only help it mix
    recorded: Callable[[Any, Any], tuple[Any, Any]] | None = None

    def shown(self, state, info=None) -> tuple[Any, Any]:
        """The (state, info) of the particles the traces record."""
        return (state, info) if self.recorded is None else self.recorded(state, info)


def run_mcmc(
    algorithm: Algorithm,
    density: ParticleDensity,
    generator: torch.Generator,
    z_unconstrained: torch.Tensor,
    warmup: int,
    steps: int,
    thin: int = 1,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
) -> Draws:
    """``warmup`` adapted steps, then ``steps`` recorded ones (every ``thin``-th kept) from ``z_unconstrained``.

    With ``checkpoints``, the loop saves its state (kernel state, adaptation state, generator
    state, traces so far) at their cadence, continues from ``checkpoints.resume`` if given, and on
    a stop request saves and raises :class:`~pplevelset.infer.resume.RunInterrupted` at the next
    step boundary. Saving reads the generator's state without drawing from it, so a checkpointed
    run and a resumed one give the same numbers as a run that never stopped.
    """
    collector = TraceCollector(warmup, steps, thin, algorithm.move_names)
    total = warmup + steps
    with torch.no_grad():
        state = algorithm.init(z_unconstrained, density)
        adapt_state = algorithm.adaptation.init(state)
        start = 0
        if checkpoints is not None and checkpoints.resume is not None:
            start, state, adapt_state = _restore(checkpoints.resume, generator, state, adapt_state, collector)

        def snapshot(completed: int) -> dict:
            return {
                "completed": completed,
                "total": total,
                "state": _to_plain(state),
                "adapt_state": _to_plain(adapt_state),
                "generator": generator.get_state(),
                "collector": collector.state_dict(completed),
            }

        for iteration in collector.iterations(progress, start):
            state, info = algorithm.step(generator, state, density)
            if iteration < warmup:
                adapt_state, state = algorithm.adaptation.update(adapt_state, state, info)
            shown, shown_info = algorithm.shown(state, info)
            collector.record(iteration, density, shown, shown_info, algorithm.step_size(shown))
            if checkpoints is not None:
                if checkpoints.should_stop():
                    checkpoints.save(snapshot(iteration + 1))
                    raise checkpoints.interrupted(iteration + 1, total)
                if iteration + 1 < total and checkpoints.due(iteration + 1):
                    checkpoints.save(snapshot(iteration + 1))
    return collector.draws(density, algorithm.shown(state)[0])


def _to_plain(value: Any) -> Any:
    """A kernel's NamedTuple state as a list of tensors and numbers (what ``weights_only`` loads)."""
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    if torch.is_tensor(value):
        return value.detach().cpu().clone()
    return value


def _from_plain(template: Any, value: Any) -> Any:
    """Rebuild ``template``'s NamedTuple types (and devices) around the saved ``value``."""
    if isinstance(template, tuple):
        if not isinstance(value, list) or len(value) != len(template):
            raise UserInputError("the checkpoint does not match this kernel's state")
        items = [_from_plain(t, v) for t, v in zip(template, value)]
        return type(template)(*items) if hasattr(template, "_fields") else tuple(items)
    if torch.is_tensor(template):
        if not torch.is_tensor(value) or value.shape != template.shape or value.dtype != template.dtype:
            raise UserInputError("the checkpoint does not match this kernel's state (shape or dtype differs)")
        return value.to(template.device)
    return value


def _restore(payload: dict, generator: torch.Generator, state, adapt_state, collector: TraceCollector):
    device = generator.device
    start = int(payload["completed"])
    state = _from_plain(state, payload["state"])
    adapt_state = _from_plain(adapt_state, payload["adapt_state"])
    generator.set_state(payload["generator"])
    collector.load_state_dict(payload["collector"], device)
    return start, state, adapt_state


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
    raise RuntimeError(
        f"{int(bad.sum())} particles still have a non-finite log density after "
        f"{max_tries} prior redraws; check the world's decoder and classifier for NaN"
    )


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
        self.swap_accepted: torch.Tensor | None = None  # per neighbouring rung pair, sampling steps only
        self.betas: torch.Tensor | None = None  # the replica-exchange ladder (frozen after warm-up)
        self._last: tuple | None = None

    def iterations(self, progress: bool = True, start: int = 0) -> Iterator[int]:
        bar = tqdm(
            range(start, self.warmup + self.steps),
            desc="warm-up" if start < self.warmup else "sampling",
            disable=not progress,
            dynamic_ncols=True,
            mininterval=0.5,
            initial=start,
            total=self.warmup + self.steps,
        )
        for iteration in bar:
            if iteration == self.warmup:
                bar.set_description("sampling")
            yield iteration
            if self._last is not None and iteration % 25 == 0:
                accept, log_likelihood = self._last
                bar.set_postfix(
                    accept=f"{float(accept):.2f}", loglik=f"{float(log_likelihood.median()):.2f}", refresh=False
                )

    def record(self, iteration: int, density: ParticleDensity, state, info, step_size: torch.Tensor) -> None:
        self._last = (info.acceptance_prob.mean(), state.log_likelihood)
        self.num_invalid = self.num_invalid + info.is_invalid.sum()
        if iteration < self.warmup:
            store, row, length = self.warmup_traces, iteration, self.warmup
        else:
            offset = iteration - self.warmup
            self._count_moves(info)
            self._count_swaps(info)
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

    def state_dict(self, completed: int) -> dict:
        """What :meth:`load_state_dict` needs to continue after ``completed`` steps: the filled
        columns of the traces (on the CPU) and the counters."""
        rows = len(range(0, max(0, completed - self.warmup), self.thin))
        plain = lambda value: value.detach().cpu().clone() if torch.is_tensor(value) else value
        return {
            "warmup_traces": {
                name: value[:, : min(completed, self.warmup)].cpu().clone()
                for name, value in self.warmup_traces.items()
            },
            "traces": {name: value[:, :rows].cpu().clone() for name, value in self.traces.items()},
            "num_invalid": plain(self.num_invalid),
            "move_accepted": plain(self.move_accepted),
            "move_counts": plain(self.move_counts),
            "swap_accepted": plain(self.swap_accepted),
            "betas": plain(self.betas),
        }

    def load_state_dict(self, saved: dict, device: torch.device) -> None:
        """Refill the traces and counters from :meth:`state_dict`."""
        for store, name, length in (
            (self.warmup_traces, "warmup_traces", self.warmup),
            (self.traces, "traces", self.num_kept),
        ):
            for key, filled in saved[name].items():
                full = torch.empty(
                    (filled.shape[0], length) + tuple(filled.shape[2:]), dtype=filled.dtype, device=device
                )
                full[:, : filled.shape[1]] = filled.to(device)
                store[key] = full
        to_device = lambda value: value.to(device) if torch.is_tensor(value) else value
        self.num_invalid = to_device(saved["num_invalid"])
        self.move_accepted, self.move_counts = to_device(saved["move_accepted"]), to_device(saved["move_counts"])
        self.swap_accepted = to_device(saved.get("swap_accepted"))
        self.betas = to_device(saved.get("betas"))

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

    def _count_swaps(self, info) -> None:
        swap_prob = getattr(info, "swap_prob", None)
        if swap_prob is not None:
            self.betas = info.betas
            self.swap_accepted = swap_prob if self.swap_accepted is None else self.swap_accepted + swap_prob

    def draws(self, density: ParticleDensity, state) -> Draws:
        """The finished traces on the CPU, with the final states and counters."""
        stats: dict[str, Any] = {"num_invalid_proposals": int(self.num_invalid)}
        if self.move_counts is not None and self.move_accepted is not None:
            rates = (self.move_accepted / self.move_counts.clamp_min(1)).tolist()
            stats["move_acceptance"] = {
                name: (rate if count else None)
                for name, rate, count in zip(self.move_names, rates, self.move_counts.tolist())
            }
            weights = getattr(state, "weights", None)  # the ensemble's, as frozen after warm-up
            if weights is not None:
                weights = (weights / weights.sum()).tolist()
                stats["move_weights"] = dict(zip(self.move_names, weights))
        if self.swap_accepted is not None:
            stats["swap_acceptance"] = (self.swap_accepted / max(1, self.steps)).tolist()
            stats["betas"] = self.betas.tolist() if self.betas is not None else None
        to_cpu = lambda store: {name: value.cpu() for name, value in store.items()}
        return Draws(
            density.constrain(state.z_unconstrained)["z"].cpu(),
            state.predictions.cpu(),
            to_cpu(self.traces),
            "particles",
            to_cpu(self.warmup_traces) or None,
            stats,
        )
