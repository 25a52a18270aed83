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
    "plot_parity_panels",
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
            "plotting needs matplotlib, the 'plot' extra: pip install -c constraints.txt "
            "'tensorpot[plot]' (or matplotlib)"
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
        mae, rmse = np.abs(diff).mean(), math.sqrt(float(np.square(diff).mean()))
        if unit.startswith("eV"):  # energies and forces in meV, as the error tables
            text = f"MAE {1e3 * mae:.2f} m{unit}\nRMSE {1e3 * rmse:.2f} m{unit}"
        else:  # the other labels in their own units
            text = f"MAE {mae:.4g} {unit}\nRMSE {rmse:.4g} {unit}"
        ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", ha="left")
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
    panels = [("energy", "eV/atom", energy_ref, energy_pred)]
    if forces_ref is not None and forces_pred is not None:
        panels.append(("force component", "eV/Å", forces_ref, forces_pred))
    return plot_parity_panels(path, panels, title, overwrite)


def plot_parity_panels(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, str, np.ndarray, np.ndarray]],
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """One parity panel per ``(label, unit, reference, predicted)``, side by side, as PNG."""
    if not panels:
        raise DataError("nothing to plot: no labelled quantity", str(path))
    fig, axes = _figure(len(panels))
    for ax, (label, unit, ref, pred) in zip(axes, panels):
        ref = np.asarray(ref, dtype=np.float64).reshape(-1)
        _parity_panel(ax, ref, np.asarray(pred, dtype=np.float64).reshape(-1), label, unit)
    if title:
        fig.suptitle(title)
    return _save(fig, path, overwrite)


def plot_parity_predictions(
    path: str | os.PathLike,
    configs: Sequence[Configuration],
    predictions: Sequence[StructurePrediction],
    overwrite: bool = False,
    units: dict[str, str] | None = None,
) -> Path:
    """Parity panels of every quantity both labelled in ``configs`` and predicted: energy per
    atom, force, dipole and polarizability components, and named properties (``units`` names
    the labels' units of the last three; see :data:`tensorpot.evaluation.metrics.LABEL_UNITS`).
    """
    from tensorpot.evaluation.metrics import LABEL_UNITS

    units = {**LABEL_UNITS, **(units or {})}
    pairs = list(zip(configs, predictions))
    panels = []

    def gather(label: str, unit: str, ref_of, pred_of) -> None:
        found = [(ref_of(c), pred_of(c, p)) for c, p in pairs]
        found = [(r, q) for r, q in found if r is not None and q is not None]
        if found:
            ref = np.concatenate([np.ravel(r) for r, _ in found])
            panels.append((label, unit, ref, np.concatenate([np.ravel(q) for _, q in found])))

    gather("energy", "eV/atom", lambda c: None if c.energy is None else c.energy / c.n_atoms,
           lambda c, p: None if p.energy is None else p.energy / c.n_atoms)  # fmt: skip
    gather("force component", "eV/Å", lambda c: c.forces, lambda c, p: p.forces)
    gather("dipole component", units["dipole"], lambda c: c.dipole, lambda c, p: p.dipole)
    gather("polarizability component", units["polarizability"], lambda c: c.polarizability,
           lambda c, p: p.polarizability)  # fmt: skip
    for name in sorted({n for _, p in pairs for n in p.properties}):
        gather(name, units.get(name, "label units"), lambda c, n=name: c.properties.get(n),
               lambda c, p, n=name: p.properties.get(n))  # fmt: skip
    return plot_parity_panels(path, panels, overwrite=overwrite)


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


def _learning_curve_panels(
    columns: dict[str, np.ndarray],
) -> list[tuple[dict[str, np.ndarray], str]]:
    """The panels of :func:`plot_learning_curves`: ``(columns, y label)``, the empty ones and
    the columns without a single value (a metric the run had no label for) left out."""
    columns = {n: y for n, y in columns.items() if np.isfinite(y).any()}
    losses = {n: y for n, y in columns.items() if "loss" in n.lower()}
    metrics = {
        n: y
        for n, y in columns.items()
        if n not in losses and not any(word in n.lower() for word in _NOT_METRICS)
    }
    panels = [(losses, "loss"), (metrics, "metric")]
    if "lr" in columns:
        panels.append(({"lr": columns["lr"]}, "learning rate"))
    return [(cols, label) for cols, label in panels if cols]


def plot_learning_curves(
    log_path: str | os.PathLike,
    out_path: str | os.PathLike,
    overwrite: bool = False,
    title: str | None = None,
) -> Path:
    """Plot every numeric column of a training log against the epoch.

    One panel for the columns whose name contains ``loss``, one for the other metrics (error
    columns such as ``valid_energy_rmse``; epoch, stage and timing columns are left out) and
    one for ``lr``; panels without columns, and columns without a value, are omitted. Log
    scale wherever all values are positive. The title is ``title``, else the log's file name.

    Raises:
        DataError: the log cannot be read (see :func:`read_log`).
    """
    columns = read_log(log_path)
    x_name = next((n for n in _X_COLUMNS if n in columns), None)
    x = columns[x_name] if x_name else np.arange(len(next(iter(columns.values()))), dtype=float)
    panels = _learning_curve_panels(columns)
    if not panels:
        raise DataError(
            f"no loss, metric or lr column to plot; columns: {list(columns)}", str(log_path)
        )
    fig, axes = _figure(len(panels))
    for ax, (cols, label) in zip(axes, panels):
        _curves(ax, x, cols, label)
    fig.suptitle(title or Path(log_path).name)
    return _save(fig, out_path, overwrite)
