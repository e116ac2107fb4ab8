"""The toy world: 2-D standard normal latents, identity decoder, linear-softmax over 3 classes.

Its posterior can be integrated on a grid, so it is the reference for sampler correctness tests,
and it is the smallest example of how to write a world.
"""

import math

import pyro.distributions as dist
import torch

from pplevelset.worlds.base import World


class ToyWorld(World):
    """Three classes whose weight vectors point 120 degrees apart; ambiguity sits at the origin."""

    name = "toy"
    classes = ("a", "b", "c")
    latent_dim = 2
    differentiable = True

    def __init__(self, scale: float = 2.0):
        angles = torch.tensor([90.0, 210.0, 330.0]) * math.pi / 180
        self.weight = scale * torch.stack([angles.cos(), angles.sin()], dim=-1)  # (3, 2)
        self.bias = torch.tensor([0.0, 0.5, -0.5])

    def prior(self):
        zeros = torch.zeros(self.latent_dim, device=self.device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def decode(self, z):
        return z

    def classify(self, x):
        return torch.softmax(x @ self.weight.T + self.bias, dim=-1)
