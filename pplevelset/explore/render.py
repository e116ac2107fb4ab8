"""An answer as the page shows it: a PNG of resampled inputs and a table of numbers.

Rendering a grid costs a few hundred milliseconds and the diagnostics an ArviZ pass, so both are
cached per posterior: going back to a level already seen is instant, in every session.
"""

from __future__ import annotations

import functools
import html
import io
import math

from pplevelset.explore.answers import Answer
from pplevelset.plotting import image_grid, latent_scatter
from pplevelset.posterior import LevelSetPosterior

KEEP = 16  # inputs shown: two rows of eight
SHOWN_CLASSES = 4  # the mean prediction lists the largest few


@functools.lru_cache(maxsize=256)
def grid_png(posterior: LevelSetPosterior, title: str, keep: int = KEEP, dpi: int = 90) -> bytes:
    """``keep`` resampled inputs with their predicted probabilities (a latent scatter for worlds
    whose inputs are not images)."""
    kept = posterior.resample(keep, seed=0)
    images = kept.images()
    if images.dim() == 4 and images.shape[1] in (1, 3, 4):
        fig = image_grid(images, kept.predictions(), posterior.world.classes, title)
    else:
        fig = latent_scatter(posterior.world, posterior.z, kept.z, posterior.predictions(), title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


@functools.lru_cache(maxsize=256)
def _diagnostics(posterior: LevelSetPosterior) -> dict[str, float]:
    out = dict(posterior.convergence())
    out["acceptance"] = float(posterior.traces["acceptance_rate"].mean()) if posterior.traces else math.nan
    return out


def title(answer: Answer) -> str:
    return f"{answer.posterior.world.name}: target {answer.spec}, alpha {answer.alpha:g}"


def facts(answer: Answer) -> dict[str, str]:
    """The numbers beside the grid, by key (each key is also the row's ``data-fact`` in the page)."""
    post, (a, _) = answer.posterior, answer.pair
    mean = post.predictions().mean(0)
    order = mean.argsort(descending=True)[:SHOWN_CLASSES].tolist()
    diagnostics = _diagnostics(post)
    how = (
        f"refined: {answer.kernel}, the exact target"
        if answer.refined
        else f"precomputed: nearest level p({a}) = {answer.level:.1f} (asked {answer.requested:.2f})"
    )
    settings = post.settings
    return {
        "target": answer.spec,
        "source": how,
        "mean": ", ".join(f"{post.world.classes[k]} {float(mean[k]):.3f}" for k in order),
        "delta": f"{post.delta():.4f}",
        "hits": f"{post.hits(0.1)} of {len(post)}",
        "rhat": _number(diagnostics["rhat_max"], ".3f"),
        "ess": f"{_number(diagnostics['ess_bulk_min'], '.0f')} / {_number(diagnostics['ess_tail_min'], '.0f')}",
        "acceptance": f"{diagnostics['acceptance']:.3f}",
        "run": (
            f"{settings.get('kernel')}, {len(post)} particles, {settings.get('warmup')} + {settings.get('steps')} "
            f"steps, alpha {answer.alpha:g}"
        ),
    }


LABELS = {
    "target": "target",
    "source": "from",
    "mean": "mean prediction",
    "delta": "Delta (Eq. 5)",
    "hits": "within TV 0.1",
    "rhat": "R-hat (max)",
    "ess": "ESS bulk / tail (min)",
    "acceptance": "acceptance",
    "run": "run",
}


def facts_html(values: dict[str, str]) -> str:
    """The facts as a small table; ``data-fact`` attributes let tests and scrapers find each number."""
    rows = "".join(
        f'<tr data-fact="{key}"><th style="text-align:left;padding-right:1em">{LABELS[key]}</th>'
        f"<td>{html.escape(value)}</td></tr>"
        for key, value in values.items()
    )
    return f'<table class="pls-facts">{rows}</table>'


def _number(value: float, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)
