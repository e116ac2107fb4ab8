"""What a sweep runs: worlds x targets x seeds as items, grouped into batches (chunks), from the
command line or a TOML spec, validated before anything runs.

An *item* is one (world, target, kernel, seed): one sub-directory of the sweep, as ``sample`` writes
it. A *chunk* is the items of one (world, kernel, seed) that run as one batched sampler (all the
world's targets by default; ``chunk_size`` targets with ``--chunk-size``): the unit of work a backend
runs, one Ray task each. Chunks are fixed by the plan alone, so every backend, and a resumed sweep,
runs the same batches with the same seeds and gets the same numbers.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tomllib

from pplevelset.errors import UserInputError
from pplevelset.infer.config import DEFAULT_KERNEL, RunConfig, SMCOptions
from pplevelset.model import DEFAULT_SIGMA
from pplevelset.targets import NamedTarget, expand_targets, target_label


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """Sampler settings shared by every item (per target: ``particles_per_target``, SMC ``populations``)."""

    kernel: str = DEFAULT_KERNEL
    particles_per_target: int = 100
    alpha: float = 10.0
    warmup: int = 200
    steps: int = 200
    thin: int = 1
    device: str = "cpu"
    populations: int = 4
    moves: int = 10
    target_ess: float = 0.5
    keep: int = 64
    chunk_size: int = 0  # targets per batch (and per Ray task); 0: all of a world's targets in one batch
    likelihood: str = "dirichlet"
    sigma: float = DEFAULT_SIGMA
    rungs: int = 1  # ensemble: replica-exchange temperatures
    start: str = "prior"  # rwmh and ensemble: "smc" starts each target's chains at a tempered run's particles

    def run_config(self, world, seed: int, device: str | None = None, progress: bool = False) -> RunConfig:
        """The one-target configuration every batch starts from (validates every setting)."""
        return RunConfig.build(
            world,
            "ambiguous",
            alpha=self.alpha,
            kernel=self.kernel,
            num_particles=self.particles_per_target,
            warmup=self.warmup,
            steps=self.steps,
            thin=self.thin,
            seed=seed,
            device=device or self.device,
            progress=progress,
            smc=SMCOptions(self.populations, self.moves, self.target_ess),
            likelihood=self.likelihood,
            sigma=self.sigma,
            rungs=self.rungs,
            start=self.start,
        )


@dataclasses.dataclass(frozen=True)
class Item:
    world: str
    target: str  # single-target spec
    family: str  # the family it came from ("graded:house", "pairs", ..., "single")
    params: dict
    kernel: str
    seed: int
    name: str  # its sub-directory

    def key(self) -> dict:
        return {"world": self.world, "target_spec": self.target, "kernel": self.kernel, "seed": self.seed}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One batch: plain data, so it travels to a Ray worker as is."""

    world: str
    kernel: str
    seed: int
    items: tuple[Item, ...]
    settings: SweepSettings

    @property
    def name(self) -> str:
        return f"{self.items[0].name}..{len(self.items)}"


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    worlds: tuple[str, ...]
    targets: tuple[str, ...]  # as given (families)
    seeds: tuple[int, ...]
    settings: SweepSettings
    items: tuple[Item, ...]

    def chunks(self) -> list[Chunk]:
        out, size = [], self.settings.chunk_size
        for world in self.worlds:
            for seed in self.seeds:
                items = [item for item in self.items if item.world == world and item.seed == seed]
                step = size or len(items)
                for start in range(0, len(items), step):
                    out.append(
                        Chunk(world, self.settings.kernel, seed, tuple(items[start : start + step]), self.settings)
                    )
        return out

    def to_dict(self) -> dict[str, Any]:
        """What ``plan.json`` holds: a rerun with an equal plan resumes the sweep."""
        return {
            "worlds": list(self.worlds),
            "targets": list(self.targets),
            "seeds": list(self.seeds),
            "settings": dataclasses.asdict(self.settings),
            "items": [{**item.key(), "name": item.name} for item in self.items],
        }


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=_-]+", "_", text).strip("_") or "world"


def build_plan(
    worlds: Sequence[str],
    targets: Sequence[str],
    seeds: Sequence[int] = (0,),
    settings: SweepSettings | None = None,
    check_device: bool = True,
) -> SweepPlan:
    """Validate everything (worlds, families against each world's classes, settings) and list the
    items. ``check_device=False`` leaves ``cuda`` to the workers (a Ray cluster's GPUs)."""
    settings = settings or SweepSettings()
    worlds, targets, seeds = tuple(worlds), tuple(targets), tuple(seeds)
    if not worlds:
        raise UserInputError("a sweep needs at least one world")
    if not targets:
        raise UserInputError("a sweep needs --targets (a family such as graded:A, pairs, corners, or a file)")
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserInputError(f"seeds must be distinct and at least one, got {list(seeds)}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UserInputError(f"seeds must be non-negative integers, got {seed!r}")
    if not isinstance(settings.keep, int) or settings.keep < 1:
        raise UserInputError(f"keep must be a positive integer, got {settings.keep!r}")
    if not isinstance(settings.chunk_size, int) or settings.chunk_size < 0:
        raise UserInputError(f"chunk_size must be a non-negative integer, got {settings.chunk_size!r}")
    from pplevelset.audit.batched import SWEEP_KERNELS

    if settings.kernel not in SWEEP_KERNELS:
        raise UserInputError(
            f"kernel {settings.kernel!r} cannot run a sweep; choose one of "
            f"{', '.join(SWEEP_KERNELS)} (nuts moves all particles as one Pyro state)"
        )
    items = []
    for world_name in worlds:
        if not isinstance(world_name, str):
            raise UserInputError(f"worlds are names, got {world_name!r}")
        config = settings.run_config(world_name, seeds[0], device=None if check_device else "cpu")
        named: list[NamedTarget] = expand_targets(list(targets), config.world.classes)
        specs = [target.spec for target in named]
        if len(set(specs)) != len(specs):
            duplicate = next(spec for spec in specs if specs.count(spec) > 1)
            raise UserInputError(f"target {duplicate!r} appears twice in {', '.join(targets)}")
        for seed in seeds:
            for target in named:
                name = f"{_safe(world_name)}-{target_label(target.spec)}-{settings.kernel}-seed{seed}"
                items.append(
                    Item(world_name, target.spec, target.family, dict(target.params), settings.kernel, seed, name)
                )
    return SweepPlan(worlds, targets, seeds, settings, tuple(items))


SPEC_KEYS = {"worlds", "world", "targets", "seeds", "seed", "out"} | {f.name for f in dataclasses.fields(SweepSettings)}


def read_spec(path: str | Path) -> dict[str, Any]:
    """A TOML sweep spec (read with the standard library's ``tomllib``)::

        worlds = ["houses", "toy"]        # or world = "houses"
        targets = ["graded:house"]        # families or single targets, per world
        seeds = [0, 1]                    # or seed = 0
        kernel = "rwmh"                   # and any of: particles_per_target, alpha, warmup, steps,
        particles_per_target = 100        # thin, device, populations, moves, target_ess, keep,
        out = "runs/audit"                # chunk_size, out

    Unknown keys are an error (a typo would otherwise be silently ignored).
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"sweep spec {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read sweep spec {path}: {exc}") from None
    unknown = sorted(set(data) - SPEC_KEYS)
    if unknown:
        raise UserInputError(f"unknown key {unknown[0]!r} in {path}; known keys: {', '.join(sorted(SPEC_KEYS))}")
    spec = dict(data)
    if "world" in spec:
        if "worlds" in spec:
            raise UserInputError(f"{path}: give world or worlds, not both")
        spec["worlds"] = [spec.pop("world")]
    if "seed" in spec:
        if "seeds" in spec:
            raise UserInputError(f"{path}: give seed or seeds, not both")
        spec["seeds"] = [spec.pop("seed")]
    for key in ("worlds", "targets", "seeds"):
        if key in spec:
            value = spec[key]
            spec[key] = [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value
            if not isinstance(spec[key], list):
                raise UserInputError(f"{path}: {key} must be a list")
    return spec


def settings_from(values: dict[str, Any]) -> SweepSettings:
    """:class:`SweepSettings` from a mapping (spec or CLI), defaults for what is missing."""
    known = {f.name for f in dataclasses.fields(SweepSettings)}
    return SweepSettings(**{key: value for key, value in values.items() if key in known and value is not None})
