"""Nothing lost (issue #16): interrupts and bit-for-bit resume, safe run directories, bad input caught
before work, world outputs checked, malformed files refused in one line.

The signal tests run the real command in child processes (started together by one fixture, so
they overlap); a slow toy world (3 ms per classifier call) makes a run last long enough to be hit
at a random step.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import arviz as az
import numpy as np
import pyro.distributions as dist
import pytest
import torch
from conftest import StopAt

import pplevelset as pls
from pplevelset.cli import main
from pplevelset.infer.config import RunConfig
from pplevelset.infer.driver import make_checkpoints, run
from pplevelset.infer.resume import RunInterrupted

SLOW_WORLDS = '''
import os, signal, time
from pplevelset.worlds.toy import ToyWorld

class SlowToy(ToyWorld):
    name = "slow-toy"
    def classify(self, x):
        time.sleep(0.003)
        return super().classify(x)

class SelfSignal(ToyWorld):
    """Sends itself SIGNUM on classifier call AT (counted per process), then carries on."""
    name = "self-signal"
    calls = 0
    def classify(self, x):
        type(self).calls += 1
        if type(self).calls == int(os.environ.get("PPLS_SIGNAL_AT", "0")):
            os.kill(os.getpid(), int(os.environ.get("PPLS_SIGNUM", "2")))
        return super().classify(x)
'''
RUN = [
    "--target",
    "a=0.6",
    "--particles",
    "40",
    "--warmup",
    "150",
    "--steps",
    "150",
    "--thin",
    "2",
    "--keep",
    "8",
    "--seed",
    "5",
    "--quiet",
    "--checkpoint-every",
    "10",
]
SMALL = ["--particles", "30", "--warmup", "20", "--steps", "20", "--keep", "8", "--quiet"]


@pytest.fixture(scope="module")
def worlds_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("worlds")
    (folder / "slow_worlds.py").write_text(SLOW_WORLDS)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def arrays(run_dir: Path) -> dict:
    """Every array of a run's InferenceData and its summary without the wall-clock time."""
    idata = az.from_netcdf(str(run_dir / "posterior.nc"))
    out = {f"{group}/{name}": idata[group][name].values for group in idata.groups() for name in idata[group].data_vars}
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.pop("elapsed_s", None)
    return {"arrays": out, "summary": summary}


def assert_identical(a: Path, b: Path) -> None:
    first, second = arrays(a), arrays(b)
    assert first["summary"] == second["summary"]
    assert first["arrays"].keys() == second["arrays"].keys()
    for key, value in first["arrays"].items():
        assert np.array_equal(value, second["arrays"][key], equal_nan=True), key


# -- child processes: SIGINT, SIGTERM, SIGKILL at random steps; NUTS stopped; two runs on one --out
@pytest.fixture(scope="module")
def children(worlds_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("children")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(worlds_dir), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "pplevelset.cli", "sample", "slow_worlds:SlowToy"]
    started, rng = {}, random.Random()

    def start(name, extra, signum=None, wait_for="checkpoint.pt"):
        out = root / name
        proc = subprocess.Popen(
            [*command, *extra, "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

        def hit():
            deadline = time.time() + 120
            while time.time() < deadline and proc.poll() is None:
                if (root / f"{name}.partial" / wait_for).exists():
                    time.sleep(rng.uniform(0.0, 0.4))  # a random step
                    proc.send_signal(signum)
                    return
                time.sleep(0.02)

        thread = threading.Thread(target=hit, daemon=True) if signum is not None else None
        if thread:
            thread.start()
        started[name] = (proc, out, thread)

    for name, signum in (("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
        start(name, RUN, signum)
    start("twin", RUN)
    yield started
    for proc, _, _ in started.values():
        if proc.poll() is None:
            proc.kill()


def finish(children, name):
    proc, out, thread = children[name]
    stdout, stderr = proc.communicate(timeout=240)
    if thread:
        thread.join()
    return proc.returncode, stdout, stderr, out


@pytest.fixture(scope="module")
def uninterrupted(worlds_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline") / "run"
    assert main(["sample", "slow_worlds:SlowToy", *RUN, "--out", str(out)]) == 0
    return out


def test_two_concurrent_runs_on_one_out_give_one_result_and_one_exit_2(children, capsys):
    proc, out, _ = children["twin"]
    deadline = time.time() + 120
    while not (out.parent / "twin.partial" / "job.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    # a second run on the same --out while the first one samples
    code, _, stderr = cli(["sample", "toy", *RUN[:-2], "--out", out], capsys)
    returncode, _, first_stderr, _ = finish(children, "twin")
    assert sorted([code, returncode]) == [0, 2], (stderr, first_stderr)
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "another pplevelset run" in stderr or "already exists" in stderr
    assert (out / "summary.json").is_file() and json.loads((out / "summary.json").read_text())["world"] == "slow-toy"
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith("twin")) == ["twin"]


@pytest.mark.parametrize("name, code", [("sigint", 130), ("sigterm", 143), ("sigkill", -9)])
def test_a_signal_at_a_random_step_then_resume_is_bit_for_bit_the_uninterrupted_run(
    children, uninterrupted, name, code, capsys
):
    returncode, _, stderr, out = finish(children, name)
    partial = out.parent / f"{out.name}.partial"
    assert returncode == code, stderr
    if code > 0:  # SIGINT / SIGTERM: one line that says where the checkpoint is and how to resume
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
        assert f"--resume {partial}" in stderr and "stopped at step" in stderr
    assert not out.exists() and (partial / "checkpoint.pt").is_file()
    code, stdout, stderr = cli(["sample", "--resume", partial, "--quiet"], capsys)
    assert code == 0, stderr
    assert not partial.exists() and (out / ".pplevelset-run").is_file()
    assert_identical(out, uninterrupted)


# -- in-process: interrupts of every kernel, Ctrl-C while saving -----------------------------------
@pytest.mark.parametrize("kernel", ["smc", "nuts"])
def test_kernels_that_cannot_resume_stop_on_sigint_with_one_line_and_no_staging(
    worlds_dir, tmp_path, capsys, monkeypatch, kernel
):
    import slow_worlds

    monkeypatch.setenv("PPLS_SIGNAL_AT", "12")
    monkeypatch.setattr(slow_worlds.SelfSignal, "calls", 0)
    out = tmp_path / "run"
    code, _, stderr = cli(
        [
            "sample",
            "slow_worlds:SelfSignal",
            "--target",
            "a=0.6",
            "--kernel",
            kernel,
            "--particles",
            "8",
            "--warmup",
            "30",
            "--steps",
            "30",
            "--quiet",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 130 and f"the {kernel} kernel cannot resume" in stderr and len(stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kernel, signum", [("rwmh", signal.SIGTERM), ("ensemble", signal.SIGINT)])
def test_in_process_interrupt_and_resume_of_the_batched_kernels(
    worlds_dir, tmp_path, capsys, monkeypatch, kernel, signum
):
    import slow_worlds

    args = [
        "--target",
        "b=0.5",
        "--kernel",
        kernel,
        "--particles",
        "24",
        "--warmup",
        "25",
        "--steps",
        "25",
        "--keep",
        "8",
        "--seed",
        "11",
        "--quiet",
        "--checkpoint-every",
        "7",
    ]
    monkeypatch.setenv("PPLS_SIGNAL_AT", "0")  # never
    assert cli(["sample", "slow_worlds:SelfSignal", *args, "--out", tmp_path / "plain"], capsys)[0] == 0
    monkeypatch.setenv("PPLS_SIGNAL_AT", str(random.randint(3, 40)))
    monkeypatch.setenv("PPLS_SIGNUM", str(int(signum)))
    monkeypatch.setattr(slow_worlds.SelfSignal, "calls", 0)
    out = tmp_path / "run"
    code, _, stderr = cli(["sample", "slow_worlds:SelfSignal", *args, "--out", out], capsys)
    assert code == 128 + signum and "--resume" in stderr, stderr
    code, _, stderr = cli(["sample", "--resume", out, "--quiet"], capsys)  # the --out works as well
    assert code == 0, stderr
    assert_identical(out, tmp_path / "plain")


def test_ctrl_c_while_saving_finishes_the_save_then_stops(tmp_path, capsys, monkeypatch):
    from pplevelset import rundir

    original = rundir.write_run

    def interrupted_write(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(rundir, "write_run", interrupted_write)
    out = tmp_path / "run"
    code, _, stderr = cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", out], capsys)
    assert code == 130 and "completed first" in stderr and "Traceback" not in stderr
    assert (out / "summary.json").is_file() and (out / "trace.png").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_api_checkpoint_and_resume_bit_for_bit(tmp_path):
    config = RunConfig.build("toy", "a=0.7", num_particles=30, warmup=20, steps=20, thin=3, seed=4, progress=False)
    plain = run(config)
    checkpoints = make_checkpoints(config, tmp_path, every_steps=6)
    checkpoints.stop = StopAt(random.randint(1, 40))
    with pytest.raises(RunInterrupted):
        run(config, checkpoints)
    resumed = pls.sample(
        "toy", "a=0.7", num_particles=30, warmup=20, steps=20, thin=3, seed=4, progress=False, resume=tmp_path
    )
    assert torch.equal(plain.z, resumed.z)
    assert all(torch.equal(plain.traces[k], resumed.traces[k]) for k in plain.traces)
    with pytest.raises(pls.UserInputError, match="seed = 4"):
        pls.sample("toy", "a=0.7", num_particles=30, warmup=20, steps=20, thin=3, seed=5, resume=tmp_path)
    with pytest.raises(pls.UserInputError, match="cannot checkpoint"):
        pls.sample("toy", "a=0.7", kernel="nuts", checkpoint=tmp_path / "n")


# -- run directories -------------------------------------------------------------------------------
def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "thesis"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.tex").write_text("precious")
    (out / "sub" / "data.csv").write_text("1,2")
    code, _, stderr = cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", out, "--overwrite"], capsys)
    assert code == 2 and "not a pplevelset run directory" in stderr and len(stderr.strip().splitlines()) == 1
    assert (out / "thesis.tex").read_text() == "precious" and (out / "sub" / "data.csv").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["thesis"]
    code, _, stderr = cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", ".", "--overwrite"], capsys)
    assert code == 2 and "not a pplevelset run directory" in stderr


def test_a_target_that_appears_while_sampling_is_kept_and_the_result_set_aside(tmp_path, capsys, monkeypatch):
    from pplevelset import rundir

    out = tmp_path / "run"
    original = rundir.write_run

    def someone_else_writes(*args, **kwargs):
        out.mkdir()
        (out / "theirs.txt").write_text("theirs")
        return original(*args, **kwargs)

    monkeypatch.setattr(rundir, "write_run", someone_else_writes)
    code, _, stderr = cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", out], capsys)
    assert code == 2 and "without --overwrite" in stderr and len(stderr.strip().splitlines()) == 1
    assert [p.name for p in out.iterdir()] == ["theirs.txt"]
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("run.unpublished-")]
    assert str(aside) in stderr and (aside / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", aside.name])


def test_overwrite_also_refuses_a_non_run_that_appeared_while_sampling(tmp_path, capsys, monkeypatch):
    from pplevelset import rundir

    out = tmp_path / "run"
    assert cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", out], capsys)[0] == 0
    original = rundir.write_run

    def replaced_by_user(*args, **kwargs):
        for p in out.iterdir():
            p.unlink()
        (out / "notes.txt").write_text("mine now")
        return original(*args, **kwargs)

    monkeypatch.setattr(rundir, "write_run", replaced_by_user)
    code, _, stderr = cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", out, "--overwrite"], capsys)
    assert code == 2 and "not a pplevelset run directory" in stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_an_unwritable_out_is_refused_before_sampling(tmp_path, capsys):
    locked = tmp_path / "locked"
    if os.geteuid() == 0:  # root writes anywhere: a regular file as the parent is unwritable for anyone
        locked.write_text("a file")
    else:
        locked.mkdir()
        locked.chmod(0o500)
    try:
        start = time.perf_counter()
        code, _, stderr = cli(
            [
                "sample",
                "toy",
                "--target",
                "a=0.6",
                "--particles",
                "2000",
                "--warmup",
                "3000",
                "--steps",
                "3000",
                "--quiet",
                "--out",
                locked / "run",
            ],
            capsys,
        )
        assert code == 2 and "cannot write" in stderr and time.perf_counter() - start < 10, stderr
        assert len(stderr.strip().splitlines()) == 1
    finally:
        if locked.is_dir():
            locked.chmod(0o700)


def test_a_left_over_partial_folder_says_how_to_resume(tmp_path, capsys):
    (tmp_path / "run.partial").mkdir()
    code, _, stderr = cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", tmp_path / "run"], capsys)
    assert code == 2 and "--resume" in stderr and "interrupted run" in stderr
    code, _, stderr = cli(["sample", "--resume", tmp_path / "run.partial", "--alpha", "3"], capsys)
    assert code == 2 and "drop --alpha" in stderr
    code, _, stderr = cli(["sample", "--resume", tmp_path / "nothing"], capsys)
    assert code == 2 and "not the folder of an interrupted" in stderr


# -- validation before work ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--target", "1e-300,0.5,0.5"], "float32"),
        (["--target", "a=0.6", "--alpha", "1e39"], "alpha"),
        (["--target", "a=0.6", "--alpha", "1e-46"], "alpha"),
        (["--target", "a=0.6", "--alpha", "1e37"], "alpha"),
        (["--target", "a=0.6", "--keep", "0"], "keep"),
        (["--target", "a=0.6", "--seed", str(2**64)], "seed"),
        (["--target", "a=0.6", "--seed", "-1"], "seed"),
        (["--target", "a=0.6", "--particles", "1"], "at least 2"),
        (["--target", "a=0.6", "--checkpoint-every", "0"], "checkpoint-every"),
        (["--target", "a=0.6", "--checkpoint-every", "nans"], "checkpoint-every"),
    ],
)
def test_values_that_would_fail_mid_run_are_refused_before_work(tmp_path, capsys, args, message):
    code, stdout, stderr = cli(["sample", "toy", *args, "--out", tmp_path / "x", "--quiet"], capsys)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not list(tmp_path.iterdir())


def test_seeds_use_all_their_bits_and_small_seeds_keep_their_numbers():
    make = lambda seed: pls.sample("toy", "a=0.6", num_particles=10, warmup=2, steps=2, seed=seed, progress=False).z
    assert not torch.equal(make(0), make(2**32))
    assert torch.equal(make(2**63 - 1), make(2**63 - 1))
    from pplevelset.rng import generator

    assert torch.equal(generator(12345).get_state(), torch.Generator().manual_seed(12345).get_state())
    pls.sample("toy", "a=0.6", kernel="nuts", num_particles=4, warmup=2, steps=2, seed=2**40, progress=False)


def test_the_api_refuses_a_wrong_world_and_leaves_global_rngs_alone():
    with pytest.raises(pls.UserInputError, match="world must be"):
        pls.sample(None, "a=0.6")
    with pytest.raises(pls.UserInputError, match="world must be"):
        pls.sample(3, "a=0.6")
    import random as pyrandom

    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), pyrandom.getstate())
    for kernel in ("rwmh", "smc", "nuts"):
        pls.sample("toy", "a=0.6", kernel=kernel, num_particles=8, warmup=3, steps=3, progress=False)
    after = (torch.get_rng_state(), np.random.get_state()[1], pyrandom.getstate())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]


class Coin(pls.World):
    name, classes, latent_dim = "coin", ("heads", "tails"), 1

    def prior(self):
        return dist.Normal(torch.zeros(1, device=self.device), 1.0).to_event(1)

    def decode(self, z):
        return z

    def classify(self, x):
        p = torch.sigmoid(3 * x[..., 0])
        return torch.stack([p, 1 - p], -1)


class RowsSumToFive(Coin):
    def classify(self, x):
        return 5 * super().classify(x)


class Negative(Coin):
    def classify(self, x):
        return super().classify(x) * torch.tensor([2.0, -1.0])


class WrongEventShape(Coin):
    def prior(self):
        return dist.Normal(torch.zeros(1), 1.0)


class NumpyOut(Coin):
    def classify(self, x):
        return super().classify(x).numpy()


class WrongShape(Coin):
    def classify(self, x):
        return super().classify(x)[..., :1]


class DropsBatch(Coin):
    def decode(self, z):
        return z.sum()


class Infinite(Coin):
    def classify(self, x):
        return super().classify(x) * float("inf")


@pytest.mark.parametrize(
    "world, message",
    [
        (RowsSumToFive, "rows summing to 5"),
        (Negative, "negative probabilities"),
        (WrongEventShape, "event_shape"),
        (NumpyOut, "numpy.ndarray, not a torch.Tensor"),
        (WrongShape, "shape (4, 1); expected (4, 2)"),
        (DropsBatch, "decode(z)"),
        (Infinite, "infinite"),
    ],
)
def test_world_outputs_are_checked_on_a_first_batch(world, message):
    with pytest.raises(pls.UserInputError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        pls.sample(world(), "heads=0.9", num_particles=10, warmup=2, steps=2, progress=False)
    assert (
        "\n" not in str(error.value)
        and "classify" in str(error.value)
        or "prior" in str(error.value)
        or "decode" in str(error.value)
    )


def test_the_readme_coin_world_runs_end_to_end(tmp_path, capsys):
    from pplevelset.worlds import register

    register("coin-test", Coin, overwrite=True)
    out = tmp_path / "coin"
    code, stdout, stderr = cli(
        ["sample", "coin-test", "--target", "heads=0.9", "--alpha", "20", *SMALL, "--out", out], capsys
    )
    assert code == 0, stderr
    assert (out / "samples.png").stat().st_size > 0
    code, stdout, stderr = cli(["diagnose", out], capsys)
    assert code == 0, stderr


@pytest.mark.parametrize("content", ["{}", "[1, 2]", "null", '{"world": 3}'])
def test_diagnose_refuses_a_malformed_summary_before_writing(tmp_path, capsys, content):
    out = tmp_path / "run"
    assert cli(["sample", "toy", "--target", "a=0.6", *SMALL, "--out", out], capsys)[0] == 0
    (out / "summary.json").write_text(content)
    before = sorted(p.name for p in out.iterdir())
    code, _, stderr = cli(["diagnose", out], capsys)
    assert code == 2 and "summary.json" in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before


def test_worlds_survives_a_model_card_that_is_a_list(tmp_path, capsys, monkeypatch):
    (tmp_path / "houses").mkdir()
    (tmp_path / "houses" / "classifier.json").write_text("[]")
    monkeypatch.setenv("PPLEVELSET_MODELS", str(tmp_path))
    code, stdout, stderr = cli(["worlds"], capsys)
    assert code == 0, stderr
    assert any(line.startswith("houses ") and "MISSING" in line for line in stdout.splitlines())
    from pplevelset.checkpoints import read_card

    with pytest.raises(pls.CheckpointError, match="not an object"):
        read_card("houses", "classifier")
