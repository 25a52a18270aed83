"""Saving and loading models without pickled code, with an integrity check.

A model file is a ``torch.save`` of plain data: ``{"format": "tensorpot-model",
"format_version": 2, "config": <JSON-able dict>, "state_dict": ..., "metadata": ...,
"checksum": "sha256:..."}``. Loading uses ``torch.load(weights_only=True)``, which refuses anything
but tensors and plain containers, then rebuilds the model from its config through
:func:`tensorpot.build_model`.

The checksum is a SHA-256 of the config and of every tensor's name, dtype, shape and bytes
(:func:`model_checksum`). ``torch.load`` does not check the data it reads, so a damaged file
(a bad disk, a broken copy) would otherwise load and predict garbage; a file whose weights do
not match its checksum is refused. Files of format 1, written before the checksum, still load,
with a warning that they cannot be verified.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import tensorpot
from tensorpot.errors import TensorPotError
from tensorpot.files import atomic_write
from tensorpot.models.base import Potential
from tensorpot.models.build import build_model

FORMAT = "tensorpot-model"
FORMAT_VERSION = 2
#: versions this reader understands; 1 has no checksum
READABLE_VERSIONS = (1, 2)


def model_checksum(config: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> str:
    """``"sha256:<hex>"`` of the config (as sorted JSON) and of every tensor, by name, with its
    dtype, shape and bytes (on the CPU, contiguous)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"


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
    config = model.config.model_dump(mode="json")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config,
        "state_dict": state,
        "metadata": {"tensorpot_version": tensorpot.__version__, **(metadata or {})},
        "checksum": model_checksum(config, state),
    }
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw payload of a model file, checked for format and checksum; never runs code from
    the file.

    Raises:
        TensorPotError: the file is missing, refused by the safe unpickler, not a tensorpot
            model, of an unknown format version, or damaged (its checksum does not match).
    """
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
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        raise TensorPotError(
            f"{path}: unsupported format version {version!r} (this tensorpot reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}; a newer tensorpot wrote it?)"
        )
    config, state = payload.get("config"), payload.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise TensorPotError(f"{path}: not a tensorpot model file (no config or weights)")
    if version == 1:
        warnings.warn(
            f"{path}: written before model files carried a checksum; its weights cannot be "
            "verified (save it again to add one)",
            UserWarning,
            stacklevel=3,
        )
    elif payload.get("checksum") != model_checksum(config, state):
        raise TensorPotError(
            f"{path}: damaged: its weights do not match the checksum written with them "
            "(a corrupted copy or disk?); use an intact copy of the file"
        )
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
