"""Running molecular dynamics with a tensorpot model: trajectory, log and report.

:func:`run_md` integrates with ASE (:mod:`tensorpot.dynamics.ensembles`), writes an extxyz
trajectory frame by frame (:mod:`tensorpot.dynamics.trajectory`) and a CSV log, and returns an
:class:`~tensorpot.dynamics.report.MDReport`, also written as JSON. SIGINT (Ctrl-C) and
SIGTERM stop the run after the step in progress (a second one stops it at once): the last
state is written, the files are closed whole and the report covers the steps that ran. The
signal handlers are installed only for the run (and only in the main thread), and the previous
ones restored after it. A run continued in place (``append``) reports on the whole trajectory:
the earlier part's samples are read back from its log and frames.
"""

from __future__ import annotations

import copy
import os
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase import Atoms, units
from ase.md.velocitydistribution import Stationary
from tqdm.auto import tqdm

from tensorpot.calculators.ase import TensorPotCalculator, check_structure
from tensorpot.dynamics.analysis import energy_drift, mean_temperature
from tensorpot.dynamics.ensembles import MDSettings, is_bulk, make_integrator
from tensorpot.dynamics.report import MDReport, write_report
from tensorpot.dynamics.stability import BondMonitor, RDFMonitor, RDFSettings
from tensorpot.dynamics.trajectory import (
    StartState,
    TrajectoryWriter,
    read_first_frame,
    read_frames,
    read_last_state,
    read_structure,
)
from tensorpot.errors import ConfigError, DataError
from tensorpot.evaluation.evaluate import OutputExistsError
from tensorpot.models.base import Potential
from tensorpot.signals import StopRequest, stop_on_signals

__all__ = ["MDFiles", "MDSample", "run_md"]

_LOG_COLUMNS = ("step", "time_ps", "total_energy_eV", "potential_energy_eV", "kinetic_energy_eV",
                "temperature_K", "volume_A3")  # fmt: skip


@dataclass(frozen=True)
class MDFiles:
    """The files of a run: the trajectory, and by default ``<stem>.log.csv`` and
    ``<stem>.report.json`` beside it."""

    trajectory: Path
    log: Path
    report: Path

    @classmethod
    def beside(
        cls, trajectory: str | os.PathLike, log: str | None = None, report: str | None = None
    ) -> MDFiles:
        """Files named after ``trajectory`` where ``log`` or ``report`` is not given."""
        trajectory = Path(trajectory)
        stem = trajectory.with_suffix("")
        log = Path(log) if log else stem.with_name(stem.name + ".log.csv")
        report = Path(report) if report else stem.with_name(stem.name + ".report.json")
        return cls(trajectory, log, report)


@dataclass(frozen=True)
class MDSample:
    """One logged state (what :func:`run_md`'s ``observer`` receives)."""

    step: int
    time: float  # ps
    potential_energy: float  # eV
    kinetic_energy: float  # eV
    temperature: float  # K
    atoms: Atoms


def run_md(
    model: Potential | str | os.PathLike,
    settings: MDSettings,
    files: MDFiles,
    structure: str | os.PathLike | None = None,
    frame: int = 0,
    restart: str | os.PathLike | None = None,
    append: bool = False,
    reference: str | os.PathLike | None = None,
    rdf: RDFSettings | None = None,
    device: str = "cpu",
    dtype: str | None = None,
    progress: bool = False,
    handle_signals: bool = True,
    observer: Callable[[MDSample], None] | None = None,
    engine: str = "ase",
) -> MDReport:
    """Run MD of ``model`` from a structure file or from a trajectory's last frame.

    Args:
        model: a model or a model file.
        settings: ensemble, time step, steps, temperature, ... (:class:`MDSettings`).
        files: where the trajectory, log and report go.
        structure: the starting structure's file (frame ``frame``); or else
        restart: a trajectory whose last frame (positions, velocities, time, step) is the start.
        append: continue ``restart`` in place: append to it and to its log (``files.trajectory``
            must be that file); without it no output file may exist.
        reference: a reference trajectory of the same atoms for the stability criteria (by
            default the starting structure, or a restarted trajectory's first frame).
        rdf: compute the RDF (periodic cells) and its criterion.
        device: torch device; dtype: ``"float32"``/``"float64"`` (default: the model's).
        progress: draw a progress bar on stderr.
        handle_signals: stop cleanly on SIGINT/SIGTERM.
        observer: called with every logged :class:`MDSample`.
        engine: ``"ase"`` (the integrators of :mod:`~tensorpot.dynamics.ensembles`) or
            ``"lammps"`` (NVE in LAMMPS, :class:`~tensorpot.dynamics.lammps.LammpsVerlet`).

    Raises:
        DataError: a missing or unreadable structure, trajectory or reference.
        ConfigError: NPT or an RDF without a periodic cell, a model without energies, another
            ensemble than NVE in LAMMPS, LAMMPS not installed.
        OutputExistsError: an output exists and is not being continued.
    """
    if engine not in ("ase", "lammps"):
        raise ConfigError(f"engine must be ase or lammps, got {engine!r}")
    start, source = _start(structure, frame, restart)
    appending = _check_outputs(files, restart, append)
    atoms = start.atoms
    atoms.calc = TensorPotCalculator(model=_potential(model, dtype), device=device)
    _check_structure(atoms, atoms.calc.model, source)
    if restart is None:
        _initial_velocities(atoms, settings, start, source)
    if rdf is not None and not is_bulk(atoms):
        raise ConfigError(f"{source}: an RDF needs a cell periodic in all three directions")
    first = _first_frame(restart, atoms) if restart is not None else atoms.copy()
    ref = _reference(reference, atoms) if reference is not None else None
    bonds = BondMonitor(first, ref)
    rdfs = RDFMonitor(rdf, ref) if rdf else None
    monitors = [bonds.update, *([rdfs.update] if rdfs else [])]
    stop = _Stop()
    if appending:
        _replay(files, start, stop.series, monitors)
    try:
        integrator = _integrator(engine, atoms, settings, start.step)
    except ConfigError as err:  # NPT without a periodic cell
        raise ConfigError(f"{source}: {err}") from None
    rank = getattr(integrator, "rank", 0)  # LAMMPS under mpirun: only rank 0 writes files
    with tempfile.TemporaryDirectory() if rank else nullcontext() as scratch:
        if scratch is not None:
            files = MDFiles.beside(Path(scratch) / files.trajectory.name)
        clock = time.perf_counter()
        try:
            with stop_on_signals(handle_signals, stop):
                steps = _loop(integrator, atoms, settings, files, start, appending,
                              progress and not rank, stop, monitors, observer)  # fmt: skip
        finally:
            if hasattr(integrator, "close"):  # LAMMPS ends its instance
                integrator.close()
        wall = time.perf_counter() - clock
        return _report(settings, integrator, atoms, start, steps, stop, wall, bonds, rdfs, files,
                       rank, appending)  # fmt: skip


def _integrator(engine: str, atoms: Atoms, settings: MDSettings, step: int):
    if engine == "lammps":
        from tensorpot.dynamics.lammps import LammpsVerlet

        return LammpsVerlet(atoms, settings, step)
    return make_integrator(atoms, settings, step)


def _start(structure, frame: int, restart) -> tuple[StartState, str]:
    if (structure is None) == (restart is None):
        raise ConfigError("give exactly one of a starting structure and a trajectory to restart")
    if restart is not None:
        return read_last_state(restart), str(restart)
    return read_structure(structure, frame), str(structure)


def _check_outputs(files: MDFiles, restart, append: bool) -> bool:
    """True when the run continues ``restart`` in place; refuses to overwrite anything."""
    same = restart is not None and _same_file(files.trajectory, restart)
    if append and not same:
        raise ConfigError(f"{files.trajectory}: appending continues the trajectory the run "
                          "restarts from; restart from this file, or drop append")  # fmt: skip
    for path in (files.trajectory, files.log, files.report):
        if path.exists() and not append:  # appending: the log grows, the report is replaced
            hint = " (to continue the run: restart from it with append)" if same else ""
            raise OutputExistsError(f"{path}: exists; refusing to overwrite it{hint}")
    return same


def _same_file(a: Path, b) -> bool:
    return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)


def _potential(model, dtype: str | None) -> Potential:
    if not isinstance(model, Potential):
        from tensorpot.models.io import load_model

        model = load_model(model)
    if dtype is not None:
        if dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, got {dtype!r}")
        model = copy.deepcopy(model).to(getattr(torch, dtype))  # the caller's model unchanged
    if not model.has_energy:
        raise ConfigError("the model has no energy output: MD needs energies and forces")
    return model


def _check_structure(atoms: Atoms, model: Potential, source: str) -> None:
    from tensorpot.calculators.ase import _symbol

    unknown = sorted(set(atoms.numbers.tolist()) - set(model.atomic_numbers))
    if unknown:
        names = ", ".join(_symbol(z) for z in unknown)
        knows = ", ".join(_symbol(z) for z in model.atomic_numbers)
        raise DataError(f"the model does not know element(s) {names}; it knows {knows}", source)
    try:
        check_structure(atoms)
    except DataError as err:
        raise DataError(err.problem, source) from None


def _initial_velocities(atoms: Atoms, settings: MDSettings, start: StartState, source) -> None:
    if settings.velocities == "file":
        if not start.has_velocities:
            raise DataError("the structure has no velocities (or momenta)", source)
        return
    if settings.velocities == "zero" or settings.temperature == 0:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    rng = np.random.default_rng(settings.seed)  # Maxwell-Boltzmann: p ~ N(0, m kT) per axis
    scale = np.sqrt(atoms.get_masses() * units.kB * settings.temperature)[:, None]
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)) * scale)
    Stationary(atoms)  # zero total momentum, the temperature kept


def _first_frame(path, atoms: Atoms) -> Atoms:
    """The first frame of a trajectory whose last frame is ``atoms``."""
    first = read_first_frame(path)
    if len(first) != len(atoms) or (first.numbers != atoms.numbers).any():
        raise DataError("its first and last frames hold different atoms", str(path))
    return first


def _reference(path, atoms: Atoms) -> list[Atoms]:
    frames = read_frames(path, "reference trajectory")
    if any(len(f) != len(atoms) or (f.numbers != atoms.numbers).any() for f in frames):
        raise DataError("the reference's atoms are not those simulated (count or elements)",
                        str(path))  # fmt: skip
    return frames


@dataclass
class _Series:
    """The logged samples of a run, for its report."""

    time: list[float] = field(default_factory=list)  # ps
    potential: list[float] = field(default_factory=list)  # eV
    kinetic: list[float] = field(default_factory=list)  # eV
    temperature: list[float] = field(default_factory=list)  # K


@dataclass
class _Stop(StopRequest):
    """Why the run stopped (the signal's name), whether a file is being written, and the
    observables sampled so far."""

    series: _Series = field(default_factory=_Series)


class _Log:
    """The CSV log: one line per logged step, flushed (its header only in a new file)."""

    def __init__(self, path: Path):
        new = not path.exists() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        if new:
            self.handle.write(",".join(_LOG_COLUMNS) + "\n")

    def write(self, step: int, time_ps: float, atoms: Atoms) -> None:
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        volume = atoms.get_volume() if atoms.pbc.any() and atoms.cell.rank == 3 else float("nan")
        energies = ",".join(f"{v:.10f}" for v in (epot + ekin, epot, ekin))  # 1e-10 eV
        temperature = atoms.get_temperature()
        self.handle.write(f"{step},{time_ps:.9f},{energies},{temperature:.6f},{volume:.6f}\n")
        self.handle.flush()


def _loop(integrator, atoms, settings, files, start, appending, progress, stop, monitors,
          observer) -> int:  # fmt: skip
    """Integrate ``settings.steps`` steps (or until a signal); returns the steps done."""
    writer, log = TrajectoryWriter(files.trajectory), _Log(files.log)
    bar = tqdm(total=settings.steps, disable=not progress, unit="step", file=sys.stderr,
               dynamic_ncols=True)  # fmt: skip
    done, written, logged = 0, None, None

    def record(n: int, frame: bool, line: bool) -> None:
        fs = start.time + n * settings.timestep
        stop.writing = True
        if frame:
            writer.write(atoms, start.step + n, fs)
        if line:
            log.write(start.step + n, fs / 1000.0, atoms)
        stop.writing = False

    def sample(n: int, line: bool) -> None:
        ps = (start.time + n * settings.timestep) / 1000.0
        epot, ekin, temp = (atoms.get_potential_energy(), atoms.get_kinetic_energy(),
                            atoms.get_temperature())  # fmt: skip
        for name, value in zip(("time", "potential", "kinetic", "temperature"),
                               (ps, epot, ekin, temp)):  # fmt: skip
            getattr(stop.series, name).append(value)
        for update in monitors:
            update(ps, atoms)
        record(n, False, line)
        bar.set_postfix(T=f"{temp:.0f} K", E=f"{epot + ekin:.4f} eV", refresh=False)
        if observer is not None:
            observer(MDSample(start.step + n, ps, epot, ekin, temp, atoms))

    try:
        for _ in integrator.irun(settings.steps):
            done = integrator.nsteps
            bar.update(done - bar.n)
            fresh = done > 0 or not appending  # a continued file has the first state already
            if done % settings.trajectory_interval == 0:
                record(done, fresh, False)
                written = done
            if done % settings.log_interval == 0:
                sample(done, fresh)
                logged = done
            if stop.signal is not None:
                break
        if written != done:  # the last state, so that a restart continues from it
            record(done, True, False)
        if logged != done:
            sample(done, True)
    except KeyboardInterrupt:  # a second signal, or Ctrl-C without handlers: maybe mid-step
        stop.signal = stop.signal or "SIGINT"
    finally:
        writer.close()
        log.handle.close()
        bar.close()
    return done


def _replay(files: MDFiles, start: StartState, series: _Series, monitors) -> None:
    """Feed the part of an appended run before ``start`` to its report: the log's samples to
    the drift and temperature (the trajectory frames' own energies where the log is gone or
    unreadable), the trajectory's frames to the stability monitors."""
    frames = [f for f in read_frames(files.trajectory, "trajectory")
              if int(f.info.get("step", 0)) < start.step]  # fmt: skip
    for frame in frames:
        for update in monitors:
            update(float(frame.info.get("time", 0.0)) / 1000.0, frame)
    rows = _log_samples(files.log, start.step)
    if rows is None:  # ASE reads a frame's ``energy`` as its calculator's result
        keys = ("time", "kinetic_energy", "temperature")
        rows = [(f.info["time"] / 1000.0, f.calc.results["energy"], f.info["kinetic_energy"],
                 f.info["temperature"]) for f in frames if all(k in f.info for k in keys)
                and f.calc is not None and "energy" in f.calc.results]  # fmt: skip
    for values in rows:
        for name, value in zip(("time", "potential", "kinetic", "temperature"), values):
            getattr(series, name).append(float(value))


def _log_samples(path: Path, before: int) -> list[tuple[float, ...]] | None:
    """``(time_ps, potential, kinetic, temperature)`` of the log lines before step ``before``;
    None when the log is missing or not a log of :func:`run_md`."""
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    if not lines or tuple(lines[0].split(",")) != _LOG_COLUMNS:
        return None
    rows = []
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) != len(_LOG_COLUMNS):
            continue  # a line cut off by a crash
        try:
            step, ps, _, epot, ekin, temp, _ = fields
            if int(step) < before:
                rows.append((float(ps), float(epot), float(ekin), float(temp)))
        except ValueError:
            continue
    return rows


def _report(settings, integrator, atoms, start, steps, stop, wall, bonds, rdfs, files, rank,
            appending):  # fmt: skip
    series = stop.series
    time_ps = np.array(series.time)
    total = np.array(series.potential) + np.array(series.kinetic)
    temperature = mean_temperature(time_ps, np.array(series.temperature))
    report = MDReport(
        integrator=type(integrator).__name__,
        ensemble=settings.ensemble,
        num_atoms=len(atoms),
        timestep=settings.timestep,
        steps_requested=settings.steps,
        steps_run=steps,
        start_time=series.time[0] if series.time else start.time / 1000.0,
        end_time=(start.time + steps * settings.timestep) / 1000.0,
        stopped="completed" if steps == settings.steps else (stop.signal or "completed"),
        wall_seconds=wall,
        target_temperature=settings.temperature,
        drift=energy_drift(time_ps, total, len(atoms)) if settings.ensemble == "nve" else None,
        temperature=temperature,
        bonds=bonds.result(),
        rdf=rdfs.result(temperature.start) if rdfs is not None else None,
        files={k: str(getattr(files, k)) for k in ("trajectory", "log", "report")},
        rank=rank,
        continued_at=start.time / 1000.0 if appending else None,
    )
    write_report(report, files.report)
    return report
