"""Adapters of the codes that live outside the package: the official FreeCG and QuinNet (through
the reference loaders of ``../shared/reference`` beside the repository) and PyG's ViSNet.

The official codes follow torch's global default dtype: they are built and called inside the
loader's ``default_dtype(dtype)``. Their forward pass takes the whole graph at once (a radius
graph of ``max_num_neighbors`` nearest neighbours, themselves included) and differentiates the
energy with ``create_graph=True`` even for inference; that double-backward graph is their real
cost and is measured as it is. PyG's radius graph needs pyg-lib, which has no wheel for this
torch: the loader's pure-torch ``radius_graph`` stands in for it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import torch

from tensorpot.benchmarking.harness import Adapter, Output, Workload

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"
NEEDS = ("torch_geometric", "e3nn", "yaml")


def reference_missing(folder: str = "freecg") -> str | None:
    """Why the reference code of ``folder`` cannot be loaded here, or None."""
    if not (REFERENCE / folder / "load_official.py").is_file():
        return f"{REFERENCE / folder}/load_official.py not found"
    absent = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def loader(folder: str):
    """The reference loader module of ``folder`` (``freecg`` or ``quinnet``), imported once."""
    name = f"_reference_{folder}_loader"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REFERENCE / folder / "load_official.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class Official(Adapter):
    """The official code of ``folder`` with its released config, ``overrides`` applied.

    Energy only builds it with ``derivative: false``; a training step keeps its double-backward
    graph and differentiates the loss through it.
    """

    tasks = ("energy", "forces", "train")
    folder = "freecg"

    def __init__(self, name: str | None = None, **overrides: Any):
        self.name = name or f"official {self.folder}"
        self.overrides = overrides

    def missing(self) -> str | None:
        return reference_missing(self.folder)

    def build(self, workload: Workload) -> torch.nn.Module:
        official = loader(self.folder)
        overrides = {"derivative": workload.task != "energy", **self.overrides}
        with official.default_dtype(workload.torch_dtype):
            model, _ = official.build_official(workload.torch_dtype, **overrides)
        return model

    def batch(self, model, workload: Workload) -> dict:
        numbers = [torch.as_tensor(a.numbers, dtype=torch.long) for a in workload.frames]
        return {
            "z": torch.cat(numbers),
            "pos": torch.cat([torch.as_tensor(a.positions) for a in workload.frames]).to(
                workload.torch_dtype
            ),
            "batch": torch.cat([torch.full_like(z, k) for k, z in enumerate(numbers)]),
        }

    def forward(self, model, batch: dict):
        return model(batch["z"], batch["pos"], batch["batch"])

    def call(self, model, batch: dict, workload: Workload) -> Output:
        with loader("freecg").default_dtype(workload.torch_dtype):
            energy, forces = self.forward(model, batch)
        return Output(energy.reshape(-1), forces)


class FreeCGOfficial(Official):
    """The official FreeCG (released rMD17 aspirin config: F 256, 9 layers, 32 radial
    functions, 8 heads, 32 groups of 8 abstract edges); it takes a ``torch_geometric`` ``Data``."""

    folder = "freecg"

    def __init__(self, name: str = "official FreeCG", **overrides: Any):
        super().__init__(name, **overrides)

    def forward(self, model, batch: dict):
        from torch_geometric.data import Data

        return model(Data(**batch))


class QuinNetOfficial(Official):
    """The official QuinNet (released aspirin hyperparameters); it takes ``(z, pos, batch)``."""

    folder = "quinnet"

    def __init__(self, name: str = "official QuinNet", **overrides: Any):
        super().__init__(name, **overrides)


#: PyG ViSNet's settings of the size of tensorpot's ViSNet defaults (the released FreeCG size)
PYG_VISNET = {
    "lmax": 2, "num_heads": 8, "num_layers": 9, "hidden_channels": 256, "num_rbf": 32,
    "cutoff": 5.0, "max_num_neighbors": 32,
}  # fmt: skip


class PyGViSNet(Official):
    """``torch_geometric.nn.models.ViSNet`` (:data:`PYG_VISNET` with ``settings`` applied);
    forces by its own ``derivative=True`` (a double-backward graph, as the official codes)."""

    def __init__(self, name: str = "PyG ViSNet", **settings: Any):
        super().__init__(name, **{**PYG_VISNET, **settings})

    def build(self, workload: Workload) -> torch.nn.Module:
        official = loader(self.folder)
        official.install_stand_ins()
        import torch_geometric.nn.models.visnet as pyg_visnet

        pyg_visnet.radius_graph = official.radius_graph  # needs pyg-lib otherwise
        with official.default_dtype(workload.torch_dtype):
            model = pyg_visnet.ViSNet(derivative=workload.task != "energy", **self.overrides)
        return model.to(workload.torch_dtype)
