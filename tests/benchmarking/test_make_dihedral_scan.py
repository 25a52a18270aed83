"""benchmarks/make_dihedral_scan.py: the 3BPA linker torsions, the rigid turn, and the committed
scan file against its description; a real two-frame xTB scan in the slow set."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCAN = ROOT / "data" / "3bpa" / "dihedral_scan_xtb.xyz"
_spec = importlib.util.spec_from_file_location(
    "make_dihedral_scan", ROOT / "benchmarks" / "make_dihedral_scan.py"
)
ds = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ds)


def angle_difference(a: float, b: float) -> float:
    """``a - b`` in degrees, wrapped into [-180, 180)."""
    return (a - b + 180.0) % 360.0 - 180.0


@pytest.fixture(scope="module")
def frame():
    return ase.io.read(ROOT / "data" / "3bpa" / "test_300K_first200.xyz", index=7)


def test_linker_torsions_follow_the_chain(frame):
    torsions = {name: ds.linker_torsion(frame, name) for name in ds.TORSIONS}
    assert torsions["alpha"][1:] == torsions["beta"][:3]
    assert torsions["beta"][1:] == torsions["gamma"][:3]
    _, c_pyr, oxygen, ch2 = torsions["alpha"]
    assert frame.numbers[oxygen] == 8 and frame.numbers[[c_pyr, ch2]].tolist() == [6, 6]
    bonds = ds.bonds(frame)
    hydrogens = [a for a in ds.neighbours(bonds, ch2) if frame.numbers[a] == 1]
    assert len(hydrogens) == 2  # the CH2 group
    for name, atoms in torsions.items():
        for a, b in zip(atoms, atoms[1:]):
            assert (min(a, b), max(a, b)) in bonds, (name, a, b)


@pytest.mark.parametrize("name", ["alpha", "beta", "gamma"])
def test_the_turn_sets_the_torsion_and_keeps_each_side_rigid(frame, name):
    torsion = ds.linker_torsion(frame, name)
    mask = ds.moving_side(frame, torsion)
    assert mask[list(torsion[2:])].all() and not mask[list(torsion[:2])].any()
    turned = frame.copy()
    target = frame.get_dihedral(*torsion) + 75.0
    turned.set_dihedral(*torsion, target, mask=mask)
    assert angle_difference(turned.get_dihedral(*torsion), target) == pytest.approx(0, abs=1e-8)
    for side in (mask, ~mask):
        before = frame[side].get_all_distances()
        np.testing.assert_allclose(turned[side].get_all_distances(), before, atol=1e-10)


def test_the_committed_scan_matches_its_description():
    frames = ase.io.read(SCAN, index=":")
    assert len(frames) == 24
    beta = tuple(int(a) for a in frames[0].info["torsion_atoms"])
    assert beta == ds.linker_torsion(frames[0], "beta")
    alpha = ds.linker_torsion(frames[0], "alpha")
    start = frames[0].info["dihedral"]
    for k, atoms in enumerate(frames):
        assert atoms.info["method"] == "GFN2-xTB"
        assert -180.0 <= atoms.info["dihedral"] < 180.0
        assert angle_difference(atoms.info["dihedral"], start + 15.0 * k) == pytest.approx(0.0)
        measured = atoms.get_dihedral(*beta)
        assert angle_difference(measured, atoms.info["dihedral"]) == pytest.approx(0, abs=1e-4)
        assert atoms.get_dihedral(*alpha) == pytest.approx(frames[0].get_dihedral(*alpha), abs=1e-4)
        assert atoms.get_forces().shape == (27, 3)
    energies = np.array([a.get_potential_energy() for a in frames])
    assert np.ptp(energies) < 1.0  # eV: one conformer family, no broken bond


@pytest.mark.slow
def test_a_two_frame_scan_with_xtb(tmp_path, monkeypatch):
    pytest.importorskip("tblite")
    out = tmp_path / "scan.xyz"
    argv = ["make_dihedral_scan.py", str(out), "--points", "2", "--step", "30", "--fmax", "0.05",
            "--source", str(ROOT / "data" / "3bpa" / "test_300K_first200.xyz")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    ds.main()
    frames = ase.io.read(out, index=":")
    assert len(frames) == 2
    assert angle_difference(frames[1].info["dihedral"], frames[0].info["dihedral"]) == (
        pytest.approx(30.0)
    )
    for atoms in frames:
        assert np.isfinite(atoms.get_potential_energy())
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit):  # refuses to overwrite
        ds.main()
