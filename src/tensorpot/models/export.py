"""The exported form of a model: one file that plain PyTorch loads and runs, without tensorpot.

An MD engine (LAMMPS, i-PI, a C++ or Python driver) has positions, atomic numbers, a cell and
a full neighbour list that it built itself; it wants energies, forces and virials back.
:class:`EngineModel` is a model as such an engine calls it, for one structure:

=================  ============  ========  ==================================================
input              shape         dtype     meaning
=================  ============  ========  ==================================================
``positions``      ``[N, 3]``    float64   Å
``atomic_numbers`` ``[N]``       int64     elements, any of the model's ``atomic_numbers``
``cell``           ``[3, 3]``    float64   Å, rows are the cell vectors (zeros for a molecule)
``edge_index``     ``[2, E]``    int64     (centre, neighbour) of every pair closer than
                                           ``r_max``, in both directions
``cell_shifts``    ``[E, 3]``    int64     the neighbour's image: its vector is
                                           ``positions[j] - positions[i] + shift @ cell``
=================  ============  ========  ==================================================

and returns a dict of float64 tensors: ``energy`` ``[]`` (eV), ``node_energy`` ``[N]``,
``forces`` ``[N, 3]`` (eV/Å, ``-dE/dx``), ``virials`` ``[3, 3]`` (eV, ``-dE/d(strain)``) and
``stress`` ``[3, 3]`` (eV/Å³, minus the virials over the volume; for a zero cell the volume is
taken as 1), for a model with an energy; ``dipole`` ``[3]``, ``polarizability`` ``[3, 3]`` and
``property:<name>`` ``[]`` for the model's other outputs. These are the values
:class:`~tensorpot.models.base.Potential` gives for the same structure (float64, 1e-10
relative) on the same edges: every pair closer than ``r_max``, in both directions, once each,
in any order.

:func:`export_model` traces it into one graph of PyTorch operations (``torch.export``) in
which the numbers of atoms and of edges are free, and :func:`save_exported` writes that with
``torch.export.save`` (a ``.pt2`` archive) beside a JSON record of what an engine needs to know
(:data:`METADATA_FILE`: elements, cutoff, dtype, outputs, inputs). The derivatives are part of
the graph: ``make_fx`` runs the model and the autograd pass that gives forces and virials on
symbolic sizes and records every operation of both, and ``torch.export`` takes that graph.
The model's own forward pass is traced, not a copy of it, so the exported form cannot drift
from the model.

What the exported form does differently, and why:

- where the model runs tensorpot's CPU kernel, the program calls its operators
  (``torch.ops.tensorpot.*``, :mod:`tensorpot.nn.cpu_kernel`), forward and backward, and so
  needs their library: :func:`save_exported` writes it beside the program
  (:func:`operator_library`), and a process loads it with ``torch.ops.load_library`` before
  ``torch.export.load``. The library is compiled for the CPU it was built on
  (``-march=native``) and for this PyTorch; ``kernel=False`` (``tensorpot export
  --pytorch-ops``) traces the PyTorch operations instead, a program that needs nothing else;
- every edge is its own pair (:mod:`tensorpot.data.pairs`): grouping an edge with its reverse
  reads values back from the tensors, which a traced graph cannot do, so the radial functions
  run once per edge instead of once per pair (the same values);
- the convolution's messages are formed in one piece, not in chunks of pairs whose number
  depends on the size (:mod:`tensorpot.nn.convolution`): a large cell takes more memory;
- an element the model does not know stops the call with a ``RuntimeError`` (an assertion in
  the graph), as the model's ``ValueError`` would.

The file needs the PyTorch version that wrote it (``torch.export`` archives are not promised
to load in other versions), and its operator library where its record names one
(``operator_library``), nothing else.
"""

from __future__ import annotations

import copy
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import tensorpot
from tensorpot.data.atoms import AtomicGraph, graph_from_arrays
from tensorpot.data.batch import GraphBatch
from tensorpot.errors import TensorPotError
from tensorpot.files import atomic_write
from tensorpot.models.base import Potential
from tensorpot.models.io import load_model
from tensorpot.nn import cpu_kernel

#: the name of the JSON record inside the archive (``torch.export.load(path, extra_files=...)``)
METADATA_FILE = "tensorpot.json"
#: the inputs of the exported program, in order
INPUTS = ("positions", "atomic_numbers", "cell", "edge_index", "cell_shifts")
#: relative tolerance, per model dtype, of the check that the exported program gives the
#: model's values on structures it was not traced on (of each output's largest value)
CHECK_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


class ExportError(TensorPotError):
    """A model could not be exported, or its exported form does not give its values."""


class EngineModel(nn.Module):
    """A model called as an MD engine calls it: one structure and the engine's neighbour
    list in, a dict of float64 outputs out (the module docstring lists both).

    Args:
        model: the model; it is used as it is (export traces a copy).
    """

    def __init__(self, model: Potential):
        super().__init__()
        self.model = model

    def forward(
        self,
        positions: Tensor,
        atomic_numbers: Tensor,
        cell: Tensor,
        edge_index: Tensor,
        cell_shifts: Tensor,
    ) -> dict[str, Tensor]:
        model = self.model
        dtype = model.dtype
        num_atoms, num_edges = positions.shape[0], edge_index.shape[1]
        table = model.species_table
        known = (atomic_numbers >= 0) & (atomic_numbers < table.shape[0])
        known = known & (table[atomic_numbers.clamp(0, table.shape[0] - 1)] >= 0)
        torch._assert_async(
            known.all(),
            f"an element the model does not know (it knows {list(model.atomic_numbers)})",
        )
        every_edge = torch.arange(num_edges, device=edge_index.device)  # each edge its own pair
        batch = GraphBatch(
            positions=positions.to(dtype, copy=True),  # never the caller's tensor
            atomic_numbers=atomic_numbers,
            edge_index=edge_index,
            cell_shifts=cell_shifts.to(dtype),
            cell=cell.reshape(1, 3, 3).to(dtype),
            pbc=torch.zeros(1, 3, dtype=torch.bool, device=positions.device),
            batch=torch.zeros(num_atoms, dtype=torch.long, device=positions.device),
            pair_first=every_edge,
            edge_pair=every_edge,
        )
        with torch.enable_grad():
            out = model(batch, compute_forces=True, compute_stress=True)
        properties = {f"property:{k}": v for k, v in (out.properties or {}).items()}
        per_structure = {
            "energy": out.energy, "virials": out.virials, "stress": out.stress,
            "dipole": out.dipole, "polarizability": out.polarizability, **properties,
        }  # fmt: skip
        values = {"node_energy": out.node_energy, "forces": out.forces}
        values.update({k: v[0] for k, v in per_structure.items() if v is not None})  # one structure
        return {k: v.detach().to(torch.float64) for k, v in values.items() if v is not None}


def example_inputs(model: Potential, periodic: bool, num_atoms: int) -> tuple[Tensor, ...]:
    """Inputs of :class:`EngineModel` for a small structure of the model's elements (what
    :func:`export_model` traces and checks on): atoms on a jittered grid, ``0.3 r_max``
    apart, in a cell of three grid steps when ``periodic`` (the atoms see their images)."""
    rng = np.random.default_rng(num_atoms)
    r_max = model.r_max
    grid = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = (grid[:num_atoms] + rng.uniform(-0.1, 0.1, (num_atoms, 3))) * 0.3 * r_max
    numbers = np.resize(np.asarray(model.atomic_numbers), num_atoms)
    cell = (np.eye(3) + rng.uniform(-0.05, 0.05, (3, 3))) * 0.9 * r_max
    pbc = np.full(3, periodic)
    return engine_inputs(graph_from_arrays(positions, numbers, cell, pbc, r_max))


def engine_inputs(graph: AtomicGraph) -> tuple[Tensor, ...]:
    """The inputs of :class:`EngineModel` (and of an exported program) for a structure's graph
    (:func:`tensorpot.data.atoms.atoms_to_graph`): what an engine would pass, in
    :data:`INPUTS` order."""
    return (
        torch.as_tensor(graph.positions, dtype=torch.float64),
        torch.as_tensor(graph.atomic_numbers, dtype=torch.long),
        torch.as_tensor(graph.cell, dtype=torch.float64),
        torch.as_tensor(graph.edge_index, dtype=torch.long),
        torch.as_tensor(graph.cell_shifts, dtype=torch.long),
    )


def _distinct_sizes(model: Potential) -> tuple[Tensor, ...]:
    """A periodic example whose numbers of atoms and of edges differ from each other and from
    every fixed size of the inputs (0 to 3): tracing gives sizes of equal value one symbol,
    which would tie the number of edges to the number of atoms."""
    for num_atoms in range(5, 27):
        inputs = example_inputs(model, periodic=True, num_atoms=num_atoms)
        if inputs[3].shape[1] not in (0, 1, 2, 3, num_atoms):
            return inputs
    raise ExportError(f"no example structure with edges for r_max = {model.r_max} Å")


def export_model(model: Potential, kernel: bool | None = None) -> torch.export.ExportedProgram:
    """The exported program of ``model`` as an engine calls it (:class:`EngineModel`), with
    free numbers of atoms and edges, checked against the model on a molecule and a periodic
    cell other than the one it was traced on.

    The model itself is left as it was (a copy is traced, on the CPU, its parameters frozen).
    ``kernel``: trace the CPU kernel's operators (``torch.ops.tensorpot.*``; the program then
    needs their library, :func:`operator_library`) or, with ``False``, the PyTorch operations
    (a portable program); by default the operators where the kernel is available
    (:func:`tensorpot.nn.cpu_kernel.choose`). A model without a part the kernel runs needs no
    library either way.

    Raises:
        ExportError: the model could not be traced, or its exported form does not give the
            model's values (to :data:`CHECK_TOLERANCE` of its dtype).
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    engine = EngineModel(copy.deepcopy(model).cpu().eval().requires_grad_(False))
    cpu_kernel.choose(engine.model, kernel)
    traced_on = _distinct_sizes(model)
    checks = [example_inputs(model, periodic=False, num_atoms=7),
              example_inputs(model, periodic=True, num_atoms=4)]  # fmt: skip
    # eager first: the cached constants of the tensor algebra (tensorpot.tensors) are then
    # real tensors, which the trace takes as constants, never fake ones made while tracing
    expected = [engine(*inputs) for inputs in checks]
    try:
        graph = make_fx(engine, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*traced_on)
        atoms, edges = torch.export.Dim("atoms"), torch.export.Dim("edges")
        shapes = ({0: atoms}, {0: atoms}, None, {1: edges}, {0: edges})
        program = torch.export.export(graph, traced_on, dynamic_shapes=shapes, strict=False)
    except Exception as err:
        raise ExportError(f"the model could not be exported: {_first_line(err)}") from err
    for tensors in (program.state_dict, program.constants):  # e.g. a transposed constant:
        for name, value in tensors.items():  # saved whole, not as a strided view of its storage
            if isinstance(value, Tensor) and not value.is_contiguous():
                tensors[name] = value.contiguous()
    tolerance = CHECK_TOLERANCE[model.dtype]
    for inputs, want in zip(checks, expected):
        got = program.module()(*inputs)
        _check_same(want, got, inputs[0].shape[0], tolerance)
    return program


def uses_operators(program: torch.export.ExportedProgram) -> bool:
    """Whether ``program`` calls the CPU kernel's operators (``torch.ops.tensorpot.*``), and
    so needs their library loaded (:func:`operator_library`)."""
    return any(
        node.op == "call_function" and str(node.target).startswith("tensorpot.")
        for node in program.graph.nodes
    )


def operator_library(path: str | os.PathLike) -> Path:
    """Where :func:`save_exported` writes the operator library of the program ``path``: beside
    it, the suffix ``.so`` (``.pyd`` on Windows) in place of its own."""
    return Path(path).with_suffix(cpu_kernel.LIBRARY_SUFFIX)


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The record (:data:`METADATA_FILE`) of the exported program ``path``, read from the
    archive without loading the program."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith(f"/extra/{METADATA_FILE}"):
                return json.loads(archive.read(name))
    raise ExportError(f"{path}: no {METADATA_FILE} in the archive (not written by tensorpot)")


def _check_same(
    want: dict[str, Tensor], got: dict[str, Tensor], num_atoms: int, tolerance: float
) -> None:
    if set(want) != set(got):
        raise ExportError(f"the exported program gives {sorted(got)}, the model {sorted(want)}")
    for name, value in want.items():
        scale = value.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
        error = (got[name] - value).abs().max() / scale
        if not bool(error <= tolerance):
            raise ExportError(
                f"the exported program's {name} differs from the model's by {float(error):.2e} "
                f"(relative) on a structure of {num_atoms} atoms"
            )


def metadata(model: Potential) -> dict[str, Any]:
    """What an engine needs to know about an exported model (written as
    :data:`METADATA_FILE`): its elements, cutoff (Å, the neighbour list's radius), dtype,
    outputs, inputs, the tensorpot and PyTorch versions, and the model's config."""
    config = model.config.model_dump(mode="json")
    outputs = ["energy", "node_energy", "forces", "virials", "stress"] if model.has_energy else []
    for name in model.heads:
        outputs.append(name)
    return {
        "format": "tensorpot-export",
        "format_version": 1,
        "atomic_numbers": list(model.atomic_numbers),
        "r_max": model.r_max,
        "dtype": str(model.dtype).removeprefix("torch."),
        "inputs": list(INPUTS),
        "outputs": outputs,
        "tensorpot_version": tensorpot.__version__,
        "torch_version": torch.__version__,
        "config": config,
    }


def save_exported(
    model: Potential | str | os.PathLike,
    path: str | os.PathLike,
    overwrite: bool = False,
    program: torch.export.ExportedProgram | None = None,
    kernel: bool | None = None,
) -> Path:
    """Export ``model`` (a model, or a model file written by tensorpot) and write the program
    to ``path`` (``torch.export.save``, with :data:`METADATA_FILE`), atomically; ``program``
    is the model's :func:`export_model` (with ``kernel``), where the caller has it already.
    A program that calls the CPU kernel's operators gets a copy of their library beside it
    (:func:`operator_library`), named in its record (``operator_library``); a process loads
    it with ``torch.ops.load_library`` before ``torch.export.load``.

    Raises:
        FileExistsError: ``path``, or the library's path where one is written, exists and
            ``overwrite`` is false (checked first).
        TensorPotError: the model file cannot be read (:func:`tensorpot.load_model`).
        ExportError: the model cannot be exported (:func:`export_model`).
    """
    path, library = Path(path), operator_library(path)
    _writable(path, overwrite)
    if not isinstance(model, Potential):
        model = load_model(model)
    if program is None and kernel is not False:  # a library will be written where it is used
        if any(hasattr(m, "cpu_kernel") for m in model.modules()) and cpu_kernel.available():
            _writable(library, overwrite)
    program = export_model(model, kernel) if program is None else program
    record = metadata(model)
    record["operator_library"] = library.name if uses_operators(program) else None
    if record["operator_library"] is not None:
        _writable(library, overwrite)
        built = cpu_kernel.load()
        if built is None:
            raise ExportError("the program calls the CPU kernel's operators, whose library "
                              "could not be built")  # fmt: skip
        atomic_write(library, lambda handle: handle.write(built.read_bytes()))
    text = json.dumps(record, indent=1)

    def write(handle: io.BufferedIOBase) -> None:
        torch.export.save(program, handle, extra_files={METADATA_FILE: text})

    return atomic_write(path, write)


def _writable(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; refusing to overwrite it")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a file to write")


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
