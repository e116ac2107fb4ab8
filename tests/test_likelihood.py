"""The Normal likelihood (Bayes-TrEx's): its density by hand, the lean path against the Pyro trace,
the exact posterior on the toy world, and its validation."""

import math

import numpy as np
import pytest
import torch
from test_correctness import AXIS, Z_LIMIT

import pplevelset as pls
from pplevelset.cli import main
from pplevelset.model import ParticleDensity, level_set_model

NORMAL = {"likelihood": "normal", "sigma": 0.05}


def normal_log_likelihood(target: np.ndarray, probs: np.ndarray, sigma: float) -> np.ndarray:
    """sum_i log Normal(target_i; probs_i, sigma), written out by hand."""
    return (-0.5 * ((target - probs) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)).sum(-1)


def positions(density: ParticleDensity, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return density.sample_prior()


def test_normal_log_likelihood_is_the_hand_computation(toy):
    target = pls.parse_target("a=0.7", toy.classes)
    density = ParticleDensity(level_set_model, (toy, target, 10.0, 64), NORMAL)
    flat = positions(density)
    scored = density(flat)
    probs = toy.predict(flat).double().numpy()
    expected = normal_log_likelihood(target.double().numpy(), probs, 0.05)
    np.testing.assert_allclose(scored.log_likelihood.double().numpy(), expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("kwargs", [{}, {"likelihood": "dirichlet"}, NORMAL, {"likelihood": "normal", "sigma": 0.2}])
@pytest.mark.parametrize("matrix", [False, True])
def test_lean_path_equals_the_pyro_trace(toy, kwargs, matrix):
    target = pls.parse_target("ambiguous", toy.classes)
    if matrix:  # a target per particle, as a sweep has it, scored half at a time as the ensemble does
        rows = [pls.parse_target(spec, toy.classes) for spec in ("a=0.7", "b=0.9")]
        target = torch.stack(rows).repeat_interleave(8, 0)
    lean = ParticleDensity(level_set_model, (toy, target, 10.0, 16), kwargs)
    traced = ParticleDensity(level_set_model, (toy, target, 10.0, 16), kwargs, lean=False)
    assert lean.lean and not traced.lean
    flat = positions(lean, seed=3)
    for rows in (None, slice(8, 16)):
        part = flat if rows is None else flat[rows]
        for a, b in zip(lean(part, rows), traced(part, rows)):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-5)


def test_the_dirichlet_default_is_unchanged_bit_for_bit(toy):
    target = pls.parse_target("a=0.7", toy.classes)
    plain = ParticleDensity(level_set_model, (toy, target, 10.0, 32))
    named = ParticleDensity(level_set_model, (toy, target, 10.0, 32), {"likelihood": "dirichlet", "sigma": 0.3})
    flat = positions(plain)
    assert torch.equal(plain(flat).log_likelihood, named(flat).log_likelihood)


def grid_normal_posterior(world, target, sigma):
    mesh = np.meshgrid(AXIS, AXIS, indexing="ij")
    points = np.stack([m.ravel() for m in mesh], -1)
    with torch.no_grad():
        log_prior = world.prior().log_prob(torch.as_tensor(points, dtype=torch.float32)).double().numpy()
        probs = world.predict(torch.as_tensor(points, dtype=torch.float32)).double().numpy()
    log_post = log_prior + normal_log_likelihood(target.double().numpy(), probs, sigma)
    weights = np.exp(log_post - log_post.max())
    return weights / weights.sum(), points, probs


def z_scores(post, world, target, sigma):
    """(sample mean - exact mean) / MC standard error, for z and for the mass of each argmax region."""
    weights, points, probs = grid_normal_posterior(world, target, sigma)
    mean = weights @ points
    sd = np.sqrt(weights @ (points - mean) ** 2)
    regions = np.array([weights[probs.argmax(-1) == k].sum() for k in range(len(world.classes))])
    n = len(post)
    mean_z = (post.z.double().numpy().mean(0) - mean) / (sd / np.sqrt(n))
    labels = post.predictions().argmax(-1).numpy()
    observed = np.array([(labels == k).mean() for k in range(len(world.classes))])
    safe = np.clip(regions * (1 - regions), 1e-12, None)
    return np.concatenate([mean_z, (observed - regions) / np.sqrt(safe / n)])


@pytest.fixture(scope="module")
def normal_run():
    world = pls.load_world("toy")
    # sigma 0.05 makes the level set a thin band: rwmh chains from the prior need a long warm-up to
    # reach it (at 250 steps the particle mean is still ~8 standard errors off; at 1,500 it is within 1)
    post = pls.sample(world, "a=0.5", num_particles=3000, warmup=1500, steps=50, seed=1, progress=False, **NORMAL)
    return world, post


def test_rwmh_matches_the_grid_posterior_under_the_normal_likelihood(normal_run):
    world, post = normal_run
    scores = z_scores(post, world, pls.parse_target("a=0.5", world.classes), 0.05)
    assert np.all(np.abs(scores) < Z_LIMIT), scores


def test_the_tolerance_has_power_against_another_sigma(normal_run):
    world, post = normal_run
    assert np.max(np.abs(z_scores(post, world, pls.parse_target("a=0.5", world.classes), 0.1))) > Z_LIMIT


def test_summary_and_inference_data_record_the_likelihood(normal_run):
    _, post = normal_run
    summary = post.summary(keep=16)
    assert summary["likelihood"] == "normal" and summary["sigma"] == 0.05
    attrs = post.to_arviz().posterior.attrs
    assert attrs["likelihood"] == "normal" and attrs["sigma"] == 0.05
    plain = pls.sample("toy", "a=0.7", num_particles=8, warmup=2, steps=2, progress=False).summary(keep=4)
    assert plain["likelihood"] == "dirichlet" and plain["sigma"] is None


def test_sweep_and_nuts_take_the_normal_likelihood(toy):
    result = pls.sweep(toy, ["a=0.7", "b=0.9"], particles_per_target=8, warmup=2, steps=2, progress=False, **NORMAL)
    assert all(post.settings["likelihood"] == "normal" for post in result)
    post = pls.sample(toy, "a=0.7", num_particles=2, warmup=3, steps=3, kernel="nuts", progress=False, **NORMAL)
    assert post.settings["sigma"] == 0.05 and torch.isfinite(post.traces["log_likelihood"]).all()


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"likelihood": "cauchy"}, "unknown likelihood"),
        ({"likelihood": "normal", "sigma": 0.0}, "sigma must be a finite positive number"),
        ({"likelihood": "normal", "sigma": float("nan")}, "sigma must be a finite positive number"),
        ({"likelihood": "normal", "sigma": float("inf")}, "sigma must be a finite positive number"),
        ({"likelihood": "normal", "sigma": True}, "sigma must be a finite positive number"),
        ({"likelihood": "normal", "sigma": 1e-30}, "too small for float32"),
    ],
)
def test_bad_likelihood_settings_are_one_line_user_errors(settings, message):
    with pytest.raises(pls.UserInputError, match=message) as info:
        pls.RunConfig.build("toy", "ambiguous", **settings)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "toy", "--target", "ambiguous", "--likelihood", "cauchy"],
        ["sample", "toy", "--target", "ambiguous", "--likelihood", "normal", "--sigma", "0"],
        ["sample", "toy", "--target", "ambiguous", "--likelihood", "normal", "--sigma", "nan"],
        ["sweep", "toy", "--targets", "corners", "--likelihood", "normal", "--sigma", "-1"],
    ],
)
def test_cli_refuses_bad_likelihood_settings_with_exit_2(tmp_path, capsys, argv):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("likelihood" in err or "sigma" in err)
    assert not (tmp_path / "out").exists()


def test_cli_sample_writes_the_likelihood_into_the_run_directory(tmp_path, capsys):
    import json

    import arviz as az

    out = tmp_path / "run"
    argv = [
        "sample",
        "toy",
        "--target",
        "a=0.7",
        "--likelihood",
        "normal",
        "--sigma",
        "0.1",
        "--particles",
        "8",
        "--warmup",
        "2",
        "--steps",
        "2",
        "--keep",
        "4",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "Normal likelihood, sigma 0.1" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["likelihood"] == "normal" and summary["sigma"] == 0.1
    attrs = az.from_netcdf(out / "posterior.nc").posterior.attrs
    assert attrs["likelihood"] == "normal" and attrs["sigma"] == 0.1
