"""``report.md`` of ``pplevelset reproduce bayestrex``: tables and figures from the numbers alone."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from pplevelset.plotting import show_image
from pplevelset.reproduce.common import num, pct
from pplevelset.reproduce.report import Report

BAYESTREX = (
    "Bayes-TrEx shows these as pictures (its Figures on MNIST and Fashion-MNIST); its code prints no "
    "number for them, so there is nothing to put beside ours."
)
NOT_READY = "Not run: the world could not be loaded (checkpoints missing; see `pplevelset worlds`)"


def write(report: Report, out: str | Path, numbers: dict, pictures: dict, overwrite: bool) -> Path:
    settings = numbers["settings"]
    report.text(
        f"Every experiment runs with two likelihoods: the paper's `Dirichlet(alpha f(x))` at alpha = "
        f"{settings['alpha']:g}, and Bayes-TrEx's Normal, `Normal(f_i(x), {settings['sigma']:g})` on every class "
        f"probability (`--likelihood normal`). Kernel `{settings['kernel']}`, {settings['particles_per_target']} "
        f"particles per target, {settings['warmup']} warm-up + {settings['steps']} steps, seed 0; the numbers "
        "use every particle's final state. Per world and likelihood the high-confidence, ambiguous and graded "
        "targets are one batched sweep. " + BAYESTREX
    )
    if numbers["skipped"]:
        report.text(NOT_READY + ": " + ", ".join(f"`{name}`" for name in numbers["skipped"]) + ".")
    _high_confidence(report, numbers["high_confidence"])
    _pairs(report, numbers["pairs"], settings)
    _graded(report, numbers["graded"])
    _adversarial(report, numbers["adversarial"])
    _novel(report, numbers["novel"])
    if pictures:
        report.figure(
            samples_figure(pictures),
            "samples.png",
            "Samples (resampled, top-2 predictions): ambiguous pairs and in-distribution adversarial "
            "examples, under each likelihood",
        )
    return report.save(out, numbers, json_name="bayestrex.json", overwrite=overwrite)


def _subplots(nrows: int, ncols: int, figsize: tuple[float, float]):
    fig = Figure(figsize=figsize)  # outside pyplot's global state, as the library's other figures
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _high_confidence(report: Report, table: dict) -> None:
    report.section(
        "High confidence per class",
        "Target: the class at 0.999 (the `corners` family; Bayes-TrEx observes p_C = 1 under "
        "Normal(p_C, 0.05)). Mean (min) p_C over the particles; share whose top class is C.",
    )
    for world, by_likelihood in table.items():
        dirichlet, normal = by_likelihood["dirichlet"], by_likelihood["normal"]
        rows = [
            [
                name,
                f"{pct(d['mean_p'])} ({pct(d['min_p'])})",
                pct(d["argmax_share"]),
                f"{pct(normal[name]['mean_p'])} ({pct(normal[name]['min_p'])})",
                pct(normal[name]["argmax_share"]),
            ]
            for name, d in dirichlet.items()
        ]
        report.text(f"**{world}**")
        report.table(
            ["class", "Dirichlet: mean (min) p_C", "top class C", "Normal: mean (min) p_C", "top class C"], rows
        )


def _pairs(report: Report, table: dict, settings: dict) -> None:
    report.section(
        "Ambiguous pairs",
        f"Target: p_A = p_B = {settings['pair_level']:g}, the rest spread evenly. Bayes-TrEx's own "
        "statistics on the samples: |p_A - p_B| (it observes 0) and the margin min(p_A, p_B) - max(rest) "
        "(it observes 0.5); 'within 0.1': both within 0.1 of what Bayes-TrEx observes.",
    )
    rows = [
        [
            world,
            pair,
            likelihood,
            f"{pct(c['mean_p_a'])} / {pct(c['mean_p_b'])}",
            num(c["mean_abs_diff"]),
            num(c["mean_margin"]),
            pct(c["within_0.1_share"]),
            num(c["delta"], ".4f"),
            num(c["rhat_max"], ".2f"),
        ]
        for world, by_likelihood in table.items()
        for likelihood, pairs in by_likelihood.items()
        for pair, c in pairs.items()
    ]
    report.table(
        ["world", "pair", "likelihood", "mean p_A / p_B", "abs(p_A - p_B)", "margin", "within 0.1", "Delta", "R-hat"],
        rows,
    )


def _graded(report: Report, table: dict) -> None:
    if not table:
        return
    report.section(
        "Graded confidence",
        "Target p_A from 0 to 1 with p_B the rest (`graded:A,B`; the ends sit at "
        "0.001 and every other class at 0.001). Mean achieved p_A per target.",
    )
    rows = []
    for world, by_likelihood in table.items():
        for likelihood, graded in by_likelihood.items():
            rows.append(
                [
                    world,
                    f"{graded['a']} vs {graded['b']}",
                    likelihood,
                    " ".join(num(row["mean_p_a"], ".2f") for row in graded["rows"]),
                ]
            )
    report.table(["world", "pair", "likelihood", "achieved p_A at target 0, 0.1, ..., 1"], rows)
    report.figure(graded_figure(table), "graded.png", "Achieved against target p_A, with the diagonal")


def _adversarial(report: Report, table: dict) -> None:
    report.section(
        "In-distribution adversarial examples",
        "The generator never saw class C; the classifier (which knows C) is conditioned on C at 0.999. "
        "Of the samples it calls C with p_C >= 0.9, the share the world's reference classifier also "
        "calls C, and what they are instead; prior draws beside them.",
    )
    if not table:
        report.text(NOT_READY + ".")
        return
    rows = []
    for world, by_likelihood in table.items():
        for likelihood, c in by_likelihood.items():
            post, prior = c["posterior"], c["prior"]
            rows.append(
                [
                    world,
                    c["excluded_class"],
                    likelihood,
                    f"{post['confident']} / {post['samples']}",
                    pct(post["reference_says_c"]),
                    _top(post["instead"]),
                    f"{prior['confident']} / {prior['samples']}",
                    pct(prior["reference_says_c"]),
                ]
            )
    report.table(
        [
            "world",
            "C",
            "likelihood",
            "called C (>= 0.9)",
            "reference: C",
            "instead",
            "prior: called C",
            "prior: reference C",
        ],
        rows,
    )


def _novel(report: Report, table: dict) -> None:
    report.section(
        "Novel-class extrapolation",
        "The classifier never saw class k. Generated k's (k by the reference classifier) among the "
        "high-confidence samples of every class the classifier knows (`corners`), and among prior "
        "draws: the classes the blind classifier gives them, and its mean top-class confidence.",
    )
    if not table:
        report.text(NOT_READY + ".")
        return
    rows = []
    for world, by_likelihood in table.items():
        for likelihood, c in by_likelihood.items():
            post, prior = c["posterior"], c["prior"]
            rows.append(
                [
                    world,
                    c["novel_class"],
                    likelihood,
                    f"{post['k_samples']} / {post['samples']}",
                    _top(post["assigned"]),
                    pct(post["mean_confidence"]),
                    f"{prior['k_samples']} / {prior['samples']}",
                    _top(prior["assigned"]),
                    pct(prior["mean_confidence"]),
                ]
            )
    report.table(
        [
            "world",
            "k",
            "likelihood",
            "k's among samples",
            "called",
            "confidence",
            "k's in prior",
            "called (prior)",
            "confidence (prior)",
        ],
        rows,
    )


def _top(shares: dict, count: int = 3) -> str:
    return ", ".join(f"{name} {pct(share, 0)}" for name, share in list(shares.items())[:count]) or "-"


def graded_figure(table: dict):
    fig, axes = _subplots(1, len(table), figsize=(3.6 * len(table), 3.4))
    for ax, (world, by_likelihood) in zip(axes.flat, table.items()):
        for likelihood, graded in by_likelihood.items():
            x = [row["target_p_a"] for row in graded["rows"]]
            ax.plot(x, [row["mean_p_a"] for row in graded["rows"]], marker="o", markersize=3, label=likelihood)
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.6, linestyle="--")
        graded = next(iter(by_likelihood.values()))
        ax.set(
            title=f"{world}: {graded['a']} vs {graded['b']}",
            xlabel=f"target p({graded['a']})",
            ylabel=f"achieved mean p({graded['a']})",
            xlim=(-0.02, 1.02),
            ylim=(-0.02, 1.02),
        )
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def samples_figure(pictures: dict):
    """One row of images per (world, likelihood, experiment), captioned with the top prediction."""
    rows = list(pictures.items())
    ncols = max(z.shape[0] for _, (_, z) in rows)
    fig, axes = _subplots(len(rows), ncols, figsize=(1.0 * ncols + 1.6, 1.05 * len(rows)))
    for r, ((world_name, likelihood, key), (world, z)) in enumerate(rows):
        with torch.no_grad():
            images = world.decode(z.to(world.device)).cpu()
            probs = world.classify(images.to(world.device)).cpu()
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([]), ax.set_yticks([])
            if c >= z.shape[0]:
                ax.axis("off")
                continue
            show_image(ax, images[c])
            top = probs[c].topk(min(2, probs.shape[-1]))
            caption = " ".join(f"{world.classes[i]}:{v:.2f}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
            ax.set_title(caption, fontsize=5, pad=1)
        axes[r][0].set_ylabel(f"{world_name}\n{key}\n{likelihood}", fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    return fig
