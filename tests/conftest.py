"""Shared test helpers: exact posteriors by grid integration, and small worlds."""

from __future__ import annotations

import signal
import warnings

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy.special import gammaln

import pplevelset as pls
from pplevelset.model import PROBS_EPS

warnings.filterwarnings("ignore", message="ArviZ is undergoing")


def log_dirichlet(target: np.ndarray, concentration: np.ndarray) -> np.ndarray:
    """log Dirichlet(target; concentration) per row, written independently of torch."""
    return (
        gammaln(concentration.sum(-1)) - gammaln(concentration).sum(-1) + ((concentration - 1) * np.log(target)).sum(-1)
    )


def grid_posterior(world, target: torch.Tensor, alpha: float, axes: list[np.ndarray], evidence: bool = False):
    """Normalised posterior weights on the product grid of ``axes`` and the grid points ``(M, d)``;
    with ``evidence``, also ``log Z = log integral p(z) Dir(target; alpha f(g(z))) dz`` (uniform axes)."""
    mesh = np.meshgrid(*axes, indexing="ij")
    points = np.stack([m.ravel() for m in mesh], -1)
    z = torch.as_tensor(points, dtype=torch.float64)
    with torch.no_grad():
        log_prior = world.prior().log_prob(z.float()).double().numpy()
        probs = world.predict(z.float()).double().clamp_min(PROBS_EPS).numpy()
    log_post = log_prior + log_dirichlet(target.double().numpy(), alpha * probs)
    weights = np.exp(log_post - log_post.max())
    if evidence:
        cell = np.prod([axis[1] - axis[0] for axis in axes])
        return weights / weights.sum(), points, float(np.log(weights.sum() * cell) + log_post.max())
    return weights / weights.sum(), points


class GammaWorld(pls.World):
    """1-D positive latent (Gamma(2, 1)) and a sigmoid classifier: tests the Jacobian of biject_to."""

    name, classes, latent_dim = "gamma-test", ("low", "high"), 1

    def prior(self):
        return dist.Gamma(torch.full((1,), 2.0, device=self.device), torch.ones(1, device=self.device)).to_event(1)

    def decode(self, z):
        return z

    def classify(self, x):
        high = torch.sigmoid(3.0 * (x[..., 0] - 2.0))
        return torch.stack([1 - high, high], -1)


class TwoModeWorld(pls.World):
    """z ~ N((0.5, 0), I); "outside" probability sigmoid(5 (|z0| - 1)). Targeting outside = 0.95 gives two
    modes, z0 > 1 and z0 < -1, whose masses (~0.83 / 0.17) differ from the prior's share of starts."""

    name, classes, latent_dim = "two-modes", ("inside", "outside"), 2

    def prior(self):
        loc = torch.tensor([0.5, 0.0], device=self.device)
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)

    def decode(self, z):
        return z

    def classify(self, x):
        outside = torch.sigmoid(5.0 * (x[..., 0].abs() - 1.0))
        return torch.stack([1 - outside, outside], -1)


class HoleWorld(pls.World):
    """The toy classifier, but NaN for z[0] > 1: such states must be rejected (MH) or weigh 0 (SMC)."""

    name, classes, latent_dim = "hole", ("a", "b", "c"), 2

    def __init__(self):
        self.toy = pls.load_world("toy")

    def prior(self):
        return self.toy.prior()

    def decode(self, z):
        return z

    def classify(self, x):
        probs = self.toy.classify(x)
        return torch.where((x[..., :1] > 1.0), torch.full_like(probs, float("nan")), probs)


@pytest.fixture
def toy():
    return pls.load_world("toy")


@pytest.fixture
def single_torch_thread():
    """One torch thread for the test, the caller's setting restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class StopAt:
    """A stop request (SIGINT) at the ``k``-th time the run loop asks: an interrupt at a chosen step."""

    def __init__(self, k: int):
        self.k, self.n = k, 0

    @property
    def requested(self):
        self.n += 1
        return signal.SIGINT if self.n >= self.k else None
