"""The batched random walk: reproducibility, invalid proposals, adaptation, and the Pyro adapter."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import HoleWorld, grid_posterior

import pplevelset as pls
from pplevelset.infer import rwmh
from pplevelset.infer.tempering import tempered
from pplevelset.model import ParticleDensity, level_set_model


def test_same_seed_gives_identical_traces_and_other_seeds_do_not():
    runs = [
        pls.sample("toy", "a=0.6", alpha=10, num_particles=64, warmup=20, steps=20, seed=seed, progress=False)
        for seed in (3, 3, 4)
    ]
    for name in ("z", "log_likelihood", "step_size", "acceptance_rate"):
        assert torch.equal(runs[0].traces[name], runs[1].traces[name])
    assert not torch.equal(runs[0].traces["z"], runs[2].traces["z"])


@pytest.mark.parametrize("kernel, settings", [("rwmh", {}), ("smc", {"populations": 2}), ("nuts", {})])
def test_sampling_leaves_the_global_rng_alone(kernel, settings):
    """The seed is the only source of randomness, and the caller's global RNGs come back as they were."""
    import random

    world = pls.load_world("toy")  # built first: constructing a world may draw (network initialisation)
    run = lambda seed: pls.sample(
        world, "ambiguous", num_particles=8, warmup=5, steps=5, seed=seed, kernel=kernel, progress=False, **settings
    )
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(6)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first = run(9)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    torch.manual_seed(999)
    assert torch.equal(first.traces["z"], run(9).traces["z"])


def test_invalid_proposals_are_rejected_counted_and_never_entered():
    post = pls.sample(HoleWorld(), "ambiguous", alpha=5, num_particles=256, warmup=50, steps=50, progress=False)
    assert post.stats["num_invalid_proposals"] > 0
    assert torch.isfinite(post.traces["log_likelihood"]).all()
    assert (post.traces["z"][..., 0] <= 1.0).all()  # initial states redrawn, NaN region never entered


def test_step_sizes_adapt_in_warmup_and_freeze_after():
    post = pls.sample("toy", "ambiguous", alpha=10, num_particles=200, warmup=100, steps=50, progress=False)
    warm, sample = post.warmup_traces["step_size"], post.traces["step_size"]
    assert not torch.equal(warm[:, 0], warm[:, -1])
    assert torch.equal(sample, sample[:, :1].expand_as(sample))
    assert 0.15 < float(post.traces["acceptance_rate"].mean()) < 0.35


def test_step_is_a_pure_function_of_its_inputs(toy):
    target = pls.parse_target("ambiguous", toy.classes)
    density = ParticleDensity(level_set_model, (toy, target, 10.0, 16))
    state = rwmh.init(torch.zeros(16, 2), density, 0.5)
    first = rwmh.step(torch.Generator().manual_seed(0), state, density)
    second = rwmh.step(torch.Generator().manual_seed(0), state, density)
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        assert torch.equal(a, b)
    assert torch.equal(state.z_unconstrained, torch.zeros(16, 2))  # the input state is untouched


def test_tempered_prior_ignores_impossible_likelihood():
    log_prior = torch.tensor([-1.0, -2.0])
    log_likelihood = torch.tensor([-float("inf"), 0.5])
    assert torch.equal(tempered(log_prior, log_likelihood, 0.0), log_prior)
    assert torch.equal(tempered(log_prior, log_likelihood, torch.tensor([0.0, 0.5])), torch.tensor([-1.0, -1.75]))


def test_adaptation_is_separate_from_the_step(toy):
    """The step never changes step sizes; the adaptation pair moves them toward the target acceptance."""
    target = pls.parse_target("ambiguous", toy.classes)
    density = ParticleDensity(level_set_model, (toy, target, 10.0, 64))
    state = rwmh.init(torch.zeros(64, 2), density, 0.5)
    new_state, info = rwmh.step(torch.Generator().manual_seed(0), state, density)
    assert torch.equal(new_state.step_size, state.step_size)
    adaptation = rwmh.adaptation(target_accept=0.234)
    adapt_state = adaptation.init(new_state)
    adapt_state, adapted = adaptation.update(adapt_state, new_state, info)
    expected = state.step_size * torch.exp(info.acceptance_prob - 0.234)  # gain (0 + 1)^-0.6 = 1 at t = 0
    assert torch.allclose(adapted.step_size, expected) and adapt_state.iteration == 1
    assert torch.equal(adapted.z_unconstrained, new_state.z_unconstrained)


def test_thinning_keeps_every_kth_step_of_the_same_chain():
    full = pls.sample("toy", "a=0.6", num_particles=16, warmup=10, steps=12, seed=4, progress=False)
    thinned = pls.sample("toy", "a=0.6", num_particles=16, warmup=10, steps=12, thin=5, seed=4, progress=False)
    assert thinned.traces["z"].shape == (16, 3, 2)  # steps 0, 5 and 10
    for name in ("z", "log_likelihood", "acceptance_rate", "step_size"):
        assert torch.equal(thinned.traces[name], full.traces[name][:, ::5])
    assert torch.equal(thinned.z, full.z)  # the final state is the last step, kept or not
    assert thinned.to_arviz().posterior.sizes["draw"] == 3


def test_pyro_mcmc_runs_the_batched_kernel_and_matches_the_grid(toy):
    """The adapter under pyro.infer.MCMC: shapes, and the last sample's particles against the exact
    posterior (4.5 Monte Carlo standard errors, as in test_correctness.py)."""
    num_particles, alpha = 2000, 10.0
    target = pls.parse_target("a=0.6", toy.classes)
    pyro.set_rng_seed(0)
    mcmc = pyro.infer.MCMC(
        pls.BatchedRandomWalk(level_set_model, seed=0), num_samples=60, warmup_steps=200, disable_progbar=True
    )
    mcmc.run(toy, target, alpha, num_particles)
    z = mcmc.get_samples()["z"]
    assert z.shape == (60, num_particles, 2)
    assert 0.1 < mcmc.diagnostics()["acceptance rate"]["chain 0"] < 0.4
    axis = np.linspace(-6, 6, 481)
    weights, points = grid_posterior(toy, target, alpha, [axis, axis])
    mean = weights @ points
    sd = np.sqrt(weights @ (points - mean) ** 2)
    z_scores = (z[-1].double().numpy().mean(0) - mean) / (sd / np.sqrt(num_particles))
    assert np.all(np.abs(z_scores) < 4.5), z_scores


def test_adapter_works_for_any_plated_model():
    """A plain Pyro model with a positive site: MCMC returns constrained samples."""

    def model(n):
        with pyro.plate("particles", n):
            scale = pyro.sample("scale", dist.LogNormal(0.0, 0.5))
            pyro.sample("obs", dist.Normal(0.0, scale), obs=torch.full((n,), 1.5))

    mcmc = pyro.infer.MCMC(pls.BatchedRandomWalk(model, seed=1), num_samples=20, warmup_steps=50, disable_progbar=True)
    mcmc.run(300)
    assert (mcmc.get_samples()["scale"] > 0).all()


def test_kernel_needs_a_particles_plate():
    def model():
        pyro.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="plate"):
        ParticleDensity(model)
