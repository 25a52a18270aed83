"""Saving and loading models without pickled code.

A model file is a ``torch.save`` of plain data: ``{"format": "tensorpot-model",
"format_version": 1, "config": <JSON-able dict>, "state_dict": ..., "metadata": ...}``. Loading uses
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers, then
rebuilds the model from its config through :func:`tensorpot.build_model`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

import tensorpot
from tensorpot.errors import TensorPotError
from tensorpot.files import atomic_write
from tensorpot.models.base import Potential
from tensorpot.models.build import build_model

FORMAT = "tensorpot-model"
FORMAT_VERSION = 1


def save_model(
    model: Potential,
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file, then rename).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": {"tensorpot_version": tensorpot.__version__, **(metadata or {})},
    }
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload of a model file, checked for format; never runs code from the file."""
    path = Path(path)
    if not path.is_file():
        raise TensorPotError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or not a torch file
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        refused = [line for line in lines if "Unsupported global" in line]
        reason = refused[0] if refused else (lines[0] if lines else type(err).__name__)
        raise TensorPotError(
            f"{path}: refused, not a plain-data tensorpot model file ({reason})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TensorPotError(f"{path}: not a tensorpot model file")
    if payload.get("format_version") != FORMAT_VERSION:
        raise TensorPotError(f"{path}: unsupported format version {payload.get('format_version')}")
    return payload


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> Potential:
    """Load a model written by :func:`save_model`, in eval mode, on ``device``."""
    payload = read_model_file(path)
    model = build_model(payload["config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError) as err:
        first = str(err).strip().splitlines()[0]
        raise TensorPotError(
            f"{path}: weights do not fit the model its config builds ({first})"
        ) from None
    return model.to(device).eval()
