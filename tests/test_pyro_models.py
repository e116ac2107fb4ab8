"""Plain Pyro models (no particles plate) vectorized by ``num_particles=N``, against exact posteriors.

Tolerance. Each run gives N particle chains of S recorded draws. For every scalar quantity we
estimate the posterior mean and sd from all N x S draws, and ArviZ gives their Monte Carlo
standard errors from the bulk ESS (particles as chains, so autocorrelation within a chain and
disagreement between chains both count): ``mcse_mean ~ sd / sqrt(ESS)``. Where the answer is a
stored reference run (eight schools) its own MC error adds in quadrature. A quantity passes when
``|estimate - exact| < 4.5 * mcse``: at most a 7e-6 chance per comparison for a correct sampler, so
a few dozen comparisons stay below 1e-3 together, and the seeds are fixed, so no run flakes.

Power. The same statistic must reject a wrong answer: moving every exact mean by a quarter of
its posterior sd (or stretching every sd by 25%) must push some comparison past 4.5 MC errors,
i.e. every run has ESS large enough (roughly > (4.5 / 0.25)^2 = 324) to see an error that size.

The machine these run on is shared; the models are tiny, so torch runs them on one thread.
"""

import json

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro_examples import EXAMPLES, REFERENCE, scalar_draws
from torch.distributions import biject_to

import pplevelset as pls
from pplevelset.infer.pyro_kernels import vectorize
from pplevelset.model import ParticleDensity

Z_LIMIT = 4.5
SHIFT = 0.25  # the wrong posterior of the power check: means moved, sds stretched, by this many sds


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_chains(kernel, example, num_samples, warmup_steps):
    mcmc = pyro.infer.MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, disable_progbar=True)
    mcmc.run(*example.args)
    return mcmc


def z_scores(
    draws: dict[str, np.ndarray],
    exact: dict[str, tuple[float, float]],
    reference_mcse: dict[str, tuple[float, float]] | None = None,
) -> dict[str, tuple[float, float]]:
    """``(mean z, sd z)`` per quantity: the error of each estimate over its Monte Carlo standard error."""
    scores = {}
    for name, values in draws.items():
        dataset = {"x": values}
        mcse_mean = float(az.mcse(dataset, method="mean")["x"])
        mcse_sd = float(az.mcse(dataset, method="sd")["x"])
        ref_mean, ref_sd = reference_mcse[name] if reference_mcse else (0.0, 0.0)
        mean, sd = exact[name]
        scores[name] = (
            (values.mean() - mean) / np.hypot(mcse_mean, ref_mean),
            (values.std() - sd) / np.hypot(mcse_sd, ref_sd),
        )
    return scores


def assert_matches_and_has_power(example, mcmc, exact=None, reference_mcse=None):
    samples = {name: np.swapaxes(value.double().numpy(), 0, 1) for name, value in mcmc.get_samples().items()}
    draws = scalar_draws(example, samples)
    exact = exact or example.exact()
    scores = z_scores(draws, exact, reference_mcse)
    assert all(abs(z_mean) < Z_LIMIT and abs(z_sd) < Z_LIMIT for z_mean, z_sd in scores.values()), scores
    shifted = {name: (mean + SHIFT * sd, sd) for name, (mean, sd) in exact.items()}
    stretched = {name: (mean, (1 + SHIFT) * sd) for name, (mean, sd) in exact.items()}
    wrong_mean = z_scores(draws, shifted, reference_mcse)
    wrong_sd = z_scores(draws, stretched, reference_mcse)
    assert all(abs(wrong_mean[name][0]) > Z_LIMIT for name in exact), wrong_mean
    assert all(abs(wrong_sd[name][1]) > Z_LIMIT for name in exact), wrong_sd


@pytest.mark.parametrize(
    "kernel, num_samples, warmup", [(pls.BatchedRandomWalk, 200, 200), (pls.EnsembleKernel, 40, 60)]
)
def test_beta_bernoulli_from_pyros_own_tests_matches_the_exact_beta(kernel, num_samples, warmup):
    example = EXAMPLES["beta_bernoulli"]
    mcmc = run_chains(kernel(example.model, num_particles=200, seed=0), example, num_samples, warmup)
    assert mcmc.get_samples()["p_latent"].shape == (num_samples, 200, 2)
    assert_matches_and_has_power(example, mcmc)


def test_normal_mean_in_a_data_plate_matches_the_conjugate_posterior():
    example = EXAMPLES["normal_mean"]
    mcmc = run_chains(pls.BatchedRandomWalk(example.model, num_particles=200, seed=1), example, 200, 200)
    assert mcmc.get_samples()["mu"].shape == (200, 200)
    assert_matches_and_has_power(example, mcmc)


def test_constrained_global_and_local_latents_match_the_grid():
    example = EXAMPLES["hierarchical_scale"]
    mcmc = run_chains(pls.BatchedRandomWalk(example.model, num_particles=200, seed=2), example, 300, 300)
    samples = mcmc.get_samples()
    assert samples["tau"].shape == (300, 200) and samples["mu"].shape == (300, 200, 6)
    assert (samples["tau"] > 0).all()
    assert_matches_and_has_power(example, mcmc)


def test_eight_schools_matches_a_long_pyro_nuts_reference():
    example = EXAMPLES["eight_schools"]
    reference = json.loads(REFERENCE.read_text())["moments"]  # benchmarks/pyro_models.py --reference
    mcse = {name: (entry["mcse_mean"], entry["mcse_sd"]) for name, entry in reference.items()}
    mcmc = run_chains(pls.BatchedRandomWalk(example.model, num_particles=400, seed=3), example, 800, 600)
    assert_matches_and_has_power(example, mcmc, reference_mcse=mcse)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_vectorized_density_is_the_sum_of_single_model_densities(name):
    """Per particle, the batched log density equals the unvectorized model's log joint (with the
    Jacobian) at that particle's values: the particle dim is found and every other dim summed."""
    example, num = EXAMPLES[name], 5
    vectorized, singletons = vectorize(example.model, num, example.args)
    density = ParticleDensity(vectorized, example.args)
    flat = torch.randn(num, density.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5
    scored = density(flat.float())
    for i, values in enumerate(_rows(density, flat, singletons)):
        trace = poutine.trace(poutine.condition(example.model, data=values["constrained"])).get_trace(*example.args)
        expected = float(trace.log_prob_sum()) + values["jacobian"]
        assert float(scored.log_prior[i] + scored.log_likelihood[i]) == pytest.approx(expected, rel=1e-4, abs=1e-3)


def _rows(density, flat, singletons):
    """Each particle's constrained site values in the unvectorized model's shapes, and its log Jacobian."""
    for row in flat:
        constrained, jacobian = {}, 0.0
        for name, value in density.unpack(row[None].float()).items():
            value = value.reshape(value.shape[1 + singletons[name] :]).double()
            transform = density.transforms[name]
            constrained[name] = transform(value).float()
            jacobian += float(transform.log_abs_det_jacobian(value, transform(value)).sum())
        yield {"constrained": constrained, "jacobian": jacobian}


def particles_rightmost(data):
    """A plate model of the old kind, particles at dim -1 and data at dim -2: log_prob ``(10, N)``."""
    with pyro.plate("particles", 4, dim=-1):
        p = pyro.sample("p", dist.Beta(2.0, 2.0))
        with pyro.plate("data", len(data), dim=-2):
            pyro.sample("obs", dist.Bernoulli(p), obs=data[:, None].expand(len(data), 4))


def test_a_plate_model_with_the_particle_dim_rightmost_sums_the_data_dim():
    data = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0])
    density = ParticleDensity(particles_rightmost, (data,))
    p = torch.tensor([0.2, 0.5, 0.7, 0.9])
    scored = density(biject_to(dist.Beta(2.0, 2.0).support).inv(p)[:, None])
    expected = dist.Bernoulli(p[:, None]).log_prob(data).sum(-1)
    assert torch.allclose(scored.log_likelihood, expected, atol=1e-5)


def test_a_model_that_has_the_plate_refuses_num_particles():
    with pytest.raises(pls.UserInputError, match="already has pyro.plate"):
        run_chains(pls.BatchedRandomWalk(particles_rightmost, num_particles=4), EXAMPLES["normal_mean"], 1, 1)


def expands_to_a_fixed_shape(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    theta = pyro.sample("theta", dist.Normal(mu, 1.0).expand([3]).to_event(1))
    pyro.sample("y", dist.Normal(theta, 1.0).to_event(1), obs=y)


def concatenates_a_fixed_tensor(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    loc = torch.cat([mu, torch.zeros(1)])
    pyro.sample("y", dist.Normal(loc, 1.0).to_event(1), obs=y)


def reshapes_in_a_sample_statement(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
    pyro.sample("scale", dist.LogNormal(mu.reshape(-1), 1.0))
    pyro.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


def sums_over_what_it_thinks_is_data(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.sample("y", dist.Normal(mu.sum(), 1.0), obs=y.sum())  # runs vectorized, but couples the particles


@pytest.mark.parametrize(
    "model, site",
    [
        (expands_to_a_fixed_shape, "theta"),
        (concatenates_a_fixed_tensor, "y"),
        (reshapes_in_a_sample_statement, "scale"),
        (sums_over_what_it_thinks_is_data, "y"),
    ],
)
def test_a_model_that_cannot_be_vectorized_gets_one_line_naming_the_site(model, site):
    model(torch.zeros(3))  # runs fine alone
    kernel = pls.BatchedRandomWalk(model, num_particles=7)
    with pytest.raises(pls.UserInputError, match=f"site '{site}'") as raised:
        pyro.infer.MCMC(kernel, num_samples=1, warmup_steps=0, disable_progbar=True).run(torch.zeros(3))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("num_particles", [0, -3, 2.5])
def test_num_particles_must_be_a_positive_integer(num_particles):
    with pytest.raises(pls.UserInputError, match="num_particles"):
        pls.EnsembleKernel(EXAMPLES["normal_mean"].model, num_particles=num_particles)


def test_to_arviz_puts_particles_in_chains_and_steps_in_draws():
    example = EXAMPLES["hierarchical_scale"]
    mcmc = run_chains(pls.BatchedRandomWalk(example.model, num_particles=16, seed=0), example, 7, 5)
    idata = pls.to_arviz(mcmc)
    assert idata.posterior.sizes["chain"] == 16 and idata.posterior.sizes["draw"] == 7
    assert idata.posterior["tau"].shape == (16, 7) and idata.posterior["mu"].shape == (16, 7, 6)
    np.testing.assert_array_equal(idata.posterior["mu"].values, np.swapaxes(mcmc.get_samples()["mu"].numpy(), 0, 1))
    for name in ("lp", "acceptance_rate", "step_size"):
        assert idata.sample_stats[name].shape == (16, 7), name
    assert np.isfinite(idata.sample_stats["lp"].values).all()
    assert az.from_pyro(mcmc).posterior.sizes["chain"] == 1  # what the helper is for
