"""The two MNIST worlds, in one package whose imports run one way:

- :mod:`~pplevelset.worlds.mnist.data`: MNIST digits (bundled, IDX folders, download);
- :mod:`~pplevelset.worlds.mnist.nets`: classifier, VAE, GAN, their trainers and ``load_trained``
  (uses data);
- :mod:`~pplevelset.worlds.mnist.world`: :class:`MnistVAEWorld` and :class:`MnistGANWorld` (uses nets).
"""

from pplevelset.worlds.mnist.world import MnistGANWorld, MnistVAEWorld

__all__ = ["MnistGANWorld", "MnistVAEWorld"]
