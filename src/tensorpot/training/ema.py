r"""Exponential moving average (EMA) of model parameters.

After the ``n``-th optimiser step (``n = 1, 2, ...``) every averaged parameter is updated as

.. math::

    \bar\theta \leftarrow d_n \bar\theta + (1 - d_n)\,\theta, \qquad
    d_n = \min\Big(d, \frac{1 + n}{10 + n}\Big)

so early averages are not dominated by the random initial weights (the warm-up).
:meth:`ExponentialMovingAverage.average_parameters` swaps the averages into the model for
validation and saving, and restores the trained weights afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ExponentialMovingAverage"]


class ExponentialMovingAverage:
    """An EMA of a fixed list of parameters.

    Args:
        parameters: the parameters to average (held by reference; their order is the order of
            the state).
        decay: the largest decay ``d`` in ``[0, 1)``.
    """

    def __init__(self, parameters: Iterable[nn.Parameter], decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.parameters = list(parameters)
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in self.parameters]
        self._backup: list[Tensor] | None = None

    def current_decay(self) -> float:
        """The decay ``d_n`` the next :meth:`update` will use."""
        n = self.num_updates + 1
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self) -> None:
        """Move the averages towards the current parameters (call after each optimiser step)."""
        decay = self.current_decay()
        self.num_updates += 1
        for avg, param in zip(self.shadow, self.parameters, strict=True):
            avg.lerp_(param.detach(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self) -> None:
        """Overwrite the parameters with their averages."""
        for avg, param in zip(self.shadow, self.parameters, strict=True):
            param.copy_(avg)

    @contextmanager
    def average_parameters(self) -> Iterator[None]:
        """Within the block the parameters hold their averages; the trained ones come back."""
        if self._backup is not None:
            raise RuntimeError("average_parameters is already active")
        self._backup = [p.detach().clone() for p in self.parameters]
        try:
            self.copy_to()
            yield
        finally:
            with torch.no_grad():
                for saved, param in zip(self._backup, self.parameters, strict=True):
                    param.copy_(saved)
            self._backup = None

    def state_dict(self) -> dict[str, Any]:
        """Decay, number of updates and the averages (tensors and numbers only)."""
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": [t.clone() for t in self.shadow],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` made for parameters of the same shapes.

        Raises:
            ValueError: if the number or the shapes of the averages disagree.
        """
        shadow = list(state["shadow"])
        if len(shadow) != len(self.parameters):
            raise ValueError(f"EMA state has {len(shadow)} tensors for {len(self.parameters)}")
        for saved, param in zip(shadow, self.parameters, strict=True):
            if saved.shape != param.shape:
                raise ValueError(f"EMA state shape {tuple(saved.shape)} != {tuple(param.shape)}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        self.shadow = [
            t.detach().to(dtype=p.dtype, device=p.device).clone()
            for t, p in zip(shadow, self.parameters, strict=True)
        ]
