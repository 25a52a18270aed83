"""FreeCG (Shao et al., ICLR 2025): ViSNet with the CG transform on abstract edges.

The paper's name for :class:`~tensorpot.models.visnet.ViSNet` with ``freecg: true``; the model
and every key are ViSNet's (:mod:`tensorpot.models.visnet`), the FreeCG keys on by default.
"""

from __future__ import annotations

from typing import Literal

from tensorpot.models.registry import ModelFamily
from tensorpot.models.visnet import ViSNet, ViSNetConfig


class FreeCGConfig(ViSNetConfig):
    """:class:`ViSNetConfig` with FreeCG's layer on (``freecg`` cannot be turned off here:
    that model is ``model: visnet``)."""

    model: Literal["freecg"] = "freecg"
    freecg: Literal[True] = True


FAMILY = ModelFamily(name="freecg", config=FreeCGConfig, model=ViSNet)
