"""Molecular dynamics with a tensorpot model: ASE integrators, trajectory, log and report.

:func:`run_md` runs a simulation; :mod:`~tensorpot.dynamics.analysis` and
:mod:`~tensorpot.dynamics.stability` hold the report's measures (energy drift, mean
temperature, bond-length and RDF stability), which also serve trajectories read back.
"""

from tensorpot.dynamics.analysis import energy_drift, mean_temperature
from tensorpot.dynamics.ensembles import MDSettings, steps_for
from tensorpot.dynamics.report import MDReport
from tensorpot.dynamics.run import MDFiles, MDSample, run_md
from tensorpot.dynamics.stability import BondMonitor, RDFSettings, find_bonds, radial_distribution

__all__ = [
    "BondMonitor",
    "MDFiles",
    "MDReport",
    "MDSample",
    "MDSettings",
    "RDFSettings",
    "energy_drift",
    "find_bonds",
    "mean_temperature",
    "radial_distribution",
    "run_md",
    "steps_for",
]
