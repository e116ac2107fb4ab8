"""The tutorial notebooks run top to bottom without errors, and are committed without outputs.

Each notebook is executed by nbclient (``run_notebook.py``, in a fresh interpreter) in a fresh
``python3`` kernel of this very interpreter (the venv's), with the notebook's folder as working
directory; the executed copy goes to a temporary folder, never back to the files.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
RUNNER = Path(__file__).resolve().parent / "run_notebook.py"
KERNEL_NAME = "python3"
# Per cell; the notebooks' cells take under 10 s each on two cores. Each notebook runs in its own
# interpreter: run in the pytest process after the other tests, nbclient now and then missed the
# ZMQ wake-up for a reply the kernel had already sent (the kernel's timestamps showed every cell
# done in seconds, both processes idle) and found it only when its poll timed out, one full
# timeout late (3 of 3 runs with other tests first; 0 of 2 since each notebook has its own process).
CELL_TIMEOUT_S = 90
SLOW_NOTEBOOK_S = 60


def _load_stripper():
    spec = importlib.util.spec_from_file_location("strip_outputs", NOTEBOOKS_DIR / "strip_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tutorials_are_there():
    names = [path.name for path in NOTEBOOKS]
    assert names[:4] == [
        "01_quickstart.ipynb",
        "02_write_your_own_world.ipynb",
        "03_interactive_targets.ipynb",
        "04_diagnostics.ipynb",
    ], names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    found = _load_stripper().problems(nb)
    assert not found, f"{path.name} has outputs; run `python notebooks/strip_outputs.py`: {found}"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "open with a title and what it shows"


@pytest.fixture
def kernel_environment(monkeypatch):
    """Make the venv's kernelspec win over any user-level one, and keep OpenMP to one thread unless
    the caller chose: the notebooks' batches are small, and on a shared two-core runner two OpenMP
    threads per process can be many times slower than one."""
    data_dir = Path(sys.prefix) / "share" / "jupyter"
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(data_dir), os.environ.get("JUPYTER_PATH")])))
    if "OMP_NUM_THREADS" not in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        pytest.fail(
            f"no {KERNEL_NAME!r} Jupyter kernel found; install one into the venv with "
            f"`{sys.executable} -m ipykernel install --sys-prefix`"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path, kernel_environment, tmp_path):
    executed = tmp_path / path.name
    command = [sys.executable, str(RUNNER), str(path), str(executed), KERNEL_NAME, str(CELL_TIMEOUT_S)]
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=len(nbformat.read(path, 4).cells) * CELL_TIMEOUT_S
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-4000:]
    nb = nbformat.read(executed, as_version=4)
    print(f"{path.name}: {elapsed:.1f} s")
    if elapsed > SLOW_NOTEBOOK_S:  # say where the time went: in the cells, or waiting on the kernel
        warnings.warn(f"{path.name} took {elapsed:.0f} s; cells: {_cell_seconds(nb)}", stacklevel=1)
    errors = [
        output
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, errors


def _cell_seconds(nb) -> str:
    """Each code cell's execution time from nbclient's timing metadata, and the time outside cells."""
    spans = []
    for index, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            begin, end = (
                datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                for key in ("iopub.execute_input", "shell.execute_reply")
            )
            spans.append(f"{index}: {(end - begin).total_seconds():.1f} s")
    return ", ".join(spans)
