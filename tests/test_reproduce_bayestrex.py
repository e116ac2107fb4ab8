"""`pplevelset reproduce bayestrex`: the whole code path on the toy world and toy stand-ins for the
adversarial and novel-class worlds (seconds), and its statistics on hand-made predictions."""

import json

import pytest
import torch

import pplevelset as pls
from pplevelset.reproduce import EXPERIMENTS
from pplevelset.reproduce import bayestrex as experiment
from pplevelset.worlds.toy import ToyWorld


class ToyAdversarial(ToyWorld):
    """The toy world as if its generator had never seen class c; its own classifier is the reference."""

    name, excluded_class, reference_classes = "toy-adversarial", "c", ("a", "b", "c")

    def reference_classify(self, x):
        return self.classify(x)


class ToyNovel(ToyWorld):
    """A classifier that never saw class c (a and b renormalised); the full toy classifier is the reference."""

    name, excluded_class, reference_classes, classes = "toy-novel", "c", ("a", "b", "c"), ("a", "b")

    def classify(self, x):
        probs = super().classify(x)[..., :2]
        return probs / probs.sum(-1, keepdim=True)

    def reference_classify(self, x):
        return super().classify(x)


TINY = experiment.Sizes(
    particles_per_target=8,
    warmup=4,
    steps=4,
    worlds=("toy", "missing-world"),
    adversarial=("toy-adversarial",),
    novel=("toy-novel",),
    prior_samples=300,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pls.register("toy-adversarial", ToyAdversarial, overwrite=True)
    pls.register("toy-novel", ToyNovel, overwrite=True)
    out = tmp_path_factory.mktemp("bayestrex") / "report"
    assert experiment.run(out, sizes=TINY) == out
    return out, json.loads((out / "bayestrex.json").read_text())


def test_registered_with_the_other_experiments():
    assert EXPERIMENTS["bayestrex"] == "pplevelset.reproduce.bayestrex:run"


def test_report_has_every_experiment_under_both_likelihoods(tiny_run):
    out, numbers = tiny_run
    report = (out / "report.md").read_text()
    for heading in (
        "High confidence per class",
        "Ambiguous pairs",
        "Graded confidence",
        "In-distribution adversarial examples",
        "Novel-class extrapolation",
    ):
        assert f"## {heading}" in report
    assert "(custom sizes)" in report and "`missing-world`" in report and (out / "graded.png").stat().st_size > 1000
    assert numbers["skipped"] == ["missing-world"]
    for table in ("high_confidence", "pairs", "graded", "adversarial", "novel"):
        for by_likelihood in numbers[table].values():
            assert set(by_likelihood) == {"dirichlet", "normal"}
    corners = numbers["high_confidence"]["toy"]["normal"]
    assert set(corners) == {"a", "b", "c"} and all(0 <= c["mean_p"] <= 1 for c in corners.values())
    assert set(numbers["pairs"]["toy"]["dirichlet"]) == {"avb"}
    assert len(numbers["graded"]["toy"]["normal"]["rows"]) == 11


def test_adversarial_and_novel_numbers_are_consistent(tiny_run):
    _, numbers = tiny_run
    adversarial = numbers["adversarial"]["toy-adversarial"]["dirichlet"]
    # the reference is the classifier itself: everything it calls c with p_c >= 0.9 is c
    assert adversarial["excluded_class"] == "c" and adversarial["posterior"]["reference_says_c"] in (1.0, None)
    assert adversarial["prior"]["reference_says_c"] == 1.0 and adversarial["prior"]["instead"] == {}
    novel = numbers["novel"]["toy-novel"]["normal"]
    prior = novel["prior"]
    assert novel["novel_class"] == "c" and 0 < prior["k_samples"] < prior["samples"] == 300
    assert set(prior["assigned"]) <= {"a", "b"} and abs(sum(prior["assigned"].values()) - 1) < 1e-3


def test_pair_numbers_by_hand():
    probs = torch.tensor([[0.5, 0.4, 0.1], [0.45, 0.45, 0.1]])
    numbers = experiment.pair_numbers(probs, 0, 1)
    assert numbers["mean_abs_diff"] == pytest.approx(0.05) and numbers["mean_margin"] == pytest.approx(0.325)
    assert numbers["within_0.1_share"] == 0.0  # margins 0.3 and 0.35 are more than 0.1 below 0.5
    assert experiment.composition(torch.tensor([2, 2, 0]), ["x", "y", "z"]) == {"z": 0.6667, "x": 0.3333}


def test_datasets_and_pairs():
    digits = tuple("0123456789")
    assert experiment.dataset(digits) == "mnist" and experiment.pairs_of(digits)[0] == ("1", "7")
    assert experiment.dataset(experiment.FASHION) == "fashion"
    assert experiment.pairs_of(("a", "b", "c")) == (("a", "b"),)
