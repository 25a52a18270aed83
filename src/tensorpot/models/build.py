"""``build_model``: the one constructor of every model family."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from tensorpot.errors import ConfigError
from tensorpot.models.base import Potential
from tensorpot.models.registry import model_families
from tensorpot.nn import cpu_kernel

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def validate_model_config(config: Mapping[str, Any] | BaseModel) -> BaseModel:
    """Validate a model config dict against its family's config class.

    Raises:
        ConfigError: one line naming the bad key and the problem.
    """
    if isinstance(config, BaseModel):
        return config
    if not isinstance(config, Mapping):
        raise ConfigError(f"model config must be a mapping, got {type(config).__name__}")
    families = model_families()
    name = config.get("model")
    if name not in families:
        raise ConfigError(f"model: must be one of {sorted(families)}, got {name!r}")
    try:
        return families[name].config.model_validate(dict(config))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "model"
        value = first.get("input")
        shown = "" if first["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
        more = f"; {err.error_count() - 1} more problem(s)" if err.error_count() > 1 else ""
        raise ConfigError(f"model config: {where}: {first['msg']}{shown}{more}") from None


def build_model(config: Mapping[str, Any] | BaseModel) -> Potential:
    """Build a model from its config (``{"model": "ictp", ...}`` or a config object).

    The parameters are initialised from the config's ``seed`` inside a forked RNG (the caller's
    random state is untouched), then the model is cast once to the config's ``dtype``. Its
    modules that can run the CPU kernel are told here whether to
    (:func:`tensorpot.nn.cpu_kernel.choose`: where its library builds and
    ``TENSORPOT_CPU_KERNEL`` is not ``0``); they run it on the CPU, the PyTorch operations
    on other devices.
    """
    cfg = validate_model_config(config)
    family = model_families()[cfg.model]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = family.model(cfg)
    model = model.to(DTYPES[cfg.dtype])
    cpu_kernel.choose(model)
    return model
