"""Energy drift and mean temperature of an MD run, from its logged samples.

Times in ps, energies in eV, temperatures in K. Both functions take plain arrays, so they
serve a running simulation and a trajectory read back alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EnergyDrift", "MeanTemperature", "energy_drift", "mean_temperature"]

#: the share of a run's time treated as equilibration by :func:`mean_temperature`
EQUILIBRATION = 0.1


@dataclass(frozen=True)
class EnergyDrift:
    """How far the total energy of an NVE run wandered.

    Attributes:
        slope: eV per atom per ps, the slope of a least-squares line through the total energy
            per atom against time (None with fewer than two distinct times).
        max_deviation: eV per atom, ``max_t |E(t) - E(0)| / N``.
        samples: how many samples the numbers come from.
    """

    slope: float | None
    max_deviation: float
    samples: int


@dataclass(frozen=True)
class MeanTemperature:
    """The mean temperature after equilibration.

    Attributes:
        mean: K, the mean over the samples from ``start`` on (None without samples).
        std: K, their standard deviation.
        start: ps, the first time counted: ``t0 + fraction * (t_end - t0)``.
        fraction: the share of the run's time left out as equilibration.
        samples: how many samples were averaged.
    """

    mean: float | None
    std: float | None
    start: float | None
    fraction: float
    samples: int


def energy_drift(time: np.ndarray, total_energy: np.ndarray, num_atoms: int) -> EnergyDrift:
    """Drift of the total energy per atom: ``d(E/N)/dt`` by a linear fit, and ``max|E - E0|/N``.

    Args:
        time: ``[S]`` sample times (ps).
        total_energy: ``[S]`` total energies (eV).
        num_atoms: N.

    >>> d = energy_drift(np.array([0.0, 1.0, 2.0]), np.array([0.0, 2.0, 4.0]), 2)
    >>> round(d.slope, 12), d.max_deviation
    (1.0, 2.0)
    """
    time = np.asarray(time, dtype=np.float64)
    per_atom = np.asarray(total_energy, dtype=np.float64) / num_atoms
    if per_atom.size == 0:
        return EnergyDrift(None, 0.0, 0)
    deviation = float(np.abs(per_atom - per_atom[0]).max())
    slope = None
    if np.unique(time).size >= 2:
        slope = float(np.polyfit(time - time[0], per_atom, 1)[0])
    return EnergyDrift(slope, deviation, int(per_atom.size))


def mean_temperature(
    time: np.ndarray, temperature: np.ndarray, fraction: float = EQUILIBRATION
) -> MeanTemperature:
    """Mean and standard deviation of the temperature over the samples at or after
    ``t0 + fraction * (t_end - t0)`` (the first ``fraction`` of the run's time is equilibration).

    >>> mean_temperature(np.arange(10.0), np.array([0.0] + [300.0] * 9)).mean
    300.0
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    time = np.asarray(time, dtype=np.float64)
    temperature = np.asarray(temperature, dtype=np.float64)
    if time.size == 0:
        return MeanTemperature(None, None, None, fraction, 0)
    start = float(time[0] + fraction * (time[-1] - time[0]))
    kept = temperature[time >= start - 1e-12 * max(1.0, abs(start))]
    return MeanTemperature(float(kept.mean()), float(kept.std()), start, fraction, int(kept.size))
