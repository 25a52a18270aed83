"""Per-element reference energies (E0s) and the energy shift / force scale of a data set.

Isolated-atom frames are recognised by :func:`is_isolated_atom`. They define E0s for
``"isolated"`` and are left out of the least-squares fit and of the shift and scale,
because a model is not trained to reproduce them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from ase.data import atomic_numbers as symbol_to_number
from ase.data import chemical_symbols

from tensorpot.data.configuration import LABELS, Configuration
from tensorpot.errors import ConfigError, DataError

__all__ = [
    "fit_e0s_average",
    "is_isolated_atom",
    "isolated_atom_energies",
    "label_counts",
    "mean_per_atom_residual_and_force_rms",
    "resolve_e0s",
]

#: Two E0s of the same element that differ by more than this (eV) are a conflict.
_E0_TOLERANCE = 1e-6


def _label(z: int) -> str:
    return f"{chemical_symbols[z]} (Z={z})" if 0 < z < len(chemical_symbols) else f"Z={z}"


def is_isolated_atom(config: Configuration) -> bool:
    """Whether a frame is an isolated-atom reference.

    True if its config_type is IsolatedAtom (any case, with or without ``_``/``-``, so
    ``isolated_atom`` counts), or if it has no config_type ("Default"), a single atom and
    no periodicity (as in the 3BPA ``iso_atoms.xyz``, which carries no config_type).
    """
    label = config.config_type.replace("_", "").replace("-", "").replace(" ", "").lower()
    if label == "isolatedatom":
        return True
    return config.config_type == "Default" and config.n_atoms == 1 and not config.pbc.any()


def label_counts(configs: Iterable[Configuration]) -> dict[str, int]:
    """How many frames carry each label: ``{name: count}``.

    Names as in :meth:`Configuration.label_names`: every name of :data:`LABELS` (0 when no
    frame has it), then ``"property:<name>"`` for every property some frame has, in sorted
    order. A model head whose label counts 0 over the training frames has nothing to learn.
    The total charge is not counted: every frame has one (0 by default).
    """
    counts = dict.fromkeys(LABELS, 0)
    properties: dict[str, int] = {}
    for config in configs:
        for name in config.label_names():
            table = counts if name in counts else properties
            table[name] = table.get(name, 0) + 1
    return counts | dict(sorted(properties.items()))


def isolated_atom_energies(configs: Iterable[Configuration]) -> dict[int, float]:
    """Return ``{Z: energy}`` from the isolated-atom frames (see :func:`is_isolated_atom`).

    Raises:
        DataError: if a frame labelled IsolatedAtom has more than one atom or no energy, or
            two frames of one element disagree by more than 1e-6 eV.
    """
    e0s: dict[int, float] = {}
    for config in configs:
        if not is_isolated_atom(config):
            continue
        if config.n_atoms != 1:
            raise config.error(f"IsolatedAtom frame has {config.n_atoms} atoms, expected 1")
        if config.energy is None:
            raise config.error("IsolatedAtom frame has no energy")
        z = int(config.numbers[0])
        if z in e0s and abs(e0s[z] - config.energy) > _E0_TOLERANCE:
            raise config.error(
                f"isolated-atom energy of {_label(z)} is {config.energy} eV here "
                f"but {e0s[z]} eV in an earlier frame"
            )
        e0s.setdefault(z, config.energy)
    return e0s


def _composition(configs: Sequence[Configuration], atomic_numbers: Sequence[int]) -> np.ndarray:
    """Counts matrix [configs, elements]; raises DataError for an element not listed."""
    column = {int(z): k for k, z in enumerate(atomic_numbers)}
    counts = np.zeros((len(configs), len(column)))
    for row, config in enumerate(configs):
        zs, n = np.unique(config.numbers, return_counts=True)
        for z, count in zip(zs, n, strict=True):
            if int(z) not in column:
                raise config.error(f"element {_label(int(z))} is not in the model's elements")
            counts[row, column[int(z)]] = count
    return counts


def fit_e0s_average(
    configs: Iterable[Configuration], atomic_numbers: Sequence[int]
) -> dict[int, float]:
    """Fit E0s by least squares, ``E_i ~ sum_Z n_iZ E0_Z``, over frames with an energy.

    Isolated-atom frames are excluded. ``numpy.linalg.lstsq`` with its default rcond
    (machine precision times the matrix size) returns the minimum-norm solution when the
    counts matrix is rank deficient. In particular, if every frame has the same
    composition (one molecule), only ``sum_Z n_Z E0_Z`` is determined, and the split
    between elements is the minimum-norm one, ``E0 = n * mean(E) / (n . n)``.

    Args:
        configs: the training configurations.
        atomic_numbers: the elements to fit.

    Returns:
        ``{Z: E0}`` in eV for every element of ``atomic_numbers``.

    Raises:
        DataError: if there is no frame with an energy, a frame has an element outside
            ``atomic_numbers``, or an element of ``atomic_numbers`` never occurs.
    """
    used = [c for c in configs if c.energy is not None and not is_isolated_atom(c)]
    if not used:
        raise DataError("no configurations with an energy to fit E0s on (average)")
    zs = [int(z) for z in atomic_numbers]
    counts = _composition(used, zs)
    absent = [z for z, total in zip(zs, counts.sum(axis=0), strict=True) if total == 0]
    if absent:
        names = ", ".join(_label(z) for z in absent)
        raise DataError(f"cannot fit E0 (average): no training configuration contains {names}")
    energies = np.array([c.energy for c in used])
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {z: float(e) for z, e in zip(zs, solution, strict=True)}


def _symbol_or_number(key: object) -> int:
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return int(key)
    if isinstance(key, str):
        text = key.strip()
        if text.isdigit():
            return int(text)
        if text in symbol_to_number:
            return symbol_to_number[text]
    raise ConfigError(f"E0s key {key!r} is neither an atomic number nor an element symbol")


def resolve_e0s(
    spec: Mapping[object, float] | str | None,
    train_configs: Iterable[Configuration],
    atomic_numbers: Sequence[int],
) -> dict[int, float]:
    """Turn an E0 specification into ``{Z: E0}`` (eV) for every model element.

    Args:
        spec: a mapping ``{Z or symbol: E0}``; ``"average"`` (least-squares fit, see
            :func:`fit_e0s_average`); ``"isolated"`` (IsolatedAtom frames of the
            training set); or None (all zeros).
        train_configs: the training configurations.
        atomic_numbers: the model's elements.

    Returns:
        ``{Z: E0}`` for exactly the elements of ``atomic_numbers``.

    Raises:
        DataError: if an element has no E0 (or a non-finite one).
        ConfigError: for an unknown spec string or a bad mapping key.
    """
    zs = [int(z) for z in atomic_numbers]
    if spec is None:
        return dict.fromkeys(zs, 0.0)
    if isinstance(spec, str):
        mode = spec.strip().lower()
        if mode == "average":
            return fit_e0s_average(train_configs, zs)
        if mode == "isolated":
            given = isolated_atom_energies(train_configs)
            where = "in the IsolatedAtom frames of the training set"
        else:
            raise ConfigError(f"E0s must be a mapping, 'average', 'isolated' or None; got {spec!r}")
    elif isinstance(spec, Mapping):
        given = {_symbol_or_number(k): v for k, v in spec.items()}
        where = "in the given E0s"
    else:
        raise ConfigError(f"E0s must be a mapping, 'average', 'isolated' or None; got {spec!r}")
    missing = [z for z in zs if z not in given]
    if missing:
        raise DataError(f"no E0 for {', '.join(_label(z) for z in missing)} {where}")
    e0s = {}
    for z in zs:
        try:
            value = float(given[z])
        except (TypeError, ValueError) as exc:
            raise DataError(f"E0 of {_label(z)} is not a number: {given[z]!r}") from exc
        if not np.isfinite(value):
            raise DataError(f"E0 of {_label(z)} is {value}")
        e0s[z] = value
    return e0s


def mean_per_atom_residual_and_force_rms(
    configs: Iterable[Configuration], e0s: Mapping[int, float]
) -> tuple[float, float]:
    """Return ``(shift, scale)`` for a model's output: mean residual energy and force RMS.

    ``shift`` is the mean over frames with an energy of ``(E - sum_i E0_{Z_i}) / N``, eV
    per atom; ``scale`` is the root mean square of all force components, eV/Å.
    Isolated-atom frames are excluded from both.

    Raises:
        DataError: if no frame has an energy or forces, an element has no E0, or every
            force component is zero.
    """
    residuals: list[float] = []
    squares, components = 0.0, 0
    for config in configs:
        if is_isolated_atom(config):
            continue
        if config.energy is not None:
            try:
                reference = sum(e0s[int(z)] for z in config.numbers)
            except KeyError as exc:
                raise config.error(f"no E0 for {_label(int(exc.args[0]))}") from exc
            residuals.append((config.energy - reference) / config.n_atoms)
        if config.forces is not None:
            squares += float(np.sum(config.forces**2))
            components += config.forces.size
    if not residuals:
        raise DataError("no configurations with an energy to compute the energy shift")
    if components == 0:
        raise DataError("no configurations with forces to compute the force scale")
    scale = float(np.sqrt(squares / components))
    if scale == 0.0:
        raise DataError("every force component is zero; the force RMS cannot be a scale")
    return float(np.mean(residuals)), scale
