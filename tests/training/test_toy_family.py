"""A model family defined here, outside tensorpot, trained, evaluated, saved and loaded through
the public functions: nothing in training, evaluation, calculators or the CLI names a family."""

from __future__ import annotations

import re
from typing import Literal

import pytest
import torch
from torch import nn

import tensorpot
from tensorpot.calculators import TensorPotCalculator
from tensorpot.cli.main import main
from tensorpot.evaluation.evaluate import evaluate_file
from tensorpot.models.base import FeatureDims, Features, Geometry, Potential
from tensorpot.models.config import PotentialConfig
from tensorpot.models.registry import ModelFamily, register_family, unregister_family
from tensorpot.training import train
from tensorpot.training.state import parameter_groups
from tests.training.conftest import tiny_run


class ToyConfig(PotentialConfig):
    """A species embedding plus a smooth sum over neighbours; one hyperparameter."""

    model: Literal["toy"] = "toy"
    width: int = 4
    avg_num_neighbors: float = 1.0  # a field named like a statistic: filled by training


class Toy(Potential):
    WEIGHT_DECAY = r"^mix\."

    def __init__(self, config: ToyConfig):
        super().__init__(
            config.atomic_numbers,
            config.r_max,
            config.e0_list(),
            config.atomic_inter_scale,
            config.atomic_inter_shift,
            config.outputs,
        )
        self.config = config
        self.embed = nn.Embedding(len(config.atomic_numbers), config.width)
        self.mix = nn.Linear(config.width, config.width, bias=False)
        self.energy = nn.Linear(config.width, 1, bias=False)
        self.build_heads(FeatureDims(scalars=config.width), config.head_hidden)

    def representation(self, geometry: Geometry) -> Features:
        centre, neighbour = geometry.edge_index
        r = torch.linalg.vector_norm(geometry.edge_vectors, dim=-1)
        weight = ((1 - r / self.r_max) ** 2 * torch.exp(-r)).unsqueeze(-1)  # [E, 1], smooth
        own = self.embed(geometry.species)  # [N, W]
        around = torch.zeros_like(own).index_add(0, centre, weight * own[neighbour])
        scalars = torch.tanh(self.mix(own + around / self.config.avg_num_neighbors))
        return Features(site_energy=self.energy(scalars).squeeze(-1), scalars=scalars)


@pytest.fixture
def toy_family():
    register_family(ModelFamily(name="toy", config=ToyConfig, model=Toy))
    yield
    unregister_family("toy")


def test_toy_family_trains_evaluates_saves_and_loads(
    toy_family, tmp_path, frames_file, test_frames_file, e0s, capsys
):
    config = tiny_run(
        frames_file, tmp_path / "run", e0s, max_num_epochs=3, test_files=[str(test_frames_file)]
    )
    config["model"] = {"model": "toy", "r_max": 4.0, "width": 6}
    result = train(config)
    table = result.error_tables["test600"]
    assert torch.isfinite(torch.tensor(table["forces_rmse"]))
    model = tensorpot.load_model(result.model_path)
    assert isinstance(model, Toy) and model.config.avg_num_neighbors > 1.0  # filled from data
    decayed = {
        n
        for g in parameter_groups(model, 1e-6)
        if g["name"] == "decay"
        for n, p in model.named_parameters()
        if any(p is q for q in g["params"])
    }
    assert decayed == {n for n, _ in model.named_parameters() if re.match(r"^mix\.", n)}
    again = tensorpot.save_model(model, tmp_path / "again.model")
    eval_table, _ = evaluate_file(again, test_frames_file)
    assert eval_table["forces_rmse"] == pytest.approx(table["forces_rmse"], rel=1e-9)
    assert main(["eval", "--model", str(again), "--data", str(test_frames_file)]) == 0
    assert "test600.xyz" in capsys.readouterr().out


def test_toy_family_with_a_property_head_through_ase(toy_family):
    from tests.models.contract import molecule

    model = tensorpot.build_model(
        {"model": "toy", "outputs": ["energy", {"property": "gap", "reduction": "mean"}]}
    )
    atoms = molecule(1)
    atoms.calc = TensorPotCalculator(model=model)
    energy = atoms.get_potential_energy()
    assert isinstance(atoms.calc.results["gap"], float) and energy == energy


def test_a_family_name_cannot_be_registered_twice(toy_family):
    with pytest.raises(ValueError, match="exists"):
        register_family(ModelFamily(name="toy", config=ToyConfig, model=Toy))
