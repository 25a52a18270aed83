r"""The statistics of a training set in one streaming pass, for data sets read from a store.

The same quantities as :mod:`tensorpot.data.statistics` and the training set-up compute from
a list of configurations, from sums that a pass over the samples accumulates (memory does not
grow with the data set):

- E0s by least squares, :math:`E_i \approx \sum_Z n_{iZ} E0_Z`, solved from the normal
  equations :math:`(A^\top A) x = A^\top E` (``lstsq``, so the minimum-norm solution when every
  structure has the same composition, as for the list-based fit);
- the shift, the mean of :math:`(E_i - \sum_Z n_{iZ} E0_Z)/N_i`
  :math:`= \overline{E/N} - \sum_Z E0_Z \overline{n_Z/N}`, and the scale, the RMS of all force
  components;
- the average number of neighbours (edges over atoms), the elements, the label counts, and
  mean and spread of every named property per atom and per structure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from tensorpot.data.configuration import Configuration
from tensorpot.data.dataset import Sample
from tensorpot.data.statistics import label_counts, resolve_e0s
from tensorpot.errors import DataError

__all__ = ["StreamStatistics"]

_Z = 119  # atomic numbers 0..118


class StreamStatistics:
    """Sums over the samples of a training set (:meth:`add`), and the statistics from them."""

    def __init__(self) -> None:
        self.ata = np.zeros((_Z, _Z))  # composition normal matrix (frames with an energy)
        self.aty = np.zeros(_Z)
        self.energy_frames = 0
        self.energy_per_atom = 0.0  # sum of E/N
        self.fraction = np.zeros(_Z)  # sum of n_Z/N
        self.force_squares, self.force_components = 0.0, 0
        self.edges, self.atoms, self.frames = 0, 0, 0
        self.elements: set[int] = set()
        self.counts: dict[str, int] = {}
        self.properties: dict[str, np.ndarray] = {}  # name -> [n, Σv, Σv², Σv/N, Σ(v/N)²]

    @classmethod
    def of(cls, samples: Iterable[Sample]) -> StreamStatistics:
        """The statistics of ``samples``, in one pass."""
        stats = cls()
        for sample in samples:
            stats.add(sample)
        return stats

    def add(self, sample: Sample) -> None:
        """Add one sample's contribution to the sums."""
        config, n = sample.config, sample.config.n_atoms
        counts = np.bincount(config.numbers, minlength=_Z).astype(float)
        self.elements.update(int(z) for z in np.nonzero(counts)[0])
        if config.energy is not None:
            self.ata += np.outer(counts, counts)
            self.aty += counts * config.energy
            self.energy_frames += 1
            self.energy_per_atom += config.energy / n
            self.fraction += counts / n
        if config.forces is not None:
            self.force_squares += float(np.sum(config.forces**2))
            self.force_components += config.forces.size
        self.edges += sample.graph.num_edges
        self.atoms += n
        self.frames += 1
        for name, number in label_counts([config]).items():
            self.counts[name] = self.counts.get(name, 0) + number
        for name, value in config.properties.items():
            sums = self.properties.setdefault(name, np.zeros(5))
            sums += [1.0, value, value**2, value / n, (value / n) ** 2]

    def label_counts(self) -> dict[str, int]:
        """How many structures carry each label."""
        return dict(self.counts)

    def average_num_neighbors(self) -> float:
        """Mean number of neighbours within the cutoff per atom."""
        return self.edges / max(self.atoms, 1)

    def e0s(
        self, spec: Mapping[object, float] | str | None, atomic_numbers: Sequence[int],
        isolated: Sequence[Configuration],
    ) -> dict[int, float]:  # fmt: skip
        """E0s as :func:`~tensorpot.data.statistics.resolve_e0s` gives them; ``"average"`` is
        the least-squares fit from the normal equations."""
        zs = [int(z) for z in atomic_numbers]
        if not (isinstance(spec, str) and spec.strip().lower() == "average"):
            return resolve_e0s(spec, isolated, zs)
        if self.energy_frames == 0:
            raise DataError("no configurations with an energy to fit E0s on (average)")
        absent = [z for z in zs if self.ata[z, z] == 0]
        if absent:
            raise DataError(
                f"cannot fit E0 (average): no training configuration contains Z={absent}"
            )
        solution, *_ = np.linalg.lstsq(self.ata[np.ix_(zs, zs)], self.aty[zs], rcond=None)
        return {z: float(e) for z, e in zip(zs, solution, strict=True)}

    def shift_and_scale(self, e0s: Mapping[int, float]) -> tuple[float, float]:
        """Mean residual energy per atom (eV) and force RMS (eV/Å), as
        :func:`~tensorpot.data.statistics.mean_per_atom_residual_and_force_rms`."""
        if self.energy_frames == 0:
            raise DataError("no configurations with an energy to compute the energy shift")
        if self.force_components == 0:
            raise DataError("no configurations with forces to compute the force scale")
        reference = sum(e0s.get(z, 0.0) * self.fraction[z] for z in range(_Z) if self.fraction[z])
        shift = (self.energy_per_atom - reference) / self.energy_frames
        scale = math.sqrt(self.force_squares / self.force_components)
        if scale == 0.0:
            raise DataError("every force component is zero; the force RMS cannot be a scale")
        return shift, scale

    def property_outputs(self, outputs: list[Any]) -> list[Any]:
        """``outputs`` with the ``shift`` and ``scale`` of every property output filled in, as
        :func:`tensorpot.training.run_data.property_statistics` does from a list."""
        filled = []
        for output in outputs:
            if not isinstance(output, dict) or "property" not in output:
                filled.append(output)
                continue
            output = dict(output)
            sums = self.properties.get(output["property"])
            if sums is not None:
                per_atom = output.get("reduction", "sum") == "sum"
                n, total, squares = sums[0], sums[3 if per_atom else 1], sums[4 if per_atom else 2]
                mean = total / n
                spread = math.sqrt(max(squares / n - mean**2, 0.0))
                output.setdefault("shift", float(mean))
                output.setdefault("scale", float(spread) if spread > 0 else 1.0)
            filled.append(output)
        return filled
