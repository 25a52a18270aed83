"""Full 3^l against compressed 2l+1 storage of the Cartesian tensors: one product step.

The step is the first product of the product basis, ``A (x) A`` over all even paths to ranks
<= L (ICTP_full), for ``nodes`` atoms and ``channels`` channels, forward and backward (as forces
need). Full storage evaluates each path as a Cartesian contraction followed by the STF
projection (``tensorpot.tensors.ict_product``); compressed storage uses the coupling tensors in
the orthonormal STF basis (``tensorpot.nn.tensor_product.NodeTensorProduct``). Memory is the
size of the outputs plus every tensor autograd saves for the backward pass.

    python benchmarks/storage.py --nodes 270 --channels 8 --max-rank 4
"""

from __future__ import annotations

import argparse

import torch

from tensorpot.benchmarking.harness import time_interleaved
from tensorpot.nn.tensor_product import NodeTensorProduct
from tensorpot.tensors import from_compressed, ict_product, product_paths


def saved_bytes(fn) -> int:
    """Bytes of the outputs of ``fn`` plus the tensors autograd saves while running it."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outs = fn()
    return total + sum(o.numel() * o.element_size() for o in outs)


def measure(max_rank: int, nodes: int, channels: int, repeats: int) -> tuple[dict, float, float]:
    """Median time (s) per forward+backward of each storage, and their memory (MiB)."""
    g = torch.Generator().manual_seed(max_rank)
    paths = product_paths(max_rank, max_rank, max_rank)
    compressed = [
        torch.randn(nodes, channels, 2 * r + 1, generator=g, dtype=torch.float64).requires_grad_()
        for r in range(max_rank + 1)
    ]
    full = [from_compressed(c.detach(), r).requires_grad_() for r, c in enumerate(compressed)]
    product = NodeTensorProduct(paths, [1] * (max_rank + 1), max_rank, max_rank).to(torch.float64)

    def run_full():
        return [ict_product(full[p.l1], full[p.l2], *p) for p in paths]

    def run_compressed():
        return product([c.unsqueeze(2) for c in compressed], torch.cat(compressed, dim=-1))

    def backward(fn, inputs):
        def go():
            torch.autograd.grad(sum(o.square().sum() for o in fn()), inputs)

        return go

    calls = {"full": backward(run_full, full), "compressed": backward(run_compressed, compressed)}
    times = time_interleaved(calls, repeats)
    return times, saved_bytes(run_full) / 2**20, saved_bytes(run_compressed) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=270)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--max-rank", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"A (x) A, all even paths to ranks <= L, {args.nodes} nodes x {args.channels} channels, "
        f"float64, forward + backward, {args.threads} threads, median of {args.repeats}\n"
    )
    print("| L | full 3^l (ms) | compressed 2l+1 (ms) | time full/compressed "
          "| full (MiB) | compressed (MiB) | memory full/compressed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for rank in range(1, args.max_rank + 1):
        t, m_full, m_comp = measure(rank, args.nodes, args.channels, args.repeats)
        print(f"| {rank} | {1e3 * t['full']:.2f} | {1e3 * t['compressed']:.2f} | "
              f"{t['full'] / t['compressed']:.1f} | {m_full:.2f} | {m_comp:.2f} | "
              f"{m_full / m_comp:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
