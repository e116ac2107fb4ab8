"""The batched kernels under ``pyro.infer.MCMC``, and scoring a subset of particles on any Pyro model.

Tolerance as in test_correctness.py: the particles of the last MCMC sample are (after warm-up)
independent draws, so a mean has Monte Carlo standard error sd / sqrt(N); we accept 4.5 of them.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import grid_posterior
from exact_worlds import ALPHA, TARGET, two_pieces_2d
from test_ensemble import MASS_GOAL, check_run

import pplevelset as pls
from pplevelset.errors import UserInputError
from pplevelset.model import ParticleDensity, level_set_model

Z_LIMIT = 4.5


def test_ensemble_kernel_under_pyro_mcmc_matches_the_grid(toy):
    num_particles, alpha = 2000, 10.0
    target = pls.parse_target("a=0.6", toy.classes)
    mcmc = pyro.infer.MCMC(
        pls.EnsembleKernel(level_set_model, seed=0), num_samples=20, warmup_steps=100, disable_progbar=True
    )
    mcmc.run(toy, target, alpha, num_particles)
    z = mcmc.get_samples()["z"]
    assert z.shape == (20, num_particles, 2)
    axis = np.linspace(-6, 6, 481)
    weights, points = grid_posterior(toy, target, alpha, [axis, axis])
    mean = weights @ points
    sd = np.sqrt(weights @ (points - mean) ** 2)
    scores = (z[-1].double().numpy().mean(0) - mean) / (sd / np.sqrt(num_particles))
    assert np.all(np.abs(scores) < Z_LIMIT), scores
    assert 0.1 < mcmc.diagnostics()["acceptance rate"]["chain 0"] < 0.9
    idata = pls.to_arviz(mcmc)  # a model with its own particles plate: the same layout as num_particles gives
    assert idata.posterior["z"].shape == (num_particles, 20, 2)
    assert idata.sample_stats["acceptance_rate"].shape == (num_particles, 20)


def beta_binomial(n):
    """Per particle: p ~ Beta(2, 2), 7 successes in 10 trials; posterior Beta(9, 5), mean 9/14."""
    with pyro.plate("particles", n):
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        pyro.sample("successes", dist.Binomial(10, p), obs=torch.full((n,), 7.0))


@pytest.mark.parametrize("kernel", [pls.EnsembleKernel, pls.BatchedRandomWalk])
def test_batched_kernels_on_a_plain_pyro_model_with_a_constrained_site(kernel):
    num_particles = 3000
    mcmc = pyro.infer.MCMC(kernel(beta_binomial, seed=1), num_samples=10, warmup_steps=150, disable_progbar=True)
    mcmc.run(num_particles)
    p = mcmc.get_samples()["p"][-1].double()
    assert ((p > 0) & (p < 1)).all()
    mean, sd = 9 / 14, np.sqrt(9 * 5 / (14**2 * 15))
    assert abs(float(p.mean()) - mean) < Z_LIMIT * sd / np.sqrt(num_particles), float(p.mean())
    assert abs(float(p.std()) - sd) < 0.1 * sd


def test_scoring_some_rows_equals_scoring_all_on_both_paths(toy):
    target = torch.stack([pls.parse_target(spec, toy.classes) for spec in ["a=0.8"] * 3 + ["b=0.8"] * 3])
    lean = ParticleDensity(level_set_model, (toy, target, 10.0, 6))
    traced = ParticleDensity(level_set_model, (toy, target, 10.0, 6), lean=False)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    whole = lean(z)
    for density in (lean, traced):
        for rows in (slice(0, 3), slice(3, 6)):
            part = density(z[rows], rows)
            assert torch.allclose(part.log_likelihood, whole.log_likelihood[rows], atol=1e-5)
            assert torch.allclose(part.log_prior, whole.log_prior[rows], atol=1e-5)
    assert not torch.allclose(whole.log_likelihood[:3], lean(z[3:], slice(0, 3)).log_likelihood)  # targets differ


def test_ensemble_kernel_with_rungs_under_pyro_mcmc_finds_the_piece_masses():
    """Replica exchange as a Pyro kernel: 3 rungs of 300 out of the model's 900 particles, the
    samples hold the beta = 1 rung, whose pieces get their exact masses (4.5 ESS-based standard
    errors and 0.02) with R-hat <= 1.05, as tests/test_replica.py asks of the same kernel."""
    world = two_pieces_2d()
    target = pls.parse_target(TARGET, world.classes)
    kernel = pls.EnsembleKernel(level_set_model, seed=0, rungs=3)
    mcmc = pyro.infer.MCMC(kernel, num_samples=300, warmup_steps=300, disable_progbar=True)
    mcmc.run(world, target, ALPHA, 900)
    z = mcmc.get_samples()["z"]
    assert z.shape == (300, 300, 2)
    masses, scores, rhat = check_run(z.transpose(0, 1), world.exact_masses(), world.piece)
    assert np.all(np.abs(scores) < Z_LIMIT), (masses, scores)
    assert np.all(np.abs(masses - world.exact_masses()) < MASS_GOAL), masses
    assert rhat <= 1.05, rhat
    swaps = mcmc.diagnostics()["swap acceptance"]["chain 0"]
    assert len(swaps) == 2 and all(0.2 < rate < 0.7 for rate in swaps), swaps
    ladder = mcmc.diagnostics()["betas"]["chain 0"]
    assert len(ladder) == 3 and ladder[0] == 1.0 and 1.0 > ladder[1] > ladder[2] > 0.0, ladder
    idata = pls.to_arviz(mcmc)
    assert idata.posterior["z"].shape == (300, 300, 2) and idata.sample_stats["lp"].shape == (300, 300)


def test_ensemble_kernel_rungs_must_divide_the_particles():
    with pytest.raises(UserInputError, match="rungs must be"):
        pls.EnsembleKernel(level_set_model, rungs=0)
    mcmc = pyro.infer.MCMC(pls.EnsembleKernel(level_set_model, rungs=4), 5, warmup_steps=5, disable_progbar=True)
    with pytest.raises(UserInputError, match="do not split into 4 rungs"):
        mcmc.run(two_pieces_2d(), pls.parse_target(TARGET, ("out", "in")), ALPHA, 30)
