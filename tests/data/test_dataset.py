"""Batches of labels with per-structure masks: a label is there when one structure has it,
zeros stand in for the others, masks say which count; fully labelled batches are as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tensorpot.data.batch import Targets, TensorDict
from tensorpot.data.configuration import LABELS, PROPERTY_PREFIX, Configuration
from tensorpot.data.dataset import GraphDataset, collate_samples, iterate_batches

ALPHA = np.array([[2.0, 0.1, 0.0], [0.1, 3.0, 0.2], [0.0, 0.2, 4.0]])


def structure(n: int, seed: int, periodic: bool = False, **labels) -> Configuration:
    rng = np.random.default_rng(seed)
    positions = np.column_stack([np.arange(n) * 1.2, rng.uniform(0, 0.2, n), np.zeros(n)])
    return Configuration(
        numbers=np.full(n, 6),
        positions=positions,
        cell=np.eye(3) * (1.2 * n + 3.0) if periodic else np.zeros((3, 3)),
        pbc=np.full(3, periodic),
        source=("synthetic.xyz", seed),
        **labels,
    )


def labelled(n: int, seed: int, periodic: bool = True) -> Configuration:
    rng = np.random.default_rng(seed)
    stress = rng.normal(size=(3, 3))
    return structure(
        n,
        seed,
        periodic,
        energy=float(rng.normal()) * 10,
        forces=rng.normal(size=(n, 3)),
        stress=stress + stress.T,
        virials=rng.normal(size=(3, 3)),
        dipole=rng.normal(size=3),
        polarizability=ALPHA * (seed + 1),
        properties={"U0": -40.0 - seed, "gap": 0.3},
        total_charge=float(seed % 3 - 1),
    )


def mixed() -> list[Configuration]:
    """Structures that carry different subsets of the labels."""
    return [
        labelled(3, 0),
        structure(2, 1, energy=-1.0, forces=np.ones((2, 3)), properties={"homo": -0.2}),
        structure(4, 2, dipole=[0.0, 0.0, 1.0], total_charge=-1.0),
        structure(1, 3),  # no label at all
        labelled(2, 4, periodic=False),
    ]


def batch_of(configs, dtype=torch.float64):
    return collate_samples(list(GraphDataset(configs, cutoff=3.0)), dtype)


def config_value(config: Configuration, name: str):
    if name.startswith(PROPERTY_PREFIX):
        return config.properties.get(name[len(PROPERTY_PREFIX) :])
    return getattr(config, name)


def check_against_configs(targets: Targets, configs: list[Configuration]) -> None:
    """Every label and mask of ``targets`` agrees with ``configs``, structure by structure."""
    names = sorted({name for c in configs for name in c.label_names()})
    assert set(targets.masks) == set(names)
    counts = [c.n_atoms for c in configs]
    for name in names:
        mask = targets.mask(name, len(configs))
        assert mask.dtype == torch.bool and mask.shape == (len(configs),)
        values = targets.label(name)
        parts = torch.split(values, counts) if name == "forces" else values.unbind(0)
        for k, (config, part) in enumerate(zip(configs, parts, strict=True)):
            expected = config_value(config, name)
            assert bool(mask[k]) == (expected is not None)
            if expected is None:
                assert not part.any()
            else:
                np.testing.assert_allclose(part.double().numpy(), expected, rtol=1e-6)
    for name in set(LABELS) - set(names):
        assert targets.label(name) is None and targets.mask(name, len(configs)) is None
    expected_charges = [c.total_charge for c in configs]
    assert targets.total_charge.tolist() == expected_charges


def test_mixed_labels_have_zeros_and_masks():
    configs = mixed()
    _, targets, _ = batch_of(configs)
    check_against_configs(targets, configs)
    assert sorted(targets.properties) == ["U0", "gap", "homo"]
    assert targets.masks["stress"].tolist() == [True, False, False, False, True]
    assert targets.masks["property:homo"].tolist() == [False, True, False, False, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(dtype):
    configs = mixed()
    _, t, weights = batch_of(configs, dtype)
    b, n = len(configs), sum(c.n_atoms for c in configs)
    assert t.energy.shape == (b,) and t.energy.dtype == torch.float64
    assert t.total_charge.shape == (b,) and t.total_charge.dtype == torch.float64
    assert t.forces.shape == (n, 3) and t.forces.dtype == dtype
    for field, shape in [("stress", (b, 3, 3)), ("virials", (b, 3, 3)), ("dipole", (b, 3))]:
        assert getattr(t, field).shape == shape and getattr(t, field).dtype == dtype
    assert t.polarizability.shape == (b, 3, 3) and t.polarizability.dtype == dtype
    # properties are totals like energies (U0 is -10^4 eV): float64 whatever the dtype
    assert all(v.shape == (b,) and v.dtype == torch.float64 for v in t.properties.values())
    assert weights.dtype == dtype


def test_fully_labelled_batch_is_as_before():
    """Every structure labelled: the legacy fields are the stacked labels, all masks True."""
    configs = [labelled(3, 0), labelled(2, 1), labelled(4, 2)]
    _, t, _ = batch_of(configs)
    np.testing.assert_array_equal(t.energy.numpy(), [c.energy for c in configs])
    np.testing.assert_array_equal(t.forces.numpy(), np.concatenate([c.forces for c in configs]))
    np.testing.assert_array_equal(t.stress.numpy(), np.stack([c.stress for c in configs]))
    np.testing.assert_array_equal(t.virials.numpy(), np.stack([c.virials for c in configs]))
    assert all(bool(m.all()) for m in t.masks.values())
    assert set(t.masks) == {*LABELS, "property:U0", "property:gap"}


def test_unlabelled_batch_has_only_total_charge():
    configs = [structure(2, 0), structure(3, 1, total_charge=2.0)]
    _, t, _ = batch_of(configs)
    assert t.masks == {}
    assert all(getattr(t, f) is None for f in (*LABELS, "properties"))
    assert t.total_charge.tolist() == [0.0, 2.0]


def test_total_charge_is_also_the_batch_input():
    configs = mixed()
    batch, targets, _ = batch_of(configs, torch.float32)
    assert batch.total_charge.dtype == torch.float64
    assert batch.total_charge.tolist() == [c.total_charge for c in configs] == [-1, 0, -1, 0, 0]
    assert torch.equal(batch.to("cpu", torch.float32).total_charge, targets.total_charge)
    assert batch.to("cpu", torch.float32).total_charge.dtype == torch.float64


def test_iterate_batches_passes_every_label_through():
    configs = mixed() * 3
    dataset = GraphDataset(configs, cutoff=3.0)
    generator = torch.Generator().manual_seed(7)
    seen = []
    for batch, targets, _ in iterate_batches(dataset, 4, shuffle=True, generator=generator):
        # the structures of a batch, recognised by their atom positions
        chunk = []
        for positions in torch.split(batch.positions, batch.batch.bincount().tolist()):
            matches = [c for c in configs if np.array_equal(c.positions, positions.numpy())]
            chunk.append(matches[0])
        check_against_configs(targets, chunk)
        seen.extend(chunk)
    assert len(seen) == len(configs)


def test_targets_move_with_the_trainers_field_by_field_to():
    """Code that moves every field with ``t.to(device)`` keeps working with the dict fields."""
    _, targets, _ = batch_of(mixed())
    moved = Targets(*(None if t is None else t.to("cpu") for t in targets))
    assert isinstance(moved.masks, TensorDict) and isinstance(moved.properties, TensorDict)
    assert moved.masks.keys() == targets.masks.keys()
    assert torch.equal(moved.properties["U0"], targets.properties["U0"])
    cast = targets.properties.to(torch.float32)
    assert all(v.dtype == torch.float32 for v in cast.values())


def test_hand_built_targets_count_every_structure():
    energy = torch.tensor([1.0, 2.0], dtype=torch.float64)
    targets = Targets(energy, torch.zeros(5, 3))  # positional, as before
    assert targets.mask("energy", 2).tolist() == [True, True]
    assert targets.mask("forces", 2).tolist() == [True, True]
    assert targets.mask("stress", 2) is None and targets.mask("property:U0", 2) is None
    with pytest.raises(KeyError, match="unknown label"):
        targets.label("charge")


def test_dataset_label_counts():
    dataset = GraphDataset(mixed(), cutoff=3.0)
    counts = dataset.label_counts()
    assert counts["energy"] == 3 and counts["dipole"] == 3 and counts["stress"] == 2
    assert counts["property:homo"] == 1 and counts["property:U0"] == 2
