"""The two MNIST worlds of the paper: z ~ MVN(0, I) in 5-D, decoded by a VAE or a GAN, classified by a CNN.

Both are differentiable end to end, so NUTS may run on them. ``decode`` and ``classify`` accept
any leading batch shape and run one forward pass over all of it, which is what lets the sampler
score every particle at once.

Example::

    world = pls.load_world("mnist-gan")
    z = world.prior().sample((4, 1000))        # (4, 1000, 5)
    probabilities = world.predict(z)           # (4, 1000, 10)
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pplevelset.nets.mnist import IMAGE_SHAPE, LATENT_DIM, load_trained
from pplevelset.world import World


def _flat_batch(tensor: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    """Merge the leading batch dims into one, so a network sees ``(N, *event)``."""
    batch_shape = tensor.shape[:tensor.dim() - event_dims]
    return tensor.reshape(-1, *tensor.shape[tensor.dim() - event_dims:]), batch_shape


class _MnistWorld(World):
    """What both MNIST worlds share: the prior, the classes and the classifier."""

    classes = tuple(str(digit) for digit in range(10))
    latent_dim = LATENT_DIM
    differentiable = True

    def __init__(self):
        self.classifier, _ = load_trained("classifier")

    def prior(self):
        zeros = torch.zeros(self.latent_dim, device=self.device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def classify(self, x):
        images, batch_shape = _flat_batch(x, len(IMAGE_SHAPE))
        return torch.softmax(self.classifier(images), dim=-1).reshape(*batch_shape, len(self.classes))

    def _decode_with(self, network, z):
        latents, batch_shape = _flat_batch(z, 1)
        return network(latents).reshape(*batch_shape, *IMAGE_SHAPE)


class MnistVAEWorld(_MnistWorld):
    """Images are the VAE decoder's Bernoulli means: smooth, sometimes blurry digits."""

    name = "mnist-vae"
    required_checkpoints = (("mnist", "vae"), ("mnist", "classifier"))

    def __init__(self):
        super().__init__()
        self.vae, _ = load_trained("vae")

    def decode(self, z):
        return self._decode_with(self.vae.decode, z)


class MnistGANWorld(_MnistWorld):
    """Images are the GAN generator's outputs: sharp digits, and a classifier that is sure of them."""

    name = "mnist-gan"
    required_checkpoints = (("mnist", "gan"), ("mnist", "classifier"))

    def __init__(self):
        super().__init__()
        self.generator, _ = load_trained("gan")

    def decode(self, z):
        return self._decode_with(self.generator, z)
