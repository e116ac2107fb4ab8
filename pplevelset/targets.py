"""Parse and validate target predictions: ``ambiguous``, ``house=0.999``, ``1=0.46,7=0.46``, ``0.5,0.5``.

Grammar (DESIGN §3):

- ``ambiguous``: the uniform vector;
- a full vector in class order, ``0.2,0.3,0.5``;
- named classes, ``name=value,...``, the remaining mass split evenly over the other classes.

Every entry must be finite and > 0 (the Dirichlet likelihood has no density on the simplex's
boundary) and the vector must sum to 1 within 1e-6; it is then renormalised exactly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import NamedTuple

import torch

from pplevelset.errors import UserInputError

SUM_TOLERANCE = 1e-6


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserInputError(f"target entry {what!r} is not a number") from None
    return value


def _validate(values: list[float], classes: Sequence[str], spec: str) -> list[float]:
    for name, value in zip(classes, values):
        if math.isnan(value) or math.isinf(value):
            raise UserInputError(f"target probability of class {name!r} is {value}; it must be finite")
        if value <= 0:
            raise UserInputError(f"target probability of class {name!r} is {value:g}; every entry must be > 0")
    total = sum(values)
    if abs(total - 1.0) > SUM_TOLERANCE:
        raise UserInputError(f"target {spec!r} sums to {total:.9g}, not 1")
    return [value / total for value in values]


def parse_target(spec: str | Sequence[float] | torch.Tensor, classes: Sequence[str]) -> torch.Tensor:
    """The target vector (float32, in class order) that ``spec`` describes for ``classes``."""
    classes = [str(name) for name in classes]
    if not isinstance(spec, str):
        values = [float(v) for v in torch.as_tensor(spec, dtype=torch.float64).flatten().tolist()]
        if len(values) != len(classes):
            raise UserInputError(f"target has {len(values)} entries but the world has {len(classes)} classes")
        return torch.tensor(_validate(values, classes, str(values)), dtype=torch.float32)

    text = spec.strip()
    if not text:
        raise UserInputError("target is empty; use 'ambiguous', a vector like 0.5,0.5 or name=value pairs")
    if text.lower() == "ambiguous":
        return torch.full((len(classes),), 1.0 / len(classes))
    parts = [part.strip() for part in text.split(",")]
    named = ["=" in part for part in parts]
    if any(named) and not all(named):
        raise UserInputError(f"target {spec!r} mixes name=value pairs with bare numbers")

    if not any(named):
        if len(parts) != len(classes):
            raise UserInputError(
                f"target {spec!r} has {len(parts)} entries but the world has "
                f"{len(classes)} classes ({', '.join(classes)})"
            )
        values = [_number(part, part) for part in parts]
        return torch.tensor(_validate(values, classes, spec), dtype=torch.float32)

    given: dict[str, float] = {}
    for part in parts:
        name, _, value = (piece.strip() for piece in part.partition("="))
        if name not in classes:
            raise UserInputError(f"unknown class {name!r} in target; classes are {', '.join(classes)}")
        if name in given:
            raise UserInputError(f"class {name!r} appears twice in target {spec!r}")
        given[name] = _number(value, part)
    others = [name for name in classes if name not in given]
    rest = 1.0 - sum(given.values())
    if others:
        if rest <= SUM_TOLERANCE:
            raise UserInputError(f"target {spec!r} leaves {rest:.3g} for the other classes; every entry must be > 0")
        given.update({name: rest / len(others) for name in others})
    return torch.tensor(_validate([given[name] for name in classes], classes, spec), dtype=torch.float32)


def target_label(spec: str | Sequence[float] | torch.Tensor) -> str:
    """A short, filesystem-safe label for a target spec (used in default run folder names)."""
    text = spec if isinstance(spec, str) else ",".join(f"{float(v):g}" for v in torch.as_tensor(spec).flatten())
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text.replace(",", "_")).strip("_")[:60] or "target"


# -- target families: many targets from one spec, for sweeps --------------------------------------

FAMILY_FLOOR = 0.001  # where a graded family's ends sit instead of exactly 0 and 1 (entries must be > 0)
GRADED_STEPS = 11  # graded families: 0, 0.1, ..., 1 (ends at the floor)
PAIR_PROBABILITY = 0.46  # ``pairs``: both classes at 0.46 (0.5 each in a two-class world)
CORNER_PROBABILITY = 0.999  # ``corners``: one class at 0.999
FAMILY_HELP = (
    "graded:A | graded:A,B | pairs | corners | a file with one target per line (file:PATH or an "
    "existing PATH) | one target"
)


class NamedTarget(NamedTuple):
    """One target of a family: ``spec`` in the single-target grammar (``parse_target(spec)`` gives
    ``vector``), the ``family`` it came from and where it sits in it (``params``: the graded class
    and its value, the pair's classes, the corner's class)."""

    spec: str
    vector: torch.Tensor
    family: str
    params: dict


def expand_targets(spec: str | Sequence[str], classes: Sequence[str]) -> list[NamedTarget]:
    """Every target that ``spec`` (or each spec in a list) names for ``classes``.

    Families:

    - ``graded:A``: 11 targets, p(A) = 0, 0.1, ..., 1, the rest spread evenly over the other classes
      (Bayes-TrEx's graded-confidence experiment);
    - ``graded:A,B``: p(A) from 0 to 1, B the remainder, every other class at ``FAMILY_FLOOR``;
    - ``pairs``: every class pair at 0.46 / 0.46 (the rest split evenly; 0.5 / 0.5 with two classes);
    - ``corners``: every class at 0.999;
    - ``file:PATH`` (or a path to an existing file): one target (or family) per line, ``#`` comments;
    - anything else: one target in :func:`parse_target`'s grammar.

    Entries must stay > 0, so a graded family's ends sit at ``FAMILY_FLOOR`` (0.001) instead of
    exactly 0 and 1. Bad input is one :class:`UserInputError` line.
    """
    classes = [str(name) for name in classes]
    if not isinstance(spec, str):
        out = [target for one in spec for target in expand_targets(one, classes)]
        if not out:
            raise UserInputError("no targets given")
        return out
    text = spec.strip()
    head, colon, rest = text.partition(":")
    lowered = head.strip().lower()
    if lowered == "graded" and colon:
        return _graded(rest, classes, text)
    if lowered == "graded":
        raise UserInputError("graded needs a class: graded:A or graded:A,B")
    if lowered == "pairs" and not colon:
        return _pairs(classes)
    if lowered == "corners" and not colon:
        return _corners(classes)
    if lowered == "file" and colon:
        return _from_file(rest.strip(), classes)
    if text and "=" not in text and not colon and _looks_like_path(text):
        return _from_file(text, classes)
    if colon:
        raise UserInputError(f"unknown target family {text!r}; use {FAMILY_HELP}")
    return [NamedTarget(text, parse_target(text, classes), "single", {})]


def _looks_like_path(text: str) -> bool:
    from pathlib import Path

    return "/" in text or text.endswith((".txt", ".csv")) or Path(text).is_file()


def _format(value: float) -> str:
    return f"{value:.6g}"


def _graded(rest: str, classes: list[str], spec: str) -> list[NamedTarget]:
    names = [name.strip() for name in rest.split(",")]
    if not names or len(names) > 2 or not all(names):
        raise UserInputError(f"bad family {spec!r}: use graded:A or graded:A,B with class names")
    for name in names:
        if name not in classes:
            raise UserInputError(f"unknown class {name!r} in {spec!r}; classes are {', '.join(classes)}")
    if len(set(names)) != len(names):
        raise UserInputError(f"bad family {spec!r}: the two classes must differ")
    if len(classes) < 2:
        raise UserInputError(f"{spec!r} needs a world with at least two classes")
    grid = [k / (GRADED_STEPS - 1) for k in range(GRADED_STEPS)]
    out = []
    if len(names) == 1:
        (a,) = names
        for level in grid:
            p = min(max(level, FAMILY_FLOOR), 1 - FAMILY_FLOOR)
            text = f"{a}={_format(p)}"
            if len(classes) == 2:  # name both, so the spec reads as the vector
                other = classes[1 - classes.index(a)]
                text = f"{a}={_format(p)},{other}={_format(1 - p)}"
            out.append(NamedTarget(text, parse_target(text, classes), spec, {"class": a, "level": level, "value": p}))
        return out
    a, b = names
    mass = 1 - FAMILY_FLOOR * (len(classes) - 2)  # what A and B share
    for level in grid:
        p = min(max(level * mass, FAMILY_FLOOR), mass - FAMILY_FLOOR)
        text = f"{a}={_format(p)},{b}={_format(mass - p)}"
        out.append(
            NamedTarget(text, parse_target(text, classes), spec, {"class": a, "other": b, "level": level, "value": p})
        )
    return out


def _pairs(classes: list[str]) -> list[NamedTarget]:
    if len(classes) < 2:
        raise UserInputError("pairs needs a world with at least two classes")
    p = PAIR_PROBABILITY if len(classes) > 2 else 0.5
    out = []
    for i, a in enumerate(classes):
        for b in classes[i + 1 :]:
            text = f"{a}={_format(p)},{b}={_format(p)}"
            out.append(NamedTarget(text, parse_target(text, classes), "pairs", {"classes": [a, b], "value": p}))
    return out


def _corners(classes: list[str]) -> list[NamedTarget]:
    out = []
    for name in classes:
        text = f"{name}={_format(CORNER_PROBABILITY)}"
        out.append(
            NamedTarget(text, parse_target(text, classes), "corners", {"class": name, "value": CORNER_PROBABILITY})
        )
    return out


def _from_file(path: str, classes: list[str]) -> list[NamedTarget]:
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"target file {path!r} does not exist")
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read target file {path!r}: {exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if text.lower().startswith("file:") or _looks_like_path(text):
            raise UserInputError(f"{path}:{number}: a target file cannot name another file")
        try:
            out.extend(expand_targets(text, classes))
        except UserInputError as exc:
            raise UserInputError(f"{path}:{number}: {exc}") from None
    if not out:
        raise UserInputError(f"target file {path!r} has no targets")
    return out
