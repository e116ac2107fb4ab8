"""The driver: validate settings, run warm-up + T steps with a progress bar, record traces."""

from __future__ import annotations

import math
import time
from typing import Sequence

import torch
from tqdm.auto import tqdm

from pplevelset.errors import UserInputError
from pplevelset.infer import rwmh
from pplevelset.model import ParticleDensity, level_set_model
from pplevelset.posterior import LevelSetPosterior
from pplevelset.targets import parse_target
from pplevelset.worlds.base import World
from pplevelset.worlds import load_world

KERNELS = ("rwmh", "nuts", "smc")


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a one-line error saying why not."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserInputError(f"unknown device {device!r}; use cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but CUDA is not available on this machine; use --device cpu")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise UserInputError(f"unsupported device {device!r}; use cpu or cuda")
    return resolved


def validate(alpha: float, num_particles: int, warmup: int, steps: int, thin: int, kernel: str) -> None:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise UserInputError(f"alpha must be a positive number, got {alpha}")
    if num_particles < 1:
        raise UserInputError(f"the number of particles must be at least 1, got {num_particles}")
    if warmup < 0:
        raise UserInputError(f"warmup must be >= 0, got {warmup}")
    if steps < 1:
        raise UserInputError(f"steps must be at least 1, got {steps}")
    if thin < 1:
        raise UserInputError(f"thin must be at least 1, got {thin}")
    if kernel not in KERNELS:
        raise UserInputError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


def sample(world: World | str, target: str | Sequence[float] | torch.Tensor, alpha: float = 10.0,
           num_particles: int = 1000, warmup: int = 500, steps: int = 500, kernel: str = "rwmh",
           seed: int = 0, device: str = "cpu", thin: int = 1, step_size: float | None = None,
           progress: bool = True, populations: int = 4, moves: int = 10,
           target_ess: float = 0.5) -> LevelSetPosterior:
    """Sample the level set ``{z : f(g(z)) ~ target}`` of ``world``.

    :param world: a :class:`World` or a registered name (``"houses"``).
    :param target: ``"ambiguous"``, ``"house=0.999"``, ``"1=0.46,7=0.46"`` or a probability vector.
    :param alpha: Dirichlet concentration: larger is stricter about matching the target.
    :param num_particles: N independent chains, advanced together as one batch.
    :param warmup: steps of step-size adaptation, discarded.
    :param steps: T recorded steps after warm-up (every ``thin``-th is kept).
    :param kernel: ``"rwmh"`` (batched random-walk MH, no gradients), ``"nuts"``, or ``"smc"``
        (tempered SMC: right proportions across modes, and ``log_evidence``; ``warmup`` and
        ``steps`` do not apply, ``populations``, ``moves`` and ``target_ess`` do).
    :param populations: SMC only: independent populations splitting the particles (ArviZ chains).
    :param moves: SMC only: MH moves per temperature.
    :param target_ess: SMC only: ESS fraction each temperature step keeps.

    Example::

        post = pls.sample("toy", "a=0.8", alpha=20, num_particles=500, warmup=200, steps=200)
        post.delta(), post.resample(16).z
    """
    validate(alpha, num_particles, warmup, steps, thin, kernel)
    if kernel == "smc":
        validate_smc(num_particles, populations, moves, target_ess)
    device = resolve_device(device)
    world = load_world(world, device=device)
    target_vector = parse_target(target, world.classes).to(device)
    spec = target if isinstance(target, str) else ",".join(f"{float(v):g}" for v in target_vector)
    settings = {"target": spec, "alpha": float(alpha), "kernel": kernel, "num_particles": num_particles,
                "warmup": warmup, "steps": steps, "thin": thin, "seed": seed, "device": str(device)}
    start = time.perf_counter()
    if kernel == "smc":
        settings.update(populations=populations, moves=moves, target_ess=target_ess, warmup=None, steps=None)
        return _run_smc(world, target_vector, float(alpha), num_particles, seed, settings, progress, start)
    recorder = _Recorder(warmup, steps, thin, progress=progress, kernel=kernel)
    if kernel == "nuts":
        from pplevelset.infer.nuts import run_nuts

        run_nuts(world, target_vector, float(alpha), num_particles, warmup, steps, seed,
                 recorder.record_nuts, progress=progress)
    else:
        _run_rwmh(world, target_vector, float(alpha), num_particles, warmup, steps, seed, step_size, recorder)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    return recorder.posterior(world, target_vector, settings, elapsed)


def validate_smc(num_particles: int, populations: int, moves: int, target_ess: float) -> None:
    if populations < 1 or num_particles % populations or num_particles // populations < 2:
        raise UserInputError(f"SMC splits {num_particles} particles into {populations} populations: "
                             "the particles must be a multiple of the populations, at least 2 each")
    if moves < 1:
        raise UserInputError(f"SMC needs at least 1 MH move per temperature, got {moves}")
    if not 0 < target_ess < 1:
        raise UserInputError(f"the SMC target ESS fraction must be in (0, 1), got {target_ess}")


def _run_smc(world, target, alpha, num_particles, seed, settings, progress, start) -> LevelSetPosterior:
    from pplevelset.infer.smc import run_smc

    density = ParticleDensity(level_set_model, (world, target, alpha, num_particles))
    generator = torch.Generator(device=target.device).manual_seed(seed)
    populations = settings["populations"]
    with torch.no_grad():
        result = run_smc(density, generator, populations, moves=settings["moves"],
                         target_ess=settings["target_ess"], progress=progress)
    if target.device.type == "cuda":
        torch.cuda.synchronize(target.device)
    elapsed = time.perf_counter() - start
    state, per = result.state, num_particles // populations
    z = density.constrain(state.z_unconstrained)["z"]
    grouped = lambda value: value.reshape((populations, per) + value.shape[1:]).cpu()
    traces = {"z": grouped(z), "prediction_probs": grouped(state.predictions),
              "lp": grouped(state.log_prior + state.log_likelihood), "log_likelihood": grouped(state.log_likelihood),
              "acceptance_rate": grouped(result.info.acceptance_prob), "step_size": grouped(state.step_size)}
    log_evidence = result.log_evidence.cpu()
    stats = {"log_evidence": float(torch.logsumexp(log_evidence, 0) - math.log(populations)),
             "log_evidence_per_population": [float(v) for v in log_evidence],
             "num_temperatures": int(result.stages["beta"].shape[-1])}
    return LevelSetPosterior(world, target, settings, z, state.predictions, traces=traces, elapsed_s=elapsed,
                             stats=stats, stages={k: v.cpu() for k, v in result.stages.items()})


def _run_rwmh(world, target, alpha, num_particles, warmup, steps, seed, step_size, recorder) -> None:
    density = ParticleDensity(level_set_model, (world, target, alpha, num_particles))
    generator = torch.Generator(device=target.device).manual_seed(seed)
    with torch.no_grad():
        z = rwmh.initial_positions(density, generator)
        state = rwmh.init(z, density, step_size if step_size is not None else rwmh.default_step_size(z))
        for iteration in recorder.iterations():
            rate = rwmh.adapt_rate(iteration, warmup)
            state, info = rwmh.step(generator, state, density, adapt_rate=rate)
            recorder.record(iteration, density, state, info)


class _Recorder:
    """Preallocated traces on the sampling device, filled one step at a time, moved once at the end.

    Traces are laid out particles first (ArviZ's chain, draw order) from the start and filled one
    column per step, so handing them over needs no transposed copy: peak memory is the traces
    once, not twice.
    """

    def __init__(self, warmup: int, steps: int, thin: int, progress: bool, kernel: str):
        self.warmup, self.steps, self.thin = warmup, steps, thin
        self.num_kept = len(range(0, steps, thin))
        self.progress = progress and kernel != "nuts"  # Pyro's MCMC draws its own bar
        self.traces: dict[str, torch.Tensor] = {}
        self.warmup_traces: dict[str, torch.Tensor] = {}
        self.state = self.density = None
        self.num_invalid = 0  # a device tensor once sampling starts: no host sync per step
        self._nuts_step = 0

    def iterations(self):
        bar = tqdm(range(self.warmup + self.steps), desc="warm-up", disable=not self.progress,
                   dynamic_ncols=True, mininterval=0.5)
        for iteration in bar:
            if iteration == self.warmup:
                bar.set_description("sampling")
            yield iteration
            if self.state is not None and iteration % 25 == 0:
                bar.set_postfix(accept=f"{float(self._last_accept):.2f}",
                                loglik=f"{float(self.state.log_likelihood.median()):.2f}", refresh=False)

    def _allocate(self, store: dict, length: int, state: rwmh.RWState, z: torch.Tensor) -> None:
        n = z.shape[0]
        new = lambda *shape: torch.empty((n, length) + shape, device=z.device, dtype=z.dtype)
        if store is self.traces:
            store["z"] = new(*z.shape[1:])
            store["prediction_probs"] = new(state.predictions.shape[-1])
        for name in ("lp", "log_likelihood", "acceptance_rate", "step_size"):
            store[name] = new()

    def record(self, iteration: int, density: ParticleDensity, state: rwmh.RWState, info: rwmh.RWInfo) -> None:
        self.state, self.density, self._last_accept = state, density, info.acceptance_prob.mean()
        self.num_invalid = self.num_invalid + info.is_invalid.sum()
        if iteration < self.warmup:
            store, row = self.warmup_traces, iteration
            length = self.warmup
        else:
            offset = iteration - self.warmup
            if offset % self.thin:
                return
            store, row, length = self.traces, offset // self.thin, self.num_kept
        z = density.constrain(state.z_unconstrained)["z"]
        if not store:
            self._allocate(store, length, state, z)
        if store is self.traces:
            store["z"][:, row] = z
            store["prediction_probs"][:, row] = state.predictions
        store["lp"][:, row] = state.log_prior + state.log_likelihood
        store["log_likelihood"][:, row] = state.log_likelihood
        store["acceptance_rate"][:, row] = info.acceptance_prob
        store["step_size"][:, row] = state.step_size

    def record_nuts(self, stage, density, z_unconstrained, accept_prob, step_size) -> None:
        """Adapter for :func:`run_nuts`: score the state and record it like an MH step."""
        with torch.no_grad():
            scored = density(z_unconstrained)
        n = z_unconstrained.shape[0]
        full = lambda value: torch.full((n,), value, device=z_unconstrained.device, dtype=z_unconstrained.dtype)
        state = rwmh.RWState(z_unconstrained, scored.log_prior, scored.log_likelihood, scored.predictions,
                             full(step_size))
        info = rwmh.RWInfo(full(accept_prob), torch.ones(n, dtype=torch.bool, device=z_unconstrained.device),
                           torch.zeros(n, dtype=torch.bool, device=z_unconstrained.device))
        self.record(self._nuts_step, density, state, info)
        self._nuts_step += 1

    def posterior(self, world, target, settings, elapsed) -> LevelSetPosterior:
        as_chains = lambda store: {name: value.cpu() for name, value in store.items()}  # already (N, T, ...)
        final_z = self.density.constrain(self.state.z_unconstrained)["z"]
        return LevelSetPosterior(world, target, settings, final_z, self.state.predictions,
                                 traces=as_chains(self.traces), warmup_traces=as_chains(self.warmup_traces) or None,
                                 elapsed_s=elapsed, stats={"num_invalid_proposals": int(self.num_invalid)})
