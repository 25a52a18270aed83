"""The exported form of every family gives the model's energies, forces, virials and stress
(and other outputs), loads in a process without tensorpot, and is checked on its inputs."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ase import Atoms

import tensorpot
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.models import export
from tensorpot.models.export import (
    EngineModel,
    example_inputs,
    export_model,
    save_exported,
)
from tensorpot.nn import cpu_kernel
from tests.models.contract import crystal, molecule

SMALL = {"r_max": 3.0, "num_channels": 8, "num_interactions": 2, "num_heads": 2,
         "num_radial_basis": 6, "atomic_numbers": [1, 6, 7, 8]}  # fmt: skip
FAMILIES = {
    "ictp": {"model": "ictp", "num_channels": 4, "max_L": 2, "correlation": 2,
             "radial_MLP": [8], "r_max": 3.0, "atomic_numbers": [1, 6, 7, 8],
             "E0s": {1: -13.6, 6: -1029.5, 7: -1485.0, 8: -2042.0},
             "outputs": ["energy", "dipole", "polarizability"]},
    "ictp+freecg": {"model": "ictp", "num_channels": 4, "max_L": 2, "correlation": 2,
                    "radial_MLP": [8], "r_max": 3.0, "atomic_numbers": [1, 6, 7, 8],
                    "freecg": True, "num_edges_eachgroup": 2, "freecg_odd_paths": True},
    "visnet": {**SMALL, "model": "visnet"},
    "freecg": {**SMALL, "model": "freecg", "num_groups": 1},
    "quinnet": {**SMALL, "model": "quinnet"},
    "quinnet+freecg": {**SMALL, "model": "quinnet", "freecg": True, "num_groups": 1},
}  # fmt: skip


def randomised(config: dict) -> tensorpot.models.Potential:
    """A model whose weights are all non-zero (zero-initialised biases and gates would hide
    terms from the comparison)."""
    model = tensorpot.build_model(config)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()


@functools.cache
def exported_family(
    name: str, kernel: bool | None = None
) -> tuple[tensorpot.models.Potential, torch.export.ExportedProgram]:
    """A randomised model of ``name`` and its exported program (exported once per session):
    by default calling the CPU kernel's operators where it is available."""
    model = randomised(FAMILIES[name])
    return model, export_model(model, kernel)


@pytest.fixture(params=list(FAMILIES))
def exported(request):
    return (request.param, *exported_family(request.param, None))  # the key the tests use


def engine_inputs(atoms, r_max: float) -> tuple[torch.Tensor, ...]:
    """What an engine passes for ``atoms``: its own full neighbour list and integer shifts."""
    return export.engine_inputs(atoms_to_graph(atoms, r_max))


def model_outputs(model, atoms) -> dict[str, torch.Tensor]:
    """The Python model's predictions for ``atoms``, as the exported program names them."""
    out = model(collate([atoms_to_graph(atoms, model.r_max)]), compute_stress=True).detached()
    values = {"energy": out.energy[0], "node_energy": out.node_energy, "forces": out.forces,
              "virials": out.virials[0], "stress": out.stress[0]}  # fmt: skip
    if out.dipole is not None:
        values["dipole"] = out.dipole[0]
    if out.polarizability is not None:
        values["polarizability"] = out.polarizability[0]
    return values


def assert_same(got: dict, want: dict) -> None:
    assert set(want) <= set(got)
    for name, value in want.items():
        scale = float(value.abs().max().clamp_min(1e-300))
        torch.testing.assert_close(got[name], value, rtol=1e-10, atol=1e-10 * scale, msg=name)


STRUCTURES = {
    "molecule": lambda: molecule(seed=3, n=6),
    "periodic": crystal,
    "larger periodic": lambda: crystal(seed=2).repeat((2, 1, 1)),
    "no edges": lambda: Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 4.0]]),
    "one atom": lambda: Atoms("N", positions=[[0.3, 0.2, 0.1]]),
}


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_exported_program_gives_the_model_values(exported, structure):
    name, model, program = exported
    atoms = STRUCTURES[structure]()
    atoms.rattle(0.05, seed=4)
    want = model_outputs(model, atoms)
    got = program.module()(*engine_inputs(atoms, model.r_max))
    assert_same(got, want)
    if "periodic" in structure:  # the comparison is not one of zeros
        assert float(want["stress"].abs().max()) > 0 and float(want["forces"].abs().max()) > 0
    if name == "ictp":
        assert {"dipole", "polarizability"} <= set(got)


def test_edge_order_is_the_engines(exported):
    """The engine's edges in any order give the same values (nothing assumes the sorted
    neighbour list tensorpot builds)."""
    _, model, program = exported
    inputs = list(engine_inputs(crystal(seed=5), model.r_max))
    order = torch.randperm(inputs[3].shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = [*inputs[:3], inputs[3][:, order], inputs[4][order]]
    assert_same(program.module()(*shuffled), program.module()(*inputs))


def test_export_leaves_the_model_and_process_as_they_were():
    model = randomised(FAMILIES["visnet"]).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kernel_setting = os.environ.get("TENSORPOT_CPU_KERNEL")
    export_model(model)
    assert model.training
    assert os.environ.get("TENSORPOT_CPU_KERNEL") == kernel_setting
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_unknown_element_is_refused(exported):
    _, model, program = exported
    positions, numbers, *rest = example_inputs(model, periodic=False, num_atoms=4)
    numbers = numbers.clone()
    numbers[1] = 79  # gold: not one of the model's elements
    with pytest.raises(RuntimeError, match="does not know"):
        program.module()(positions, numbers, *rest)


#: run in a Python that cannot import tensorpot: load the operator library the record names (if
#: any), then the program, and run it on the saved inputs
PLAIN_PYTORCH = """
import json, sys
sys.path.append(sys.argv[1])  # site-packages, without its .pth files
try:
    import tensorpot
except ImportError:
    print("no tensorpot")
else:
    sys.exit("tensorpot was importable")
import torch
import zipfile
with zipfile.ZipFile("model.pt2") as archive:  # the record, read before loading the program
    name = next(n for n in archive.namelist() if n.endswith("/extra/tensorpot.json"))
    record = json.loads(archive.read(name))
if record["operator_library"] is not None:
    torch.ops.load_library(record["operator_library"])
extra = {"tensorpot.json": ""}
program = torch.export.load("model.pt2", extra_files=extra).module()
inputs = torch.load("inputs.pt", weights_only=True)
torch.save(dict(program(*inputs)), "outputs.pt")
print(json.dumps(json.loads(extra["tensorpot.json"])))
"""


@pytest.mark.parametrize("name, kernel", [("quinnet+freecg", None), ("ictp", None),
                                          ("ictp", False)])  # fmt: skip
def test_loads_and_runs_without_tensorpot(tmp_path, name, kernel):
    """The file runs in a Python that cannot import tensorpot (no .pth files, cwd outside the
    repository), through ``torch.export.load`` alone, after ``torch.ops.load_library`` of the
    operator library written beside it where the program calls the CPU kernel's operators
    (none with ``kernel=False``), and gives the model's values; neither file is ever written
    over an existing one unless asked."""
    model, program = exported_family(name, kernel)
    calls = export.uses_operators(program)
    assert calls == (kernel is not False and cpu_kernel.available())
    path, library = tmp_path / "model.pt2", tmp_path / "model.so"
    path.write_text("keep")
    with pytest.raises(FileExistsError, match="exists"):
        save_exported(model, path, program=program)
    assert path.read_text() == "keep"
    path.unlink()
    if calls:
        library.write_text("keep")
        with pytest.raises(FileExistsError, match="exists"):
            save_exported(model, path, program=program)
        assert library.read_text() == "keep" and not path.exists()
    assert save_exported(model, path, overwrite=True, program=program) == path
    assert library.is_file() == calls
    atoms = crystal(seed=1)
    torch.save(engine_inputs(atoms, model.r_max), tmp_path / "inputs.pt")
    site = str(Path(torch.__file__).parents[1])
    run = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PLAIN_PYTORCH, site],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    first, record = run.stdout.splitlines()
    assert first == "no tensorpot"
    got = torch.load(tmp_path / "outputs.pt", weights_only=True)
    assert_same(got, model_outputs(model, atoms))
    record = json.loads(record)
    assert record["operator_library"] == ("model.so" if calls else None)
    assert record["atomic_numbers"] == [1, 6, 7, 8] and record["r_max"] == 3.0
    assert record["inputs"] == ["positions", "atomic_numbers", "cell", "edge_index", "cell_shifts"]
    assert set(record["outputs"]) == set(got)
    if name == "quinnet+freecg":
        assert record["config"]["model"] == "quinnet" and record["config"]["freecg"] is True


def test_engine_model_does_not_touch_the_callers_tensors():
    model = randomised(FAMILIES["visnet"])
    inputs = example_inputs(model, periodic=True, num_atoms=3)
    copies = [t.clone() for t in inputs]
    EngineModel(model)(*inputs)
    assert not inputs[0].requires_grad
    for a, b in zip(inputs, copies):
        assert torch.equal(a, b)
