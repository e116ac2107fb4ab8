"""`pplevelset reproduce mnist`: the experiment's code path at tiny sizes, its helpers, and --quick (slow)."""

import json
import math

import pytest
import torch

from pplevelset.errors import UserInputError
from pplevelset.reproduce import mnist as experiment

TINY = experiment.Sizes(
    num_particles=8,
    warmup=3,
    steps=10,
    smc_particles=8,
    populations=2,
    moves=1,
    study_alphas=(10.0, 100.0),
    study_worlds=("vae",),
    study_particles=4,
    study_warmup=2,
    study_steps=4,
    study_smc_particles=8,
    prior_samples=40,
    tsne_points=8,
    grid_images=4,
    trace_figures=False,
)
CELL_KEYS = (
    "delta",
    "alpha",
    "num_particles",
    "steps",
    "warmup",
    "distinct_samples",
    "hits",
    "rhat_max",
    "ess_bulk_min",
    "burn_in_ok",
    "burn_in",
    "paper_delta",
    "distinct_hits",
    "far_from_target",
    "distinct_within_0.05",
    "likelihood_weighted_distinct",
    "class_composition",
    "delta_best_found",
    "prior_delta",
    "acceptance_rate",
)
SMC_KEYS = (
    "delta",
    "num_particles",
    "distinct_samples",
    "hits",
    "distinct_hits",
    "log_evidence",
    "log_evidence_per_population",
    "num_temperatures",
    "distinct_within_0.05",
    "class_composition",
    "elapsed_s",
    "rhat_max",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist") / "report"
    assert experiment.run(out, sizes=TINY) == out
    return out


def test_report_figures_and_table1(tiny_run):
    report = (tiny_run / "report.md").read_text()
    assert "## Table 1" in report and "| ambiguous | 1.83% |" in report and "| 8vs9 | 7.66% |" in report
    assert "(custom sizes)" in report and "Choice of alpha" in report and "SMC beside MH" in report
    expected = {
        f"{kernel}-{prior}-{target}.png"
        for kernel in ("mh", "smc")
        for prior in experiment.WORLDS
        for target in experiment.TARGETS
    } | {"tsne-vae.png", "tsne-gan.png", "alpha-study.png"}
    written = {path.name for path in tiny_run.glob("*.png")}
    assert written == expected
    for name in written:
        assert f"]({name})" in report and (tiny_run / name).stat().st_size > 1000

    table = json.loads((tiny_run / "table1.json").read_text())
    for prior in ("vae", "gan"):
        for target in ("ambiguous", "1vs7", "8vs9"):
            cell = table[prior][target]
            assert set(CELL_KEYS) <= set(cell), set(CELL_KEYS) - set(cell)
            assert 0 < cell["delta"] < 1 and cell["paper_delta"] == experiment.PAPER_DELTA[prior][target]
            assert cell["alpha"] == experiment.ALPHA and cell["num_particles"] == 8 and cell["steps"] == 10
            assert 1 <= cell["distinct_samples"] <= 8 and 0 <= cell["hits"] <= 8
            assert cell["delta_best_found"] <= cell["delta_all_particles"]
            smc = table["smc"][prior][target]
            assert set(SMC_KEYS) <= set(smc), set(SMC_KEYS) - set(smc)
            assert math.isfinite(smc["log_evidence"]) and 0 < smc["delta"] < 1
    assert table["smc"]["num_particles"] == 8 and table["smc"]["populations"] == 2
    study = table["alpha_study"]
    assert study["alphas"] == [10.0, 100.0] and "gan" not in study
    for target in ("ambiguous", "1vs7", "8vs9"):
        for alpha in ("10", "100"):
            entry = study["vae"][target][alpha]
            assert 0 < entry["rwmh"]["delta"] < 1 and 0 < entry["smc"]["delta"] < 1
            assert 0 < entry["dirichlet_tolerance"] < 0.1
    assert table["settings"]["num_particles"] == 8 and table["elapsed_s"] > 0 and "reproduce mnist" in table["command"]


def test_existing_out_is_refused_without_overwrite(tiny_run):
    before = (tiny_run / "table1.json").read_text()
    with pytest.raises(UserInputError, match="already exists"):
        experiment.run(tiny_run, sizes=TINY)
    assert (tiny_run / "table1.json").read_text() == before


def test_helpers():
    uniform = torch.full((10,), 0.1)
    assert experiment.dirichlet_tolerance(uniform, 100.0) < experiment.dirichlet_tolerance(uniform, 10.0)
    z = torch.tensor([[0.0, 0.0], [0.01, 0.0], [1.0, 1.0]])
    assert experiment.distinct_within(z, 0.05) == 2 and experiment.distinct_within(z, 1e-4) == 3
    predictions = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.52, 0.48]])
    target = torch.tensor([0.5, 0.5])
    assert experiment.likelihood_weighted_distinct(target, predictions, 1000.0, 100) <= 2  # the far one weighs ~0
    assert experiment.class_composition(predictions, ("a", "b")) == {"a": 1.0}


@pytest.mark.slow
def test_cli_quick(tmp_path):
    from pplevelset.cli import main

    out = tmp_path / "quick"
    assert main(["reproduce", "mnist", "--quick", "--out", str(out)]) == 0
    table = json.loads((out / "table1.json").read_text())
    assert table["settings"]["num_particles"] == experiment.QUICK.num_particles
    assert table["vae"]["1vs7"]["delta"] < table["prior_baseline"]["vae"]["1vs7"]["delta"]
    assert (out / "tsne-vae.png").is_file() and "--quick" in (out / "report.md").read_text()
