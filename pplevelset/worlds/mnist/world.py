"""The 28x28 image worlds: z ~ MVN(0, I) in 5-D, decoded by a VAE or a GAN, classified by a CNN.

- ``mnist-vae``, ``mnist-gan`` (the paper's), ``fashion-vae``, ``fashion-gan``;
- Bayes-TrEx's experiments, each with one class held out (``excluded_class``) and a reference
  classifier (``reference_classify``, ``reference_classes``): ``*-adversarial`` (a VAE trained
  without the class, the all-class classifier) and ``*-novel`` (the all-class VAE, a classifier
  trained without the class), for ``mnist`` and ``fashion``.

All are differentiable end to end, so NUTS may run on them. ``decode`` and ``classify`` accept
any leading batch shape and run one forward pass over all of it, which is what lets the sampler
score every particle at once.

Example::

    world = pls.load_world("mnist-gan")
    z = world.prior().sample((4, 1000))        # (4, 1000, 5)
    probabilities = world.predict(z)           # (4, 1000, 10)
"""

from __future__ import annotations

from typing import TypeGuard

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn

from pplevelset.worlds.base import World
from pplevelset.worlds.chunks import in_chunks
from pplevelset.worlds.mnist.data import FASHION, MNIST, ImageDataset
from pplevelset.worlds.mnist.nets import (
    ADVERSARIAL_EXCLUDED,
    IMAGE_SHAPE,
    LATENT_DIM,
    NOVEL_EXCLUDED,
    load_trained,
    recipe_for,
)

# For a stride-2, kernel-4, padding-1 transposed convolution, output pixel 2m + r (phase r) reads
# input pixels m - 1 + d for the taps d below; entry 4 is a zero tap (that phase skips that input).
_SUBPIXEL_TAPS = ((3, 1, 4), (4, 2, 0))  # [r][d] -> kernel index along one axis


def _flat_batch(tensor: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    """Merge the leading batch dims into one, so a network sees ``(N, *event)``."""
    batch_shape = tensor.shape[: tensor.dim() - event_dims]
    return tensor.reshape(-1, *tensor.shape[tensor.dim() - event_dims :]), batch_shape


def _is_upsampling(layer: nn.Module) -> TypeGuard[nn.ConvTranspose2d]:
    """A ``ConvTranspose2d`` that :func:`subpixel_conv_transpose` computes exactly."""
    return (
        isinstance(layer, nn.ConvTranspose2d)
        and layer.kernel_size == (4, 4)
        and layer.stride == (2, 2)
        and layer.padding == (1, 1)
        and layer.output_padding == (0, 0)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and layer.padding_mode == "zeros"
    )


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


class _ImageWorld(World):
    """What every 28x28 image world shares: the 5-D standard normal prior, a decoder network
    (``decoder_name``, a VAE or a GAN checkpoint) and a classifier (``classifier_name``), both
    from ``models/<dataset>/``. ``required_checkpoints``, ``classes`` (the classifier's) and
    ``decoder_kind`` (``vae`` or ``gan``) follow from those names when a subclass is defined."""

    dataset: ImageDataset = MNIST
    decoder_name = "vae"
    decoder_kind = "vae"
    classifier_name = "classifier"
    latent_dim = LATENT_DIM
    differentiable = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        key = cls.dataset.key
        cls.required_checkpoints = ((key, cls.decoder_name), (key, cls.classifier_name))
        cls.classes = recipe_for(cls.dataset, cls.classifier_name).classes
        cls.decoder_kind = recipe_for(cls.dataset, cls.decoder_name).kind

    def __init__(self):
        self.classifier, _ = load_trained(self.classifier_name, dataset=self.dataset)
        decoder, _ = load_trained(self.decoder_name, dataset=self.dataset)
        if self.decoder_kind == "vae":
            self.vae = decoder
        else:
            self.generator = decoder

    def prior(self):
        zeros = torch.zeros(self.latent_dim, device=self.device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def classify(self, x):
        return _probabilities(self.classifier, x)

    def decode(self, z):
        # = self.vae.decode(z) or self.generator(z), faster
        network = self.vae.decoder if self.decoder_kind == "vae" else self.generator.net
        latents, batch_shape = _flat_batch(z, 1)
        images = in_chunks(lambda part: torch.sigmoid(fast_forward(network, part)), latents)
        return images.reshape(*batch_shape, *IMAGE_SHAPE)


def _probabilities(classifier: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax of ``classifier`` over images with any leading batch shape, in one pass."""
    images, batch_shape = _flat_batch(x, len(IMAGE_SHAPE))
    probabilities = torch.softmax(in_chunks(classifier, images), dim=-1)
    return probabilities.reshape(*batch_shape, probabilities.shape[-1])


class MnistVAEWorld(_ImageWorld):
    """Images are the VAE decoder's Bernoulli means: smooth, sometimes blurry digits."""

    name = "mnist-vae"


class MnistGANWorld(_ImageWorld):
    """Images are the GAN generator's outputs: sharp digits, and a classifier that is sure of them."""

    name = "mnist-gan"
    decoder_name = "gan"


class FashionVAEWorld(_ImageWorld):
    """Fashion-MNIST: the VAE's Bernoulli means (smooth, blurry clothes), the Fashion-MNIST CNN."""

    name = "fashion-vae"
    dataset = FASHION


class FashionGANWorld(_ImageWorld):
    """Fashion-MNIST: the GAN generator's images, the Fashion-MNIST CNN."""

    name = "fashion-gan"
    dataset = FASHION
    decoder_name = "gan"


# --- the Bayes-TrEx experiment worlds: one class held out --------------------------------------


class _HeldOutClassWorld(_ImageWorld):
    """A world with one class held out of one of its networks (``excluded_class``, a class name:
    ``held_out_classes[dataset.key]``), and a reference classifier (other architecture, other
    seed, all classes) that says what a generated image shows: ``reference_classify(x)`` gives
    ``(..., 10)`` probabilities over ``reference_classes``."""

    held_out_network = ""  # "vae": the decoder never saw the class; "classifier": the classifier
    held_out_classes: dict[str, str] = {}
    excluded_class = ""
    reference_classes: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        if cls.held_out_classes:
            cls.excluded_class = cls.held_out_classes[cls.dataset.key]
            name = f"{cls.held_out_network}_without_{cls.excluded_class}"
            if cls.held_out_network == "vae":
                cls.decoder_name = name
            else:
                cls.classifier_name = name
        super().__init_subclass__(**kwargs)
        cls.required_checkpoints += ((cls.dataset.key, "reference_classifier"),)
        cls.reference_classes = cls.dataset.classes

    def __init__(self):
        super().__init__()
        self.reference, _ = load_trained("reference_classifier", dataset=self.dataset)

    def reference_classify(self, x: torch.Tensor) -> torch.Tensor:
        return _probabilities(self.reference, x)


class _AdversarialWorld(_HeldOutClassWorld):
    """In-distribution adversarial examples (Bayes-TrEx): a VAE trained without ``excluded_class``,
    the all-class classifier. Images the classifier calls that class are not of it."""

    held_out_network = "vae"
    held_out_classes = ADVERSARIAL_EXCLUDED


class _NovelClassWorld(_HeldOutClassWorld):
    """Novel-class extrapolation (Bayes-TrEx): the all-class VAE, a classifier trained without
    ``excluded_class`` (its ``classes`` are the nine others). What does it call the novel class?"""

    held_out_network = "classifier"
    held_out_classes = NOVEL_EXCLUDED


class MnistAdversarialWorld(_AdversarialWorld):
    """MNIST: a VAE that never saw the digit 0, the all-digit classifier."""

    name = "mnist-adversarial"


class FashionAdversarialWorld(_AdversarialWorld):
    """Fashion-MNIST: a VAE that never saw a T-shirt, the all-class classifier."""

    name = "fashion-adversarial"
    dataset = FASHION


class MnistNovelWorld(_NovelClassWorld):
    """MNIST: the all-digit VAE, a classifier that never saw a 7."""

    name = "mnist-novel"


class FashionNovelWorld(_NovelClassWorld):
    """Fashion-MNIST: the all-class VAE, a classifier that never saw a sneaker."""

    name = "fashion-novel"
    dataset = FASHION
