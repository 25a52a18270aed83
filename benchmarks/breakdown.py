"""Where the time of one scaling-study point goes: the pieces that bound the ratio to MACE.

For one (L, nu) of the scaling study (3BPA, 8 channels, l_max = L, full basis, float64, energy +
forces), interleaved medians:

- the whole call of ICTP and MACE at batch 1 and at ``--batch`` (the difference is the cost per
  structure, the rest a fixed cost per call);
- the model with forces against the forward pass alone (ICTP);
- the radial MLP (forward + backward to the lengths) of each ICTP layer on its rows per edge
  pair, as ICTP evaluates it, and on one row per edge, as MACE does, with frozen weights (as
  for inference: the products by the CPU kernel) and trainable ones (PyTorch's products);
- every product-basis step of each layer, forward + backward, as one dense product and as
  block-sparse products (:func:`tensorpot.nn.product_basis.use_dense` picks one);
- the convolution of both layers, forward + backward, by the CPU kernel and by the PyTorch
  operations (:mod:`tensorpot.nn.cpu_kernel`), alone and in the whole call.

    python benchmarks/breakdown.py --L 1 --correlation 3
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

import tensorpot.nn.interaction as interaction
import tensorpot.nn.product_basis as product_basis
from tensorpot.benchmarking.adapters import Mace, Size, TensorPot, ictp_config
from tensorpot.benchmarking.harness import Workload, cases_of, load_frames, time_cases
from tensorpot.benchmarking.harness import time_interleaved as timed
from tensorpot.data.pairs import edge_pairs
from tensorpot.nn import cpu_kernel

DATA = Path(__file__).resolve().parents[1] / "data" / "3bpa" / "test_300K_first200.xyz"


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:.2f}"


def ictp(args) -> TensorPot:
    return TensorPot(ictp_config(Size(8, args.L, args.L, args.correlation)), "ICTP")


def whole_calls(args, frames) -> None:
    for batch in (1, args.batch):
        models = [ictp(args)] + ([Mace(Size(8, args.L, args.L, args.correlation))] * (args.L > 0))
        results = time_cases(cases_of(models, [Workload("3bpa", frames[:batch])]), args.repeats)
        print(
            f"| whole call E + F, batch {batch} | "
            + "; ".join(f"{r.case.name} {ms(r.seconds)}" for r in results if r.seconds)
            + " |"
        )


def forces_share(model, batch, repeats: int) -> None:
    def forward():
        return model(batch, compute_forces=False).energy

    def with_forces():
        return model(batch, compute_forces=True).forces

    t = timed({"E": forward, "E + F": with_forces}, repeats)
    print(f"| ICTP forward only; with forces | E {ms(t['E'])}; E + F {ms(t['E + F'])} |")


def radial_mlps(model, batch, repeats: int) -> None:
    first, _ = edge_pairs(batch.edge_index, batch.cell_shifts, batch.positions.shape[0])
    for rows, label in [
        (first.shape[0], "pairs (ICTP)"),
        (batch.edge_index.shape[1], "edges (MACE)"),
    ]:
        r = (torch.rand(rows, dtype=model.dtype) * 4 + 0.8).requires_grad_()
        calls = {}
        for k, layer in enumerate(model.layers):
            frozen = copy.deepcopy(layer.interaction.radial).requires_grad_(False)
            trainable = copy.deepcopy(frozen).requires_grad_(True)
            for kind, mlp in [("frozen", frozen), ("trainable", trainable)]:

                def run(mlp=mlp, r=r):
                    out = mlp(model.radial(r))
                    return torch.autograd.grad(out, r, torch.ones_like(out))[0]

                calls[f"layer {k} {kind}"] = run
        t = timed(calls, repeats)
        print(
            f"| radial MLP fwd + bwd, {rows} {label}, frozen weights (CPU kernel); trainable "
            "(PyTorch) | " + "; ".join(f"{k} {ms(v)}" for k, v in t.items()) + " |"
        )


def product_steps(model, num_nodes: int, max_rank: int, repeats: int) -> None:
    species = torch.zeros(num_nodes, dtype=torch.long)
    for k, layer in enumerate(model.layers):
        basis = layer.product
        num_species, channels = basis.sums[0].weights[0].shape[:2]
        a = [
            torch.randn(num_nodes, channels, 2 * r + 1, dtype=model.dtype).requires_grad_()
            for r in range(max_rank + 1)
        ]
        calls = {}
        for dense in (True, False):
            original = product_basis.use_dense
            product_basis.use_dense = lambda step, dense=dense: dense
            try:
                torch.manual_seed(0)
                variant = product_basis.ProductBasis(
                    channels, num_species, max_rank, basis.out_max_rank, len(basis.steps) + 1
                ).to(model.dtype)
            finally:
                product_basis.use_dense = original

            def run(variant=variant, a=a):
                out = variant(a, species)
                return torch.autograd.grad(sum((o * o).sum() for o in out), a)

            calls["dense" if dense else "block-sparse"] = run
        t = timed(calls, repeats)
        chosen = ["dense" if d else "block-sparse" for d in basis.dense]
        print(
            f"| product basis layer {k} fwd + bwd (steps chosen: {', '.join(chosen) or 'none'}) | "
            + "; ".join(f"all {name} {ms(v)}" for name, v in t.items()) + " |"
        )  # fmt: skip


def with_kernel(model, kernel: bool, fn):
    """``fn`` with the model's modules told to run the kernel, or not (chosen per call: the
    calls are interleaved)."""

    def run():
        cpu_kernel.choose(model, kernel)
        return fn()

    return run


def convolutions(model, batch, repeats: int) -> None:
    def call():
        return model(batch, compute_forces=True).forces

    captured = []  # the arguments of every convolution of one call
    original = interaction.convolution

    def spy(*args, **kwargs):
        captured.append((args, kwargs))
        return original(*args, **kwargs)

    interaction.convolution = spy
    try:
        call()
    finally:
        interaction.convolution = original

    def alone(kernel: bool):
        for (h, yk, radial, *rest), kwargs in captured:
            inputs = [t.detach().requires_grad_() for t in (*h, *yk, radial)]
            n = len(h)
            out = original(inputs[:n], inputs[n : 2 * n], inputs[-1], *rest,
                           **{**kwargs, "kernel": kernel})  # fmt: skip
            torch.autograd.grad(out, inputs, [torch.ones_like(o) for o in out])

    pieces = [("convolution of both layers alone", lambda k: lambda: alone(k)),
              ("whole call E + F", lambda k: call)]  # fmt: skip
    for label, make in pieces:
        t = timed({"kernel": with_kernel(model, True, make(True)),
                   "operations": with_kernel(model, False, make(False))}, repeats)  # fmt: skip
        print(f"| {label}: CPU kernel; PyTorch operations | {ms(t['kernel'])}; "
              f"{ms(t['operations'])} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--L", type=int, default=1)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = load_frames(DATA, args.batch)
    workload = Workload("3bpa", frames)
    model = ictp(args).build(workload).eval().requires_grad_(False)
    batch = ictp(args).batch(model, workload)
    print(
        f"L={args.L}, nu={args.correlation}, 8 channels, batch {args.batch} "
        f"({batch.positions.shape[0]} atoms, {batch.edge_index.shape[1]} edges), "
        f"float64, {args.threads} threads, ms, median of {args.repeats} interleaved\n"
    )
    print("| piece | ms |\n|---|---|")
    whole_calls(args, frames)
    forces_share(model, batch, args.repeats)
    radial_mlps(model, batch, args.repeats)
    product_steps(model, batch.positions.shape[0], args.L, args.repeats)
    convolutions(model, batch, args.repeats)


if __name__ == "__main__":
    main()
