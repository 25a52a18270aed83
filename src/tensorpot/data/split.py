"""Deterministic train/validation splits and random subsets.

Both use ``numpy.random.default_rng(seed).permutation``; the chosen items keep their
order in the input, so the same seed and input give the same lists on every platform.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from tensorpot.errors import ConfigError, DataError

__all__ = ["split_indices", "split_train_valid", "subset_indices", "take_subset"]

T = TypeVar("T")


def split_train_valid(
    configs: Sequence[T], valid_fraction: float, seed: int
) -> tuple[list[T], list[T]]:
    """Split into a training and a validation list.

    The validation list gets ``round(valid_fraction * n)`` items, clamped to 1..n-1 so
    neither list is empty.

    Args:
        configs: the items to split (n >= 2).
        valid_fraction: fraction for validation, strictly between 0 and 1.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(train, valid)``: a partition of ``configs``, each in input order.

    Raises:
        ConfigError: if ``valid_fraction`` is not in (0, 1).
        DataError: if there are fewer than 2 items.
    """
    train, valid = split_indices(len(configs), valid_fraction, seed)
    return [configs[i] for i in train], [configs[i] for i in valid]


def split_indices(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The sorted training and validation positions of :func:`split_train_valid` for ``n``
    items (arrays, for data sets that are not lists in memory)."""
    if not 0.0 < float(valid_fraction) < 1.0:
        raise ConfigError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    if n < 2:
        raise DataError(f"need at least 2 configurations to split off validation, got {n}")
    n_valid = min(max(int(round(valid_fraction * n)), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def take_subset(configs: Sequence[T], n: int, seed: int) -> list[T]:
    """Take ``n`` items chosen at random without replacement, in input order.

    Args:
        configs: the items.
        n: how many to take, 1 <= n <= len(configs).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        The subset.

    Raises:
        ConfigError: if ``n`` is not a positive integer.
        DataError: if ``n`` exceeds the number of items.
    """
    return [configs[i] for i in subset_indices(len(configs), n, seed)]


def subset_indices(size: int, n: int, seed: int) -> np.ndarray:
    """The sorted positions :func:`take_subset` takes of ``size`` items."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"subset size must be a positive integer, got {n!r}")
    if n > size:
        raise DataError(f"asked for {n} configurations but only {size} are available")
    return np.sort(np.random.default_rng(seed).permutation(size)[:n])
