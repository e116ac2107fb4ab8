"""Sweeps: the target-family grammar, many targets in one batch (each group against its own exact
posterior), the sweep directory (index, figures, resume, failures) and the command line.

Tolerances follow tests/test_correctness.py: after warm-up the particles of a group are independent
chains, so their final states are n independent draws of that group's posterior; a coordinate mean
has standard error sd / sqrt(n) and a region of mass p a fraction with standard error
sqrt(p (1 - p) / n). Every check is |estimate - exact| < 4.5 standard errors (probability ~7e-6
each for a correct sampler; the seeds are fixed). SMC's final particles are correlated through
resampling: its standard errors are doubled (tests/test_smc.py measured about 2x), and its log
evidence must be within 0.15 nats of the grid's. Power: the same draws checked against a
neighbouring group's target fail, so a batch that mixed up which rows carry which target would fail.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import grid_posterior
from test_correctness import AXIS, Z_LIMIT, z_scores

import pplevelset as pls
from pplevelset.audit import execute as execute_module
from pplevelset.audit.batched import sweep
from pplevelset.audit.plan import SweepSettings, build_plan, read_spec
from pplevelset.cli import main
from pplevelset.errors import UserInputError
from pplevelset.infer import ensemble
from pplevelset.model import ParticleDensity, level_set_model
from pplevelset.targets import FAMILY_FLOOR, expand_targets

pytestmark = pytest.mark.filterwarnings("ignore:More chains")
DIGITS = [str(i) for i in range(10)]
TARGETS = ["a=0.7", "ambiguous", "b=0.7"]
ALPHA = 20.0


@pytest.fixture(autouse=True)
def one_thread(single_torch_thread):
    """Small batched ops run faster on one thread than on two contended ones."""


# -- the grammar ---------------------------------------------------------------------------------


def test_graded_family_runs_from_floor_to_one_minus_floor():
    targets = expand_targets("graded:house", ["house", "rocket"])
    assert len(targets) == 11
    p_house = [float(t.vector[0]) for t in targets]
    assert p_house[0] == pytest.approx(FAMILY_FLOOR) and p_house[-1] == pytest.approx(1 - FAMILY_FLOOR)
    assert p_house[1:-1] == pytest.approx([k / 10 for k in range(1, 10)], abs=1e-6)
    for target in targets:
        assert float(target.vector.sum()) == pytest.approx(1, abs=1e-6) and bool((target.vector > 0).all())
        assert torch.equal(pls.parse_target(target.spec, ["house", "rocket"]), target.vector)  # spec round-trips


def test_graded_one_class_spreads_the_rest_and_two_classes_keep_a_floor():
    one = expand_targets("graded:3", DIGITS)
    assert float(one[4].vector[3]) == pytest.approx(0.4) and torch.allclose(
        one[4].vector[[0, 9]], torch.tensor(0.6 / 9)
    )
    two = expand_targets("graded:1,7", DIGITS)
    assert len(two) == 11
    others = [k for k in range(10) if k not in (1, 7)]
    for target in two:
        assert torch.allclose(target.vector[others], torch.tensor(FAMILY_FLOOR), atol=1e-7)
    assert float(two[0].vector[1]) == pytest.approx(FAMILY_FLOOR) and float(two[-1].vector[7]) == pytest.approx(
        FAMILY_FLOOR
    )
    assert two[5].params == {"class": "1", "other": "7", "level": 0.5, "value": pytest.approx(0.496)}


def test_pairs_and_corners():
    pairs = expand_targets("pairs", DIGITS)
    assert len(pairs) == 45 and len({t.spec for t in pairs}) == 45
    assert pairs[0].spec == "0=0.46,1=0.46" and pairs[0].params["classes"] == ["0", "1"]
    assert float(pairs[0].vector[5]) == pytest.approx(0.01)
    assert expand_targets("pairs", ["house", "rocket"])[0].vector.tolist() == [0.5, 0.5]
    corners = expand_targets("corners", ["a", "b", "c"])
    assert [t.spec for t in corners] == ["a=0.999", "b=0.999", "c=0.999"]


def test_a_target_file_and_lists(tmp_path):
    path = tmp_path / "targets.txt"
    path.write_text("# my audit\na=0.7\n\nambiguous   # uniform\ncorners\n")
    specs = [t.spec for t in expand_targets(f"file:{path}", ["a", "b", "c"])]
    assert specs == ["a=0.7", "ambiguous", "a=0.999", "b=0.999", "c=0.999"]
    assert [t.spec for t in expand_targets(str(path), ["a", "b", "c"])] == specs
    assert len(expand_targets(["pairs", "a=0.5"], ["a", "b", "c"])) == 4


@pytest.mark.parametrize(
    "spec, message",
    [
        ("graded", "graded needs a class"),
        ("graded:zz", "unknown class 'zz'"),
        ("graded:a,a", "must differ"),
        ("graded:a,b,c", "graded:A or graded:A,B"),
        ("graded:", "graded:A or graded:A,B"),
        ("pairs:3", "unknown target family"),
        ("corners=1", "unknown class"),
        ("file:/no/such/file.txt", "does not exist"),
        ("a=2", "every entry must be > 0"),
    ],
)
def test_bad_families_are_one_line_user_errors(spec, message):
    with pytest.raises(UserInputError, match=message) as info:
        expand_targets(spec, ["a", "b", "c"])
    assert "\n" not in str(info.value)


def test_a_bad_line_in_a_target_file_names_its_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a=0.7\nq=0.5\n")
    with pytest.raises(UserInputError, match=r"t.txt:2: unknown class 'q'"):
        expand_targets(f"file:{path}", ["a", "b", "c"])
    path.write_text("# nothing\n")
    with pytest.raises(UserInputError, match="has no targets"):
        expand_targets(f"file:{path}", ["a", "b", "c"])


# -- one batch, many targets: each group against its own exact posterior ---------------------------


def exact_check(post, spec, scale=1.0, alpha=ALPHA):
    target = pls.parse_target(spec, post.world.classes)
    return np.abs(z_scores(post, post.world, target, alpha, [AXIS, AXIS])) / scale


def test_rwmh_sweep_each_group_matches_its_own_exact_posterior(toy):
    result = sweep(
        toy,
        TARGETS,
        particles_per_target=3000,
        kernel="rwmh",
        alpha=ALPHA,
        warmup=250,
        steps=50,
        seed=1,
        progress=False,
    )
    assert [post.settings["target"] for post in result] == TARGETS
    for k, post in enumerate(result):
        assert len(post) == 3000
        assert np.all(exact_check(post, TARGETS[k]) < Z_LIMIT), (TARGETS[k], exact_check(post, TARGETS[k]))
        # power: the same draws against the next group's target fail clearly
        assert exact_check(post, TARGETS[(k + 1) % 3]).max() > 3 * Z_LIMIT


def exact_draws(world, spec, count, generator, alpha=ALPHA):
    """Exact posterior draws: grid points by their weights, jittered uniformly within their cell."""
    weights, points = grid_posterior(world, pls.parse_target(spec, world.classes), alpha, [AXIS, AXIS])
    index = torch.multinomial(torch.as_tensor(weights), count, replacement=True, generator=generator)
    cell = AXIS[1] - AXIS[0]
    jitter = (torch.rand(count, 2, generator=generator, dtype=torch.float64) - 0.5) * cell
    return (torch.as_tensor(points)[index] + jitter).float()


def test_grouped_ensemble_steps_leave_each_groups_exact_posterior_invariant(toy):
    """Start every group at exact draws of its own target; 20 grouped ensemble steps (all four move
    types) must leave each group distributed as its own posterior."""
    n, generator = 2000, torch.Generator().manual_seed(3)
    z = torch.cat([exact_draws(toy, spec, n, generator) for spec in TARGETS])
    matrix = torch.stack([pls.parse_target(spec, toy.classes) for spec in TARGETS]).repeat_interleave(n, 0)
    density = ParticleDensity(level_set_model, (toy, matrix, ALPHA, 3 * n))
    state = ensemble.init(z, density)
    for _ in range(20):
        state, info = ensemble.step(generator, state, density, groups=3)
    assert float(info.acceptance_prob.mean()) > 0.1
    for k, spec in enumerate(TARGETS):
        rows = slice(k * n, (k + 1) * n)
        post = pls.LevelSetPosterior(
            toy, pls.parse_target(spec, toy.classes), {}, state.z_unconstrained[rows], state.predictions[rows]
        )
        assert np.all(exact_check(post, spec) < Z_LIMIT), (spec, exact_check(post, spec))
        assert exact_check(post, TARGETS[(k + 1) % 3]).max() > 3 * Z_LIMIT


def test_ensemble_sweep_from_the_prior_matches_each_exact_posterior(toy):
    result = sweep(
        toy,
        TARGETS,
        particles_per_target=1000,
        kernel="ensemble",
        alpha=ALPHA,
        warmup=120,
        steps=10,
        seed=2,
        progress=False,
    )
    for k, post in enumerate(result):
        assert np.all(exact_check(post, TARGETS[k]) < Z_LIMIT), (TARGETS[k], exact_check(post, TARGETS[k]))


def test_smc_sweep_each_group_matches_its_posterior_and_evidence(toy):
    result = sweep(toy, TARGETS, particles_per_target=2000, kernel="smc", alpha=ALPHA, seed=0, progress=False)
    for k, post in enumerate(result):
        assert post.chains == "populations" and post.traces["z"].shape[:2] == (4, 500)
        assert np.all(exact_check(post, TARGETS[k], scale=2.0) < Z_LIMIT), (TARGETS[k], exact_check(post, TARGETS[k]))
        assert exact_check(post, TARGETS[(k + 1) % 3], scale=2.0).max() > 3 * Z_LIMIT
        _, _, log_z = grid_posterior(toy, pls.parse_target(TARGETS[k], toy.classes), ALPHA, [AXIS, AXIS], evidence=True)
        assert abs(post.stats["log_evidence"] - log_z) < 0.15, (TARGETS[k], post.stats["log_evidence"], log_z)
        assert (
            post.stages["beta"][:, -1].eq(1.0).all() and post.stats["num_temperatures"] == post.stages["beta"].shape[1]
        )


def test_an_smc_start_puts_each_targets_particles_on_its_own_level_set(toy):
    """``start="smc"`` tempers one population per target and rung: each group's warm-up begins on its
    own level set (its first log-likelihood within 1 nat of its last), and after a few steps each group
    matches its own exact posterior, with SMC's doubled standard errors (its particles are correlated
    through resampling); power as above, against the next group's target."""
    result = sweep(
        toy,
        TARGETS,
        particles_per_target=1000,
        kernel="ensemble",
        rungs=2,
        alpha=ALPHA,
        warmup=10,
        steps=5,
        seed=3,
        progress=False,
        start="smc",
    )
    for k, post in enumerate(result):
        first, last = (float(post.warmup_traces["log_likelihood"][:, i].mean()) for i in (0, -1))
        assert abs(first - last) < 1.0, (TARGETS[k], first, last)
        assert np.all(exact_check(post, TARGETS[k], scale=2.0) < Z_LIMIT), (TARGETS[k], exact_check(post, TARGETS[k]))
        assert exact_check(post, TARGETS[(k + 1) % 3], scale=2.0).max() > 3 * Z_LIMIT
        assert post.settings["start"] == "smc" and post.stats["batch_start_temperatures"] >= 2  # the batch's


@pytest.mark.parametrize("kernel", ["rwmh", "smc"])
def test_one_target_sweep_is_the_single_run_bit_for_bit(toy, kernel):
    """A sweep reuses the kernels: with one target it is exactly ``pls.sample``."""
    single = pls.sample(
        toy, "a=0.6", alpha=10, num_particles=40, warmup=30, steps=10, kernel=kernel, seed=4, progress=False
    )
    swept = sweep(
        toy, "a=0.6", particles_per_target=40, alpha=10, warmup=30, steps=10, kernel=kernel, seed=4, progress=False
    )[0]
    assert torch.equal(single.z, swept.z) and torch.equal(single.predictions(), swept.predictions())
    assert single.settings == swept.settings


def test_grouped_proposals_stay_inside_their_group():
    """Groups far apart: every move type proposes near the particle's own group only."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([0.0, 1000.0, -1000.0])
    z = torch.randn(3, 20, 2, generator=generator) + centres[:, None, None]
    complement = torch.randn(3, 20, 2, generator=generator) + centres[:, None, None]
    for kind in range(len(ensemble.MOVE_NAMES)):
        proposal, ratio = ensemble._propose(generator, z, complement, kind, torch.ones(len(ensemble.MOVE_NAMES)))
        assert ((proposal - centres[:, None, None]).abs() < 50).all(), ensemble.MOVE_NAMES[kind]
        assert torch.isfinite(ratio).all()


def test_sweep_posteriors_have_everything_a_single_run_has(toy):
    result = sweep(toy, "corners", particles_per_target=12, kernel="ensemble", warmup=20, steps=10, progress=False)
    post = result["b=0.999"]
    summary = post.summary(keep=8)
    assert summary["target_spec"] == "b=0.999" and summary["num_particles"] == 12 and summary["kernel"] == "ensemble"
    assert summary["batch"]["targets"] == 3 and summary["batch"]["particles"] == 36
    idata = post.to_arviz()
    assert idata.posterior.sizes["chain"] == 12 and idata.observed_data["target"].values.tolist() == pytest.approx(
        post.target.tolist()
    )
    assert len(post.resample(5)) == 5


def test_bad_sweep_settings_are_user_errors(toy):
    with pytest.raises(UserInputError, match="cannot run a sweep"):
        sweep(toy, "corners", kernel="nuts")
    with pytest.raises(UserInputError, match="at least 6"):
        sweep(toy, "corners", kernel="ensemble", particles_per_target=5)
    with pytest.raises(UserInputError, match="no targets"):
        sweep(toy, [], particles_per_target=10)


# -- the sweep directory --------------------------------------------------------------------------

SMALL = SweepSettings(particles_per_target=16, warmup=20, steps=10, keep=8)


def test_local_sweep_writes_items_index_and_figures_and_resumes(tmp_path, monkeypatch):
    plan = build_plan(["toy"], ["a=0.3", "corners"], seeds=[0], settings=SMALL)
    out = tmp_path / "sweep"
    rows = execute_module.execute(plan, out, progress=False, log=lambda text: None)
    assert len(rows) == 4 and all(row["status"] == "done" for row in rows)
    for name in ("plan.json", "sweep.json", "sweep.csv", "samples.png"):
        assert (out / name).is_file(), name
    index = json.loads((out / "sweep.json").read_text())["items"]
    row = index[0]
    for key in (
        "world",
        "target",
        "target_spec",
        "kernel",
        "seed",
        "delta",
        "mean_prediction",
        "confidence",
        "hits_tv_0.1",
        "rhat_max",
        "status",
        "run_dir",
    ):
        assert key in row, key
    summary = json.loads((out / row["run_dir"] / "summary.json").read_text())
    assert summary["delta"] == row["delta"] and summary["target_spec"] == row["target_spec"] == "a=0.3"
    assert {p.name for p in (out / row["run_dir"]).iterdir()} >= {
        "summary.json",
        "posterior.nc",
        "samples.png",
        "trace.png",
    }
    assert (out / "sweep.csv").read_text().count("\n") == 5

    # resume: nothing left to run
    monkeypatch.setattr(execute_module, "run_chunk", lambda *a, **k: pytest.fail("a finished sweep reran"))
    assert execute_module.execute(plan, out, progress=False, log=lambda text: None) == rows
    monkeypatch.undo()
    # an item lost: its batch reruns with the same seed, and gives the same numbers
    import shutil

    shutil.rmtree(out / row["run_dir"])
    again = execute_module.execute(plan, out, progress=False, log=lambda text: None)
    assert again[0]["delta"] == row["delta"] and again[0]["mean_prediction"] == row["mean_prediction"]
    # a different sweep in the same folder is refused (--overwrite would start it afresh)
    other = build_plan(["toy"], ["corners"], settings=SMALL)
    with pytest.raises(UserInputError, match="holds a different sweep"):
        execute_module.execute(other, out, progress=False, log=lambda text: None)
    execute_module.prepare(out, other, overwrite=True)
    assert not (out / row["run_dir"]).exists() and (out / "plan.json").is_file()


def test_a_failing_batch_is_reported_and_the_others_are_kept(tmp_path):
    plan = build_plan(["toy", "sweep_worlds:BrokenToy"], ["a=0.5", "b=0.5"], settings=SMALL)
    rows = execute_module.execute(plan, tmp_path / "s", progress=False, log=lambda text: None)
    assert [row["status"] for row in rows] == ["done"] * 2 + ["failed"] * 2
    assert "injected failure" in rows[-1]["error"]
    csv_text = (tmp_path / "s" / "sweep.csv").read_text()
    assert "failed" in csv_text and "injected failure" in csv_text


def test_smc_sweep_index_has_log_evidence_and_the_pairs_matrix(tmp_path):
    plan = build_plan(["toy"], ["pairs"], settings=SweepSettings(kernel="smc", particles_per_target=40, keep=8))
    rows = execute_module.execute(plan, tmp_path / "s", progress=False, log=lambda text: None)
    assert all(math.isfinite(row["log_evidence"]) for row in rows)
    assert (tmp_path / "s" / "pairs.png").is_file()


def fake_rows(family, targets, classes, params):
    rows = []
    for target, param in zip(targets, params):
        vector = pls.parse_target(target, classes)
        rows.append(
            {
                "world": "w",
                "family": family,
                "family_params": param,
                "seed": 0,
                "kernel": "rwmh",
                "status": "done",
                "classes": list(classes),
                "target": vector.tolist(),
                "target_spec": target,
                "mean_prediction": dict(zip(classes, vector.tolist())),
                "delta": 0.05,
                "hits_tv_0.1": 3,
                "num_particles": 10,
                "log_evidence": -1.0,
            }
        )
    return rows


def test_graded_and_pairs_figures_from_index_rows(tmp_path):
    from pplevelset.audit.figures import write_figures

    graded = expand_targets("graded:a", ["a", "b", "c"])
    pairs = expand_targets("pairs", ["a", "b", "c"])
    rows = fake_rows("graded:a", [t.spec for t in graded], ["a", "b", "c"], [t.params for t in graded]) + fake_rows(
        "pairs", [t.spec for t in pairs], ["a", "b", "c"], [t.params for t in pairs]
    )
    written = write_figures(tmp_path, [dict(row, world="nowhere-world") for row in rows])  # no samples grid
    assert {path.name for path in written} == {"graded.png", "pairs.png"}


def test_toml_spec_worlds_targets_seeds(tmp_path, capsys):
    spec = tmp_path / "audit.toml"
    spec.write_text(
        'worlds = ["toy"]\ntargets = ["a=0.7", "ambiguous"]\nseeds = [0, 1]\n'
        "particles_per_target = 12\nwarmup = 10\nsteps = 5\nkeep = 4\n"
        f'out = "{tmp_path / "from-spec"}"\n'
    )
    assert read_spec(spec)["seeds"] == [0, 1]
    assert main(["sweep", str(spec), "--quiet"]) == 0
    index = json.loads((tmp_path / "from-spec" / "sweep.json").read_text())["items"]
    assert len(index) == 4 and sorted({row["seed"] for row in index}) == [0, 1]
    assert index[0]["num_particles"] == 12
    assert "4 of 4 items done" in capsys.readouterr().out


def test_cli_sweep_end_to_end(tmp_path, capsys):
    out = tmp_path / "g"
    assert (
        main(
            [
                "sweep",
                "toy",
                "--targets",
                "corners",
                "--particles-per-target",
                "10",
                "--warmup",
                "10",
                "--steps",
                "5",
                "--keep",
                "4",
                "--kernel",
                "ensemble",
                "--rungs",
                "2",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "3 of 3 items done" in capsys.readouterr().out
    assert (out / "samples.png").is_file() and len(json.loads((out / "sweep.json").read_text())["items"]) == 3
    summaries = [json.loads(path.read_text()) for path in out.glob("*/summary.json")]
    assert len(summaries) == 3 and all(s["rungs"] == 2 and len(s["batch_swap_acceptance"]) == 1 for s in summaries)
    assert all(list(s["batch_move_weights"]) == list(ensemble.MOVE_NAMES) for s in summaries)


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep", "toy", "--targets", "graded:zz"], "unknown class 'zz'"),
        (["sweep", "toy", "--targets", "pairs", "--kernel", "nuts"], "cannot run a sweep"),
        (["sweep", "toy"], "needs --targets"),
        (["sweep", "nope", "--targets", "pairs"], "unknown world"),
        (["sweep", "toy", "--targets", "pairs", "--backend", "spark"], "unknown backend"),
        (["sweep", "toy", "--targets", "pairs", "--seeds", "1,x"], "--seeds"),
        (["sweep", "missing.toml"], "does not exist"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_spec_with_an_unknown_key_is_refused(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text('worlds = ["toy"]\ntargets = ["pairs"]\nparticle = 10\n')
    assert main(["sweep", str(spec)]) == 2
    assert "unknown key 'particle'" in capsys.readouterr().err
