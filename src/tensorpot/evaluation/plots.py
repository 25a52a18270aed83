"""Parity plots and learning curves as PNG files.

matplotlib is imported only when a plot is drawn, and only its Agg canvas is used: no pyplot,
no change of the global backend. Without matplotlib a one-line :class:`TensorPotError` says
how to install it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tensorpot.data.configuration import Configuration
from tensorpot.errors import DataError, TensorPotError
from tensorpot.files import atomic_write

if TYPE_CHECKING:
    from tensorpot.evaluation.evaluate import StructurePrediction

__all__ = [
    "plot_learning_curves",
    "plot_parity",
    "plot_parity_predictions",
    "read_log",
    "require_matplotlib",
]

_X_COLUMNS = ("epoch", "step")
_NOT_METRICS = ("epoch", "step", "stage", "lr", "time", "elapsed", "wall")


def require_matplotlib() -> Any:
    """Return the ``matplotlib`` module, or raise a one-line error if it is not installed."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise TensorPotError(
            "plotting needs matplotlib: pip install -c constraints.txt matplotlib"
        ) from None
    return matplotlib


def _figure(ncols: int, width: float = 4.5, height: float = 4.0) -> tuple[Any, list[Any]]:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]
    return fig, axes


def _save(fig: Any, path: str | os.PathLike, overwrite: bool) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically; refuse to replace a file unless asked."""
    from tensorpot.evaluation.evaluate import check_output

    path = check_output(path, overwrite)
    return atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=150))


def _parity_panel(ax: Any, ref: np.ndarray, pred: np.ndarray, label: str, unit: str) -> None:
    ref, pred = np.asarray(ref, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    ax.scatter(ref, pred, s=6, alpha=0.6, linewidths=0)
    if ref.size:
        low = float(min(ref.min(), pred.min()))
        high = float(max(ref.max(), pred.max()))
        pad = 0.02 * (high - low) if high > low else 1.0
        ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=0.8)
        diff = pred - ref
        mae, rmse = 1e3 * np.abs(diff).mean(), 1e3 * math.sqrt(float(np.square(diff).mean()))
        ax.text(
            0.04, 0.96, f"MAE {mae:.2f} m{unit}\nRMSE {rmse:.2f} m{unit}",
            transform=ax.transAxes, va="top", ha="left",
        )  # fmt: skip
    ax.set_xlabel(f"reference {label} ({unit})")
    ax.set_ylabel(f"predicted {label} ({unit})")
    ax.set_aspect("equal", adjustable="datalim")


def plot_parity(
    path: str | os.PathLike,
    energy_ref: np.ndarray,
    energy_pred: np.ndarray,
    forces_ref: np.ndarray | None = None,
    forces_pred: np.ndarray | None = None,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Predicted against reference: energy per atom (eV/atom) and force components (eV/Å).

    Args:
        path: the PNG file.
        energy_ref: reference energies per atom ``[B]``.
        energy_pred: predicted energies per atom ``[B]``.
        forces_ref: reference force components (any shape), or None for no force panel.
        forces_pred: predicted force components, same shape as ``forces_ref``.
        title: figure title.
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    with_forces = forces_ref is not None and forces_pred is not None
    fig, axes = _figure(2 if with_forces else 1)
    _parity_panel(axes[0], energy_ref, energy_pred, "energy", "eV/atom")
    if with_forces:
        ref = np.asarray(forces_ref, dtype=np.float64).reshape(-1)
        pred = np.asarray(forces_pred, dtype=np.float64).reshape(-1)
        _parity_panel(axes[1], ref, pred, "force component", "eV/Å")
    if title:
        fig.suptitle(title)
    return _save(fig, path, overwrite)


def plot_parity_predictions(
    path: str | os.PathLike,
    configs: Sequence[Configuration],
    predictions: Sequence[StructurePrediction],
    overwrite: bool = False,
) -> Path:
    """:func:`plot_parity` of predictions against the labels of ``configs`` (labelled ones)."""
    pairs = [(c, p) for c, p in zip(configs, predictions) if c.energy is not None]
    e_ref = np.array([c.energy / c.n_atoms for c, _ in pairs])
    e_pred = np.array([p.energy / c.n_atoms for c, p in pairs])
    with_forces = [(c, p) for c, p in zip(configs, predictions) if c.forces is not None]
    f_ref = f_pred = None
    if with_forces:
        f_ref = np.concatenate([np.ravel(c.forces) for c, _ in with_forces])
        f_pred = np.concatenate([np.ravel(p.forces) for _, p in with_forces])
    return plot_parity(path, e_ref, e_pred, f_ref, f_pred, overwrite=overwrite)


def _number(text: str | None) -> float | None:
    """A float from a CSV cell (empty -> NaN), or None if it is not a number."""
    if text is None or not text.strip():
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def read_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The numeric columns of a CSV training log (empty cells are NaN).

    Raises:
        DataError: naming the file, if it is missing, empty, or has no numeric column.
    """
    file = str(path)
    if not Path(path).is_file():
        raise DataError("file not found", file)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        names = [n.strip() for n in (reader.fieldnames or []) if n and n.strip()]
        rows = list(reader)
    if not names:
        raise DataError("the log has no header line", file)
    columns: dict[str, np.ndarray] = {}
    for name in names:
        values = [_number(row.get(name)) for row in rows]
        if rows and all(v is not None for v in values):
            columns[name] = np.array(values, dtype=np.float64)
    if not rows:
        raise DataError("the log has no rows", file)
    if not columns:
        raise DataError(f"the log has no numeric column; columns: {names}", file)
    return columns


def _curves(ax: Any, x: np.ndarray, columns: dict[str, np.ndarray], ylabel: str) -> None:
    positive = True
    for name, y in columns.items():
        keep = np.isfinite(y)
        ax.plot(x[keep], y[keep], marker="o", ms=2, label=name)
        positive = positive and bool((y[keep] > 0).all())
    if positive:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")


def plot_learning_curves(
    log_path: str | os.PathLike, out_path: str | os.PathLike, overwrite: bool = False
) -> Path:
    """Plot every numeric column of a training log against the epoch.

    One panel for the columns whose name contains ``loss``, one for the other metrics (error
    columns such as ``valid_energy_rmse``; epoch, stage and timing columns are left out) and
    one for ``lr``; panels without columns are omitted. Log scale wherever all values are positive.

    Raises:
        DataError: the log cannot be read (see :func:`read_log`).
    """
    columns = read_log(log_path)
    x_name = next((n for n in _X_COLUMNS if n in columns), None)
    x = columns[x_name] if x_name else np.arange(len(next(iter(columns.values()))), dtype=float)
    losses = {n: y for n, y in columns.items() if "loss" in n.lower()}
    metrics = {
        n: y
        for n, y in columns.items()
        if n not in losses and not any(word in n.lower() for word in _NOT_METRICS)
    }
    panels = [(losses, "loss"), (metrics, "metric")]
    if "lr" in columns:
        panels.append(({"lr": columns["lr"]}, "learning rate"))
    panels = [(cols, label) for cols, label in panels if cols]
    if not panels:
        raise DataError(
            f"no loss, metric or lr column to plot; columns: {list(columns)}", str(log_path)
        )
    fig, axes = _figure(len(panels))
    for ax, (cols, label) in zip(axes, panels):
        _curves(ax, x, cols, label)
    fig.suptitle(Path(log_path).name)
    return _save(fig, out_path, overwrite)
