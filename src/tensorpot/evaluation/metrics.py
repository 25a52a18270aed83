"""Error metrics as the papers report them: MAE and RMSE of every labelled quantity.

Energies per structure (meV) and per atom (meV/atom), force components (meV/Å), stress
components (meV/Å³) and virial components per atom (meV/atom, as MACE reports them). Dipoles
(per component, of the norm and per atom), polarizabilities (per component and per atom) and
named scalar properties (per structure, and per atom for extensive ones) in the units of their
labels, which the table names. Only the structures that carry a label count for it (the
per-structure masks of :class:`~tensorpot.data.batch.Targets`). Accumulated batch by batch, so
any data set size works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from tensorpot.data.batch import Targets
from tensorpot.models.base import Predictions

#: the metrics of energy-like labels, always in meV units (converted from eV)
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
    # energies along a scan, each relative to its minimum (tensorpot.evaluation.profile)
    "relative_energy_mae": "meV",
    "relative_energy_rmse": "meV",
}
#: default units of the labels of the other outputs (the data's own: override per run)
LABEL_UNITS = {"dipole": "e·Å", "polarizability": "Å³"}
_IN_MEV = ("energy", "forces", "stress", "virials")


class ErrorAccumulator:
    """Sums of absolute and squared errors; :meth:`table` gives the MAE and RMSE.

    Args:
        extensive: names of the properties summed over atoms (they get a per-atom error too).
    """

    def __init__(self, extensive: frozenset[str] = frozenset()) -> None:
        self.sums: dict[str, list[float]] = {}
        self.extensive = extensive

    def _add(self, name: str, error: Tensor) -> None:
        error = error.detach().double().flatten()
        entry = self.sums.setdefault(name, [0.0, 0.0, 0])
        entry[0] += float(error.abs().sum())
        entry[1] += float(error.square().sum())
        entry[2] += error.numel()

    def update(self, pred: Predictions, targets: Targets, num_atoms: Tensor) -> None:
        """Add one batch; ``num_atoms [B]`` is the atom count of every structure."""
        num_graphs = len(num_atoms)
        n = num_atoms.double().cpu()

        def masked(name: str, value: Tensor | None) -> tuple[Tensor, Tensor] | None:
            label = targets.label(name)
            if label is None or value is None:
                return None
            keep = targets.mask(name, num_graphs).cpu()
            diff = (value.detach().double() - label.detach().double()).cpu()
            if name == "forces":
                atom_of = torch.repeat_interleave(torch.arange(num_graphs), num_atoms.cpu())
                return diff[keep[atom_of]], n
            return diff[keep], n[keep]

        def per_atom(diff: Tensor, counts: Tensor) -> Tensor:
            return diff / counts.view(-1, *[1] * (diff.dim() - 1))

        found = masked("energy", pred.energy)
        if found is not None:
            self._add("energy", found[0])
            self._add("energy_per_atom", per_atom(*found))
        found = masked("forces", pred.forces)
        if found is not None:
            self._add("forces", found[0])
        found = masked("stress", pred.stress)
        if found is not None:
            self._add("stress", found[0])
        found = masked("virials", pred.virials)
        if found is not None:
            self._add("virials_per_atom", per_atom(*found))
        found = masked("dipole", pred.dipole)
        if found is not None:
            self._add("dipole", found[0])
            self._add("dipole_norm", self._norm_error(pred.dipole, targets))
            self._add("dipole_per_atom", per_atom(*found))
        found = masked("polarizability", pred.polarizability)
        if found is not None:
            self._add("polarizability", found[0])
            self._add("polarizability_per_atom", per_atom(*found))
        for name, value in (pred.properties or {}).items():
            found = masked(f"property:{name}", value)
            if found is not None:
                self._add(name, found[0])
                if name in self.extensive:
                    self._add(f"{name}_per_atom", per_atom(*found))

    @staticmethod
    def _norm_error(dipole: Tensor, targets: Targets) -> Tensor:
        keep = targets.mask("dipole", len(dipole)).cpu()
        predicted = torch.linalg.vector_norm(dipole.detach().double().cpu(), dim=-1)
        labelled = torch.linalg.vector_norm(targets.dipole.detach().double().cpu(), dim=-1)
        return (predicted - labelled)[keep]

    def table(self) -> dict[str, float]:
        """``{metric: value}``: energy-like metrics in meV units, the others in label units.

        Names are ``<label>_mae``, ``<label>_rmse``, with ``_per_atom`` after them for per-atom
        errors and ``<label>_norm_mae`` (``_rmse``) for the error of the dipole's norm.
        """
        out = {}
        for name, (abs_sum, sq_sum, count) in self.sums.items():
            if count == 0:
                continue
            base, suffix = (
                (name[: -len("_per_atom")], "_per_atom")
                if name.endswith("_per_atom")
                else (name, "")
            )
            factor = 1e3 if base in _IN_MEV else 1.0
            out[f"{base}_mae{suffix}"] = factor * abs_sum / count
            out[f"{base}_rmse{suffix}"] = factor * math.sqrt(sq_sum / count)
        return out


def metric_unit(metric: str, units: Mapping[str, str] | None = None) -> str:
    """The unit of a metric of :meth:`ErrorAccumulator.table`: meV units for energy-like
    labels, else the label's unit from ``units`` (then :data:`LABEL_UNITS`), per atom where the
    metric is."""
    if metric in METRIC_UNITS:
        return METRIC_UNITS[metric]
    base = metric.removesuffix("_per_atom")
    for stat in ("_mae", "_rmse"):
        base = base.removesuffix(stat)
    base = base.removesuffix("_norm")
    unit = {**LABEL_UNITS, **(units or {})}.get(base, "label units")
    return f"{unit}/atom" if metric.endswith("_per_atom") else unit


def format_error_table(
    rows: Mapping[str, Mapping[str, float]], units: Mapping[str, str] | None = None
) -> str:
    """A Markdown table: one row per data set, one column per metric present in any row
    (energy-like metrics first, in meV units with 2 decimals; the others after them with four
    significant digits in their labels' units, ``units`` naming them)."""
    others = [m for r in rows.values() for m in r if m not in METRIC_UNITS]
    columns = [m for m in METRIC_UNITS if any(m in r for r in rows.values())]
    columns += list(dict.fromkeys(others))
    header = "| data set | " + " | ".join(f"{m} ({metric_unit(m, units)})" for m in columns)
    lines = [header + " |", "|" + "---|" * (len(columns) + 1)]
    for name, row in rows.items():
        cells = [
            "-" if m not in row else f"{row[m]:.2f}" if m in METRIC_UNITS else f"{row[m]:.4g}"
            for m in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def num_atoms_per_graph(batch_vector: Tensor, num_graphs: int) -> Tensor:
    """``[B]`` atom counts from the ``batch`` vector."""
    return torch.bincount(batch_vector, minlength=num_graphs)
