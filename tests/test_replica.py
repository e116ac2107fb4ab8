"""Replica exchange over ensembles (pplevelset.infer.replica) against exactly known posteriors.

Tolerances as in tests/test_ensemble.py: independent exact draws moved K steps must stay exact draws
(z-scores of piece fractions and moments below 4.5, each with probability ~7e-6 for a correct
kernel), and runs from the prior must put every piece's mass within 4.5 ESS-based standard errors
and 0.02 of exact. Power: a swap that ignores its acceptance probability moves hot draws into the
beta = 1 rung, and the same check fails.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import StopAt
from exact_worlds import pieces_5d, two_pieces_2d
from test_ensemble import MASS_GOAL, WORLDS, Z_LIMIT, band_density, check_run, iid_z_scores

import pplevelset as pls
from pplevelset.cli import main
from pplevelset.errors import UserInputError
from pplevelset.infer import ensemble, replica
from pplevelset.infer.config import RunConfig
from pplevelset.infer.driver import make_checkpoints, run
from pplevelset.infer.mcmc import initial_positions
from pplevelset.infer.resume import RunInterrupted

pytestmark = pytest.mark.filterwarnings("ignore:More chains")
LADDER = (1.0, 0.5, 0.25)


@pytest.fixture(autouse=True)
def one_thread(single_torch_thread):
    """Small batched ops run faster on one thread than on two contended ones."""


def gaps_of(ladder) -> torch.Tensor:
    log_beta = torch.log(torch.tensor(ladder))
    return torch.log(log_beta[:-1] - log_beta[1:])


def moved_exact_rungs(world, num=3000, steps=8, seed=0, ladder=LADDER):
    """Exact draws of every rung's tempered posterior, moved ``steps`` replica-exchange steps on the
    fixed ``ladder``: the rungs' positions and the mean swap acceptance."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.cat([world.exact_samples(num, generator, beta=beta) for beta in ladder])
    density = band_density(world, num * len(ladder))
    with torch.no_grad():
        state = replica.TemperedState(ensemble.init(z, density), gaps_of(ladder))
        swapped = 0.0
        for _ in range(steps):
            state, info = replica.step(generator, state, density)
            swapped += float(info.swap_prob.mean()) / steps
    return state.ensemble.z_unconstrained.reshape(len(ladder), num, -1), swapped


def test_the_ladder_is_built_from_its_gaps():
    assert torch.allclose(replica.betas(gaps_of(LADDER)), torch.tensor(LADDER))
    first = replica.betas(replica.first_gaps(4))
    assert torch.allclose(first, replica.FIRST_RATIO ** torch.arange(4.0))


@pytest.mark.parametrize("make_world", [two_pieces_2d, pieces_5d])
def test_replica_steps_leave_every_rungs_exact_posterior_invariant(make_world):
    world = make_world()
    rungs, swapped = moved_exact_rungs(world)
    assert swapped > 0.1, swapped  # states really moved between rungs
    for z, beta in zip(rungs, LADDER):
        scores = iid_z_scores(world, z, beta=beta)
        assert np.all(np.abs(scores) < Z_LIMIT), (beta, scores)


def test_invariance_check_catches_swaps_with_the_ratio_inverted(monkeypatch):
    world = two_pieces_2d()
    original = replica.swap

    def inverted(generator, state, beta, groups, parity):  # favours moving low likelihoods to beta = 1
        return original(generator, state, -beta, groups, parity)

    monkeypatch.setattr(replica, "swap", inverted)
    rungs, _ = moved_exact_rungs(world, ladder=(1.0, 0.1, 0.01))
    assert np.max(np.abs(iid_z_scores(world, rungs[0], beta=1.0))) > Z_LIMIT


def test_swap_exchanges_whole_states_with_the_metropolis_probability():
    """Two rungs of two particles: the pairing and acceptance by hand."""
    state = ensemble.EnsembleState(
        torch.tensor([[0.0], [1.0], [2.0], [3.0]]),
        torch.tensor([-1.0, -2.0, -3.0, -4.0]),
        torch.tensor([5.0, 1.0, 0.0, 9.0]),
        torch.tensor([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]),
        torch.ones(len(ensemble.MOVE_NAMES)),
        torch.tensor(ensemble.default_moves(1)),
    )
    beta = torch.tensor([1.0, 0.5])
    counts = torch.zeros(4, 4)
    probability = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(4000):
        new, swap_prob = replica.swap(generator, state, beta, groups=1, parity=0)
        for row in range(4):
            counts[row, int(new.z_unconstrained[row, 0])] += 1
        assert torch.equal(new.log_likelihood, state.log_likelihood[new.z_unconstrained[:, 0].long()])
        assert torch.equal(new.predictions, state.predictions[new.z_unconstrained[:, 0].long()])
        probability.append(float(swap_prob[0]))
    # particle 0 (log L 5) meets 2 (log L 0: accept e^-2.5) or 3 (log L 9: always), each half the time
    assert counts[0, 2] / 4000 == pytest.approx(0.5 * math.exp(-2.5), abs=0.015)
    assert counts[0, 3] / 4000 == pytest.approx(0.5, abs=0.03)
    expected = 0.5 * (math.exp(-2.5) + 1) / 2 + 0.5 * (math.exp(-0.5) + 1) / 2  # particle 1: log L 1
    assert np.mean(probability) == pytest.approx(expected, abs=0.01)
    assert torch.isnan(replica.swap(generator, state, beta, groups=1, parity=1)[1]).all()  # no odd pair


@pytest.mark.parametrize("world_name", list(WORLDS))
def test_replica_from_the_prior_finds_the_piece_masses_and_adapts_its_ladder(world_name):
    """Three rungs of 300 particles, 300 + 300 steps: every piece's mass within 4.5 ESS-based
    standard errors and 0.02 of exact, R-hat <= 1.05, every rung pair swapping at 0.4 +- 0.1."""
    world = WORLDS[world_name]()
    num, rungs = 300, 3
    density = band_density(world, num * rungs)
    generator = torch.Generator().manual_seed(0)
    algorithm = replica.algorithm(rungs)
    z = initial_positions(density, generator)
    with torch.no_grad():
        state = algorithm.init(z, density)
        adapt = algorithm.adaptation.init(state)
        trace, swaps = [], []
        for iteration in range(600):
            state, info = algorithm.step(generator, state, density)
            if iteration < 300:
                adapt, state = algorithm.adaptation.update(adapt, state, info)
                frozen = state.log_gaps.clone()
            else:
                cold, cold_info = algorithm.recorded(state, info)
                trace.append(cold.z_unconstrained)
                swaps.append(cold_info.swap_prob)
    assert torch.equal(state.log_gaps, frozen)  # the ladder stays fixed after warm-up
    trace = torch.stack(trace, 1)
    assert trace.shape == (num, 300, world.latent_dim)
    masses, scores, rhat = check_run(trace, world.exact_masses(), world.piece)
    assert np.all(np.abs(scores) < Z_LIMIT), (masses, scores)
    assert np.all(np.abs(masses - world.exact_masses()) < MASS_GOAL), masses
    assert rhat <= 1.05, rhat
    rates = torch.stack(swaps).mean(0)
    # every pair swaps at the target, or more often where its gap reached the prior (beta ~ 0)
    spans_to_prior = (replica.betas(frozen)[1:] < 1e-3) & (rates > replica.SWAP_TARGET)
    assert torch.all(((rates - replica.SWAP_TARGET).abs() < 0.1) | spans_to_prior), (rates, frozen)


def test_sample_and_sweep_record_the_beta_one_rung_only():
    post = pls.sample("toy", "ambiguous", kernel="ensemble", rungs=3, num_particles=30, warmup=20, steps=10)
    assert post.traces["z"].shape == (30, 10, 2) and post.z.shape == (30, 2)
    assert len(post.stats["swap_acceptance"]) == 2 and post.stats["betas"][0] == 1.0
    summary = post.summary(keep=8)
    assert summary["rungs"] == 3 and summary["betas"] == post.stats["betas"]
    weights = summary["move_weights"]  # the ensemble's, shared by all rungs: a distribution over the moves
    assert list(weights) == list(ensemble.MOVE_NAMES) and sum(weights.values()) == pytest.approx(1.0)
    result = pls.sweep(
        "toy", ["a=0.8", "b=0.8"], kernel="ensemble", rungs=2, particles_per_target=12, warmup=10, steps=5
    )
    for single in result:
        assert single.traces["z"].shape == (12, 5, 2)
        assert len(single.stats["batch_swap_acceptance"]) == 1
    assert result["a=0.8"].predictions()[:, 0].mean() > result["b=0.8"].predictions()[:, 0].mean()


def test_rungs_are_checked_once_for_every_front_door(tmp_path):
    with pytest.raises(UserInputError, match="rungs .* ensemble kernel only"):
        pls.sample("toy", "ambiguous", kernel="rwmh", rungs=2)
    with pytest.raises(UserInputError, match="rungs must be at least 1"):
        pls.sample("toy", "ambiguous", kernel="ensemble", rungs=0)
    with pytest.raises(UserInputError, match="rungs must be an integer"):
        pls.sample("toy", "ambiguous", kernel="ensemble", rungs=2.0)


def test_checkpoint_and_resume_bit_for_bit(tmp_path):
    settings = dict(kernel="ensemble", rungs=3, num_particles=12, warmup=15, steps=15, seed=4, progress=False)
    config = RunConfig.build("toy", "a=0.7", **settings)
    plain = run(config)
    checkpoints = make_checkpoints(config, tmp_path, every_steps=4)
    checkpoints.stop = StopAt(20)  # during the recorded steps: the swap counts are saved too
    with pytest.raises(RunInterrupted):
        run(config, checkpoints)
    resumed = pls.sample("toy", "a=0.7", resume=tmp_path, **settings)
    assert torch.equal(plain.z, resumed.z)
    assert all(torch.equal(plain.traces[k], resumed.traces[k]) for k in plain.traces)
    assert plain.stats == resumed.stats
    with pytest.raises(UserInputError, match="rungs = 3"):
        pls.sample("toy", "a=0.7", resume=tmp_path, **{**settings, "rungs": 2})


def test_cli_runs_rungs_and_refuses_them_for_other_kernels(tmp_path, capsys):
    small = ["--target", "ambiguous", "--particles", "12", "--warmup", "10", "--steps", "10", "--keep", "4", "--quiet"]
    assert main(["sample", "toy", *small, "--kernel", "ensemble", "--rungs", "3", "--out", str(tmp_path / "r")]) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["rungs"] == 3 and len(summary["swap_acceptance"]) == 2 and len(summary["betas"]) == 3
    capsys.readouterr()
    assert main(["sample", "toy", *small, "--kernel", "rwmh", "--rungs", "2", "--out", str(tmp_path / "x")]) == 2
    stderr = capsys.readouterr().err
    assert "ensemble kernel only" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
