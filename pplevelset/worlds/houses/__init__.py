"""The houses-or-rockets world, in one package whose imports run one way:

- :mod:`~pplevelset.worlds.houses.priors`: the prior over ``[w, h, t]`` (and the circle), and
  labelled draws from it;
- :mod:`~pplevelset.worlds.houses.render`: latents to soft 64x64 images;
- :mod:`~pplevelset.worlds.houses.nets`: the classifier CNN and its trainer (uses priors, render);
- :mod:`~pplevelset.worlds.houses.world`: :class:`HousesWorld` and :class:`HousesCirclesWorld`
  (uses all three).
"""

from pplevelset.worlds.houses.priors import CLASSES, houses_circles_prior, houses_prior, sample_labelled
from pplevelset.worlds.houses.render import draw, render
from pplevelset.worlds.houses.world import HousesCirclesWorld, HousesWorld

__all__ = [
    "CLASSES",
    "HousesCirclesWorld",
    "HousesWorld",
    "draw",
    "houses_circles_prior",
    "houses_prior",
    "render",
    "sample_labelled",
]
