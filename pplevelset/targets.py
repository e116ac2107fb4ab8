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
from typing import Sequence

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
            raise UserInputError(f"target {spec!r} has {len(parts)} entries but the world has "
                                 f"{len(classes)} classes ({', '.join(classes)})")
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
            raise UserInputError(f"target {spec!r} leaves {rest:.3g} for the other classes; "
                                 "every entry must be > 0")
        given.update({name: rest / len(others) for name in others})
    return torch.tensor(_validate([given[name] for name in classes], classes, spec), dtype=torch.float32)


def target_label(spec: str | Sequence[float] | torch.Tensor) -> str:
    """A short, filesystem-safe label for a target spec (used in default run folder names)."""
    text = spec if isinstance(spec, str) else ",".join(f"{float(v):g}" for v in torch.as_tensor(spec).flatten())
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text.replace(",", "_")).strip("_")[:60] or "target"
