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
import torch.nn.functional as F
from torch import nn

from pplevelset.worlds.base import World
from pplevelset.worlds.chunks import in_chunks
from pplevelset.worlds.mnist.nets import IMAGE_SHAPE, LATENT_DIM, load_trained

# For a stride-2, kernel-4, padding-1 transposed convolution, output pixel 2m + r (phase r) reads
# input pixels m - 1 + d for the taps d below; entry 4 is a zero tap (that phase skips that input).
_SUBPIXEL_TAPS = ((3, 1, 4), (4, 2, 0))  # [r][d] -> kernel index along one axis


def _flat_batch(tensor: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    """Merge the leading batch dims into one, so a network sees ``(N, *event)``."""
    batch_shape = tensor.shape[:tensor.dim() - event_dims]
    return tensor.reshape(-1, *tensor.shape[tensor.dim() - event_dims:]), batch_shape


def _is_upsampling(layer: nn.Module) -> bool:
    """A ``ConvTranspose2d`` that :func:`subpixel_conv_transpose` computes exactly."""
    return (isinstance(layer, nn.ConvTranspose2d) and layer.kernel_size == (4, 4) and layer.stride == (2, 2)
            and layer.padding == (1, 1) and layer.output_padding == (0, 0) and layer.dilation == (1, 1)
            and layer.groups == 1 and layer.padding_mode == "zeros")


def subpixel_conv_transpose(x: torch.Tensor, layer: nn.ConvTranspose2d) -> torch.Tensor:
    """``layer(x)`` for a stride-2, kernel-4, padding-1 transposed convolution, as a 3x3 convolution
    to four phases per output channel followed by ``pixel_shuffle(2)`` (sub-pixel convolution).

    The same sums in another order (equal to float rounding), differentiable in ``x`` and the
    weights. With channels-last feature maps it makes decoding 1.4-1.7x faster on a CPU
    (`make bench`, "layout"): torch's transposed convolution was most of the cost of a decode.
    """
    weight = layer.weight  # (C_in, C_out, 4, 4)
    taps = torch.tensor(_SUBPIXEL_TAPS, device=weight.device)
    padded = F.pad(weight, (0, 1, 0, 1))  # index 4 is the zero tap
    phases = padded[:, :, taps][..., taps]  # (C_in, C_out, r_y, d_y, r_x, d_x)
    kernel = phases.permute(1, 2, 4, 0, 3, 5).reshape(4 * weight.shape[1], weight.shape[0], 3, 3)
    bias = layer.bias.repeat_interleave(4) if layer.bias is not None else None
    return F.pixel_shuffle(F.conv2d(x, kernel, bias, padding=1), 2)


def fast_forward(network: nn.Sequential, z: torch.Tensor) -> torch.Tensor:
    """``network(z)`` with its feature maps channels-last and its upsampling layers as sub-pixel
    convolutions: the same function, computed the way CPU convolution kernels run fastest."""
    x = z
    for layer in network:
        if _is_upsampling(layer):
            x = subpixel_conv_transpose(x, layer)
        else:
            x = layer(x)
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
    return x


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
        return torch.softmax(in_chunks(self.classifier, images), dim=-1).reshape(*batch_shape, len(self.classes))

    def _decode_with(self, network, z):
        latents, batch_shape = _flat_batch(z, 1)
        images = in_chunks(lambda part: torch.sigmoid(fast_forward(network, part)), latents)
        return images.reshape(*batch_shape, *IMAGE_SHAPE)


class MnistVAEWorld(_MnistWorld):
    """Images are the VAE decoder's Bernoulli means: smooth, sometimes blurry digits."""

    name = "mnist-vae"
    required_checkpoints = (("mnist", "vae"), ("mnist", "classifier"))

    def __init__(self):
        super().__init__()
        self.vae, _ = load_trained("vae")

    def decode(self, z):
        return self._decode_with(self.vae.decoder, z)  # = self.vae.decode(z), faster


class MnistGANWorld(_MnistWorld):
    """Images are the GAN generator's outputs: sharp digits, and a classifier that is sure of them."""

    name = "mnist-gan"
    required_checkpoints = (("mnist", "gan"), ("mnist", "classifier"))

    def __init__(self):
        super().__init__()
        self.generator, _ = load_trained("gan")

    def decode(self, z):
        return self._decode_with(self.generator.net, z)  # = self.generator(z), faster
