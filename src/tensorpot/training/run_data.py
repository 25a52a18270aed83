"""The data and model statistics of a training run (:func:`tensorpot.training.train`).

- data: the training file (isolated-atom frames set apart for E0s), a validation file or a
  seeded split, optional caps and test files, each turned into a :class:`GraphDataset` (or
  streamed from an LMDB store, :class:`GraphStore`);
- the model mapping: elements, E0s, average number of neighbours, scale and shift from the
  training set unless the ``model`` mapping gives them, and the shift and scale of property
  outputs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase.data import chemical_symbols

from tensorpot.config import RunConfig
from tensorpot.data.configuration import PROPERTY_PREFIX, Configuration
from tensorpot.data.dataset import GraphDataset
from tensorpot.data.readers import read_configurations
from tensorpot.data.split import split_indices, split_train_valid, subset_indices, take_subset
from tensorpot.data.statistics import (
    is_isolated_atom,
    mean_per_atom_residual_and_force_rms,
    resolve_e0s,
)
from tensorpot.data.store import GraphStore, is_store
from tensorpot.data.stream_statistics import StreamStatistics
from tensorpot.data.units import energy_factor
from tensorpot.errors import ConfigError, DataError
from tensorpot.models.build import validate_model_config

logger = logging.getLogger("tensorpot.training")

#: Statistics of the training set a family's config may take (a field of that name).
STATISTICS = {"avg_num_neighbors": lambda data: data.train.average_num_neighbors()}
_NPZ_KEYS = ("energy_unit", "energy_key", "forces_key")
_EXTXYZ_KEYS = (
    "energy_key", "forces_key", "stress_key", "virials_key", "energy_unit", "dipole_key",
    "polarizability_key", "total_charge_key", "property_keys",
)  # fmt: skip

#: the label each output is trained on, by the output's name
_OUTPUT_LABELS = {"energy": "energy", "dipole": "dipole", "polarizability": "polarizability"}


def read_data_file(path: str, config: RunConfig, **extra: Any) -> list[Configuration]:
    """Read one data file with the run's keys (npz files get only the keys set explicitly).

    Energies (and forces, when they are weighted) are required of every frame when the model
    has an energy output; the other labels are optional per frame. ``extra`` goes to the
    reader (``index`` for an extended-XYZ file).
    """
    if Path(path).suffix.lower() == ".npz":
        keys = {k: getattr(config, k) for k in _NPZ_KEYS if k in config.model_fields_set}
        return read_configurations(path, **keys)
    keys = {k: getattr(config, k) for k in _EXTXYZ_KEYS}
    if Path(path).suffix.lower() == ".db" and "energy_unit" not in config.model_fields_set:
        keys.pop("energy_unit")  # the database's own unit, which its reader checks
    cfg = validate_model_config(config.model)
    # every property output's label: under its own key unless property_keys names another
    keys["property_keys"] = {
        **{p.property: p.property for p in cfg.properties},
        **config.property_keys,
    }
    energy = "energy" in cfg.output_names
    keys["require_energy"] = energy
    keys["require_forces"] = energy and config.forces_weight > 0
    return read_configurations(path, **keys, **extra)


def output_label_key(config: RunConfig, output: str) -> str:
    """The data key of the label an output (``"dipole"``, ``"property:gap"``) is trained on."""
    if output.startswith(PROPERTY_PREFIX):
        name = output.removeprefix(PROPERTY_PREFIX)
        return config.property_keys.get(name, name)
    return getattr(config, f"{_OUTPUT_LABELS[output]}_key")


def check_labels(config: RunConfig, output_names: list[str], train: GraphDataset) -> None:
    """Raise DataError when an output has no label in any training frame, naming the file,
    the first frame and the key."""
    counts = train.label_counts()
    for output in output_names:
        if counts.get(output, 0) == 0:
            first = train[0].config
            raise first.error(
                f"the model has a {output.removeprefix(PROPERTY_PREFIX)!r} output but no "
                f"training frame has its label (key {output_label_key(config, output)!r}); "
                "give the key of the label, or drop the output"
            )


@dataclass
class RunData:
    """The graphs of a run: training, validation and test sets, and the isolated atoms."""

    train: GraphDataset | GraphStore
    valid: GraphDataset | GraphStore
    tests: dict[str, GraphDataset | GraphStore]
    isolated: list[Configuration] = field(default_factory=list)

    def check_elements(self, atomic_numbers: Sequence[int]) -> None:
        """Raise DataError, naming the file, frame and element, if a set has an unknown element.

        Checked before anything is computed per element (E0s, statistics), so a model config
        that lacks an element of the data says so rather than failing on a derived value.
        """
        given = [int(z) for z in atomic_numbers]
        known = set(given)
        for name, dataset in {"train": self.train, "valid": self.valid, **self.tests}.items():
            if isinstance(dataset, GraphStore):
                extra = sorted(set(dataset.elements()) - known)
                if extra:
                    symbols = ", ".join(chemical_symbols[z] for z in extra)
                    raise DataError(
                        f"{name} set: element(s) {symbols} not in the model's atomic_numbers "
                        f"{given}", str(dataset.path)
                    )  # fmt: skip
                continue
            for config in dataset.configs:
                extra = sorted(set(config.numbers.tolist()) - known)
                if extra:
                    symbols = ", ".join(chemical_symbols[z] for z in extra)
                    what = f"element {symbols} is" if len(extra) == 1 else f"elements {symbols} are"
                    raise config.error(
                        f"{name} set: {what} not in the model's atomic_numbers {given}"
                    )


def _test_names(paths: list[str]) -> list[str]:
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else f"{s}_{k}" for k, s in enumerate(stems)]


def _data_set(path: str, config: RunConfig, r_max: float) -> GraphDataset | GraphStore:
    """A store (read as it is streamed) or a data file (read and graphed now)."""
    if is_store(path):
        return GraphStore(path, r_max)
    return GraphDataset(read_data_file(path, config), r_max)


def _store_data(config: RunConfig, r_max: float) -> RunData:
    """The sets of a run whose ``train_file`` is a store: the same split and caps as for a
    file, as positions in the store; the isolated atoms marked when it was written."""
    store = GraphStore(config.train_file, r_max)
    isolated_at = np.asarray(store.meta.get("isolated", []), dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(store)), isolated_at)
    if config.valid_file is not None and is_store(config.valid_file):
        train_at, valid = rest, _capped_store(config.valid_file, config, r_max)
    elif config.valid_file is not None:
        configs = read_data_file(config.valid_file, config)
        cap = config.max_valid_frames
        if cap is not None and len(configs) > cap:
            configs = take_subset(configs, cap, config.seed)
        train_at, valid = rest, GraphDataset(configs, r_max)
    else:
        train_part, valid_part = split_indices(len(rest), config.valid_fraction, config.seed)
        train_at, valid_at = rest[train_part], rest[valid_part]
        if config.max_valid_frames is not None and len(valid_at) > config.max_valid_frames:
            valid_at = valid_at[subset_indices(len(valid_at), config.max_valid_frames, config.seed)]
        valid = store.subset(valid_at)
    if config.max_train_frames is not None and len(train_at) > config.max_train_frames:
        train_at = train_at[subset_indices(len(train_at), config.max_train_frames, config.seed)]
    isolated = [store[int(i)].config for i in isolated_at]
    return RunData(store.subset(train_at), valid, {}, isolated)


def prepare_data(config: RunConfig, model_config: dict[str, Any] | None = None) -> RunData:
    """Read, split, cap and graph the data of a run (cutoff from the model's ``r_max``).

    A ``train_file``, ``valid_file`` or test file that is a store (``.lmdb``, written by
    ``tensorpot preprocess``) is not read here but streamed during training."""
    factor = energy_factor(config.energy_unit)
    if factor != 1.0:
        logger.info("energies in %s: multiplied by %.10g to get eV", config.energy_unit, factor)
    r_max = validate_model_config(model_config or config.model).r_max
    if is_store(config.train_file):
        data = _store_data(config, r_max)
        data.tests.update(
            (name, _data_set(path, config, r_max))
            for name, path in zip(_test_names(config.test_files), config.test_files)
        )
        logger.info(
            "frames: %d training, %d validation%s, %d isolated-atom (streamed from %s)",
            len(data.train), len(data.valid),
            "".join(f", {len(d)} test ({name})" for name, d in data.tests.items()),
            len(data.isolated), config.train_file,
        )  # fmt: skip
        return data
    everything = read_data_file(config.train_file, config)
    isolated = [c for c in everything if is_isolated_atom(c)]
    train = [c for c in everything if not is_isolated_atom(c)]
    if config.valid_file is not None and is_store(config.valid_file):
        valid: list[Configuration] | GraphStore = _capped_store(config.valid_file, config, r_max)
    elif config.valid_file is not None:
        valid = read_data_file(config.valid_file, config)
    else:
        train, valid = split_train_valid(train, config.valid_fraction, config.seed)
    if config.max_train_frames is not None and len(train) > config.max_train_frames:
        train = take_subset(train, config.max_train_frames, config.seed)
    if isinstance(valid, list) and config.max_valid_frames is not None:
        if len(valid) > config.max_valid_frames:
            valid = take_subset(valid, config.max_valid_frames, config.seed)
    if not train or not len(valid):
        raise DataError("the training and the validation set must each have a structure")
    tests = {
        name: _data_set(path, config, r_max)
        for name, path in zip(_test_names(config.test_files), config.test_files)
    }
    test_counts = "".join(f", {len(d)} test ({name})" for name, d in tests.items())
    logger.info(
        "frames: %d training, %d validation%s, %d isolated-atom",
        len(train), len(valid), test_counts, len(isolated),
    )  # fmt: skip
    valid_set = valid if isinstance(valid, GraphStore) else GraphDataset(valid, r_max)
    return RunData(GraphDataset(train, r_max), valid_set, tests, isolated)


def _capped_store(path: str, config: RunConfig, r_max: float) -> GraphStore:
    """A validation store, cut to ``max_valid_frames`` as a validation file would be."""
    store = GraphStore(path, r_max)
    cap = config.max_valid_frames
    return (
        store.subset(subset_indices(len(store), cap, config.seed))
        if cap and len(store) > cap
        else store
    )


def model_dict(config: RunConfig, data: RunData) -> dict[str, Any]:
    """The ``build_model`` mapping with elements, E0s and statistics filled in from the data."""
    if isinstance(data.train, GraphStore):
        return _streamed_model_dict(config, data)
    model = dict(config.model)
    train = data.train.configs
    if "atomic_numbers" not in model:
        numbers = {int(z) for c in [*train, *data.isolated] for z in c.numbers}
        model["atomic_numbers"] = sorted(numbers)
    data.check_elements(model["atomic_numbers"])  # before E0s, which are needed per element
    if "E0s" in model and config.E0s is not None:
        raise ConfigError("E0s: given both as a run key and as model.E0s; give it once")
    if "E0s" not in model:
        e0s = resolve_e0s(config.E0s, [*train, *data.isolated], model["atomic_numbers"])
        model["E0s"] = e0s
    model.setdefault("seed", config.seed)
    if "outputs" in model:
        model["outputs"] = property_statistics(list(model["outputs"]), train)
    cfg = validate_model_config(model)
    if config.compute_avg_num_neighbors:  # the statistics the family's config has fields for
        for key, statistic in STATISTICS.items():
            if key in type(cfg).model_fields and key not in model:
                model[key] = statistic(data)
    wants_shift = "atomic_inter_shift" not in model
    wants_scale = "atomic_inter_scale" not in model
    has_energy = "energy" in cfg.output_names
    if config.compute_scale_shift and has_energy and (wants_shift or wants_scale):
        e0s = dict(zip(cfg.atomic_numbers, cfg.e0_list() or [0.0] * len(cfg.atomic_numbers)))
        shift, scale = mean_per_atom_residual_and_force_rms(train, e0s)
        if wants_shift:
            model["atomic_inter_shift"] = shift
        if wants_scale:
            model["atomic_inter_scale"] = scale
    return validate_model_config(model).model_dump(mode="json")


def _streamed_model_dict(config: RunConfig, data: RunData) -> dict[str, Any]:
    """:func:`model_dict` for a training set in a store: the statistics from one pass."""
    logger.info("statistics: one pass over %d training structures", len(data.train))
    stats = StreamStatistics.of(data.train)
    model = dict(config.model)
    if "atomic_numbers" not in model:
        isolated = {int(z) for c in data.isolated for z in c.numbers}
        model["atomic_numbers"] = sorted(stats.elements | isolated)
    data.check_elements(model["atomic_numbers"])
    if "E0s" in model and config.E0s is not None:
        raise ConfigError("E0s: given both as a run key and as model.E0s; give it once")
    if "E0s" not in model:
        model["E0s"] = stats.e0s(config.E0s, model["atomic_numbers"], data.isolated)
    model.setdefault("seed", config.seed)
    if "outputs" in model:
        model["outputs"] = stats.property_outputs(list(model["outputs"]))
    cfg = validate_model_config(model)
    if config.compute_avg_num_neighbors and "avg_num_neighbors" in type(cfg).model_fields:
        model.setdefault("avg_num_neighbors", stats.average_num_neighbors())
    wanted = [k for k in ("atomic_inter_shift", "atomic_inter_scale") if k not in model]
    if config.compute_scale_shift and "energy" in cfg.output_names and wanted:
        e0s = dict(zip(cfg.atomic_numbers, cfg.e0_list() or [0.0] * len(cfg.atomic_numbers)))
        values = dict(zip(("atomic_inter_shift", "atomic_inter_scale"), stats.shift_and_scale(e0s)))
        model.update({k: values[k] for k in wanted})
    return validate_model_config(model).model_dump(mode="json")


def property_statistics(outputs: list, train: list[Configuration]) -> list:
    """``outputs`` with ``shift`` and ``scale`` filled in from the training labels for every
    property output that does not give them: the mean and spread of the label per atom
    (``"sum"``) or per structure (``"mean"``)."""
    filled = []
    for output in outputs:
        if not isinstance(output, dict) or "property" not in output:
            filled.append(output)
            continue
        name, per_atom = output["property"], output.get("reduction", "sum") == "sum"
        values = [c.properties[name] / (c.n_atoms if per_atom else 1)
                  for c in train if name in c.properties]  # fmt: skip
        output = dict(output)
        if values:
            mean = sum(values) / len(values)
            spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
            output.setdefault("shift", mean)
            output.setdefault("scale", spread if spread > 0 else 1.0)
        filled.append(output)
    return filled
