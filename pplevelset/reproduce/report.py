"""What every experiment report shares: a folder written atomically, markdown, figures, JSON.

Example::

    report = Report("Houses or rockets", command="pplevelset reproduce houses --quick")
    report.section("Confidence", "Mean classifier confidence per level set.")
    report.table(["level set", "ours", "paper"], [["house", "95.1%", "94.9%"]])
    report.figure(fig, "house.png", "Sampled houses")
    report.save(out, {"house": {...}}, json_name="houses.json", overwrite=False)
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from pplevelset.files import write_json
from pplevelset.plotting import save_figure
from pplevelset.rundir import atomic_directory


class Report:
    """A markdown report with its figures, collected in memory and written in one atomic step."""

    def __init__(self, title: str, command: str):
        self.title, self.command = title, command
        self.started = time.perf_counter()
        self.blocks: list[str] = []
        self.figures: dict[str, Figure] = {}

    def section(self, heading: str, text: str = "") -> None:
        self.blocks.append(f"## {heading}\n\n{text}".rstrip() + "\n")

    def text(self, text: str) -> None:
        self.blocks.append(text.rstrip() + "\n")

    def table(self, header: list[str], rows: list[list]) -> str:
        """Append a markdown table and return it (the README reuses headline tables)."""
        lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
        table = "\n".join(lines) + "\n"
        self.blocks.append(table)
        return table

    def figure(self, fig, filename: str, caption: str) -> None:
        self.figures[filename] = fig
        self.blocks.append(f"![{caption}]({filename})\n\n*{caption}*\n")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def markdown(self) -> str:
        header = (
            f"# {self.title}\n\nProduced by `{self.command}` in {self.elapsed():.0f} s on "
            f"{platform.processor() or platform.machine()} with torch threads = {torch.get_num_threads()} "
            f"(torch {torch.__version__.split('+')[0]}), {time.strftime('%Y-%m-%d')}.\n"
        )
        return "\n".join([header, *self.blocks])

    def save(self, out: str | Path, numbers: dict, json_name: str, overwrite: bool = False) -> Path:
        """Write ``report.md``, the figures and ``json_name`` into ``out`` atomically."""
        numbers = dict(numbers, elapsed_s=round(self.elapsed(), 1), command=self.command)
        with atomic_directory(out, overwrite) as tmp:
            for filename, fig in self.figures.items():
                save_figure(fig, tmp / filename)
            write_json(tmp / json_name, numbers)
            (tmp / "report.md").write_text(self.markdown())
        return Path(out)
