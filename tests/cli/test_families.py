"""Every family through the user's workflow: ``tensorpot train`` from a YAML file, ``tensorpot
eval`` of the written model, and molecular dynamics through the ASE calculator."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from tensorpot.calculators import TensorPotCalculator
from tensorpot.cli.main import main
from tests.evaluation.tiny import THREE_BPA

SMALL = {"num_interactions": 2, "num_heads": 2, "num_radial_basis": 8}
#: a small model of each family (and of QuinNet and ICTP with FreeCG's layer), by test name
FAMILIES = {
    "visnet": {"model": "visnet", "num_channels": 8, **SMALL},
    "freecg": {"model": "freecg", "num_channels": 16, "num_groups": 2, **SMALL},
    "quinnet": {"model": "quinnet", "num_channels": 8, **SMALL},
    "quinnet_freecg": {"model": "quinnet", "freecg": True, "num_channels": 16, "num_groups": 2,
                       **SMALL},
    "ictp_freecg": {"model": "ictp", "num_channels": 8, "max_L": 1, "max_ell": 2,
                    "num_interactions": 2, "num_radial_basis": 8, "freecg": True,
                    "num_edges_eachgroup": 4, "freecg_odd_paths": True},
}  # fmt: skip


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_train_eval_and_md(family, tmp_path, capsys, five_frames):
    model = {"r_max": 4.0, **FAMILIES[family]}
    lines = [
        f"train_file: {THREE_BPA / 'train_300K.xyz'}",
        "max_train_frames: 4", "max_valid_frames: 2", "batch_size: 2", "E0s: average",
        "max_num_epochs: 1", "progress_bar: false", f"name: {family}",
        f"output_dir: {tmp_path / 'run'}", "lr: 1.0e-3", "lr_warmup_steps: 2",
        "model:", *(f"  {k}: {v}" for k, v in model.items()),
    ]  # fmt: skip
    config = tmp_path / "run.yaml"
    config.write_text("\n".join(lines) + "\n")
    assert main(["train", str(config)]) == 0
    assert f"model {model['model']}:" in capsys.readouterr().out
    model_file = tmp_path / "run" / f"{family}.model"
    assert main(["eval", "--model", str(model_file), "--data", str(five_frames)]) == 0
    assert "forces_rmse" in capsys.readouterr().out

    atoms = ase.io.read(five_frames, index=0)
    atoms.calc = TensorPotCalculator(model_path=str(model_file))
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    start = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=0.25 * units.fs).run(20)
    assert np.isfinite(atoms.positions).all()
    assert abs(atoms.get_total_energy() - start) < 1e-2 * len(atoms)  # NVE: energy kept
