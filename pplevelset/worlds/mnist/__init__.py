"""The 28x28 image worlds (MNIST and Fashion-MNIST), in one package whose imports run one way:

- :mod:`~pplevelset.worlds.mnist.data`: the data sets (bundled MNIST digits, IDX folders, the
  Debian package's Fashion-MNIST, download);
- :mod:`~pplevelset.worlds.mnist.nets`: classifiers, VAE, GAN, the recipes and trainers, and
  ``load_trained`` (uses data);
- :mod:`~pplevelset.worlds.mnist.world`: the worlds (uses nets).
"""

from pplevelset.worlds.mnist.world import (
    FashionAdversarialWorld,
    FashionGANWorld,
    FashionNovelWorld,
    FashionVAEWorld,
    MnistAdversarialWorld,
    MnistGANWorld,
    MnistNovelWorld,
    MnistVAEWorld,
)

__all__ = [
    "FashionAdversarialWorld",
    "FashionGANWorld",
    "FashionNovelWorld",
    "FashionVAEWorld",
    "MnistAdversarialWorld",
    "MnistGANWorld",
    "MnistNovelWorld",
    "MnistVAEWorld",
]
