"""LevelSetPosterior: metrics by hand, resampling, ArviZ export and the burn-in check."""

import warnings

import arviz as az
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

import pplevelset as pls
from pplevelset import metrics
from pplevelset.diagnostics import burn_in_check, convergence, population_convergence, run_warnings


@pytest.fixture(scope="module")
def post():
    return pls.sample("toy", "a=0.6", alpha=10, num_particles=40, warmup=60, steps=30, seed=0, progress=False)


def test_delta_confidence_hits_by_hand():
    target = torch.tensor([0.5, 0.5])
    predictions = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.4, 0.6]])
    # |0.5|+|0.5| + 0 + 0 + 0.1 + 0.1 = 1.2 over 3 samples x 2 classes
    assert metrics.delta(target, predictions) == pytest.approx(0.2)
    assert metrics.hits(target, predictions, eps=0.1) == 1  # TVs are 0.5, 0, 0.1 (not < 0.1)
    assert metrics.confidence(target, predictions) == pytest.approx(
        {"mean": (1 + 0.5 + 0.6) / 3, "min": 0.5, "max": 1.0}
    )
    assert metrics.confidence(torch.tensor([0.9, 0.1]), predictions)["min"] == pytest.approx(0.4)
    assert metrics.distinct_samples(torch.tensor([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]])) == 2


def test_final_states_predictions_and_images_agree(post, toy):
    assert post.z.shape == (40, 2)
    assert torch.allclose(post.predictions(), toy.predict(post.z), atol=1e-6)
    assert torch.equal(post.images(), post.z)
    assert torch.equal(post.z, post.traces["z"][:, -1])
    assert post.delta() == pytest.approx(metrics.delta(post.target, post.predictions()))


def test_resample_draws_with_replacement_reproducibly(post):
    kept = post.resample(100, seed=5)
    assert len(kept) == 100 and kept.distinct_samples() <= 40
    assert torch.equal(kept.z, post.z[kept.indices])
    assert torch.equal(kept.predictions(), post.predictions()[kept.indices])
    assert torch.equal(post.resample(100, seed=5).indices, kept.indices)
    assert not torch.equal(post.resample(100, seed=6).indices, kept.indices)
    with pytest.raises(ValueError, match="traces"):
        kept.to_arviz()


def test_netcdf_round_trip_and_arviz_tools(post, tmp_path):
    path = tmp_path / "posterior.nc"
    post.to_arviz().to_netcdf(str(path))
    idata = az.from_netcdf(str(path))
    assert set(idata.groups()) >= {"posterior", "sample_stats", "observed_data", "warmup_sample_stats"}
    assert idata.posterior["z"].dims == ("chain", "draw", "z_dim")
    assert idata.posterior.sizes == {"chain": 40, "draw": 30, "z_dim": 2, "class": 3}
    assert list(idata.posterior["class"].values) == ["a", "b", "c"]
    assert set(idata.sample_stats.data_vars) == {"lp", "acceptance_rate", "step_size"}
    # the log-likelihood group is keyed like observed_data, so az.loo finds it without arguments
    assert list(idata.log_likelihood.data_vars) == ["target"] == list(idata.observed_data.data_vars)
    np.testing.assert_array_equal(idata.log_likelihood["target"].values, post.traces["log_likelihood"].numpy())
    np.testing.assert_allclose(idata.observed_data["target"].values, post.target.numpy())
    assert idata.posterior.attrs["world"] == "toy" and idata.posterior.attrs["alpha"] == 10.0
    np.testing.assert_array_equal(idata.posterior["z"].values, post.traces["z"].numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning silenced: the schema is what ArviZ expects
        table = az.summary(idata, var_names=["z"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto-k warnings: a statement about the data, not the schema
        assert np.isfinite(az.loo(idata).elpd_loo)
    assert {"r_hat", "ess_bulk"} <= set(table.columns) and len(table) == 2
    axes = az.plot_trace(idata, var_names=["z"])
    assert axes.shape == (1, 2)
    matplotlib.pyplot.close("all")


def test_summary_has_the_contract_fields(post):
    summary = post.summary(keep=16)
    for key in (
        "world",
        "classes",
        "target",
        "alpha",
        "kernel",
        "num_particles",
        "warmup",
        "steps",
        "seed",
        "device",
        "elapsed_s",
        "delta",
        "mean_prediction",
        "confidence",
        "acceptance_rate",
        "rhat_max",
        "ess_bulk_min",
        "burn_in_ok",
        "distinct_samples",
        "versions",
    ):
        assert key in summary, key
    assert set(summary["confidence"]) == {"mean", "min", "max"}
    assert summary["delta"] == pytest.approx(post.resample(16, seed=0).delta())


def test_burn_in_check_flags_drift_and_passes_stationary_chains():
    rng = np.random.default_rng(0)
    stationary = rng.normal(size=(500, 200))
    assert burn_in_check(stationary, warmup=100).ok
    climbing = stationary + np.minimum(0, np.arange(200) - 60)[None, :] * 0.05  # rises for 60 steps
    verdict = burn_in_check(climbing, warmup=100)
    assert not verdict.ok and verdict.drift < 0
    assert "warmup=200" in verdict.message and "start" not in verdict.message
    # the batched MCMC kernels can also start from SMC's particles; the advice says so for them only
    assert "--start smc" in burn_in_check(climbing, warmup=100, kernel="ensemble").message
    assert "--start smc" not in burn_in_check(climbing, warmup=100, kernel="nuts").message
    assert "--start smc" not in burn_in_check(climbing, warmup=100, kernel="ensemble", start="smc").message
    one_chain = rng.normal(size=(1, 400)) + np.minimum(0, np.arange(400) - 100)[None, :] * 0.1
    assert not burn_in_check(one_chain, warmup=50).ok  # one chain: batch means see a climb this large
    assert burn_in_check(rng.normal(size=(1, 400)), warmup=50).ok


def test_burn_in_check_on_real_runs():
    far = "a=0.97"  # the prior puts little mass here: chains climb for a while
    short = pls.sample("toy", far, alpha=60, num_particles=400, warmup=0, steps=150, seed=0, progress=False)
    long = pls.sample("toy", far, alpha=60, num_particles=400, warmup=300, steps=150, seed=0, progress=False)
    assert not short.burn_in().ok
    assert long.burn_in().ok


def test_summary_warns_about_chains_that_barely_move():
    """Far target, high alpha and almost no warm-up: the step sizes never adapt (acceptance ~0.07)."""
    stuck = pls.sample(
        "toy", "a=0.97", alpha=100, num_particles=200, warmup=5, steps=100, seed=0, step_size=3.0, progress=False
    )
    warnings = stuck.summary()["warnings"]
    assert any("acceptance" in text for text in warnings), warnings
    healthy = pls.sample("toy", "a=0.6", alpha=10, num_particles=200, warmup=200, steps=400, seed=0, progress=False)
    assert healthy.summary()["warnings"] == []


def test_high_rhat_advice_follows_the_kernel_the_rungs_and_alpha():
    """R-hat above 1.1: the advice names the next step for this run, with 4 rungs at high alpha."""

    def advice(kernel, rungs=1, alpha=10.0):
        (text,) = run_warnings(kernel, 0.3, 1.3, 500, rungs, alpha)
        return text

    assert "--kernel ensemble --rungs 2" in advice("rwmh")
    assert "--kernel ensemble --rungs 4" in advice("rwmh", alpha=100.0)
    assert "--rungs 2)" in advice("ensemble")
    assert "--rungs 4)" in advice("ensemble", alpha=100.0)
    assert "use 4 rungs" in advice("ensemble", rungs=2, alpha=100.0)
    assert "add rungs" in advice("ensemble", rungs=2) and "add rungs" in advice("ensemble", rungs=4, alpha=100.0)
    assert "--warmup 1000 --start smc" in advice("ensemble", rungs=4, alpha=100.0)
    (had_one,) = run_warnings("ensemble", 0.3, 1.3, 500, 4, 100.0, start="smc")
    assert "--warmup 1000)" in had_one and "--start smc" not in had_one  # not offered twice
    assert "--warmup" not in advice("ensemble", rungs=2) and "--warmup" not in advice("ensemble", rungs=4)
    assert run_warnings("ensemble", 0.3, 1.05, 500, 2, 100.0) == []


def _shared_drift(seed: int, particles: int = 50, draws: int = 20_000, rho: float = 0.9) -> az.InferenceData:
    """Chains ``x[i, t] = c[t] + e[i, t]``: a drift ``c`` (AR(1), lag-one correlation ``rho``, variance
    1) that every particle shares, as an ensemble's do when the population's share on each piece moves
    as a whole, plus independent unit noise. The mean over particles is ``c`` plus ``N(0, 1 / n)``."""
    rng = np.random.default_rng(seed)
    innovations = rng.normal(size=draws) * np.sqrt(1 - rho**2)
    drift = np.empty(draws)
    drift[0] = rng.normal()
    for t in range(1, draws):
        drift[t] = rho * drift[t - 1] + innovations[t]
    return az.convert_to_inference_data({"z": (drift + rng.normal(size=(particles, draws)))[..., None]})


def test_population_ess_counts_the_drift_the_particles_share():
    """Exact values for the shared drift: the population mean's asymptotic variance is
    ``tau_c + 1/n`` with ``tau_c = (1 + rho) / (1 - rho) = 19``, its variance ``1 + 1/n``, the
    posterior's 2, so ``tau = 19.02 / 1.02`` draws and ``ESS = 2 T / 19.02``. Over 20 seeds the
    estimates' spread was 7% (tau) and 8% (ESS): 30% is about four of those. Per-particle ESS
    overstates it about 45x (the power check: the bug this function exists for)."""
    idata = _shared_drift(seed=0)
    found = population_convergence(idata)
    tau, ess = 19.02 / 1.02, 2 * 20_000 / 19.02
    assert found["tau_population_max"] == pytest.approx(tau, rel=0.3)
    assert found["ess_population_min"] == pytest.approx(ess, rel=0.3)
    assert convergence(idata)["ess_bulk_min"] > 20 * ess


def test_population_ess_of_independent_chains_is_their_ess():
    """Independent chains share nothing: the population's mean then carries all N T draws' precision
    (over 30 seeds the estimates' spread was 7% for both: 25% is about 3.5 of those)."""
    idata = az.convert_to_inference_data({"z": np.random.default_rng(1).normal(size=(50, 2000, 1))})
    found = population_convergence(idata)
    assert found["tau_population_max"] == pytest.approx(1.0, abs=0.25)
    assert found["ess_population_min"] == pytest.approx(50 * 2000, rel=0.25)


def test_warns_when_the_recorded_draws_span_few_autocorrelation_times():
    (text,) = run_warnings("ensemble", 0.3, 1.01, 500, 1, 10.0, tau_population=10.0, draws=100)
    assert "autocorrelation time of 10 draws" in text and "record at least 200 draws" in text
    assert run_warnings("ensemble", 0.3, 1.01, 500, 1, 10.0, tau_population=10.0, draws=200) == []
    assert run_warnings("rwmh", 0.3, 1.01, 500) == []


def test_ensemble_summary_reports_the_population_mean_and_rwmh_does_not(post):
    ensemble = pls.sample(
        "toy", "ambiguous", kernel="ensemble", num_particles=40, warmup=30, steps=40, seed=0, progress=False
    )
    summary = ensemble.summary()
    assert summary["ess_population_min"] > 0 and summary["tau_population_max"] >= 0.5
    # the run's warning reads the same tau and its 40 recorded draws
    warned = any("autocorrelation time" in text for text in summary["warnings"])
    assert warned == (40 < 20 * summary["tau_population_max"])
    assert "ess_population_min" not in post.summary()
