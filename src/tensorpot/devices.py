"""Torch devices named by the user, checked before any work is done."""

from __future__ import annotations

import torch

from tensorpot.errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device ``name`` names, if this machine has it.

    Raises:
        ConfigError: for a name torch does not know, or a CUDA or MPS device this machine (or
            this build of torch) does not have; the message says which devices there are.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device {str(name)!r} is not a torch device ({err})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {str(name)!r}: CUDA is not available here (torch {torch.__version__}, "
                "no GPU or a CPU-only build); use device 'cpu'"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {str(name)!r}: this machine has {count} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {str(name)!r}: MPS is not available here; use device 'cpu'")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device {str(name)!r}: tensorpot runs on 'cpu', 'cuda' or 'mps'")
    return device
