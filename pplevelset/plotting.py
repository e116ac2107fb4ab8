"""Figures: sample grids with predicted probabilities, latent scatters, and the trace panel."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from pplevelset.files import atomic_write

CLASS_COLORS = plt.get_cmap("tab10")(range(10))


def _subplots(*args, figsize, **kwargs):
    """A figure outside pyplot's global state: a notebook shows it once, and loops do not leak it."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def _label(probs: torch.Tensor, classes, top: int = 2) -> str:
    values, index = probs.topk(min(top, len(classes)))
    return "  ".join(f"{classes[i]} {v:.2f}" for v, i in zip(values.tolist(), index.tolist()))


def show_image(ax, image: torch.Tensor) -> None:
    """One ``(C, H, W)`` image with values in [0, 1] on ``ax``: grey levels, or RGB clipped to range."""
    image = image.detach().cpu().float()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())


def image_grid(images: torch.Tensor, predictions: torch.Tensor, classes, title: str = "", ncols: int = 8) -> Figure:
    """Images ``(n, C, H, W)`` in a grid, each captioned with its top-2 predicted classes."""
    n = images.shape[0]
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = _subplots(nrows, ncols, figsize=(1.45 * ncols, 1.6 * nrows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        show_image(ax, images[k])
        ax.set_title(_label(predictions[k], classes), fontsize=6.5, pad=2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def latent_scatter(
    world, z_all: torch.Tensor, kept_z: torch.Tensor, predictions: torch.Tensor, title: str = ""
) -> Figure:
    """For worlds without images: particles in the first two latent dims, coloured by predicted
    class, over the classifier's decision regions when the latent space is 2-D. A 1-D latent is
    drawn against the predicted probability of the top class, so any latent dimension works."""
    fig, ax = _subplots(figsize=(5.2, 4.6))
    z_all, kept_z = z_all.detach().cpu().reshape(z_all.shape[0], -1), kept_z.detach().cpu().reshape(kept_z.shape[0], -1)
    predictions = predictions.detach().cpu()
    if z_all.shape[-1] < 2:  # 1-D: z against the top predicted probability
        top = predictions.max(-1).values
        labels = predictions.argmax(-1)
        for k, name in enumerate(world.classes):
            chosen = labels == k
            if chosen.any():
                ax.scatter(
                    z_all[chosen, 0], top[chosen], s=4, alpha=0.5, color=CLASS_COLORS[k % 10], label=f"predicted {name}"
                )
        ax.set_xlabel("z[0]")
        ax.set_ylabel("top predicted probability")
        for value in kept_z[:, 0].tolist():
            ax.axvline(value, color="black", linewidth=0.3, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        return fig
    if z_all.shape[-1] == 2:
        lo, hi = z_all.min(0).values - 1, z_all.max(0).values + 1
        lo, hi = torch.minimum(lo, torch.tensor(-3.0)), torch.maximum(hi, torch.tensor(3.0))
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 200), torch.linspace(lo[1], hi[1], 200), indexing="xy")
        with torch.no_grad():
            grid = torch.stack([gx, gy], -1).reshape(-1, 2).to(world.device)
            regions = world.predict(grid).argmax(-1).cpu().reshape(gx.shape)
        colors = [CLASS_COLORS[i % 10] for i in range(len(world.classes))]
        ax.contourf(gx, gy, regions, levels=np.arange(len(colors) + 1) - 0.5, colors=colors, alpha=0.15)
    labels = predictions.argmax(-1).cpu()
    for k, name in enumerate(world.classes):
        chosen = labels == k
        if chosen.any():
            ax.scatter(
                z_all[chosen, 0],
                z_all[chosen, 1],
                s=4,
                alpha=0.5,
                color=CLASS_COLORS[k % 10],
                label=f"predicted {name}",
            )
    ax.scatter(kept_z[:, 0], kept_z[:, 1], s=18, marker="x", color="black", label="resampled")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def samples_figure(posterior, kept) -> Figure:
    """``samples.png``: an image grid of the resampled states, or a latent scatter for toy worlds."""
    title = (
        f"{posterior.world.name}: target {posterior.settings.get('target')}, "
        f"alpha {posterior.settings.get('alpha'):g}, Delta {kept.delta():.3f}"
    )
    images = kept.images()
    if images.dim() == 4 and images.shape[1] in (1, 3, 4):
        return image_grid(images, kept.predictions(), posterior.world.classes, title)
    return latent_scatter(posterior.world, posterior.z, kept.z, posterior.predictions(), title)


def _band(ax, x, values: np.ndarray, color, label):
    lo, mid, hi = np.nanpercentile(values, [5, 50, 95], axis=0)
    ax.fill_between(x, lo, hi, color=color, alpha=0.25, linewidth=0)
    ax.plot(x, mid, color=color, linewidth=1.2, label=label)


def trace_figure(traces: dict, warmup_traces: dict | None, verdict, thin: int = 1, max_lines: int = 8) -> Figure:
    """Four panels over warm-up and sampling: log-likelihood, z traces, acceptance, step size.

    ``traces``/``warmup_traces`` hold arrays with particles first (as ``LevelSetPosterior``).
    Bands are the 5-95% range across particles, so a drifting ensemble shows as a moving band.
    """
    warm = {name: np.asarray(value) for name, value in (warmup_traces or {}).items()}
    traces = {name: np.asarray(value) for name, value in traces.items()}
    warmup = next(iter(warm.values())).shape[1] if warm else 0
    steps = traces["log_likelihood"].shape[1]
    x_warm = np.arange(warmup)
    x_sample = warmup + np.arange(steps) * thin

    def both(name):
        parts = [(x_warm, warm[name])] if name in warm else []
        return parts + [(x_sample, traces[name])]

    fig, axes = _subplots(2, 2, figsize=(10, 6.5))
    (ax_ll, ax_z), (ax_acc, ax_step) = axes
    for x, values in both("log_likelihood"):
        _band(ax_ll, x, values, "tab:blue", None)
        for row in values[:max_lines]:
            ax_ll.plot(x, row, color="gray", linewidth=0.4, alpha=0.6)
    ax_ll.set_title("log-likelihood (median, 5-95% over particles)", fontsize=9)
    z = traces["z"]
    for dim in range(min(3, z.shape[-1])):
        for chain in range(min(max_lines, z.shape[0])):
            ax_z.plot(
                x_sample,
                z[chain, :, dim],
                color=CLASS_COLORS[dim],
                linewidth=0.5,
                alpha=0.7,
                label=f"z[{dim}]" if chain == 0 else None,
            )
    ax_z.set_title(f"z traces of {min(max_lines, z.shape[0])} particles (sampling)", fontsize=9)
    ax_z.legend(fontsize=7)
    for x, values in both("acceptance_rate"):
        window = max(1, len(x) // 50)  # moving average over whole windows only: no edge artefacts
        mean = np.convolve(values.mean(0), np.ones(window) / window, mode="valid")
        ax_acc.plot(x[window - 1 :], mean, color="tab:green", linewidth=1.2)
    ax_acc.axhline(0.234, color="black", linestyle=":", linewidth=0.8)
    ax_acc.set_title("acceptance probability (mean over particles)", fontsize=9)
    for x, values in both("step_size"):
        _band(ax_step, x, values, "tab:orange", None)
    ax_step.set_yscale("log")
    ax_step.set_title("step size (median, 5-95%)", fontsize=9)
    for ax in axes.flat:
        if warmup:
            ax.axvline(warmup, color="black", linestyle="--", linewidth=0.8)
        ax.set_xlabel("iteration (warm-up | sampling)", fontsize=8)
    fig.suptitle(verdict.message, fontsize=9, color="black" if verdict.ok else "tab:red")
    fig.tight_layout()
    return fig


def smc_figure(stages: dict) -> Figure:
    """SMC's ``trace.png``: beta, ESS before resampling, acceptance and proposal scale per temperature,
    one line per population."""
    stages = {name: np.asarray(value) for name, value in stages.items()}
    fig, axes = _subplots(2, 2, figsize=(10, 6.5))
    titles = {
        "beta": "inverse temperature beta",
        "ess": "ESS of the incremental weights",
        "acceptance_rate": "MH acceptance (mean of the moves)",
        "step_size": "proposal scale",
    }
    for ax, (name, title) in zip(axes.flat, titles.items()):
        for population, row in enumerate(stages[name]):
            ax.plot(
                np.arange(1, row.size + 1),
                row,
                marker="o",
                markersize=3,
                linewidth=1,
                color=CLASS_COLORS[population % 10],
                label=f"population {population}",
            )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("temperature (stage)", fontsize=8)
    axes[1, 0].axhline(0.234, color="black", linestyle=":", linewidth=0.8)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"tempered SMC: {stages['beta'].shape[-1]} temperatures", fontsize=9)
    fig.tight_layout()
    return fig


def diagnostics_figure(posterior) -> Figure:
    """``trace.png`` for any run: the trace panel for MCMC, the temperature panel for SMC."""
    if posterior.chains == "populations":
        return smc_figure(posterior.stages)
    return trace_figure(
        posterior.traces, posterior.warmup_traces, posterior.burn_in(), thin=posterior.settings.get("thin", 1)
    )


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save atomically (:func:`pplevelset.files.atomic_write`) and close the figure."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
    finally:
        plt.close(fig)


def latent_scatter_3d(
    panels,
    categories,
    colors=None,
    axis_labels=("w", "h", "t"),
    title: str = "",
    max_points: int | None = 3000,
    seed: int = 0,
    ncols: int | None = None,
) -> Figure:
    """Side-by-side 3-D scatters of latents, coloured by category (e.g. the predicted class).

    :param panels: a list of ``(title, z, labels)``: ``z`` ``(n, >=3)`` (the first three columns are
        plotted), ``labels`` ``(n,)`` integer indices into ``categories``.
    :param categories: legend names of the label values.
    :param colors: one colour per category (default: the class colours).
    :param max_points: at most this many points per panel (a fixed random subset), to stay readable.
    :param ncols: panels per row (default: all in one row). All panels share their axis limits.

    Example::

        fig = latent_scatter_3d([("prior", z, labels)], ["house", "rocket"])
    """
    colors = list(colors) if colors is not None else [CLASS_COLORS[k % 10] for k in range(len(categories))]
    prepared = []
    for name, z, labels in panels:
        z, labels = torch.as_tensor(z).detach().cpu().float(), torch.as_tensor(labels).detach().cpu()
        if max_points is not None and z.shape[0] > max_points:
            keep = torch.randperm(z.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]
            z, labels = z[keep], labels[keep]
        prepared.append((name, z[:, :3].numpy(), labels.numpy()))
    everything = np.concatenate([z for _, z, _ in prepared]) if prepared else np.zeros((0, 3))
    lo, hi = (everything.min(0), everything.max(0)) if len(everything) else (np.zeros(3), np.ones(3))
    ncols = max(1, min(ncols or len(prepared), len(prepared)))
    nrows = max(1, math.ceil(len(prepared) / ncols))
    fig = Figure(figsize=(4.6 * ncols, 4.6 * nrows))
    for index, (name, z, labels) in enumerate(prepared):
        ax = fig.add_subplot(nrows, ncols, index + 1, projection="3d")
        ax.set_box_aspect(None, zoom=0.85)  # leave room for the z label
        for k, category in enumerate(categories):
            chosen = labels == k
            ax.scatter(
                z[chosen, 0],
                z[chosen, 1],
                z[chosen, 2],
                s=3,
                alpha=0.55,
                color=colors[k],
                label=f"{category} ({int(chosen.sum())})",
                depthshade=False,
            )
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_xlabel(axis_labels[0], fontsize=8)
        ax.set_ylabel(axis_labels[1], fontsize=8)
        ax.set_zlabel(axis_labels[2], fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_title(f"{name} (n = {len(z)})", fontsize=9)
        ax.legend(fontsize=6.5, loc="upper left", markerscale=3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def tsne_map(
    prior_z,
    prior_predictions,
    posteriors: dict,
    classes,
    highlight: dict | None = None,
    title: str = "",
    random_state: int = 0,
    perplexity: float = 30.0,
) -> Figure:
    """t-SNE maps of latents (the paper's Figure 4): prior draws in light colours by predicted class,
    each posterior's latents dark on top, one panel per posterior, all from one shared embedding.

    :param prior_z: ``(M, d)`` prior draws; ``prior_predictions`` ``(M, L)`` their classifier outputs.
    :param posteriors: panel title -> ``(n_k, d)`` posterior latents.
    :param classes: class names, for the legend.
    :param highlight: panel title -> class indices coloured in that panel, the rest grey (the paper's
        1vs7 and 8vs9 panels); panels not named colour every class.
    :param random_state: fixes the embedding (scikit-learn's ``TSNE``, PCA initialisation).

    Example::

        fig = tsne_map(prior_z, world.predict(prior_z), {"1vs7": post.z}, world.classes, {"1vs7": [1, 7]})
    """
    from sklearn.manifold import TSNE

    as_array = lambda value: torch.as_tensor(value).detach().cpu().double().numpy()
    prior = as_array(prior_z)
    labels = torch.as_tensor(prior_predictions).detach().cpu().argmax(-1).numpy()
    blocks = [as_array(z) for z in posteriors.values()]
    stacked = np.concatenate([prior, *blocks]) if blocks else prior
    perplexity = float(min(perplexity, max(1.0, (stacked.shape[0] - 1) / 3)))
    embedded = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state).fit_transform(stacked)
    prior_xy, start, panels = embedded[: prior.shape[0]], prior.shape[0], []
    for name, block in zip(posteriors, blocks):
        panels.append((name, embedded[start : start + block.shape[0]]))
        start += block.shape[0]
    fig, axes = _subplots(1, max(1, len(panels)), figsize=(4.6 * max(1, len(panels)), 4.8), squeeze=False)
    for ax, (name, posterior_xy) in zip(axes.flat, panels):
        chosen = None if highlight is None or highlight.get(name) is None else set(highlight[name])
        grey = np.zeros(labels.shape, dtype=bool)
        for k, class_name in enumerate(classes):
            mask = labels == k
            if chosen is not None and k not in chosen:
                grey |= mask
            elif mask.any():
                ax.scatter(
                    prior_xy[mask, 0],
                    prior_xy[mask, 1],
                    s=4,
                    alpha=0.35,
                    linewidths=0,
                    color=CLASS_COLORS[k % 10],
                    label=f"prior, predicted {class_name}",
                )
        if grey.any():
            ax.scatter(
                prior_xy[grey, 0],
                prior_xy[grey, 1],
                s=4,
                alpha=0.35,
                linewidths=0,
                color="0.7",
                label="prior, other classes",
                zorder=0,
            )
        ax.scatter(
            posterior_xy[:, 0],
            posterior_xy[:, 1],
            s=7,
            color="black",
            linewidths=0,
            label=f"posterior ({posterior_xy.shape[0]})",
        )
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=2, loc="best", framealpha=0.7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
