"""The adapters of the codes a user can pip-install: tensorpot's families (any of them, from a
``build_model`` dict), MACE (mace-torch) and FlashCart (flashcart).

The peers are optional (``pip install -c constraints.txt -e ".[bench]"``); an adapter whose
package is missing says so (:meth:`Adapter.missing`) and its cases are skipped. No global torch
state is changed: the peers are cast to the workload's dtype after they are built and their
batches are cast explicitly (FlashCart builds its graphs in torch's default dtype).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from tensorpot.benchmarking.harness import TASKS, Adapter, Output, Workload

#: the radius, radial and readout settings every model of a peer comparison shares
R_MAX = 5.0
AVG_NEIGHBORS = 15.0
NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
BENCH_EXTRA = "pip install -c constraints.txt -e '.[bench]'"


class Size(NamedTuple):
    """The size of a peer comparison: ``channels`` channels of every hidden rank up to
    ``max_L``, edge ranks up to ``max_ell``, ``correlation`` (nu); 2 interactions, r_max 5 Å."""

    channels: int = 8
    max_L: int = 2
    max_ell: int = 3
    correlation: int = 3

    def describe(self) -> str:
        return (
            f"C={self.channels}, max_L={self.max_L}, max_ell={self.max_ell}, nu={self.correlation}"
        )


def add_size_arguments(parser, number=int, **defaults: int) -> None:
    """``--channels``, ``--max-L``, ``--max-ell``, ``--correlation`` (a :class:`Size`, its
    defaults unless given) on an ``argparse`` parser; ``number`` parses them."""
    for key, default in Size(**defaults)._asdict().items():
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, type=int if key == "max_L" else number, default=default)


def size_of(args) -> Size:
    """The :class:`Size` of parsed :func:`add_size_arguments` arguments."""
    return Size(args.channels, args.max_L, args.max_ell, args.correlation)


def ictp_config(size: Size, **extra: Any) -> dict:
    """The ``build_model`` dict of ICTP of ``size`` (full product basis)."""
    return {
        "model": "ictp", "r_max": R_MAX, "num_channels": size.channels, "max_L": size.max_L,
        "max_ell": size.max_ell, "correlation": size.correlation, "product_basis": "full",
        "avg_num_neighbors": AVG_NEIGHBORS, **extra,
    }  # fmt: skip


class TensorPot(Adapter):
    """A tensorpot model of any family: ``build_model(config)`` with the workload's dtype and,
    unless ``config`` names them, its elements."""

    tasks = tuple(TASKS)

    def __init__(self, config: Mapping[str, Any], name: str | None = None):
        self.config = dict(config)
        self.name = name or f"tensorpot {self.config['model']}"

    def build(self, workload: Workload) -> torch.nn.Module:
        import tensorpot

        config = {"atomic_numbers": workload.elements, **self.config, "dtype": workload.dtype}
        return tensorpot.build_model(config)

    def batch(self, model, workload: Workload):
        from tensorpot.data.atoms import atoms_to_graph, collate

        return collate([atoms_to_graph(a, model.r_max) for a in workload.frames], model.dtype)

    def call(self, model, batch, workload: Workload) -> Output:
        out = model(
            batch,
            compute_forces=workload.task != "energy",
            compute_stress=workload.task == "stress",
        )
        return Output(out.energy, out.forces, out.stress)


def import_mace() -> None:
    """Import ``mace`` (and with it e3nn) without its side effect on this process.

    ``import mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which makes every later
    ``torch.load`` of the process unpickle arbitrary objects; e3nn 0.4.4 needs it (or ``slice``
    as a safe global) while it loads its constants on import. The variable is put back as it
    was once both are imported.
    """
    before = os.environ.get(NO_WEIGHTS_ONLY)
    with warnings.catch_warnings():  # e3nn's torch.load warns about the variable
        warnings.simplefilter("ignore", UserWarning)
        for name in ("mace", "e3nn.o3"):  # in this order (an import sorter would swap them)
            importlib.import_module(name)
    if before is None:
        os.environ.pop(NO_WEIGHTS_ONLY, None)
    else:
        os.environ[NO_WEIGHTS_ONLY] = before


class Peer(Adapter):
    """A peer code of a :class:`Size`, from the package ``package`` (module ``module``)."""

    tasks = tuple(TASKS)
    name = module = package = ""

    def __init__(self, size: Size | None = None, name: str | None = None):
        self.size, self.name = size or Size(), name or self.name

    def missing(self) -> str | None:
        if importlib.util.find_spec(self.module) is None:
            return f"{self.package} is not installed ({BENCH_EXTRA})"
        return None


class Mace(Peer):
    """MACE (mace-torch ``ScaleShiftMACE``) of ``size``, intermediate ranks capped (its
    default); the one MACE builder of the benchmarks."""

    name, module, package = "MACE", "mace", "mace-torch"

    def build(self, workload: Workload) -> torch.nn.Module:
        import_mace()
        from e3nn import o3
        from mace.modules import RealAgnosticResidualInteractionBlock, ScaleShiftMACE

        s, elements = self.size, workload.elements
        hidden = "+".join(f"{s.channels}x{r}{'eo'[r % 2]}" for r in range(s.max_L + 1))
        model = ScaleShiftMACE(
            r_max=R_MAX, num_bessel=8, num_polynomial_cutoff=5, max_ell=s.max_ell,
            interaction_cls=RealAgnosticResidualInteractionBlock,
            interaction_cls_first=RealAgnosticResidualInteractionBlock,
            num_interactions=2, num_elements=len(elements), hidden_irreps=o3.Irreps(hidden),
            MLP_irreps=o3.Irreps("16x0e"), atomic_energies=np.zeros(len(elements)),
            avg_num_neighbors=AVG_NEIGHBORS, atomic_numbers=elements,
            correlation=s.correlation, gate=torch.nn.functional.silu, atomic_inter_scale=1.0,
            atomic_inter_shift=0.0,
        )  # fmt: skip
        return model.to(workload.torch_dtype)

    def batch(self, model, workload: Workload) -> dict:
        """MACE's batch dict of the frames (its own neighbour list), floats cast."""
        from mace import data as mace_data
        from mace.tools import AtomicNumberTable, torch_geometric

        table = AtomicNumberTable(workload.elements)
        data = [
            mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(a), z_table=table, cutoff=R_MAX
            )
            for a in workload.frames
        ]
        batch = next(iter(torch_geometric.dataloader.DataLoader(data, batch_size=len(data))))
        return {
            k: (v.to(workload.torch_dtype) if torch.is_tensor(v) and v.is_floating_point() else v)
            for k, v in batch.to_dict().items()
        }

    def call(self, model, batch, workload: Workload) -> Output:
        out = model(
            batch,
            training=model.training,
            compute_force=workload.task != "energy",
            compute_stress=workload.task == "stress",
        )
        return Output(out["energy"], out.get("forces"), out.get("stress"))


class FlashCart(Peer):
    """FlashCart (``FlashCartPotential``) of ``size``: path-resolved products
    (``path_reduced_product=False``, as ICTP's full basis), no gates and no norms (its
    constructor's defaults), the radial MLP of MACE and ICTP (three hidden layers of 64), a
    readout with 16 hidden units, 2 interactions, 8 radial functions."""

    name, module, package = "FlashCart", "flashcart", "flashcart"

    def build(self, workload: Workload) -> torch.nn.Module:
        from ase.data import chemical_symbols
        from flashcart.model import FlashCartPotential

        s, elements = self.size, workload.elements
        model = FlashCartPotential(
            elements=[chemical_symbols[z] for z in elements], r_max=R_MAX,
            n_hidden_feats=s.channels, l_max_hidden_feats=s.max_L, l_max_edge_attrs=s.max_ell,
            n_radial=8, n_interactions=2, correlation=s.correlation, path_reduced_product=False,
            hidden_radial=[64, 64, 64], hidden_readout=[16], avg_neighbors=AVG_NEIGHBORS,
            atomic_shifts=[0.0] * len(elements), fit_atomic_shifts=False,
        )  # fmt: skip
        return model.to(workload.torch_dtype)

    def batch(self, model, workload: Workload):
        """One batch of FlashCart's own graphs (its neighbour list), floats cast."""
        from flashcart.data.data import AtomicConfig, AtomicData
        from flashcart.utils.torch_geometric.dataloader import DataLoader

        graphs = []
        for atoms in workload.frames:
            config = AtomicConfig.from_ase(atoms)
            config.compute_neighbors(model.r_max)
            graphs.append(AtomicData.from_config(config, model.elements))
        batch = next(iter(DataLoader(graphs, batch_size=len(graphs))))
        for key in list(batch.keys):  # a property in flashcart 0.1.0
            value = batch[key]
            if torch.is_tensor(value) and value.is_floating_point():
                batch[key] = value.to(workload.torch_dtype)
        return batch

    def call(self, model, batch, workload: Workload) -> Output:
        out = model.predict(
            batch,
            compute_forces=workload.task != "energy",
            compute_stress=workload.task == "stress",
            create_graph=model.training,
        )
        return Output(out["energy"], out.get("forces"), out.get("stress"))


def peers(size: Size) -> list[Adapter]:
    """ICTP of ``size`` and the peers of the same size, tensorpot first."""
    return [TensorPot(ictp_config(size), "tensorpot ICTP"), Mace(size), FlashCart(size)]
