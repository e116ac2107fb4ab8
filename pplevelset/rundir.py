"""Run directories, written atomically: a temporary sibling folder renamed into place at the end.

An interrupted run leaves no half-written result, and an existing result is replaced only when
the caller says ``overwrite`` (and only once the new one is complete).
"""

from __future__ import annotations

import contextlib
import json
import os
import math
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from pplevelset.errors import UserInputError


def check_writable(out: str | Path, overwrite: bool) -> Path:
    """Fail early (before any sampling) if ``out`` exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserInputError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{out} exists and is not a directory")
    return out


@contextlib.contextmanager
def atomic_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it becomes ``out``, on error it is removed."""
    out = check_writable(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    mask = os.umask(0)
    os.umask(mask)
    tmp.chmod(0o777 & ~mask)  # mkdtemp makes it private; the result should look like any folder
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            out.replace(old / out.name)
            tmp.replace(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.replace(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: Path, data: dict) -> None:
    """JSON with non-finite numbers written as null (strict JSON has no NaN)."""
    path.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def save_run(posterior, out: str | Path, keep: int = 64, seed: int = 0, overwrite: bool = False) -> dict:
    """Write ``summary.json``, ``posterior.nc``, ``samples.png`` and ``trace.png`` into ``out``."""
    from pplevelset.plotting import diagnostics_figure, samples_figure, save_figure

    summary = posterior.summary(keep=keep, seed=seed)
    kept = posterior.resample(keep, seed)
    with atomic_directory(out, overwrite) as tmp:
        write_json(tmp / "summary.json", summary)
        posterior.to_arviz().to_netcdf(str(tmp / "posterior.nc"))
        save_figure(samples_figure(posterior, kept), tmp / "samples.png")
        save_figure(diagnostics_figure(posterior), tmp / "trace.png")
    return summary
