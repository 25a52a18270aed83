"""ViSNet and FreeCG: the shared model contract, the official code as an oracle, the switches.

The oracle tests copy the official FreeCG model's weights (randomised, non-zero biases, CG
weights scaled up) into tensorpot's model with ``faithful: true`` and compare energies and forces
in float64 on molecules of ``../shared/data`` (rMD17 aspirin, 3BPA) to 1e-10 relative.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms

import tensorpot
from tensorpot.errors import ConfigError
from tests.models.contract import ModelContract, molecule
from tests.models.official import (
    DATA,
    copy_into,
    official_freecg,
    perturb,
    reference_loader,
    relative_errors,
)

SMALL = {
    "r_max": 3.0,
    "num_channels": 16,
    "num_interactions": 3,
    "num_heads": 4,
    "num_radial_basis": 8,
    "atomic_numbers": [1, 6, 7, 8],
}
FREECG = {**SMALL, "model": "freecg", "num_groups": 2}


def randomised(config: dict, seed: int = 0) -> tensorpot.models.Potential:
    """A model with random non-zero biases and norms (the zero-initialised biases and the
    near-zero CG weights would hide terms from the symmetry tests)."""
    model = tensorpot.build_model(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            p.add_(0.2 * noise if "group_cg" not in name else 2.0 * noise)
    return model


class RandomisedContract(ModelContract):
    def model(self, **overrides):
        model = tensorpot.build_model({**self.config, **overrides})
        if overrides.get("E0s") is None and "seed" not in overrides:
            return randomised({**self.config, **overrides})
        return model


class TestViSNet(RandomisedContract):
    config = {**SMALL, "model": "visnet"}


class TestFreeCG(RandomisedContract):
    config = FREECG


class TestFreeCGMaxMin(RandomisedContract):
    """The QM9 setting's vector norm."""

    config = {**FREECG, "vecnorm_type": "max_min", "num_interactions": 2}

    def test_smooth_at_cutoff(self):
        """Energy only: the max-min norm rescales each atom's vectors to a fixed range, so a
        neighbour's vanishing contribution near r_max still sets a direction, and the forces
        jump there (a setting for properties such as QM9's, not for MD)."""
        model = self.model()
        base = molecule(6, n=3)
        energies = []
        for r in (model.r_max - 1e-6, model.r_max + 1e-6):
            atoms = base + Atoms("H", positions=[base.positions[0] + r * np.array([0.6, 0, 0.8])])
            energies.append(float(self.energy_forces(model, atoms)[0]))
        assert abs(energies[0] - energies[1]) < 1e-9


def frames(path, count: int, stride: int = 97) -> list[Atoms]:
    if not path.is_file():
        pytest.skip(f"no data at {path}")
    if path.suffix == ".npz":
        data = np.load(path)
        return [
            Atoms(numbers=data["nuclear_charges"], positions=data["coords"][k])
            for k in range(0, count * stride, stride)
        ]
    return ase.io.read(path, index=f"0:{count * stride}:{stride}")


ASPIRIN = DATA / "rmd17" / "npz" / "rmd17_aspirin_test_01.npz"
BPA = DATA / "3bpa" / "test_300K.xyz"


def compare_with_official(structures, sizes: dict, seed: int = 0) -> tuple[float, float]:
    """Worst relative error of energies and forces, ours (faithful) against the official code,
    with the same randomised weights."""
    official, loader = official_freecg(
        num_layers=sizes["num_interactions"], embedding_dimension=sizes["num_channels"],
        num_groups=sizes["num_groups"], num_edges_eachgroup=sizes["num_edges_eachgroup"],
        num_heads=sizes["num_heads"], num_rbf=sizes["num_radial_basis"], cutoff=5.0,
        vecnorm_type=sizes.get("vecnorm_type", "none"),
    )  # fmt: skip
    perturb(official, seed)
    zs = [1, 6, 7, 8]
    ours = tensorpot.build_model({"model": "freecg", "faithful": True, "atomic_numbers": zs,
                                  "r_max": 5.0, **sizes})  # fmt: skip
    copy_into(ours, official, zs)
    return relative_errors(ours, official, loader, structures)


ORACLE_SIZES = {
    "num_channels": 32, "num_interactions": 3, "num_groups": 4, "num_edges_eachgroup": 8,
    "num_heads": 4, "num_radial_basis": 16,
}  # fmt: skip


@pytest.mark.parametrize("path", [ASPIRIN, BPA], ids=["aspirin", "3bpa"])
def test_official_freecg_oracle(path):
    """Same weights, same energies and forces as the official code (float64, 1e-10)."""
    e_err, f_err = compare_with_official(frames(path, 3), ORACLE_SIZES)
    assert e_err < 1e-10 and f_err < 1e-10, (e_err, f_err)


def test_official_freecg_oracle_max_min_norm():
    sizes = {**ORACLE_SIZES, "vecnorm_type": "max_min"}
    e_err, f_err = compare_with_official(frames(ASPIRIN, 2), sizes, seed=1)
    assert e_err < 1e-10 and f_err < 1e-10, (e_err, f_err)


def test_official_freecg_oracle_neighbour_cap():
    """A compact 40-atom cluster: the official graph keeps 32 edges per atom (itself included),
    and so does ``faithful: true``."""
    rng = np.random.default_rng(0)
    positions = rng.uniform(0.0, 4.2, size=(40, 3))
    cluster = Atoms(numbers=rng.choice([1, 6, 8], size=40), positions=positions)
    assert (np.linalg.norm(positions[:, None] - positions[None], axis=-1) < 5.0).sum(1).max() > 32
    e_err, f_err = compare_with_official([cluster], ORACLE_SIZES, seed=2)
    assert e_err < 1e-10 and f_err < 1e-10, (e_err, f_err)


def test_released_size_parameters():
    """The released configuration: the official count (10,423,626) less its embedding rows of
    elements the model does not know (2 tables x 96 rows x 256)."""
    model = tensorpot.build_model({"model": "freecg"})
    assert sum(p.numel() for p in model.parameters()) == 10_423_626 - 2 * 96 * 256


@pytest.mark.parametrize(
    "change",
    [
        {"attention_enhancer": False},
        {"shuffle_shift": 0},
        {"shuffle_shift": 4},
        {"num_groups": 1, "num_edges_eachgroup": 16},
        {"smooth_vector_messages": False},
        {"max_num_neighbors": 3},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_every_switch_changes_the_output(change):
    """No dead switch: each FreeCG key, and each defect flag, changes energy and forces."""
    atoms = molecule(3, n=6)
    atoms.positions *= 0.9  # every atom within r_max of most others
    base = randomised({**FREECG, "r_max": 4.0}, seed=4)
    other = tensorpot.build_model({**FREECG, "r_max": 4.0, **change})
    shapes = {k: v.shape for k, v in other.state_dict().items()}
    state = {k: v for k, v in base.state_dict().items() if shapes.get(k) == v.shape}
    other.load_state_dict(state, strict=False)  # the regrouped CG weights keep their own
    e, f = ModelContract().energy_forces(base, atoms)
    e2, f2 = ModelContract().energy_forces(other, atoms)
    assert abs(float(e - e2)) > 1e-8 and not torch.allclose(f, f2, atol=1e-8)


def test_freecg_differs_from_visnet_with_the_same_weights():
    atoms = molecule(5)
    freecg = randomised(FREECG, seed=6)
    visnet = tensorpot.build_model({**SMALL, "model": "visnet"})
    missing, unexpected = visnet.load_state_dict(freecg.state_dict(), strict=False)
    assert not missing and unexpected  # FreeCG has more weights (CG, enhancer), nothing else
    e, _ = ModelContract().energy_forces(freecg, atoms)
    e2, _ = ModelContract().energy_forces(visnet, atoms)
    assert abs(float(e - e2)) > 1e-6


def test_faithful_model_jumps_at_the_cutoff():
    """Why the smooth vector messages are the default: with the official behaviour the energy
    jumps when a neighbour crosses r_max (spec 3.9)."""
    model = randomised({**FREECG, "faithful": True}, seed=7)
    base = molecule(6, n=3)
    direction = np.array([0.6, 0.0, 0.8])
    energies = []
    for r in (model.r_max - 1e-6, model.r_max + 1e-6):
        atoms = base + Atoms("H", positions=[base.positions[0] + r * direction])
        energies.append(float(ModelContract().energy_forces(model, atoms)[0]))
    assert abs(energies[0] - energies[1]) > 1e-6


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model": "visnet", "num_groups": 4}, "only act with freecg: true"),
        ({"model": "freecg", "freecg": False}, "freecg"),
        (
            {"model": "freecg", "num_channels": 64, "num_groups": 32, "num_edges_eachgroup": 8},
            "num_groups x num_edges_eachgroup",
        ),
        ({"model": "freecg", "faithful": True, "max_num_neighbors": 64}, "faithful"),
        ({"model": "visnet", "num_channels": 30}, "num_heads"),
        ({"model": "freecg", "vertex_type": "Edge"}, "vertex_type"),
    ],
)
def test_bad_configs_are_refused(config, message):
    """No silent fallback: a FreeCG key on ViSNet, an unknown key of the official code, sizes
    that do not fit, or a faithful run with another flag are one clear error."""
    with pytest.raises(ConfigError, match=message):
        tensorpot.build_model(config)


def test_faithful_sets_the_official_flags():
    model = tensorpot.build_model({"model": "freecg", "faithful": True})
    assert model.config.smooth_vector_messages is False
    assert model.config.max_num_neighbors == 32
    default = tensorpot.build_model(
        {"model": "freecg", "num_groups": 16, "num_edges_eachgroup": 16}
    )
    assert default.config.channel_shift % 16 == 0  # whole groups
    assert (
        tensorpot.build_model(
            {"model": "freecg", "num_groups": 16, "num_edges_eachgroup": 16, "faithful": True}
        ).config.channel_shift
        == 24
    )


def test_visnet_equals_pyg_visnet():
    """ViSNet (``faithful: true``) against PyG's ``ViSNet`` (lmax 2, no vertex variant) with the
    same randomised weights: the backbone without FreeCG's layer."""
    pyg = pytest.importorskip("torch_geometric.nn.models.visnet")
    loader = reference_loader("freecg")  # its radius graph stands in for torch_cluster's
    sizes = {"num_channels": 32, "num_interactions": 3, "num_heads": 4, "num_radial_basis": 16}
    with loader.default_dtype(torch.float64):
        theirs = pyg.ViSNet(
            lmax=2, num_heads=4, num_layers=3, hidden_channels=32, num_rbf=16, cutoff=5.0,
            derivative=True,
        ).double()  # fmt: skip

    def radius_graph_distance(pos, batch):
        edge_index = loader.radius_graph(pos, 5.0, batch, loop=True, max_num_neighbors=32)
        edge_vec = pos[edge_index[0]] - pos[edge_index[1]]
        mask = edge_index[0] != edge_index[1]
        edge_weight = torch.zeros(edge_vec.shape[0], dtype=pos.dtype)
        edge_weight[mask] = torch.norm(edge_vec[mask], dim=-1)
        return edge_index, edge_weight, edge_vec

    theirs.representation_model.distance.forward = radius_graph_distance
    theirs.prior_model = None  # atom references of zero: left out, not randomised
    perturb(theirs, seed=3)
    zs = [1, 6, 7, 8]
    ours = tensorpot.build_model(
        {"model": "visnet", "faithful": True, "atomic_numbers": zs, "r_max": 5.0, **sizes}
    )
    copy_into(ours, theirs, zs)
    structures = frames(ASPIRIN, 2) + frames(BPA, 1)
    z = torch.cat([torch.as_tensor(a.numbers) for a in structures])
    pos = torch.cat([torch.as_tensor(a.positions) for a in structures])
    batch = torch.cat([torch.full((len(a),), k) for k, a in enumerate(structures)])
    with loader.default_dtype(torch.float64):
        e_ref, f_ref = theirs(z, pos.clone(), batch)
    out = ModelContract.predict(ours.eval(), structures)
    e_err = ((out.energy.detach() - e_ref.detach()[:, 0]).abs() / e_ref.detach()[:, 0].abs()).max()
    f_err = (out.forces.detach() - f_ref.detach()).abs().max() / f_ref.abs().max()
    assert float(e_err) < 1e-10 and float(f_err) < 1e-10, (float(e_err), float(f_err))
