"""Find, verify (SHA-256 against the model card) and load the trained networks in ``models/``.

Each network is two files in ``models/<folder>/``: ``<name>.pt`` (a ``state_dict``) and
``<name>.json``, its model card: architecture, data, seed, the command that trained it, its
metrics and the SHA-256 of the ``.pt`` file. Loading refuses a file whose hash differs from the
card and reads weights with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import torch

from pplevelset.errors import CheckpointError
from pplevelset.files import atomic_write

_PACKAGE = Path(__file__).resolve().parent


def models_dir() -> Path:
    """``$PPLEVELSET_MODELS``, else the copy shipped in the wheel, else the source tree's ``models/``."""
    if os.environ.get("PPLEVELSET_MODELS"):
        return Path(os.environ["PPLEVELSET_MODELS"])
    shipped = _PACKAGE / "_models"
    return shipped if shipped.is_dir() else _PACKAGE.parent / "models"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _base(root: Path | None) -> Path:
    """``root`` (a trainer's ``out``) if given, else :func:`models_dir`."""
    return Path(root) if root is not None else models_dir()


def save_checkpoint(state_dict: dict, folder: str, name: str, card: dict, root: Path | None = None) -> Path:
    """Write ``<name>.pt`` and its model card (with the SHA-256 filled in); returns the card path."""
    base = _base(root)
    weights = base / folder / f"{name}.pt"
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    atomic_write(weights, buffer.getvalue())
    card = dict(card, file=weights.name, sha256=sha256_file(weights), torch_version=torch.__version__.split("+")[0])
    card_path = base / folder / f"{name}.json"
    atomic_write(card_path, (json.dumps(card, indent=2) + "\n").encode())
    return card_path


def _train_hint(train_command: str | None) -> str:
    """How to make a missing checkpoint: the command its world names, when it names one."""
    return f"`{train_command}`" if train_command else "its training command (see `pplevelset train --help`)"


def read_card(folder: str, name: str, root: Path | None = None, train_command: str | None = None) -> dict:
    """The model card of ``folder/name`` under ``root`` (default :func:`models_dir`), not yet verified."""
    path = _base(root) / folder / f"{name}.json"
    if not path.is_file():
        raise CheckpointError(f"no model card {path}; train it with {_train_hint(train_command)}")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"model card {path} is not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise CheckpointError(f"model card {path} is a JSON {type(card).__name__}, not an object")
    return card


def verify(folder: str, name: str, root: Path | None = None, train_command: str | None = None) -> dict:
    """Return the model card if ``<name>.pt`` exists and matches its SHA-256, else raise (naming
    ``train_command``, the command that makes the checkpoint, when it is missing)."""
    card = read_card(folder, name, root, train_command)
    weights = _base(root) / folder / card.get("file", f"{name}.pt")
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {weights} is missing; train it with {_train_hint(train_command)}")
    actual = sha256_file(weights)
    if actual != card.get("sha256"):
        raise CheckpointError(
            f"checkpoint {weights} is corrupted or replaced: SHA-256 {actual[:12]}... "
            f"does not match its model card ({str(card.get('sha256'))[:12]}...)"
        )
    return card


def load_state_dict(
    folder: str, name: str, root: Path | None = None, train_command: str | None = None
) -> tuple[dict, dict]:
    """Verified ``(state_dict, model_card)``; every failure is a one-line :class:`CheckpointError`.

    ``root`` reads ``root/folder`` (a trainer's ``out``) instead of :func:`models_dir`.
    """
    card = verify(folder, name, root, train_command)
    weights = _base(root) / folder / card.get("file", f"{name}.pt")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated zip, a pickle with code in it, ...
        raise CheckpointError(f"checkpoint {weights} cannot be read safely: {type(exc).__name__}") from None
    if not isinstance(state, dict) or not all(torch.is_tensor(value) for value in state.values()):
        raise CheckpointError(f"checkpoint {weights} is not a state_dict of tensors")
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"checkpoint {weights} has non-finite weights in {key!r}")
    return state, card


def load_module(
    module: torch.nn.Module, folder: str, name: str, root: Path | None = None, train_command: str | None = None
) -> tuple[torch.nn.Module, dict]:
    """Load verified weights into ``module`` (eval mode, no grad on parameters)."""
    state, card = load_state_dict(folder, name, root, train_command)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {folder}/{name} does not fit {type(module).__name__}: {first}") from None
    module.eval().requires_grad_(False)
    return module, card


def is_available(folder: str, name: str, root: Path | None = None) -> bool:
    try:
        verify(folder, name, root)
    except CheckpointError:
        return False
    return True
