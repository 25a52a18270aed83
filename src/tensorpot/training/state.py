"""The optimisation state of a training run: everything a checkpoint holds that changes.

Adam or AdamW (``optimizer``) with weight decay only on the parameters the family names
(``Potential.WEIGHT_DECAY``), the optional linear lr warm-up, ReduceLROnPlateau, EMA, the
optional energy-loss smoothing, the stage-two switch and its loss weights.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from tensorpot.config import RunConfig
from tensorpot.models import Potential
from tensorpot.training.ema import ExponentialMovingAverage
from tensorpot.training.loss import EnergyLossSmoothing, LossWeights

logger = logging.getLogger("tensorpot.training")


def loss_weights(config: RunConfig, stage_two: bool) -> LossWeights:
    """The loss weights of the current training stage."""
    energy = config.stage_two_energy_weight if stage_two else config.energy_weight
    forces = config.stage_two_forces_weight if stage_two else config.forces_weight
    return LossWeights(
        energy, forces, config.stress_weight, config.virials_weight, config.dipole_weight,
        config.polarizability_weight, dict(config.property_weights),
    )  # fmt: skip


def parameter_groups(model: Potential, weight_decay: float) -> list[dict[str, Any]]:
    """Adam/AdamW parameter groups: ``decay`` (the parameters the family's ``WEIGHT_DECAY`` matches)
    and ``no_decay``."""
    pattern = re.compile(model.WEIGHT_DECAY) if model.WEIGHT_DECAY else None
    decay, other = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if pattern and pattern.match(name) else other).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": other, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def plateau_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig) -> ReduceLROnPlateau:
    """ReduceLROnPlateau on the validation loss with the run's factor, patience and min_lr."""
    return ReduceLROnPlateau(
        optimizer,
        factor=config.lr_factor,
        patience=config.scheduler_patience,
        min_lr=config.min_lr,
    )


@dataclass
class TrainingState:
    """Everything that changes during training and goes into a checkpoint.

    ``step`` counts the optimiser steps of the run (the lr warm-up's clock);
    ``energy_smoothing`` holds the chains of the smoothed energy loss (None: off).
    """

    model: Potential
    optimizer: torch.optim.Optimizer
    scheduler: ReduceLROnPlateau
    ema: ExponentialMovingAverage | None
    config: RunConfig
    epoch: int = 0
    best_valid_loss: float = math.inf
    stage_two: bool = False
    step: int = 0
    energy_smoothing: EnergyLossSmoothing | None = None

    @property
    def lr(self) -> float:
        """The current learning rate (of the first parameter group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def warm_up(self, config: RunConfig) -> None:
        """Before optimiser step ``self.step``: during the warm-up, set the lr of every group to
        lr * (step + 1) / lr_warmup_steps (lr of the current stage); afterwards leave it alone.

        As in torchmd-net-style training codes, the warm-up overrides the lr while it lasts, also a
        reduction by the plateau scheduler in between; its last step sets the full lr.
        """
        if self.step >= config.lr_warmup_steps:
            return
        lr = config.stage_two_lr if self.stage_two else config.lr
        scale = min(1.0, (self.step + 1) / config.lr_warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * scale

    def maybe_start_stage_two(self, epoch: int, config: RunConfig) -> None:
        """Before ``epoch``: switch to the stage-two weights and lr once it is time.

        The best validation loss is reset (stage-two losses are not comparable with stage
        one's), and so is the plateau scheduler.
        """
        if self.stage_two or not config.stage_two or epoch <= config.stage_two_start:
            return
        logger.info("stage two from epoch %d: lr %g", epoch, config.stage_two_lr)
        self.stage_two = True
        for group in self.optimizer.param_groups:
            group["lr"] = config.stage_two_lr
        self.scheduler = plateau_scheduler(self.optimizer, config)
        self.best_valid_loss = math.inf

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint fields of this state (tensors and plain data)."""
        return {
            "epoch": self.epoch,
            "best_valid_loss": float(self.best_valid_loss),
            "stage_two": self.stage_two,
            "step": self.step,
            "energy_smoothing": (
                None if self.energy_smoothing is None else self.energy_smoothing.state_dict()
            ),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "model_config": self.model.config.model_dump(mode="json"),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
        }

    def load(self, checkpoint: dict[str, Any]) -> None:
        """Restore from a checkpoint written from :meth:`state_dict`."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.ema is not None and checkpoint.get("ema") is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        self.epoch = int(checkpoint["epoch"])
        self.best_valid_loss = float(checkpoint["best_valid_loss"])
        self.stage_two = bool(checkpoint["stage_two"])
        self.step = int(checkpoint.get("step", 0))  # absent before lr_warmup_steps existed
        if self.energy_smoothing is not None and checkpoint.get("energy_smoothing") is not None:
            self.energy_smoothing.load_state_dict(checkpoint["energy_smoothing"])


def make_state(model: Potential, config: RunConfig) -> TrainingState:
    """A fresh training state: optimiser, scheduler, EMA and energy-loss smoothing for
    ``model``."""
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    groups = parameter_groups(model, config.weight_decay)  # each group sets its weight decay
    optimizer = kind(groups, lr=config.lr, amsgrad=config.amsgrad)
    scheduler = plateau_scheduler(optimizer, config)
    ema = ExponentialMovingAverage(model.parameters(), config.ema_decay) if config.ema else None
    factor = config.energy_loss_smoothing
    smoothing = None if factor is None else EnergyLossSmoothing(factor)
    return TrainingState(model, optimizer, scheduler, ema, config, energy_smoothing=smoothing)
