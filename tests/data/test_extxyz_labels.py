"""The extxyz reader's molecular labels: dipole, polarizability, total charge and named
properties, each optional per frame, in the file's units, and DataError on a bad value."""

from __future__ import annotations

import io
from pathlib import Path

import ase.io
import numpy as np
import pytest

from tensorpot.data.readers import read_configurations, read_extxyz
from tensorpot.errors import ConfigError, DataError

DATA = Path(__file__).parents[2].parent / "shared" / "data"
ATOMS = ["O 0.0 0.0 0.0 0.0 0.0 0.1", "H 0.96 0.0 0.0 0.1 0.0 0.0", "H -0.24 0.93 0.0 0.0 0.1 0.0"]
PROPERTIES = "Properties=species:S:1:pos:R:3:forces:R:3"


def frame(extra: str = "", energy: str = "-2080.5") -> str:
    header = f'{PROPERTIES} energy={energy} pbc="F F F" {extra}'.strip()
    return f"{len(ATOMS)}\n{header}\n" + "\n".join(ATOMS) + "\n"


def write(tmp_path: Path, *frames: str) -> Path:
    path = tmp_path / "labels.xyz"
    path.write_text("".join(frames))
    return path


def error_of(path: Path, **options) -> DataError:
    with pytest.raises(DataError) as info:
        read_configurations(path, **options)
    assert path.name in str(info.value)
    return info.value


def test_ase_gives_flat_arrays_for_nine_and_three_values():
    """What the reader relies on: ASE reshapes only stress/virial, and puts the dipole among
    the calculator's results."""
    text = frame('dipole="0.1 0.2 0.3" polarizability="1 0 0 0 1 0 0 0 1" U0=-1.5')
    atoms = ase.io.read(io.StringIO(text), format="extxyz")
    assert atoms.info["polarizability"].shape == (9,)
    assert atoms.calc.results["dipole"].shape == (3,)
    assert "U0" in atoms.info


def test_labels_are_read_per_frame_and_optional(tmp_path):
    path = write(
        tmp_path,
        frame(
            'dipole="0.1 -0.2 0.3" polarizability="1 0.5 0 0.5 2 0 0 0 3" U0=-76.4 '
            "total_charge=-1 gap_eV=7.5"
        ),  # fmt: skip
        frame('polarizability="1 2 3 0.1 0.2 0.3" U0=-76.3'),  # Voigt xx yy zz yz xz xy
        frame(),
    )
    first, second, third = read_extxyz(path, property_keys={"U0": "U0", "gap": "gap_eV"})
    np.testing.assert_array_equal(first.dipole, [0.1, -0.2, 0.3])
    np.testing.assert_array_equal(first.polarizability, [[1, 0.5, 0], [0.5, 2, 0], [0, 0, 3]])
    assert dict(first.properties) == {"U0": -76.4, "gap": 7.5}
    assert first.total_charge == -1.0
    assert second.dipole is None
    np.testing.assert_array_equal(
        second.polarizability, [[1.0, 0.3, 0.2], [0.3, 2.0, 0.1], [0.2, 0.1, 3.0]]
    )
    assert dict(second.properties) == {"U0": -76.3} and second.total_charge == 0.0
    assert third.dipole is None and third.polarizability is None
    assert third.properties == {} and third.total_charge == 0.0


def test_other_keys_and_no_conversion(tmp_path):
    path = write(tmp_path, frame('mu="1 2 3" alpha="4 0 0 0 5 0 0 0 6" charge=2 homo=-0.25'))
    (config,) = read_configurations(
        path,
        energy_unit="kcal/mol",
        dipole_key="mu",
        polarizability_key="alpha",
        total_charge_key="charge",
        property_keys={"homo": "homo"},
    )
    np.testing.assert_array_equal(config.dipole, [1.0, 2.0, 3.0])  # not multiplied
    np.testing.assert_array_equal(config.polarizability, np.diag([4.0, 5.0, 6.0]))
    assert config.total_charge == 2.0 and dict(config.properties) == {"homo": -0.25}
    assert config.energy != -2080.5  # the energy itself was converted


def test_property_missing_from_every_frame_is_not_an_error_here(tmp_path):
    path = write(tmp_path, frame(), frame())
    configs = read_extxyz(path, property_keys={"U0": "U0"})
    assert all(c.properties == {} for c in configs)


@pytest.mark.parametrize(
    "extra, options, parts",
    [
        ('dipole="0.1 0.2"', {}, ["dipole key 'dipole' must have 3 values, got 2"]),
        ("dipole=0.5", {}, ["dipole key 'dipole' must have 3 values, got 1"]),
        ('mu="1 2 3 4"', {"dipole_key": "mu"}, ["dipole key 'mu' must have 3 values, got 4"]),
        ('polarizability="1 2 3 4"', {}, ["polarizability key 'polarizability'", "got 4"]),
        ('polarizability="1 9 0 0 1 0 0 0 1"', {}, ["polarizability is not symmetric"]),
        ('polarizability="1 0 0 0 1 0 0 0 nan"', {}, ["polarizability", "NaN"]),
        ("U0=abc", {"property_keys": {"U0": "U0"}}, ["property 'U0' key 'U0'", "not numeric"]),
        ('U0="1 2"', {"property_keys": {"U0": "U0"}}, ["property 'U0' key 'U0'", "one number"]),
        ("U0=inf", {"property_keys": {"U0": "U0"}}, ["property 'U0'", "inf"]),
        ('total_charge="0 1"', {}, ["total_charge key 'total_charge'", "one number"]),
    ],
)
def test_bad_label_names_file_frame_and_key(tmp_path, extra, options, parts):
    path = write(tmp_path, frame(), frame(extra))
    error = error_of(path, **options)
    assert error.frame == 1 and "frame 1" in str(error)
    for part in parts:
        assert part in str(error)


@pytest.mark.parametrize("property_keys", [["U0"], {"U0": 3}, {"": "U0"}])
def test_bad_property_keys_is_a_config_error(tmp_path, property_keys):
    path = write(tmp_path, frame())
    with pytest.raises(ConfigError, match="property_keys"):
        read_configurations(path, property_keys=property_keys)


def test_spice_water_dipole_and_charge():
    path = DATA / "spice_les_subsets/mace_off_test_subsets/water.xyz"
    if not path.is_file():
        pytest.skip("shared SPICE subsets are not available")
    configs = read_configurations(path, index=":5")
    reference = ase.io.read(path, index=":5")
    for config, atoms in zip(configs, reference, strict=True):
        np.testing.assert_array_equal(config.dipole, atoms.calc.results["dipole"])
        assert config.total_charge == float(atoms.info.get("total_charge", 0.0))
