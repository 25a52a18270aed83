"""MD trajectories as extended-XYZ files: frames written whole and flushed, and read back.

Every frame holds the positions (Å), the cell, ``velocities`` (Å/fs) and ``forces`` (eV/Å) per
atom, and ``energy`` (potential, eV), ``kinetic_energy`` (eV), ``temperature`` (K), ``time``
(fs) and ``step`` in its comment line. A frame is formatted first and then written with one
call and flushed, so a run that stops leaves a file of whole frames that any extxyz reader
reads (positions to 1e-8 Å and velocities to 1e-8 Å/fs, the precision of ASE's writer).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import ase.io
import numpy as np
from ase import Atoms, units

from tensorpot.data.readers import read_configurations
from tensorpot.data.readers.extxyz import _frames, _parse_frame
from tensorpot.errors import DataError

__all__ = [
    "TrajectoryWriter",
    "StartState",
    "read_last_state",
    "read_first_frame",
    "read_frames",
    "read_structure",
]

_EXTXYZ = (".xyz", ".extxyz")


@dataclass
class StartState:
    """Where a run starts: a structure with or without velocities, at ``time`` (fs), ``step``."""

    atoms: Atoms
    time: float = 0.0
    step: int = 0
    has_velocities: bool = False


def read_frames(path: str | os.PathLike, what: str = "structure") -> list[Atoms]:
    """Every frame of a structure file: extended XYZ, a data set's npz (rMD17, MD17, sGDML,
    MD22: read by :func:`~tensorpot.data.readers.read_configurations`; the structures only),
    or any format ASE reads.

    Raises:
        DataError: naming the file (and the frame) if it is missing, empty or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such {what} file", str(path))
    if path.suffix.lower() in _EXTXYZ:
        frames = [_parse_frame(text, str(path), k, line) for k, line, text in _frames(path)]
    elif path.suffix.lower() == ".npz":
        frames = [config.structure() for config in read_configurations(path)]
    else:
        try:
            frames = ase.io.read(path, index=":")
        except Exception as err:  # ASE raises many types; all mean the file cannot be read
            problem = f"cannot read the {what}: {type(err).__name__}: {err}"
            raise DataError(problem, str(path)) from None
    if not frames:
        raise DataError(f"the {what} file holds no structure", str(path))
    return frames


def read_structure(path: str | os.PathLike, frame: int = 0) -> StartState:
    """Frame ``frame`` of a structure file, with its velocities if it has them."""
    path = Path(path)
    if frame >= 0 and path.is_file() and path.suffix.lower() in _EXTXYZ:
        count = 0  # parse the frame wanted only
        for k, line, text in _frames(path):
            if k == frame:
                return _state(_parse_frame(text, str(path), k, line))
            count = k + 1
        if count == 0:
            raise DataError("the structure file holds no structure", str(path))
        raise DataError(f"frame {frame} out of range: the file has {count}", str(path))
    frames = read_frames(path)
    if not -len(frames) <= frame < len(frames):
        raise DataError(f"frame {frame} out of range: the file has {len(frames)}", str(path))
    return _state(frames[frame])


def read_last_state(path: str | os.PathLike) -> StartState:
    """The last frame of a trajectory: positions, velocities, time and step.

    Raises:
        DataError: if the file cannot be read or its last frame has no velocities (or momenta).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such trajectory file", str(path))
    last = None
    if path.suffix.lower() in _EXTXYZ:  # parse the last frame only
        for frame, line, text in _frames(path):
            last = (frame, line, text)
        if last is None:
            raise DataError("the trajectory file holds no frame", str(path))
        state = _state(_parse_frame(last[2], str(path), last[0], last[1]))
    else:
        state = _state(read_frames(path, "trajectory")[-1])
    if not state.has_velocities:
        raise DataError("its last frame has no velocities (or momenta) to restart from", str(path))
    return state


def read_first_frame(path: str | os.PathLike) -> Atoms:
    """The first frame of a structure or trajectory file (an extxyz file's alone is parsed)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in _EXTXYZ:
        for frame, line, text in _frames(path):
            return _parse_frame(text, str(path), frame, line)
    return read_frames(path)[0]


def _state(atoms: Atoms) -> StartState:
    """Velocities from ``velocities`` (Å/fs) or ASE's momenta; time and step from the info."""
    has_velocities = "velocities" in atoms.arrays or "momenta" in atoms.arrays
    if "velocities" in atoms.arrays:
        velocities = np.asarray(atoms.arrays.pop("velocities"), dtype=np.float64)
        atoms.set_velocities(velocities / units.fs)
    time = float(atoms.info.get("time", 0.0))
    step = int(atoms.info.get("step", 0))
    clean = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc,
                  momenta=atoms.get_momenta() if has_velocities else None)  # fmt: skip
    return StartState(clean, time, step, has_velocities)


class TrajectoryWriter:
    """Appends frames to an extended-XYZ file, each formatted whole, written once and flushed.

    Args:
        path: the file; created if missing, appended to otherwise.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, atoms: Atoms, step: int, time: float) -> None:
        """Write the state of ``atoms`` (with its calculator's energy and forces) at ``step``,
        ``time`` (fs)."""
        frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        frame.arrays["velocities"] = atoms.get_velocities() * units.fs  # Å/fs
        frame.arrays["forces"] = atoms.get_forces()
        frame.info = {
            "step": int(step),
            "time": float(time),
            "energy": float(atoms.get_potential_energy()),
            "kinetic_energy": float(atoms.get_kinetic_energy()),
            "temperature": float(atoms.get_temperature()),
        }
        text = io.StringIO()
        ase.io.write(text, frame, format="extxyz")
        self._handle.write(text.getvalue())
        self._handle.flush()

    def close(self) -> None:
        """Flush, sync to disk and close."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
