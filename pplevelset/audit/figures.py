"""The sweep figures, drawn from the index rows (and a few samples read back from the run folders).

- ``graded.png``: achieved mean p(A) against the target p(A) for every graded family, with the
  diagonal (a perfect sampler on a classifier that can reach every level sits on it);
- ``pairs.png``: class x class matrices per world with a ``pairs`` family: Delta of each pair's level
  set and the fraction of its particles within total variation 0.1 of the target (which confusions
  the generator can produce), and log evidence beside them where SMC ran;
- ``samples.png``: a grid of a few samples per target (images), or particle clouds for worlds
  whose decoder does not produce images.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pplevelset.plotting import _subplots, save_figure, show_image

SAMPLES_PER_TARGET = 4
MAX_GRID_TARGETS = 48


def write_figures(out: Path, rows: list[dict]) -> list[Path]:
    done = [row for row in rows if row["status"] == "done"]
    written = []
    if any(row["family"].startswith("graded:") for row in done):
        written.append(save_figure(graded_figure(done), out / "graded.png"))
    if any(row["family"] == "pairs" for row in done):
        written.append(save_figure(pairs_figure(done), out / "pairs.png"))
    if done:
        figure = samples_grid(out, done)
        if figure is not None:
            written.append(save_figure(figure, out / "samples.png"))
    return written


def graded_figure(rows: list[dict]):
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["family"].startswith("graded:"):
            groups.setdefault((row["world"], row["family"]), []).append(row)
    panels = sorted({key for key in groups})
    fig, axes = _subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        world, family = key
        members = groups[key]
        name = members[0]["family_params"]["class"]
        for seed in sorted({row["seed"] for row in members}):
            series = sorted(
                (row for row in members if row["seed"] == seed), key=lambda row: row["family_params"]["value"]
            )
            x = [row["family_params"]["value"] for row in series]
            y = [row["mean_prediction"][name] for row in series]
            ax.plot(x, y, "o-", markersize=4, label=f"{series[0]['kernel']}, seed {seed}")
        ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1, label="target")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(f"target p({name})")
        ax.set_ylabel(f"achieved mean p({name})")
        ax.set_title(f"{world}: {family}", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def pairs_figure(rows: list[dict]):
    worlds = sorted({row["world"] for row in rows if row["family"] == "pairs"})
    panels = []
    for world in worlds:
        members = [row for row in rows if row["world"] == world and row["family"] == "pairs"]
        seed = min(row["seed"] for row in members)
        members = [row for row in members if row["seed"] == seed]
        classes = members[0]["classes"]
        size = len(classes)
        delta = np.full((size, size), np.nan)
        hits = np.full((size, size), np.nan)
        evidence = np.full((size, size), np.nan)
        for row in members:
            i, j = (classes.index(name) for name in row["family_params"]["classes"])
            delta[i, j] = delta[j, i] = row["delta"]
            hits[i, j] = hits[j, i] = row["hits_tv_0.1"] / row["num_particles"]
            if row.get("log_evidence") is not None:
                evidence[i, j] = evidence[j, i] = row["log_evidence"]
        panels.append((world, classes, delta, "Delta (lower: the generator makes this confusion)", "viridis_r"))
        panels.append((world, classes, hits, "fraction of particles within TV 0.1", "viridis"))
        if np.isfinite(evidence).any():
            panels.append((world, classes, evidence, "log evidence log p(target)", "magma"))
    fig, axes = _subplots(1, len(panels), figsize=(5.0 * len(panels), 4.4), squeeze=False)
    for ax, (world, classes, matrix, label, cmap) in zip(axes.flat, panels):
        image = ax.imshow(matrix, cmap=cmap, vmin=0 if "fraction" in label else None)
        ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 6 else 0)
        ax.set_yticks(range(len(classes)), classes)
        for i in range(len(classes)):
            for j in range(len(classes)):
                if np.isfinite(matrix[i, j]) and len(classes) <= 12:
                    text = f"{matrix[i, j]:.1f}" if "evidence" in label else f"{matrix[i, j]:.2f}".lstrip("0")
                    ax.text(j, i, text, ha="center", va="center", fontsize=5.5, color="w")
        ax.set_title(f"{world}: pairs at 0.46 / 0.46\n{label}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def _final_states(run_dir: Path, count: int):
    """The first ``count`` final states of a run (z, predictions), read from its ``posterior.nc``."""
    import arviz as az
    import torch

    idata = az.from_netcdf(str(run_dir / "posterior.nc"))
    z = idata.posterior["z"].values
    probs = idata.posterior["prediction_probs"].values
    if idata.posterior.attrs.get("chains") == "populations":
        z, probs = z.reshape(-1, z.shape[-1]), probs.reshape(-1, probs.shape[-1])
    else:
        z, probs = z[:, -1], probs[:, -1]
    picks = np.linspace(0, len(z) - 1, count).round().astype(int)
    return torch.as_tensor(z[picks]), torch.as_tensor(probs[picks])


def samples_grid(out: Path, rows: list[dict]):
    """A few final states per target, one row per target (the first ``MAX_GRID_TARGETS`` targets of
    the first world and seed)."""
    import torch

    from pplevelset.worlds import load_world

    world_name, seed = rows[0]["world"], rows[0]["seed"]
    members = [row for row in rows if row["world"] == world_name and row["seed"] == seed][:MAX_GRID_TARGETS]
    try:
        world = load_world(world_name, device="cpu")
    except Exception:
        return None
    with torch.no_grad():
        probe = world.decode(_final_states(out / members[0]["run_dir"], 1)[0].to(torch.float32))
    if probe.dim() != 4:
        return _clouds(out, members, world_name, seed)
    states = [_final_states(out / row["run_dir"], SAMPLES_PER_TARGET) for row in members]
    with torch.no_grad():
        decoded = [world.decode(z.to(torch.float32)) for z, _ in states]
    is_image = True
    columns = SAMPLES_PER_TARGET
    fig, axes = _subplots(
        len(members), columns, figsize=(1.3 * columns + 2.2, 1.25 * len(members) + 0.4), squeeze=False
    )
    for r, (row, (z, probs), images) in enumerate(zip(members, states, decoded)):
        top = np.argsort(-np.asarray(row["target"]))[:2]
        classes = row["classes"]
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if is_image:
                show_image(ax, images[c])
                ax.set_title(" ".join(f"{classes[k]} {float(probs[c, k]):.2f}" for k in top), fontsize=5, pad=1)
            else:
                ax.scatter(z[:, 0].numpy(), z[:, 1].numpy() if z.shape[1] > 1 else np.zeros(len(z)), s=8)
            if c == 0:
                ax.set_ylabel(row["target_spec"], fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(f"{world_name}, seed {seed}: {SAMPLES_PER_TARGET} final states per target", fontsize=9)
    fig.tight_layout()
    return fig


def _clouds(out: Path, members: list[dict], world_name: str, seed: int, count: int = 64):
    """Worlds without images: each target's final states in the first two latent dimensions, one
    panel per target on shared axes, coloured by predicted class."""
    from pplevelset.plotting import CLASS_COLORS

    states = [_final_states(out / row["run_dir"], count) for row in members]
    columns = min(6, len(members))
    rows = math.ceil(len(members) / columns)
    fig, axes = _subplots(
        rows, columns, figsize=(2.1 * columns, 2.1 * rows + 0.4), squeeze=False, sharex=True, sharey=True
    )
    for ax in axes.flat[len(members) :]:
        ax.axis("off")
    for ax, row, (z, probs) in zip(axes.flat, members, states):
        y = z[:, 1].numpy() if z.shape[1] > 1 else np.zeros(len(z))
        colors = [CLASS_COLORS[int(k) % len(CLASS_COLORS)] for k in probs.argmax(-1)]
        ax.scatter(z[:, 0].numpy(), y, s=5, c=colors)
        ax.set_title(row["target_spec"], fontsize=7)
    fig.suptitle(f"{world_name}, seed {seed}: final states per target (colour: predicted class)", fontsize=9)
    fig.tight_layout()
    return fig
