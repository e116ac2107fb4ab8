"""Bayes-TrEx's MNIST and Fashion-MNIST experiments (Booth, Zhou, Shah and Shah, AAAI 2021), rerun.

Each experiment runs twice, with the paper's Dirichlet likelihood and with Bayes-TrEx's Normal one
(``sigma`` 0.05 on every class probability), on the ``ensemble`` kernel (level sets of pairs and
high-confidence classes may have several pieces). Per world and likelihood, the high-confidence
corners, the ambiguous pairs and the graded pair are one batched :func:`~pplevelset.audit.sweep`.
This module computes the numbers; :mod:`.bayestrex_report` writes them up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from pplevelset.errors import UserInputError
from pplevelset.model import DEFAULT_SIGMA
from pplevelset.reproduce import common
from pplevelset.reproduce.report import Report
from pplevelset.rundir import check_writable
from pplevelset.targets import expand_targets
from pplevelset.worlds import load_world

_log = common.logger("bayestrex")

FASHION = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
PAIRS = {"mnist": (("1", "7"), ("8", "9")), "fashion": (("tshirt", "shirt"), ("pullover", "coat"))}
GRADED = {"mnist": ("8", "9"), "fashion": ("tshirt", "shirt")}  # Bayes-TrEx's README example: 8v9
PAIR_LEVEL = 0.49  # Bayes-TrEx: |p_a - p_b| at 0 and a margin of 0.5 over the rest, so p_a = p_b ~ 0.5
CONFIDENT = 0.9  # "the classifier calls it C": p_C >= 0.9
ALPHA = 100.0  # the Dirichlet's, as in `reproduce mnist`
LIKELIHOODS: dict[str, dict[str, Any]] = {
    "dirichlet": {"likelihood": "dirichlet", "alpha": ALPHA},
    "normal": {"likelihood": "normal", "sigma": DEFAULT_SIGMA},
}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big the experiment is. :data:`FULL` (under an hour on 2 cores), :data:`QUICK` (minutes)."""

    particles_per_target: int = 100
    warmup: int = 500
    steps: int = 500
    worlds: tuple[str, ...] = ("mnist-vae", "fashion-vae")
    adversarial: tuple[str, ...] = ("mnist-adversarial", "fashion-adversarial")
    novel: tuple[str, ...] = ("mnist-novel", "fashion-novel")
    prior_samples: int = 5000
    kernel: str = "ensemble"
    images: int = 8


FULL = Sizes()
QUICK = Sizes(particles_per_target=48, warmup=200, steps=200, prior_samples=2000)


def dataset(classes) -> str:
    """``mnist`` or ``fashion`` by the world's class names (any other world: ``other``)."""
    names = tuple(map(str, classes))
    if set(names) <= set("0123456789"):
        return "mnist"
    return "fashion" if set(names) <= set(FASHION) else "other"


def pairs_of(classes) -> tuple[tuple[str, str], ...]:
    """Bayes-TrEx's ambiguous pairs for the world's dataset (another world: its first two classes)."""
    return PAIRS.get(dataset(classes), ((str(classes[0]), str(classes[1])),))


def graded_of(classes) -> tuple[str, str]:
    return GRADED.get(dataset(classes), (str(classes[0]), str(classes[1])))


def pair_spec(a: str, b: str) -> str:
    return f"{a}={PAIR_LEVEL},{b}={PAIR_LEVEL}"


def run_sweep(world, families: list[str], sizes: Sizes, likelihood: str, device: str):
    """One batched run of every target of ``families`` under ``likelihood``: ``(targets, result)``."""
    from pplevelset.audit.batched import sweep  # lazily: the experiments sit above the samplers

    targets = [target for family in families for target in expand_targets(family, world.classes)]
    result = sweep(
        world,
        targets,
        particles_per_target=sizes.particles_per_target,
        kernel=sizes.kernel,
        warmup=sizes.warmup,
        steps=sizes.steps,
        seed=0,
        device=device,
        progress=False,
        **LIKELIHOODS[likelihood],
    )
    _log(
        f"{world.name} {likelihood}: {len(targets)} targets x {sizes.particles_per_target} particles, "
        f"{result.elapsed_s:.0f} s"
    )
    return targets, result


def high_confidence(world, targets, result) -> dict:
    """Per class C of the corners: mean and min p_C, the share of particles argmax C and p_C >= 0.9."""
    out = {}
    for target, post in zip(targets, result):
        if target.family != "corners":
            continue
        index = list(world.classes).index(target.params.get("class", _top_class(target, world)))
        probs = post.predictions()
        out[str(world.classes[index])] = {
            "mean_p": float(probs[:, index].mean()),
            "min_p": float(probs[:, index].min()),
            "argmax_share": float((probs.argmax(-1) == index).float().mean()),
            "confident_share": float((probs[:, index] >= CONFIDENT).float().mean()),
            **common.convergence_numbers(post),
        }
    return out


def _top_class(target, world) -> str:
    return str(world.classes[int(target.vector.argmax())])


def pair_numbers(probs: torch.Tensor, a: int, b: int) -> dict:
    """Bayes-TrEx's statistics of a pair: |p_a - p_b| (observed at 0) and the margin
    min(p_a, p_b) - max(rest) (observed at 0.5), and the share within 0.1 of both."""
    rest = torch.ones(probs.shape[-1], dtype=torch.bool)
    rest[[a, b]] = False
    diff = (probs[:, a] - probs[:, b]).abs()
    margin = torch.minimum(probs[:, a], probs[:, b]) - probs[:, rest].max(-1).values
    return {
        "mean_p_a": float(probs[:, a].mean()),
        "mean_p_b": float(probs[:, b].mean()),
        "mean_abs_diff": float(diff.mean()),
        "mean_margin": float(margin.mean()),
        "within_0.1_share": float(((diff < 0.1) & ((margin - 0.5).abs() < 0.1)).float().mean()),
    }


def ambiguous_pairs(world, targets, result) -> dict:
    out = {}
    for a, b in pairs_of(world.classes):
        post = result[pair_spec(a, b)]
        index = [list(world.classes).index(name) for name in (a, b)]
        out[f"{a}v{b}"] = {
            **pair_numbers(post.predictions(), *index),
            "delta": post.delta(),
            **common.convergence_numbers(post),
        }
    return out


def graded(world, targets, result) -> dict:
    """Achieved mean p_A and p_B against the target p_A, for the graded pair."""
    a, b = graded_of(world.classes)
    ia, ib = list(world.classes).index(a), list(world.classes).index(b)
    rows = []
    for target, post in zip(targets, result):
        if target.family == f"graded:{a},{b}":
            probs = post.predictions()
            rows.append(
                {
                    "target_p_a": float(target.vector[ia]),
                    "target_p_b": float(target.vector[ib]),
                    "mean_p_a": float(probs[:, ia].mean()),
                    "mean_p_b": float(probs[:, ib].mean()),
                    "sd_p_a": float(probs[:, ia].std()),
                }
            )
    return {"a": a, "b": b, "rows": rows}


def reference_labels(world, z: torch.Tensor) -> torch.Tensor:
    """The world's reference classifier's argmax (an index into ``world.reference_classes``)."""
    chunks = []
    with torch.no_grad():
        for start in range(0, z.shape[0], 1000):
            chunks.append(world.reference_classify(world.decode(z[start : start + 1000].to(world.device))).cpu())
    return torch.cat(chunks).argmax(-1)


def composition(labels: torch.Tensor, names) -> dict[str, float]:
    """Share of each class name among ``labels`` (indices into ``names``), largest first."""
    if labels.numel() == 0:
        return {}
    counts = torch.bincount(labels, minlength=len(names)).float() / labels.numel()
    order = counts.argsort(descending=True).tolist()
    return {str(names[k]): round(float(counts[k]), 4) for k in order if counts[k] > 0}


def adversarial(world, post, prior_z: torch.Tensor) -> dict:
    """Samples the classifier calls C (p_C >= 0.9) on a generator that never saw C: which share the
    reference classifier also calls C, and what they are instead; the same for prior draws."""
    excluded = str(world.excluded_class)
    index, reference = list(world.classes).index(excluded), list(map(str, world.reference_classes))

    def tally(z: torch.Tensor, probs: torch.Tensor) -> dict:
        confident = probs[:, index] >= CONFIDENT
        labels = reference_labels(world, z[confident]) if bool(confident.any()) else torch.zeros(0, dtype=torch.long)
        truly = float((labels == reference.index(excluded)).float().mean()) if labels.numel() else None
        return {
            "samples": int(z.shape[0]),
            "confident": int(confident.sum()),
            "reference_says_c": truly,
            "instead": composition(labels[labels != reference.index(excluded)], reference),
            "mean_p_c": float(probs[:, index].mean()),
        }

    return {
        "excluded_class": excluded,
        "posterior": tally(post.z, post.predictions()),
        "prior": tally(prior_z, common.predict(world, prior_z)),
        **common.convergence_numbers(post),
    }


def novel(world, targets, result, prior_z: torch.Tensor) -> dict:
    """Generated k's (k by the reference classifier) seen by a classifier that never saw k: the
    classes it gives them and with what confidence, among all high-confidence samples and the prior."""
    k = str(world.excluded_class)
    reference = list(map(str, world.reference_classes))

    def tally(z: torch.Tensor, probs: torch.Tensor) -> dict:
        is_k = reference_labels(world, z) == reference.index(k)
        top = probs[is_k].max(-1)
        return {
            "samples": int(z.shape[0]),
            "k_samples": int(is_k.sum()),
            "assigned": composition(top.indices, list(map(str, world.classes))),
            "mean_confidence": float(top.values.mean()) if bool(is_k.any()) else None,
            "confident_share": float((top.values >= CONFIDENT).float().mean()) if bool(is_k.any()) else None,
        }

    z = torch.cat([post.z for post in result])
    return {
        "novel_class": k,
        "posterior": tally(z, torch.cat([post.predictions() for post in result])),
        "prior": tally(prior_z, common.predict(world, prior_z)),
    }


def _available(names: tuple[str, ...], skipped: list[str], device: str):
    """``(name, world)`` for each world that loads; one that is unknown or misses its networks is
    logged and added to ``skipped`` (the report says so)."""
    for name in names:
        try:
            world = load_world(name, device=device)
        except UserInputError as exc:
            _log(f"skipping {name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            skipped.append(name)
            continue
        yield name, world


def compute(sizes: Sizes, device: str = "cpu") -> tuple[dict, dict]:
    """Every experiment's numbers, and the figures' raw material (sample images per world)."""
    numbers: dict = {"high_confidence": {}, "pairs": {}, "graded": {}, "adversarial": {}, "novel": {}, "skipped": []}
    pictures: dict = {}
    for name, world in _available(sizes.worlds, numbers["skipped"], device):
        a, b = graded_of(world.classes)
        families = ["corners", *[pair_spec(*pair) for pair in pairs_of(world.classes)], f"graded:{a},{b}"]
        for likelihood in LIKELIHOODS:
            targets, result = run_sweep(world, families, sizes, likelihood, device)
            numbers["high_confidence"].setdefault(name, {})[likelihood] = high_confidence(world, targets, result)
            numbers["pairs"].setdefault(name, {})[likelihood] = ambiguous_pairs(world, targets, result)
            numbers["graded"].setdefault(name, {})[likelihood] = graded(world, targets, result)
            for pair in pairs_of(world.classes) if _decodes_images(world) else ():
                kept = result[pair_spec(*pair)].resample(sizes.images, seed=0)
                pictures[name, likelihood, "v".join(pair)] = (world, kept.z)
    for name, world in _available(sizes.adversarial, numbers["skipped"], device):
        prior_z = _prior(world, sizes.prior_samples)
        for likelihood in LIKELIHOODS:
            _, result = run_sweep(world, [f"{world.excluded_class}=0.999"], sizes, likelihood, device)
            numbers["adversarial"].setdefault(name, {})[likelihood] = adversarial(world, result[0], prior_z)
            if _decodes_images(world):
                pictures[name, likelihood, "adversarial"] = (world, result[0].resample(sizes.images, seed=0).z)
    for name, world in _available(sizes.novel, numbers["skipped"], device):
        prior_z = _prior(world, sizes.prior_samples)
        for likelihood in LIKELIHOODS:
            targets, result = run_sweep(world, ["corners"], sizes, likelihood, device)
            numbers["novel"].setdefault(name, {})[likelihood] = novel(world, targets, result, prior_z)
    return numbers, pictures


def _decodes_images(world) -> bool:
    """Whether ``decode`` gives images ``(C, H, W)`` to show (the toy world's are points)."""
    with torch.no_grad():
        return world.decode(world.prior().sample((1,))).dim() == 4


def _prior(world, count: int) -> torch.Tensor:
    """``count`` prior draws, seeded, leaving the global generator as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return world.prior().sample((count,)).cpu()


def run(
    out: str | Path, quick: bool = False, overwrite: bool = False, device: str = "cpu", sizes: Sizes | None = None
) -> Path:
    """Run Bayes-TrEx's experiments into ``out``: ``report.md``, figures and ``bayestrex.json``.

    :param sizes: override :data:`FULL` / :data:`QUICK` (tests use tiny sizes and the toy worlds).
    """
    from pplevelset.reproduce.bayestrex_report import write

    check_writable(out, overwrite)  # before any sampling
    sizes = sizes or (QUICK if quick else FULL)
    command = f"pplevelset reproduce bayestrex{' --quick' if quick else ''} --out {out}"
    if sizes not in (FULL, QUICK):
        command += " (custom sizes)"
    report = Report("Bayes-TrEx's MNIST and Fashion-MNIST experiments, rerun", command)  # its clock starts now
    numbers, pictures = compute(sizes, device)
    numbers["settings"] = {
        **dataclasses.asdict(sizes),
        "alpha": ALPHA,
        "sigma": DEFAULT_SIGMA,
        "pair_level": PAIR_LEVEL,
        "confident": CONFIDENT,
    }
    result = write(report, out, numbers, pictures, overwrite)
    _log(f"wrote {out}/report.md")
    return result
