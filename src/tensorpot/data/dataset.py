"""Configurations -> graphs (neighbour lists computed once) -> batches of inputs and labels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from tensorpot.data.atoms import AtomicGraph, collate, graph_from_arrays
from tensorpot.data.batch import GraphBatch, Targets, TensorDict
from tensorpot.data.configuration import PROPERTY_PREFIX, Configuration
from tensorpot.data.statistics import label_counts
from tensorpot.errors import TensorPotError


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

    def label_counts(self) -> dict[str, int]:
        """How many structures carry each label (:func:`tensorpot.data.statistics.label_counts`)."""
        return label_counts(self.configs)

    def average_num_neighbors(self) -> float:
        """Mean number of neighbours within the cutoff per atom over the data set."""
        atoms = sum(s.graph.num_atoms for s in self.samples)
        edges = sum(s.graph.edge_index.shape[1] for s in self.samples)
        return edges / max(atoms, 1)


def _per_structure(
    values: Sequence[object | None], shape: tuple[int, ...], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``[B, *shape]`` values (zeros where a structure has none) and their bool ``[B]`` mask,
    or None if no structure has a value."""
    mask = [v is not None for v in values]
    if not any(mask):
        return None
    array = np.zeros((len(values), *shape))
    for k, value in enumerate(values):
        if value is not None:
            array[k] = value
    return torch.as_tensor(array, dtype=dtype), torch.tensor(mask)


def _forces(
    configs: Sequence[Configuration], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``[N, 3]`` forces (zeros for the atoms of structures without) and the ``[B]`` mask."""
    mask = [c.forces is not None for c in configs]
    if not any(mask):
        return None
    parts = [np.zeros((c.n_atoms, 3)) if c.forces is None else c.forces for c in configs]
    return torch.as_tensor(np.concatenate(parts), dtype=dtype), torch.tensor(mask)


def collate_samples(
    samples: Sequence[Sample], dtype: torch.dtype = torch.float64
) -> tuple[GraphBatch, Targets, torch.Tensor]:
    """A batch, its labels with per-structure masks, and the structure weights.

    A label is in :class:`Targets` when at least one structure has it, with zeros for the
    structures that lack it; ``targets.masks`` holds a bool ``[B]`` mask for every present
    label (all True when every structure has it), named as in
    :meth:`Configuration.label_names`. Named properties are those of any structure, in
    sorted order. ``total_charge`` is always there (zeros by default), in the targets and,
    as the model's input, in the batch.

    Floating fields are in ``dtype`` except the energies, named properties and total charges,
    which stay float64 as the model's total energies and properties do
    (:mod:`tensorpot.models.base`).
    """
    configs = [s.config for s in samples]
    charges = torch.tensor([c.total_charge for c in configs], dtype=torch.float64)
    batch = collate([s.graph for s in samples], dtype=dtype)._replace(total_charge=charges)
    labels: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {
        "energy": _per_structure([c.energy for c in configs], (), torch.float64),  # totals
        "forces": _forces(configs, dtype),
    }
    shapes = (("stress", (3, 3)), ("virials", (3, 3)), ("dipole", (3,)), ("polarizability", (3, 3)))
    for name, shape in shapes:
        labels[name] = _per_structure([getattr(c, name) for c in configs], shape, dtype)
    names = sorted({name for c in configs for name in c.properties})
    properties = TensorDict()
    for name in names:
        values = [c.properties.get(name) for c in configs]
        labels[PROPERTY_PREFIX + name] = present = _per_structure(values, (), torch.float64)
        properties[name] = present[0]
    masks = TensorDict({name: pair[1] for name, pair in labels.items() if pair is not None})
    fields = {name: None if pair is None else pair[0] for name, pair in labels.items()}
    targets = Targets(
        energy=fields["energy"],
        forces=fields["forces"],
        stress=fields["stress"],
        virials=fields["virials"],
        dipole=fields["dipole"],
        polarizability=fields["polarizability"],
        properties=properties if names else None,
        total_charge=charges,
        masks=masks,
    )
    weights = torch.as_tensor([c.weight for c in configs], dtype=dtype)
    return batch, targets, weights


def batch_indices(
    size: int, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[list[int]]:
    """The indices of every batch of an epoch over ``size`` samples: ``batch_size`` each (the
    last may be smaller), in a random order drawn with ``generator`` when ``shuffle``."""
    order = torch.randperm(size, generator=generator) if shuffle else torch.arange(size)
    for start in range(0, size, batch_size):
        yield order[start : start + batch_size].tolist()


def _same(item: object) -> object:
    return item


class _Collated:
    """The collated batch of a list of indices, read in a worker process; a TensorPotError
    (a damaged record) is returned to be raised in the training process with its message."""

    def __init__(self, dataset: Sequence[Sample], dtype: torch.dtype):
        self.dataset, self.dtype = dataset, dtype

    def __getitem__(self, indices: list[int]) -> tuple | TensorPotError:
        try:
            return collate_samples([self.dataset[i] for i in indices], self.dtype)
        except TensorPotError as err:
            return err


class _Shares:
    """This rank's share of every non-empty share of the global batches of an epoch, drawn
    lazily as :func:`batch_indices` draws them (a batch sampler for a ``DataLoader``)."""

    def __init__(self, args: tuple, rank: int, world_size: int):
        self.args, self.rank, self.world_size = args, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for indices in batch_indices(*self.args):
            if indices[self.rank :: self.world_size]:
                yield indices[self.rank :: self.world_size]


def iterate_batches(
    dataset: Sequence[Sample],
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    *,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
) -> Iterator[tuple[GraphBatch, Targets, torch.Tensor] | None]:
    """Batches of ``batch_size`` samples (the last may be smaller), shuffled with ``generator``.

    Each is ``(batch, targets, weights)`` from :func:`collate_samples`, labels and masks
    included. With ``world_size`` > 1 each global batch is shared among the processes: this
    one (``rank``) gets its samples ``rank, rank + world_size, ...``, and None where that share
    of a short last batch is empty. A data set read from disk (``streamed``, such as a
    :class:`~tensorpot.data.store.GraphStore`) is read and collated by ``num_workers`` worker
    processes when there are any: the same batches in the same order.
    """
    args = (len(dataset), batch_size, shuffle, generator)
    if num_workers == 0 or not getattr(dataset, "streamed", False):
        for indices in batch_indices(*args):
            mine = indices[rank::world_size]
            yield collate_samples([dataset[i] for i in mine], dtype) if mine else None
        return
    dataset.close()  # each worker opens the store itself
    loader = DataLoader(_Collated(dataset, dtype), sampler=_Shares(args, rank, world_size),
                        batch_size=None, num_workers=num_workers, collate_fn=_same)  # fmt: skip
    count = 0
    for item in loader:
        if isinstance(item, TensorPotError):  # a damaged record: its one-line message
            raise item
        count += 1
        yield item
    for _ in range(-(-len(dataset) // batch_size) - count):  # an empty share of the last batch
        yield None
