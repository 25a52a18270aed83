"""Configuration's molecular labels: shapes accepted, checks that name the file and frame,
read-only storage, and the label names that masks and label counts use."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from tensorpot.data.configuration import LABELS, Configuration, Properties
from tensorpot.errors import DataError

WATER = {
    "numbers": np.array([8, 1, 1]),
    "positions": [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]],
    "source": ("water.xyz", 4),
}
# a symmetric polarizability and its Voigt form xx yy zz yz xz xy
ALPHA = np.array([[1.0, 0.6, 0.5], [0.6, 2.0, 0.4], [0.5, 0.4, 3.0]])
ALPHA_VOIGT = [1.0, 2.0, 3.0, 0.4, 0.5, 0.6]


def water(**labels) -> Configuration:
    return Configuration(**WATER, **labels)


def assert_names_frame(info: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(info.value)
    assert "water.xyz" in message and "frame 4" in message
    assert info.value.frame == 4
    for part in parts:
        assert part in message


def test_defaults_carry_no_molecular_label():
    config = water()
    assert config.dipole is None and config.polarizability is None
    assert config.properties == {} and isinstance(config.properties, Properties)
    assert config.total_charge == 0.0
    assert config.label_names() == ()


@pytest.mark.parametrize(
    "value", [ALPHA, ALPHA.reshape(9), ALPHA.reshape(9).tolist(), ALPHA_VOIGT, [ALPHA_VOIGT]]
)
def test_polarizability_from_3x3_nine_or_six_voigt_values(value):
    config = water(polarizability=value)
    np.testing.assert_array_equal(config.polarizability, ALPHA)
    assert config.polarizability.dtype == np.float64


def test_polarizability_within_tolerance_is_stored_exactly_symmetric():
    slightly = ALPHA.copy()
    slightly[0, 1] += 1e-7  # relative 3e-8 of the largest entry
    config = water(polarizability=slightly)
    np.testing.assert_array_equal(config.polarizability, config.polarizability.T)
    assert config.polarizability[0, 1] == pytest.approx(0.6 + 0.5e-7, abs=1e-15)


def test_asymmetric_polarizability_names_file_and_frame():
    skewed = ALPHA.copy()
    skewed[0, 1] += 1e-3
    with pytest.raises(DataError) as info:
        water(polarizability=skewed)
    assert_names_frame(info, "polarizability is not symmetric")


@pytest.mark.parametrize("value", [[1.0, 2.0, 3.0], np.zeros((2, 3)), np.eye(4)])
def test_polarizability_of_wrong_size(value):
    with pytest.raises(DataError) as info:
        water(polarizability=value)
    assert_names_frame(info, "polarizability must have shape [3, 3]")


def test_dipole_shape_and_checks():
    assert water(dipole=[[0.1, -0.2, 0.3]]).dipole.shape == (3,)
    with pytest.raises(DataError) as info:
        water(dipole=[0.1, 0.2])
    assert_names_frame(info, "dipole must have shape [3]")
    with pytest.raises(DataError) as info:
        water(dipole=[0.1, np.nan, 0.3])
    assert_names_frame(info, "dipole", "NaN or inf")
    with pytest.raises(DataError) as info:
        water(polarizability=np.where(ALPHA == 3.0, np.inf, ALPHA))
    assert_names_frame(info, "polarizability", "NaN or inf")


def test_properties_are_read_only_floats():
    given = {"U0": np.array([-40.5]), "gap": 1, "homo": np.float32(-0.25)}
    config = water(properties=given)
    assert dict(config.properties) == {"U0": -40.5, "gap": 1.0, "homo": -0.25}
    assert all(type(v) is float for v in config.properties.values())
    given["U0"] = 0.0  # the configuration holds its own copy
    assert config.properties["U0"] == -40.5
    with pytest.raises(TypeError):
        config.properties["U0"] = 1.0  # type: ignore[index]


@pytest.mark.parametrize(
    "properties, part",
    [
        ({"U0": float("nan")}, "property 'U0' is nan"),
        ({"U0": [1.0, 2.0]}, "property 'U0' must be one number"),
        ({"U0": "high"}, "property 'U0' must be one number"),
        ({"U0": True}, "property 'U0' must be one number"),
        ({"": 1.0}, "non-empty strings"),
        ({3: 1.0}, "non-empty strings"),
        ([("U0", 1.0)], "must be a mapping"),
    ],
)
def test_bad_properties_name_file_and_frame(properties, part):
    with pytest.raises(DataError) as info:
        water(properties=properties)
    assert_names_frame(info, part)


def test_total_charge_is_a_finite_number():
    assert water(total_charge=np.int64(-1)).total_charge == -1.0
    for bad in (float("inf"), [0, 1]):
        with pytest.raises(DataError) as info:
            water(total_charge=bad)
        assert_names_frame(info, "total_charge")


def test_label_names_in_labels_order_then_properties():
    config = water(
        energy=-1.0,
        forces=np.zeros((3, 3)),
        dipole=[0.0, 0.0, 1.0],
        polarizability=ALPHA,
        properties={"gap": 0.3, "U0": -40.0},
    )
    assert config.label_names() == (
        "energy", "forces", "dipole", "polarizability", "property:gap", "property:U0",
    )  # fmt: skip
    assert set(config.label_names()[:4]) <= set(LABELS)


def test_labelled_configuration_survives_pickle_and_deepcopy():
    config = water(dipole=[0.0, 0.0, 1.0], polarizability=ALPHA, properties={"U0": -1.0})
    for copied in (pickle.loads(pickle.dumps(config)), copy.deepcopy(config)):
        assert copied.properties == config.properties
        assert isinstance(copied.properties, Properties)
        np.testing.assert_array_equal(copied.polarizability, ALPHA)
        np.testing.assert_array_equal(copied.dipole, config.dipole)


def test_molecular_label_arrays_are_read_only():
    config = water(dipole=[0.0, 0.0, 1.0], polarizability=ALPHA)
    with pytest.raises(ValueError):
        config.dipole[0] = 1.0
    with pytest.raises(ValueError):
        config.polarizability[0, 0] = 1.0


def test_structure_is_the_frame_without_labels():
    molecule = water(energy=-1.0, forces=np.ones((3, 3))).structure()
    np.testing.assert_array_equal(molecule.numbers, WATER["numbers"])
    np.testing.assert_array_equal(molecule.positions, WATER["positions"])
    assert not molecule.pbc.any() and molecule.cell.rank == 0 and molecule.calc is None
    cell = np.diag([5.0, 6.0, 7.0])
    box = water(cell=cell, pbc=[True, True, False]).structure()
    np.testing.assert_array_equal(box.cell[:], cell)
    assert box.pbc.tolist() == [True, True, False]
