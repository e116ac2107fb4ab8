"""The paper's "Rockets or Houses" experiment, rerun: ``pplevelset reproduce houses``.

What it does, with the paper's numbers beside ours in ``report.md`` and ``houses.json``:

1. Samples the three level sets of the ``houses`` world at alpha = 10 (``house=0.999``,
   ``rocket=0.999``, ``ambiguous``) with N batched random-walk MH chains, resamples n = N final
   states and reports classifier confidence (mean, min), Delta (Eq. 5), R-hat, ESS and the burn-in
   verdict; image grids like the paper's Figure 1.
2. Figure 3: how many of 3,000 prior draws, and how many posterior samples, the classifier finds
   ambiguous (``|p_house - 0.5| < 0.05``), with a 3-D scatter of ``(w, h, t)``.
3. The circles experiment: the same three level sets on ``houses-circles``, the same latents
   classified with and without the circle; changes in confidence and in accuracy against the
   latent's most probable mixture component (:func:`most_probable_component`).
4. Tempered SMC beside MH on the same targets: Delta, distinct samples, mode shares, run time and
   ``log p(target)``.

The numbers are computed here; :mod:`pplevelset.reproduce.houses_report` words them.

Example::

    from pplevelset.reproduce.houses import QUICK, run
    run("runs/reproduce-houses", quick=True, overwrite=True)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import gammaln

from pplevelset import metrics
from pplevelset.plotting import diagnostics_figure, image_grid, latent_scatter_3d
from pplevelset.reproduce import common
from pplevelset.reproduce.houses_report import HousesNumbers, write_report
from pplevelset.reproduce.report import Report
from pplevelset.rng import generator
from pplevelset.rundir import check_writable
from pplevelset.targets import parse_target
from pplevelset.worlds import load_world
from pplevelset.worlds.houses.priors import CLASSES, houses_prior, sample_labelled

ALPHA = 10.0
LEVEL_SETS = {"house": "house=0.999", "rocket": "rocket=0.999", "ambiguous": "ambiguous"}
AMBIGUOUS_BAND = 0.05  # the paper's Figure 3: "confidences ranging between 45% and 55%"
HOUSE = CLASSES.index("house")

# The paper's numbers ("Rockets or Houses"); None where the paper gives none.
PAPER = {
    "classifier_accuracy": 0.973,
    "house": {"confidence_mean": 0.949, "confidence_min": 0.841},
    "rocket": {"confidence_mean": 0.949, "confidence_min": 0.864},
    "ambiguous": {"confidence_mean": 0.510, "confidence_min": None},
    "circles": {
        "house": {"confidence_shift": 0.011, "accuracy_shift": 0.0},
        "rocket": {"confidence_shift": -0.016, "accuracy_shift": 0.0},
        "ambiguous": {"confidence_shift": 0.049, "accuracy_shift": 0.15},
    },
}


@dataclass(frozen=True)
class Sizes:
    """How big the experiment is. :data:`FULL` is the paper-sized run, :data:`QUICK` the smoke run."""

    particles: int  # N chains per level set (MH); the metrics resample n = N of the final states
    warmup: int  # adaptation steps, discarded (chosen from the burn-in check: settled by ~150)
    steps: int  # T recorded steps after warm-up
    prior_samples: int = 3000  # the paper's Figure 3
    smc_particles: int = 1000
    smc_populations: int = 4
    smc_moves: int = 10
    grid_images: int = 32  # per level set in the Figure 1 grids
    circle_pairs: int = 8  # latents per level set shown with and without the circle
    seed: int = 0


FULL = Sizes(particles=1000, warmup=200, steps=500)
QUICK = Sizes(particles=100, warmup=100, steps=50, smc_particles=200, grid_images=16)


# -- pieces other code may reuse ---------------------------------------------------------------


def most_probable_component(z: torch.Tensor) -> torch.Tensor:
    """Index (into ``CLASSES``: 0 house, 1 rocket) of the prior component with the higher density at ``z``.

    Uses the shape columns ``[w, h, t]`` of ``z`` (``(..., 3)`` or ``(..., 6)`` with a circle);
    the two components have equal weight, so this is the generative model's Bayes label.
    """
    components = houses_prior(z.device).component_distribution  # batch (2,), event (3,)
    return components.log_prob(z[..., :3].unsqueeze(-2)).argmax(-1)


def ambiguous_hits(predictions: torch.Tensor, band: float = AMBIGUOUS_BAND) -> int:
    """How many predictions have ``|p_house - 0.5| < band``."""
    return int(((predictions[..., HOUSE] - 0.5).abs() < band).sum())


def accuracy(predictions: torch.Tensor, z: torch.Tensor) -> float:
    """Share of samples whose predicted class is the latent's most probable mixture component."""
    return float((predictions.argmax(-1).cpu() == most_probable_component(z.cpu())).float().mean())


def predict(world, z: torch.Tensor, circle: bool | None = None, batch_size: int = 1000) -> torch.Tensor:
    """Classifier probabilities (CPU) of latents ``z``; ``circle=False`` renders a circles world without it."""
    options = {} if circle is None else {"circle": circle}
    return common.predict(world, z, batch_size, **options)


def log_dirichlet(target: torch.Tensor, probs: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """``log Dirichlet(target; alpha probs)`` per row (:func:`pplevelset.reproduce.common.log_dirichlet`)."""
    return common.log_dirichlet(target, probs, alpha)


def likelihood_profile(target_house: float, alpha: float = ALPHA, grid: int = 20001) -> dict[str, float]:
    """What the Beta likelihood alone says about ``p = p_house``: its mode and, under a flat prior on
    ``p``, the mean top-class probability ``E[max(p, 1 - p)]``. Explains the confidence we can expect."""

    def log_likelihood(p):
        a, b = alpha * p, alpha * (1 - p)
        return (
            gammaln(alpha)
            - gammaln(a)
            - gammaln(b)
            + (a - 1) * np.log(target_house)
            + (b - 1) * np.log(1 - target_house)
        )

    p = np.linspace(0.5 / grid, 1 - 0.5 / grid, grid)
    log_l = log_likelihood(p)
    weights = np.exp(log_l - log_l.max())
    weights /= weights.sum()
    confident = 0.9999 if target_house >= 0.5 else 0.0001  # a prototypical shape of the target's class
    return {
        "mode_p_house": float(p[np.argmax(log_l)]),
        "mean_top_probability": float((weights * np.maximum(p, 1 - p)).sum()),
        "mean_p_house": float((weights * p).sum()),
        "likelihood_ratio_mode_vs_0.9999": float(np.exp(log_l.max() - log_likelihood(confident))),
    }


# -- the experiment ----------------------------------------------------------------------------

_log = common.logger("houses")
# the run diagnostics houses.json records per MH level set, in its order
_MH_DIAGNOSTICS = ("acceptance_rate", "rhat_max", "ess_bulk_min", "ess_tail_min", "burn_in_ok", "burn_in", "elapsed_s")


def _diagnostics(post) -> dict:
    numbers = common.chain_diagnostics(post)
    return {key: numbers[key] for key in _MH_DIAGNOSTICS}


def _sample(world, spec: str, sizes: Sizes, seed: int, device: str, kernel: str = "rwmh"):
    if kernel == "smc":
        settings: dict[str, int] = dict(
            num_particles=sizes.smc_particles, populations=sizes.smc_populations, moves=sizes.smc_moves
        )
    else:
        settings = dict(num_particles=sizes.particles, warmup=sizes.warmup, steps=sizes.steps)
    particles = settings["num_particles"]
    return common.run_sampler(
        _log,
        world,
        spec,
        f"({kernel}, {particles} particles)",
        ".3f",
        alpha=ALPHA,
        kernel=kernel,
        seed=seed,
        device=device,
        **settings,
    )


def _house_share(z: torch.Tensor) -> float:
    """Share of latents nearer (in prior density) the house component."""
    return float((most_probable_component(z) == HOUSE).float().mean())


def _level_set(post, kept, prior: dict) -> dict:
    """The numbers of one level set: confidence, Delta, Figure 3 hits, modes, diagnostics."""
    confidence = kept.confidence()
    hits = ambiguous_hits(kept.predictions())
    return {
        "confidence_mean": confidence["mean"],
        "confidence_min": confidence["min"],
        "delta": kept.delta(),
        "mean_p_house": float(kept.predictions()[:, HOUSE].mean()),
        "prior_hits": prior["hits"],
        "prior_samples": prior["samples"],
        "prior_fraction": prior["fraction"],
        "posterior_hits": hits,
        "posterior_samples": len(kept),
        "posterior_fraction": hits / len(kept),
        "house_component_fraction": _house_share(post.z),
        "distinct_samples": kept.distinct_samples(),
        "mean_z": [round(float(v), 2) for v in kept.z.mean(0)],
        **_diagnostics(post),
    }


def _circles(world, post, kept, target: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The same latents classified with and without the circle: the numbers, and the predictions without."""
    with_circle = kept.predictions()
    without = predict(world, kept.z, circle=False)
    conf_with = metrics.confidence(target, with_circle)["mean"]
    conf_without = metrics.confidence(target, without)["mean"]
    acc_with, acc_without = accuracy(with_circle, kept.z), accuracy(without, kept.z)
    n = len(kept)
    # paired standard errors (the same latents rendered twice); resampling duplicates make them a lower bound
    per_sample = _per_sample_confidence(target, with_circle) - _per_sample_confidence(target, without)
    component = most_probable_component(kept.z)
    correct = lambda probs: (probs.argmax(-1) == component).double()
    agreement = correct(with_circle) - correct(without)
    return {
        "confidence_with": conf_with,
        "confidence_without": conf_without,
        "confidence_shift": conf_with - conf_without,
        "confidence_shift_se": float(per_sample.double().std() / math.sqrt(n)) if n > 1 else None,
        "accuracy_with": acc_with,
        "accuracy_without": acc_without,
        "accuracy_shift": acc_with - acc_without,
        "accuracy_shift_se": float(agreement.std() / math.sqrt(n)) if n > 1 else None,
        "argmax_changed": float((with_circle.argmax(-1) != without.argmax(-1)).float().mean()),
        "delta": kept.delta(),
        "delta_without_circle": metrics.delta(target, without),
        "house_component_fraction": _house_share(post.z),
        **_diagnostics(post),
    }, without


def _circles_prior_control(world, samples: int, seed: int) -> dict:
    """The circle's effect with no conditioning: prior draws of ``houses-circles`` classified both ways."""
    z, _ = sample_labelled(samples, generator(seed), circles=True)
    with_circle, without = predict(world, z), predict(world, z, circle=False)
    return {
        "samples": samples,
        "accuracy_with": accuracy(with_circle, z),
        "accuracy_without": accuracy(without, z),
        "confidence_with": float(with_circle.max(-1).values.mean()),
        "confidence_without": float(without.max(-1).values.mean()),
        "argmax_changed": float((with_circle.argmax(-1) != without.argmax(-1)).float().mean()),
    }


def _per_sample_confidence(target: torch.Tensor, predictions: torch.Tensor) -> torch.Tensor:
    """Per sample, what :func:`metrics.confidence` averages: the probability of the target's favoured class."""
    tied = (target >= target.max() - 1e-6).to(predictions.device)
    return predictions.masked_fill(~tied, -1.0).max(-1).values


def _smc(post, kept, prior_probs: torch.Tensor, target: torch.Tensor) -> dict:
    confidence = kept.confidence()
    prior_mc = torch.logsumexp(log_dirichlet(target, prior_probs), 0) - math.log(prior_probs.shape[0])
    return {
        "delta": kept.delta(),
        "confidence_mean": confidence["mean"],
        "confidence_min": confidence["min"],
        "distinct_final": post.distinct_samples(),
        "distinct_resampled": kept.distinct_samples(),
        "particles": len(post),
        "house_component_fraction": _house_share(post.z),
        "log_evidence": post.stats["log_evidence"],
        "log_evidence_per_population": post.stats["log_evidence_per_population"],
        "log_evidence_prior_monte_carlo": float(prior_mc),
        "num_temperatures": post.stats["num_temperatures"],
        **common.convergence_numbers(post),
        "elapsed_s": round(post.elapsed_s, 1),
    }


def _paired_grid(pairs: dict, classes, ncols: int):
    """Rows: each level set's latents with the circle, then the same latents without it."""
    images, predictions, labels = [], [], []
    for name, (with_images, with_probs, without_images, without_probs) in pairs.items():
        images += [with_images, without_images]
        predictions += [with_probs, without_probs]
        labels += [f"{name}\nwith circle", f"{name}\nwithout"]
    fig = image_grid(
        torch.cat(images),
        torch.cat(predictions),
        classes,
        ncols=ncols,
        title="houses-circles: the same latents rendered with and without the circle",
    )
    fig.subplots_adjust(left=0.09)
    axes = fig.axes
    for row, label in enumerate(labels):
        box = axes[row * ncols].get_position()
        fig.text(box.x0 - 0.01, (box.y0 + box.y1) / 2, label, rotation=90, ha="right", va="center", fontsize=7)
    return fig


def run(
    out: str | Path, quick: bool = False, overwrite: bool = False, device: str = "cpu", sizes: Sizes | None = None
) -> Path:
    """Run the houses experiments and write ``report.md``, figures and ``houses.json`` into ``out``.

    :param sizes: override :data:`FULL` / :data:`QUICK` (tests use tiny sizes).
    """
    sizes = sizes or (QUICK if quick else FULL)
    out = check_writable(out, overwrite)  # refuse before sampling, not after
    command = (
        "pplevelset reproduce houses"
        + (" --quick" if quick else "")
        + (f" --device {device}" if str(device) != "cpu" else "")
    )
    report = Report("Rockets or houses: the paper's synthetic world, reproduced", command)
    houses = load_world("houses", device=device)
    circles = load_world("houses-circles", device=device)
    seed = sizes.seed

    prior_z, prior_probs, prior, prior_accuracy = _prior_draws(houses, sizes.prior_samples, seed + 100)
    results, posts, kept_sets = _mh_level_sets(houses, sizes, device, prior)
    smc_results, smc_posts = _smc_level_sets(houses, sizes, device, prior_probs)
    circle_results, circle_pairs = _circle_level_sets(circles, sizes, device)
    for name in LEVEL_SETS:
        results[name]["confidence_shift"] = circle_results[name]["confidence_shift"]
        results[name]["accuracy_shift"] = circle_results[name]["accuracy_shift"]
    profiles = {
        name: likelihood_profile(float(parse_target(spec, CLASSES)[HOUSE])) for name, spec in LEVEL_SETS.items()
    }

    numbers = HousesNumbers(
        sizes=sizes,
        results=results,
        circles=circle_results,
        smc=smc_results,
        prior=prior,
        prior_accuracy=prior_accuracy,
        profiles=profiles,
        card_accuracy=getattr(houses, "classifier_card", {}).get("metrics", {}).get("accuracy"),
        alpha=ALPHA,
        level_sets=LEVEL_SETS,
        band=AMBIGUOUS_BAND,
        paper=PAPER,
    )
    write_report(report, numbers)
    _add_figures(report, sizes, houses, circles, posts, kept_sets, smc_posts, prior_z, prior_probs, circle_pairs)
    path = report.save(out, _json(numbers, quick, device), json_name="houses.json", overwrite=overwrite)
    _log(f"wrote {path}/report.md in {report.elapsed():.0f} s")
    return path


def _prior_draws(world, samples: int, seed: int):
    """Figure 3's prior sample: ``(z, predictions, prior numbers, classifier accuracy on it)``."""
    prior_z, prior_labels = sample_labelled(samples, generator(seed))
    prior_probs = predict(world, prior_z)
    hits = ambiguous_hits(prior_probs)
    prior = {
        "hits": hits,
        "samples": samples,
        "fraction": hits / samples,
        "confident_fraction": float((prior_probs.max(-1).values > 0.99).float().mean()),
        "house_component_fraction": _house_share(prior_z),
        "mean_z": {
            name: [round(float(v), 2) for v in prior_z[prior_labels == k].mean(0)] for k, name in enumerate(CLASSES)
        },
    }
    accuracy_on_prior = float((prior_probs.argmax(-1) == prior_labels).float().mean())
    return prior_z, prior_probs, prior, accuracy_on_prior


def _mh_level_sets(world, sizes: Sizes, device: str, prior: dict):
    """The three level sets with MH: ``(numbers, posteriors, resampled posteriors)`` by name."""
    results, posts, kept_sets = {}, {}, {}
    for index, (name, spec) in enumerate(LEVEL_SETS.items()):
        post = _sample(world, spec, sizes, sizes.seed + index, device)
        kept = post.resample(sizes.particles, seed=sizes.seed)
        posts[name], kept_sets[name] = post, kept
        results[name] = _level_set(post, kept, prior)
    return results, posts, kept_sets


def _smc_level_sets(world, sizes: Sizes, device: str, prior_probs: torch.Tensor):
    """The three level sets with tempered SMC: ``(numbers, (posterior, resampled))`` by name."""
    smc_results, smc_posts = {}, {}
    for index, (name, spec) in enumerate(LEVEL_SETS.items()):
        post = _sample(world, spec, sizes, sizes.seed + 20 + index, device, kernel="smc")
        kept = post.resample(sizes.smc_particles, seed=sizes.seed)
        smc_posts[name] = (post, kept)
        smc_results[name] = _smc(post, kept, prior_probs, post.target)
    return smc_results, smc_posts


def _circle_level_sets(circles, sizes: Sizes, device: str):
    """The level sets on ``houses-circles``, and the prior control: ``(numbers, image pairs)``.

    The pairs are, per level set, the first ``circle_pairs`` resampled latents rendered with and
    without the circle, with both predictions, for the circles figure.
    """
    circle_results, circle_pairs = {}, {}
    for index, (name, spec) in enumerate(LEVEL_SETS.items()):
        post = _sample(circles, spec, sizes, sizes.seed + 10 + index, device)
        kept = post.resample(sizes.particles, seed=sizes.seed)
        circle_results[name], without = _circles(circles, post, kept, post.target)
        shown = slice(0, sizes.circle_pairs)
        with torch.no_grad():
            z_shown = kept.z[shown].to(circles.device)
            circle_pairs[name] = (
                circles.decode(z_shown).cpu(),
                kept.predictions()[shown],
                circles.decode(z_shown, circle=False).cpu(),
                without[shown],
            )
    circle_results["prior_control"] = _circles_prior_control(circles, sizes.prior_samples, sizes.seed + 200)
    return circle_results, circle_pairs


def _json(n: HousesNumbers, quick: bool, device: str) -> dict:
    """``houses.json``: the settings and every number of the report."""
    sizes = n.sizes
    return {
        "alpha": ALPHA,
        "particles": sizes.particles,
        "steps": sizes.steps,
        "warmup": sizes.warmup,
        "seed": sizes.seed,
        "resample": sizes.particles,
        "prior_samples": sizes.prior_samples,
        "ambiguous_band": AMBIGUOUS_BAND,
        "quick": bool(quick),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "sizes": asdict(sizes),
        "classifier_accuracy_test": n.card_accuracy,
        "classifier_accuracy_prior_sample": n.prior_accuracy,
        "prior_confident_fraction": n.prior["confident_fraction"],
        "prior_mean_z": n.prior["mean_z"],
        **n.results,
        "circles": n.circles,
        "smc": {
            **n.smc,
            "settings": {
                "particles": sizes.smc_particles,
                "populations": sizes.smc_populations,
                "moves": sizes.smc_moves,
                "target_ess": 0.5,
            },
        },
        "likelihood_profile": n.profiles,
        "paper": PAPER,
    }


# -- figures ---------------------------------------------------------------------------------------


def _add_figures(report, sizes, houses, circles, posts, kept_sets, smc_posts, prior_z, prior_probs, circle_pairs):
    """The figures section: paper Figures 1 and 3, the circles pairs, SMC against MH, trace panels."""
    captions = {
        "house": "Predicted houses, target house = 0.999 (paper Figure 1a)",
        "rocket": "Predicted rockets, target rocket = 0.999 (paper Figure 1b)",
        "ambiguous": "Ambiguous images, target 0.5 / 0.5 (paper Figure 1c)",
    }
    report.section("Figures")
    for name in LEVEL_SETS:
        shown = kept_sets[name].resample(min(sizes.grid_images, len(kept_sets[name])), seed=sizes.seed + 1)
        fig = image_grid(shown.images(), shown.predictions(), houses.classes, title=captions[name])
        report.figure(
            fig, f"fig1_{name}.png", captions[name] + "; each image captioned with its predicted probabilities"
        )

    def category(probs):
        labels = torch.where(probs[:, HOUSE] >= 0.5, 0, 1)
        return torch.where((probs[:, HOUSE] - 0.5).abs() < AMBIGUOUS_BAND, 2, labels)

    categories = ["predicted house", "predicted rocket", f"ambiguous (|p - 0.5| < {AMBIGUOUS_BAND:g})"]
    colors = ["tab:blue", "tab:red", "tab:green"]
    panels = [
        (f"posterior, {LEVEL_SETS[name]}", kept_sets[name].z, category(kept_sets[name].predictions()))
        for name in LEVEL_SETS
    ]
    panels.append(("prior draws", prior_z, category(prior_probs)))
    fig = latent_scatter_3d(panels, categories, colors=colors, max_points=None, ncols=2)
    report.figure(
        fig,
        "fig3_latents.png",
        "Latents (w, h, t) of each level set's resampled states and of the prior draws (lower right), "
        "coloured by the classifier's prediction; all panels share their axes (paper Figure 3)",
    )

    fig = _paired_grid(circle_pairs, circles.classes, ncols=sizes.circle_pairs)
    report.figure(fig, "circles.png", "The same latents of each circles level set, with and without the circle")

    panels = []
    for name in ("ambiguous",):
        panels.append((f"MH, {name}", posts[name].z, most_probable_component(posts[name].z)))
        panels.append((f"SMC, {name}", smc_posts[name][0].z, most_probable_component(smc_posts[name][0].z)))
    fig = latent_scatter_3d(
        panels,
        ["nearer the house component", "nearer the rocket component"],
        colors=["tab:blue", "tab:red"],
        max_points=None,
    )
    report.figure(
        fig,
        "smc_vs_mh.png",
        "Final states of the ambiguous level set, MH (left) and SMC (right), "
        "coloured by the nearer prior component: compare the share of each mode",
    )

    report.figure(
        diagnostics_figure(posts["ambiguous"]),
        "trace_ambiguous.png",
        "MH diagnostics, ambiguous: log-likelihood, z traces, acceptance and step size over warm-up | "
        "sampling (the other level sets' burn-in verdicts are in the table above)",
    )
    report.figure(
        diagnostics_figure(smc_posts["ambiguous"][0]),
        "trace_smc_ambiguous.png",
        "SMC diagnostics, ambiguous: temperatures, ESS, acceptance and proposal scale",
    )
