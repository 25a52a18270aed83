r"""What PyTorch needs to trace and differentiate the CPU kernel's operators.

The operator library (:mod:`tensorpot.nn.cpu_kernel`) defines ``torch.ops.tensorpot.*`` and
their CPU implementations; :func:`register` adds, once per process,

- a fake implementation of each (the shapes of its outputs from those of its inputs, symbolic
  sizes included), so that ``make_fx``, ``torch.export`` and ``torch.compile`` trace through
  the operators rather than around them;
- an autograd formula of each but ``group_cg_weights`` (an arrangement of constant weights).

The forward operators are linear in each differentiable input: the convolution
``A = F(h, YK, R)`` in the node features, the edges' couplings and the radial weights
(:mod:`tensorpot.nn.convolution`), the group CG ``T(a, b, W)`` in both operands and the weights
(:class:`tensorpot.nn.visnet.GroupCG`), and ``x @ w``. A backward operator gives the products
of the output's cotangent ``g`` with the partial derivatives, ``B_x(g) = (dF/dx)^T g``, and so
is the derivative of the scalar :math:`\langle g, F(x_1, x_2, x_3)\rangle`. Its own
derivative, for cotangents ``t_i`` of its outputs, is that of

.. math::

    L = \sum_i \langle t_i, B_{x_i}(g)\rangle = \langle g, \sum_i F(\ldots, t_i, \ldots)\rangle

(``t_i`` in place of ``x_i``): with respect to ``g``, three forward evaluations; with respect
to ``x_j``, the backward operator ``B_{x_j}`` at ``g`` with ``t_i`` in place of ``x_i`` for each
``i != j``. So the derivative of the backward pass (training on forces, Hessians) is the same
operators again, differentiable to any order, with no PyTorch re-implementation.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

ops = torch.ops.tensorpot  # resolved when called: the library is loaded first

#: values per group of the arranged group CG weights (3 orders of 4 E^3) and the 4 dense
#: coupling tensors of 125 values (group_cg_kernel.cpp, ``arranged_size``)
GROUP_WEIGHTS, COUPLINGS = 3 * 4 * 8**3, 4 * 125


@functools.cache
def register() -> None:
    """Register the fake implementations and autograd formulas (once; the library is loaded)."""
    lib = "tensorpot::"
    for name, fake in (
        ("convolution", _convolution_fake),
        ("convolution_backward", _convolution_backward_fake),
        ("matmul", _matmul_fake),
        ("group_cg_weights", _group_cg_weights_fake),
        ("group_cg", _group_cg_fake),
        ("group_cg_backward", _group_cg_backward_fake),
    ):
        torch.library.register_fake(lib + name)(fake)
    for name, backward, setup in (
        ("convolution", _convolution_grad, _save_all),
        ("convolution_backward", _convolution_backward_grad, _save_all),
        ("matmul", _matmul_grad, _save_all),
        ("group_cg", _group_cg_grad, _save_all),
        ("group_cg_backward", _group_cg_backward_grad, _save_all),
    ):
        torch.library.register_autograd(lib + name, backward, setup_context=setup)


def _save_all(ctx, inputs, output) -> None:
    """Keep the inputs (tensors saved, the rest as they are) for the formula."""
    flat, ctx.layout = [], []
    for value in inputs:
        if isinstance(value, Tensor):
            ctx.layout.append(("tensor", len(flat)))
            flat.append(value)
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Tensor):
            ctx.layout.append(("tensors", slice(len(flat), len(flat) + len(value))))
            flat.extend(value)
        else:
            ctx.layout.append(("value", value))
    ctx.save_for_backward(*flat)


def _saved(ctx) -> list:
    """The inputs as :func:`_save_all` kept them."""
    tensors = ctx.saved_tensors
    kinds = {"tensor": lambda i: tensors[i], "tensors": lambda s: list(tensors[s])}
    return [kinds.get(kind, lambda v: v)(entry) for kind, entry in ctx.layout]


def _empty(like: Tensor) -> Tensor:
    return like.new_empty((0,))


def _add(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    return b if a is None else a if b is None else a + b


# ---------------------------------------------------------------- the convolution


def _convolution_fake(nodes, sources, reverse, radial, order, offsets, hT, yk, cols, sign):
    num_nodes, channels = hT[0].shape[0], radial.shape[2]
    return [radial.new_empty((num_nodes, y.shape[1], channels)) for y in yk]


def _convolution_backward_fake(nodes, sources, reverse, radial, order, offsets, hT, yk, cols,
                               sign, grads, need_h, need_yk, need_radial):  # fmt: skip
    grad_h = [h.new_empty(h.shape) if n else _empty(h) for h, n in zip(hT, need_h)]
    grad_yk = [y.new_empty(y.shape) if n else _empty(y) for y, n in zip(yk, need_yk)]
    return [*grad_h, *grad_yk, radial.new_empty(radial.shape) if need_radial else _empty(radial)]


def _convolution_grad(ctx, grads):
    nodes, sources, reverse, radial, order, offsets, hT, yk, cols, sign = _saved(ctx)
    need = ctx.needs_input_grad
    need_h, need_yk, need_radial = list(need[6]), list(need[7]), bool(need[3])
    out = ops.convolution_backward(nodes, sources, reverse, radial, order, offsets, hT, yk, cols,
                                   sign, list(grads), need_h, need_yk, need_radial)  # fmt: skip
    n = len(hT)
    grad_h = [g if f else None for g, f in zip(out[:n], need_h)]
    grad_yk = [g if f else None for g, f in zip(out[n : 2 * n], need_yk)]
    nothing = [None] * n
    return (None, None, None, out[-1] if need_radial else None, None, None, grad_h, grad_yk,
            nothing, nothing)  # fmt: skip


def _convolution_backward_grad(ctx, cotangents):
    """The derivative of the convolution's backward pass (module docstring): ``F`` and ``B``
    are the operators, ``t_h``, ``t_yk``, ``t_r`` the cotangents of its outputs."""
    (nodes, sources, reverse, radial, order, offsets, hT, yk, cols, sign, grads, need_h,
     need_yk, need_radial) = _saved(ctx)  # fmt: skip
    n = len(hT)
    t_h = [t if f else None for t, f in zip(cotangents[:n], need_h)]
    t_yk = [t if f else None for t, f in zip(cotangents[n : 2 * n], need_yk)]
    t_r = cotangents[-1] if need_radial else None
    need = ctx.needs_input_grad
    want_r, want_h, want_yk, want_g = bool(need[3]), list(need[6]), list(need[7]), list(need[10])
    graph = (nodes, sources, reverse)

    def forward(h, y, r):
        return ops.convolution(*graph, r, order, offsets, h, y, cols, sign)

    def backward(h, y, r, flags_h, flags_yk, flag_r):
        if not (any(flags_h) or any(flags_yk) or flag_r):
            return [None] * n, [None] * n, None
        out = ops.convolution_backward(*graph, r, order, offsets, h, y, cols, sign, grads,
                                       flags_h, flags_yk, flag_r)  # fmt: skip
        return ([g if f else None for g, f in zip(out[:n], flags_h)],
                [g if f else None for g, f in zip(out[n : 2 * n], flags_yk)],
                out[-1] if flag_r else None)  # fmt: skip

    def filled(ts, like):
        return [torch.zeros_like(x) if t is None else t for t, x in zip(ts, like)]

    d_h, d_yk, d_r = [None] * n, [None] * n, None
    d_g = [None] * n
    given_h, given_yk = [t is not None for t in t_h], [t is not None for t in t_yk]
    if any(given_h):  # F(t_h, yk, r): to g; B at h = t_h: to yk and r
        if any(want_g):
            d_g = [_add(a, b) for a, b in zip(d_g, forward(filled(t_h, hT), yk, radial))]
        _, part_yk, part_r = backward(
            filled(t_h, hT),
            yk,
            radial,
            [False] * n,
            [w and t for w, t in zip(want_yk, given_h)],
            want_r,
        )
        d_yk = [_add(a, b) for a, b in zip(d_yk, part_yk)]
        d_r = _add(d_r, part_r)
    if any(given_yk):  # F(h, t_yk, r): to g; B at yk = t_yk: to h and r
        if any(want_g):
            d_g = [_add(a, b) for a, b in zip(d_g, forward(hT, filled(t_yk, yk), radial))]
        part_h, _, part_r = backward(hT, filled(t_yk, yk), radial,
                                     [w and t for w, t in zip(want_h, given_yk)], [False] * n,
                                     want_r)  # fmt: skip
        d_h = [_add(a, b) for a, b in zip(d_h, part_h)]
        d_r = _add(d_r, part_r)
    if t_r is not None:  # F(h, yk, t_r): to g; B at r = t_r: to h and yk
        if any(want_g):
            d_g = [_add(a, b) for a, b in zip(d_g, forward(hT, yk, t_r))]
        part_h, part_yk, _ = backward(hT, yk, t_r, want_h, want_yk, False)
        d_h = [_add(a, b) for a, b in zip(d_h, part_h)]
        d_yk = [_add(a, b) for a, b in zip(d_yk, part_yk)]
    nothing = [None] * n
    return (None, None, None, d_r if want_r else None, None, None,
            [d if w else None for d, w in zip(d_h, want_h)],
            [d if w else None for d, w in zip(d_yk, want_yk)], nothing, nothing,
            [d if w else None for d, w in zip(d_g, want_g)], None, None, None)  # fmt: skip


# ---------------------------------------------------------------- the radial MLP's product


def _matmul_fake(x, w):
    return x.new_empty((x.shape[0], w.shape[1]))


def _matmul_grad(ctx, grad):
    """``x @ w`` is linear in each: ``grad @ w^T`` by the operator (differentiable again),
    ``x^T @ grad`` by PyTorch (a wide product, not the kernel's tall one)."""
    x, w = _saved(ctx)
    need_x, need_w = ctx.needs_input_grad
    return (ops.matmul(grad, w.t()) if need_x else None), (x.t() @ grad if need_w else None)


# ---------------------------------------------------------------- FreeCG's group CG


def _group_cg_weights_fake(weight, cg, groups):
    return weight.new_empty((groups * GROUP_WEIGHTS + COUPLINGS,))


def _group_cg_fake(a, b, weight, arranged, cg, groups, shift):
    return a.new_empty(a.shape)


def _group_cg_backward_fake(a, b, weight, arranged, cg, groups, shift, grad, need_a, need_b,
                            need_w):  # fmt: skip
    return [a.new_empty(a.shape) if need_a else _empty(a),
            b.new_empty(b.shape) if need_b else _empty(b),
            a.new_empty((1, groups, GROUP_WEIGHTS // 3)) if need_w else _empty(a)]  # fmt: skip


def _group_cg_grad(ctx, grad):
    a, b, weight, arranged, cg, groups, shift = _saved(ctx)
    need_a, need_b, need_w = ctx.needs_input_grad[:3]
    ga, gb, gw = ops.group_cg_backward(a, b, weight, arranged, cg, groups, shift, grad,
                                       need_a, need_b, need_w)  # fmt: skip
    return ((ga if need_a else None), (gb if need_b else None), (gw if need_w else None), None,
            [None] * len(cg), None, None)  # fmt: skip


def _group_cg_backward_grad(ctx, cotangents):
    """The derivative of the group CG's backward pass (module docstring): ``T`` the operator,
    ``t_a``, ``t_b``, ``t_w`` the cotangents of its outputs. Weights other than the saved
    ones (``t_w``) are arranged for the kernel here."""
    a, b, weight, arranged, cg, groups, shift, grad, need_a, need_b, need_w = _saved(ctx)
    t_a, t_b, t_w = (t if f else None for t, f in zip(cotangents, (need_a, need_b, need_w)))
    need = ctx.needs_input_grad
    want_a, want_b, want_w, want_g = bool(need[0]), bool(need[1]), bool(need[2]), bool(need[7])

    def parts(x, y, w, flags):
        if not any(flags):
            return None, None, None
        packed = arranged if w is weight else ops.group_cg_weights(w.detach(), cg, groups)
        out = ops.group_cg_backward(x, y, w, packed, cg, groups, shift, grad, *flags)
        return tuple(o if f else None for o, f in zip(out, flags))

    def forward(x, y, w):
        packed = arranged if w is weight else ops.group_cg_weights(w.detach(), cg, groups)
        return ops.group_cg(x, y, w, packed, cg, groups, shift)

    d_a = d_b = d_w = d_g = None
    if t_a is not None:  # T(t_a, b, W): to grad; B at a = t_a: to b and W
        d_g = _add(d_g, forward(t_a, b, weight) if want_g else None)
        _, part_b, part_w = parts(t_a, b, weight, (False, want_b, want_w))
        d_b, d_w = _add(d_b, part_b), _add(d_w, part_w)
    if t_b is not None:  # T(a, t_b, W): to grad; B at b = t_b: to a and W
        d_g = _add(d_g, forward(a, t_b, weight) if want_g else None)
        part_a, _, part_w = parts(a, t_b, weight, (want_a, False, want_w))
        d_a, d_w = _add(d_a, part_a), _add(d_w, part_w)
    if t_w is not None:  # T(a, b, t_W): to grad; B at W = t_W: to a and b
        d_g = _add(d_g, forward(a, b, t_w) if want_g else None)
        part_a, part_b, _ = parts(a, b, t_w, (want_a, want_b, False))
        d_a, d_b = _add(d_a, part_a), _add(d_b, part_b)
    return (d_a, d_b, d_w, None, [None] * len(cg), None, None, d_g, None, None, None)
