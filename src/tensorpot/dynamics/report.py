"""The report of an MD run: what ran, energy drift, mean temperature, stability; text and JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tensorpot.dynamics.analysis import EnergyDrift, MeanTemperature
from tensorpot.dynamics.stability import BondStability, RDFStability
from tensorpot.files import atomic_write

__all__ = ["MDReport", "write_report"]


@dataclass(frozen=True)
class MDReport:
    """What an MD run did and how it behaved (times in ps, energies in eV).

    Attributes:
        integrator: the ASE class that integrated.
        ensemble: ``"nve"``, ``"nvt"`` or ``"npt"``.
        num_atoms: atoms simulated.
        timestep: fs.
        steps_requested: steps asked for.
        steps_run: steps done before the run ended.
        start_time: ps, the simulation time of the first sample the report covers (after a
            restart, its time; a run continued in place: the trajectory's first frame).
        end_time: ps, the simulation time of the last step done.
        stopped: ``"completed"``, or the signal that ended it (``"SIGINT"``, ``"SIGTERM"``).
        wall_seconds: wall time of the steps.
        target_temperature: K.
        drift: the total energy's drift (NVE only, else None).
        temperature: the mean temperature after equilibration.
        bonds: the bond-length criterion.
        rdf: the RDF and its criterion (with ``rdf`` asked for).
        files: ``{"trajectory": ..., "log": ..., "report": ...}``.
        rank: the MPI rank of the process (a LAMMPS run under ``mpirun``); the files of a
            rank other than 0 went to a temporary directory, removed after the run.
        continued_at: ps, where this run continued its trajectory in place (``append``; None
            otherwise): the drift, temperature and stability cover the whole trajectory,
            ``steps_run`` and ``wall_seconds`` this run's part.
    """

    integrator: str
    ensemble: str
    num_atoms: int
    timestep: float
    steps_requested: int
    steps_run: int
    start_time: float
    end_time: float
    stopped: str
    wall_seconds: float
    target_temperature: float
    drift: EnergyDrift | None
    temperature: MeanTemperature
    bonds: BondStability
    rdf: RDFStability | None
    files: dict[str, str]
    rank: int = 0
    continued_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (arrays as lists, NaN as None)."""
        return _plain(dataclasses.asdict(self))

    def format(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"{self.integrator} ({self.ensemble}), {self.num_atoms} atoms, "
            f"dt {self.timestep:g} fs: {self.steps_run} of {self.steps_requested} steps, "
            f"{self.start_time:.4g} -> {self.end_time:.4g} ps, {self.stopped}, "
            f"{self.wall_seconds:.1f} s ({_ms_per_step(self):.3g} ms/step)",
        ]
        if self.continued_at is not None:
            lines[0] += (
                f"; continued at {self.continued_at:.4g} ps, the report covers the whole run"
            )
        if self.drift is not None and self.drift.slope is not None:
            lines.append(
                f"energy drift: {1e3 * self.drift.slope:.4g} meV/atom/ps (linear fit), "
                f"max |E(t) - E(0)| {1e3 * self.drift.max_deviation:.4g} meV/atom"
            )
        t = self.temperature
        if t.mean is not None:
            lines.append(
                f"temperature: {t.mean:.1f} ± {t.std:.1f} K from {t.start:.4g} ps on (the first "
                f"{100 * t.fraction:g} % of the time left out as equilibration; target "
                f"{self.target_temperature:g} K)"
            )
        b = self.bonds
        if b.num_bonds:
            verdict = ("stable" if b.collapse_time is None
                       else f"collapsed at {b.collapse_time:.4g} ps")  # fmt: skip
            lines.append(f"bonds: {b.num_bonds}, largest deviation {b.max_deviation or 0:.3f} Å "
                         f"(threshold {b.threshold:g} Å): {verdict}")  # fmt: skip
        if self.rdf is not None and self.rdf.window_errors:
            worst = max(error for _, error in self.rdf.window_errors)
            verdict = ("stable" if self.rdf.collapse_time is None
                       else f"collapsed at {self.rdf.collapse_time:.4g} ps")  # fmt: skip
            rdf = self.rdf
            lines.append(f"RDF: largest window MAE {worst:.3g} (threshold {rdf.threshold:g}, "
                         f"{rdf.window:g} ps windows): {verdict}")  # fmt: skip
        return "\n".join(lines)


def _ms_per_step(report: MDReport) -> float:
    return 1e3 * report.wall_seconds / report.steps_run if report.steps_run else math.nan


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_report(report: MDReport, path: str | os.PathLike) -> Path:
    """Write ``report`` as JSON to ``path`` atomically."""
    text = json.dumps(report.to_dict(), indent=2) + "\n"
    return atomic_write(path, lambda handle: handle.write(text), binary=False)
