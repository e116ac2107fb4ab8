"""The paper's MNIST experiment (Table 1, Figures 4 and 5), rerun: ``pplevelset reproduce mnist``.

What it does, with the paper's numbers beside ours in ``report.md`` and ``table1.json``:

1. Table 1: for both priors (``mnist-vae``, ``mnist-gan``) and the three targets (``ambiguous``,
   ``1=0.46,7=0.46``, ``8=0.46,9=0.46``), N batched random-walk MH chains at alpha = :data:`ALPHA`,
   W warm-up + T steps, n = N final states resampled uniformly with replacement (the paper's last
   step), and Delta (Eq. 5) over them; hits within total variation 0.1, distinct samples, near
   duplicates, predicted-class composition, R-hat, ESS and the burn-in verdict per cell.
2. The paper gives no alpha for MNIST: an alpha study (10, 100, 1000) with smaller runs of both
   kernels, beside the Dirichlet's own tolerance at each alpha.
3. Tempered SMC beside MH on every cell (issue 7): Delta, hits, distinct samples, modes, run time
   and ``log p(target)``.
4. Figures: image grids of the sampled digits per cell (paper Figures 4 and 5), t-SNE maps of the
   5-D latents (prior light by predicted class, posterior dark; paper Figure 4), MH trace panels.

The numbers are computed here; :mod:`pplevelset.reproduce.mnist_report` words them.

Example::

    from pplevelset.reproduce.mnist import QUICK, run
    run("runs/reproduce-mnist", quick=True, overwrite=True)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from pplevelset import metrics
from pplevelset.plotting import diagnostics_figure, image_grid, tsne_map
from pplevelset.reproduce import common
from pplevelset.reproduce.mnist_report import LABEL, MnistNumbers, write_report
from pplevelset.reproduce.report import Report
from pplevelset.rng import generator
from pplevelset.rundir import check_writable
from pplevelset.targets import parse_target
from pplevelset.worlds import load_world

ALPHA = 100.0  # why: see the "Choice of alpha" section the report writes (and _alpha_text)
WORLDS = {"vae": "mnist-vae", "gan": "mnist-gan"}
TARGETS = {"ambiguous": "ambiguous", "1vs7": "1=0.46,7=0.46", "8vs9": "8=0.46,9=0.46"}
HIGHLIGHT = {"ambiguous": None, "1vs7": (1, 7), "8vs9": (8, 9)}  # classes coloured in the t-SNE panels
PAPER_DELTA = {
    "vae": {"ambiguous": 0.0183, "1vs7": 0.0622, "8vs9": 0.0766},
    "gan": {"ambiguous": 0.0593, "1vs7": 0.0792, "8vs9": 0.0531},
}
HIT_TV = 0.1  # a "hit": prediction within total variation 0.1 of the target
FAR_TV = 0.3  # a particle this far from the target never reached the level set
DUPLICATE_TOL = 0.05  # latents closer than this (prior sd 1) decode to indistinguishable digits


@dataclass(frozen=True)
class Sizes:
    """How big the experiment is. :data:`FULL` is the paper-sized run, :data:`QUICK` the smoke run."""

    num_particles: int = 1000  # N MH chains per cell; the metrics resample n = N final states
    warmup: int = 500  # adaptation steps, discarded: a pilot's log-likelihood settled by ~450
    steps: int = 500  # T recorded MH steps after warm-up
    alpha: float = ALPHA
    smc_particles: int = 1000
    populations: int = 4
    moves: int = 20  # MH moves per SMC temperature
    study_alphas: tuple[float, ...] = (10.0, 100.0, 1000.0)
    study_worlds: tuple[str, ...] = ("vae", "gan")
    study_particles: int = 100  # MH chains per alpha-study cell
    study_warmup: int = 300
    study_steps: int = 200
    study_smc_particles: int = 200
    prior_samples: int = 2000  # the t-SNE background and the prior baseline
    tsne_points: int = 500  # posterior latents per t-SNE panel (a fixed subset of the final states)
    grid_images: int = 32  # resampled digits per image grid
    trace_figures: bool = True  # one MH trace panel per cell (the slowest figures to draw)
    seed: int = 0


FULL = Sizes()
QUICK = Sizes(
    num_particles=100,
    warmup=100,
    steps=100,
    smc_particles=100,
    moves=10,
    study_alphas=(10.0, 1000.0),
    study_worlds=("vae",),
    study_particles=50,
    study_warmup=100,
    study_steps=50,
    study_smc_particles=100,
    prior_samples=400,
    tsne_points=100,
    grid_images=16,
    trace_figures=False,
)


# -- pieces other code may reuse ---------------------------------------------------------------
def predict(world, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Classifier probabilities (CPU) of latents ``z``, in batches."""
    return common.predict(world, z, batch_size)


def log_dirichlet(target: torch.Tensor, probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``log Dirichlet(target; alpha probs)`` per row (:func:`pplevelset.reproduce.common.log_dirichlet`)."""
    return common.log_dirichlet(target, probs, alpha)


def dirichlet_tolerance(target: torch.Tensor, alpha: float) -> float:
    """Delta that the Dirichlet alone allows: ``mean_l E|p~_l - p_l|`` for ``p~ ~ Dir(alpha p)``,
    in the normal approximation ``sqrt(2/pi) sd`` with ``sd = sqrt(p(1 - p) / (alpha + 1))``.
    A perfect sampler's Delta is of this order, whatever the networks do."""
    p = target.double()
    return float((math.sqrt(2 / math.pi) * (p * (1 - p) / (alpha + 1)).sqrt()).mean())


def distinct_within(z: torch.Tensor, tolerance: float) -> int:
    """Groups of latents closer than ``tolerance`` (single linkage): near duplicates count once."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if z.shape[0] < 2:
        return int(z.shape[0])
    labels = fcluster(linkage(z.double().numpy(), method="single"), t=tolerance, criterion="distance")
    return int(labels.max())


def class_composition(predictions: torch.Tensor, classes, min_share: float = 0.02) -> dict[str, float]:
    """Share of particles per predicted (argmax) class, largest first, classes under ``min_share`` dropped."""
    counts = torch.bincount(predictions.argmax(-1), minlength=len(classes)).double() / predictions.shape[0]
    order = torch.argsort(counts, descending=True).tolist()
    return {str(classes[k]): round(float(counts[k]), 4) for k in order if counts[k] >= min_share}


def likelihood_weighted_resample(
    target: torch.Tensor, predictions: torch.Tensor, alpha: float, n: int, seed: int = 0
) -> torch.Tensor:
    """Indices of ``n`` draws with replacement, weighted by each state's likelihood
    ``Dir(target; alpha f)``: one reading of the paper's resampling step that would explain its
    "fewer than 10 distinct" GAN samples (ours, like the paper's text, is uniform)."""
    weights = torch.softmax(log_dirichlet(target, predictions, alpha), 0)
    return torch.multinomial(weights, n, replacement=True, generator=generator(seed))


def likelihood_weighted_distinct(
    target: torch.Tensor, predictions: torch.Tensor, alpha: float, n: int, seed: int = 0
) -> int:
    """Distinct states among :func:`likelihood_weighted_resample`'s ``n`` draws."""
    return int(torch.unique(likelihood_weighted_resample(target, predictions, alpha, n, seed)).numel())


# -- the experiment ----------------------------------------------------------------------------

_log = common.logger("mnist")
# the run diagnostics table1.json records per MH cell, in its order
_MH_DIAGNOSTICS = (
    "rhat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "burn_in_ok",
    "burn_in_drift",
    "burn_in_z",
    "burn_in",
    "acceptance_rate",
    "log_likelihood_median",
)


def _sample(world, spec: str, alpha: float, sizes: Sizes, kernel: str, device: str, study: bool = False):
    if kernel == "smc":
        settings = dict(
            num_particles=sizes.study_smc_particles if study else sizes.smc_particles,
            populations=sizes.populations,
            moves=sizes.moves,
        )
    else:
        settings = dict(
            num_particles=sizes.study_particles if study else sizes.num_particles,
            warmup=sizes.study_warmup if study else sizes.warmup,
            steps=sizes.study_steps if study else sizes.steps,
        )
    note = f"alpha {alpha:g} ({kernel}{', alpha study' if study else ''}, {settings['num_particles']} particles)"
    return common.run_sampler(
        _log,
        world,
        spec,
        note,
        delta_format=".4f",
        alpha=alpha,
        kernel=kernel,
        seed=sizes.seed,
        device=device,
        **settings,
    )


def _particles(post, n: int, seed: int, alpha: float) -> dict:
    """What the tables report about one run's final particles and n of them resampled uniformly."""
    kept = post.resample(n, seed)
    predictions, target = post.predictions(), post.target
    tv = metrics.total_variation(target, predictions)
    hit = tv < HIT_TV
    kept_hit = hit[kept.indices]
    per_particle = (predictions - target).abs().mean(-1)
    weighted = likelihood_weighted_resample(target, predictions, alpha, n, seed)
    return {
        "delta": kept.delta(),
        "delta_all_particles": post.delta(),
        "delta_best_particle": float(per_particle.min()),
        "n": n,
        "hits": int(hit.sum()),
        "hits_resampled": int(kept_hit.sum()),
        "far_from_target": int((tv > FAR_TV).sum()),
        "distinct_samples": kept.distinct_samples(),
        "distinct_hits": metrics.distinct_samples(kept.z[kept_hit]) if kept_hit.any() else 0,
        "distinct_within_0.05": distinct_within(post.z, DUPLICATE_TOL),
        "likelihood_weighted_distinct": int(torch.unique(weighted).numel()),
        "delta_likelihood_weighted": metrics.delta(target, predictions[weighted]),
        "class_composition": class_composition(predictions, post.world.classes),
        "elapsed_s": round(post.elapsed_s, 1),
    }


def _diagnostics(post) -> dict:
    """R-hat and ESS (particles as chains), burn-in verdict, acceptance, log-likelihood medians."""
    numbers = common.chain_diagnostics(post)
    return {key: numbers[key] for key in _MH_DIAGNOSTICS if key in numbers}


def _grid(world, kept_z: torch.Tensor, title: str) -> Figure:
    with torch.no_grad():
        images = world.decode(kept_z.to(world.device)).cpu()
    return image_grid(images, predict(world, kept_z), world.classes, title)


def run(
    out: str | Path, quick: bool = False, overwrite: bool = False, device: str = "cpu", sizes: Sizes | None = None
) -> Path:
    """Run the MNIST experiment into ``out``: ``report.md``, figures and ``table1.json``.

    :param quick: :data:`QUICK` sizes (a few minutes) instead of :data:`FULL`.
    :param sizes: override :data:`FULL` / :data:`QUICK` (tests use tiny sizes).
    """
    check_writable(out, overwrite)  # before any sampling
    sizes = sizes or (QUICK if quick else FULL)
    command = f"pplevelset reproduce mnist{' --quick' if quick else ''} --out {out}"
    if device != "cpu":
        command += f" --device {device}"
    if sizes not in (FULL, QUICK):
        command += " (custom sizes)"
    report = Report("MNIST level sets: the paper's Table 1 and Figures 4-5, rerun", command)
    mh, smc, study, prior_baseline = {}, {}, {}, {}
    best: dict = {}  # (world, target) -> smallest per-particle Delta_i seen in any run or prior draw
    figures: list[tuple] = []
    for wkey, world_name in WORLDS.items():
        world = load_world(world_name, device=device)
        mh[wkey], smc[wkey], prior_baseline[wkey] = _world_cells(world, wkey, sizes, device, best, figures)
        if wkey in sizes.study_worlds:
            study[wkey] = _alpha_study(world, wkey, sizes, device, best)
        del world

    for wkey in WORLDS:
        for tkey in TARGETS:
            mh[wkey][tkey]["delta_best_found"] = best[wkey, tkey]
            mh[wkey][tkey]["prior_delta"] = prior_baseline[wkey][tkey]["delta"]
    tolerance = {
        (tkey, a): dirichlet_tolerance(parse_target(spec, tuple("0123456789")), a)
        for tkey, spec in TARGETS.items()
        for a in (10.0, 100.0, 1000.0)
    }
    numbers = MnistNumbers(
        sizes=sizes,
        mh=mh,
        smc=smc,
        study=study,
        prior=prior_baseline,
        tolerance=tolerance,
        worlds=WORLDS,
        targets=TARGETS,
        paper_delta=PAPER_DELTA,
        alpha=ALPHA,
        hit_tv=HIT_TV,
        far_tv=FAR_TV,
        duplicate_tol=DUPLICATE_TOL,
    )
    write_report(report, numbers, figures)
    result = report.save(out, _json(numbers), json_name="table1.json", overwrite=overwrite)
    _log(f"wrote {out}/report.md in {report.elapsed():.0f} s")
    return result


def _world_cells(world, wkey: str, sizes: Sizes, device: str, best: dict, figures: list) -> tuple[dict, dict, dict]:
    """One prior's MH and SMC cells and prior baseline per target, by target; appends the sample
    grids, trace panels and the t-SNE map to ``figures`` and each cell's smallest Delta_i to ``best``."""
    with torch.random.fork_rng():
        torch.manual_seed(sizes.seed + 100)
        prior_z = world.prior().sample((sizes.prior_samples,)).cpu()
    prior_predictions = predict(world, prior_z)
    mh, smc, prior_baseline, tsne_panels = {}, {}, {}, {}
    for tkey, spec in TARGETS.items():
        target = parse_target(spec, world.classes)
        prior_baseline[tkey] = _prior_baseline(target, prior_predictions, sizes.prior_samples)
        best[wkey, tkey] = float((prior_predictions - target).abs().mean(-1).min())
        mh[tkey], tsne_panels[f"{LABEL[wkey]} {tkey}"] = _mh_cell(world, wkey, tkey, sizes, device, figures)
        smc[tkey] = _smc_cell(world, wkey, tkey, sizes, device, figures)
        best[wkey, tkey] = min(best[wkey, tkey], mh[tkey]["delta_best_particle"], smc[tkey]["delta_best_particle"])
    figures.append(_tsne_figure(world, wkey, sizes, prior_z, prior_predictions, tsne_panels))
    return mh, smc, prior_baseline


def _prior_baseline(target: torch.Tensor, prior_predictions: torch.Tensor, samples: int) -> dict:
    """Delta and hits of the prior draws themselves, no inference."""
    favoured = target > target.min() + 1e-9
    return {
        "delta": metrics.delta(target, prior_predictions),
        "hits": metrics.hits(target, prior_predictions, HIT_TV),
        "samples": samples,
        "mean_target_mass": float(prior_predictions[:, favoured].sum(-1).mean()) if bool(favoured.any()) else None,
    }


def _mh_cell(world, wkey: str, tkey: str, sizes: Sizes, device: str, figures: list) -> tuple[dict, torch.Tensor]:
    """One Table 1 cell with MH, its grid (and trace panel), and the latents for its t-SNE panel."""
    spec, seed, n = TARGETS[tkey], sizes.seed, sizes.num_particles
    post = _sample(world, spec, sizes.alpha, sizes, "rwmh", device)
    cell = {
        "target": spec,
        "alpha": sizes.alpha,
        "kernel": "rwmh",
        "num_particles": len(post),
        "warmup": sizes.warmup,
        "steps": sizes.steps,
        "seed": seed,
        "paper_delta": PAPER_DELTA[wkey][tkey],
        **_particles(post, n, seed, sizes.alpha),
        **_diagnostics(post),
    }
    kept = post.resample(n, seed)
    figures.append(
        (
            f"mh-{wkey}-{tkey}.png",
            _grid(
                world,
                kept.z[: sizes.grid_images],
                f"{LABEL[wkey]}, target {spec}: MH, alpha {sizes.alpha:g}, Delta {cell['delta']:.4f}",
            ),
            f"{LABEL[wkey]} prior, target {tkey}: {sizes.grid_images} of the n = {n} resampled "
            f"MH samples, each with its top-2 predicted probabilities",
        )
    )
    if sizes.trace_figures:
        figures.append(
            (
                f"trace-{wkey}-{tkey}.png",
                diagnostics_figure(post),
                f"MH diagnostics, {LABEL[wkey]} {tkey}: log-likelihood, z traces, acceptance, step size",
            )
        )
    subset = torch.randperm(len(post), generator=generator(seed))[: sizes.tsne_points]
    return cell, post.z[subset]


def _smc_cell(world, wkey: str, tkey: str, sizes: Sizes, device: str, figures: list) -> dict:
    """One Table 1 cell with tempered SMC, and its grid."""
    spec, seed = TARGETS[tkey], sizes.seed
    post = _sample(world, spec, sizes.alpha, sizes, "smc", device)
    cell = {
        "target": spec,
        "alpha": sizes.alpha,
        "kernel": "smc",
        "num_particles": len(post),
        "populations": sizes.populations,
        "moves": sizes.moves,
        "seed": seed,
        "log_evidence": post.stats["log_evidence"],
        "log_evidence_per_population": post.stats["log_evidence_per_population"],
        "num_temperatures": post.stats["num_temperatures"],
        "stage_acceptance_min": float(post.stages["acceptance_rate"].min()),
        **_particles(post, sizes.smc_particles, seed, sizes.alpha),
        **common.convergence_numbers(post),
    }
    kept = post.resample(sizes.smc_particles, seed)
    figures.append(
        (
            f"smc-{wkey}-{tkey}.png",
            _grid(
                world,
                kept.z[: sizes.grid_images],
                f"{LABEL[wkey]}, target {spec}: SMC, alpha {sizes.alpha:g}, Delta {cell['delta']:.4f}",
            ),
            f"{LABEL[wkey]} prior, target {tkey}: {sizes.grid_images} resampled SMC samples",
        )
    )
    return cell


def _tsne_figure(world, wkey: str, sizes: Sizes, prior_z, prior_predictions, tsne_panels: dict) -> tuple:
    """Paper Figure 4 for one prior: ``(filename, figure, caption)``."""
    seed = sizes.seed
    _log(f"t-SNE of {sizes.prior_samples} prior + {sum(len(z) for z in tsne_panels.values())} posterior latents")
    started = time.perf_counter()
    highlight = {f"{LABEL[wkey]} {tkey}": HIGHLIGHT[tkey] for tkey in TARGETS}
    fig = tsne_map(
        prior_z,
        prior_predictions,
        tsne_panels,
        world.classes,
        highlight,
        title=f"{LABEL[wkey]} latents (t-SNE, random_state={seed}): prior light by predicted class, MH posterior black",
        random_state=seed,
    )
    _log(f"t-SNE done in {time.perf_counter() - started:.0f} s")
    return (
        f"tsne-{wkey}.png",
        fig,
        f"Paper Figure 4 for the {LABEL[wkey]}: t-SNE of {sizes.prior_samples} prior latents (light, "
        f"coloured by predicted class; grey: other classes) and {sizes.tsne_points} MH posterior "
        f"latents per target (black), one shared embedding",
    )


def _alpha_study(world, wkey: str, sizes: Sizes, device: str, best: dict) -> dict:
    """Smaller runs of both kernels at each of ``sizes.study_alphas``, by target and alpha."""
    study: dict[str, dict[str, dict]] = {}
    for tkey, spec in TARGETS.items():
        study[tkey] = {}
        for alpha in sizes.study_alphas:
            entry: dict[str, Any] = {}
            for kernel in ("rwmh", "smc"):
                post = _sample(world, spec, alpha, sizes, kernel, device, study=True)
                entry[kernel] = _study_cell(post, kernel, sizes.seed)
                best[wkey, tkey] = min(best[wkey, tkey], float((post.predictions() - post.target).abs().mean(-1).min()))
            entry["dirichlet_tolerance"] = dirichlet_tolerance(parse_target(spec, world.classes), alpha)
            study[tkey][f"{alpha:g}"] = entry
    return study


def _study_cell(post, kernel: str, seed: int) -> dict:
    cell = {
        "delta": post.resample(len(post), seed).delta(),
        "hits_fraction": post.hits(HIT_TV) / len(post),
        "num_particles": len(post),
        "elapsed_s": round(post.elapsed_s, 1),
    }
    if kernel == "rwmh":
        cell["acceptance_rate"] = float(post.traces["acceptance_rate"].mean())
        cell["burn_in_ok"] = bool(post.burn_in().ok)
    else:
        cell["log_evidence"] = post.stats["log_evidence"]
    return cell


def _json(m: MnistNumbers) -> dict:
    """``table1.json``: the settings and every number of the report."""
    sizes = m.sizes
    numbers = {"settings": asdict(sizes), **{key: m.mh[key] for key in WORLDS}, "prior_baseline": m.prior}
    numbers["alpha_study"] = {
        "kernels": {
            "rwmh": {"num_particles": sizes.study_particles, "warmup": sizes.study_warmup, "steps": sizes.study_steps},
            "smc": {"num_particles": sizes.study_smc_particles, "populations": sizes.populations, "moves": sizes.moves},
        },
        "alphas": list(sizes.study_alphas),
        **m.study,
    }
    numbers["smc"] = {
        "alpha": sizes.alpha,
        "num_particles": sizes.smc_particles,
        "populations": sizes.populations,
        "moves": sizes.moves,
        **m.smc,
    }
    return numbers
