"""The Ray backend of ``pplevelset sweep``: a local Ray instance (2 CPUs) runs a small sweep that must
give the same numbers as the local backend, resume without rerunning, retry a task that fails once,
and report a task that keeps failing without losing the other items."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sweep_worlds import FLAKY_DIR  # noqa: E402

from pplevelset.audit import execute as execute_module  # noqa: E402
from pplevelset.audit.plan import SweepSettings, build_plan  # noqa: E402

SMALL = SweepSettings(particles_per_target=16, warmup=20, steps=10, keep=8)
NUMBERS = ("target", "delta", "mean_prediction", "confidence", "hits_tv_0.1", "rhat_max", "status")
quiet = lambda text: None  # noqa: E731


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local Ray instance for the module; workers import the test worlds (``sweep_worlds``)."""
    flaky = tmp_path_factory.mktemp("flaky")
    tests = str(Path(__file__).parent)
    path = os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, FLAKY_DIR: str(flaky), "OMP_NUM_THREADS": "1"}},
    )
    yield flaky
    ray.shutdown()


def numbers(rows):
    return [{key: row.get(key) for key in NUMBERS} for row in rows]


def test_local_and_ray_give_the_same_numbers_and_ray_resumes(cluster, tmp_path):
    plan = build_plan(["toy"], ["a=0.7"], seeds=[0, 1], settings=SMALL)  # two tasks
    local = execute_module.execute(plan, tmp_path / "local", backend="local", progress=False, log=quiet)
    remote = execute_module.execute(plan, tmp_path / "ray", backend="ray", progress=False, log=quiet)
    assert all(row["status"] == "done" for row in remote) and len(remote) == 2
    assert numbers(local) == numbers(remote)
    for row in remote:
        assert (tmp_path / "ray" / row["run_dir"] / "posterior.nc").is_file()
    # resume: a rerun submits nothing and leaves every item as it was
    stamps = {row["run_dir"]: (tmp_path / "ray" / row["run_dir"] / "summary.json").stat().st_mtime_ns for row in remote}
    lines = []
    again = execute_module.execute(plan, tmp_path / "ray", backend="ray", progress=False, log=lines.append)
    assert numbers(again) == numbers(remote)
    assert any("2 of 2 items already done" in line for line in lines) and any("0 to run" in line for line in lines)
    assert stamps == {
        row["run_dir"]: (tmp_path / "ray" / row["run_dir"] / "summary.json").stat().st_mtime_ns for row in again
    }


def test_a_task_that_fails_once_is_retried_and_one_that_keeps_failing_is_reported(cluster, tmp_path):
    plan = build_plan(["sweep_worlds:FlakyToy", "sweep_worlds:BrokenToy"], ["a=0.7"], settings=SMALL)
    rows = execute_module.execute(plan, tmp_path / "s", backend="ray", progress=False, max_retries=1, log=quiet)
    assert (cluster / "failed-once").exists()  # the first attempt did fail
    assert [row["status"] for row in rows] == ["done", "failed"]
    assert "injected failure (always)" in rows[-1]["error"]
    index = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert index["counts"] == {"done": 1, "failed": 1, "pending": 0}
