"""The run configuration of ``tensorpot train``: one pydantic model, keys named as MACE's flags.

A run is described by a YAML file whose keys are the fields of :class:`RunConfig` (MACE's
training-flag names where MACE has one) plus a ``model:`` mapping for
:func:`tensorpot.build_model`. :func:`load_run_config` reads it, applies ``key=value``
overrides and reports every problem as one :class:`~tensorpot.errors.ConfigError` line that
names the key or the file.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from ase.data import chemical_symbols
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tensorpot.data.units import energy_factor
from tensorpot.devices import resolve_device
from tensorpot.errors import ConfigError
from tensorpot.models.build import validate_model_config
from tensorpot.models.registry import DEFAULT_FAMILY

__all__ = ["RunConfig", "load_run_config", "parse_run_config"]

PATH_KEYS = ("train_file", "valid_file", "test_files", "output_dir", "init_model")


class RunConfig(BaseModel):
    """Everything a training run needs; frozen once validated.

    Paths are kept as given (``load_run_config`` makes the YAML ones relative to the YAML
    file's folder); data files must exist when the config is validated. ``model`` is the
    :func:`tensorpot.build_model` mapping: its ``atomic_numbers`` default to the elements of
    the training set, its ``E0s``, ``avg_num_neighbors``, ``atomic_inter_scale`` and
    ``atomic_inter_shift`` to values computed from the training set, its ``seed`` to the run's
    ``seed``, and its ``dtype`` is the training dtype.

    ``E0s`` is ``{Z or symbol: eV}``, ``"average"`` (least squares on the training set),
    ``"isolated"`` (the IsolatedAtom frames of the training file) or null (zeros); ``model.E0s``
    may be given instead. Keys and ``energy_unit`` reach ``.npz`` readers only when set
    explicitly, so rMD17 files keep their own defaults (``energies``, kcal/mol).

    The model's ``outputs`` choose what is trained: ``dipole_key``, ``polarizability_key`` and
    ``property_keys`` (``{property name: key}``) name the labels of the dipole, polarizability
    and property outputs, ``dipole_weight``, ``polarizability_weight`` and ``property_weights``
    their loss weights (MACE's names); ``units`` names the labels' units in the error tables
    (``{"dipole": "D", "gap": "eV"}``; labels are never converted).

    The optimiser is Adam (``optimizer: adamw``: AdamW, decoupled weight decay), with
    ``amsgrad`` and ``weight_decay`` for either. ``lr_warmup_steps`` > 0 ramps the lr linearly
    over the first optimiser steps of the run (the step count is checkpointed); the plateau
    scheduler (``scheduler_patience``, ``lr_factor``, down to ``min_lr``) steps once per
    validation as always. ``energy_loss_smoothing`` (the ``loss_scale_y`` of
    torchmd-net-style training codes) smooths the energy term of the loss over batches: see
    :class:`~tensorpot.training.loss.EnergyLossSmoothing`. The defaults leave all three off.

    ``device`` must exist on this machine (checked here, so a run without CUDA stops before any
    data is read). A checkpoint is written every ``checkpoint_interval`` epochs, at the last
    epoch, after ``checkpoint_minutes`` of training since the previous one, and after the first
    best model of a run, so a killed run can nearly always be resumed. The set-up facts and one
    line per epoch go to ``<output_dir>/train.log`` and, unless ``log_to_stdout`` is false, to
    stdout; the progress bar (``progress_bar``) is drawn only when stderr is a terminal.

    ``train_file``, ``valid_file`` and ``test_files`` may be stores written by ``tensorpot
    preprocess`` (``.lmdb``), streamed by ``num_workers`` loader processes; ``batch_size`` is
    the global batch of a data-parallel run (``torchrun``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    train_file: str
    valid_file: str | None = None
    valid_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    test_files: list[str] = Field(default_factory=list)
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virials_key: str = "virials"
    energy_unit: str = "eV"
    dipole_key: str = "dipole"
    polarizability_key: str = "polarizability"
    total_charge_key: str = "total_charge"
    property_keys: dict[str, str] = Field(default_factory=dict)
    E0s: Any = None
    batch_size: int = Field(10, ge=1)
    valid_batch_size: int = Field(10, ge=1)
    max_num_epochs: int = Field(100, ge=1)
    lr: float = Field(0.01, gt=0.0)
    optimizer: Literal["adam", "adamw"] = Field(
        "adam",
        description="'adam': torch.optim.Adam, weight decay added to the gradient (L2); 'adamw': "
        "torch.optim.AdamW, decoupled weight decay. weight_decay (on the parameters the family's "
        "WEIGHT_DECAY names) and amsgrad apply to both",
    )
    weight_decay: float = Field(5e-7, ge=0.0)
    amsgrad: bool = True
    lr_warmup_steps: int = Field(
        0,
        ge=0,
        description="linear warm-up: optimiser step k (from 0, counted over the whole run, "
        "resumes included) uses lr * min(1, (k + 1) / lr_warmup_steps); 0: none",
    )
    scheduler_patience: int = Field(50, ge=0)
    lr_factor: float = Field(0.8, gt=0.0, lt=1.0)
    min_lr: float = Field(0.0, ge=0.0, description="the lowest lr ReduceLROnPlateau goes to")
    energy_weight: float = Field(1.0, ge=0.0)
    forces_weight: float = Field(100.0, ge=0.0)
    stress_weight: float = Field(1.0, ge=0.0)
    virials_weight: float = Field(1.0, ge=0.0)
    dipole_weight: float = Field(1.0, ge=0.0)
    polarizability_weight: float = Field(1.0, ge=0.0)
    energy_loss_smoothing: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="a: the energy term of every batch's loss becomes a * L_E + (1 - a) * "
        "(previous batch's smoothed L_E, detached), a torchmd-net-style loss_scale_y; one chain "
        "for training and one for validation, each kept across epochs; the validation loss is then "
        "the mean over batches. The energy MSE's gradient weight is energy_weight * a; null: off",
    )
    property_weights: dict[str, float] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict)
    ema: bool = True
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0)
    clip_grad: float | None = Field(10.0, gt=0.0)
    stage_two: bool = False
    start_stage_two: int | None = Field(None, ge=0)
    stage_two_energy_weight: float = Field(1000.0, ge=0.0)
    stage_two_forces_weight: float = Field(100.0, ge=0.0)
    stage_two_lr: float = Field(1e-3, gt=0.0)
    seed: int = 123
    name: str = Field("model", min_length=1)
    output_dir: str | None = None
    eval_interval: int = Field(1, ge=1)
    checkpoint_interval: int = Field(10, ge=1)
    checkpoint_minutes: float = Field(10.0, gt=0.0)
    threads: int | None = Field(None, ge=1)
    device: str = "cpu"
    num_workers: int = Field(
        2,
        ge=0,
        description="processes that read and collate the batches of a data store (.lmdb, "
        "streamed); 0: read in the training process. Data read from a file stay in memory and "
        "use none",
    )
    max_train_frames: int | None = Field(None, ge=1)
    max_valid_frames: int | None = Field(None, ge=1)
    compute_avg_num_neighbors: bool = True
    compute_scale_shift: bool = True
    time_budget_minutes: float | None = Field(None, gt=0.0)
    progress_bar: bool = True
    log_to_stdout: bool = True
    init_model: str | None = Field(
        None,
        description="a tensorpot model file to start from: its architecture, statistics (E0s, "
        "scale, shift, average neighbour count) and weights; the optimiser, EMA and learning "
        "rate start afresh (fine-tuning, or continuing a run whose checkpoints are lost). Keys "
        "given under model must agree with the file's. Ignored when a run resumes",
    )
    model: dict[str, Any] = Field(default_factory=lambda: {"model": DEFAULT_FAMILY})

    @field_validator("train_file", "valid_file")
    @classmethod
    def _file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return value

    @field_validator("test_files")
    @classmethod
    def _files_exist(cls, value: list[str]) -> list[str]:
        for item in value:
            if not Path(item).is_file():
                raise ValueError(f"file not found: {item}")
        return value

    @field_validator("E0s")
    @classmethod
    def _e0_spec(cls, value: object) -> object:
        problem = "must be a mapping {Z or symbol: eV}, 'average', 'isolated' or null"
        if value is None:
            return None
        if isinstance(value, str):
            if value.strip().lower() not in ("average", "isolated"):
                raise ValueError(f"{problem}, got {value!r}")
            return value.strip().lower()
        if not isinstance(value, Mapping):
            raise ValueError(f"{problem}, got {value!r}")
        out: dict[int | str, float] = {}
        for key, energy in value.items():
            if not _is_element(key):
                raise ValueError(f"key {key!r} is neither an atomic number nor a symbol")
            if isinstance(energy, bool) or not isinstance(energy, (int, float)):
                raise ValueError(f"the E0 of {key!r} must be a number, got {energy!r}")
            out[key] = float(energy)
        return out

    @field_validator("energy_unit")
    @classmethod
    def _known_unit(cls, value: str) -> str:
        try:
            energy_factor(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("device")
    @classmethod
    def _available_device(cls, value: str) -> str:
        try:
            resolve_device(value)
        except ConfigError as err:  # "device 'cuda': ..." -> "device: 'cuda': ..." after the key
            raise ValueError(str(err).removeprefix("device ")) from None
        return value

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or "\\" in value or value in (".", ".."):
            raise ValueError(f"must be a plain file name without folders, got {value!r}")
        return value

    @field_validator("model", mode="before")
    @classmethod
    def _model_family(cls, value: object) -> object:
        if isinstance(value, Mapping):
            return {"model": DEFAULT_FAMILY, **value}
        return value

    @field_validator("model")
    @classmethod
    def _valid_model(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            validate_model_config(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return value

    @property
    def run_dir(self) -> Path:
        """The output folder: ``output_dir``, or ``runs/<name>`` when it is not set."""
        return Path(self.output_dir) if self.output_dir is not None else Path("runs") / self.name

    @property
    def stage_two_start(self) -> int:
        """Number of epochs trained before stage two (default: 75% of ``max_num_epochs``)."""
        if self.start_stage_two is not None:
            return self.start_stage_two
        return self.max_num_epochs * 3 // 4


def _is_element(key: object) -> bool:
    """Whether an E0s key is an atomic number (1..118, maybe as digits) or an element symbol."""
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return 1 <= key <= 118
    return isinstance(key, str) and key.strip() in chemical_symbols[1:]


def _error_line(err: ValidationError) -> str:
    """The first problem of a pydantic error as ``key.path: message``, plus a count of others."""
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        guess = difflib.get_close_matches(str(first["loc"][0]), RunConfig.model_fields, n=1)
        msg = "unknown key" + (f" (did you mean {guess[0]!r}?)" if guess else "")
    elif first["type"] == "missing":
        msg = "required key is missing"
    elif where == "model" and first["type"] == "value_error":
        rest = msg.replace("Value error, ", "").replace(
            "Extra inputs are not permitted", "unknown key"
        )
        if rest.startswith("model config: model: "):  # a check across keys of the model mapping
            return f"model: {rest.removeprefix('model config: model: ')}"
        return f"model.{rest.removeprefix('model config: ')}"
    elif first["type"] != "value_error" and not isinstance(first.get("input"), (dict, list)):
        msg += f" (got {first.get('input')!r})"
    more = f"; {err.error_count() - 1} more problem(s)" if err.error_count() > 1 else ""
    return f"{where}: {msg}{more}"


def parse_run_config(data: Mapping[str, Any] | RunConfig) -> RunConfig:
    """Validate a mapping into a :class:`RunConfig` (a RunConfig is returned as it is).

    Raises:
        ConfigError: one line naming the first bad key.
    """
    if isinstance(data, RunConfig):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"a run config must be a mapping, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_error_line(err)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{line}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config file ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {kind}")
    return data


def _relative_to(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make the relative paths of ``data`` relative to ``folder`` (other values untouched)."""

    def resolve(value: object) -> object:
        if isinstance(value, str) and not os.path.isabs(value):
            return str(folder / value)
        return value

    out = dict(data)
    for key in PATH_KEYS:
        if key not in out or out[key] is None:
            continue
        value = out[key]
        is_list = isinstance(value, list)
        out[key] = [resolve(v) for v in value] if is_list else resolve(value)
    return out


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``key=value`` (``a.b=value`` for nested keys) to ``data`` in place.

    The value is parsed as YAML (``16`` is an int, ``null`` is None, ``[8, 8]`` a list).

    Raises:
        ConfigError: for a malformed override, naming it.
    """
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {override!r}: expected key=value (a.b=value when nested)")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"{key}: cannot parse the value {text!r} of the override") from None
    *parents, leaf = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"{key}: {where} is not a mapping, it cannot have sub-keys")
        node[part] = child = dict(child)
        node = child
    node[leaf] = value


def load_run_config(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a run config from YAML, apply ``key=value`` overrides and validate it.

    Relative paths in the YAML file are taken relative to its folder; paths given in
    overrides relative to the working directory.

    Args:
        path: the YAML file, or None to build the config from the overrides alone.
        overrides: ``key=value`` strings, e.g. ``max_num_epochs=5`` or ``model.num_channels=16``.

    Raises:
        ConfigError: one line naming the file or the key (unknown key, wrong type, missing
            file, bad YAML).
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        data = _relative_to(_read_yaml(path), path.parent)
    for override in overrides:
        apply_override(data, override)
    return parse_run_config(data)
