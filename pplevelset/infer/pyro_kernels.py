"""The batched kernels as ``pyro.infer.mcmc.MCMCKernel`` objects, for users who live in Pyro.

One adapter, :class:`BatchedKernel`, runs any :class:`~pplevelset.infer.mcmc.Algorithm` under
``pyro.infer.MCMC``; :class:`BatchedRandomWalk` and :class:`EnsembleKernel` name the two that
ship. Either the model puts its sample sites in ``pyro.plate("particles", N)``, or the kernel
gets ``num_particles=N`` and :func:`vectorize` wraps the model in that plate, left of the model's
own plates. Each MCMC "sample" then holds all N particles (``mcmc.get_samples()`` gives
``(num_samples, N, ...)``), and the algorithm's adaptation runs during ``warmup_steps`` only.
:func:`to_arviz` turns such a run into InferenceData with particles as chains.
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict
from collections.abc import Callable

import arviz as az
import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.poutine.util import site_is_subsample

from pplevelset.errors import UserInputError
from pplevelset.infer import ensemble, replica, rwmh
from pplevelset.infer.mcmc import Algorithm, initial_positions
from pplevelset.model import PLATE, ParticleDensity
from pplevelset.rng import generator as seeded_generator

VECTORIZE_HINT = (
    "every site must broadcast with a particle dim left of the model's plates "
    "(no .expand/.reshape to fixed shapes, no torch.cat with fixed-size tensors)"
)


def vectorize(
    model: Callable, num_particles: int, model_args: tuple = (), model_kwargs: dict | None = None
) -> tuple[Callable, dict[str, int]]:
    """Wrap a model without a particles plate in ``pyro.plate("particles", num_particles)``.

    The plate goes left of every batch dim the model uses, found by tracing it once (Pyro's
    ``max_plate_nesting``, widened to the sites' own batch dims), so the model's plates keep their
    dims: a global gets shape ``(N, 1)`` beside a data plate at ``dim=-1``. A model that does not
    broadcast raises :class:`~pplevelset.errors.UserInputError` naming the first site that fails.

    :returns: the wrapped model, and per latent site the number of singleton dims the plate put
        between the particle dim and the site's own shape.

    Example::

        vectorized, _ = vectorize(model, 200, (data,))
        density = ParticleDensity(vectorized, (data,))
    """
    kwargs = dict(model_kwargs or {})
    with torch.no_grad(), pyro.validation_enabled(False):  # as ParticleDensity scores it
        alone = poutine.trace(model).get_trace(*model_args, **kwargs)
    sites = {
        name: site for name, site in alone.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)
    }
    if any(frame.name == PLATE for site in sites.values() for frame in site["cond_indep_stack"]):
        raise UserInputError(f"the model already has pyro.plate({PLATE!r}); leave num_particles unset")
    nesting = max(
        [-frame.dim for site in sites.values() for frame in site["cond_indep_stack"] if frame.vectorized]
        + [len(site["fn"].batch_shape) for site in sites.values()]
        + [0]
    )

    @functools.wraps(model)
    def vectorized(*args, **keywords):
        with pyro.plate(PLATE, num_particles, dim=-nesting - 1):
            return model(*args, **keywords)

    tracer = poutine.trace(vectorized)
    try:
        with torch.no_grad(), pyro.validation_enabled(False):
            trace = tracer.get_trace(*model_args, **kwargs)
    except (ValueError, RuntimeError, TypeError, IndexError) as error:
        reached = set(tracer.msngr.trace.nodes)
        failing = next((name for name in sites if name not in reached), None)
        where = f"at site {failing!r}" if failing else "after its last site"
        raise UserInputError(
            f"cannot vectorize the model over {num_particles} particles {where}: "
            f"{str(error).splitlines()[0]}; {VECTORIZE_HINT}"
        ) from error
    singletons = {}
    for name, site in sites.items():
        if site["is_observed"] or site["infer"].get("_deterministic"):
            continue
        alone_shape, shape = site["value"].shape, trace.nodes[name]["value"].shape
        extra = len(shape) - 1 - len(alone_shape)
        if (
            shape[:1] != (num_particles,)
            or extra < 0
            or shape[1 + extra :] != alone_shape
            or any(size != 1 for size in shape[1 : 1 + extra])
        ):
            raise UserInputError(
                f"cannot vectorize the model over {num_particles} particles at site {name!r}: "
                f"shape {tuple(shape)}, expected ({num_particles}, ...) + {tuple(alone_shape)}; "
                f"{VECTORIZE_HINT}"
            )
        singletons[name] = extra
    _check_particles_independent(vectorized, trace, num_particles, model_args, kwargs)
    return vectorized, singletons


def _check_particles_independent(vectorized: Callable, trace, num_particles: int, args: tuple, kwargs: dict):
    """Moving one particle must leave every other particle's log density alone: a model that sums,
    means or reshapes across the particle dim runs without error but couples the chains."""
    if num_particles < 3:
        return
    latents = {
        name: site["value"]
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)
    }
    moved = {name: torch.cat([value[1:2], value[1:]]) for name, value in latents.items()}  # particle 0 := 1
    with torch.no_grad(), pyro.validation_enabled(False):
        traces = [
            poutine.trace(poutine.condition(vectorized, data=values)).get_trace(*args, **kwargs)
            for values in (latents, moved)
        ]
        for conditioned in traces:
            conditioned.compute_log_prob()
    for name, site in traces[0].nodes.items():
        if site["type"] != "sample" or site_is_subsample(site) or site["infer"].get("_deterministic"):
            continue
        dim = next(frame.dim for frame in site["cond_indep_stack"] if frame.name == PLATE)
        others = [conditioned.nodes[name]["log_prob"].movedim(dim, 0)[2:] for conditioned in traces]
        if not torch.allclose(others[0], others[1], equal_nan=True):
            raise UserInputError(
                f"cannot vectorize the model over {num_particles} particles at site {name!r}: "
                "one particle's value changes another's log density (a sum, mean or reshape "
                "across the particle dim?)"
            )


class BatchedKernel(MCMCKernel):
    """Any batched algorithm as a Pyro kernel.

    :param model: a Pyro model with a ``particles`` plate, such as :func:`pplevelset.level_set_model`,
        or any Pyro model when ``num_particles`` is given.
    :param algorithm: ``init``, ``step``, adaptation and step-size reader (:class:`Algorithm`).
    :param int seed: seed of the kernel's generator (default: drawn from torch's global RNG, so
        ``pyro.set_rng_seed`` controls it).
    :param int num_particles: run this many chains of a model that has no ``particles`` plate, by
        wrapping it in one (:func:`vectorize`); samples then have shape ``(N,) + site shape``.
    :param int rungs: how many rungs ``algorithm`` splits the particles into, recording the first
        (replica exchange; 1 otherwise).
    """

    def __init__(
        self,
        model: Callable,
        algorithm: Algorithm,
        seed: int | None = None,
        num_particles: int | None = None,
        rungs: int = 1,
    ):
        if num_particles is not None and (
            isinstance(num_particles, bool) or not isinstance(num_particles, int) or num_particles < 1
        ):
            raise UserInputError(f"num_particles must be a positive integer, got {num_particles!r}")
        self.model = model
        self.algorithm = algorithm
        self.rungs = rungs  # replica exchange: the model's particles form this many rungs, rung 0 recorded
        self.seed = seed
        self.num_particles = num_particles
        self._initial_params = None
        super().__init__()

    def setup(self, warmup_steps, *args, **kwargs):
        self._warmup_steps = warmup_steps
        self._t = 0
        self._accepted = 0.0
        self._mean_accept_prob = 0.0
        self._stats: dict[str, list[torch.Tensor]] = {"lp": [], "acceptance_rate": [], "step_size": []}
        self._swaps: list[torch.Tensor] = []
        self._betas: torch.Tensor | None = None  # replica exchange: the ladder, as warm-up left it
        model, self._singletons = self.model, {}
        if self.num_particles is not None:
            model, self._singletons = vectorize(self.model, self.num_particles, args, kwargs)
        self.density = ParticleDensity(model, args, kwargs)
        # Pyro's convention: transforms map constrained -> unconstrained; MCMC applies .inv to samples.
        self.transforms = {name: transform.inv for name, transform in self.density.transforms.items()}
        seed = self.seed if self.seed is not None else int(torch.randint(2**62, (1,)))
        self.generator = seeded_generator(seed, self.density.device)
        self._state = None
        if self._initial_params is None:  # Pyro takes the samples' shapes from these: the recorded particles'
            self._start(initial_positions(self.density, self.generator))
            self._initial_params = self._params(self.algorithm.shown(self._state)[0].z_unconstrained)

    def _start(self, flat: torch.Tensor) -> None:
        """The kernel's state at ``flat``: all the particles the model scores, or (replica exchange)
        the recorded rung's, where every rung then starts."""
        scored = self.density.num_particles
        if flat.shape[0] * self.rungs == scored and self.rungs > 1:
            flat = flat.repeat(self.rungs, 1)
        if flat.shape[0] != scored:
            raise UserInputError(
                f"the initial values hold {flat.shape[0]} particles; the model scores {scored}"
                + (f", {scored // self.rungs} per rung" if self.rungs > 1 else "")
            )
        with torch.no_grad():
            self._state = self.algorithm.init(flat, self.density)
            self._adapt_state = self.algorithm.adaptation.init(self._state)

    def _params(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unconstrained site values as users see them: ``(N,) + the site's own shape``, without
        the singleton dims :func:`vectorize` added (``pack`` flattens either form)."""
        return {
            name: value.reshape(value.shape[:1] + value.shape[1 + self._singletons.get(name, 0) :])
            for name, value in self.density.unpack(flat).items()
        }

    def sample_stats(self) -> dict[str, np.ndarray]:
        """Per particle and recorded step (``(N, num_samples)``): ``lp`` (log joint density in
        unconstrained space), ``acceptance_rate`` and ``step_size``, as :func:`to_arviz` stores them."""
        return {
            name: torch.stack(values, 1).cpu().numpy() if values else np.zeros((0, 0))
            for name, values in self._stats.items()
        }

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def sample(self, params):
        flat = self.density.pack(params)
        with torch.no_grad():
            # params are what the last call returned (the recorded particles), unless Pyro or the
            # user set new ones: then start from those
            if self._state is None or not torch.equal(flat, self.algorithm.shown(self._state)[0].z_unconstrained):
                self._start(flat)
            self._state, info = self.algorithm.step(self.generator, self._state, self.density)
            if self._t < self._warmup_steps:
                self._adapt_state, self._state = self.algorithm.adaptation.update(self._adapt_state, self._state, info)
        shown, info = self.algorithm.shown(self._state, info)
        self._t += 1
        sampling = self._t > self._warmup_steps
        n = self._t - self._warmup_steps if sampling else self._t
        if sampling:
            self._accepted += float(info.is_accepted.float().mean())
            self._stats["lp"].append(shown.log_prior + shown.log_likelihood)
            self._stats["acceptance_rate"].append(info.acceptance_prob)
            self._stats["step_size"].append(self.algorithm.step_size(shown))
            swap_prob = getattr(info, "swap_prob", None)
            if swap_prob is not None:
                self._swaps.append(swap_prob)
                self._betas = info.betas
        self._mean_accept_prob += (float(info.acceptance_prob.mean()) - self._mean_accept_prob) / n
        return self._params(shown.z_unconstrained)

    def logging(self):
        step_size = float(self.algorithm.step_size(self.algorithm.shown(self._state)[0]).median())
        return OrderedDict([("step size", f"{step_size:.2e}"), ("acc. prob", f"{self._mean_accept_prob:.3f}")])

    def diagnostics(self):
        # no divergences in a random walk; the key keeps az.from_pyro working (it sees one chain)
        found = {"acceptance rate": self._accepted / max(1, self._t - self._warmup_steps), "divergences": []}
        if self._swaps:  # replica exchange: per neighbouring rung pair, over the recorded steps
            found["swap acceptance"] = torch.stack(self._swaps).mean(0).tolist()
            found["betas"] = self._betas.tolist() if self._betas is not None else []
        return found


class BatchedRandomWalk(BatchedKernel):
    """N independent random-walk MH chains (:mod:`pplevelset.infer.rwmh`) as one Pyro kernel.

    :param float step_size: initial proposal scale (default: from the prior's spread).
    :param float target_accept_prob: acceptance rate the warm-up adapts toward.
    :param int num_particles: number of chains for a model without a ``particles`` plate
        (:class:`BatchedKernel`).

    Example::

        kernel = BatchedRandomWalk(pls.level_set_model)
        mcmc = pyro.infer.MCMC(kernel, num_samples=200, warmup_steps=200)
        mcmc.run(world, target, 10.0, 500)
        z = mcmc.get_samples()["z"]  # (200, 500, latent_dim)

        mcmc = pyro.infer.MCMC(BatchedRandomWalk(model, num_particles=200), num_samples=500, warmup_steps=500)
        mcmc.run(data)  # any Pyro model: 200 chains in one batched computation
        idata = pls.to_arviz(mcmc)  # particles as chains
    """

    def __init__(
        self,
        model: Callable,
        step_size: float | None = None,
        target_accept_prob: float = rwmh.TARGET_ACCEPT,
        seed: int | None = None,
        num_particles: int | None = None,
    ):
        super().__init__(model, rwmh.algorithm(step_size, target_accept_prob), seed, num_particles)


class EnsembleKernel(BatchedKernel):
    """The N particles as one population (:mod:`pplevelset.infer.ensemble`) as one Pyro kernel:
    moves built from the other half's positions carry particles between the pieces of a level set.

    :param moves: the move weights, kept as given (default:
        :func:`pplevelset.infer.ensemble.default_moves`, whose KDE/Student-t split warm-up adapts).
    :param int num_particles: population size for a model without a ``particles`` plate
        (:class:`BatchedKernel`).
    :param int rungs: replica exchange (:mod:`pplevelset.infer.replica`): the N particles form
        ``rungs`` ensembles of ``N / rungs`` on a likelihood-temperature ladder, and the samples
        hold the ``N / rungs`` of the ``beta = 1`` rung (so a step costs what it costs without
        rungs). ``mcmc.diagnostics()`` then adds each rung pair's swap acceptance and the ladder
        ``betas`` warm-up left (``1`` first, then ever hotter rungs).

    Example::

        kernel = EnsembleKernel(pls.level_set_model)
        mcmc = pyro.infer.MCMC(kernel, num_samples=200, warmup_steps=200)
        mcmc.run(world, target, 10.0, 500)

        mcmc = pyro.infer.MCMC(EnsembleKernel(pls.level_set_model, rungs=2), 200, warmup_steps=200)
        mcmc.run(world, target, 10.0, 1000)  # samples: (200, 500, latent_dim), the beta = 1 rung
    """

    def __init__(
        self,
        model: Callable,
        moves: ensemble.Moves | None = None,
        seed: int | None = None,
        num_particles: int | None = None,
        rungs: int = 1,
    ):
        replica.check_rungs(rungs)
        algorithm = ensemble.algorithm(moves) if rungs == 1 else replica.algorithm(rungs, moves)
        super().__init__(model, algorithm, seed, num_particles, rungs)


def to_arviz(mcmc: pyro.infer.MCMC) -> az.InferenceData:
    """A ``pyro.infer.MCMC`` run of a batched kernel as InferenceData, particles as ``chain``.

    ``az.from_pyro(mcmc)`` sees Pyro's one chain, with the N particles as an extra dim of every
    variable, so its R-hat and ESS are wrong; this puts each particle in its own chain and the
    recorded steps in ``draw``, and adds ``sample_stats`` (``lp``, ``acceptance_rate``, ``step_size``).

    :param mcmc: an ``MCMC`` that has run :class:`BatchedRandomWalk` or :class:`EnsembleKernel`.

    Example::

        mcmc = pyro.infer.MCMC(pls.BatchedRandomWalk(model, num_particles=200), 500, warmup_steps=500)
        mcmc.run(data)
        az.summary(pls.to_arviz(mcmc))
    """
    if not isinstance(mcmc.kernel, BatchedKernel):
        raise UserInputError(
            "pls.to_arviz reads runs of BatchedRandomWalk or EnsembleKernel; use az.from_pyro for Pyro's own kernels"
        )
    if mcmc.num_chains != 1:
        raise UserInputError("run batched kernels with num_chains=1: their particles are the chains")
    posterior = {name: np.swapaxes(value.detach().cpu().numpy(), 0, 1) for name, value in mcmc.get_samples().items()}
    with warnings.catch_warnings():  # many particles and few steps is the point, not a transposed array
        warnings.filterwarnings("ignore", message="More chains")
        return az.from_dict(posterior=posterior, sample_stats=mcmc.kernel.sample_stats())
