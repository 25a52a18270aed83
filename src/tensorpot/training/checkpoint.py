"""Training checkpoints: the full state of a run, written atomically, read without pickled code.

A checkpoint is a ``torch.save`` of plain data (tensors, numbers, strings, lists and dicts):
``{"format": "tensorpot-checkpoint", "format_version": 1, "epoch", "model", "optimizer",
"scheduler", "ema", "best_valid_loss", "rng", "run_config", "model_config", ...}``. It is written
to a temporary file in the target folder, flushed and fsynced, then renamed over the target, so
a crash mid-write leaves the previous file intact. Loading uses ``torch.load(weights_only=True)``.
Periodic checkpoints are named ``<name>_epoch-<N>.pt``; only the newest one is kept.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tensorpot.errors import TensorPotError
from tensorpot.files import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_torch_save",
    "checkpoint_path",
    "get_rng_state",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
    "set_rng_state",
]

CHECKPOINT_FORMAT = "tensorpot-checkpoint"
CHECKPOINT_VERSION = 1
_PATTERN = re.compile(r"^(?P<name>.+)_epoch-(?P<epoch>\d+)\.pt$")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` through a temporary file in the same folder and a rename.

    On any failure the temporary file is removed and an existing ``path`` is left untouched.
    """
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch CPU random states as tensors and plain lists."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (global)
    return {
        "python": {"version": version, "state": list(mt_state), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random states saved by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state(  # noqa: NPY002 (restores the legacy global state)
        (npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])


def checkpoint_path(folder: str | os.PathLike, name: str, epoch: int) -> Path:
    """The path of the periodic checkpoint of ``name`` after ``epoch`` epochs."""
    return Path(folder) / f"{name}_epoch-{epoch}.pt"


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every periodic checkpoint in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _PATTERN.match(entry.name)
        if match and entry.is_file():
            found.append((int(match["epoch"]), entry))
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest periodic checkpoint in ``folder`` (by epoch), or None."""
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def prune_checkpoints(folder: str | os.PathLike, keep: str | os.PathLike) -> None:
    """Delete every periodic checkpoint in ``folder`` except ``keep``."""
    keep = Path(keep).resolve()
    for _, path in list_checkpoints(folder):
        if path.resolve() != keep:
            path.unlink(missing_ok=True)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a training state (plain data) atomically, tagged with the checkpoint format."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        TensorPotError: the file is missing, not loadable, or not a tensorpot checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise TensorPotError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # refused by the safe unpickler, truncated, not a torch file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TensorPotError(f"{path}: not a loadable checkpoint ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise TensorPotError(f"{path}: not a tensorpot checkpoint")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise TensorPotError(f"{path}: unsupported checkpoint version {payload['format_version']}")
    return payload
