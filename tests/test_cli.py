"""The CLI end to end on the toy world, and every kind of bad input: exit 2, one line, nothing written."""

import json
import os
import subprocess
import sys

import pytest
import torch

from pplevelset.cli import main

SMALL = ["--particles", "60", "--warmup", "40", "--steps", "30", "--keep", "16", "--quiet"]


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sample_and_diagnose_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, stderr = run(["sample", "toy", "--target", "a=0.6", "--out", str(out), *SMALL], capsys)
    assert code == 0, stderr
    assert {p.name for p in out.iterdir()} == {
        "summary.json",
        "posterior.nc",
        "samples.png",
        "trace.png",
        ".pplevelset-run",
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world"] == "toy" and summary["num_particles"] == 60 and summary["keep"] == 16
    assert summary["target"] == pytest.approx([0.6, 0.2, 0.2])
    assert "Delta" in stdout and "wrote" in stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    code, stdout, stderr = run(["diagnose", str(out)], capsys)
    assert code == 0, stderr
    assert "r_hat" in stdout and "burn-in" in stdout
    assert (out / "rank.png").stat().st_size > 0


def test_an_smc_start_from_the_command_line_is_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["sample", "toy", "--target", "a=0.6", "--kernel", "ensemble", "--start", "smc", "--moves", "5"]
    code, stdout, stderr = run([*argv, "--out", str(out), *SMALL], capsys)
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["start"] == "smc" and summary["moves"] == 5 and summary["start_temperatures"] >= 1
    assert f"ensemble, started from SMC ({summary['start_temperatures']} temperatures)" in stdout


def test_diagnose_pools_runs_of_one_posterior_and_refuses_others(tmp_path, capsys):
    for seed in ("0", "1"):
        sizes = ["--particles", "200", "--warmup", "150", "--steps", "150", "--keep", "16", "--quiet"]
        args = ["sample", "toy", "--target", "a=0.6", "--kernel", "ensemble", "--seed", seed, *sizes]
        assert run([*args, "--out", str(tmp_path / seed)], capsys)[0] == 0
    code, stdout, stderr = run(["diagnose", str(tmp_path / "0"), str(tmp_path / "1")], capsys)
    assert code == 0, stderr
    assert "Pooled over 2 runs (seed 0, seed 1), z and predictions" in stdout and "the runs agree" in stdout
    assert (tmp_path / "1" / "rank.png").is_file()
    other = ["sample", "toy", "--target", "a=0.6", "--alpha", "3", *SMALL, "--out", str(tmp_path / "other")]
    assert run(other, capsys)[0] == 0
    code, _, stderr = run(["diagnose", str(tmp_path / "0"), str(tmp_path / "other")], capsys)
    assert code == 2 and "another posterior" in stderr and "alpha 3.0 vs 10.0" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "other" / "rank.png").exists()
    code, _, stderr = run(["diagnose", str(tmp_path / "other"), str(tmp_path / "missing")], capsys)
    assert code == 2 and "not a run directory" in stderr  # every folder is read before any is written
    assert not (tmp_path / "other" / "rank.png").exists()


def test_pooled_r_hat_sees_runs_that_disagree():
    """Two runs whose particles each mixed well, around different means: each R-hat is 1, the
    pooled one is not (the case no single-run diagnostic can see)."""
    import numpy as np

    from pplevelset.diagnostics import az, convergence, pooled_convergence

    rng = np.random.default_rng(0)
    runs = [az.convert_to_inference_data({"z": rng.normal(shift, 1.0, (200, 100, 2))}) for shift in (0.0, 1.0)]
    assert all(convergence(idata)["rhat_max"] < 1.01 for idata in runs)
    assert pooled_convergence(runs)["rhat_max"] > 1.05
    assert pooled_convergence([runs[0], runs[0]])["rhat_max"] < 1.01


def test_overwrite_replaces_an_existing_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(["sample", "toy", "--target", "ambiguous", "--out", str(out), *SMALL], capsys)[0] == 0
    first = (out / "summary.json").read_text()
    code, _, stderr = run(
        ["sample", "toy", "--target", "ambiguous", "--out", str(out), "--seed", "1", "--overwrite", *SMALL], capsys
    )
    assert code == 0, stderr
    assert json.loads((out / "summary.json").read_text())["seed"] == 1 != json.loads(first)["seed"]


def test_worlds_lists_toy(capsys):
    code, stdout, _ = run(["worlds"], capsys)
    assert code == 0
    assert any(line.split()[:2] == ["toy", "2"] for line in stdout.splitlines())


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "toy", "--target", "0.5,0.5"], "3 classes"),
        (["sample", "toy", "--target", "0,0.5,0.5"], "must be > 0"),
        (["sample", "toy", "--target=-0.2,0.6,0.6"], "must be > 0"),
        (["sample", "toy", "--target", "nan,0.5,0.5"], "finite"),
        (["sample", "toy", "--target", "0.3,0.3,0.3"], "sums to"),
        (["sample", "toy", "--target", "dog=0.5"], "unknown class"),
        (["sample", "no-such-world", "--target", "ambiguous"], "unknown world"),
        (["sample", "toy", "--target", "ambiguous", "--alpha", "0"], "alpha"),
        (["sample", "toy", "--target", "ambiguous", "--alpha", "-3"], "alpha"),
        (["sample", "toy", "--target", "ambiguous", "--particles", "0"], "particles"),
        (["sample", "toy", "--target", "ambiguous", "--steps", "0"], "steps"),
        (["sample", "toy", "--target", "ambiguous", "--kernel", "gibbs"], "kernel"),
        (["sample", "toy", "--target", "ambiguous", "--start", "posterior"], "unknown start"),
        (["sample", "toy", "--target", "ambiguous", "--kernel", "nuts", "--start", "smc"], "applies to the rwmh"),
        (["sample", "toy", "--target", "ambiguous", "--particles", "many"], "not an integer"),
        (["sample", "toy"], "--target"),
        (["diagnose", "/nonexistent/run"], "not a run directory"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    code, stdout, stderr = run([*args, "--out", str(out)] if args[0] == "sample" else args, capsys)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and message in stderr, stderr
    assert "Traceback" not in stderr + stdout
    assert not out.exists() and not list(tmp_path.iterdir())


def test_existing_out_without_overwrite_is_refused_before_sampling(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, _, stderr = run(["sample", "toy", "--target", "ambiguous", "--out", str(out), *SMALL], capsys)
    assert code == 2 and "--overwrite" in stderr and len(stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_nuts_on_a_non_differentiable_world_is_refused(tmp_path, capsys, monkeypatch):
    from pplevelset.worlds import register
    from pplevelset.worlds.toy import ToyWorld

    class Frozen(ToyWorld):
        name = "frozen-toy"
        differentiable = False

    register("frozen-toy", Frozen, overwrite=True)
    code, _, stderr = run(
        ["sample", "frozen-toy", "--target", "ambiguous", "--kernel", "nuts", "--out", str(tmp_path / "x"), *SMALL],
        capsys,
    )
    assert code == 2 and "'frozen-toy' is not differentiable" in stderr and "--kernel rwmh" in stderr
    assert not list(tmp_path.iterdir())


def test_cuda_where_there_is_none(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, stderr = run(
        ["sample", "toy", "--target", "ambiguous", "--device", "cuda", "--out", str(tmp_path / "x"), *SMALL], capsys
    )
    assert code == 2 and "CUDA is not available" in stderr
    assert not list(tmp_path.iterdir())


def test_console_script_reports_bad_input_without_traceback(tmp_path):
    """The installed entry point, in a real process."""
    script = os.path.join(os.path.dirname(sys.executable), "pplevelset")
    result = subprocess.run(
        [script, "sample", "toy", "--target", "0.9,0.9,0.9", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("pplevelset: error:") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_nuts_on_a_world_that_silently_has_no_gradients_is_refused():
    import numpy as np

    import pplevelset as pls
    from pplevelset.worlds.toy import ToyWorld

    class NumpyToy(ToyWorld):
        name = "numpy-toy"

        def classify(self, x):
            logits = x.detach().numpy() @ self.weight.numpy().T
            probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            return torch.as_tensor(probs, dtype=torch.float32)

    with pytest.raises(pls.UserInputError, match="has no gradients.*differentiable = False"):
        pls.sample(NumpyToy(), "ambiguous", kernel="nuts", num_particles=4, warmup=2, steps=2, progress=False)


def test_a_world_from_the_users_own_module(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_worlds.py").write_text(
        "from pplevelset.worlds.toy import ToyWorld\n\nclass Mine(ToyWorld):\n    name = 'mine'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    code, stdout, stderr = run(["sample", "my_worlds:Mine", "--target", "ambiguous", "--out", str(out), *SMALL], capsys)
    assert code == 0, stderr
    assert json.loads((out / "summary.json").read_text())["world"] == "mine"
    code, _, stderr = run(["sample", "my_worlds:Nope", "--target", "ambiguous", "--out", str(out / "x")], capsys)
    assert code == 2 and "cannot load world" in stderr
