"""Worlds from installed packages: the ``pplevelset.worlds`` entry point group, end to end.

Two tiny plugin packages (a pyproject and a module each) are built and installed with pip into a
temporary folder (offline, outside the venv); the CLI then runs in a subprocess with that folder on
``PYTHONPATH``, as it would for a user who pip-installed them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1"

[project.entry-points."pplevelset.worlds"]
{entries}
"""

COIN = """\
import pyro.distributions as dist
import torch

import pplevelset as pls


class Coin(pls.World):
    name, classes, latent_dim = "coin", ("heads", "tails"), 1
    differentiable = True

    def prior(self):
        return dist.Normal(torch.zeros(1, device=self.device), 1.0).to_event(1)

    def decode(self, z):
        return z

    def classify(self, x):
        p = torch.sigmoid(3 * x[..., 0])
        return torch.stack([p, 1 - p], -1)
"""

BROKEN = "import not_installed_dependency  # what a plugin with a missing dependency does\n"


def _package(root: Path, name: str, module: str, source: str, entries: dict[str, str]) -> Path:
    folder = root / name
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(source)
    lines = "\n".join(f'{key} = "{value}"' for key, value in entries.items())
    (folder / "pyproject.toml").write_text(PYPROJECT.format(name=name, entries=lines))
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding the installed plugins: ``coin-worlds`` (``coin``, and a ``toy`` that the
    built-in must win over) and ``broken-worlds`` (``broken``, whose module fails to import)."""
    root = tmp_path_factory.mktemp("plugins")
    coin = _package(root, "coin-worlds", "coinworld", COIN, {"coin": "coinworld:Coin", "toy": "coinworld:Coin"})
    broken = _package(root, "broken-worlds", "brokenworld", BROKEN, {"broken": "brokenworld:Broken"})
    target = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(coin),
            str(broken),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return target


def _run(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
        OMP_NUM_THREADS="1",
    )
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def _cli(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return _run(site, "-m", "pplevelset.cli", *args, cwd=cwd)


def test_worlds_lists_plugins_with_their_package(site):
    done = _cli(site, "worlds")
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert rows["world"][-1] == "package"
    assert rows["coin"][1:3] + rows["coin"][-1:] == ["1", "heads,", "coin-worlds"], rows["coin"]
    assert rows["toy"][-1] == "built-in"  # a plugin never replaces a built-in world
    assert "note: world 'toy' of package 'coin-worlds' is not used: a built-in world has that name" in done.stdout
    assert rows["broken"][-1] == "broken-worlds"
    assert "unavailable (ModuleNotFoundError: No module named 'not_installed_dependency')" in " ".join(rows["broken"])
    assert done.stderr == ""


def test_a_plugin_world_samples_by_name(site, tmp_path):
    out = tmp_path / "run"
    done = _cli(
        site,
        "sample",
        "coin",
        "--target",
        "heads=0.9",
        "--particles",
        "40",
        "--warmup",
        "30",
        "--steps",
        "20",
        "--keep",
        "8",
        "--quiet",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world"] == "coin" and summary["classes"] == ["heads", "tails"]
    assert summary["target"] == pytest.approx([0.9, 0.1])


def test_a_plugin_world_loads_in_python(site, monkeypatch):
    import pplevelset as pls
    from pplevelset import worlds

    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "coinworld", raising=False)
    worlds.plugins.cache_clear()
    try:
        world = pls.load_world("coin")
        assert type(world).__module__ == "coinworld" and worlds.origin("coin") == "coin-worlds"
        assert type(pls.load_world("toy")).__name__ == "ToyWorld"
        assert "coin" in worlds.names() and worlds.names().count("toy") == 1
        with pytest.raises(pls.UserInputError, match="from package 'broken-worlds'"):
            pls.load_world("broken")
    finally:
        sys.modules.pop("coinworld", None)
        worlds.plugins.cache_clear()  # sys.path is restored by monkeypatch; forget what it showed


def test_a_plugin_that_fails_to_import_is_one_line_and_exit_2(site, tmp_path):
    done = _cli(site, "sample", "broken", "--target", "ambiguous", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert (
        "world 'broken' from package 'broken-worlds' (brokenworld:Broken) cannot be imported: "
        "ModuleNotFoundError: No module named 'not_installed_dependency'"
    ) in done.stderr
    assert not (tmp_path / "run").exists()
