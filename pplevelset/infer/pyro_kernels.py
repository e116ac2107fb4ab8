"""The batched kernels as ``pyro.infer.mcmc.MCMCKernel`` objects, for users who live in Pyro.

One adapter, :class:`BatchedKernel`, runs any :class:`~pplevelset.infer.mcmc.Algorithm` under
``pyro.infer.MCMC``; :class:`BatchedRandomWalk` and :class:`EnsembleKernel` name the two that
ship. The model must put its sample sites in ``pyro.plate("particles", N)``; each MCMC "sample"
then holds all N particles, and the algorithm's adaptation runs during ``warmup_steps`` only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from pplevelset.infer import ensemble, rwmh
from pplevelset.infer.mcmc import Algorithm, initial_positions
from pplevelset.model import ParticleDensity
from pplevelset.rng import generator as seeded_generator


class BatchedKernel(MCMCKernel):
    """Any batched algorithm as a Pyro kernel.

    :param model: a Pyro model with a ``particles`` plate, such as :func:`pplevelset.level_set_model`.
    :param algorithm: ``init``, ``step``, adaptation and step-size reader (:class:`Algorithm`).
    :param int seed: seed of the kernel's generator (default: drawn from torch's global RNG, so
        ``pyro.set_rng_seed`` controls it).
    """

    def __init__(self, model: Callable, algorithm: Algorithm, seed: int | None = None):
        self.model = model
        self.algorithm = algorithm
        self.seed = seed
        self._initial_params = None
        super().__init__()

    def setup(self, warmup_steps, *args, **kwargs):
        self._warmup_steps = warmup_steps
        self._t = 0
        self._accepted = 0.0
        self._mean_accept_prob = 0.0
        self.density = ParticleDensity(self.model, args, kwargs)
        # Pyro's convention: transforms map constrained -> unconstrained; MCMC applies .inv to samples.
        self.transforms = {name: transform.inv for name, transform in self.density.transforms.items()}
        seed = self.seed if self.seed is not None else int(torch.randint(2**62, (1,)))
        self.generator = seeded_generator(seed, self.density.device)
        if self._initial_params is None:
            self._initial_params = self.density.unpack(initial_positions(self.density, self.generator))
        self._state = None

    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        self._initial_params = params

    def sample(self, params):
        flat = self.density.pack(params)
        with torch.no_grad():
            if self._state is None or not torch.equal(flat, self._state.z_unconstrained):
                self._state = self.algorithm.init(flat, self.density)
                self._adapt_state = self.algorithm.adaptation.init(self._state)
            self._state, info = self.algorithm.step(self.generator, self._state, self.density)
            if self._t < self._warmup_steps:
                self._adapt_state, self._state = self.algorithm.adaptation.update(self._adapt_state, self._state, info)
        self._t += 1
        sampling = self._t > self._warmup_steps
        n = self._t - self._warmup_steps if sampling else self._t
        if sampling:
            self._accepted += float(info.is_accepted.float().mean())
        self._mean_accept_prob += (float(info.acceptance_prob.mean()) - self._mean_accept_prob) / n
        return self.density.unpack(self._state.z_unconstrained)

    def logging(self):
        step_size = float(self.algorithm.step_size(self._state).median())
        return OrderedDict([("step size", f"{step_size:.2e}"), ("acc. prob", f"{self._mean_accept_prob:.3f}")])

    def diagnostics(self):
        return {"acceptance rate": self._accepted / max(1, self._t - self._warmup_steps)}


class BatchedRandomWalk(BatchedKernel):
    """N independent random-walk MH chains (:mod:`pplevelset.infer.rwmh`) as one Pyro kernel.

    :param float step_size: initial proposal scale (default: from the prior's spread).
    :param float target_accept_prob: acceptance rate the warm-up adapts toward.

    Example::

        kernel = BatchedRandomWalk(pls.level_set_model)
        mcmc = pyro.infer.MCMC(kernel, num_samples=200, warmup_steps=200)
        mcmc.run(world, target, 10.0, 500)
        z = mcmc.get_samples()["z"]  # (200, 500, latent_dim)
    """

    def __init__(self, model: Callable, step_size: float | None = None,
                 target_accept_prob: float = rwmh.TARGET_ACCEPT, seed: int | None = None):
        super().__init__(model, rwmh.algorithm(step_size, target_accept_prob), seed)


class EnsembleKernel(BatchedKernel):
    """The N particles as one population (:mod:`pplevelset.infer.ensemble`) as one Pyro kernel:
    moves built from the other half's positions carry particles between the pieces of a level set.

    :param moves: the move weights (default: :func:`pplevelset.infer.ensemble.default_moves`).

    Example::

        kernel = EnsembleKernel(pls.level_set_model)
        mcmc = pyro.infer.MCMC(kernel, num_samples=200, warmup_steps=200)
        mcmc.run(world, target, 10.0, 500)
    """

    def __init__(self, model: Callable, moves: ensemble.Moves | None = None, seed: int | None = None):
        super().__init__(model, ensemble.algorithm(moves), seed)
