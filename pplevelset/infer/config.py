"""One run configuration: every setting of a run, typed, validated once, frozen.

The CLI and :func:`pplevelset.sample` both build a :class:`RunConfig` with :meth:`RunConfig.build`,
so a bad value gets the same one-line :class:`~pplevelset.errors.UserInputError` from both, before
any sampling starts. Kernel-specific settings sit in their own small frozen records
(:class:`SMCOptions`), which the kernel that needs them reads and the others ignore.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from pplevelset.errors import UserInputError
from pplevelset.model import DEFAULT_SIGMA, LIKELIHOODS, PROBS_EPS, prediction_distribution
from pplevelset.rng import MAX_SEED
from pplevelset.targets import parse_target
from pplevelset.worlds import load_world
from pplevelset.worlds.base import World, check_world

KERNELS = ("rwmh", "ensemble", "nuts", "smc")
DEFAULT_KERNEL = "rwmh"  # the one place the library's default kernel is named (sweeps read it)
MCMC_KERNELS = ("rwmh", "ensemble", "nuts")  # the kernels with warm-up + recorded steps
# where the chains start: prior draws, or the particles of a quick tempered SMC run (batched kernels)
STARTS = ("prior", "smc")
STARTING_KERNELS = ("rwmh", "ensemble")


@dataclass(frozen=True)
class SMCOptions:
    """Tempered SMC: ``populations`` independent populations (ArviZ chains), ``moves`` MH moves per
    temperature, and the ESS fraction ``target_ess`` each temperature step keeps."""

    populations: int = 4
    moves: int = 10
    target_ess: float = 0.5

    def validate(self, num_particles: int) -> None:
        check_count(self.populations, "populations", 1)
        if self.populations < 1 or num_particles % self.populations or num_particles // self.populations < 2:
            raise UserInputError(
                f"SMC splits {num_particles} particles into {self.populations} populations: "
                "the particles must be a multiple of the populations, at least 2 each"
            )
        self.validate_tempering()

    def validate_tempering(self) -> None:
        """What one tempering run needs (the SMC kernel's, or the SMC start of an MCMC kernel's)."""
        check_count(self.moves, "the number of SMC moves per temperature", 1)
        if not (isinstance(self.target_ess, (int, float)) and 0 < self.target_ess < 1):
            raise UserInputError(f"the SMC target ESS fraction must be in (0, 1), got {self.target_ess}")


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, resolved: the world built on its device, the target as a vector."""

    world: World
    target: torch.Tensor  # (L,) float32 on the world's device
    target_spec: str  # as the user wrote it, or the vector written out
    alpha: float = 10.0
    kernel: str = DEFAULT_KERNEL
    num_particles: int = 1000
    warmup: int = 500
    steps: int = 500
    thin: int = 1
    seed: int = 0
    device: torch.device = torch.device("cpu")
    step_size: float | None = None
    progress: bool = True
    smc: SMCOptions = field(default_factory=SMCOptions)
    likelihood: str = "dirichlet"  # or "normal": Normal(f_i(x), sigma) per class (Bayes-TrEx's)
    sigma: float = DEFAULT_SIGMA  # the Normal likelihood's standard deviation
    rungs: int = 1  # ensemble only: temperature rungs of replica exchange (1: none); rung beta = 1 is recorded
    start: str = "prior"  # rwmh and ensemble: "smc" starts the chains at a tempered SMC run's particles (smc's moves)

    @property
    def replicas(self) -> int:
        """Particles the density scores per recorded particle: the rungs of a tempered ensemble."""
        return self.rungs if self.kernel == "ensemble" else 1

    @classmethod
    def build(
        cls,
        world: World | str,
        target: str | Sequence[float] | torch.Tensor,
        *,
        alpha: float = 10.0,
        kernel: str = DEFAULT_KERNEL,
        num_particles: int = 1000,
        warmup: int = 500,
        steps: int = 500,
        thin: int = 1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        step_size: float | None = None,
        progress: bool = True,
        smc: SMCOptions | None = None,
        likelihood: str = "dirichlet",
        sigma: float = DEFAULT_SIGMA,
        rungs: int = 1,
        start: str = "prior",
    ) -> RunConfig:
        """Validate every setting (one-line :class:`UserInputError` for the first bad one), then load
        the world on ``device`` and parse the target against its classes."""
        if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and alpha > 0):
            raise UserInputError(f"alpha must be a positive number, got {alpha}")
        if kernel not in KERNELS:
            raise UserInputError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
        check_likelihood(likelihood, sigma)
        check_count(
            num_particles,
            "the number of particles",
            2,
            "(R-hat, ESS and the burn-in check compare particles with each other)",
        )
        check_count(warmup, "warmup", 0)
        check_count(steps, "steps", 1)
        check_count(thin, "thin", 1)
        check_count(seed, "seed", 0)
        if seed > MAX_SEED:
            raise UserInputError(f"seed must be at most 2**63 - 1 = {MAX_SEED}, got {seed}")
        if step_size is not None and not (
            isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0
        ):
            raise UserInputError(f"step_size must be a finite positive number, got {step_size}")
        smc = smc or SMCOptions()
        if kernel == "smc":
            smc.validate(num_particles)
        if kernel == "ensemble" and num_particles < 6:
            raise UserInputError(f"the ensemble kernel needs at least 6 particles (3 per half), got {num_particles}")
        check_count(rungs, "rungs", 1)
        if rungs > 1 and kernel != "ensemble":
            raise UserInputError(f"rungs (replica exchange) apply to the ensemble kernel only, not {kernel}")
        if start not in STARTS:
            raise UserInputError(f"unknown start {start!r}; choose one of {', '.join(STARTS)}")
        if start != "prior":
            if kernel not in STARTING_KERNELS:
                raise UserInputError(
                    f"start={start!r} applies to the {' and '.join(STARTING_KERNELS)} kernels, not {kernel}"
                )
            smc.validate_tempering()
        resolved = resolve_device(device)
        world = load_world(world, device=resolved)
        vector = parse_target(target, world.classes).to(resolved)
        if likelihood == "dirichlet":
            check_float32(float(alpha), vector, world.classes)
        check_world(world)
        spec = target if isinstance(target, str) else ",".join(f"{float(v):g}" for v in vector)
        config = cls(
            world,
            vector,
            spec,
            float(alpha),
            kernel,
            num_particles,
            warmup,
            steps,
            thin,
            seed,
            resolved,
            None if step_size is None else float(step_size),
            bool(progress),
            smc,
            likelihood,
            float(sigma),
            int(rungs),
            start,
        )
        if kernel == "nuts":
            from pplevelset.infer.nuts import check_differentiable

            check_differentiable(world)
        return config

    def settings(self) -> dict[str, Any]:
        """The run's settings as plain values, as ``summary.json`` and the ArviZ attributes record them."""
        out = {
            "target": self.target_spec,
            "alpha": self.alpha,
            "kernel": self.kernel,
            "num_particles": self.num_particles,
            "warmup": self.warmup,
            "steps": self.steps,
            "thin": self.thin,
            "seed": self.seed,
            "device": str(self.device),
            "likelihood": self.likelihood,
        }
        if self.likelihood == "normal":
            out["sigma"] = self.sigma
        if self.kernel == "ensemble":
            out["rungs"] = self.rungs
        if self.start != "prior":  # the SMC start's tempering settings with it (a prior start records none)
            out.update(start=self.start, moves=self.smc.moves, target_ess=self.smc.target_ess)
        if self.kernel == "smc":
            out.update(warmup=None, steps=None, **{f.name: getattr(self.smc, f.name) for f in fields(SMCOptions)})
        return out

    def model_kwargs(self) -> dict[str, Any]:
        """:func:`~pplevelset.model.level_set_model`'s keyword arguments beyond (world, target, alpha, N):
        none for the default Dirichlet likelihood, so its calls stay exactly as they were."""
        return {} if self.likelihood == "dirichlet" else {"likelihood": self.likelihood, "sigma": self.sigma}


def check_likelihood(likelihood: Any, sigma: Any) -> None:
    """``likelihood`` one of :data:`~pplevelset.model.LIKELIHOODS`; ``sigma`` a finite positive number
    whose Normal log-density float32 carries (finite even a whole unit away from the target)."""
    if likelihood not in LIKELIHOODS:
        raise UserInputError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
    if isinstance(sigma, bool) or not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise UserInputError(f"sigma must be a finite positive number, got {sigma}")
    worst = prediction_distribution(torch.zeros(1, 2), 1.0, "normal", float(sigma)).log_prob(torch.ones(1, 2))
    if likelihood == "normal" and not (float(sigma) >= torch.finfo(torch.float32).tiny and torch.isfinite(worst).all()):
        raise UserInputError(
            f"sigma {sigma:g} is too small for float32 (the sampler's precision): the Normal "
            "log-likelihood overflows; use a larger sigma"
        )


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here, or a one-line error saying why not."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserInputError(f"unknown device {device!r}; use cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device cuda was asked for but CUDA is not available on this machine; use --device cpu")
    if resolved.type != "cpu" and resolved.type != "cuda":
        raise UserInputError(f"unsupported device {device!r}; use cpu or cuda")
    return resolved


def check_keep(keep: Any) -> int:
    """The number of states resampled into a run directory: an integer >= 1."""
    check_count(keep, "keep (states resampled at the end)", 1)
    return int(keep)


def check_float32(alpha: float, target: torch.Tensor, classes: Sequence[str]) -> None:
    """Refuse a target or alpha that float32 (the sampler's precision) cannot carry through the
    Dirichlet likelihood: every target entry a normal float32 (not rounded to 0), every
    concentration ``alpha * p`` (``p`` floored at ``PROBS_EPS``) finite and normal, and the
    log-likelihood finite both at a prediction equal to the target and at every one-hot prediction."""
    tiny, huge = torch.finfo(torch.float32).tiny, torch.finfo(torch.float32).max
    vector = target.detach().float().cpu()
    for name, value in zip(classes, vector.tolist()):
        if value < tiny:
            raise UserInputError(
                f"target probability of class {name!r} is {value:g} in float32 (the sampler's "
                f"precision); every entry must be at least {tiny:.3g}"
            )
    if alpha > huge or alpha * PROBS_EPS < tiny:
        raise UserInputError(
            f"alpha {alpha:g} is outside what float32 can represent as a Dirichlet concentration: "
            f"alpha x {PROBS_EPS:g} (the floor on probabilities) must be at least {tiny:.3g} "
            f"and alpha at most {huge:.3g}"
        )
    predictions = torch.cat([vector.unsqueeze(0), torch.eye(vector.numel())]).clamp_min(PROBS_EPS)
    concentration = (alpha * predictions).float()
    log_likelihood = torch.distributions.Dirichlet(concentration, validate_args=False).log_prob(vector)
    if not (torch.isfinite(concentration).all() and torch.isfinite(log_likelihood).all()):
        raise UserInputError(
            f"alpha {alpha:g} overflows float32 in the Dirichlet likelihood of this target "
            f"(log-likelihood {float(log_likelihood.min()):g}); use a smaller alpha"
        )


def check_count(value: Any, what: str, minimum: int, why: str = "") -> None:
    """An integer (not a float that happens to be whole, not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserInputError(f"{what} must be an integer, got {value!r}")
    if value < minimum:
        raise UserInputError(f"{what} must be at least {minimum}{' ' + why if why else ''}, got {value}")
