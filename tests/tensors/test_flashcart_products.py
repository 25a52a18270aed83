"""Our irreducible Cartesian products against FlashCart's, an independent implementation.

For every even path (l1, l2) -> l3 with ranks up to 3, FlashCart's ``TensorProduct`` (path
weights 1) of an input holding only rank l1 with one holding only rank l2, its rank-l3 output
read back to full Cartesian components with its own ``irreps_to_cartesian``, must be our
``ict_product`` of the same full tensors times one constant per path (the two codes normalise
their paths differently): the same constant for every component of every random input.
Skipped where flashcart (the ``bench`` extra) is not installed.
"""

from __future__ import annotations

import pytest
import torch

from tensorpot.tensors import ict_product, product_paths, stf_project

o3 = pytest.importorskip("flashcart.o3")

MAX_RANK = 3
PATHS = [p for p in product_paths(MAX_RANK, MAX_RANK, MAX_RANK) if p.is_even]


def _random_stf(rank: int, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return stf_project(torch.randn((batch,) + (3,) * rank, generator=g, dtype=torch.float64), rank)


def _only_rank(t: torch.Tensor, rank: int) -> torch.Tensor:
    """Full Cartesian ``[B, 3^rank]`` of one rank -> FlashCart's stored layout of ranks
    ``0..MAX_RANK``, zero at every other rank."""
    batch = t.shape[0]
    blocks = [
        t.reshape(batch, -1) if r == rank else t.new_zeros(batch, 3**r) for r in range(MAX_RANK + 1)
    ]
    return o3.utils.cartesian_to_irreps(torch.cat(blocks, dim=1), MAX_RANK)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: f"{p.l1}x{p.l2}to{p.l3}")
def test_products_agree_up_to_one_constant_per_path(path):
    l1, l2, l3 = path.l1, path.l2, path.l3
    batch = 6
    a, b = _random_stf(l1, batch, seed=1), _random_stf(l2, batch, seed=2)
    product = o3.TensorProduct(MAX_RANK, MAX_RANK, l3, 1, 1, shared_weights=True)
    weights = torch.ones(product.n_total_paths, dtype=torch.float64)
    out = product(_only_rank(a, l1), _only_rank(b, l2), weights)
    full = o3.utils.irreps_to_cartesian(out, l3, n_paths=product.out_paths)
    # the rank-l3 block [B, 3^l3, paths]: only the path (l1, l2) -> l3 sees both inputs
    start = sum(3**r * product.out_paths[r] for r in range(l3))
    theirs = full[:, start:].reshape(batch, 3**l3, product.out_paths[l3]).sum(-1)
    ours = ict_product(a, b, l1, l2, l3).reshape(batch, 3**l3)
    assert ours.abs().max() > 1e-3  # a path that vanishes identically would prove nothing
    k = torch.argmax(ours.abs()).item()
    constant = theirs.flatten()[k] / ours.flatten()[k]
    assert constant.abs() > 1e-6
    torch.testing.assert_close(theirs, constant * ours, rtol=1e-10, atol=1e-12)
