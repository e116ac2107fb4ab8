"""The paper's experiments (and Bayes-TrEx's), rerun: each writes ``report.md``, figures and a JSON of its numbers."""

from __future__ import annotations

from pathlib import Path

from pplevelset.errors import UserInputError
from pplevelset.imports import import_object

EXPERIMENTS = {
    "houses": "pplevelset.reproduce.houses:run",
    "mnist": "pplevelset.reproduce.mnist:run",
    "bayestrex": "pplevelset.reproduce.bayestrex:run",
}


def run_experiments(
    name: str, quick: bool = False, out: Path | None = None, overwrite: bool = False, device: str = "cpu"
) -> list[Path]:
    """Run one experiment (or ``all``) into ``out`` (default ``runs/reproduce-<name>``)."""
    if name != "all" and name not in EXPERIMENTS:
        raise UserInputError(f"unknown experiment {name!r}; choose one of {', '.join([*EXPERIMENTS, 'all'])}")
    chosen = list(EXPERIMENTS) if name == "all" else [name]
    if name == "all" and out is not None:
        targets = {key: Path(out) / key for key in chosen}
    else:
        targets = {key: Path(out) if out is not None else Path("runs") / f"reproduce-{key}" for key in chosen}
    written = []
    for key in chosen:
        runner = import_object(EXPERIMENTS[key])
        written.append(runner(out=targets[key], quick=quick, overwrite=overwrite, device=device))
    return written
