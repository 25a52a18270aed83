"""Starting a run from a model file (``init_model``): fine-tuning, or a run whose checkpoints
are lost continued from its last model.

The new run takes the file's model mapping (architecture and the statistics computed from its
training data: E0s, scale, shift, average neighbour count) and its weights; the optimiser, EMA
and learning-rate schedule start afresh. A key the run's ``model`` mapping gives explicitly
must agree with the file's, so that a config that asks for another model is refused rather
than silently replaced.
"""

from __future__ import annotations

from typing import Any

import torch

from tensorpot.config import RunConfig
from tensorpot.errors import ConfigError
from tensorpot.models.build import validate_model_config
from tensorpot.models.io import read_model_file

__all__ = ["initial_model"]


def initial_model(config: RunConfig) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The model mapping and the weights of ``config.init_model``.

    Raises:
        TensorPotError: the file is missing or no intact tensorpot model (naming it).
        ConfigError: a key of the run's ``model`` mapping differs from the file's (naming both
            values).
    """
    path = config.init_model
    payload = read_model_file(path)
    saved = validate_model_config(payload["config"]).model_dump(mode="json")
    given = config.model if "model" in config.model_fields_set else {}  # not the default
    if given.get("model", saved["model"]) != saved["model"]:
        raise ConfigError(
            f"init_model {path} is a {saved['model']!r} model, the config's model asks for "
            f"{given['model']!r}"
        )
    asked = validate_model_config({**saved, **given}).model_dump(mode="json")
    differ = [k for k in given if k in saved and asked[k] != saved[k]]
    if differ:
        listed = ", ".join(
            f"{k}: {saved[k]!r} in the file, {asked[k]!r} in the config" for k in differ
        )
        raise ConfigError(f"init_model {path} does not match the config's model ({listed})")
    return payload["config"], payload["state_dict"]
