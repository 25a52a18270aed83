"""The settings of an MD run and the ASE integrator of its ensemble.

* ``nve``: velocity Verlet (``ase.md.verlet.VelocityVerlet``).
* ``nvt``: Langevin (``ase.md.langevin.Langevin``, friction in 1/fs, the centre of mass fixed
  by ``ase.constraints.FixCom``, which :func:`make_integrator` sets on the atoms) or
  Nosé-Hoover chains (``ase.md.nose_hoover_chain.NoseHooverChainNVT``, damping time in fs).
* ``npt``: the isotropic Martyna-Tobias-Klein integrator
  (``ase.md.nose_hoover_chain.IsotropicMTKNPT``) where the installed ASE has it, otherwise
  Berendsen (``ase.md.nptberendsen.NPTBerendsen``); only for cells periodic in all three
  directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ase import Atoms, units
from ase.md.md import MolecularDynamics

from tensorpot.errors import ConfigError

__all__ = ["MDSettings", "is_bulk", "make_integrator", "steps_for"]

Ensemble = Literal["nve", "nvt", "npt"]
Thermostat = Literal["langevin", "nose-hoover"]
Velocities = Literal["maxwell-boltzmann", "file", "zero"]


@dataclass(frozen=True)
class MDSettings:
    """What to simulate and how (times in fs, temperature in K, pressure in bar).

    Attributes:
        steps: the number of time steps.
        ensemble: ``"nve"``, ``"nvt"`` or ``"npt"``.
        timestep: the time step (fs).
        temperature: the thermostat's target (K) and the initial velocities' temperature.
        thermostat: NVT's thermostat, ``"langevin"`` or ``"nose-hoover"``.
        friction: Langevin's friction (1/fs).
        tdamp: the Nosé-Hoover (and MTK) thermostat's time constant (fs); default 100 steps.
        pressure: NPT's target pressure (bar).
        pdamp: the barostat's time constant (fs); default 1000 steps.
        velocities: initial velocities: ``"maxwell-boltzmann"`` at ``temperature`` with zero
            total momentum, ``"file"`` (the structure's own) or ``"zero"``; a restart keeps
            the trajectory's.
        seed: the seed of the initial velocities and of Langevin's noise.
        trajectory_interval: steps between trajectory frames.
        log_interval: steps between log lines (also the samples of the report).
    """

    steps: int
    ensemble: Ensemble = "nve"
    timestep: float = 0.5
    temperature: float = 300.0
    thermostat: Thermostat = "langevin"
    friction: float = 0.01
    tdamp: float | None = None
    pressure: float = 1.0
    pdamp: float | None = None
    velocities: Velocities = "maxwell-boltzmann"
    seed: int = 0
    trajectory_interval: int = 10
    log_interval: int = 10

    def __post_init__(self) -> None:
        choices = {"ensemble": Ensemble, "thermostat": Thermostat, "velocities": Velocities}
        for name, kind in choices.items():
            if getattr(self, name) not in kind.__args__:
                raise ConfigError(f"{name} must be one of {', '.join(kind.__args__)}, "
                                  f"got {getattr(self, name)!r}")  # fmt: skip
        for name in ("steps", "trajectory_interval", "log_interval"):
            if getattr(self, name) < (0 if name == "steps" else 1):
                raise ConfigError(f"{name} must be >= {0 if name == 'steps' else 1}, "
                                  f"got {getattr(self, name)}")  # fmt: skip
        for name in ("timestep", "friction", "tdamp", "pdamp"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if not self.temperature >= 0:
            raise ConfigError(f"temperature must be >= 0 K, got {self.temperature}")

    @property
    def integrator_name(self) -> str:
        """The ASE class that integrates this ensemble."""
        if self.ensemble == "nve":
            return "VelocityVerlet"
        if self.ensemble == "nvt":
            return "Langevin" if self.thermostat == "langevin" else "NoseHooverChainNVT"
        return "IsotropicMTKNPT" if _mtk() is not None else "NPTBerendsen"


def steps_for(time_ps: float, timestep_fs: float) -> int:
    """The number of steps of ``timestep_fs`` in ``time_ps`` (rounded to the nearest)."""
    if not time_ps > 0 or not timestep_fs > 0:
        raise ConfigError(f"time ({time_ps} ps) and time step ({timestep_fs} fs) must be > 0")
    return max(1, round(time_ps * 1000.0 / timestep_fs))


def is_bulk(atoms: Atoms) -> bool:
    """True if ``atoms`` is periodic in x, y and z with a cell of non-zero volume (NPT's need)."""
    return bool(atoms.pbc.all()) and abs(atoms.cell.volume) > 0


def make_integrator(atoms: Atoms, settings: MDSettings, step: int = 0) -> MolecularDynamics:
    """The ASE integrator of ``settings.ensemble`` on ``atoms`` (which carries its calculator),
    starting at ``step`` (Langevin's noise is seeded by ``settings.seed`` and ``step``, so a
    restarted run draws new noise).

    Raises:
        ConfigError: for NPT on a structure that is not periodic in all three directions.
    """
    dt = settings.timestep * units.fs
    tdamp = (settings.tdamp or 100 * settings.timestep) * units.fs
    if settings.ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if settings.ensemble == "nvt" and settings.thermostat == "langevin":
        import numpy as np
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        atoms.set_constraint(FixCom())  # the centre of mass kept still, its 3 dof not counted
        return Langevin(atoms, timestep=dt, temperature_K=settings.temperature,
                        friction=settings.friction / units.fs, fixcm=False,
                        rng=np.random.default_rng([settings.seed, 1, step]))  # fmt: skip
    if settings.ensemble == "nvt":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=settings.temperature,
                                  tdamp=tdamp)  # fmt: skip
    if not is_bulk(atoms):
        raise ConfigError("NPT needs a cell periodic in all three directions; "
                          f"the structure has pbc={atoms.pbc.tolist()}, volume "
                          f"{abs(atoms.cell.volume):.3g} Å³")  # fmt: skip
    pdamp = (settings.pdamp or 1000 * settings.timestep) * units.fs
    pressure = settings.pressure * units.bar
    mtk = _mtk()
    if mtk is not None:
        return mtk(atoms, timestep=dt, temperature_K=settings.temperature, pressure_au=pressure,
                   tdamp=tdamp, pdamp=pdamp)  # fmt: skip
    from ase.md.nptberendsen import NPTBerendsen

    return NPTBerendsen(atoms, timestep=dt, temperature_K=settings.temperature,
                        pressure_au=pressure, taut=tdamp, taup=pdamp,
                        compressibility_au=4.57e-5 / units.bar)  # fmt: skip


def _mtk() -> type | None:
    try:
        from ase.md.nose_hoover_chain import IsotropicMTKNPT
    except ImportError:
        return None
    return IsotropicMTKNPT
