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

import torch

from pplevelset.checkpoints import load_module
from pplevelset.worlds.base import World
from pplevelset.worlds.chunks import in_chunks
from pplevelset.worlds.houses.nets import HousesCNN
from pplevelset.worlds.houses.priors import CLASSES, houses_circles_prior, houses_prior, sample_labelled
from pplevelset.worlds.houses.render import draw


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
        self.classifier, self.classifier_card = load_module(
            HousesCNN(), "houses", "classifier", train_command="pplevelset train houses"
        )
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
