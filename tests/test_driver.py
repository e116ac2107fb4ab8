"""The run configuration and the kernel contract: one validation, one draws structure, pinned numbers.

The pinned summaries were measured before the architecture refactor (one configuration, one kernel
contract, SMC from named parts, adaptation apart from the step) with the code of commit 9fe78d9; the
refactor kept every random draw in the same order, so the same seeds give the same numbers.
"""

import dataclasses

import pytest
import torch

import pplevelset as pls
from pplevelset.infer.config import RunConfig, SMCOptions
from pplevelset.infer.draws import Draws
from pplevelset.infer.driver import kernel_runner, run
from pplevelset.model import ParticleDensity, level_set_model

PINNED = {  # toy, "a=0.7", alpha 10, seed 3; summary(keep=16, seed=0)
    "rwmh": {
        "delta": 0.10383209586143494,
        "rhat_max": 1.496295937732303,
        "hits_tv_0.1": 89,
        "z_sum": 161.82579657435417,
        "mean_a": 0.6287375688552856,
    },
    "smc": {
        "delta": 0.097819983959198,
        "log_evidence": -0.5438675880432129,
        "hits_tv_0.1": 70,
        "z_sum": 154.37122249603271,
        "mean_a": 0.6183675527572632,
    },
    "nuts": {"delta": 0.07507357001304626, "hits_tv_0.1": 16, "z_sum": 36.16294448822737, "mean_a": 0.7313759326934814},
}
SETTINGS = {
    "rwmh": dict(num_particles=200, warmup=50, steps=30),
    "smc": dict(num_particles=200, populations=4),
    "nuts": dict(num_particles=40, warmup=20, steps=5),
}


@pytest.mark.parametrize("kernel", ["rwmh", "smc", "nuts"])
def test_the_same_seeds_give_the_numbers_pinned_before_the_refactor(kernel):
    post = pls.sample("toy", "a=0.7", alpha=10.0, kernel=kernel, seed=3, progress=False, **SETTINGS[kernel])
    summary = post.summary(keep=16, seed=0)
    observed = {key: summary.get(key) for key in PINNED[kernel]}
    observed["z_sum"] = float(post.z.double().sum())
    observed["mean_a"] = summary["mean_prediction"]["a"]
    assert observed == pytest.approx(PINNED[kernel], rel=1e-5)


def test_run_config_is_frozen_and_validated_once():
    config = RunConfig.build("toy", "ambiguous", num_particles=12, warmup=3, steps=4, progress=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.alpha = 2.0
    assert config.settings()["target"] == "ambiguous" and config.target.shape == (3,)
    assert isinstance(run(config), pls.LevelSetPosterior)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(alpha=float("nan")), "alpha"),
        (dict(alpha=True), "alpha"),
        (dict(num_particles=2.5), "integer"),
        (dict(num_particles=0), "at least 2"),
        (dict(warmup=-1), "warmup"),
        (dict(steps=0), "steps"),
        (dict(thin=0), "thin"),
        (dict(seed=-1), "seed"),
        (dict(step_size=0.0), "step_size"),
        (dict(step_size=float("inf")), "step_size"),
        (dict(kernel="hmc"), "unknown kernel"),
        (dict(device="mps"), "device"),
        (dict(kernel="smc", smc=SMCOptions(populations=3)), "populations"),
        (dict(kernel="smc", smc=SMCOptions(target_ess=1.0)), "ESS"),
        (dict(kernel="ensemble", num_particles=5), "at least 6 particles"),
    ],
)
def test_bad_settings_are_one_line_user_errors(settings, message):
    with pytest.raises(pls.UserInputError, match=message) as error:
        RunConfig.build("toy", "ambiguous", **settings)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("kernel", ["rwmh", "ensemble", "smc", "nuts"])
def test_every_kernel_returns_the_same_draws_structure(kernel):
    settings = {"nuts": dict(num_particles=8, warmup=4, steps=3)}.get(kernel, dict(num_particles=16, warmup=4, steps=3))
    config = RunConfig.build(
        "toy", "a=0.6", kernel=kernel, progress=False, smc=SMCOptions(populations=2, moves=2), **settings
    )
    density = ParticleDensity(level_set_model, (config.world, config.target, config.alpha, config.num_particles))
    draws = kernel_runner(kernel)(config, density, torch.Generator().manual_seed(0))
    assert isinstance(draws, Draws)
    n = config.num_particles
    assert draws.z.shape == (n, 2) and draws.predictions.shape == (n, 3)
    chains = 2 if kernel == "smc" else n
    assert draws.chains == ("populations" if kernel == "smc" else "particles")
    for name in ("z", "prediction_probs", "lp", "log_likelihood", "acceptance_rate", "step_size"):
        assert draws.traces[name].shape[0] == chains and draws.traces[name].device.type == "cpu", name
        assert torch.isfinite(draws.traces[name]).all(), name
    assert (draws.stages is not None) == (kernel == "smc")


def test_nuts_records_its_own_acceptance_step_size_and_divergences():
    post = pls.sample("toy", "a=0.6", kernel="nuts", num_particles=8, warmup=30, steps=20, seed=0, progress=False)
    accept = post.traces["acceptance_rate"]
    assert accept.shape == (8, 20) and ((accept >= 0) & (accept <= 1)).all()
    assert torch.equal(accept, accept[:1].expand_as(accept))  # one joint NUTS state: same for every particle
    assert 0.3 < float(accept.mean()) <= 1.0  # adapts toward 0.8
    assert post.warmup_traces["step_size"].shape == (8, 30)
    assert not torch.equal(post.warmup_traces["step_size"][0, :1], post.warmup_traces["step_size"][0, -1:])
    assert torch.equal(post.traces["step_size"], post.traces["step_size"][:, :1].expand_as(post.traces["step_size"]))
    assert set(post.traces["diverging"].unique().tolist()) <= {0.0, 1.0}
    assert post.stats["num_divergent"] == int(post.traces["diverging"][0].sum())
    # the recorded log densities are those of the recorded states
    density = ParticleDensity(level_set_model, (post.world, post.target, 10.0, 8))
    z = post.traces["z"][:, -1]
    assert torch.allclose(density(z).log_likelihood, post.traces["log_likelihood"][:, -1], atol=1e-5)
    assert "diverging" in post.to_arviz().sample_stats
