"""Shared test helpers: exact posteriors by grid integration, and small worlds."""

from __future__ import annotations

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
    return (gammaln(concentration.sum(-1)) - gammaln(concentration).sum(-1)
            + ((concentration - 1) * np.log(target)).sum(-1))


def grid_posterior(world, target: torch.Tensor, alpha: float, axes: list[np.ndarray]):
    """Normalised posterior weights on the product grid of ``axes`` and the grid points ``(M, d)``."""
    mesh = np.meshgrid(*axes, indexing="ij")
    points = np.stack([m.ravel() for m in mesh], -1)
    z = torch.as_tensor(points, dtype=torch.float64)
    with torch.no_grad():
        log_prior = world.prior().log_prob(z.float()).double().numpy()
        probs = world.predict(z.float()).double().clamp_min(PROBS_EPS).numpy()
    log_post = log_prior + log_dirichlet(target.double().numpy(), alpha * probs)
    weights = np.exp(log_post - log_post.max())
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


@pytest.fixture
def toy():
    return pls.load_world("toy")
