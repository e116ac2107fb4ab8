"""The World: a generative model z -> x = g(z) and a classifier f(x) on the simplex."""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch import nn


class World:
    """A prior over latents, a deterministic decoder and a classifier.

    Subclass it and fill in the class attributes and the three methods. A world that holds
    networks keeps them as ``nn.Module`` attributes; :meth:`to` moves them (and tensors) to a
    device, and :meth:`prior` must build its distribution on ``self.device``.

    Example::

        class Coin(pls.World):
            name, classes, latent_dim = "coin", ("heads", "tails"), 1
            def prior(self):
                return dist.Normal(torch.zeros(1), 1.0).to_event(1)
            def decode(self, z):
                return z
            def classify(self, x):
                p = torch.sigmoid(3 * x[..., 0])
                return torch.stack([p, 1 - p], -1)
    """

    name: str = "world"
    classes: tuple[str, ...] = ()
    latent_dim: int = 0
    differentiable: bool = True  # may NUTS run on it?
    required_checkpoints: tuple[tuple[str, str], ...] = ()  # (folder, name) in models/
    device: torch.device = torch.device("cpu")

    def prior(self) -> TorchDistribution:
        """The distribution of z, with ``event_shape == (latent_dim,)``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Deterministic map from latents ``(..., d)`` to inputs of the classifier."""
        raise NotImplementedError

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(..., L)`` of decoded inputs."""
        raise NotImplementedError

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """``classify(decode(z))`` with the batch shape of ``z`` preserved."""
        return self.classify(self.decode(z))

    @property
    def checkpoints(self) -> dict[str, str]:
        """SHA-256 of every trained network the world uses, by ``folder/name`` (recorded with runs)."""
        from pplevelset.checkpoints import read_card

        return {f"{folder}/{name}": read_card(folder, name)["sha256"]
                for folder, name in self.required_checkpoints}

    def to(self, device: torch.device | str) -> "World":
        """Move every network and tensor attribute to ``device``; returns ``self``."""
        self.device = torch.device(device)
        for key, value in vars(self).items():
            if isinstance(value, (nn.Module, torch.Tensor)):
                setattr(self, key, value.to(self.device))
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, latent_dim={self.latent_dim}, "
                f"classes={len(self.classes)}, differentiable={self.differentiable})")
