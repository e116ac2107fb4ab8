"""The registry of worlds: ``register`` a factory under a name, ``load_world`` it by name.

Built-in worlds are imported only when first loaded, so ``toy`` needs no checkpoints. A name of the
form ``package.module:WorldClass`` imports a world from the user's own code, so the command line
can sample worlds written outside this package (``pls.register`` lasts only for the process).
"""

from __future__ import annotations

from typing import Callable

from pplevelset.errors import UserInputError
from pplevelset.imports import import_object
from pplevelset.worlds.base import World

_BUILTIN = {
    "toy": "pplevelset.worlds.toy:ToyWorld",
    "houses": "pplevelset.worlds.houses:HousesWorld",
    "houses-circles": "pplevelset.worlds.houses:HousesCirclesWorld",
    "mnist-vae": "pplevelset.worlds.mnist:MnistVAEWorld",
    "mnist-gan": "pplevelset.worlds.mnist:MnistGANWorld",
}
_REGISTRY: dict[str, Callable[[], World]] = {}


def register(name: str, factory: Callable[[], World], overwrite: bool = False) -> None:
    """Make ``load_world(name)`` (and the CLI) build a world with ``factory()``."""
    if not overwrite and (name in _REGISTRY or name in _BUILTIN):
        raise UserInputError(f"a world named {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Every registered world name, built-ins first."""
    return list(_BUILTIN) + [name for name in _REGISTRY if name not in _BUILTIN]


def world_class(name: str) -> Callable[[], World]:
    """The factory behind ``name`` (a World subclass for built-ins), without building the world."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return import_object(_BUILTIN[name])
    if not isinstance(name, str):
        raise UserInputError(f"a world name must be a string, got {type(name).__name__}")
    if ":" in name:  # "package.module:WorldClass": a world from the user's own code, for the CLI too
        try:
            return import_object(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UserInputError(f"cannot load world {name!r}: {exc}") from None
    raise UserInputError(f"unknown world {name!r}; known worlds: {', '.join(names())}")


def load_world(world: str | World, device: str | None = None) -> World:
    """A world by registered name (or a World instance, passed through), on ``device`` if given."""
    if isinstance(world, World):
        instance = world
    elif isinstance(world, str):
        factory = world_class(world)
        try:
            instance = factory()
        except UserInputError:
            raise
        except TypeError as exc:
            raise UserInputError(f"cannot build world {world!r}: {exc}") from None
        if not isinstance(instance, World):
            raise UserInputError(f"world {world!r} is {type(instance).__name__}, not a pplevelset World")
    else:
        raise UserInputError(f"world must be a registered name (see `pplevelset worlds`) or a pls.World, "
                             f"got {type(world).__name__}")
    if device is not None:
        instance.to(device)
    return instance
