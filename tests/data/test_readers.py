"""Readers: agreement with ASE and the raw files, unit factors, and DataError on bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from tensorpot.data.configuration import Configuration
from tensorpot.data.readers import (
    read_configurations,
    read_extxyz,
    read_md17_npz,
    read_rmd17_npz,
    read_sgdml_npz,
)
from tensorpot.errors import DataError

DATA = Path(__file__).parents[2].parent / "shared" / "data"

HEADER = 'Properties=species:S:1:pos:R:3:forces:R:3 energy={e} pbc="F F F"'


def shared(relative: str) -> Path:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"shared data file {relative} is not available")
    return path


def frame_text(atoms: list[str], header: str = HEADER, energy: str = "-1.5") -> str:
    return f"{len(atoms)}\n{header.format(e=energy)}\n" + "\n".join(atoms) + "\n"


GOOD = ["H 0.0 0.0 0.0 0.1 0.0 0.0", "H 0.0 0.0 0.74 -0.1 0.0 0.0"]


def write_frames(tmp_path: Path, frames: list[str], name: str = "data.xyz") -> Path:
    path = tmp_path / name
    path.write_text("".join(frames))
    return path


def assert_data_error(path: Path, frame: int | None, *parts: str, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_configurations(path, **kwargs)
    message = str(info.value)
    assert path.name in message
    if frame is not None:
        assert f"frame {frame}" in message
        assert info.value.frame == frame
    for part in parts:
        assert part in message
    return info.value


# ---- agreement with ASE and with the raw files -------------------------------------------


def test_3bpa_matches_ase():
    path = shared("3bpa/train_300K.xyz")
    configs = read_extxyz(path, index=":4")
    reference = ase.io.read(path, index=":4")
    assert len(configs) == 4
    for k, (config, atoms) in enumerate(zip(configs, reference, strict=True)):
        assert config.source == (str(path), k)
        assert config.energy == atoms.get_potential_energy()
        np.testing.assert_array_equal(config.forces, atoms.get_forces())
        np.testing.assert_array_equal(config.positions, atoms.positions)
        np.testing.assert_array_equal(config.numbers, atoms.numbers)
        assert not config.pbc.any()


def test_zuo_force_key_is_read_from_arrays():
    path = shared("zuo2020/extxyz/Si_test.xyz")
    configs = read_configurations(path, forces_key="force", index=":2")
    reference = ase.io.read(path, index=":2")
    for config, atoms in zip(configs, reference, strict=True):
        np.testing.assert_array_equal(config.forces, atoms.arrays["force"])
        np.testing.assert_array_equal(config.cell, atoms.cell.array)
        assert config.pbc.all()


def test_rmd17_is_converted_from_kcal_per_mol():
    path = shared("rmd17/npz/rmd17_ethanol_train_01.npz")
    raw = np.load(path)
    configs = read_configurations(path)
    factor = units.kcal / units.mol
    assert len(configs) == raw["energies"].shape[0]
    for k in (0, 17, len(configs) - 1):
        assert configs[k].energy == pytest.approx(raw["energies"][k] * factor, rel=1e-15)
        np.testing.assert_allclose(configs[k].forces, raw["forces"][k] * factor, rtol=1e-15)
        np.testing.assert_array_equal(configs[k].positions, raw["coords"][k])
        np.testing.assert_array_equal(configs[k].numbers, raw["nuclear_charges"])


def test_md17_npz_is_in_ev():
    path = shared("md17/ethanol/val.npz")
    raw = np.load(path)
    configs = read_configurations(path)
    assert len(configs) == raw["pos"].shape[0]
    np.testing.assert_array_equal([c.energy for c in configs], raw["energy"].reshape(-1))
    np.testing.assert_array_equal(configs[3].forces, raw["forces"][3])
    assert not any(c.pbc.any() for c in configs)
    assert all(not c.cell.any() for c in configs)  # the dummy box is dropped


def test_npz_layout_detection(tmp_path):
    rng = np.random.default_rng(0)
    pos = rng.normal(size=(3, 2, 3))
    forces = rng.normal(size=(3, 2, 3))
    np.savez(
        tmp_path / "r.npz",
        coords=pos,
        energies=np.array([1.0, 2.0, 3.0]),
        forces=forces,
        nuclear_charges=np.array([1, 8], dtype=np.uint8),
    )
    np.savez(
        tmp_path / "m.npz",
        pos=pos,
        energy=np.array([[1.0], [2.0], [3.0]]),
        forces=forces,
        atomic_numbers=np.array([1, 8]),
    )
    r = read_configurations(tmp_path / "r.npz")
    m = read_configurations(tmp_path / "m.npz")
    kcal = units.kcal / units.mol
    assert [c.energy for c in r] == pytest.approx([kcal, 2 * kcal, 3 * kcal], rel=1e-15)
    assert [c.energy for c in m] == [1.0, 2.0, 3.0]
    assert r[1].source == (str(tmp_path / "r.npz"), 1)
    same = read_configurations(tmp_path / "r.npz", energy_unit="eV")
    assert [c.energy for c in same] == [1.0, 2.0, 3.0]


def test_energy_unit_scales_energy_and_forces(tmp_path):
    path = write_frames(tmp_path, [frame_text(GOOD, energy="-1500.0")])
    (ev,) = read_extxyz(path)
    (mev,) = read_extxyz(path, energy_unit="meV")
    assert mev.energy == pytest.approx(ev.energy * 1e-3, rel=1e-15)
    np.testing.assert_allclose(mev.forces, ev.forces * 1e-3, rtol=1e-15)


@pytest.mark.parametrize("index", [":", "1:4", "::2", "-2:", "4:0:-2", "3", -1, slice(2, None)])
def test_index_selects_like_python_slicing(tmp_path, index):
    frames = [frame_text(GOOD, energy=str(float(k))) for k in range(6)]
    path = write_frames(tmp_path, frames)
    energies = [c.energy for c in read_extxyz(path, index=index)]
    expected = [float(k) for k in range(6)]
    if isinstance(index, str):
        parts = [int(p) if p else None for p in index.split(":")]
        index = parts[0] if len(parts) == 1 else slice(*parts)
    selected = expected[index] if isinstance(index, slice) else [expected[index]]
    assert energies == selected


def test_stress_six_and_nine_values_agree_and_match_ase(tmp_path):
    cell = np.diag([3.0, 4.0, 5.0])
    voigt = np.array([0.01, 0.02, 0.03, 0.004, 0.005, 0.006])  # xx yy zz yz xz xy
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.7, 0.1, 0.2]], cell=cell, pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.zeros((2, 3)), stress=voigt)
    written = tmp_path / "ase.xyz"
    ase.io.write(written, atoms, format="extxyz")
    six = " ".join(str(v) for v in voigt)
    header = f'Lattice="3 0 0 0 4 0 0 0 5" {HEADER} stress="{six}"'.replace('"F F F"', '"T T T"')
    path6 = write_frames(tmp_path, [frame_text(["H 0 0 0 0 0 0", "H 0.7 0.1 0.2 0 0 0"], header)])
    (from_ase,) = read_extxyz(written)
    (from_six,) = read_extxyz(path6)
    full = atoms.get_stress(voigt=False)
    np.testing.assert_allclose(from_ase.stress, full, atol=1e-15)
    np.testing.assert_allclose(from_six.stress, full, atol=1e-15)
    # ASE sign convention: virials = -stress * volume
    np.testing.assert_allclose(from_six.virials, -full * 60.0, rtol=1e-14)


def test_virials_give_stress_with_ase_sign(tmp_path):
    header = (
        'Lattice="2 0 0 0 2 0 0 0 2" Properties=species:S:1:pos:R:3:forces:R:3 '
        'energy=-1.0 virials="8 0 0 0 16 0 0 0 24" pbc="T T T"'
    )
    path = write_frames(tmp_path, [frame_text(["Si 0 0 0 0 0 0", "Si 1 1 1 0 0 0"], header)])
    (config,) = read_extxyz(path)
    np.testing.assert_allclose(config.virials, np.diag([8.0, 16.0, 24.0]))
    np.testing.assert_allclose(config.stress, -np.diag([1.0, 2.0, 3.0]))


def test_isolated_atoms_get_zero_forces_and_energy_only_files(tmp_path):
    path = shared("3bpa/iso_atoms.xyz")
    configs = read_extxyz(path)
    assert all(c.n_atoms == 1 and not c.forces.any() for c in configs)
    two = frame_text(["H 0 0 0", "H 0 0 0.74"], "Properties=species:S:1:pos:R:3 energy={e}")
    energy_only = write_frames(tmp_path, [two])
    (config,) = read_extxyz(energy_only, require_forces=False)
    assert config.forces is None and config.energy == -1.5


def test_configuration_is_frozen():
    config = Configuration(numbers=np.array([1, 1]), positions=[[0, 0, 0], [0, 0, 1.0]])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.energy = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        config.positions[0, 0] = 5.0


# ---- bad input -------------------------------------------------------------------------


def test_malformed_number_names_frame(tmp_path):
    bad = ["H 0.0 0.0 0.0 0.1 0.0 0.0", "H 0.0 abc 0.74 -0.1 0.0 0.0"]
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(GOOD), frame_text(bad)])
    assert_data_error(path, 2, "abc")


def test_missing_column_names_frame(tmp_path):
    bad = ["H 0.0 0.0 0.0 0.1 0.0 0.0", "H 0.0 0.0 0.74 -0.1"]
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(bad)])
    assert_data_error(path, 1)


def test_bad_count_line_names_frame(tmp_path):
    broken = frame_text(GOOD).replace("2\n", "two\n", 1)
    path = write_frames(tmp_path, [frame_text(GOOD), broken])
    assert_data_error(path, 1, "number of atoms", "line 5")


def test_truncated_file_names_frame(tmp_path):
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(GOOD)[:-30]])
    assert_data_error(path, 1, "file ends")


def test_missing_energy_key_lists_keys(tmp_path):
    header = 'Properties=species:S:1:pos:R:3:forces:R:3 dft_energy={e} pbc="F F F"'
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(GOOD, header)])
    assert_data_error(path, 1, "'energy'", "dft_energy")
    (config,) = read_configurations(path, energy_key="dft_energy", index="1")
    assert config.energy == -1.5


def test_missing_forces_key_lists_keys(tmp_path):
    header = 'Properties=species:S:1:pos:R:3:force:R:3 energy={e} pbc="F F F"'
    path = write_frames(tmp_path, [frame_text(GOOD, header)])
    assert_data_error(path, 0, "forces key 'forces'", "force")


@pytest.mark.parametrize("energy", ["nan", "inf", "-inf"])
def test_non_finite_energy_names_frame(tmp_path, energy):
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(GOOD, energy=energy)])
    assert_data_error(path, 1, "energy")


def test_non_finite_force_names_frame(tmp_path):
    bad = ["H 0.0 0.0 0.0 0.1 0.0 0.0", "H 0.0 0.0 0.74 -0.1 nan 0.0"]
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(GOOD), frame_text(bad)])
    assert_data_error(path, 2, "forces")


def test_coincident_atoms_name_frame(tmp_path):
    bad = ["O 1.0 2.0 3.0 0 0 0", "H 0.0 0.0 0.0 0 0 0", "H 1.0 2.0 3.0000000001 0 0 0"]
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(bad)])
    assert_data_error(path, 1, "atoms 0 and 2", "same position")


def test_unknown_element_names_frame(tmp_path):
    bad = ["H 0.0 0.0 0.0 0.1 0.0 0.0", "Xq 0.0 0.0 0.74 -0.1 0.0 0.0"]
    path = write_frames(tmp_path, [frame_text(GOOD), frame_text(bad)])
    assert_data_error(path, 1, "unknown element symbol", "Xq")


def test_ghost_atom_is_rejected(tmp_path):
    bad = ["H 0.0 0.0 0.0 0.1 0.0 0.0", "X 0.0 0.0 0.74 -0.1 0.0 0.0"]
    path = write_frames(tmp_path, [frame_text(bad)])
    assert_data_error(path, 0, "atomic number 0")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    path = write_frames(tmp_path, [content], name="empty.xyz")
    error = assert_data_error(path, None, "no frames")
    assert error.file == str(path)


def test_bad_stress_length_names_frame(tmp_path):
    header = HEADER + ' mystress="1 2 3 4 5"'
    path = write_frames(tmp_path, [frame_text(GOOD, header)])
    assert_data_error(path, 0, "mystress", "5 values", stress_key="mystress")


def test_npz_missing_key_is_named(tmp_path):
    path = tmp_path / "broken.npz"
    np.savez(path, coords=np.zeros((1, 2, 3)), forces=np.zeros((1, 2, 3)), nuclear_charges=[1, 1])
    with pytest.raises(DataError, match="missing key 'energies'") as info:
        read_rmd17_npz(path)
    assert path.name in str(info.value)


def test_npz_nan_and_coincident_atoms_name_frame(tmp_path):
    pos = np.tile(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), (5, 1, 1))
    energy = np.zeros((5, 1))
    energy[3] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, pos=pos, energy=energy, forces=np.zeros_like(pos), atomic_numbers=[1, 1])
    with pytest.raises(DataError, match="frame 3") as info:
        read_md17_npz(path)
    assert path.name in str(info.value)
    pos[2, 1] = pos[2, 0]
    np.savez(path, pos=pos, energy=np.zeros(5), forces=np.zeros_like(pos), atomic_numbers=[1, 1])
    with pytest.raises(DataError, match="frame 2.*same position"):
        read_md17_npz(path)


def test_unknown_suffix_and_missing_file(tmp_path):
    other = tmp_path / "data.cif"
    other.write_text("data_x\n")
    with pytest.raises(DataError, match="unknown file type"):
        read_configurations(other)
    with pytest.raises(DataError, match="file not found"):
        read_configurations(tmp_path / "absent.xyz")


# ---- sGDML / MD22 layout -------------------------------------------------------------------


def sgdml_arrays(n_frames: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """A small water-like sGDML file's arrays: atoms ~1 Å apart, random labels."""
    rng = np.random.default_rng(seed)
    base = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    return {
        "R": base + 0.01 * rng.normal(size=(n_frames, 3, 3)),
        "E": rng.normal(size=(n_frames, 1)),
        "F": rng.normal(size=(n_frames, 3, 3)),
        "z": np.array([8, 1, 1]),
    }


@pytest.mark.parametrize(
    ("stated", "energy", "length"),
    [
        ({}, units.kcal / units.mol, 1.0),  # MD22: no unit keys, kcal/mol and Å
        ({"e_unit": "kcal/mol", "r_unit": "Ang"}, units.kcal / units.mol, 1.0),
        ({"e_unit": "eV"}, 1.0, 1.0),
        ({"e_unit": np.bytes_(b"Ha"), "r_unit": "Bohr"}, units.Hartree, units.Bohr),
        ({"e_unit": "kJ/mol"}, units.kJ / units.mol, 1.0),
    ],
)
def test_sgdml_units_from_the_file(tmp_path, stated, energy, length):
    raw = sgdml_arrays()
    path = tmp_path / "d.npz"
    np.savez(path, **raw, **{k: np.array(v) for k, v in stated.items()})
    configs = read_configurations(path)
    assert len(configs) == 3
    for k, config in enumerate(configs):
        assert config.source == (str(path), k)
        np.testing.assert_array_equal(config.numbers, raw["z"])
        np.testing.assert_allclose(config.positions, raw["R"][k] * length, rtol=1e-14)
        assert config.energy == pytest.approx(raw["E"][k, 0] * energy, rel=1e-14)
        np.testing.assert_allclose(config.forces, raw["F"][k] * energy / length, rtol=1e-14)
        assert not config.pbc.any()


def test_sgdml_flat_energies_and_given_unit(tmp_path):
    """``E`` may be [frames]; a unit given for a file that states none replaces kcal/mol, and
    one that agrees with the file's (in another spelling) is accepted."""
    raw = sgdml_arrays()
    path = tmp_path / "d.npz"
    np.savez(path, **{**raw, "E": raw["E"].reshape(-1)})
    configs = read_sgdml_npz(path, energy_unit="eV")
    assert [c.energy for c in configs] == list(raw["E"].reshape(-1))
    np.savez(path, **raw, e_unit=np.array("kcal/mol"))
    same = read_configurations(path, energy_unit="KCAL / MOL")
    assert same[0].energy == pytest.approx(raw["E"][0, 0] * units.kcal / units.mol, rel=1e-14)


def test_sgdml_lattice_makes_frames_periodic(tmp_path):
    raw = sgdml_arrays()
    path = tmp_path / "d.npz"
    np.savez(path, **raw, lattice=5.0 * np.eye(3), r_unit=np.array("Bohr"))
    configs = read_configurations(path)
    assert all(c.pbc.all() for c in configs)
    np.testing.assert_allclose(configs[1].cell, 5.0 * units.Bohr * np.eye(3), rtol=1e-14)


@pytest.mark.parametrize(
    ("change", "parts"),
    [
        ({"e_unit": np.array("kcal")}, ("e_unit 'kcal'", "unknown energy unit")),
        ({"r_unit": np.array("furlong")}, ("r_unit 'furlong'", "unknown length unit")),
        ({"e_unit": np.array([1.0])}, ("'e_unit' must be one unit string",)),
        ({"e_unit": np.array(["eV", "eV"])}, ("'e_unit' must be one unit string",)),
        ({"E": np.zeros(4)}, ("'E' has shape (4,)", "3 frames")),
        ({"F": np.zeros((3, 2, 3))}, ("'F' has shape (3, 2, 3)",)),
        ({"z": np.array([8, 1])}, ("'z' has shape (2,)",)),
        ({"R": np.zeros((3, 3))}, ("'R' must have shape [frames, N, 3]",)),
        ({"F": None}, ("missing key 'F'",)),
    ],
)
def test_sgdml_bad_files_name_file_and_problem(tmp_path, change, parts):
    raw = {**sgdml_arrays(), **change}
    path = tmp_path / "bad.npz"
    np.savez(path, **{k: v for k, v in raw.items() if v is not None})
    assert_data_error(path, None, *parts)


def test_sgdml_unit_conflicting_with_the_file_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, **sgdml_arrays(), e_unit=np.array("eV"))
    assert_data_error(path, None, "states e_unit 'eV'", "'kcal/mol' was given",
                      energy_unit="kcal/mol")  # fmt: skip


def test_sgdml_nan_names_the_frame(tmp_path):
    raw = sgdml_arrays()
    raw["F"][2, 1, 0] = np.inf
    path = tmp_path / "d.npz"
    np.savez(path, **raw)
    assert_data_error(path, 2)
