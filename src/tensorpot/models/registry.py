"""Model families by name: every module of :mod:`tensorpot.models` that defines ``FAMILY``.

A new family is one new module here with its config class and its model class, and a
``FAMILY = ModelFamily(...)`` line: nothing else is edited. A family defined elsewhere (a
plugin, a test) is added with :func:`register_family`.

What the rest of tensorpot needs to know of a family it reads from these classes, never from
the family's name: the config (a :class:`~tensorpot.models.config.PotentialConfig`) says which
data statistics it takes (a field named like one of the training set-up's statistics, such as
``avg_num_neighbors``, is filled from the training set), the model class which parameters get
weight decay (``Potential.WEIGHT_DECAY``).
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


#: the family of a ``model:`` mapping that names none
DEFAULT_FAMILY = "ictp"


@lru_cache(maxsize=1)
def _scanned() -> dict[str, ModelFamily]:
    import tensorpot.models as package

    families: dict[str, ModelFamily] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if isinstance(family, ModelFamily):
            families[family.name] = family
    return families


_registered: dict[str, ModelFamily] = {}


def model_families() -> dict[str, ModelFamily]:
    """``{name: ModelFamily}``: the modules of :mod:`tensorpot.models` that define ``FAMILY``,
    and those added with :func:`register_family`."""
    return {**_scanned(), **_registered}


def register_family(family: ModelFamily) -> None:
    """Make ``family`` buildable by name (``build_model({"model": family.name, ...})``).

    Raises:
        ValueError: a family of that name exists.
    """
    if family.name in model_families():
        raise ValueError(f"a model family named {family.name!r} exists")
    _registered[family.name] = family


def unregister_family(name: str) -> None:
    """Remove a family added with :func:`register_family` (no-op for others)."""
    _registered.pop(name, None)
