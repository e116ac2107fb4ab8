"""The registry of worlds: ``register`` a factory under a name, ``load_world`` it by name.

Built-in worlds are imported only when first loaded, so ``toy`` needs no checkpoints. A name of the
form ``package.module:WorldClass`` imports a world from the user's own code, so the command line
can sample worlds written outside this package (``pls.register`` lasts only for the process).

Installed packages add worlds by name through the entry point group ``pplevelset.worlds``
(``name = "module:Class"``): read once, imported only when loaded, so a broken plugin breaks only
itself. A plugin never replaces a built-in world or one given to ``pls.register``; of two plugins
with one name, the first package in name order wins (``pplevelset worlds`` says which lost).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, NamedTuple

from pplevelset.errors import UserInputError
from pplevelset.imports import import_object
from pplevelset.worlds.base import World

if TYPE_CHECKING:
    import torch

_BUILTIN = {
    "toy": "pplevelset.worlds.toy:ToyWorld",
    "houses": "pplevelset.worlds.houses:HousesWorld",
    "houses-circles": "pplevelset.worlds.houses:HousesCirclesWorld",
    "mnist-vae": "pplevelset.worlds.mnist:MnistVAEWorld",
    "mnist-gan": "pplevelset.worlds.mnist:MnistGANWorld",
    "fashion-vae": "pplevelset.worlds.mnist:FashionVAEWorld",
    "fashion-gan": "pplevelset.worlds.mnist:FashionGANWorld",
    "mnist-adversarial": "pplevelset.worlds.mnist:MnistAdversarialWorld",
    "fashion-adversarial": "pplevelset.worlds.mnist:FashionAdversarialWorld",
    "mnist-novel": "pplevelset.worlds.mnist:MnistNovelWorld",
    "fashion-novel": "pplevelset.worlds.mnist:FashionNovelWorld",
}
_REGISTRY: dict[str, Callable[[], World]] = {}
PLUGIN_GROUP = "pplevelset.worlds"


class Plugin(NamedTuple):
    """A world declared by an installed package: ``name = "module:Class"`` in its entry points."""

    name: str
    value: str
    package: str  # the distribution that declares it
    shadowed_by: str | None = None  # why another world owns the name: "a built-in world has that name", ...


@functools.cache
def plugins() -> tuple[Plugin, ...]:
    """Every world in the ``pplevelset.worlds`` entry point group, those that lose a name clash included."""
    found: dict[tuple[str, str], Plugin] = {}
    for point in entry_points(group=PLUGIN_GROUP):
        package = point.dist.name if point.dist is not None else "unknown package"
        found.setdefault((point.name, point.value), Plugin(point.name, point.value, package))
    out: list[Plugin] = []
    owners: dict[str, str] = {}
    for plugin in sorted(found.values(), key=lambda p: (p.package, p.name)):
        owner = "a built-in world has that name" if plugin.name in _BUILTIN else owners.get(plugin.name)
        out.append(plugin._replace(shadowed_by=owner))
        owners.setdefault(plugin.name, f"package {plugin.package!r} declares that name first")
    return tuple(out)


def _plugin(name: str) -> Plugin | None:
    return next((p for p in plugins() if p.name == name and p.shadowed_by is None), None)


def origin(name: str) -> str:
    """Where ``name`` comes from: ``built-in``, ``registered`` (``pls.register``), or the plugin's package."""
    if name in _REGISTRY:
        return "registered"
    if name in _BUILTIN:
        return "built-in"
    plugin = _plugin(name)
    return plugin.package if plugin is not None else "module:Class"


def register(name: str, factory: Callable[[], World], overwrite: bool = False) -> None:
    """Make ``load_world(name)`` (and the CLI) build a world with ``factory()``."""
    if not overwrite and (name in _REGISTRY or name in _BUILTIN):
        raise UserInputError(f"a world named {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Every world name: built-ins first, then ``pls.register``'s, then installed plugins'."""
    out = list(_BUILTIN) + [name for name in _REGISTRY if name not in _BUILTIN]
    return out + [p.name for p in plugins() if p.shadowed_by is None and p.name not in out]


def world_class(name: str) -> Callable[[], World]:
    """The factory behind ``name`` (a World subclass for built-ins), without building the world."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return import_object(_BUILTIN[name])
    plugin = _plugin(name) if isinstance(name, str) else None
    if plugin is not None:
        try:
            return import_object(plugin.value)
        except Exception as exc:  # the plugin's own bug or missing dependency: one line, naming its package
            first = (str(exc).strip().splitlines() or [""])[0]
            raise UserInputError(
                f"world {name!r} from package {plugin.package!r} ({plugin.value}) cannot be "
                f"imported: {type(exc).__name__}: {first}"
            ) from None
    if not isinstance(name, str):
        raise UserInputError(f"a world name must be a string, got {type(name).__name__}")
    if ":" in name:  # "package.module:WorldClass": a world from the user's own code, for the CLI too
        try:
            return import_object(name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise UserInputError(f"cannot load world {name!r}: {exc}") from None
    raise UserInputError(f"unknown world {name!r}; known worlds: {', '.join(names())}")


def load_world(world: str | World, device: str | torch.device | None = None) -> World:
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
        raise UserInputError(
            f"world must be a registered name (see `pplevelset worlds`) or a pls.World, got {type(world).__name__}"
        )
    if device is not None:
        instance.to(device)
    return instance
