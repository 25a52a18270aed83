r"""The blocks of ViSNet (Wang et al., Nat. Commun. 2024) as the FreeCG code's backbone has them.

FreeCG spec section 2. Per atom ``i`` a scalar feature ``x_i [F]`` and an equivariant feature
``v_i [8, F]`` (components 0-2 degree 1, 3-7 degree 2, in the basis of
:mod:`tensorpot.tensors.spherical`); per directed edge ``j -> i`` (``i`` the centre, ``j`` the
neighbour, ``r_ij = x_j - x_i``) a scalar feature ``f_ij [F]``. Every atom has a self-loop edge
(length 0, harmonics ``Y = 0``). All linear maps act on the channel axis ``F`` (the last), so
the 8 components of ``v`` are mixed with one matrix and rotate together.

- :func:`cosine_cutoff`, :class:`ExpNormalBasis`: ``f_c(d)`` and the radial basis ``phi(d)``;
- :class:`NeighborEmbedding`, :class:`EdgeEmbedding`: the first ``x`` and ``f``;
- :class:`VectorNorm`: the vector "layer norm" of spec 2.9;
- :class:`ViSMP`: one message-passing layer (spec 2.5), with FreeCG's changes (spec 3.6) as
  options: the attention enhancer and the group CG of abstract edges (:class:`GroupCG`);
- :class:`GatedEquivariantBlock`, :class:`EquivariantScalar`: the energy readout (spec 2.7).

Initialisation follows the official code: Xavier-uniform weights and zero biases, embedding
tables N(0, 1), the CG weights Xavier-uniform over a ``[1, G, 4 E^3]`` tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.nn import functional as F

from tensorpot.nn import cpu_kernel
from tensorpot.tensors.spherical import gaunt

#: the couplings of degree 1 (odd) and 2 (even) features into degrees 1 and 2 that parity
#: allows, in the order of e3nn's fully connected tensor product (FreeCG spec 3.3)
SPARSE_PATHS = ((1, 1, 2), (1, 2, 1), (2, 1, 1), (2, 2, 2))
_DEGREE = {1: slice(0, 3), 2: slice(3, 8)}


def cosine_cutoff(d: Tensor, r_max: float) -> Tensor:
    """``f_c(d) = (cos(pi d / r_max) + 1) / 2`` for ``d < r_max``, else 0."""
    return 0.5 * (torch.cos(d * (math.pi / r_max)) + 1.0) * (d < r_max).to(d.dtype)


def linear(fan_in: int, fan_out: int, bias: bool = True) -> nn.Linear:
    """``nn.Linear`` initialised as the official code's: Xavier-uniform weight, zero bias."""
    layer = nn.Linear(fan_in, fan_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


class ExpNormalBasis(nn.Module):
    r""":math:`\phi_k(d) = f_c(d)\exp(-\beta_k (e^{-\alpha d} - \mu_k)^2)`, ``alpha = 5 / r_max``,
    ``mu_k`` evenly spaced on ``[exp(-r_max), 1]``, ``beta_k = (2 (1 - exp(-r_max)) / K)^-2``.

    ``[E] -> [E, K]``; the centres and widths are buffers unless ``trainable``.
    """

    def __init__(self, r_max: float, num_basis: int = 32, trainable: bool = False):
        super().__init__()
        self.r_max = r_max
        self.alpha = 5.0 / r_max
        start = math.exp(-r_max)
        means = torch.linspace(start, 1.0, num_basis)
        betas = torch.full((num_basis,), (2.0 / num_basis * (1.0 - start)) ** -2)
        if trainable:
            self.means, self.betas = nn.Parameter(means), nn.Parameter(betas)
        else:
            self.register_buffer("means", means)
            self.register_buffer("betas", betas)

    def forward(self, d: Tensor) -> Tensor:
        d = d.unsqueeze(-1)
        gauss = torch.exp(-self.betas * (torch.exp(-self.alpha * d) - self.means) ** 2)
        return cosine_cutoff(d, self.r_max) * gauss


class NeighborEmbedding(nn.Module):
    r"""``x_i = W_c [h_i, n_i] + b_c`` with
    :math:`n_i = \sum_{j \ne i} E_b(z_j) \odot (W_\phi \phi(d_{ij}) + b_\phi) f_c(d_{ij})`
    (spec 2.3): the atom's embedding ``h_i`` and a distance-weighted sum of its neighbours'
    second embedding. Self-loops are left out of the sum by the caller."""

    def __init__(self, num_species: int, num_channels: int, num_basis: int):
        super().__init__()
        self.embedding = nn.Embedding(num_species, num_channels)
        self.distance_proj = linear(num_basis, num_channels)
        self.combine = linear(2 * num_channels, num_channels)

    def forward(
        self, h: Tensor, species: Tensor, centre: Tensor, neighbour: Tensor, rbf: Tensor,
        cutoff: Tensor,
    ) -> Tensor:  # fmt: skip
        """``h [N, F]``; ``centre``, ``neighbour``, ``rbf [E', K]``, ``cutoff [E']`` of the
        edges without self-loops. Returns ``[N, F]``."""
        weight = self.distance_proj(rbf) * cutoff.unsqueeze(-1)
        messages = self.embedding(species).index_select(0, neighbour) * weight
        n = torch.zeros_like(h).index_add_(0, centre, messages)
        return self.combine(torch.cat([h, n], dim=-1))


class EdgeEmbedding(nn.Module):
    """``f_ij = (x_i + x_j) * (W_e phi(d_ij) + b_e)`` for every edge (spec 2.4)."""

    def __init__(self, num_basis: int, num_channels: int):
        super().__init__()
        self.edge_proj = linear(num_basis, num_channels)

    def forward(self, x: Tensor, centre: Tensor, neighbour: Tensor, rbf: Tensor) -> Tensor:
        return (x.index_select(0, centre) + x.index_select(0, neighbour)) * self.edge_proj(rbf)


class VectorNorm(nn.Module):
    """The vector "layer norm" of ViSNet (spec 2.9), on the degree-1 and degree-2 blocks apart.

    ``"none"``: identity; ``"max_min"``: each channel's norm mapped to
    ``relu((n - min n) / (max n - min n))`` over the channels of the atom, direction kept;
    ``"rms"``: divided by the root mean square of the channel norms. Then a per-channel
    weight (ones; trainable if asked). An all-zero input (of the whole batch) stays zero, as in
    the official code.
    """

    eps = 1e-12

    def __init__(self, num_channels: int, norm_type: str = "none", trainable: bool = False):
        super().__init__()
        self.norm_type = norm_type
        weight = torch.ones(num_channels)
        if trainable:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def _norm(self, v: Tensor) -> Tensor:
        if self.norm_type == "none":
            return v
        dist = channel_norm(v, keepdim=True)  # [N, 1, F]
        if bool((dist == 0).all()):
            return torch.zeros_like(v)
        dist = dist.clamp(min=self.eps)
        if self.norm_type == "rms":
            return v / torch.sqrt(torch.mean(dist**2, dim=-1, keepdim=True))
        direction = v / dist
        high, low = dist.amax(dim=-1, keepdim=True), dist.amin(dim=-1, keepdim=True)
        delta = high - low
        delta = torch.where(delta == 0, torch.ones_like(delta), delta)
        return F.relu((dist - low) / delta) * direction

    def forward(self, v: Tensor) -> Tensor:
        """``v [N, 8, F]`` in and out."""
        if self.norm_type != "none":
            v = torch.cat([self._norm(v[:, _DEGREE[1]]), self._norm(v[:, _DEGREE[2]])], dim=1)
        return v * self.weight


def channel_norm(v: Tensor, keepdim: bool = False) -> Tensor:
    """The norm of each channel of ``v [N, k, F]`` over its ``k`` components, with a zero (not
    NaN) derivative of any order where it is zero: an atom without neighbours has ``v = 0``, and
    training differentiates the forces once more."""
    square = (v * v).sum(dim=1, keepdim=keepdim)
    positive = square > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, square, 1.0)), 0.0)


class _NeighbourScaled(torch.autograd.Function):
    """``V_i = sum_{e: centre(e) = i} v[neighbour(e)] * s_e``: ``v [N, 8, F]``, ``s [E, F]``.

    Keeps ``v`` and ``s`` for the derivatives, not the ``[E, 8, F]`` products (autograd would
    keep the gathered ``v`` per edge: the largest part of the memory of a forces call).
    The derivatives are PyTorch operations, so they can be differentiated again (training).
    """

    @staticmethod
    def forward(ctx, v, s, centre, neighbour):
        ctx.save_for_backward(v, s, centre, neighbour)
        products = v.index_select(0, neighbour) * s.unsqueeze(1)
        return torch.zeros_like(v).index_add_(0, centre, products)

    @staticmethod
    def backward(ctx, grad):
        v, s, centre, neighbour = ctx.saved_tensors
        g = grad.index_select(0, centre)  # [E, 8, F]
        grad_v = grad_s = None
        if ctx.needs_input_grad[0]:
            grad_v = torch.zeros_like(v).index_add(0, neighbour, g * s.unsqueeze(1))
        if ctx.needs_input_grad[1]:
            grad_s = (g * v.index_select(0, neighbour)).sum(dim=1)
        return grad_v, grad_s, None, None


class _EdgeDot(torch.autograd.Function):
    """``d_e = sum_m a[centre(e)]_m * b[neighbour(e)]_m`` per channel: ``a, b [N, k, F]`` ->
    ``[E, F]``, keeping ``a`` and ``b`` rather than their ``[E, k, F]`` gathers."""

    @staticmethod
    def forward(ctx, a, b, centre, neighbour):
        ctx.save_for_backward(a, b, centre, neighbour)
        return (a.index_select(0, centre) * b.index_select(0, neighbour)).sum(dim=1)

    @staticmethod
    def backward(ctx, grad):
        a, b, centre, neighbour = ctx.saved_tensors
        g = grad.unsqueeze(1)
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = torch.zeros_like(a).index_add(0, centre, b.index_select(0, neighbour) * g)
        if ctx.needs_input_grad[1]:
            grad_b = torch.zeros_like(b).index_add(0, neighbour, a.index_select(0, centre) * g)
        return grad_a, grad_b, None, None


def enhancer_logits(enhancer: nn.Linear, v: Tensor, y: Tensor, neighbour: Tensor) -> Tensor:
    """FreeCG's attention enhancer (spec 3.5): ``W (sum_m v_jm Y_m) + b`` per edge, ``[E, H]``,
    from ``v [N, 8, F]``, ``Y [E, 8]`` and the linear map ``W [H, F]``, ``b [H]``.

    Computed as ``sum_m Y_m (W v_j)_m + b``: ``W`` maps the atoms' ``[N, 8, F]`` to
    ``[N, 8, H]`` before the gather, rather than each edge's ``[8, F]`` gather to ``[F]``."""
    projected = F.linear(v, enhancer.weight).index_select(0, neighbour)  # [E, 8, H]
    return (projected * y.unsqueeze(-1)).sum(dim=1) + enhancer.bias


class GroupCG(nn.Module):
    r"""FreeCG's group CG transform of abstract edges (spec 3.3).

    The ``F = G E`` channels of two ``[N, 8, F]`` features are cut into ``G`` groups of ``E``
    (channel ``c = g E + u``); inside each group every pair ``(u, v)`` of the first and the
    second operand is coupled on the parity-allowed paths :data:`SPARSE_PATHS`:

    .. math::

        T^g_{w, l_3} = \alpha_{l_3} \sum_{(l_1, l_2 \to l_3)} \sum_{u, v} W^g_{p,u,v,w}
        \, C^{l_1 l_2 l_3} \cdot (a^{g,u}_{l_1} \otimes b^{g,v}_{l_2}),
        \qquad \alpha_{l_3} = \sqrt{(2 l_3 + 1) / (2 E^2)},

    ``C`` the unit-norm Gaunt tensors (:func:`tensorpot.tensors.spherical.gaunt`), ``W`` the
    ``G x 4 E^3`` weights, separate per group. This is e3nn's
    ``FullyConnectedTensorProduct("Ex1o+Ex2e", "Ex1o+Ex2e", "Ex1o+Ex2e")`` applied per group with
    per-group weights, and ``weight`` has its layout ``[1, G, path, u, v, w]``. The output is
    FreeCG's channel shift of ``T`` (spec 3.4), ``roll(T, -shift)`` over the channels
    (``out_c = T_{c + shift mod F}``).
    """

    def __init__(self, num_groups: int, edges_per_group: int, shift: int = 0):
        super().__init__()
        self.groups, self.edges, self.shift = num_groups, edges_per_group, shift
        e = edges_per_group
        self.weight = nn.Parameter(torch.empty(1, num_groups, len(SPARSE_PATHS) * e**3))
        nn.init.xavier_uniform_(self.weight)
        self._arranged: tuple | None = None  # (weights' identity, the kernel's arrangement)
        #: run the transform by the CPU kernel (:func:`tensorpot.nn.cpu_kernel.choose`)
        self.cpu_kernel = False
        for k, (l1, l2, l3) in enumerate(SPARSE_PATHS):
            alpha = math.sqrt((2 * l3 + 1) / (2 * e * e))
            self.register_buffer(f"cg{k}", gaunt(l1, l2, l3).float() * alpha, persistent=False)

    def _apply(self, fn, recurse=True):
        """Cast as ``nn.Module`` does, but rebuild the coefficients from float64."""
        super()._apply(fn, recurse)
        for k, (l1, l2, l3) in enumerate(SPARSE_PATHS):
            buffer = getattr(self, f"cg{k}")
            alpha = math.sqrt((2 * l3 + 1) / (2 * self.edges**2))
            exact = gaunt(l1, l2, l3) * alpha
            setattr(self, f"cg{k}", exact.to(device=buffer.device, dtype=buffer.dtype))
        return self

    def coefficients(self) -> list[Tensor]:
        """The four coupling tensors, scaled by ``alpha_l3``, in the module's dtype."""
        return [getattr(self, f"cg{k}") for k in range(len(SPARSE_PATHS))]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """``a, b [N, 8, F]`` -> ``[N, 8, F]``.

        Outside training, with 8 abstract edges per group and a shift of whole groups, where
        the module is told to use the CPU kernel (:func:`tensorpot.nn.cpu_kernel.choose`) and
        the tensors are on the CPU in float32 or float64, the kernel's operator
        ``torch.ops.tensorpot.group_cg`` computes it (and its derivatives, of any order);
        training runs the PyTorch operations of :meth:`transform`.
        """
        use = not self.training and self.edges == 8 and self.shift % 8 == 0
        if not (use and cpu_kernel.applies(self.cpu_kernel, a, b, self.weight)):
            return self.transform(a, b, self.weight)
        return torch.ops.tensorpot.group_cg(
            a, b, self.weight, self.arranged(), self.coefficients(), self.groups, self.shift // 8
        )

    def transform(self, a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
        """The shifted transform as PyTorch operations (differentiable to any order)."""
        out = self.contract(a, b, weight)
        return torch.roll(out, -self.shift, dims=-1) if self.shift else out

    def arranged(self) -> Tensor:
        """The weights as the kernel reads them (``torch.ops.tensorpot.group_cg_weights``),
        made again only when the weights change; in a graph being traced or compiled, made in
        the graph (a fake tensor is never kept)."""
        w = self.weight
        if torch.compiler.is_compiling() or isinstance(w, FakeTensor):
            with torch.no_grad():
                return torch.ops.tensorpot.group_cg_weights(w, self.coefficients(), self.groups)
        key = (w.data_ptr(), w._version, w.dtype)
        if self._arranged is None or self._arranged[0] != key:
            with torch.no_grad():
                arranged = torch.ops.tensorpot.group_cg_weights(w, self.coefficients(), self.groups)
            if isinstance(arranged, FakeTensor):  # a trace on real weights: not kept
                return arranged
            self._arranged = (key, arranged)
        return self._arranged[1]

    def contract(self, a: Tensor, b: Tensor, weight: Tensor) -> Tensor:
        """The transform ``T`` before the shift as PyTorch operations, in the kernel's
        order: the weights with the operand of fewer components first, then the other operand,
        then the coupling coefficients (fewer products than forming every pair ``(u, v)``
        first)."""
        n = a.shape[0]
        g, e = self.groups, self.edges
        a = a.reshape(n, 8, g, e)
        b = b.reshape(n, 8, g, e)
        w = weight.reshape(g, len(SPARSE_PATHS), e, e, e)
        out = {1: None, 2: None}
        for k, (l1, l2, l3) in enumerate(SPARSE_PATHS):
            cg = getattr(self, f"cg{k}")
            x, y = a[:, _DEGREE[l1]], b[:, _DEGREE[l2]]
            if l2 <= l1:  # [N, n2, G, u, w], then [N, n1, n2, G, w]
                yw = torch.einsum("njgv,guvw->njguw", y, w[:, k])
                pairs = torch.einsum("nigu,njguw->nijgw", x, yw)
            else:
                xw = torch.einsum("nigu,guvw->nigvw", x, w[:, k])
                pairs = torch.einsum("njgv,nigvw->nijgw", y, xw)
            term = torch.einsum("ijc,nijgw->ncgw", cg, pairs)
            out[l3] = term if out[l3] is None else out[l3] + term
        return torch.cat([out[1], out[2]], dim=1).reshape(n, 8, g * e)


class ViSMP(nn.Module):
    """One ViS-MP layer (spec 2.5), with FreeCG's changes (spec 3.6) when ``group_cg`` is given.

    Returns the residual updates ``(dx [N, F], dv [N, 8, F], df [E, F] or None)``; the last
    layer has no edge update.

    Args:
        num_channels: ``F``.
        num_heads: ``H`` attention heads (``F`` divisible by ``H``).
        r_max: cutoff of the attention's ``f_c``.
        last: no edge update (and none of its weights).
        vecnorm: the pre-norm of ``v`` (:class:`VectorNorm`).
        enhancer: FreeCG's attention enhancer (spec 3.5): ``W_ae (sum_m v_jm Y_m) + b`` added to
            the attention logits.
        group_cg: FreeCG's CG of the abstract edges (spec 3.3) with its channel shift (3.4);
            None is ViSNet's ``dv = C o1 + V``.
        smooth: multiply the vector messages by ``f_c(d_ij)``, so that energy and forces are
            continuous when a neighbour crosses ``r_max`` (the official code does not: spec 3.9).
    """

    def __init__(
        self,
        num_channels: int,
        num_heads: int,
        r_max: float,
        last: bool = False,
        vecnorm: VectorNorm | None = None,
        enhancer: bool = False,
        group_cg: GroupCG | None = None,
        smooth: bool = True,
    ):
        super().__init__()
        f = num_channels
        if f % num_heads:
            raise ValueError(f"num_channels ({f}) must be divisible by num_heads ({num_heads})")
        self.channels, self.heads, self.r_max = f, num_heads, r_max
        self.last, self.smooth = last, smooth
        self.layernorm = nn.LayerNorm(f)
        self.vec_layernorm = vecnorm if vecnorm is not None else VectorNorm(f)
        self.vec_proj = linear(f, 3 * f, bias=False)
        self.q_proj, self.k_proj, self.v_proj = linear(f, f), linear(f, f), linear(f, f)
        self.dk_proj, self.dv_proj = linear(f, f), linear(f, f)
        self.s_proj = linear(f, 2 * f)
        self.o_proj = linear(f, 3 * f)
        if not last:
            self.f_proj = linear(f, f)
            self.w_src_proj = linear(f, f, bias=False)
            self.w_trg_proj = linear(f, f, bias=False)
        self.enhancer = linear(f, num_heads) if enhancer else None
        self.group_cg = group_cg

    def forward(
        self, x: Tensor, v: Tensor, f: Tensor, centre: Tensor, neighbour: Tensor, d: Tensor,
        y: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor | None]:  # fmt: skip
        """``x [N, F]``, ``v [N, 8, F]``, ``f [E, F]``; edges ``centre``, ``neighbour`` [E],
        lengths ``d [E]`` and harmonics ``y [E, 8]`` (zero on self-loops).

        ``dx = s o2 + o3`` and ``df`` with the runtime geometry ``(s, df)`` of :meth:`geometry`
        (a subclass adds its own terms there), ``dv`` of :meth:`vector_update`."""
        c = self.channels
        x = self.layernorm(x)
        v = self.vec_layernorm(v)
        cutoff = cosine_cutoff(d, self.r_max).unsqueeze(-1)  # [E, 1]
        messages, vectors = self.messages(x, v, f, centre, neighbour, cutoff, y)
        o1, o2, o3 = torch.split(self.o_proj(messages), c, dim=-1)
        v1, v2, v3 = torch.split(self.vec_proj(v), c, dim=-1)
        dv = self.vector_update(v3 * o1.unsqueeze(1), vectors)
        scalars, df = self.geometry(v, v1, v2, f, centre, neighbour, cutoff)
        return scalars * o2 + o3, dv, df

    def messages(
        self, x: Tensor, v: Tensor, f: Tensor, centre: Tensor, neighbour: Tensor,
        cutoff: Tensor, y: Tensor,
    ) -> tuple[Tensor, Tensor]:  # fmt: skip
        """The attention-weighted scalar messages ``M_i [N, F]`` and the vector messages (the
        abstract edges) ``V_i = sum_j v_j s1_ij + Y_ij s2_ij`` ``[N, 8, F]``, from the normed
        ``x``, ``v`` and the cutoff ``f_c(d) [E, 1]``."""
        n, c, h = x.shape[0], self.channels, self.heads
        q = self.q_proj(x).reshape(n, h, -1)
        k = self.k_proj(x).reshape(n, h, -1)
        s = self.v_proj(x).reshape(n, h, -1)
        dk = F.silu(self.dk_proj(f)).reshape(-1, h, c // h)
        dv = F.silu(self.dv_proj(f)).reshape(-1, h, c // h)
        # index_select, not x[index]: its backward is an index_add, not a sorting index_put
        logits = (q.index_select(0, centre) * k.index_select(0, neighbour) * dk).sum(dim=-1)
        if self.enhancer is not None:
            logits = logits + enhancer_logits(self.enhancer, v, y, neighbour)
        attention = F.silu(logits) * cutoff  # [E, H]
        m = (s.index_select(0, neighbour) * dv * attention.unsqueeze(-1)).reshape(-1, c)
        s1, s2 = torch.split(F.silu(self.s_proj(m)), c, dim=-1)
        if self.smooth:  # mu f_c, applied to the [E, F] gates rather than to mu [E, 8, F]
            s1, s2 = s1 * cutoff, s2 * cutoff
        messages = torch.zeros_like(x).index_add_(0, centre, m)
        vectors = _NeighbourScaled.apply(v, s1, centre, neighbour)
        vectors = vectors.index_add(0, centre, y.unsqueeze(-1) * s2.unsqueeze(1))
        return messages, vectors

    def vector_update(self, own: Tensor, vectors: Tensor) -> Tensor:
        """``dv``: ViSNet's ``C o1 + V``; with FreeCG's layer ``Shift(GroupCG(V, C o1)) + V``."""
        if self.group_cg is None:
            return own + vectors
        return self.group_cg(vectors, own) + vectors

    def geometry(
        self, v: Tensor, v1: Tensor, v2: Tensor, f: Tensor, centre: Tensor, neighbour: Tensor,
        cutoff: Tensor,
    ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """The runtime geometry: the scalar ``<v P1, v P2> [N, F]`` (angles) that multiplies
        ``o2``, and the edge update ``df [E, F]`` (:meth:`dihedral`; None in the last layer)."""
        angles = (v1 * v2).sum(dim=1)
        return angles, (None if self.last else self.dihedral(v, f, centre, neighbour))

    def dihedral(self, v: Tensor, f: Tensor, centre: Tensor, neighbour: Tensor) -> Tensor:
        """ViSNet's edge update ``SiLU(W f + b) <v_i W_t, v_j W_s>`` ``[E, F]``.

        The official dihedral term ``sum_m Rej(a_i, Y)_m Rej(b_j, -Y)_m`` equals ``a_i . b_j +
        (|Y|^2 - 2)(Y . a_i)(Y . b_j)``, and ``|Y|^2 = 2`` (real edges) or ``Y = 0``
        (self-loops): the rejections cancel, in the official code too, and the term is the
        plain product."""
        dot = _EdgeDot.apply(self.w_trg_proj(v), self.w_src_proj(v), centre, neighbour)
        return F.silu(self.f_proj(f)) * dot


class GatedEquivariantBlock(nn.Module):
    """Gated equivariant block (Schütt et al. 2021; spec 2.7): ``(x [N, F_in], v [N, 8, F_in])
    -> (x' [N, F_out], v' [N, 8, F_out])`` with ``[x', g] = MLP([x, |v W_1|])``, ``v' = g v W_2``
    (the norm over all 8 components)."""

    def __init__(self, fan_in: int, fan_out: int, scalar_activation: bool):
        super().__init__()
        self.fan_out = fan_out
        self.vec1_proj = linear(fan_in, fan_in, bias=False)
        self.vec2_proj = linear(fan_in, fan_out, bias=False)
        self.update_net = nn.Sequential(
            linear(2 * fan_in, fan_in), nn.SiLU(), linear(fan_in, 2 * fan_out)
        )
        self.scalar_activation = scalar_activation

    def forward(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        norm = channel_norm(self.vec1_proj(v))
        x, gate = torch.split(self.update_net(torch.cat([x, norm], dim=-1)), self.fan_out, dim=-1)
        v = gate.unsqueeze(1) * self.vec2_proj(v)
        return (F.silu(x) if self.scalar_activation else x), v


class EquivariantScalar(nn.Module):
    """The energy readout of the official code: two gated blocks ``F -> F/2 -> 1``; the site
    energy ``[N]`` is the scalar output of the second."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                GatedEquivariantBlock(num_channels, num_channels // 2, scalar_activation=True),
                GatedEquivariantBlock(num_channels // 2, 1, scalar_activation=False),
            ]
        )

    def forward(self, x: Tensor, v: Tensor) -> Tensor:
        x, v = self.blocks[0](x, v)
        x, _ = self.blocks[1](x, v)
        return x[:, 0]
