"""The tutorial notebooks run top to bottom without errors, and are committed without outputs.

Each notebook is executed in memory by nbclient in a fresh ``python3`` kernel of this very
interpreter (the venv's), with the notebook's folder as working directory; outputs are never
written back to the files.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 300  # per cell; the notebooks take well under a minute in all on two cores
SLOW_NOTEBOOK_S = 120


def _load_stripper():
    spec = importlib.util.spec_from_file_location("strip_outputs", NOTEBOOKS_DIR / "strip_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tutorials_are_there():
    names = [path.name for path in NOTEBOOKS]
    assert names[:4] == ["01_quickstart.ipynb", "02_write_your_own_world.ipynb",
                         "03_interactive_targets.ipynb", "04_diagnostics.ipynb"], names


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
        pytest.fail(f"no {KERNEL_NAME!r} Jupyter kernel found; install one into the venv with "
                    f"`{sys.executable} -m ipykernel install --sys-prefix`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_runs_top_to_bottom(path, kernel_environment):
    nb = nbformat.read(path, as_version=4)
    # first, in memory only: make sure the kernel is this interpreter's environment, not another Python's
    guard = nbformat.v4.new_code_cell(
        "import sys\n"
        f"assert sys.prefix == {sys.prefix!r}, f'kernel runs {{sys.executable}}, not {sys.executable}'")
    nb.cells.insert(0, guard)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name=KERNEL_NAME, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    if elapsed > SLOW_NOTEBOOK_S:  # seen once or twice on a busy runner; say where the time went
        warnings.warn(f"{path.name} took {elapsed:.0f} s; cells: {_cell_seconds(nb)}", stacklevel=1)
    errors = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
              if output.output_type == "error"]
    assert not errors, errors


def _cell_seconds(nb) -> str:
    """Each code cell's execution time from nbclient's timing metadata, and the time outside cells."""
    spans = []
    for index, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            begin, end = (datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                          for key in ("iopub.execute_input", "shell.execute_reply"))
            spans.append(f"{index}: {(end - begin).total_seconds():.1f} s")
    return ", ".join(spans)
