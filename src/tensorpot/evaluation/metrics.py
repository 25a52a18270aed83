"""Error metrics as the papers report them: MAE and RMSE of energies, forces and stress.

Energies per structure (meV) and per atom (meV/atom), force components (meV/Å), stress
components (meV/Å³) and virial components per atom (meV/atom, as MACE reports them).
Accumulated batch by batch, so any data set size works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from tensorpot.data.batch import Targets
from tensorpot.models.base import Predictions

METRIC_UNITS = {
    "energy_mae": "meV",
    "energy_rmse": "meV",
    "energy_mae_per_atom": "meV/atom",
    "energy_rmse_per_atom": "meV/atom",
    "forces_mae": "meV/Å",
    "forces_rmse": "meV/Å",
    "stress_mae": "meV/Å³",
    "stress_rmse": "meV/Å³",
    "virials_mae_per_atom": "meV/atom",
    "virials_rmse_per_atom": "meV/atom",
}


class ErrorAccumulator:
    """Sums of absolute and squared errors; :meth:`table` gives the MAE and RMSE in meV units."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = {}

    def _add(self, name: str, error: Tensor) -> None:
        error = error.detach().double().flatten()
        entry = self.sums.setdefault(name, [0.0, 0.0, 0])
        entry[0] += float(error.abs().sum())
        entry[1] += float(error.square().sum())
        entry[2] += error.numel()

    def update(self, pred: Predictions, targets: Targets, num_atoms: Tensor) -> None:
        """Add one batch; ``num_atoms [B]`` is the atom count of every structure."""
        if targets.energy is not None:
            diff = pred.energy.detach() - targets.energy
            self._add("energy", diff)
            self._add("energy_per_atom", diff / num_atoms.to(diff.dtype))
        if targets.forces is not None and pred.forces is not None:
            self._add("forces", pred.forces.detach() - targets.forces)
        if targets.stress is not None and pred.stress is not None:
            self._add("stress", pred.stress.detach() - targets.stress)
        if targets.virials is not None and pred.virials is not None:
            diff = pred.virials.detach() - targets.virials
            self._add("virials_per_atom", diff / num_atoms.to(diff.dtype)[:, None, None])

    def table(self) -> dict[str, float]:
        out = {}
        for name, (abs_sum, sq_sum, count) in self.sums.items():
            if count == 0:
                continue
            base, suffix = (
                (name[: -len("_per_atom")], "_per_atom")
                if name.endswith("_per_atom")
                else (name, "")
            )
            out[f"{base}_mae{suffix}"] = 1e3 * abs_sum / count
            out[f"{base}_rmse{suffix}"] = 1e3 * math.sqrt(sq_sum / count)
        return out


def format_error_table(rows: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table: one row per data set, one column per metric present in any row."""
    columns = [m for m in METRIC_UNITS if any(m in r for r in rows.values())]
    header = "| data set | " + " | ".join(f"{m} ({METRIC_UNITS[m]})" for m in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 1)]
    for name, row in rows.items():
        cells = [f"{row[m]:.2f}" if m in row else "-" for m in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def num_atoms_per_graph(batch_vector: Tensor, num_graphs: int) -> Tensor:
    """``[B]`` atom counts from the ``batch`` vector."""
    return torch.bincount(batch_vector, minlength=num_graphs)
