"""Configurations -> graphs (neighbour lists computed once) -> batches of inputs and labels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tensorpot.data.atoms import AtomicGraph, collate, graph_from_arrays
from tensorpot.data.batch import GraphBatch, Targets
from tensorpot.data.configuration import Configuration


@dataclass(frozen=True)
class Sample:
    """One configuration with its graph."""

    config: Configuration
    graph: AtomicGraph


class GraphDataset(Sequence[Sample]):
    """Configurations with their neighbour lists within ``cutoff``, built once at construction."""

    def __init__(self, configs: Sequence[Configuration], cutoff: float):
        self.cutoff = float(cutoff)
        self.samples = [
            Sample(c, graph_from_arrays(c.positions, c.numbers, c.cell, c.pbc, cutoff))
            for c in configs
        ]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self.samples[index]

    @property
    def configs(self) -> list[Configuration]:
        return [s.config for s in self.samples]

    def average_num_neighbors(self) -> float:
        """Mean number of neighbours within the cutoff per atom over the data set."""
        atoms = sum(s.graph.num_atoms for s in self.samples)
        edges = sum(s.graph.edge_index.shape[1] for s in self.samples)
        return edges / max(atoms, 1)


def _stack(values: list, dtype: torch.dtype) -> torch.Tensor | None:
    if any(v is None for v in values):
        return None
    return torch.as_tensor(np.stack([np.asarray(v, dtype=np.float64) for v in values]), dtype=dtype)


def collate_samples(
    samples: Sequence[Sample], dtype: torch.dtype = torch.float64
) -> tuple[GraphBatch, Targets, torch.Tensor]:
    """A batch, its labels (a label is absent if any structure lacks it) and structure weights.

    Floating fields are in ``dtype`` except the energies, which stay float64 as the model's
    total energies do (:mod:`tensorpot.models.base`).
    """
    configs = [s.config for s in samples]
    batch = collate([s.graph for s in samples], dtype=dtype)
    forces = None
    if all(c.forces is not None for c in configs):
        forces = torch.as_tensor(np.concatenate([c.forces for c in configs]), dtype=dtype)
    targets = Targets(
        energy=_stack([c.energy for c in configs], torch.float64),  # totals: always float64
        forces=forces,
        stress=_stack([c.stress for c in configs], dtype),
        virials=_stack([c.virials for c in configs], dtype),
    )
    weights = torch.as_tensor([c.weight for c in configs], dtype=dtype)
    return batch, targets, weights


def iterate_batches(
    dataset: Sequence[Sample],
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Iterator[tuple[GraphBatch, Targets, torch.Tensor]]:
    """Batches of ``batch_size`` samples (the last may be smaller), shuffled with ``generator``."""
    order = (
        torch.randperm(len(dataset), generator=generator) if shuffle else torch.arange(len(dataset))
    )
    for start in range(0, len(dataset), batch_size):
        yield collate_samples([dataset[int(i)] for i in order[start : start + batch_size]], dtype)
