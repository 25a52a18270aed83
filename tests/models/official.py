"""The official FreeCG code as a numerical oracle (``../shared/reference``, never copied).

:func:`official_freecg` builds it in float64 (skipping, with the reason, where the reference
folder, torch_geometric or e3nn is missing); :func:`copy_into` puts its weights into a tensorpot
ViSNet/FreeCG model of the same size; :func:`official_predict` runs it on ASE structures.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[3] / "shared"
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"

#: official parameter names (after ``representation_model.``/``output_model.``) -> ours
RENAMES = (
    ("representation_model.distance_expansion.", "rbf."),
    ("representation_model.vis_mp_layers.", "layers."),
    ("representation_model.", ""),
    ("output_model.output_network.", "readout.blocks."),
    (".tp_weight", ".group_cg.weight"),
    (".vec_edge_proj.", ".enhancer."),
)
EMBEDDINGS = ("embedding.weight", "neighbor_embedding.embedding.weight")


def reference_loader(name: str = "freecg"):
    """The reference folder's ``load_official`` module, or a pytest skip saying what is missing."""
    path = REFERENCE / name / "load_official.py"
    if not path.is_file():
        pytest.skip(f"no reference code at {path.parent}")
    for module in ("torch_geometric", "e3nn", "yaml"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the reference code needs {module} (the dev extra installs it)")
    spec = importlib.util.spec_from_file_location(f"_tensorpot_reference_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def official_freecg(**overrides):
    """The official model in float64, built with torch's default dtype float64 (its e3nn
    coefficients are then exact), and the loader (for ``default_dtype``)."""
    loader = reference_loader("freecg")
    with loader.default_dtype(torch.float64):
        model, _ = loader.build_official(dtype=torch.float64, **overrides)
    return model, loader


def perturb(model: torch.nn.Module, seed: int, cg_scale: float = 30.0) -> None:
    """Random non-zero values in every parameter (biases, norms, CG weights scaled up so the
    CG branch weighs in), as the spec's symmetry tests ask."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if name.endswith("tp_weight"):
                p.mul_(cg_scale)
            elif name.endswith("bias") or "layernorm" in name or "out_norm" in name:
                p.add_(0.1 * noise)
            else:
                p.add_(0.05 * noise * p.abs().mean().clamp(min=0.1))


def copy_into(ours: torch.nn.Module, official: torch.nn.Module, atomic_numbers) -> None:
    """Load the official model's weights into ``ours`` (same sizes); the embedding tables keep
    the rows of ``atomic_numbers``."""
    state = {}
    for name, value in official.state_dict().items():
        if ".tp." in name or name in ("mean", "std"):
            continue
        for old, new in RENAMES:
            name = name.replace(old, new)
        if name in EMBEDDINGS:
            value = value[torch.as_tensor(atomic_numbers)]
        state[name] = value
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert not [m for m in missing if not m.startswith(("E0s", "scale", "shift"))], missing


def official_predict(model, loader, structures):
    """``(energy [B], forces [N, 3])`` of the official model on ASE structures, batched."""
    from torch_geometric.data import Data

    z = torch.cat([torch.as_tensor(a.numbers, dtype=torch.long) for a in structures])
    pos = torch.cat([torch.as_tensor(a.positions, dtype=torch.float64) for a in structures])
    batch = torch.cat(
        [torch.full((len(a),), k, dtype=torch.long) for k, a in enumerate(structures)]
    )
    with loader.default_dtype(torch.float64):
        energy, forces = model(Data(z=z, pos=pos.clone(), batch=batch))
    return energy.detach()[:, 0], forces.detach()


def relative_errors(ours, official, loader, structures) -> tuple[float, float]:
    """``(worst relative energy error, worst force error / max force)`` of tensorpot's model
    ``ours`` (in eval mode, as a calculator runs it) against the official ``official`` (a
    callable of a PyG ``Data``) on ASE structures, in float64."""
    from tests.models.contract import ModelContract

    e_ref, f_ref = official_predict(official, loader, structures)
    out = ModelContract.predict(ours.eval(), structures)
    e, f = out.energy.detach(), out.forces.detach()
    e_err = float(((e - e_ref).abs() / e_ref.abs()).max())
    f_err = float((f - f_ref).abs().max() / f_ref.abs().max())
    return e_err, f_err
