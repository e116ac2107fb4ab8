"""The paper's synthetic world: a triangle on a rectangle that looks like a house or a rocket.

Generative process (paper, "Rockets or Houses"), with No+ the normal truncated to positive values::

    c ~ Bernoulli(0.5)
    rocket (paper's c = 0): w ~ No+(10, 5^2),  h ~ No+(30, 10^2), t ~ No+(8, 2^2)
    house  (paper's c = 1): w ~ No+(30, 10^2), h ~ No+(10, 2^2),  t ~ No+(8, 2^2)
    z = [w, h, t]  (rectangle width, rectangle height, triangle height; pixels)

The paper's text lost the line for ``t`` of the house class; we reconstruct it as the same
No+(8, 2^2) as the rocket's: a triangle as high as a rocket's base is wide is pointy, on a house's
wide base it is a flat roof, so shape (not ``t`` itself) tells the classes apart.

``c`` is marginalised: the prior is a two-component mixture, component ``k`` being class ``k`` of
``classes = ("house", "rocket")`` (so the paper's c is ``1 - k``). ``houses-circles`` appends
``r ~ No+(20, 10^2)`` and a centre ``x, y ~ U(20, 40)`` (pixels from the left and top edges),
independent of the class, and draws a circle outline; its classifier is the one trained without
circles, and ``decode(z, circle=False)`` renders the same latents without it (the paper's
out-of-distribution comparison).

Example::

    >>> world = HousesWorld()
    >>> z, labels = world.sample_labelled(8, torch.Generator().manual_seed(0))
    >>> world.classify(world.decode(z)).shape
    torch.Size([8, 2])
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pplevelset.checkpoints import load_module
from pplevelset.distributions import Concatenated, SharedSupportMixture, TruncatedNormal
from pplevelset.nets.houses import HousesCNN
from pplevelset.render import render
from pplevelset.worlds.base import World
from pplevelset.worlds.chunks import in_chunks

CLASSES = ("house", "rocket")
# rows follow CLASSES, columns [w, h, t]: location and scale of each truncated normal
SHAPE_LOC = ((30.0, 10.0, 8.0), (10.0, 30.0, 8.0))
SHAPE_SCALE = ((10.0, 2.0, 2.0), (5.0, 10.0, 2.0))
RADIUS_LOC, RADIUS_SCALE = 20.0, 10.0
CENTRE_LOW, CENTRE_HIGH = 20.0, 40.0


def _shape_components(device=None) -> TruncatedNormal:
    """Batch of two truncated normals over ``[w, h, t]``, one per class."""
    return TruncatedNormal(torch.tensor(SHAPE_LOC, device=device), torch.tensor(SHAPE_SCALE, device=device))


def houses_prior(device=None) -> SharedSupportMixture:
    """``p(w, h, t)``: the equal mixture of the house and rocket components, event shape ``(3,)``."""
    weights = dist.Categorical(probs=torch.full((len(CLASSES),), 1 / len(CLASSES), device=device))
    return SharedSupportMixture(weights, _shape_components(device).to_event(1))


def houses_circles_prior(device=None) -> Concatenated:
    """``p(w, h, t, r, x, y)``: the houses prior, a radius and a uniform centre, event shape ``(6,)``."""
    radius = TruncatedNormal(torch.tensor([RADIUS_LOC], device=device), torch.tensor([RADIUS_SCALE], device=device))
    centre = dist.Uniform(torch.full((2,), CENTRE_LOW, device=device), torch.full((2,), CENTRE_HIGH, device=device))
    return Concatenated([houses_prior(device), radius.to_event(1), centre.to_event(1)])


def sample_labelled(n: int, generator: torch.Generator | None = None, circles: bool = False,
                    device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` latents from the prior with their class index (0 house, 1 rocket): training data.

    Draws on the generator's device (CPU by default) so a seed gives the same data everywhere,
    then moves to ``device``. Returns ``z`` of shape ``(n, 3)`` (``(n, 6)`` with circles) and
    ``labels`` of shape ``(n,)``.
    """
    def uniform(*shape):
        return torch.rand(shape, generator=generator, dtype=torch.float64)

    labels = torch.randint(len(CLASSES), (n,), generator=generator)
    components = _shape_components()
    shape = TruncatedNormal(components.loc[labels], components.scale[labels]).icdf(uniform(n, 3))
    columns = [shape]
    if circles:
        columns.append(TruncatedNormal(RADIUS_LOC, RADIUS_SCALE).icdf(uniform(n, 1)))
        columns.append(CENTRE_LOW + (CENTRE_HIGH - CENTRE_LOW) * uniform(n, 2).float())
    return torch.cat(columns, dim=-1).to(device), labels.to(device)


def draw(z: torch.Tensor, circle: bool = False) -> torch.Tensor:
    """Images ``(..., 1, 64, 64)`` of latents ``(..., 3)`` or, with a circle, ``(..., 6)``."""
    if circle and z.shape[-1] < 6:
        raise ValueError(f"a circle needs latents [w, h, t, r, x, y]; got {z.shape[-1]} columns")
    w, h, t = z[..., 0], z[..., 1], z[..., 2]
    return render(w, h, t, circle=(z[..., 3], z[..., 4], z[..., 5]) if circle else None)


class HousesWorld(World):
    """Houses or rockets from ``z = [w, h, t]``, judged by a CNN trained on 16,000 rendered images.

    Loads (and verifies) the classifier ``models/houses/classifier.pt`` when built; a missing or
    corrupted checkpoint raises :class:`pplevelset.errors.CheckpointError`.
    """

    name = "houses"
    classes = CLASSES
    latent_dim = 3
    differentiable = True
    required_checkpoints = (("houses", "classifier"),)

    def __init__(self):
        self.classifier, self.classifier_card = load_module(HousesCNN(), "houses", "classifier")
        # channels-last convolutions: 1.3-2x faster on a CPU (`make bench`, "layout"), the same numbers
        self.classifier = self.classifier.to(memory_format=torch.channels_last)

    def prior(self):
        return houses_prior(self.device)

    def decode(self, z):
        return draw(z)

    def classify(self, x):
        batch_shape = x.shape[:-3]
        weight = next(self.classifier.parameters())
        images = x.reshape(-1, *x.shape[-3:]).to(weight.dtype).contiguous(memory_format=torch.channels_last)
        logits = in_chunks(self.classifier, images)
        return torch.softmax(logits, dim=-1).to(x.dtype).reshape(*batch_shape, len(self.classes))

    def sample_labelled(self, n: int, generator: torch.Generator | None = None):
        """``(z, labels)``: ``n`` prior latents on ``self.device`` with their class indices."""
        return sample_labelled(n, generator, circles=self.latent_dim == 6, device=self.device)


class HousesCirclesWorld(HousesWorld):
    """The houses world with a circle overlaid: ``z = [w, h, t, r, x, y]``, same classifier.

    ``decode(z, circle=False)`` renders the same latents without the circle, for comparing the
    classifier's predictions with and without the out-of-distribution geometry.
    """

    name = "houses-circles"
    latent_dim = 6

    def prior(self):
        return houses_circles_prior(self.device)

    def decode(self, z, circle: bool = True):
        return draw(z, circle=circle)
