"""Predictions of a model on labelled configurations, their error table, and prediction files.

Energies in eV, forces in eV/Å, stress in eV/Å³ (ASE's sign, ``sigma = (1/V) dE/d(strain)``).
The error table is the one of :class:`~tensorpot.evaluation.metrics.ErrorAccumulator`
(meV, meV/atom, meV/Å, meV/Å³).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols

from tensorpot.data.batch import GraphBatch, Targets
from tensorpot.data.configuration import Configuration
from tensorpot.data.dataset import GraphDataset, iterate_batches
from tensorpot.errors import ConfigError, DataError, TensorPotError
from tensorpot.evaluation.metrics import ErrorAccumulator, num_atoms_per_graph
from tensorpot.files import atomic_write
from tensorpot.models.base import Potential, Predictions

__all__ = [
    "OutputExistsError",
    "StructurePrediction",
    "check_output",
    "evaluate",
    "evaluate_file",
    "has_periodic_cell",
    "predict",
    "write_predictions",
]


class OutputExistsError(TensorPotError, FileExistsError):
    """An output file exists and overwriting it was not asked for."""


@dataclass(frozen=True)
class StructurePrediction:
    """What a model predicts for one structure.

    Attributes:
        energy: total energy in eV.
        forces: forces ``[N, 3]`` in eV/Å.
        stress: stress ``[3, 3]`` in eV/Å³, or None when the structure has no periodic cell
            (or stress was not asked for).
        virials: virials ``[3, 3]`` in eV (``-dE/d(strain)``), when stress is there.
        dipole: ``[3]``, polarizability: ``[3, 3]``, properties: ``{name: value}``, where the
            model has those outputs (in the units of its training labels).

    ``energy`` and ``forces`` are None for a model without an energy output.
    """

    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None = None
    virials: np.ndarray | None = None
    dipole: np.ndarray | None = None
    polarizability: np.ndarray | None = None
    properties: dict[str, float] = field(default_factory=dict)


def has_periodic_cell(config: Configuration) -> bool:
    """True if ``config`` is periodic in some direction and its cell has a non-zero volume."""
    return bool(config.pbc.any()) and config.volume > 0.0


def _check_elements(model: Potential, configs: Sequence[Configuration]) -> None:
    known = set(model.atomic_numbers)
    for config in configs:
        unknown = sorted(set(config.numbers.tolist()) - known)
        if unknown:
            names = ", ".join(_symbol(z) for z in unknown)
            knows = ", ".join(_symbol(z) for z in sorted(known))
            raise config.error(f"the model does not know element(s) {names}; it knows {knows}")


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"


def _run(
    model: Potential,
    configs: Sequence[Configuration],
    batch_size: int,
    compute_stress: bool | None,
) -> Iterator[tuple[list[Configuration], GraphBatch, Targets, Predictions]]:
    """Yield ``(configs, batch, float64 targets, float64 detached predictions)`` per batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    _check_elements(model, configs)
    if compute_stress:
        for config in configs:
            if not has_periodic_cell(config):
                raise config.error("stress was asked for but the structure has no periodic cell")
    dataset = GraphDataset(configs, cutoff=model.r_max)
    was_training = model.training
    model.eval()
    try:
        start = 0
        for batch, targets, _ in iterate_batches(dataset, batch_size, dtype=torch.float64):
            chunk = list(configs[start : start + batch.num_graphs])
            start += batch.num_graphs
            stress = compute_stress is not False and any(has_periodic_cell(c) for c in chunk)
            with torch.enable_grad():
                out = model(
                    batch.to(model.device, model.dtype), compute_forces=True, compute_stress=stress
                )
            out = out.map(lambda t: t.detach().cpu().double())
            yield chunk, batch, targets, out
    finally:
        model.train(was_training)


def _split(
    chunk: list[Configuration], batch: GraphBatch, out: Predictions
) -> list[StructurePrediction]:
    counts = num_atoms_per_graph(batch.batch, batch.num_graphs).tolist()
    forces = torch.split(out.forces, counts) if out.forces is not None else None
    return [
        StructurePrediction(
            energy=None if out.energy is None else float(out.energy[b]),
            forces=None if forces is None else forces[b].numpy().copy(),
            stress=(
                out.stress[b].numpy().copy()
                if out.stress is not None and has_periodic_cell(config)
                else None
            ),
            virials=(
                out.virials[b].numpy().copy()
                if out.virials is not None and has_periodic_cell(config)
                else None
            ),
            dipole=None if out.dipole is None else out.dipole[b].numpy().copy(),
            polarizability=(
                None if out.polarizability is None else out.polarizability[b].numpy().copy()
            ),
            properties={k: float(v[b]) for k, v in (out.properties or {}).items()},
        )
        for b, config in enumerate(chunk)
    ]


def predict(
    model: Potential,
    configs: Sequence[Configuration],
    batch_size: int = 10,
    compute_stress: bool | None = None,
) -> list[StructurePrediction]:
    """Energies, forces and (for periodic cells) stress of ``configs``, in their order.

    Args:
        model: the potential; it runs in eval mode on its own device and dtype (its training
            flag is restored afterwards).
        configs: the structures (labels are not used).
        batch_size: structures per forward pass.
        compute_stress: None for stress on every structure with a periodic cell, False for no
            stress, True to demand it (every structure must then have a periodic cell).

    Returns:
        One :class:`StructurePrediction` per configuration.

    Raises:
        DataError: naming the file and frame, for an element the model does not know (or,
            with ``compute_stress=True``, a structure without a periodic cell).
    """
    results: list[StructurePrediction] = []
    for chunk, batch, _, out in _run(model, configs, batch_size, compute_stress):
        results.extend(_split(chunk, batch, out))
    return results


def evaluate(
    model: Potential, configs: Sequence[Configuration], batch_size: int = 10
) -> tuple[dict[str, float], list[StructurePrediction]]:
    """The error table of ``model`` on labelled ``configs``, and its predictions.

    Energy errors count every structure with an energy label; force errors every force
    component; stress and virial errors the batches in which every structure has such a label
    and a periodic cell. Unlabelled structures are predicted and leave the table empty.

    Returns:
        ``(table, predictions)``: the table maps metric names (``energy_mae``,
        ``energy_rmse_per_atom``, ``forces_rmse``, ...) to values in meV units.

    Raises:
        DataError: naming the file and frame, for an element the model does not know.
    """
    acc = ErrorAccumulator(model.extensive_properties)
    results: list[StructurePrediction] = []
    for chunk, batch, targets, out in _run(model, configs, batch_size, None):
        results.extend(_split(chunk, batch, out))
        if not all(has_periodic_cell(c) for c in chunk):
            out = out._replace(stress=None, virials=None)
        acc.update(out, targets, num_atoms_per_graph(batch.batch, batch.num_graphs))
    return acc.table(), results


def _with_prediction(atoms: Atoms, prediction: StructurePrediction) -> Atoms:
    """``atoms`` with the predictions added as ``tensorpot_*`` keys (eV, eV/Å, eV/Å³; the
    other outputs in their training labels' units)."""
    info = {
        "tensorpot_energy": prediction.energy,
        "tensorpot_stress": prediction.stress,
        "tensorpot_virials": prediction.virials,
        "tensorpot_dipole": prediction.dipole,
        "tensorpot_polarizability": prediction.polarizability,
    }
    for key, value in info.items():
        if value is not None:
            atoms.info[key] = value if key == "tensorpot_energy" else np.asarray(value, float)
    for name, value in prediction.properties.items():
        atoms.info[f"tensorpot_{name}"] = value
    if prediction.forces is not None:
        atoms.arrays["tensorpot_forces"] = np.asarray(prediction.forces, dtype=np.float64)
    return atoms


def _input_frame(atoms: Atoms, prediction: StructurePrediction) -> Atoms:
    """A copy of an input frame, every key it had kept, with the predictions added."""
    copied = atoms.copy()  # copies info and arrays, not the calculator
    if atoms.calc is not None and atoms.calc.results:
        results = {k: copy.deepcopy(v) for k, v in atoms.calc.results.items()}
        copied.calc = SinglePointCalculator(copied, **results)
    return _with_prediction(copied, prediction)


def _atoms(config: Configuration, prediction: StructurePrediction) -> Atoms:
    atoms = config.structure()
    labels: dict[str, Any] = {}
    if config.energy is not None:
        labels["energy"] = config.energy
    if config.forces is not None:
        labels["forces"] = np.array(config.forces)
    if config.stress is not None:
        labels["stress"] = np.array(config.stress)
    if labels:
        atoms.calc = SinglePointCalculator(atoms, **labels)
    if config.config_type != "Default":
        atoms.info["config_type"] = config.config_type
    return _with_prediction(atoms, prediction)


def check_output(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as a Path; raises :class:`OutputExistsError` if it exists and not ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; refusing to overwrite it")
    return path


def write_predictions(
    path: str | os.PathLike,
    configs: Sequence[Configuration],
    predictions: Sequence[StructurePrediction],
    overwrite: bool = False,
    inputs: Sequence[Atoms] | None = None,
) -> Path:
    """Write structures, reference labels and predictions to an extended-XYZ file atomically.

    With ``inputs`` (the frames as read from an extended-XYZ file) every frame keeps all its
    keys, names and units as they were; without, it gets its reference labels as ``energy``,
    ``forces`` (and ``stress``) in eV units. Either way ``tensorpot_energy``,
    ``tensorpot_stress`` and ``tensorpot_virials`` (when predicted) are added to the frame info
    and ``tensorpot_forces`` to the per-atom arrays, in eV, eV/Å, eV/Å³ and eV.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: ``configs``, ``predictions`` (and ``inputs``) differ in length.
    """
    path = check_output(path, overwrite)
    if len(configs) != len(predictions):
        raise ValueError(f"{len(configs)} configurations but {len(predictions)} predictions")
    if inputs is not None and len(inputs) != len(predictions):
        raise ValueError(f"{len(inputs)} input frames but {len(predictions)} predictions")
    if inputs is not None:
        frames = [_input_frame(a, p) for a, p in zip(inputs, predictions)]
    else:
        frames = [_atoms(c, p) for c, p in zip(configs, predictions)]
    write = lambda handle: ase.io.write(handle, frames, format="extxyz")  # noqa: E731
    return atomic_write(path, write, binary=False)


def _check_labelled_alike(configs: Sequence[Configuration], keys: dict[str, Any]) -> None:
    """Energies and forces must label every frame or none: a frame missing a label that the
    others have is a broken file, not an unlabelled one (its errors would go uncounted)."""
    for name in ("energy", "forces"):
        have = [getattr(c, name) is not None for c in configs]
        if any(have) and not all(have):
            config = configs[have.index(False)]
            if name == "forces" and config.n_atoms == 1:
                continue
            first = configs[have.index(True)].source[1]
            raise config.error(
                f"missing {name} key {keys.get(f'{name}_key', name)!r}, which frame {first} "
                "and others have: label every frame or none"
            )


def evaluate_file(
    model_path: str | os.PathLike,
    data_path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    parity: str | os.PathLike | None = None,
    batch_size: int = 10,
    device: str = "cpu",
    overwrite: bool = False,
    units: dict[str, str] | None = None,
    **reader_options: Any,
) -> tuple[dict[str, float], list[StructurePrediction]]:
    """Load a model file, evaluate it on a data file, and optionally write predictions/plot.

    Output paths are checked before any work is done. Labels are optional: unlabelled
    structures are predicted (and written with ``output``) and give an empty table. The
    predictions of an extended-XYZ file are written beside every key of its frames.

    Args:
        model_path: a file written by :func:`tensorpot.save_model`.
        data_path: a data file for :func:`tensorpot.data.readers.read_configurations`.
        output: extended-XYZ file for :func:`write_predictions`, or None.
        parity: PNG file for :func:`tensorpot.evaluation.plots.plot_parity`, or None.
        batch_size: structures per forward pass.
        device: torch device to evaluate on.
        overwrite: replace existing output files.
        units: the units of the labels of the other outputs (``{"dipole": "D"}``), for the
            parity plot.
        **reader_options: ``energy_key``, ``energy_unit``, ``virials_key``, ... for the reader.

    Returns:
        ``(table, predictions)`` as :func:`evaluate` returns them.

    Raises:
        TensorPotError: for a bad model file, bad data (DataError, naming file and frame),
            a stress key that names virials, a device this machine lacks, or an output file
            that exists.
    """
    table, predictions, _ = _evaluate_file(
        model_path, data_path, output, parity, batch_size, device, overwrite, units,
        **reader_options,
    )  # fmt: skip
    return table, predictions


def _evaluate_file(
    model_path: str | os.PathLike, data_path: str | os.PathLike, output: Any, parity: Any,
    batch_size: int, device: str, overwrite: bool, units: Any, **reader_options: Any,
) -> tuple[dict[str, float], list[StructurePrediction], list[Configuration]]:  # fmt: skip
    """:func:`evaluate_file`, returning the configurations read as well."""
    from tensorpot.data.readers import read_configurations, read_extxyz_atoms
    from tensorpot.devices import resolve_device
    from tensorpot.models.io import load_model

    stress_key = str(reader_options.get("stress_key", ""))
    if stress_key.lower().startswith("virial"):
        raise ConfigError(
            f"stress key {stress_key!r} names virials (eV), not stress (eV/Å³): "
            f"give it as the virials key (--virials-key {stress_key})"
        )
    device = resolve_device(device)
    extxyz = Path(data_path).suffix.lower() in (".xyz", ".extxyz")
    if extxyz:  # predicting is the main use: labels are optional
        reader_options = {"require_energy": False, "require_forces": False, **reader_options}
    if output is not None:
        check_output(output, overwrite)
    if parity is not None:
        from tensorpot.evaluation.plots import require_matplotlib

        require_matplotlib()
        check_output(parity, overwrite)
    model = load_model(model_path, device=device)
    configs = read_configurations(data_path, **reader_options)
    if extxyz:
        _check_labelled_alike(configs, reader_options)
    if parity is not None and not any(c.label_names() for c in configs):
        raise DataError("no labels to plot a parity plot of", str(data_path))
    table, predictions = evaluate(model, configs, batch_size=batch_size)
    if output is not None:
        inputs = read_extxyz_atoms(data_path) if extxyz else None
        write_predictions(output, configs, predictions, overwrite=overwrite, inputs=inputs)
    if parity is not None:
        from tensorpot.evaluation.plots import plot_parity_predictions

        plot_parity_predictions(parity, configs, predictions, overwrite=overwrite, units=units)
    return table, predictions, configs
