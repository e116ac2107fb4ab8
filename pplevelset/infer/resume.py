"""Checkpoints and interrupts: stop at a step boundary, save everything the next step needs, resume.

A checkpoint of a batched MCMC run (``rwmh``, ``ensemble``) is the kernel's NamedTuple state, its
adaptation state, the ``torch.Generator``'s state, the traces recorded so far and the loop's
position: restoring them continues the same random stream, so a resumed run is bit for bit the run
that was never interrupted. :class:`Checkpoints` tells :func:`pplevelset.infer.mcmc.run_mcmc` where
and how often to save (every ``every_steps`` steps or ``every_seconds`` seconds, whichever comes
first) and when to stop; :class:`stop_on_signals` turns SIGINT and SIGTERM into a stop request
for the duration of a run and restores the previous handlers afterwards.

NUTS (Pyro's sampler keeps its adaptation and tree state inside ``pyro.infer.MCMC``) and SMC (its
state changes once per temperature, and a whole SMC run is short next to an MCMC run of the same
particles) do not resume: on a signal they stop at once, with nothing saved.

The checkpoint file holds tensors, numbers, strings and lists only, read with
``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pplevelset.errors import UserInputError
from pplevelset.files import atomic_write, write_json

CHECKPOINT = "checkpoint.pt"
SETTINGS = "checkpoint.json"
RESUMABLE_KERNELS = ("rwmh", "ensemble")
WHY_NOT = {
    "nuts": "Pyro's NUTS keeps its adaptation and tree state inside pyro.infer.MCMC",
    "smc": "tempered SMC is not checkpointed (a run is a few temperatures; its state changes per temperature)",
}
FORMAT = 2  # 2: the ensemble state holds five move scales (the Student-t move joined)


class RunInterrupted(KeyboardInterrupt):
    """A run stopped on SIGINT or SIGTERM. ``checkpoint`` is the folder to resume from (``None``
    when nothing was saved), ``step`` the steps completed, ``signum`` the signal."""

    def __init__(
        self,
        message: str,
        signum: int = signal.SIGINT,
        checkpoint: Path | None = None,
        step: int | None = None,
        total: int | None = None,
    ):
        super().__init__(message)
        self.message, self.signum, self.checkpoint, self.step, self.total = message, signum, checkpoint, step, total

    def __str__(self) -> str:
        return self.message


@dataclass
class Checkpoints:
    """Where and how often a run saves itself, and whether it should stop now.

    :param folder: the checkpoint folder (``checkpoint.pt`` + ``checkpoint.json``).
    :param settings: the run's settings; a resumed run must have the same.
    :param every_steps: save after every this many steps (``None``: no step cadence).
    :param every_seconds: save when this many seconds passed since the last save (``None``: none).
    :param resume: a payload from :func:`load` to continue from.
    :param stop: the interrupt flag (a :class:`stop_on_signals`), or ``None``.
    """

    folder: Path
    settings: dict
    every_steps: int | None = None
    every_seconds: float | None = 60.0
    resume: dict | None = None
    stop: stop_on_signals | None = None
    saved: int = 0  # checkpoints written by this process
    _last: float = field(default_factory=time.monotonic)

    def due(self, completed: int) -> bool:
        if self.every_steps and completed % self.every_steps == 0:
            return True
        return self.every_seconds is not None and time.monotonic() - self._last >= self.every_seconds

    def should_stop(self) -> bool:
        return self.stop is not None and self.stop.requested is not None

    def save(self, payload: dict) -> None:
        """Write ``payload`` (plain containers of tensors and numbers) atomically."""
        buffer = io.BytesIO()
        torch.save({"format": FORMAT, **payload}, buffer)
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(
            self.folder / SETTINGS,
            {
                "format": FORMAT,
                "settings": self.settings,
                "completed": payload.get("completed"),
                "total": payload.get("total"),
            },
        )
        atomic_write(self.folder / CHECKPOINT, buffer.getvalue())
        self.saved += 1
        self._last = time.monotonic()

    def interrupted(self, completed: int, total: int) -> RunInterrupted:
        signum = self.stop.requested if self.stop is not None and self.stop.requested else signal.SIGINT
        return RunInterrupted(f"stopped at step {completed} of {total}", signum, self.folder, completed, total)


def load(folder: str | Path, settings: dict | None = None) -> dict:
    """The payload saved in ``folder``; with ``settings``, refuse one saved by a different run."""
    folder = Path(folder)
    path = folder / CHECKPOINT
    if not path.is_file():
        raise UserInputError(f"{folder} holds no checkpoint ({CHECKPOINT} is missing)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        saved = json.loads((folder / SETTINGS).read_text())["settings"]
    except Exception as exc:
        raise UserInputError(f"cannot read the checkpoint in {folder}: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserInputError(f"the checkpoint in {folder} is not one this version of pplevelset wrote")
    if settings is not None:
        differ = [
            key for key in sorted(set(settings) | set(saved)) if _plain(settings.get(key)) != _plain(saved.get(key))
        ]
        if differ:
            key = differ[0]
            raise UserInputError(
                f"the checkpoint in {folder} is of a run with {key} = {saved.get(key)!r}, "
                f"not {settings.get(key)!r}; resume with the settings it was started with"
            )
    payload["settings"] = saved
    return payload


def saved_settings(folder: str | Path) -> dict:
    """The settings recorded with the checkpoint in ``folder``."""
    try:
        return json.loads((Path(folder) / SETTINGS).read_text())["settings"]
    except Exception:
        raise UserInputError(f"{folder} holds no readable checkpoint ({SETTINGS})") from None


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class stop_on_signals:
    """Turn SIGINT and SIGTERM into a stop request while the block runs; restore the old handlers.

    ``deferred`` (default): the first signal only sets :attr:`requested` (the signal number),
    checked at step boundaries; a second one raises :class:`RunInterrupted` at once. With
    ``deferred=False`` the first signal raises at once (kernels that cannot checkpoint). Outside
    the main thread, where Python cannot install handlers, this does nothing.
    """

    def __init__(self, deferred: bool = True):
        self.deferred = deferred
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.deferred and self.requested is None:
            self.requested = signum
            return
        self.requested = signum
        raise RunInterrupted("interrupted", signum)

    def __enter__(self) -> stop_on_signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def describe_signal(signum: int) -> str:
    names = {int(signal.SIGINT): "interrupted (SIGINT)", int(signal.SIGTERM): "terminated (SIGTERM)"}
    return names.get(signum, f"signal {signum}")
