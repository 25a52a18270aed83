"""E0s, shift/scale and splits, checked on closed-form synthetic data and the 3BPA/acac files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tensorpot.data.configuration import LABELS, Configuration
from tensorpot.data.readers import read_extxyz
from tensorpot.data.split import split_train_valid, take_subset
from tensorpot.data.statistics import (
    fit_e0s_average,
    is_isolated_atom,
    isolated_atom_energies,
    label_counts,
    mean_per_atom_residual_and_force_rms,
    resolve_e0s,
)
from tensorpot.errors import ConfigError, DataError

DATA = Path(__file__).parents[2].parent / "shared" / "data"
E0 = {1: -13.6, 6: -1029.5, 7: -1485.0, 8: -2042.0}
COMPOSITIONS = [[1, 1, 8], [6, 1, 1, 1, 1], [6, 8, 8], [1, 1], [7, 1, 1, 1], [6, 7, 1], [8, 8]]


def molecule(numbers, energy=None, forces=None, config_type="Default", frame=0, pbc=False):
    n = len(numbers)
    positions = np.column_stack([np.arange(n) * 1.1, np.zeros(n), np.zeros(n)])
    cell = np.eye(3) * 10.0 if pbc else np.zeros((3, 3))
    return Configuration(
        numbers=np.array(numbers),
        positions=positions,
        cell=cell,
        pbc=np.full(3, pbc),
        energy=energy,
        forces=forces,
        config_type=config_type,
        source=("synthetic.xyz", frame),
    )


def exact_energy(numbers, e0s=E0):
    return sum(e0s[z] for z in numbers)


def synthetic_set():
    return [molecule(c, exact_energy(c), frame=k) for k, c in enumerate(COMPOSITIONS)]


def test_average_fit_recovers_known_e0s():
    fitted = fit_e0s_average(synthetic_set(), [1, 6, 7, 8])
    assert set(fitted) == {1, 6, 7, 8}
    for z, value in E0.items():
        assert fitted[z] == pytest.approx(value, abs=1e-8)


def test_average_fit_single_composition_is_minimum_norm():
    counts = np.array([2.0, 1.0])  # H2O: two H, one O
    energies = [-2070.0, -2069.0]
    configs = [molecule([1, 1, 8], e, frame=k) for k, e in enumerate(energies)]
    fitted = fit_e0s_average(configs, [1, 8])
    solution = np.array([fitted[1], fitted[8]])
    expected = counts * np.mean(energies) / counts.dot(counts)
    np.testing.assert_allclose(solution, expected, rtol=1e-12)
    assert counts.dot(solution) == pytest.approx(np.mean(energies), rel=1e-12)


def test_average_fit_ignores_isolated_atoms():
    wrong = molecule([1], energy=123.0, config_type="IsolatedAtom", frame=99)
    fitted = fit_e0s_average([*synthetic_set(), wrong], [1, 6, 7, 8])
    assert fitted[1] == pytest.approx(E0[1], abs=1e-8)


def test_average_fit_errors():
    with pytest.raises(DataError, match=r"N \(Z=7\)"):
        fit_e0s_average(synthetic_set()[:4], [1, 6, 7, 8])  # no nitrogen in the first four
    with pytest.raises(DataError, match="synthetic.xyz, frame 1.*C \\(Z=6\\)"):
        fit_e0s_average(synthetic_set()[:2], [1, 8])
    with pytest.raises(DataError, match="no configurations with an energy"):
        fit_e0s_average([molecule([1, 1])], [1])


def test_isolated_atoms_of_3bpa_match_source():
    path = DATA / "3bpa" / "iso_atoms.xyz"
    if not path.is_file():
        pytest.skip("3bpa/iso_atoms.xyz is not available")
    e0s = isolated_atom_energies(read_extxyz(path))
    expected = {1: -13.5872, 6: -1029.4890, 7: -1484.9815, 8: -2041.9816}
    assert set(e0s) == set(expected)
    for z, value in expected.items():
        assert e0s[z] == pytest.approx(value, abs=1e-4)


def test_isolated_atoms_of_acac_with_config_type_match_source():
    path = DATA / "acac" / "isolated_atoms.xyz"
    if not path.is_file():
        pytest.skip("acac/isolated_atoms.xyz is not available")
    configs = read_extxyz(path)
    assert all(c.config_type == "isolated_atom" for c in configs)
    e0s = isolated_atom_energies(configs)
    expected = {1: -13.5684, 6: -1026.8539, 8: -2037.7969}
    assert e0s == pytest.approx(expected, abs=1e-4)


def test_isolated_atom_recognition():
    assert is_isolated_atom(molecule([1], config_type="IsolatedAtom"))
    assert is_isolated_atom(molecule([1], config_type="isolated_atom"))
    assert is_isolated_atom(molecule([1]))  # unlabelled single atom in vacuum
    assert not is_isolated_atom(molecule([29], pbc=True))  # one-atom bulk cell
    assert not is_isolated_atom(molecule([1], config_type="bulk"))
    assert not is_isolated_atom(molecule([1, 1]))


def test_isolated_atom_conflicts_and_bad_frames():
    a = molecule([1], -13.6, config_type="IsolatedAtom", frame=0)
    b = molecule([1], -13.0, config_type="IsolatedAtom", frame=4)
    with pytest.raises(DataError, match="frame 4"):
        isolated_atom_energies([a, b])
    with pytest.raises(DataError, match="has 2 atoms"):
        isolated_atom_energies([molecule([1, 1], -27.0, config_type="IsolatedAtom")])


def test_resolve_e0s_modes():
    train = synthetic_set()
    assert resolve_e0s(None, train, [1, 8]) == {1: 0.0, 8: 0.0}
    assert resolve_e0s({"H": -1.0, 8: -2.0, "6": -3.0}, train, [1, 8]) == {1: -1.0, 8: -2.0}
    average = resolve_e0s("average", train, [1, 6, 7, 8])
    assert average == pytest.approx(E0, abs=1e-8)
    isolated = [molecule([z], E0[z], config_type="IsolatedAtom") for z in (1, 8)]
    assert resolve_e0s("isolated", train + isolated, [1, 8]) == {1: E0[1], 8: E0[8]}


def test_resolve_e0s_errors():
    train = synthetic_set()
    with pytest.raises(DataError, match=r"no E0 for O \(Z=8\)"):
        resolve_e0s({1: -1.0}, train, [1, 8])
    isolated = [molecule([1], E0[1], config_type="IsolatedAtom")]
    with pytest.raises(DataError, match=r"no E0 for C \(Z=6\)"):
        resolve_e0s("isolated", train + isolated, [1, 6])
    with pytest.raises(DataError, match="nan"):
        resolve_e0s({1: float("nan")}, train, [1])
    with pytest.raises(ConfigError):
        resolve_e0s("mean", train, [1])
    with pytest.raises(ConfigError):
        resolve_e0s({"Qq": 1.0}, train, [1])


def test_shift_and_scale_closed_form():
    shift = -0.25
    rng = np.random.default_rng(3)
    configs, components = [], []
    for k, numbers in enumerate(COMPOSITIONS):
        forces = rng.normal(size=(len(numbers), 3))
        components.append(forces.ravel())
        energy = exact_energy(numbers) + shift * len(numbers)
        configs.append(molecule(numbers, energy, forces, frame=k))
    configs.append(molecule([1], -99.0, np.zeros((1, 3)), config_type="IsolatedAtom"))
    got_shift, got_scale = mean_per_atom_residual_and_force_rms(configs, E0)
    assert got_shift == pytest.approx(shift, abs=1e-10)
    expected_scale = np.sqrt(np.mean(np.concatenate(components) ** 2))
    assert got_scale == pytest.approx(expected_scale, rel=1e-12)


def test_shift_and_scale_errors():
    with pytest.raises(DataError, match="no configurations with forces"):
        mean_per_atom_residual_and_force_rms([molecule([1, 1], -27.0)], E0)
    with pytest.raises(DataError, match="every force component is zero"):
        mean_per_atom_residual_and_force_rms([molecule([1, 1], -27.0, np.zeros((2, 3)))], E0)
    with pytest.raises(DataError, match=r"frame 0: no E0 for C"):
        mean_per_atom_residual_and_force_rms([molecule([6, 1], -1.0, np.ones((2, 3)))], {1: 0.0})


# ---- splits ----------------------------------------------------------------------------


def test_split_is_a_deterministic_partition():
    items = list(range(50))
    train, valid = split_train_valid(items, 0.2, seed=7)
    assert len(valid) == 10 and len(train) == 40
    assert sorted(train + valid) == items
    assert not set(train) & set(valid)
    assert train == sorted(train) and valid == sorted(valid)
    assert split_train_valid(items, 0.2, seed=7) == (train, valid)
    assert split_train_valid(items, 0.2, seed=8) != (train, valid)


def test_split_matches_default_rng_permutation():
    items = list(range(20))
    _, valid = split_train_valid(items, 0.25, seed=11)
    expected = sorted(np.random.default_rng(11).permutation(20)[:5].tolist())
    assert valid == expected


def test_split_keeps_both_sides_non_empty_and_validates():
    train, valid = split_train_valid([1, 2, 3], 0.01, seed=0)
    assert len(valid) == 1 and len(train) == 2
    train, valid = split_train_valid([1, 2, 3], 0.99, seed=0)
    assert len(valid) == 2 and len(train) == 1
    with pytest.raises(ConfigError):
        split_train_valid([1, 2, 3], 1.0, seed=0)
    with pytest.raises(DataError):
        split_train_valid([1], 0.5, seed=0)


def test_take_subset():
    items = list(range(30))
    subset = take_subset(items, 12, seed=5)
    assert len(subset) == 12 and len(set(subset)) == 12 and set(subset) <= set(items)
    assert subset == take_subset(items, 12, seed=5)
    assert take_subset(items, 30, seed=1) == items
    with pytest.raises(DataError):
        take_subset(items, 31, seed=0)
    with pytest.raises(ConfigError):
        take_subset(items, 0, seed=0)


def test_label_counts_count_frames_per_label():
    water = {"numbers": [8, 1, 1], "positions": [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]}
    configs = [
        Configuration(**water, energy=-1.0, forces=np.zeros((3, 3)), properties={"U0": -1.0}),
        Configuration(**water, dipole=[0, 0, 1], properties={"gap": 0.3, "U0": -2.0}),
        Configuration(**water, energy=-2.0, total_charge=1.0),
        Configuration(**water),
    ]
    counts = label_counts(iter(configs))
    assert counts == {
        "energy": 2, "forces": 1, "stress": 0, "virials": 0, "dipole": 1, "polarizability": 0,
        "property:U0": 2, "property:gap": 1,
    }  # fmt: skip
    assert list(counts)[-2:] == ["property:U0", "property:gap"]
    for name, count in counts.items():
        assert count == sum(name in c.label_names() for c in configs)
    assert label_counts([]) == dict.fromkeys(LABELS, 0)
