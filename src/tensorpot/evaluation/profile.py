"""Energy profiles along a scan: model and reference energies relative to their own minima.

A scan is a file of frames along one coordinate (a dihedral angle, a reaction coordinate),
given per frame in an info key of an extended-XYZ file (a per-frame array of an npz file), or
the frame order when no key is named. Both energy curves are shifted to their own minimum,

.. math::

    \\Delta E^{\\mathrm{ref}}_k = E^{\\mathrm{ref}}_k - \\min_j E^{\\mathrm{ref}}_j, \\qquad
    \\Delta E^{\\mathrm{model}}_k = E^{\\mathrm{model}}_k - \\min_j E^{\\mathrm{model}}_j,

so a constant offset between the model and the reference (another level of theory, other
isolated-atom energies) drops out, and the profile's errors are those of
:math:`\\Delta E^{\\mathrm{model}}_k - \\Delta E^{\\mathrm{ref}}_k`: the RMSE and the MAE over
the frames, in meV. The profile is written as a PNG plot (coordinate on x), a CSV file and a
Markdown table.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tensorpot.data.configuration import Configuration
from tensorpot.errors import ConfigError, DataError
from tensorpot.evaluation.evaluate import StructurePrediction, _evaluate_file, check_output
from tensorpot.files import atomic_write

__all__ = [
    "FRAME_ORDER",
    "EnergyProfile",
    "energy_profile",
    "evaluate_profile_file",
    "plot_profile",
    "profile_coordinates",
    "profile_paths",
    "relative_energies",
]

#: The coordinate name of a profile along the frame order.
FRAME_ORDER = "frame order"


def relative_energies(energies: Sequence[float] | np.ndarray) -> np.ndarray:
    """``E_k - min_j E_j``: energies relative to their minimum (the minimum becomes 0).

    >>> relative_energies([-3.0, -5.0, -4.5]).tolist()
    [2.0, 0.0, 0.5]
    """
    energies = np.asarray(energies, dtype=np.float64)
    if energies.ndim != 1 or energies.size == 0:
        raise ValueError(f"energies must be a non-empty 1-D sequence, got shape {energies.shape}")
    return energies - energies.min()


@dataclass(frozen=True)
class EnergyProfile:
    """Model and reference energies along a scan, each relative to its own minimum.

    Attributes:
        coordinate: the coordinate's name (an info key, or ``"frame order"``).
        coordinates: ``[n]`` its value per frame, in file order.
        reference: ``[n]`` reference energies relative to their minimum (eV).
        predicted: ``[n]`` model energies relative to their minimum (eV).
    """

    coordinate: str
    coordinates: np.ndarray
    reference: np.ndarray
    predicted: np.ndarray

    @property
    def errors(self) -> dict[str, float]:
        """``relative_energy_mae`` and ``relative_energy_rmse`` in meV:
        mean of ``|ΔE_model - ΔE_ref|`` and the square root of the mean of its square."""
        diff = self.predicted - self.reference
        return {
            "relative_energy_mae": 1e3 * float(np.abs(diff).mean()),
            "relative_energy_rmse": 1e3 * math.sqrt(float(np.square(diff).mean())),
        }

    def rows(self) -> list[tuple[int, float, float, float, float]]:
        """``(frame, coordinate, ΔE_ref meV, ΔE_model meV, model - ref meV)`` per frame."""
        return [
            (k, float(x), 1e3 * float(r), 1e3 * float(p), 1e3 * float(p - r))
            for k, (x, r, p) in enumerate(zip(self.coordinates, self.reference, self.predicted))
        ]

    def columns(self) -> tuple[str, ...]:
        """The names of the columns of :meth:`rows`, with units."""
        return ("frame", self.coordinate, "reference_meV", "model_meV", "error_meV")

    def format(self) -> str:
        """A Markdown table of :meth:`rows`, followed by the MAE and RMSE line."""
        lines = [
            f"| frame | {self.coordinate} | reference ΔE (meV) | model ΔE (meV) | "
            "model - reference (meV) |",
            "|---|---|---|---|---|",
        ]
        for k, x, r, p, d in self.rows():
            lines.append(f"| {k} | {x:.6g} | {r:.2f} | {p:.2f} | {d:.2f} |")
        errors = self.errors
        lines.append("")
        lines.append(
            f"relative energies over {len(self.coordinates)} frames: "
            f"MAE {errors['relative_energy_mae']:.2f} meV, "
            f"RMSE {errors['relative_energy_rmse']:.2f} meV"
        )
        return "\n".join(lines)

    def csv_text(self) -> str:
        """The rows as CSV, with a header line of :meth:`columns`."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns())
        writer.writerows([k, repr(x), repr(r), repr(p), repr(d)] for k, x, r, p, d in self.rows())
        return buffer.getvalue()


def energy_profile(
    configs: Sequence[Configuration],
    predictions: Sequence[StructurePrediction],
    coordinates: Sequence[float] | np.ndarray,
    coordinate: str = FRAME_ORDER,
) -> EnergyProfile:
    """The energy profile of predictions against the reference energies of ``configs``.

    Raises:
        DataError: naming the file and frame of a configuration without a reference energy
            (or a prediction without an energy: the model has no energy output).
        ValueError: the three sequences differ in length, or are empty.
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    if not len(configs) == len(predictions) == len(coordinates):
        raise ValueError(
            f"{len(configs)} configurations, {len(predictions)} predictions and "
            f"{len(coordinates)} coordinates"
        )
    for config, prediction in zip(configs, predictions):
        if config.energy is None:
            raise config.error("no reference energy: a profile needs one in every frame")
        if prediction.energy is None:
            raise config.error("the model predicts no energy: a profile needs one")
    return EnergyProfile(
        coordinate=coordinate,
        coordinates=coordinates,
        reference=relative_energies([c.energy for c in configs]),
        predicted=relative_energies([p.energy for p in predictions]),
    )


def _coordinate(value: Any, key: str, file: str, frame: int) -> float:
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in "iuf":
        raise DataError(f"profile key {key!r} is {value!r}, not one number", file, frame)
    number = float(array.reshape(()))
    if not math.isfinite(number):
        raise DataError(f"profile key {key!r} is {number}", file, frame)
    return number


def profile_coordinates(data_path: str | os.PathLike, key: str) -> np.ndarray:
    """The scan coordinate of every frame of a data file.

    Args:
        data_path: an extended-XYZ file (the coordinate in each frame's info) or an npz file
            (a per-frame array ``[frames]``).
        key: the info key or array name.

    Raises:
        DataError: naming the file and frame whose key is missing or not one finite number.
        ConfigError: a key was named for a file type that has no per-frame keys here.
    """
    from tensorpot.data.readers import read_extxyz_atoms
    from tensorpot.data.readers.npz import load_npz

    file, suffix = str(data_path), Path(data_path).suffix.lower()
    if suffix in (".xyz", ".extxyz"):
        values = []
        for frame, atoms in enumerate(read_extxyz_atoms(data_path)):
            if key not in atoms.info:
                raise DataError(
                    f"no profile key {key!r}; info keys: {sorted(atoms.info)}", file, frame
                )
            values.append(_coordinate(atoms.info[key], key, file, frame))
        return np.array(values, dtype=np.float64)
    if suffix == ".npz":
        data = load_npz(data_path)
        if key not in data:
            raise DataError(f"no profile key {key!r}; keys present: {sorted(data)}", file)
        array = np.asarray(data[key])
        if array.ndim != 1:
            raise DataError(f"profile key {key!r} has shape {array.shape}, not [frames]", file)
        return np.array([_coordinate(v, key, file, k) for k, v in enumerate(array)])
    raise ConfigError(f"{file}: a profile key needs an .xyz, .extxyz or .npz file")


def profile_paths(plot: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(plot, table CSV, table Markdown)``: the CSV and Markdown files beside the PNG."""
    plot = Path(plot)
    if plot.suffix.lower() in (".csv", ".md"):
        raise ConfigError(f"{plot}: the profile plot is a PNG file; its tables go beside it")
    return plot, plot.with_suffix(".csv"), plot.with_suffix(".md")


def plot_profile(
    path: str | os.PathLike, profile: EnergyProfile, title: str | None = None,
    overwrite: bool = False,
) -> Path:  # fmt: skip
    """Reference and model relative energies (meV) against the coordinate, as PNG; points
    are joined in the order of the coordinate."""
    from tensorpot.evaluation.plots import _figure, _save

    fig, (ax,) = _figure(1, width=6.0, height=4.0)
    order = np.argsort(profile.coordinates, kind="stable")
    x = profile.coordinates[order]
    ax.plot(x, 1e3 * profile.reference[order], "o-", color="k", ms=4, label="reference")
    ax.plot(x, 1e3 * profile.predicted[order], "s--", color="C3", ms=4, label="model")
    errors = profile.errors
    ax.text(0.02, 0.97, f"RMSE {errors['relative_energy_rmse']:.1f} meV\n"
            f"MAE {errors['relative_energy_mae']:.1f} meV", transform=ax.transAxes,
            va="top", ha="left")  # fmt: skip
    ax.set_xlabel(profile.coordinate)
    ax.set_ylabel("energy relative to its minimum (meV)")
    ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    return _save(fig, path, overwrite)


def evaluate_profile_file(
    model_path: str | os.PathLike,
    data_path: str | os.PathLike,
    plot: str | os.PathLike,
    key: str | None = None,
    batch_size: int = 10,
    device: str = "cpu",
    overwrite: bool = False,
    **eval_options: Any,
) -> tuple[dict[str, float], list[StructurePrediction], EnergyProfile]:
    """Evaluate a model on a scan and write its energy profile: PNG ``plot``, and the table
    beside it as CSV and Markdown (:func:`profile_paths`).

    Every output is checked, and the coordinates read, before the model is run.

    Args:
        model_path: a file written by :func:`tensorpot.save_model`.
        data_path: the scan, every frame with a reference energy.
        plot: the PNG file.
        key: the info key (npz: per-frame array) of the coordinate; None for the frame order.
        batch_size: structures per forward pass.
        device: torch device to evaluate on.
        overwrite: replace existing output files.
        **eval_options: ``output``, ``parity``, ``units`` and the reader's options, as
            :func:`~tensorpot.evaluation.evaluate.evaluate_file` takes them.

    Returns:
        ``(table, predictions, profile)``: the error table of
        :func:`~tensorpot.evaluation.evaluate.evaluate_file` with the profile's
        ``relative_energy_mae`` and ``relative_energy_rmse`` (meV) added, the predictions
        and the profile.

    Raises:
        TensorPotError: as :func:`~tensorpot.evaluation.evaluate.evaluate_file`, and a
            DataError naming the file and frame without the key or a reference energy.
    """
    from tensorpot.evaluation.plots import require_matplotlib

    require_matplotlib()
    paths = profile_paths(plot)
    for path in paths:
        check_output(path, overwrite)
    coordinates = None if key is None else profile_coordinates(data_path, key)
    options = {"output": None, "parity": None, "units": None, **eval_options}
    table, predictions, configs = _evaluate_file(
        model_path, data_path, batch_size=batch_size, device=device, overwrite=overwrite,
        **options,
    )  # fmt: skip
    if coordinates is None:
        coordinates = np.arange(len(configs), dtype=np.float64)
    if len(coordinates) != len(configs):
        raise DataError(
            f"profile key {key!r} has {len(coordinates)} values for {len(configs)} frames",
            str(data_path),
        )
    profile = energy_profile(configs, predictions, coordinates, key or FRAME_ORDER)
    plot_profile(paths[0], profile, title=Path(data_path).name, overwrite=overwrite)
    atomic_write(paths[1], lambda f: f.write(profile.csv_text()), binary=False)
    atomic_write(paths[2], lambda f: f.write(profile.format() + "\n"), binary=False)
    return {**table, **profile.errors}, predictions, profile
