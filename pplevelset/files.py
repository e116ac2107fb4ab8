"""Atomic file writing: a temporary sibling renamed into place, so readers never see half a file."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[str], Any]) -> Path:
    """Write ``data`` (bytes, or a function that writes the file at the path it is given) to ``path``.

    The result has ordinary permissions (``0o666`` less the umask), not ``mkstemp``'s private ones.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    try:
        if isinstance(data, (bytes, bytearray)):
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        else:
            os.close(fd)
            data(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def finite_json(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Indented strict JSON, written atomically."""
    return atomic_write(path, (json.dumps(finite_json(data), indent=2, allow_nan=False) + "\n").encode())
