"""Strip outputs from the tutorial notebooks, or check that they are stripped (git keeps them clean).

Usage::

    .venv/bin/python notebooks/strip_outputs.py            # strip every notebook here, in place
    .venv/bin/python notebooks/strip_outputs.py --check    # exit 1 and list notebooks that need it
    .venv/bin/python notebooks/strip_outputs.py a.ipynb    # only these files

Stripping clears every code cell's outputs and execution count, the per-cell execution timings
and the saved widget state; sources and cell ids are left alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELL_METADATA = ("execution", "collapsed", "scrolled")  # written by front ends and nbclient
NOTEBOOK_METADATA = ("widgets",)  # saved ipywidgets state


def problems(nb) -> list[str]:
    """What keeps ``nb`` from being stripped, one line each (empty when it is clean)."""
    found = [f"notebook metadata {key!r}" for key in NOTEBOOK_METADATA if key in nb.metadata]
    for index, cell in enumerate(nb.cells):
        found += [f"cell {index}: metadata {key!r}" for key in CELL_METADATA if key in cell.metadata]
        if cell.cell_type != "code":
            continue
        if cell.outputs:
            found.append(f"cell {index}: {len(cell.outputs)} output(s)")
        if cell.execution_count is not None:
            found.append(f"cell {index}: execution count {cell.execution_count}")
    return found


def strip(nb) -> None:
    """Remove outputs, execution counts, timings and widget state from ``nb`` in place."""
    for key in NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="notebooks (default: every *.ipynb next to this script)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any notebook has outputs")
    args = parser.parse_args(argv)
    paths = args.paths or sorted(HERE.glob("*.ipynb"))
    dirty = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        found = problems(nb)
        if not found:
            continue
        dirty += 1
        if args.check:
            print(f"{path}: not stripped ({'; '.join(found[:3])}{'; ...' if len(found) > 3 else ''})")
        else:
            strip(nb)
            nbformat.write(nb, path)
            print(f"stripped {path}")
    if args.check and dirty:
        print("strip them with: python notebooks/strip_outputs.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
