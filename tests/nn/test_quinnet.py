"""QuinNet's blocks: the rejection, the node and edge geometry and the layer are O(3)-equivariant
(scalars invariant), and the layer reduces to ViSNet's when its new terms are off."""

from __future__ import annotations

import pytest
import torch

from tensorpot.nn.quinnet import ManyBodyEdgeTerms, NodeGeometry, QuinMP, rejection
from tensorpot.nn.visnet import GroupCG, ViSMP
from tensorpot.tensors.spherical import spherical_harmonics_12
from tests.conftest import random_rotation
from tests.nn.test_visnet import features
from tests.tensors.test_spherical import wigner_d


def representation(sign: float, seed: int = 5) -> torch.Tensor:
    """``D = D^1 (+) D^2`` of a random rotation, times the inversion (degree 1 odd) for -1."""
    parity = torch.tensor([sign] * 3 + [1.0] * 5, dtype=torch.float64)
    return wigner_d(random_rotation(seed)) * parity[:, None]


def act(d: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,njc->nic", d, v)


def randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random non-zero weights and biases everywhere (zero biases would hide terms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    return module


def graph(n: int = 5, seed: int = 0):
    """All ordered pairs of ``n`` random atoms and every self-loop: ``centre``, ``neighbour``,
    lengths ``d`` and harmonics ``y`` (zero on self-loops), and the positions."""
    g = torch.Generator().manual_seed(seed)
    pos = 1.5 * torch.randn(n, 3, generator=g, dtype=torch.float64)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    centre = torch.tensor([i for i, _ in pairs] + list(range(n)))
    neighbour = torch.tensor([j for _, j in pairs] + list(range(n)))
    r = pos[neighbour] - pos[centre]
    d = r.norm(dim=-1)
    unit = torch.where(d[:, None] > 0, r / d.clamp(min=1e-12)[:, None], 0.0)
    return centre, neighbour, d, spherical_harmonics_12(unit)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["proper", "improper"])
def test_rejection_is_o3_equivariant(sign):
    """Rej(D a, D b) = D Rej(a, b): <a, b> over the 8 components is O(3)-invariant."""
    d = representation(sign)
    a, b = features(4, 6, 0), features(4, 6, 1)
    assert torch.allclose(rejection(act(d, a), act(d, b)), act(d, rejection(a, b)), atol=1e-12)
    unit = torch.nn.functional.normalize(b, dim=1)  # a true projection for |b| = 1
    assert torch.allclose((rejection(a, unit) * unit).sum(dim=1), torch.zeros(4, 6).double(),
                          atol=1e-12)  # fmt: skip


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["proper", "improper"])
def test_node_geometry_is_o3_equivariant(sign):
    """n co-rotates, T_2 and T_6 are invariant (and are not trivially zero)."""
    block = randomise(NodeGeometry(6).double(), 1)
    d, v = representation(sign), features(4, 6, 2)
    normal, t2, t6 = block(v)
    normal2, t2b, t6b = block(act(d, v))
    assert torch.allclose(normal2, act(d, normal), atol=1e-12)
    assert torch.allclose(t2b, t2, atol=1e-12) and torch.allclose(t6b, t6, atol=1e-12)
    assert t2.abs().min() > 0 and t6.abs().min() > 0


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["proper", "improper"])
def test_many_body_edge_terms_are_invariant(sign):
    block = randomise(ManyBodyEdgeTerms(6).double(), 2)
    centre, neighbour, _, _ = graph(4)
    d, normal = representation(sign), features(4, 6, 3)
    f = features(len(centre), 6, 4)[:, 0]
    e3, e4 = block(normal, f, centre, neighbour)
    e3b, e4b = block(act(d, normal), f, centre, neighbour)
    assert torch.allclose(e3b, e3, atol=1e-12) and torch.allclose(e4b, e4, atol=1e-12)


def layer(freecg: bool, last: bool = False, smooth: bool = True, seed: int = 3) -> QuinMP:
    cg = GroupCG(2, 4, shift=4) if freecg else None
    block = QuinMP(8, 2, 4.0, last=last, enhancer=freecg, group_cg=cg, smooth=smooth)
    return randomise(block.double(), seed)


@pytest.mark.parametrize("freecg", [False, True], ids=["quinnet", "quinnet+freecg"])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["proper", "improper"])
def test_layer_is_o3_equivariant(sign, freecg):
    """dx and df invariant, dv co-rotating, when v and the harmonics are rotated (spec 6.2)."""
    block = layer(freecg)
    centre, neighbour, dist, y = graph(5)
    x, v, f = features(5, 8, 5)[:, 0], features(5, 8, 6), features(len(centre), 8, 7)[:, 0]
    d = representation(sign)
    dx, dv, df = block(x, v, f, centre, neighbour, dist, y)
    dx2, dv2, df2 = block(x, act(d, v), f, centre, neighbour, dist, y @ d.T)
    assert torch.allclose(dx2, dx, atol=1e-10) and torch.allclose(df2, df, atol=1e-10)
    assert torch.allclose(dv2, act(d, dv), atol=1e-10)


@pytest.mark.parametrize("last", [False, True], ids=["layer", "last layer"])
@pytest.mark.parametrize("smooth", [True, False], ids=["smooth", "official"])
def test_layer_reduces_to_visnet(smooth, last):
    """With r = (1, 0, 0, 0, 0, 0) and the gates of e_3 and e_4 zero (SiLU(0) = 0), a QuinNet
    layer is the ViSNet layer with the same shared weights (spec 6.9)."""
    quin = layer(freecg=False, last=last, smooth=smooth)
    with torch.no_grad():
        quin.term_weights.copy_(torch.tensor([1.0, 0, 0, 0, 0, 0]))
        for gate in (quin.edge_terms.gate3, quin.edge_terms.gate4):
            gate.weight.zero_()
            gate.bias.zero_()
    visnet = ViSMP(8, 2, 4.0, last=last, smooth=smooth).double()
    missing, unexpected = visnet.load_state_dict(quin.state_dict(), strict=False)
    assert not missing
    centre, neighbour, dist, y = graph(5, seed=1)
    dist = dist * 1.5  # some pairs beyond r_max
    inputs = (features(5, 8, 8)[:, 0], features(5, 8, 9), features(len(centre), 8, 10)[:, 0])
    ours = quin(*inputs, centre, neighbour, dist, y)
    theirs = visnet(*inputs, centre, neighbour, dist, y)
    for a, b in zip(ours, theirs):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-12)
    assert not torch.allclose(layer(False, last, smooth)(*inputs, centre, neighbour, dist, y)[0],
                              ours[0])  # fmt: skip


def test_the_edge_terms_are_summed_at_the_neighbour():
    """T_3..T_5 of atom a sum the edges whose neighbour is a, unlike the messages (spec 3.4):
    with the attention's edge gates made constant, the feature of the edge 0 -> 1 (centre 0)
    moves atom 1's dx and not atom 0's."""
    block = layer(freecg=False, smooth=False)
    with torch.no_grad():  # dk, dv = SiLU(b): the messages no longer read f
        block.dk_proj.weight.zero_()
        block.dv_proj.weight.zero_()
    centre, neighbour = torch.tensor([0, 0, 1]), torch.tensor([1, 0, 1])
    dist = torch.tensor([1.2, 0.0, 0.0], dtype=torch.float64)
    y = torch.zeros(3, 8, dtype=torch.float64)
    y[0] = spherical_harmonics_12(torch.tensor([[0.6, 0.0, 0.8]], dtype=torch.float64))[0]
    x, v, f = features(2, 8, 11)[:, 0], features(2, 8, 12), features(3, 8, 13)[:, 0]
    dx, _, _ = block(x, v, f, centre, neighbour, dist, y)
    moved = f.clone()
    moved[0] += 1.0
    dx2, _, _ = block(x, v, moved, centre, neighbour, dist, y)
    assert torch.equal(dx2[0], dx[0]) and not torch.allclose(dx2[1], dx[1])
