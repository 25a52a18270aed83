"""Stability of a simulation: bond lengths against a reference, and radial distribution functions.

The criteria are those of the "Forces are not enough" MD benchmark (Fu et al., code MDsim),
which the FreeCG paper's MD study follows:

* molecules: the run has collapsed at the first time any bonded distance deviates by more than
  0.5 Å from its reference mean. Bonds are the pairs of the starting structure closer than the
  sum of ASE's natural cutoffs (covalent radii) plus 0.3 Å (the default skin of the
  ``ase.neighborlist.NeighborList`` MDsim builds them with); the reference mean of each bond is
  its mean length over the frames of a reference trajectory (the starting structure alone
  when none is given).
* periodic liquids: the radial distribution function g(r) of every element pair, averaged over
  windows of the run (1 ps by default); the run has collapsed at the end of the first window
  whose RDF has a mean absolute error over the bins larger than a threshold against the
  reference trajectory's RDF, for any element pair.

Distances between atoms of a periodic cell are minimum-image distances.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from ase.neighborlist import natural_cutoffs

from tensorpot.data.neighbors import neighbor_list
from tensorpot.errors import ConfigError

__all__ = [
    "BOND_DEVIATION",
    "BOND_SKIN",
    "BondMonitor",
    "BondStability",
    "RDFMonitor",
    "RDFSettings",
    "RDFStability",
    "bond_lengths",
    "find_bonds",
    "radial_distribution",
]

#: Å, the largest deviation of a bond from its reference mean in a stable run
BOND_DEVIATION = 0.5
#: Å, added to the sum of two natural cutoffs for a bond (ASE NeighborList's default skin)
BOND_SKIN = 0.3


def find_bonds(atoms: Atoms) -> np.ndarray:
    """The bonded pairs ``[B, 2]`` (i < j): atoms closer than the sum of their natural cutoffs
    (``ase.neighborlist.natural_cutoffs``) plus :data:`BOND_SKIN`, minimum-image pairs in a
    periodic cell."""
    radii = np.asarray(natural_cutoffs(atoms), dtype=np.float64)
    i, j, d = _pairs(atoms, 2 * radii.max() + BOND_SKIN)
    keep = (i < j) & (d < radii[i] + radii[j] + BOND_SKIN)
    return np.unique(np.stack([i[keep], j[keep]], axis=1), axis=0).reshape(-1, 2)


def _pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, distance)`` of every ordered pair (periodic images included) below ``cutoff``."""
    edges, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    i, j = edges
    vectors = atoms.positions[j] - atoms.positions[i] + shifts @ atoms.cell.array
    return i, j, np.linalg.norm(vectors, axis=1)


def bond_lengths(
    positions: np.ndarray, bonds: np.ndarray, cell: np.ndarray, pbc: np.ndarray
) -> np.ndarray:
    """Lengths ``[B]`` (Å) of ``bonds`` ``[B, 2]`` at ``positions`` ``[N, 3]`` (minimum image in
    the periodic directions)."""
    vectors = positions[bonds[:, 1]] - positions[bonds[:, 0]]  # [B, 3]
    if np.any(pbc):
        _, lengths = find_mic(vectors, cell, pbc)
        return np.asarray(lengths)
    return np.linalg.norm(vectors, axis=1)


@dataclass(frozen=True)
class BondStability:
    """The bond criterion's verdict on a run.

    Attributes:
        num_bonds: bonds watched.
        threshold: Å, the deviation that counts as collapse.
        max_deviation: Å, the largest ``|d - d_ref|`` of any bond at any sample (None if there
            were no bonds or no samples).
        collapse_time: ps, the first sample time at which a deviation exceeded ``threshold``;
            None if none did.
        worst_bond: the atom indices of the bond with ``max_deviation``.
    """

    num_bonds: int
    threshold: float
    max_deviation: float | None
    collapse_time: float | None
    worst_bond: tuple[int, int] | None


class BondMonitor:
    """Watches bonded distances during a run (:meth:`update` per sample).

    Args:
        start: the starting structure, whose bonds are watched.
        reference: frames of the same atoms whose mean bond lengths are the reference (None:
            the starting structure's lengths).
        threshold: Å, the deviation that counts as collapse.
    """

    def __init__(
        self,
        start: Atoms,
        reference: Sequence[Atoms] | None = None,
        threshold: float = BOND_DEVIATION,
    ):
        self.bonds = find_bonds(start)
        self.threshold = float(threshold)
        frames = reference or [start]
        lengths = [bond_lengths(a.positions, self.bonds, a.cell.array, a.pbc) for a in frames]
        self.reference = np.mean(lengths, axis=0) if len(self.bonds) else np.zeros(0)
        self._max, self._worst, self._collapse = None, None, None

    def update(self, time: float, atoms: Atoms) -> None:
        """Record the deviations of the bonds in ``atoms`` at ``time`` (ps)."""
        if not len(self.bonds):
            return
        lengths = bond_lengths(atoms.positions, self.bonds, atoms.cell.array, atoms.pbc)
        deviation = np.abs(lengths - self.reference)
        worst = int(np.argmax(deviation))
        if self._max is None or deviation[worst] > self._max:
            self._max, self._worst = float(deviation[worst]), worst
        if self._collapse is None and deviation[worst] > self.threshold:
            self._collapse = float(time)

    def result(self) -> BondStability:
        """The verdict on the samples seen so far."""
        worst = None if self._worst is None else tuple(int(k) for k in self.bonds[self._worst])
        return BondStability(len(self.bonds), self.threshold, self._max, self._collapse, worst)


def radial_distribution(atoms: Atoms, r_max: float, bins: int) -> dict[str, np.ndarray]:
    """g(r) of every element pair of a periodic structure, ``{"O-H": [bins], ...}``, and of all
    atoms (``"all"``), on ``bins`` equal bins of (0, r_max] Å.

    ``g_ab(r) = V n_ab(r) / (N_a N_b 4 pi r^2 dr)``, with ``n_ab(r)`` the ordered pairs (i of
    element a, j of b, j any periodic image but i itself) at distance r: 1 for an ideal gas.
    """
    i, j, d = _pairs(atoms, r_max)
    edges = np.linspace(0.0, r_max, bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # [bins]
    volume, symbols = atoms.cell.volume, np.array(atoms.get_chemical_symbols())
    groups = {"all": np.ones(len(atoms), dtype=bool)}
    groups.update({e: symbols == e for e in sorted(set(symbols.tolist()))})
    elements = list(groups)[1:]
    pairs = [("all", "all")] + [(a, b) for k, a in enumerate(elements) for b in elements[k:]]
    out = {}
    for a, b in pairs:
        pick = groups[a][i] & groups[b][j]  # ordered pairs, i of a and j of b
        counts = np.histogram(d[pick], bins=edges)[0].astype(np.float64)
        n_ab = groups[a].sum() * groups[b].sum()
        out["all" if a == "all" else f"{a}-{b}"] = counts * volume / (n_ab * shell)
    return out


@dataclass(frozen=True)
class RDFStability:
    """The RDF of a run and, against a reference, the RDF criterion's verdict.

    Attributes:
        r: Å, ``[bins]`` bin centres.
        rdf: ``{pair: [bins]}``, g(r) averaged over the samples after equilibration.
        start: ps, the first time averaged.
        window: ps, the length of the windows compared with the reference.
        threshold: the RDF mean absolute error that counts as collapse.
        window_errors: ``[(end time, largest MAE over the pairs), ...]`` per window, against
            the reference (empty without one).
        collapse_time: ps, the end of the first window over ``threshold``; None if none was.
    """

    r: np.ndarray
    rdf: dict[str, np.ndarray]
    start: float | None
    window: float
    threshold: float
    window_errors: list[tuple[float, float]]
    collapse_time: float | None


@dataclass(frozen=True)
class RDFSettings:
    """How the RDF of a periodic run is binned and judged.

    Attributes:
        r_max: Å, the largest distance binned.
        bins: number of bins on (0, r_max].
        window: ps, the window length of the criterion.
        threshold: the largest RDF mean absolute error of a stable window (the MDsim
            benchmark used 3.0 for water and 1.0 for LiPS).
    """

    r_max: float = 6.0
    bins: int = 300
    window: float = 1.0
    threshold: float = 1.0

    def __post_init__(self) -> None:
        for name in ("r_max", "window", "threshold", "bins"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"rdf {name} must be > 0, got {getattr(self, name)}")


class RDFMonitor:
    """Collects g(r) per sample of a periodic run (:meth:`update`), judged by :meth:`result`.

    Args:
        settings: binning, window and threshold.
        reference: frames whose mean RDF is the reference (None: no criterion).
    """

    def __init__(self, settings: RDFSettings, reference: Sequence[Atoms] | None = None):
        self.r_max, self.bins = settings.r_max, settings.bins
        self.window, self.threshold = settings.window, settings.threshold
        self.reference = None
        if reference:
            rdfs = [radial_distribution(a, self.r_max, self.bins) for a in reference]
            self.reference = _mean_rdf(rdfs)
        self._times: list[float] = []
        self._rdfs: list[dict[str, np.ndarray]] = []

    def update(self, time: float, atoms: Atoms) -> None:
        """Add the RDF of ``atoms`` at ``time`` (ps)."""
        self._times.append(float(time))
        self._rdfs.append(radial_distribution(atoms, self.r_max, self.bins))

    def result(self, start: float | None) -> RDFStability:
        """The mean RDF from ``start`` (ps) on and, with a reference, the windows' errors."""
        edges = np.linspace(0.0, self.r_max, self.bins + 1)
        times = np.array(self._times)
        kept = [g for t, g in zip(self._times, self._rdfs) if start is None or t >= start]
        errors = self._window_errors(times) if self.reference is not None else []
        collapse = next((end for end, error in errors if error > self.threshold), None)
        return RDFStability(0.5 * (edges[1:] + edges[:-1]), _mean_rdf(kept), start,
                            self.window, self.threshold, errors, collapse)  # fmt: skip

    def _window_errors(self, times: np.ndarray) -> list[tuple[float, float]]:
        """``(end, largest MAE over the pairs)`` of every window ``[t0 + k w, t0 + (k+1) w)``
        (the last one closed) that holds samples."""
        if times.size == 0:
            return []
        count = max(1, int(np.ceil((times[-1] - times[0]) / self.window - 1e-9)))
        index = np.minimum(((times - times[0]) / self.window + 1e-9).astype(int), count - 1)
        errors = []
        for k in np.unique(index):
            mean = _mean_rdf([g for g, w in zip(self._rdfs, index) if w == k])
            pairs = [p for p in mean if p in self.reference]
            worst = max(float(np.abs(mean[p] - self.reference[p]).mean()) for p in pairs)
            end = min(times[0] + (k + 1) * self.window, times[-1])
            errors.append((float(end), worst))
        return errors


def _mean_rdf(rdfs: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not rdfs:
        return {}
    return {pair: np.mean([g[pair] for g in rdfs if pair in g], axis=0) for pair in rdfs[0]}
