"""The houses world's prior: the paper's truncated normals over ``[w, h, t]`` (and the circle's ``[r, x, y]``).

Rocket (paper's c = 0): ``w ~ No+(10, 5^2), h ~ No+(30, 10^2), t ~ No+(8, 2^2)``; house (c = 1):
``w ~ No+(30, 10^2), h ~ No+(10, 2^2), t ~ No+(8, 2^2)``; the class is marginalised, so the prior is
an equal two-component mixture (component ``k`` is class ``k`` of :data:`CLASSES`). The circle adds
``r ~ No+(20, 10^2)`` and a centre ``x, y ~ U(20, 40)``. See :mod:`pplevelset.worlds.houses.world`.

Example::

    >>> z, labels = sample_labelled(4, torch.Generator().manual_seed(0))
    >>> houses_prior().log_prob(z).shape
    torch.Size([4])
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pplevelset.distributions import Concatenated, SharedSupportMixture, TruncatedNormal

CLASSES = ("house", "rocket")
# rows follow CLASSES, columns [w, h, t]: location and scale of each truncated normal
SHAPE_LOC = ((30.0, 10.0, 8.0), (10.0, 30.0, 8.0))
SHAPE_SCALE = ((10.0, 2.0, 2.0), (5.0, 10.0, 2.0))
RADIUS_LOC, RADIUS_SCALE = 20.0, 10.0
CENTRE_LOW, CENTRE_HIGH = 20.0, 40.0


def shape_components(device=None) -> TruncatedNormal:
    """Batch of two truncated normals over ``[w, h, t]``, one per class."""
    return TruncatedNormal(torch.tensor(SHAPE_LOC, device=device), torch.tensor(SHAPE_SCALE, device=device))


def houses_prior(device=None) -> SharedSupportMixture:
    """``p(w, h, t)``: the equal mixture of the house and rocket components, event shape ``(3,)``."""
    weights = dist.Categorical(probs=torch.full((len(CLASSES),), 1 / len(CLASSES), device=device))
    return SharedSupportMixture(weights, shape_components(device).to_event(1))


def houses_circles_prior(device=None) -> Concatenated:
    """``p(w, h, t, r, x, y)``: the houses prior, a radius and a uniform centre, event shape ``(6,)``."""
    radius = TruncatedNormal(torch.tensor([RADIUS_LOC], device=device), torch.tensor([RADIUS_SCALE], device=device))
    centre = dist.Uniform(torch.full((2,), CENTRE_LOW, device=device), torch.full((2,), CENTRE_HIGH, device=device))
    return Concatenated([houses_prior(device), radius.to_event(1), centre.to_event(1)])


def sample_labelled(
    n: int, generator: torch.Generator | None = None, circles: bool = False, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents from the prior with their class index (0 house, 1 rocket): training data.

    Draws on the generator's device (CPU by default) so a seed gives the same data everywhere,
    then moves to ``device``. Returns ``z`` of shape ``(n, 3)`` (``(n, 6)`` with circles) and
    ``labels`` of shape ``(n,)``.
    """

    def uniform(*shape):
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    labels = torch.randint(len(CLASSES), (n,), generator=generator)
    components = shape_components()
    shape = TruncatedNormal(components.loc[labels], components.scale[labels]).icdf(uniform(n, 3))
    columns = [shape]
    if circles:
        columns.append(TruncatedNormal(RADIUS_LOC, RADIUS_SCALE).icdf(uniform(n, 1)))
        columns.append(CENTRE_LOW + (CENTRE_HIGH - CENTRE_LOW) * uniform(n, 2).float())
    return torch.cat(columns, dim=-1).to(device), labels.to(device)
