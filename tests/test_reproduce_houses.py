"""`pplevelset reproduce houses`: the experiment's code path at tiny sizes, its helpers, and sampling sanity."""

import json

import pytest
import torch

import pplevelset as pls
from pplevelset.cli import main
from pplevelset.errors import UserInputError
from pplevelset.reproduce import houses as experiment
from pplevelset.worlds.houses.priors import sample_labelled

TINY = experiment.Sizes(
    particles=8,
    warmup=10,
    steps=10,
    prior_samples=100,
    smc_particles=8,
    smc_populations=2,
    smc_moves=2,
    grid_images=4,
    circle_pairs=2,
    seed=3,
)
LEVEL_SETS = ("house", "rocket", "ambiguous")
FIGURES = (
    "fig1_house.png",
    "fig1_rocket.png",
    "fig1_ambiguous.png",
    "fig3_latents.png",
    "circles.png",
    "smc_vs_mh.png",
    "trace_ambiguous.png",
    "trace_smc_ambiguous.png",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce") / "houses"
    assert experiment.run(out, sizes=TINY) == out
    return out


def fraction(value):
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_tiny_run_writes_report_figures_and_numbers(tiny_run):
    report = (tiny_run / "report.md").read_text()
    assert report.startswith("# Rockets or houses")
    assert "| quantity | ours | paper |" in report and "94.9% (84.1%)" in report
    for figure in FIGURES:
        assert (tiny_run / figure).stat().st_size > 1000, figure
        assert f"]({figure})" in report
    numbers = json.loads((tiny_run / "houses.json").read_text())
    assert (numbers["alpha"], numbers["particles"], numbers["steps"], numbers["warmup"], numbers["seed"]) == (
        10.0,
        8,
        10,
        10,
        3,
    )
    for name in LEVEL_SETS:
        level_set = numbers[name]
        for key in ("confidence_mean", "confidence_min", "delta", "posterior_fraction", "prior_fraction"):
            assert fraction(level_set[key]), (name, key)
        assert level_set["confidence_min"] <= level_set["confidence_mean"]
        assert level_set["prior_hits"] == numbers["house"]["prior_hits"]  # one prior sample, counted once
        assert 0 <= level_set["prior_hits"] <= 100 and 0 <= level_set["posterior_hits"] <= 8
        assert -1 <= level_set["confidence_shift"] <= 1 and -1 <= level_set["accuracy_shift"] <= 1
        circles = numbers["circles"][name]
        assert circles["confidence_shift"] == pytest.approx(circles["confidence_with"] - circles["confidence_without"])
        assert circles["accuracy_shift"] == pytest.approx(circles["accuracy_with"] - circles["accuracy_without"])
        smc = numbers["smc"][name]
        assert fraction(smc["delta"]) and 1 <= smc["distinct_final"] <= 8
        assert isinstance(smc["log_evidence"], float) and smc["num_temperatures"] >= 1
        assert fraction(smc["house_component_fraction"]) and smc["elapsed_s"] >= 0
    assert numbers["ambiguous"]["confidence_mean"] >= 0.5  # a top-class probability of two classes
    assert numbers["paper"]["house"]["confidence_mean"] == 0.949


def test_existing_out_is_refused_without_overwrite(tiny_run):
    with pytest.raises(UserInputError, match="already exists"):
        experiment.run(tiny_run, sizes=TINY)


def test_existing_out_is_refused_before_any_sampling(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "load_world", lambda *a, **k: pytest.fail("sampled before checking --out"))
    (tmp_path / "out").mkdir()
    with pytest.raises(UserInputError):
        experiment.run(tmp_path / "out", sizes=TINY)


def test_most_probable_component_of_the_prototypes():
    prototypes = torch.tensor([[30.0, 10.0, 8.0], [10.0, 30.0, 8.0]])
    assert experiment.most_probable_component(prototypes).tolist() == [0, 1]
    with_circle = torch.cat([prototypes, torch.tensor([[20.0, 30.0, 30.0]] * 2)], -1)
    assert experiment.most_probable_component(with_circle).tolist() == [0, 1]


def test_most_probable_component_recovers_most_labels():
    z, labels = sample_labelled(2000, torch.Generator().manual_seed(5))
    assert (experiment.most_probable_component(z) == labels).float().mean() > 0.95


def test_accuracy_and_ambiguous_hits():
    z = torch.tensor([[30.0, 10.0, 8.0], [10.0, 30.0, 8.0]])
    probs = torch.tensor([[0.52, 0.48], [0.9, 0.1]])
    assert experiment.accuracy(probs, z) == 0.5
    assert experiment.ambiguous_hits(probs) == 1


def test_likelihood_profile():
    ambiguous = experiment.likelihood_profile(0.5)
    assert ambiguous["mode_p_house"] == pytest.approx(0.5, abs=1e-3)
    assert 0.55 < ambiguous["mean_top_probability"] < 0.7
    house, rocket = experiment.likelihood_profile(0.999), experiment.likelihood_profile(0.001)
    assert house["mode_p_house"] == pytest.approx(1 - rocket["mode_p_house"], abs=1e-3)
    assert 0.95 < house["mode_p_house"] < 0.999


def test_log_dirichlet_matches_torch():
    probs = torch.tensor([[0.3, 0.7], [0.9, 0.1]])
    target = torch.tensor([0.5, 0.5])
    expected = torch.distributions.Dirichlet(10.0 * probs.double()).log_prob(target.double())
    torch.testing.assert_close(experiment.log_dirichlet(target, probs), expected)


# -- issue 3: sampling moves the house probability the right way -----------------------------------


@pytest.fixture(scope="module")
def houses():
    return pls.load_world("houses")


@pytest.fixture(scope="module")
def prior_house_probability(houses):
    z, _ = sample_labelled(2000, torch.Generator().manual_seed(11))  # 2,000 prior draws, seeded
    with torch.no_grad():
        return float(houses.predict(z)[:, 0].mean())


@pytest.mark.parametrize("spec, higher", [("house=0.999", True), ("rocket=0.999", False)])
def test_confident_targets_move_the_house_probability(houses, prior_house_probability, spec, higher):
    post = pls.sample(houses, spec, alpha=10.0, num_particles=64, warmup=60, steps=10, seed=0, progress=False)
    mean = float(post.predictions()[:, 0].mean())
    assert 0.3 < prior_house_probability < 0.7
    if higher:
        assert mean > prior_house_probability + 0.3
    else:
        assert mean < prior_house_probability - 0.3


@pytest.mark.slow
def test_reproduce_houses_quick_through_the_cli(tmp_path):
    out = tmp_path / "houses"
    assert main(["reproduce", "houses", "--quick", "--out", str(out)]) == 0
    numbers = json.loads((out / "houses.json").read_text())
    assert numbers["quick"] is True and numbers["particles"] == experiment.QUICK.particles
    assert numbers["ambiguous"]["posterior_fraction"] > numbers["ambiguous"]["prior_fraction"]
    assert numbers["house"]["confidence_mean"] > 0.9 and numbers["rocket"]["confidence_mean"] > 0.9
    assert all((out / figure).is_file() for figure in FIGURES)
