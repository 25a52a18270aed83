"""Model families by name: every module of :mod:`tensorpot.models` that defines ``FAMILY``.

A new family is one new module here with its config class and its model class, and a
``FAMILY = ModelFamily(...)`` line: nothing else is edited.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import NamedTuple


class ModelFamily(NamedTuple):
    """A model family: its ``model:`` name, its pydantic config class and its module class."""

    name: str
    config: type
    model: type


@lru_cache(maxsize=1)
def model_families() -> dict[str, ModelFamily]:
    """``{name: ModelFamily}`` found by scanning the modules of :mod:`tensorpot.models`."""
    import tensorpot.models as package

    families: dict[str, ModelFamily] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, ModelFamily):
            families[family.name] = family
    return families
