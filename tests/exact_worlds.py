"""Worlds with exactly known posteriors and piece masses, for testing samplers on multimodal level sets.

:class:`BandWorld` has a prior ``z = scales * w``, ``w ~ N(0, I_D)``, and a classifier that sees only
``t = u . w`` for a fixed unit vector ``u``: "in" has probability ~0.99 inside the given bands of
``t`` and ~0.01 outside. Targeting ``in = 0.95`` makes the level set the union of slabs ``{lo < t < hi}``,
separated by regions that the posterior all but forbids (about 29 nats at alpha = 10). Because ``t``
is the only coordinate the likelihood sees and ``t ~ N(0, 1)`` a priori, the posterior of ``t`` is
1-D (integrated exactly on a fine grid) and the rest of ``w`` stays ``N(0, I - u u^T)``: exact piece
masses, exact moments and exact posterior samples in any dimension and for any prior scales.

Pieces are numbered by band; a point belongs to the band nearest in ``t`` (split at the midpoints of
the gaps), so the masses sum to 1. The toy world's "pieces" are its argmax regions (grid-exact, 2-D).
"""

from __future__ import annotations

import math

import numpy as np
import pyro.distributions as dist
import torch
from conftest import grid_posterior, log_dirichlet

import pplevelset as pls
from pplevelset.model import PROBS_EPS, ParticleDensity, level_set_model

TARGET = "0.05,0.95"  # (out, in)
ALPHA = 10.0
T_GRID = np.linspace(-9.0, 9.0, 180001)


class BandWorld(pls.World):
    """Slabs ``lo_k < u . (z / scales) < hi_k`` of a Gaussian prior; see the module docstring.

    :param bands: ``((lo, hi), ...)`` in prior standard deviations along ``u``, sorted, disjoint.
    :param dim: latent dimension.
    :param direction_seed: seed of the random unit vector ``u``; None means ``u = e_1``.
    :param scales: prior sd per coordinate (default all 1).
    :param sharpness: slope of the sigmoid edges of each band, per prior sd.
    """

    classes = ("out", "in")

    def __init__(self, bands, dim: int = 2, direction_seed: int | None = None, scales=None, sharpness: float = 10.0):
        self.name = f"bands-{dim}d"
        self.latent_dim = dim
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        if direction_seed is None:
            u = np.eye(dim)[0]
        else:
            u = np.random.default_rng(direction_seed).standard_normal(dim)
            u /= np.linalg.norm(u)
        self.u = u
        self.scale_values = np.ones(dim) if scales is None else np.asarray(scales, dtype=float)
        self.direction = torch.tensor(u, dtype=torch.float32)
        self.prior_scales = torch.tensor(self.scale_values, dtype=torch.float32)
        self.sharpness = sharpness

    def prior(self):
        return dist.Normal(torch.zeros_like(self.prior_scales), self.prior_scales).to_event(1)

    def decode(self, z):
        return z

    def projection(self, z):
        """``t = u . (z / scales)``, the only coordinate the classifier sees."""
        return (z / self.prior_scales) @ self.direction

    def inside(self, t):
        edges = [
            torch.sigmoid(self.sharpness * (t - lo)) * torch.sigmoid(self.sharpness * (hi - t)) for lo, hi in self.bands
        ]
        return sum(edges).clamp(max=1.0)

    def classify(self, x):
        p_in = 0.01 + 0.98 * self.inside(self.projection(x))
        return torch.stack([1 - p_in, p_in], -1)

    # --- exact answers -------------------------------------------------------------------------
    def splits(self) -> np.ndarray:
        """Boundaries in ``t`` between pieces: midpoints of the gaps."""
        return np.array([(self.bands[k][1] + self.bands[k + 1][0]) / 2 for k in range(len(self.bands) - 1)])

    def piece_of_t(self, t: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.splits(), t)

    def piece(self, z: torch.Tensor) -> np.ndarray:
        """Piece index of each point ``z`` (shape ``(..., D)``)."""
        with torch.no_grad():
            return self.piece_of_t(self.projection(z.float()).double().numpy())

    def t_posterior(
        self, alpha: float = ALPHA, target: str = TARGET, beta: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised posterior weights of ``t`` on :data:`T_GRID` (same float32 classifier and
        clamp as the model, Dirichlet written independently), likelihood tempered by ``beta``."""
        t = torch.tensor(T_GRID, dtype=torch.float32)
        with torch.no_grad():
            p_in = (0.01 + 0.98 * self.inside(t)).double()
        probs = torch.stack([1 - p_in, p_in], -1).clamp_min(PROBS_EPS).numpy()
        y = pls.parse_target(target, self.classes).double().numpy()
        log_post = -0.5 * T_GRID**2 + beta * log_dirichlet(y, alpha * probs)
        weights = np.exp(log_post - log_post.max())
        return T_GRID, weights / weights.sum()

    def exact_masses(self, alpha: float = ALPHA, target: str = TARGET, beta: float = 1.0) -> np.ndarray:
        t, weights = self.t_posterior(alpha, target, beta)
        return np.bincount(self.piece_of_t(t), weights=weights, minlength=len(self.bands))

    def prior_shares(self) -> np.ndarray:
        """Prior mass of each piece's region: where independent chains started from the prior stay."""
        edges = np.concatenate([[-np.inf], self.splits(), [np.inf]])
        cdf = np.array([0.5 * (1 + math.erf(e / math.sqrt(2))) if np.isfinite(e) else float(e > 0) for e in edges])
        return np.diff(cdf)

    def exact_moments(
        self, alpha: float = ALPHA, target: str = TARGET, beta: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of every whitened coordinate ``w = z / scales``:
        ``E w = u E t`` and ``Var w = I - u u^T + u u^T Var t`` (diagonal taken)."""
        t, weights = self.t_posterior(alpha, target, beta)
        mean_t = weights @ t
        var_t = weights @ (t - mean_t) ** 2
        var = 1 - self.u**2 + self.u**2 * var_t
        return self.u * mean_t, np.sqrt(var)

    def exact_samples(
        self, count: int, generator: torch.Generator, alpha: float = ALPHA, target: str = TARGET, beta: float = 1.0
    ) -> torch.Tensor:
        """``count`` exact posterior draws of ``z``: ``t`` by inverse CDF on the grid (linear
        interpolation), the orthogonal part of ``w`` Gaussian."""
        t_axis, weights = self.t_posterior(alpha, target, beta)
        cdf = np.cumsum(weights)
        uniform = torch.rand(count, generator=generator, dtype=torch.float64).numpy()
        t = np.interp(uniform, cdf, t_axis)
        g = torch.randn(count, self.latent_dim, generator=generator, dtype=torch.float64).numpy()
        w = t[:, None] * self.u + g - (g @ self.u)[:, None] * self.u
        return torch.tensor(w * self.scale_values, dtype=torch.float32)


def two_pieces_2d(**kwargs) -> BandWorld:
    """Two slabs 3 prior sds apart: exact masses 0.127 / 0.873 (lower / upper slab), while the prior
    puts 0.31 / 0.69 of its draws on their sides."""
    return BandWorld(((-3.5, -2.0), (1.0, 2.5)), dim=2, **kwargs)


def three_pieces_2d(**kwargs) -> BandWorld:
    """Three slabs along a random direction, 1.3 and 1.2 sds apart: exact masses 0.508 / 0.198 / 0.294
    (the narrow middle slab never reaches p_in = 0.99), prior shares 0.26 / 0.58 / 0.16."""
    return BandWorld(((-2.8, -1.3), (0.0, 0.4), (1.6, 3.0)), dim=2, direction_seed=11, **kwargs)


def pieces_5d(direction_seed: int = 5, **kwargs) -> BandWorld:
    """Two slabs 2.5 sds apart along a random direction of a 5-D standard normal: exact masses about
    0.665 / 0.335, prior shares 0.60 / 0.40."""
    return BandWorld(((-3.0, -1.0), (1.5, 2.5)), dim=5, direction_seed=direction_seed, **kwargs)


def wide_scales_4d(direction_seed: int = 3, **kwargs) -> BandWorld:
    """Prior sds 0.01, 1, 10 and 100; two slabs along a random direction of the rescaled coordinates:
    exact masses 0.288 / 0.712, prior shares 0.40 / 0.60."""
    return BandWorld(
        ((-3.0, -1.5), (1.0, 2.2)), dim=4, direction_seed=direction_seed, scales=(0.01, 1.0, 10.0, 100.0), **kwargs
    )


class ToyPieces:
    """The toy world's argmax regions as "pieces", exact by 2-D grid integration."""

    AXIS = np.linspace(-6, 6, 481)

    def __init__(self, target: str = "ambiguous", alpha: float = ALPHA):
        self.world = pls.load_world("toy")
        self.target, self.alpha = target, alpha

    def density(self, num_particles: int) -> ParticleDensity:
        target = pls.parse_target(self.target, self.world.classes)
        return ParticleDensity(level_set_model, (self.world, target, self.alpha, num_particles))

    def piece(self, z: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.world.predict(z.float()).argmax(-1).numpy()

    def exact_masses(self) -> np.ndarray:
        weights, points = grid_posterior(
            self.world, pls.parse_target(self.target, self.world.classes), self.alpha, [self.AXIS, self.AXIS]
        )
        return np.bincount(self.piece(torch.as_tensor(points)), weights=weights, minlength=3)
