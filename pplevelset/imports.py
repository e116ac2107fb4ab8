"""``package.module:attribute`` names, resolved the one way the whole package does it."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(name: str) -> Any:
    """The object ``attribute`` of ``package.module`` for ``name = "package.module:attribute"``.

    Raises ``ImportError`` (or ``AttributeError``) as ``importlib`` does; callers turn them into
    the message that fits their context.
    """
    module, sep, attribute = name.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"{name!r} is not of the form package.module:attribute")
    return getattr(importlib.import_module(module), attribute)
