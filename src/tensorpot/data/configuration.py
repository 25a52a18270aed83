"""One labelled atomic structure, checked once when it is built.

Units are the internal ones: Å, eV, eV/Å, eV/Å³ for stress and eV for virials. The sign
convention is ASE's: ``stress = -virials / volume``. The molecular labels (dipole,
polarizability, named properties, total charge) keep the units of the data they were read
from; nothing converts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress
from scipy.spatial import cKDTree

from tensorpot.errors import DataError

__all__ = [
    "LABELS", "MIN_DISTANCE", "MAX_ATOMIC_NUMBER", "POLARIZABILITY_SYMMETRY_TOLERANCE",
    "PROPERTY_PREFIX", "Configuration", "Properties", "fill_stress_virials",
]  # fmt: skip

#: Two atoms closer than this (Å) are taken to be at the same position.
MIN_DISTANCE = 1e-6
#: Largest atomic number accepted (Og).
MAX_ATOMIC_NUMBER = 118
#: Smallest |cell volume| (Å³) at which stress and virials are converted into each other.
_MIN_VOLUME = 1e-8
#: Largest asymmetry of a polarizability, relative to its largest entry, taken as rounding.
POLARIZABILITY_SYMMETRY_TOLERANCE = 1e-6
#: The names of the array and number labels a frame may carry, in the order of Targets.
LABELS = ("energy", "forces", "stress", "virials", "dipole", "polarizability")
#: A named property ``U0`` is the label ``"property:U0"`` (in masks and label counts).
PROPERTY_PREFIX = "property:"
# labels whose values may come flat or in another shape with the right number of entries
_RESHAPED = ("stress", "virials", "dipole", "polarizability")


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


class Properties(Mapping[str, float]):
    """A read-only ``{name: value}`` mapping of a frame's named scalar properties.

    Unlike :class:`types.MappingProxyType` it can be pickled and deep-copied, so a
    :class:`Configuration` still can.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, float] | Iterable[tuple[str, float]] = ()):
        self._values = dict(values)

    def __getitem__(self, name: str) -> float:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Properties({self._values!r})"


@dataclass(frozen=True, eq=False)
class Configuration:
    """An atomic structure with optional labels, in eV and Å.

    Construction copies and checks every field and raises :class:`DataError` (naming
    ``source``) on a wrong shape, a non-finite value, an atomic number outside 1..118, or
    two atoms closer than :data:`MIN_DISTANCE`. The arrays are read-only afterwards.

    Attributes:
        numbers: atomic numbers, shape ``[N]``, int64.
        positions: Cartesian positions in Å, shape ``[N, 3]``.
        cell: cell vectors as rows in Å, shape ``[3, 3]`` (zeros for a molecule).
        pbc: periodicity along each cell vector, shape ``[3]``, bool.
        energy: total energy in eV, or None.
        forces: forces in eV/Å, shape ``[N, 3]``, or None.
        stress: stress in eV/Å³, shape ``[3, 3]``, or None.
        virials: virials in eV, shape ``[3, 3]``, or None.
        config_type: a label of the kind of structure ("Default" when unset).
        weight: weight of the structure in the loss (finite, >= 0).
        source: ``(file, frame)`` it was read from, for error messages.
        dipole: molecular dipole, shape ``[3]`` (3 values in any shape are accepted), in the
            data's own unit (e.g. e·Å or Debye), or None.
        polarizability: shape ``[3, 3]``, in the data's own unit, or None. Accepts 9 values
            row-major or 6 Voigt values ``xx yy zz yz xz xy``. It must be symmetric to
            :data:`POLARIZABILITY_SYMMETRY_TOLERANCE` relative to its largest entry and is
            stored as ``(a + aᵀ) / 2``, exactly symmetric.
        properties: named scalar properties (QM9-style ``U0``, ``homo``, ...), each one
            finite number in the data's own unit; read-only (:class:`Properties`).
        total_charge: net charge of the structure in units of e (finite; 0 by default).
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    virials: np.ndarray | None = None
    config_type: str = "Default"
    weight: float = 1.0
    source: tuple[str | None, int | None] = (None, None)
    dipole: np.ndarray | None = None
    polarizability: np.ndarray | None = None
    properties: Mapping[str, float] = field(default_factory=Properties)
    total_charge: float = 0.0

    def error(self, message: str) -> DataError:
        """Return a DataError about this configuration that names its file and frame."""
        return DataError(message, file=self.source[0], frame=self.source[1])

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return int(self.numbers.shape[0])

    @property
    def volume(self) -> float:
        """Absolute cell volume in Å³ (0 for a molecule without a cell)."""
        return float(abs(np.linalg.det(self.cell)))

    def structure(self) -> Atoms:
        """The structure alone as ASE ``Atoms``: numbers, positions, and the cell where the
        frame is periodic; no labels."""
        atoms = Atoms(numbers=self.numbers, positions=self.positions, pbc=self.pbc)
        if self.pbc.any():
            atoms.cell = self.cell
        return atoms

    def label_names(self) -> tuple[str, ...]:
        """The labels this frame carries: the names of :data:`LABELS` that are not None, then
        ``"property:<name>"`` for each property. Batch masks and label counts use these names."""
        present = tuple(name for name in LABELS if getattr(self, name) is not None)
        return present + tuple(PROPERTY_PREFIX + name for name in self.properties)

    def __post_init__(self) -> None:
        source = tuple(self.source)
        if len(source) != 2:
            raise DataError(f"source must be (file, frame), got {self.source!r}")
        file = None if source[0] is None else str(source[0])
        frame = None if source[1] is None else int(source[1])
        object.__setattr__(self, "source", (file, frame))
        numbers = np.array(self.numbers)
        if numbers.ndim != 1 or numbers.shape[0] == 0:
            raise self.error(f"atomic numbers must have shape [N] with N >= 1, got {numbers.shape}")
        if not np.issubdtype(numbers.dtype, np.integer):
            raise self.error(f"atomic numbers must be integers, got dtype {numbers.dtype}")
        bad = numbers[(numbers < 1) | (numbers > MAX_ATOMIC_NUMBER)]
        if bad.size:
            raise self.error(f"atomic number {int(bad[0])} is not a chemical element (1..118)")
        n = numbers.shape[0]
        object.__setattr__(self, "numbers", _frozen(numbers.astype(np.int64)))
        object.__setattr__(self, "positions", self._array("positions", self.positions, (n, 3)))
        object.__setattr__(self, "cell", self._array("cell", self.cell, (3, 3)))
        pbc = np.array(self.pbc, dtype=bool).reshape(-1)
        if pbc.shape != (3,):
            raise self.error(f"pbc must have 3 entries, got shape {pbc.shape}")
        object.__setattr__(self, "pbc", _frozen(pbc))
        shapes = (("forces", (n, 3)), ("stress", (3, 3)), ("virials", (3, 3)), ("dipole", (3,)))
        for name, shape in shapes:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, self._array(name, value, shape))
        if self.polarizability is not None:
            object.__setattr__(self, "polarizability", self._polarizability(self.polarizability))
        if self.energy is not None:
            object.__setattr__(self, "energy", self._scalar("energy", self.energy))
        weight = self._scalar("weight", self.weight)
        if weight < 0:
            raise self.error(f"weight must be >= 0, got {weight}")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "total_charge", self._scalar("total_charge", self.total_charge))
        object.__setattr__(self, "properties", self._properties(self.properties))
        object.__setattr__(self, "config_type", str(self.config_type))
        self._check_cell()
        self._check_coincident_atoms()

    def _numeric(self, name: str, value: object) -> np.ndarray:
        try:
            return np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise self.error(f"{name} is not numeric: {exc}") from exc

    def _array(self, name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
        array = self._numeric(name, value)
        if array.shape != shape:
            if array.size == int(np.prod(shape)) and name in _RESHAPED:
                array = array.reshape(shape)
            else:
                raise self.error(f"{name} must have shape {list(shape)}, got {list(array.shape)}")
        finite = np.isfinite(array)
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise self.error(f"{name} contains {array[where]} (NaN or inf) at index {where}")
        return _frozen(array)

    def _scalar(self, name: str, value: object) -> float:
        array = np.asarray(value)
        if array.size != 1 or array.dtype.kind not in "iuf":
            raise self.error(f"{name} must be one number, got {value!r}")
        number = float(array.reshape(-1)[0])
        if not np.isfinite(number):
            raise self.error(f"{name} is {number} (NaN or inf)")
        return number

    def _polarizability(self, value: object) -> np.ndarray:
        """A [3, 3] symmetric array from 9 values (row-major) or 6 Voigt values."""
        array = self._numeric("polarizability", value)
        if array.size == 6 and array.shape[-1] == 6:  # [6] or [1, 6], not [2, 3]
            array = voigt_6_to_full_3x3_stress(array.reshape(6))  # xx yy zz yz xz xy
        elif array.size != 9:
            raise self.error(
                f"polarizability must have shape [3, 3] (9 values, or 6 Voigt values "
                f"xx yy zz yz xz xy), got {list(array.shape)}"
            )
        array = self._array("polarizability", array, (3, 3))
        asymmetry = float(np.abs(array - array.T).max())
        if asymmetry > POLARIZABILITY_SYMMETRY_TOLERANCE * float(np.abs(array).max()):
            raise self.error(
                f"polarizability is not symmetric: max |a_ij - a_ji| = {asymmetry:.3g}, "
                f"max |a_ij| = {float(np.abs(array).max()):.3g}"
            )
        return _frozen((array + array.T) / 2)

    def _properties(self, values: Mapping[str, object]) -> Properties:
        if not isinstance(values, Mapping):
            raise self.error(f"properties must be a mapping {{name: value}}, got {values!r}")
        checked = {}
        for name, value in values.items():
            if not isinstance(name, str) or not name:
                raise self.error(f"property names must be non-empty strings, got {name!r}")
            checked[name] = self._scalar(f"property {name!r}", value)
        return Properties(checked)

    def _check_cell(self) -> None:
        lengths = np.linalg.norm(self.cell, axis=1)
        for axis in np.flatnonzero(self.pbc):
            if lengths[axis] == 0.0:
                raise self.error(f"periodic along cell vector {axis} but that vector is zero")
        if self.pbc.all() and self.volume < _MIN_VOLUME:
            raise self.error(f"periodic in 3 directions but the cell volume is {self.volume}")

    def _check_coincident_atoms(self) -> None:
        if self.n_atoms < 2:
            return
        pairs = cKDTree(self.positions).query_pairs(MIN_DISTANCE, output_type="ndarray")
        if len(pairs):
            i, j = sorted(int(k) for k in pairs[0])
            distance = float(np.linalg.norm(self.positions[i] - self.positions[j]))
            raise self.error(
                f"atoms {i} and {j} are at the same position "
                f"(distance {distance:.3g} Å < {MIN_DISTANCE} Å)"
            )


def fill_stress_virials(
    stress: np.ndarray | None,
    virials: np.ndarray | None,
    cell: np.ndarray,
    pbc: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Derive the missing one of stress and virials for a 3D-periodic cell.

    Uses ASE's sign convention ``stress = -virials / volume``. Nothing is derived for a
    structure that is not periodic in all three directions or has no volume.

    Args:
        stress: [3, 3] stress in eV/Å³, or None.
        virials: [3, 3] virials in eV, or None.
        cell: [3, 3] cell vectors as rows, Å.
        pbc: [3] periodicity flags.

    Returns:
        ``(stress, virials)``, each possibly still None.
    """
    if (stress is None) == (virials is None) or not np.all(pbc):
        return stress, virials
    volume = abs(float(np.linalg.det(np.asarray(cell, dtype=np.float64))))
    if volume < _MIN_VOLUME:
        return stress, virials
    if stress is None:
        return -np.asarray(virials, dtype=np.float64) / volume, virials
    return stress, -np.asarray(stress, dtype=np.float64) * volume
