"""Draw houses and rockets: a triangle on a rectangle, optionally a circle, as soft 64x64 images.

Every shape is a signed distance field (positive inside, in pixels) passed through a sigmoid one
pixel wide, so edges are anti-aliased and the image is differentiable in every parameter; a fixed
Gaussian blur (the paper's "for easier classification") follows. All tensors broadcast over any
leading batch dimensions, and 1,000 images take a few tens of milliseconds on two CPU cores.

Geometry, in pixels, of a ``SIZE x SIZE`` image:

- the rectangle (width ``w``, height ``h``) stands on a ground line ``GROUND_MARGIN`` pixels above
  the bottom edge, horizontally centred; the isosceles triangle (base ``w``, height ``t``) sits on
  it. Together they form a convex pentagon, so one signed distance (the minimum over its edges'
  half-planes) draws both without a seam between them. Anything taller or wider than the image
  is clipped.
- the optional circle is an outline ``CIRCLE_STROKE`` pixels wide, radius ``r``, centre ``x``
  pixels from the left edge and ``y`` pixels from the top edge. An outline rather than a disc,
  so it overlays the house (the paper's out-of-distribution probe) without hiding it.
"""

from __future__ import annotations

import functools
import math

import torch

SIZE = 64
GROUND_MARGIN = 4.0  # pixels between the bottom edge and the base of the rectangle
EDGE_SOFTNESS = 0.5  # sigmoid(distance / softness): the edge ramps over about two pixels
BLUR_SIGMA = 1.0  # Gaussian blur, pixels
CIRCLE_STROKE = 2.0  # width of the circle's outline, pixels
CHUNK = 256  # images rendered at a time

SETTINGS = dict(
    size=SIZE,
    ground_margin=GROUND_MARGIN,
    edge_softness=EDGE_SOFTNESS,
    blur_sigma=BLUR_SIGMA,
    circle_stroke=CIRCLE_STROKE,
)


@functools.lru_cache(maxsize=8)
@torch.inference_mode(False)  # cached: must stay usable by autograd even if first built in inference mode
def _grid(device: torch.device, dtype: torch.dtype):
    """Pixel centres: distance from the vertical axis ``(1, SIZE)``, height above ground
    ``(SIZE, 1)``, and raw column/row coordinates for the circle."""
    centres = torch.arange(SIZE, device=device, dtype=dtype) + 0.5
    columns = centres.view(1, SIZE)
    rows = centres.view(SIZE, 1)
    return (columns - SIZE / 2).abs(), (SIZE - GROUND_MARGIN) - rows, columns, rows


@functools.lru_cache(maxsize=8)
@torch.inference_mode(False)
def _blur_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Symmetric ``G`` with ``blur(X) = G X G``: a Gaussian truncated at 3 sigma, zero padding.

    Two dense 64x64 products cost more arithmetic than a 7-tap convolution, but they are one
    large matrix product each, which on a CPU beats every convolution layout we timed.
    """
    offsets = torch.arange(SIZE, dtype=torch.float64)
    gap = offsets[:, None] - offsets[None, :]
    weights = torch.exp(-0.5 * (gap / BLUR_SIGMA) ** 2) * (gap.abs() <= math.ceil(3 * BLUR_SIGMA))
    return (weights / weights[SIZE // 2].sum()).to(device=device, dtype=dtype)


def _blur(image: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of ``(..., SIZE, SIZE)`` images; the background is 0, so pad with zeros."""
    blur = _blur_matrix(image.device, image.dtype)
    return ((image @ blur).mT @ blur).mT


def _pentagon_image(w, h, t, dtype, device):
    """``sigmoid(distance / EDGE_SOFTNESS)`` of the rectangle-plus-roof pentagon, unblurred.

    The distance is positive inside: the minimum over the ground, the walls and the two roof
    edges. Only the roof term is a full image; the others are rows or columns folded in with
    in-place clamps, because allocating full-size images dominates the cost on a CPU.
    """
    from_axis, height, _, _ = _grid(device, dtype)
    w, h, t = (v.clamp_min(0)[..., None, None] / EDGE_SOFTNESS for v in (w, h, t))
    half = w / 2
    # roof edges: half * (h + t - height) - t * |x| >= 0, normalised to a distance
    norm = torch.sqrt(t * t + half * half).clamp_min(1e-6)
    image = (half / norm) * (h + t - height / EDGE_SOFTNESS) - (t / norm) * (from_axis / EDGE_SOFTNESS)
    image = image.clamp_(max=half - from_axis / EDGE_SOFTNESS)  # walls
    image = image.clamp_(max=height / EDGE_SOFTNESS)  # ground
    return image.sigmoid_()


def _circle_image(r, x, y, dtype, device):
    """``sigmoid(distance / EDGE_SOFTNESS)`` of a circle's outline (positive inside the stroke)."""
    _, _, columns, rows = _grid(device, dtype)
    r, x, y = (v[..., None, None] / EDGE_SOFTNESS for v in (r, x, y))
    across = (columns / EDGE_SOFTNESS - x) ** 2 + 1e-6  # (..., 1, SIZE)
    down = (rows / EDGE_SOFTNESS - y) ** 2  # (..., SIZE, 1)
    off_ring = ((across + down).sqrt() - r).abs_()  # new tensors where autograd needs the old ones
    return off_ring.neg_().add_(CIRCLE_STROKE / 2 / EDGE_SOFTNESS).sigmoid_()


def render(
    w: torch.Tensor,
    h: torch.Tensor,
    t: torch.Tensor,
    circle: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Images ``(..., 1, SIZE, SIZE)`` in [0, 1] of a house or rocket, differentiable in every size.

    :param w: rectangle (and triangle base) width, pixels, shape ``(...)``.
    :param h: rectangle height, pixels.
    :param t: triangle height, pixels.
    :param circle: optional ``(r, x, y)``: radius and centre (from the left and top edges).

    Example::

        >>> render(torch.tensor([30.0, 10.0]), torch.tensor([10.0, 30.0]), torch.tensor([8.0, 8.0])).shape
        torch.Size([2, 1, 64, 64])
    """
    sizes = torch.broadcast_tensors(w, h, t, *(circle or ()))
    dtype = w.dtype if w.is_floating_point() else torch.get_default_dtype()
    batch_shape = sizes[0].shape
    columns = torch.stack([v.reshape(-1).to(dtype) for v in sizes], dim=-1)  # (n, 3 or 6)
    # chunks of a few hundred images keep the intermediates in cache: about twice as fast on a CPU
    images = [_render_rows(chunk) for chunk in columns.split(CHUNK)] or [_render_rows(columns)]
    return torch.cat(images).reshape(*batch_shape, 1, SIZE, SIZE)


def _render_rows(columns: torch.Tensor) -> torch.Tensor:
    """Images ``(n, SIZE, SIZE)`` of ``columns = [w, h, t(, r, x, y)]``, shape ``(n, 3 or 6)``."""
    image = _pentagon_image(columns[:, 0], columns[:, 1], columns[:, 2], columns.dtype, columns.device)
    if columns.shape[1] == 6:
        circle = _circle_image(columns[:, 3], columns[:, 4], columns[:, 5], columns.dtype, columns.device)
        image = torch.maximum(image, circle)  # union: the brighter of the two
    return _blur(image)


def draw(z: torch.Tensor, circle: bool = False) -> torch.Tensor:
    """Images ``(..., 1, 64, 64)`` of latents ``(..., 3)`` or, with a circle, ``(..., 6)``."""
    if circle and z.shape[-1] < 6:
        raise ValueError(f"a circle needs latents [w, h, t, r, x, y]; got {z.shape[-1]} columns")
    w, h, t = z[..., 0], z[..., 1], z[..., 2]
    return render(w, h, t, circle=(z[..., 3], z[..., 4], z[..., 5]) if circle else None)
