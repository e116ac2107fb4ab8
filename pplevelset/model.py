"""The level-set Pyro program and its per-particle log density.

``level_set_model`` is the paper's Eq. (1)-(4) written as a plain Pyro model over a plate of
particles. :class:`ParticleDensity` scores every particle of any such model in one batched
forward pass, in unconstrained coordinates, splitting the log density into prior (with the
Jacobian of ``biject_to(support)``) and likelihood, as the samplers need.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import sum_rightmost
from pyro.poutine.util import site_is_subsample
from torch.distributions import biject_to

from pplevelset.worlds.base import World

PLATE = "particles"
PROBS_EPS = 1e-6  # floor on classifier probabilities: Dirichlet concentrations must be > 0
LIKELIHOODS = ("dirichlet", "normal")
DEFAULT_SIGMA = 0.05  # Bayes-TrEx's standard deviation


def prediction_distribution(
    probs: torch.Tensor, alpha: float, likelihood: str = "dirichlet", sigma: float = DEFAULT_SIGMA
) -> dist.TorchDistribution:
    """How the observed prediction scatters around the classifier output ``probs`` ``(..., L)``.

    ``dirichlet``: ``Dirichlet(alpha * probs)`` (probabilities floored at ``PROBS_EPS``), the paper's.
    ``normal``: an independent ``Normal(probs_i, sigma)`` on every class probability, event shape
    ``(L,)``: Bayes-TrEx's likelihood for an arbitrary target vector (its graded experiment);
    ``alpha`` does not enter. One function, so the Pyro program and the lean density agree.
    """
    if likelihood == "normal":
        return dist.Normal(probs, sigma).to_event(1)
    return dist.Dirichlet(alpha * probs.clamp_min(PROBS_EPS))


def level_set_model(
    world: World,
    target: torch.Tensor,
    alpha: float,
    num_particles: int,
    likelihood: str = "dirichlet",
    sigma: float = DEFAULT_SIGMA,
):
    """``z ~ p(z); x = g(z); prediction ~ Dirichlet(alpha f(x))``, observed at ``target``.

    With ``likelihood="normal"``, ``prediction ~ Normal(f(x), sigma)`` independently per class
    instead (see :func:`prediction_distribution`). Sites: ``z`` (latent, one per particle), ``x``
    (decoded input, deterministic), ``probs`` (classifier output, deterministic) and ``prediction``
    (observed).

    Example::

        world = pls.load_world("toy")
        target = pls.parse_target("ambiguous", world.classes)
        kernel = pyro.infer.NUTS(pls.level_set_model)
        mcmc = pyro.infer.MCMC(kernel, num_samples=100, warmup_steps=100)
        mcmc.run(world, target, 10.0, 8)
    """
    with pyro.plate(PLATE, num_particles):
        z = pyro.sample("z", world.prior())
        x = world.decode(z)
        x = pyro.deterministic("x", x, event_dim=x.dim() - z.dim() + 1)
        probs = pyro.deterministic("probs", world.classify(x), event_dim=1)
        observation = prediction_distribution(probs, alpha, likelihood, sigma)
        pyro.sample("prediction", observation, obs=target.expand(observation.shape()))


class Density(NamedTuple):
    """Per-particle log densities (shape ``(N,)``) and the classifier output ``(N, L)``."""

    log_prior: torch.Tensor  # log p(z) + log |d z / d z_unconstrained|
    log_likelihood: torch.Tensor  # log Dirichlet(target; alpha f(g(z))), or the Normal likelihood
    predictions: torch.Tensor  # f(g(z)); (N, 0) for models without a ``probs`` site


class ParticleDensity:
    """Per-particle log density of a Pyro model with a ``particles`` plate, in unconstrained space.

    Latent sites are concatenated, per particle, into one flat vector of length :attr:`dim`; the
    random walk moves that vector and this object maps it back to constrained values.

    For :func:`level_set_model` itself the densities are computed directly, without recording a
    Pyro trace: the same sites, distributions and reductions as the trace path (a test checks they
    agree), without the trace's per-call overhead (measured in ``make bench``: 10-20% of a step at
    N = 100, about 2% at N = 1,000, and more on a GPU, where the networks themselves are fast).
    Any other model, or ``lean=False``, goes through ``poutine.trace``.

    :param model: a Pyro model whose every site sits inside ``pyro.plate("particles", N)``.
    :param model_args: positional arguments for ``model``.
    :param lean: use the direct path when ``model`` is :func:`level_set_model` (default).
    """

    def __init__(self, model: Callable, model_args: tuple = (), model_kwargs: dict | None = None, lean: bool = True):
        self.model, self.args, self.kwargs = model, tuple(model_args), dict(model_kwargs or {})
        # level_set_model's arguments by name, bound once (the lean path reads them every step)
        self.level_set_arguments = _level_set_arguments(self.args, self.kwargs) if model is level_set_model else None
        self.lean = lean and self.level_set_arguments is not None
        with torch.no_grad(), pyro.validation_enabled(False):  # NaN scores are rejected, not raised
            prototype = poutine.trace(model).get_trace(*self.args, **self.kwargs)
        frames = [
            frame
            for site in prototype.nodes.values()
            if site["type"] == "sample"
            for frame in site["cond_indep_stack"]
            if frame.name == PLATE
        ]
        if not frames:
            raise ValueError(
                f"the model has no pyro.plate({PLATE!r}, N) around its sample sites "
                "(the pls kernels add one with num_particles=N)"
            )
        self.num_particles = frames[0].size
        self.transforms: dict[str, torch.distributions.Transform] = {}
        self.sizes: dict[str, int] = {}
        self.shapes: dict[str, torch.Size] = {}
        for name, site in prototype.nodes.items():
            if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
                transform = biject_to(site["fn"].support)
                unconstrained = transform.inv(site["value"])
                frame = _particle_frame(site)
                if frame is None or site["value"].dim() - site["fn"].event_dim + frame.dim != 0:
                    raise ValueError(
                        f"site {name!r}: the particles plate must be its leftmost batch dim "
                        f"(value shape {tuple(site['value'].shape)})"
                    )
                self.transforms[name] = transform
                self.shapes[name] = unconstrained.shape[1:]
                self.sizes[name] = unconstrained[0].numel()
        self.dim = sum(self.sizes.values())
        self.device = prototype.nodes[next(iter(self.sizes))]["value"].device

    def unpack(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split ``(N, dim)`` into unconstrained site values."""
        values, start = {}, 0
        for name, size in self.sizes.items():
            values[name] = flat[:, start : start + size].reshape((flat.shape[0],) + self.shapes[name])
            start += size
        return values

    def pack(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate unconstrained site values into ``(N, dim)``."""
        return torch.cat([values[name].reshape(values[name].shape[0], -1) for name in self.sizes], dim=-1)

    def constrain(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: self.transforms[name](value) for name, value in self.unpack(flat).items()}

    def unconstrain(self, constrained: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.pack({name: self.transforms[name].inv(value) for name, value in constrained.items()})

    def sample_prior(self) -> torch.Tensor:
        """Unconstrained draws of every latent site from the model's own prior (global RNG)."""
        with torch.no_grad(), pyro.validation_enabled(False):
            trace = poutine.trace(poutine.block(self.model, hide_types=["observe"])).get_trace(
                *self.args, **self.kwargs
            )
        return self.unconstrain({name: trace.nodes[name]["value"] for name in self.sizes})

    def __call__(self, flat: torch.Tensor, rows: slice | torch.Tensor | None = None) -> Density:
        """Score particles at the unconstrained positions ``flat`` (shape ``(M, dim)``).

        ``rows`` says which of the model's N particles these are (default: all, ``M = N``): a
        population kernel scores half of them at a time, and a model whose particles differ (a
        target per particle, data per particle) must see each row in its own place.
        """
        if self.lean:
            return self._level_set_density(flat, rows)
        if rows is None and flat.shape[0] == self.num_particles:
            return self._traced_density(flat)
        # the Pyro program's plate has N slots: place the rows in theirs, fill the rest with a copy
        # of the first row (scored and dropped), then keep the rows asked for
        index = torch.arange(self.num_particles, device=flat.device)[
            rows if rows is not None else slice(0, flat.shape[0])
        ]
        if index.numel() != flat.shape[0]:
            raise ValueError(f"{flat.shape[0]} positions for {index.numel()} particle rows")
        full = flat[:1].expand(self.num_particles, -1).clone()
        full[index] = flat
        scored = self._traced_density(full)
        return Density(*(value[index] for value in scored))

    def _traced_density(self, flat: torch.Tensor) -> Density:
        """Any model with a particles plate, through its Pyro trace (``flat`` holds all N particles)."""
        unconstrained = self.unpack(flat)
        constrained = {name: self.transforms[name](value) for name, value in unconstrained.items()}
        with pyro.validation_enabled(False):  # a NaN score is a rejected proposal, not an error
            trace = poutine.trace(poutine.condition(self.model, data=constrained)).get_trace(*self.args, **self.kwargs)
            trace.compute_log_prob()
        log_prior = flat.new_zeros(flat.shape[0])
        log_likelihood = flat.new_zeros(flat.shape[0])
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site) or site["infer"].get("_deterministic"):
                continue
            frame = _particle_frame(site)
            dim = frame.dim if frame is not None else None
            log_prob = _per_particle(site["log_prob"], flat.shape[0], dim)
            if name in constrained:
                transform = self.transforms[name]
                jacobian = transform.log_abs_det_jacobian(unconstrained[name], constrained[name])
                # right-align with the site's batch shape, like log_prob: sum the event dims the transform left
                jacobian = sum_rightmost(jacobian, max(0, site["fn"].event_dim - transform.codomain.event_dim))
                log_prior = log_prior + log_prob + _per_particle(jacobian, flat.shape[0], dim)
            else:
                log_likelihood = log_likelihood + log_prob
        probs = trace.nodes.get("probs")
        predictions = probs["value"] if probs is not None else flat.new_zeros(flat.shape[0], 0)
        return Density(log_prior, log_likelihood, predictions)

    def _level_set_density(self, flat: torch.Tensor, rows: slice | torch.Tensor | None = None) -> Density:
        """:func:`level_set_model`'s sites scored directly: prior of ``z`` plus the Jacobian, and
        the likelihood of the target under the classifier output (:func:`prediction_distribution`).
        A target per particle (``(N, L)``) is taken at ``rows``."""
        arguments = self.level_set_arguments or {}
        world, target, alpha = arguments["world"], arguments["target"], arguments["alpha"]
        if rows is not None and target.dim() > 1:
            target = target[rows]
        transform = self.transforms["z"]
        unconstrained = flat.reshape((flat.shape[0],) + self.shapes["z"])
        z = transform(unconstrained)
        num = flat.shape[0]
        with pyro.validation_enabled(False):  # as in the trace path: NaN scores are rejected, not raised
            jacobian = transform.log_abs_det_jacobian(unconstrained, z)
            log_prior = _per_particle(world.prior().log_prob(z), num) + _per_particle(jacobian, num)
            probs = world.classify(world.decode(z))
            observation = prediction_distribution(probs, alpha, arguments["likelihood"], arguments["sigma"])
            log_likelihood = _per_particle(observation.log_prob(target.expand(observation.shape())), num)
        return Density(log_prior, log_likelihood, probs)


def _level_set_arguments(args: tuple, kwargs: dict) -> dict[str, Any] | None:
    """:func:`level_set_model`'s arguments by name, defaults filled in (``None`` if they do not bind)."""
    try:
        bound = inspect.signature(level_set_model).bind(*args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return bound.arguments


def _particle_frame(site: dict):
    """The ``particles`` plate's frame in a trace site's plate stack (``None`` outside it)."""
    return next((frame for frame in site["cond_indep_stack"] if frame.name == PLATE), None)


def _per_particle(log_prob: torch.Tensor, num_particles: int, dim: int | None = None) -> torch.Tensor:
    """Reduce a site's log density to one value per particle: sum every dim except the particle dim.

    ``dim`` is the particles plate's dim as Pyro counts it, from the right of the batch shape, so
    ``(N, 1)`` (a global) and ``(N, 10)`` (a site in a data plate) with ``dim=-2``, and ``(10, N)``
    with ``dim=-1``, all reduce over the 1 and the 10. A log density without that dim does not
    depend on the particle and counts in full for each. Without ``dim``, the particle dim is the
    leftmost one if it has size N, else the rightmost (:func:`level_set_model`'s direct path).
    """
    if dim is not None:
        if log_prob.dim() < -dim:
            return log_prob.sum().expand(num_particles)
        moved = log_prob.movedim(dim, 0)
        return moved.expand((num_particles,) + moved.shape[1:]).reshape(num_particles, -1).sum(-1)
    if log_prob.dim() == 0:
        return log_prob.expand(num_particles)
    if log_prob.shape[0] == num_particles:
        return log_prob.reshape(num_particles, -1).sum(-1)
    return log_prob.reshape(-1, num_particles).sum(0)
