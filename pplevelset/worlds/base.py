"""The World: a generative model z -> x = g(z) and a classifier f(x) on the simplex."""

from __future__ import annotations

from typing import Any

import torch
from pyro.distributions import TorchDistribution
from torch import nn

from pplevelset.errors import UserInputError

PROBE_SIZE = 4  # prior draws the output checks decode and classify
SUM_TOLERANCE = 1e-4  # classifier rows must sum to 1 within this


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

        return {
            f"{folder}/{name}": str(read_card(folder, name).get("sha256")) for folder, name in self.required_checkpoints
        }

    def to(self, device: torch.device | str) -> World:
        """Move every network and tensor attribute to ``device``; returns ``self``."""
        self.device = torch.device(device)
        for key, value in vars(self).items():
            if isinstance(value, (nn.Module, torch.Tensor)):
                setattr(self, key, value.to(self.device))
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, latent_dim={self.latent_dim}, "
            f"classes={len(self.classes)}, differentiable={self.differentiable})"
        )


def _describe(value: Any) -> str:
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__module__}.{type(value).__qualname__}".replace("a builtins.", "a ")


def _call(world: World, method: str, *args) -> Any:
    """``world.method(*args)``, any exception turned into one line naming the method."""
    try:
        return getattr(world, method)(*args)
    except UserInputError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        shape = f" on z of shape {tuple(args[0].shape)}" if args and torch.is_tensor(args[0]) else ""
        raise UserInputError(f"world {world.name!r}: {method}(){shape} failed: {type(exc).__name__}: {first}") from None


def check_world(world: World, num: int = PROBE_SIZE) -> None:
    """Check a world's outputs on a first batch of ``num`` prior draws, before any sampling.

    ``prior()`` must be a distribution with ``event_shape == (latent_dim,)`` and no batch shape;
    ``decode`` must keep the batch dimension; ``classify`` must return a tensor of shape
    ``(num, len(classes))`` whose entries are non-negative and finite where not NaN (NaN marks an
    input the classifier cannot score; such states are rejected) and whose rows sum to 1 within
    ``SUM_TOLERANCE``. Each failure is one :class:`UserInputError` line naming the method and what
    it returned. The global RNG is left as it was.
    """
    label = f"world {world.name!r}"
    if not isinstance(world.classes, (tuple, list)) or len(world.classes) < 2:
        raise UserInputError(f"{label}: classes must be a tuple of at least 2 names, got {world.classes!r}")
    dim = world.latent_dim
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise UserInputError(f"{label}: latent_dim must be a positive integer, got {dim!r}")
    devices = [world.device] if torch.device(world.device).type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        prior = _call(world, "prior")
        if not isinstance(prior, torch.distributions.Distribution):
            raise UserInputError(f"{label}: prior() returned {_describe(prior)}, not a torch/Pyro distribution")
        if tuple(prior.event_shape) != (dim,) or tuple(prior.batch_shape) != ():
            raise UserInputError(
                f"{label}: prior() has event_shape {tuple(prior.event_shape)} and batch_shape "
                f"{tuple(prior.batch_shape)}; it must have event_shape ({dim},) (latent_dim) and "
                "batch_shape () (e.g. add .to_event(1))"
            )
        try:
            z = prior.sample((num,))
        except Exception as exc:
            raise UserInputError(
                f"{label}: prior().sample() failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            ) from None
        x = _call(world, "decode", z)
        if not torch.is_tensor(x):
            raise UserInputError(f"{label}: decode(z) returned {_describe(x)}, not a torch.Tensor")
        if x.dim() < 1 or x.shape[0] != num:
            raise UserInputError(
                f"{label}: decode(z) with z of shape {tuple(z.shape)} returned shape "
                f"{tuple(x.shape)}; it must keep the batch dimension ({num}, ...)"
            )
        probs = _call(world, "classify", x)
        what = f"{label}: classify(decode(z)) with z of shape {tuple(z.shape)} returned"
        if not torch.is_tensor(probs):
            raise UserInputError(f"{what} {_describe(probs)}, not a torch.Tensor")
        if tuple(probs.shape) != (num, len(world.classes)):
            raise UserInputError(
                f"{what} shape {tuple(probs.shape)}; expected ({num}, {len(world.classes)}): "
                "one probability per class, batch shape kept"
            )
        values = probs.detach().double()
        known = values[~torch.isnan(values).any(-1)]
        if not torch.isfinite(known).all():
            raise UserInputError(
                f"{what} infinite values; probabilities must be finite (NaN marks an unscorable input)"
            )
        if (known < 0).any():
            raise UserInputError(
                f"{what} negative probabilities (min {float(known.min()):.4g}); each row must be a probability vector"
            )
        sums = known.sum(-1)
        if sums.numel() and float((sums - 1).abs().max()) > SUM_TOLERANCE:
            worst = float(sums[(sums - 1).abs().argmax()])
            raise UserInputError(
                f"{what} rows summing to {worst:.6g}; each row must sum to 1 within "
                f"{SUM_TOLERANCE:g} (apply a softmax?)"
            )
