"""Execute one notebook in memory with nbclient and write the executed copy elsewhere.

``python tests/run_notebook.py NOTEBOOK OUT KERNEL TIMEOUT``. Run by ``test_notebooks.py`` in a
fresh interpreter, so that nothing the rest of the suite left in the pytest process (threads, event
loops, signal handlers) is shared with the ZMQ client that talks to the kernel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def main(notebook: str, out: str, kernel: str, timeout: str) -> None:
    path = Path(notebook)
    nb = nbformat.read(path, as_version=4)
    # first, in memory only: make sure the kernel is this interpreter's environment, not another Python's
    guard = nbformat.v4.new_code_cell(
        f"import sys\nassert sys.prefix == {sys.prefix!r}, f'kernel runs {{sys.executable}}, not {sys.executable}'"
    )
    nb.cells.insert(0, guard)
    client = NotebookClient(
        nb,
        timeout=int(timeout),
        kernel_name=kernel,
        allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    finally:
        nbformat.write(nb, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
