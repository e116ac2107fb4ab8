"""What the explorer shows, without any web framework: precomputed level sets and refined ones.

A target is a pair of classes ``(A, B)`` and a level ``v`` in [0, 1]: p(A) = v and B the rest, every
other class at the graded family's floor, exactly as ``graded:A,B`` spells its 11 targets. The
families of every requested pair run as **one** batched :func:`pplevelset.sweep` at start-up, so a
slider move only looks up the nearest precomputed level; a new pair or alpha costs one more sweep
of 11 targets, and ``refine`` samples the exact target with :func:`pplevelset.sample`. Results are
shared by every browser session (a lock keeps two sessions from computing the same thing twice).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Sequence

from pplevelset.audit.batched import sweep
from pplevelset.errors import UserInputError
from pplevelset.explore.settings import REFINE_KERNELS, Settings
from pplevelset.infer.driver import sample
from pplevelset.posterior import LevelSetPosterior
from pplevelset.targets import FAMILY_FLOOR, GRADED_STEPS
from pplevelset.worlds import load_world
from pplevelset.worlds.base import World

Pair = tuple[str, str]  # (A, B): A gets the slider's level, B the rest
LEVELS = tuple(k / (GRADED_STEPS - 1) for k in range(GRADED_STEPS))  # the graded family's levels


@dataclasses.dataclass(frozen=True)
class Answer:
    """One shown level set: the posterior, the exact target it was sampled for, and how it was made."""

    posterior: LevelSetPosterior
    pair: Pair
    level: float  # the level sampled (the nearest precomputed one, or the exact one when refined)
    requested: float  # the level asked for
    spec: str  # the target in the single-target grammar (`pplevelset sample --target SPEC`)
    alpha: float
    kernel: str
    refined: bool


def pair_target(pair: Sequence[str], level: float, classes: Sequence[str]) -> tuple[str, float]:
    """``(spec, p(A))`` for level ``level`` of ``graded:A,B`` (the same numbers the family uses)."""
    a, b = pair
    mass = 1 - FAMILY_FLOOR * (len(classes) - 2)  # what A and B share
    p = min(max(level * mass, FAMILY_FLOOR), mass - FAMILY_FLOOR)
    return f"{a}={p:.6g},{b}={mass - p:.6g}", p


def default_pairs(classes: Sequence[str]) -> list[Pair]:
    """Every pair when that stays a small batch (up to 4 classes, 6 pairs), else the first two classes."""
    classes = [str(name) for name in classes]
    return list(itertools.combinations(classes, 2)) if len(classes) <= 4 else [(classes[0], classes[1])]


def parse_pairs(specs: Sequence[str] | None, classes: Sequence[str]) -> list[Pair]:
    """``["A,B", ...]`` or ``["all"]`` (``None``: :func:`default_pairs`) as checked class pairs."""
    classes = [str(name) for name in classes]
    if not specs:
        return default_pairs(classes)
    if [spec.strip().lower() for spec in specs] == ["all"]:
        return list(itertools.combinations(classes, 2))
    pairs: list[Pair] = []
    for spec in specs:
        names = [name.strip() for name in spec.split(",")]
        if len(names) != 2 or not all(names):
            raise UserInputError(f"--pairs {spec!r}: give two classes as A,B (or all)")
        for name in names:
            if name not in classes:
                raise UserInputError(f"--pairs {spec!r}: unknown class {name!r}; classes are {', '.join(classes)}")
        if names[0] == names[1]:
            raise UserInputError(f"--pairs {spec!r}: the two classes must differ")
        pair = (names[0], names[1])
        if pair not in pairs and pair[::-1] not in pairs:
            pairs.append(pair)
    return pairs


class Answers:
    """Level sets of one world by (pair, level, alpha): precomputed sweeps and refined runs, cached."""

    def __init__(
        self,
        world: World | str,
        settings: Settings | None = None,
        pairs: Sequence[Pair] = (),
        progress: bool = False,
    ):
        settings = Settings() if settings is None else settings
        self.world = load_world(world, device=settings.device)
        self.classes = [str(name) for name in self.world.classes]
        if len(self.classes) < 2:
            raise UserInputError(f"world {self.world.name!r} has one class; there is nothing to explore")
        if settings.kernel not in REFINE_KERNELS:
            raise UserInputError(f"the explorer runs {' or '.join(REFINE_KERNELS)}, not {settings.kernel!r}")
        self.settings = settings
        self.pairs = list(pairs) or default_pairs(self.classes)
        self.progress = progress
        self._sweeps: dict[tuple[str, str, float], list[LevelSetPosterior]] = {}
        self._refined: dict[tuple[str, float, str], LevelSetPosterior] = {}
        self._lock = threading.Lock()

    # -- what is ready --------------------------------------------------------------------------
    def _stored(self, pair: Pair, alpha: float) -> tuple[tuple[str, str, float], bool] | None:
        """The cache key holding ``pair`` at ``alpha`` and whether it is stored reversed, if any."""
        a, b = pair
        for key, flipped in (((a, b, alpha), False), ((b, a, alpha), True)):
            if key in self._sweeps:
                return key, flipped
        return None

    def ready(self, pair: Pair, alpha: float) -> bool:
        """Whether a slider move on ``pair`` at ``alpha`` is a lookup (no sampling)."""
        return self._stored((pair[0], pair[1]), float(alpha)) is not None

    # -- computing ------------------------------------------------------------------------------
    def precompute(self, pairs: Sequence[Pair] | None = None, alpha: float | None = None) -> float:
        """One batched sweep over ``graded:A,B`` of every pair not stored yet; its seconds."""
        alpha = self.settings.alpha if alpha is None else float(alpha)
        with self._lock:
            todo = [(a, b) for a, b in (self.pairs if pairs is None else pairs) if self._stored((a, b), alpha) is None]
            if not todo:
                return 0.0
            start = time.perf_counter()
            s = self.settings
            result = sweep(
                self.world,
                [f"graded:{a},{b}" for a, b in todo],
                particles_per_target=s.particles,
                kernel=s.kernel,
                alpha=alpha,
                warmup=s.warmup,
                steps=s.steps,
                seed=s.seed,
                device=s.device,
                progress=self.progress,
            )
            for a, b in todo:
                family = f"graded:{a},{b}"
                self._sweeps[(a, b, alpha)] = [
                    post for target, post in zip(result.targets, result) if target.family == family
                ]
            return time.perf_counter() - start

    def nearest(self, pair: Pair, level: float, alpha: float | None = None) -> Answer:
        """The precomputed level set nearest ``level`` (a lookup once the pair's sweep exists)."""
        pair, alpha = self._check(pair, level), self.settings.alpha if alpha is None else float(alpha)
        stored = self._stored(pair, alpha)
        if stored is None:
            self.precompute([pair], alpha)
            stored = self._stored(pair, alpha)
        assert stored is not None
        key, flipped = stored
        index = min(range(len(LEVELS)), key=lambda k: (abs(LEVELS[k] - level), k))
        posterior = self._sweeps[key][len(LEVELS) - 1 - index if flipped else index]
        spec, _ = pair_target(pair, LEVELS[index], self.classes)
        return Answer(posterior, pair, LEVELS[index], float(level), spec, alpha, self.settings.kernel, False)

    def refine(self, pair: Pair, level: float, alpha: float | None = None, kernel: str | None = None) -> Answer:
        """The exact target of ``level``, sampled on demand with ``refine_particles`` particles."""
        pair, alpha = self._check(pair, level), self.settings.alpha if alpha is None else float(alpha)
        kernel = self.settings.kernel if kernel is None else kernel
        if kernel not in REFINE_KERNELS:
            raise UserInputError(f"refine runs {' or '.join(REFINE_KERNELS)}, not {kernel!r}")
        spec, _ = pair_target(pair, level, self.classes)
        key = (spec, alpha, kernel)
        with self._lock:
            if key not in self._refined:
                s = self.settings
                self._refined[key] = sample(
                    self.world,
                    spec,
                    alpha=alpha,
                    num_particles=s.refine_particles,
                    warmup=s.warmup,
                    steps=s.steps,
                    kernel=kernel,
                    seed=s.seed,
                    device=s.device,
                    progress=False,
                )
        return Answer(self._refined[key], pair, float(level), float(level), spec, alpha, kernel, True)

    def _check(self, pair: Sequence[str], level: float) -> Pair:
        names = [str(name) for name in pair]
        if len(names) != 2 or names[0] == names[1] or not set(names) <= set(self.classes):
            raise UserInputError(f"choose two different classes of {', '.join(self.classes)}, got {tuple(names)}")
        if not 0 <= level <= 1:
            raise UserInputError(f"the level p({names[0]}) must be in [0, 1], got {level}")
        return names[0], names[1]

    def describe(self) -> str:
        """What start-up computes, for the progress line."""
        s = self.settings
        return (
            f"{len(self.pairs)} pair(s) x {len(LEVELS)} targets x {s.particles} particles of {self.world.name} "
            f"(alpha {s.alpha:g}, {s.kernel}, {s.warmup} + {s.steps} steps) in one batched sweep"
        )
