"""Sampler correctness against posteriors computed exactly by grid integration.

Tolerance. After warm-up, the N particles are independent chains; their final states are N
independent draws from (approximately) the posterior. For a statistic with posterior mean m and
standard deviation s, the particle average has Monte Carlo standard error s / sqrt(N); for a region
of posterior mass p the fraction has standard error sqrt(p (1 - p) / N). We accept |estimate - exact|
< 4.5 standard errors: for a correct sampler each check fails with probability ~7e-6 (the seeds are
fixed, so the outcome is deterministic anyway), while a bias of a few per cent of s, e.g. a missing
Jacobian, a wrong alpha or a proposal that is not symmetric, exceeds it; ``test_the_tolerance_has_power``
shows a nearby wrong posterior fails the same check.
"""

import numpy as np
import pytest
import torch
from conftest import GammaWorld, grid_posterior

import pplevelset as pls

Z_LIMIT = 4.5
AXIS = np.linspace(-6, 6, 481)


def exact_statistics(world, target, alpha, axes):
    weights, points = grid_posterior(world, target, alpha, axes)
    mean = weights @ points
    sd = np.sqrt(weights @ (points - mean) ** 2)
    labels = world.predict(torch.as_tensor(points, dtype=torch.float32)).argmax(-1).numpy()
    regions = np.array([weights[labels == k].sum() for k in range(len(world.classes))])
    return mean, sd, regions


def z_scores(post, world, target, alpha, axes):
    mean, sd, regions = exact_statistics(world, target, alpha, axes)
    n = len(post)
    z = post.z.double().numpy()
    mean_z = (z.mean(0) - mean) / (sd / np.sqrt(n))
    labels = post.predictions().argmax(-1).numpy()
    observed = np.array([(labels == k).mean() for k in range(len(world.classes))])
    region_z = (observed - regions) / np.sqrt(regions * (1 - regions) / n)
    return np.concatenate([mean_z, region_z])


@pytest.mark.parametrize("spec, alpha", [("ambiguous", 5.0), ("ambiguous", 20.0), ("a=0.7", 5.0), ("a=0.7", 20.0)])
def test_rwmh_matches_grid_posterior_on_toy(toy, spec, alpha):
    post = pls.sample(toy, spec, alpha=alpha, num_particles=3000, warmup=250, steps=50, seed=1, progress=False)
    scores = z_scores(post, toy, pls.parse_target(spec, toy.classes), alpha, [AXIS, AXIS])
    assert np.all(np.abs(scores) < Z_LIMIT), scores


def test_nuts_matches_grid_posterior_on_toy(toy):
    spec, alpha = "a=0.7", 5.0
    post = pls.sample(
        toy, spec, alpha=alpha, num_particles=300, warmup=80, steps=5, kernel="nuts", seed=1, progress=False
    )
    scores = z_scores(post, toy, pls.parse_target(spec, toy.classes), alpha, [AXIS, AXIS])
    assert np.all(np.abs(scores) < Z_LIMIT), scores
    # and a second target and alpha
    spec, alpha = "ambiguous", 20.0
    post = pls.sample(
        toy, spec, alpha=alpha, num_particles=300, warmup=80, steps=5, kernel="nuts", seed=2, progress=False
    )
    scores = z_scores(post, toy, pls.parse_target(spec, toy.classes), alpha, [AXIS, AXIS])
    assert np.all(np.abs(scores) < Z_LIMIT), scores


def test_rwmh_on_a_constrained_latent_includes_the_jacobian():
    """z ~ Gamma(2, 1) moves in log space; without the Jacobian the posterior mean would be off."""
    world, spec, alpha = GammaWorld(), "0.5,0.5", 8.0
    axis = np.linspace(1e-3, 20, 20000)
    post = pls.sample(world, spec, alpha=alpha, num_particles=3000, warmup=250, steps=50, seed=0, progress=False)
    scores = z_scores(post, world, pls.parse_target(spec, world.classes), alpha, [axis])
    assert np.all(np.abs(scores) < Z_LIMIT), scores


def test_the_tolerance_has_power(toy):
    """The same samples checked against the posterior at a different alpha fail clearly."""
    spec = "a=0.7"
    target = pls.parse_target(spec, toy.classes)
    post = pls.sample(toy, spec, alpha=20.0, num_particles=3000, warmup=250, steps=50, seed=1, progress=False)
    assert np.max(np.abs(z_scores(post, toy, target, 12.0, [AXIS, AXIS]))) > Z_LIMIT
