"""``train``: one training run from a :class:`~tensorpot.config.RunConfig`, resumable exactly.

The run reads the data (:mod:`tensorpot.training.run_data`), builds the model with statistics of
the training set, and trains with AMSGrad Adam, ReduceLROnPlateau on the validation loss, an EMA
of the weights and MACE's weighted loss (the papers' training protocol) by default; AdamW, a
linear lr warm-up and a smoothed energy loss are options of the run config. Shuffling uses a
generator seeded from ``(seed, epoch)``, so every epoch is reproducible on its own and a resumed
run reaches the same weights as an uninterrupted one. The best validation model (EMA weights) is
saved as ``<output_dir>/<name>.model``; checkpoints go to ``<output_dir>/checkpoints``, by epoch
count, by time (``checkpoint_minutes``) and after the first best model, so that a killed run
leaves something to resume from. The set-up facts and one line per epoch go to
``<output_dir>/train.log`` and stdout (:func:`~tensorpot.training.logs.run_log`).

Under ``torchrun`` the run is data-parallel (:mod:`tensorpot.training.distributed`): every
process trains on its share of each global batch of ``batch_size`` structures, the gradients
are summed over the processes, and rank 0 alone computes the data-set statistics and writes
the model, checkpoints, logs and error tables.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from tensorpot import __version__
from tensorpot.config import RunConfig, parse_run_config
from tensorpot.data.dataset import GraphDataset
from tensorpot.devices import resolve_device
from tensorpot.errors import TensorPotError
from tensorpot.evaluation.metrics import format_error_table
from tensorpot.models import Potential, build_model, load_model, save_model
from tensorpot.signals import StopRequest, stop_on_signals
from tensorpot.training.checkpoint import (
    checkpoint_path,
    get_rng_state,
    list_checkpoints,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    set_rng_state,
)
from tensorpot.training.distributed import SINGLE, World, join
from tensorpot.training.epoch import evaluate, term_names, train_epoch
from tensorpot.training.init_model import initial_model
from tensorpot.training.logs import History, run_log, tensorboard_writer
from tensorpot.training.run_data import RunData, check_labels, model_dict, prepare_data
from tensorpot.training.state import TrainingState, make_state

__all__ = ["TrainResult", "train"]

logger = logging.getLogger(__name__)

#: Run keys that may change on resume without changing the training trajectory.
_FREE_KEYS = {
    "max_num_epochs", "time_budget_minutes", "progress_bar", "test_files", "threads",
    "checkpoint_interval", "checkpoint_minutes", "log_to_stdout", "num_workers",
}  # fmt: skip


@dataclass(frozen=True)
class TrainResult:
    """What a run leaves behind.

    Attributes:
        model_path: the best-validation model (EMA weights).
        best_valid_loss: its validation loss (weighted loss of the last training stage).
        epochs_run: epochs trained in total (including those before a resume).
        history_path: the per-epoch CSV log.
        error_tables: ``{data set: {metric: value}}`` of the best model (meV units).
        errors_path: the Markdown error table.
    """

    model_path: Path
    best_valid_loss: float
    epochs_run: int
    history_path: Path
    error_tables: dict[str, dict[str, float]]
    errors_path: Path
    stopped: str | None = None


def train(
    config: RunConfig | dict,
    resume: bool = False,
    *,
    clock: Callable[[], float] = time.monotonic,
    handle_signals: bool = False,
) -> TrainResult:
    """Train a model as ``config`` says; continue from the newest checkpoint when ``resume``.

    Args:
        config: the run config (a mapping is validated into a :class:`RunConfig`).
        resume: continue the run in ``output_dir`` from its newest checkpoint.
        clock: seconds since an arbitrary origin; it times the epochs, ``time_budget_minutes``
            and ``checkpoint_minutes`` (a test passes a fake clock to make them deterministic).
        handle_signals: stop cleanly on SIGINT or SIGTERM (:mod:`tensorpot.signals`; the
            command line sets it): the epoch in progress ends, a checkpoint is written, the
            final error table is skipped, and the result's ``stopped`` names the signal, so
            ``resume`` continues the run as if it had not stopped.

    Raises:
        ConfigError: for a bad config.
        DataError: for unusable data.
        TensorPotError: when a fresh run would overwrite a model or checkpoints in
            ``output_dir`` (pass ``resume=True`` to continue that run instead), or when
            ``output_dir`` holds a model but no checkpoint to resume from.
    """
    config = parse_run_config(config)
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        with join(resolve_device(config.device)) as world:
            return _run(config, resume, clock, world, handle_signals)
    finally:
        torch.set_num_threads(threads)


def _existing_checkpoint(config: RunConfig, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start afresh); refuses to overwrite an earlier run.

    A model without a checkpoint (a run killed between its first best model and its first
    checkpoint, or checkpoints deleted) gets the same message with and without ``resume``:
    there is nothing to resume from, and the model is not overwritten either.
    """
    out = config.run_dir
    model_path = out / f"{config.name}.model"
    folder = out / "checkpoints"
    found = list_checkpoints(folder)
    if found and not resume:
        held = "a model and checkpoints" if model_path.exists() else "checkpoints"
        raise TensorPotError(
            f"{out} already holds {held} of a run named {config.name!r}: "
            "resume it (--resume) or choose another output_dir or name"
        )
    if not found and model_path.exists():
        raise TensorPotError(
            f"nothing to resume: {folder} holds no checkpoint of the run named {config.name!r}, "
            f"but {model_path} exists; move {model_path} away or choose another output_dir or name"
        )
    return found[-1][1] if found else None


def _warn_changes(config: RunConfig, checkpoint: dict) -> None:
    """Log the run keys that differ from the checkpoint's (the model keeps its saved config)."""
    saved, now = checkpoint.get("run_config", {}), config.model_dump(mode="json")
    changed = sorted(k for k in now if k not in _FREE_KEYS and saved.get(k) != now[k])
    if changed:
        logger.warning(
            "resuming with changed keys %s: the run may differ from the original", changed
        )


def _numbers(values: torch.Tensor) -> str:
    """One number when all are equal, else the list (for per-species scale and shift)."""
    items = [float(v) for v in values.flatten()]
    if items and all(v == items[0] for v in items):
        return f"{items[0]:.6g}"
    return "[" + ", ".join(f"{v:.6g}" for v in items) + "]"


def _log_model(model: Potential, device: torch.device) -> None:
    """The model facts of the set-up: E0s, statistics, size, dtype and device."""
    symbols = [chemical_symbols[z] for z in model.atomic_numbers]
    e0s = ", ".join(f"{s} {float(e):.6g}" for s, e in zip(symbols, model.E0s))
    logger.info("E0s (eV): %s", e0s)
    avg = getattr(model.config, "avg_num_neighbors", None)
    count = sum(p.numel() for p in model.parameters())
    logger.info(
        "model %s: elements %s, avg_num_neighbors %s, scale %s, shift %s, %d parameters, "
        "%s on %s",
        getattr(model.config, "model", type(model).__name__), " ".join(symbols),
        "-" if avg is None else f"{avg:.6g}", _numbers(model.scale), _numbers(model.shift),
        count, str(model.dtype).removeprefix("torch."), device,
    )  # fmt: skip


def _run(
    config: RunConfig, resume: bool, clock: Callable[[], float], world: World, signals: bool
) -> TrainResult:
    start = clock()
    out = config.run_dir
    model_path = out / f"{config.name}.model"
    latest = _existing_checkpoint(config, resume)  # before anything is written
    world.barrier()  # every rank has looked before rank 0 writes
    with ExitStack() as stack:
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(run_log(out / "train.log", config.log_to_stdout))
        logger.info("tensorpot %s: run %r in %s", __version__, config.name, out)
        if world.parallel:
            logger.info("data-parallel: %d processes, rank %d", world.size, world.rank)
        if latest is None and resume:
            logger.warning("no checkpoint in %s to resume from: starting a fresh run", out)
        data, state = _set_up(config, latest, world)
        for dataset in (data.train, data.valid, *data.tests.values()):  # stores: their files
            if hasattr(dataset, "close"):
                stack.callback(dataset.close)
        history = History(out / "log.csv", keep_epochs=state.epoch) if world.is_main else None
        writer = tensorboard_writer(out / "tensorboard") if world.is_main else None
        try:
            with stop_on_signals(signals, StopRequest()) as stop:
                stopped = _loop(state, data, config, _Outputs(history, writer, world),
                                _Clock(clock, start), latest is not None, stop)  # fmt: skip
        finally:
            if writer is not None:
                writer.close()
        tables: dict[str, dict[str, float]] = {}
        errors_path = out / "errors.md"
        if world.is_main and stopped is None:
            tables = _final_errors(model_path, data, config, state.model.device)
            text = format_error_table(tables, config.units)
            errors_path.write_text(text + "\n", encoding="utf-8")
            logger.info("errors of the best model (%s):\n%s", model_path.name, text)
        tables = world.broadcast(tables)
        world.barrier()
    return TrainResult(model_path, state.best_valid_loss, state.epoch, out / "log.csv", tables,
                       errors_path, stopped)  # fmt: skip


def _set_up(
    config: RunConfig, latest: Path | None, world: World = SINGLE
) -> tuple[RunData, TrainingState]:
    """Data, model and training state: fresh, or restored from the checkpoint ``latest``.

    The statistics of a fresh model are computed on rank 0 and sent to the other ranks, so
    every rank builds the same model."""
    checkpoint = load_checkpoint(latest) if latest is not None else None
    if checkpoint is not None:
        logger.info("resuming %s after epoch %d", latest, int(checkpoint["epoch"]))
    device = world.device(resolve_device(config.device))
    initial = initial_model(config) if checkpoint is None and config.init_model else None
    cfg = checkpoint["model_config"] if checkpoint else initial[0] if initial else None
    if initial:
        logger.info("starting from the model %s", config.init_model)
    data = prepare_data(config, cfg)
    if cfg is None:  # a fresh model: statistics from rank 0's data
        cfg = world.broadcast(model_dict(config, data) if world.is_main else None)
    model = build_model(cfg).to(device)
    if initial:
        model.load_state_dict(initial[1])
    data.check_elements(model.atomic_numbers)
    check_labels(config, model.config.output_names, data.train)
    state = make_state(model, config)
    if checkpoint is not None:
        state.load(checkpoint)
        set_rng_state(checkpoint["rng"])
        _warn_changes(config, checkpoint)
    _log_model(model, device)
    return data, state


@dataclass(frozen=True)
class _Outputs:
    """Where the epochs are recorded: the CSV log and TensorBoard (rank 0; None elsewhere)."""

    history: History | None
    writer: object
    world: World


@dataclass
class _Clock:
    """The run's clock, its start, and the time of the last checkpoint (seconds)."""

    now: Callable[[], float]
    start: float
    last_checkpoint: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_checkpoint = self.start

    def minutes_since(self, since: float) -> float:
        return (self.now() - since) / 60.0


def _epoch_line(row: dict, max_epochs: int, notes: list[str]) -> str:
    """One epoch in words: losses, validation errors (meV), learning rate and time."""
    parts = [f"epoch {row['epoch']}/{max_epochs}", f"train loss {row['train_loss']:.5g}"]
    if "valid_loss" in row:
        parts.append(f"valid loss {row['valid_loss']:.5g}")
        energy, forces = row["valid_energy_rmse_meV_per_atom"], row["valid_forces_rmse_meV_per_A"]
        if energy != "":
            parts.append(f"energy RMSE {energy:.2f} meV/atom")
        if forces != "":
            parts.append(f"force RMSE {forces:.2f} meV/Å")
        for name in ("dipole", "polarizability"):
            if row.get(f"valid_{name}_rmse", "") != "":
                parts.append(f"{name} RMSE {row[f'valid_{name}_rmse']:.4g}")
    parts += [f"lr {row['lr']:.3g}", f"{row['time_s']:.1f} s"]
    return ", ".join(parts) + (f" ({', '.join(notes)})" if notes else "")


def _loop(
    state: TrainingState,
    data: RunData,
    config: RunConfig,
    outputs: _Outputs,
    clock: _Clock,
    checkpointed: bool,
    stop: StopRequest,
) -> str | None:
    """Train epochs ``state.epoch + 1 .. max_num_epochs`` (or until the time budget is spent,
    or a signal came: its name is returned).

    ``checkpointed``: whether a checkpoint of this run exists already (a resumed run). The
    time budget and the signal are rank 0's, sent to every rank, so all stop after the same
    epoch.
    """
    world = outputs.world
    names = term_names(data.train)
    num_batches = math.ceil(len(data.train) / config.batch_size)
    remaining = max(config.max_num_epochs - state.epoch, 0)
    bar = tqdm(
        total=remaining * num_batches,
        desc=config.name,
        unit="batch",
        disable=not (config.progress_bar and sys.stderr.isatty() and world.is_main),
        dynamic_ncols=True,
        mininterval=0.5,
    )
    with bar:
        while state.epoch < config.max_num_epochs:
            epoch = state.epoch + 1
            tic = clock.now()
            state.maybe_start_stage_two(epoch, config)
            train_loss = train_epoch(state, data.train, config, epoch, bar, world, names)
            state.epoch = epoch
            budget = config.time_budget_minutes
            over = budget is not None and clock.minutes_since(clock.start) >= budget
            over, signalled = world.broadcast((over, stop.signal))
            last = over or signalled is not None or epoch == config.max_num_epochs
            row = {"epoch": epoch, "lr": state.lr, "train_loss": train_loss}
            improved = False
            if epoch % config.eval_interval == 0 or last:
                part, improved = _validate(state, data.valid, config, epoch, world)
                row.update(part)
                bar.set_postfix(loss=f"{train_loss:.4g}", valid=f"{row['valid_loss']:.4g}")
            row["stage"] = 2 if state.stage_two else 1
            row["time_s"] = clock.now() - tic
            if outputs.history is not None:
                outputs.history.append(row)
            if outputs.writer is not None:
                for key in ("lr", "train_loss", "valid_loss"):
                    if key in row:
                        outputs.writer.add_scalar(key, row[key], epoch)
            notes = ["best"] if improved else []
            due = clock.minutes_since(clock.last_checkpoint) >= config.checkpoint_minutes
            if (
                epoch % config.checkpoint_interval == 0
                or last
                or world.broadcast(due)
                or (improved and not checkpointed)  # else a kill leaves a model, no checkpoint
            ):
                if world.is_main:
                    stop.writing = True  # a second signal waits for the checkpoint
                    _save_checkpoint(state, config)
                    stop.writing = False
                clock.last_checkpoint, checkpointed = clock.now(), True
                notes.append("checkpoint")
            logger.info("%s", _epoch_line(row, config.max_num_epochs, notes))
            if signalled is not None:
                logger.warning(
                    "stopped by %s after epoch %d, checkpoint written: --resume continues the run",
                    signalled, epoch,
                )  # fmt: skip
                return signalled
            if over:
                logger.info("time budget of %g min spent after epoch %d", budget, epoch)
                break
    return None


def _validate(
    state: TrainingState, valid: GraphDataset, config: RunConfig, epoch: int, world: World
) -> tuple[dict, bool]:
    """Validate with the EMA weights, step the scheduler, keep the best model (rank 0 writes
    it; every rank validates on the whole set, so all step their schedulers alike).

    Returns:
        the validation part of the log row, and whether a new best model was saved.
    """
    averaged = state.ema.average_parameters() if state.ema is not None else nullcontext()
    with averaged:
        loss, table = evaluate(
            state.model,
            valid,
            config.valid_batch_size,
            config,
            state.stage_two,
            state.energy_smoothing,
        )
    if epoch % config.eval_interval == 0:  # a forced last-epoch validation leaves the lr alone
        state.scheduler.step(loss)
    improved = loss < state.best_valid_loss
    if improved:
        state.best_valid_loss = loss
        if world.is_main:
            _save_best(state, config, epoch, loss)
    row = {
        "valid_loss": loss,
        "valid_energy_rmse_meV_per_atom": table.get("energy_rmse_per_atom", ""),
        "valid_forces_rmse_meV_per_A": table.get("forces_rmse", ""),
        "valid_dipole_rmse": table.get("dipole_rmse", ""),
        "valid_polarizability_rmse": table.get("polarizability_rmse", ""),
    }
    return row, improved


def _save_best(state: TrainingState, config: RunConfig, epoch: int, loss: float) -> None:
    path = config.run_dir / f"{config.name}.model"
    metadata = {"epoch": epoch, "valid_loss": loss, "name": config.name}
    with state.ema.average_parameters() if state.ema is not None else nullcontext():
        save_model(state.model, path, metadata=metadata, overwrite=True)


def _save_checkpoint(state: TrainingState, config: RunConfig) -> None:
    folder = config.run_dir / "checkpoints"
    payload = state.state_dict()
    payload["rng"] = get_rng_state()
    payload["run_config"] = config.model_dump(mode="json")
    path = save_checkpoint(checkpoint_path(folder, config.name, state.epoch), payload)
    prune_checkpoints(folder, keep=path)


def _final_errors(
    model_path: Path, data: RunData, config: RunConfig, device: torch.device
) -> dict[str, dict[str, float]]:
    """Error tables of the saved best model on the validation and every test set."""
    best = load_model(model_path, device=device)
    sets = {"valid": data.valid, **data.tests}
    return {
        name: evaluate(best, dataset, config.valid_batch_size, config, False)[1]
        for name, dataset in sets.items()
    }
