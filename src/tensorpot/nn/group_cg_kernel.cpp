// FreeCG's group CG transform (tensorpot.nn.visnet.GroupCG) and its first derivatives, for
// E = 8 abstract edges per group (the released models; other E run the PyTorch operations).
//
// Per atom n and group g, with a, b, out [N, 8, G, 8] (components 0-2 degree 1, 3-7 degree 2)
// and weights W [G, 4, 8, 8, 8] (path p, u, v, w):
//   out[n, k, g, w] = sum_p sum_{(i, j, k) in C_p} C_p[i, j, k] sum_{u, v} a[n, i, g, u]
//                     b[n, j, g, v] W[g, p, u, v, w].
// Each path contracts one operand with the weights first, the one with fewer components
// (call it B, its channel y; the other A, channel x): Bw[j, x, z] = sum_y B[j, y] W[x, y, z],
// then R[i, j, z] = sum_x A[i, x] Bw[j, x, z], and out[k, z] += C[i, j, k] R[i, j, z]: about
// 14 x 64 + 64 x 8 vector products of 8 lanes per atom and group, against 64 x 16 x 8 for the
// products of all pairs (u, v) first. The first derivatives run the same steps backwards.
//
// A vector holds the 8 lanes of one channel index (x, y or z) of a group. The forward pass packs
// P = 2 neighbouring groups into a vector in float32 with an even number of groups (a 512-bit
// register), else P = 1: a value that multiplies such a vector (an operand's component) is
// "spread", each group's value repeated over that group's 8 lanes. The derivatives take one
// group per vector (P = 2 measured slower there: their lane broadcasts of intermediate
// sums become permutations that compete with the products). The weights are arranged once per
// set of weights (group_cg_weights) so that every product reads one contiguous vector of them,
// and the arrangement carries the coupling tensors in the weights' dtype.
//
// The output is FreeCG's channel shift of the transform, roll(T, -8 s) over the channels for a
// shift of s whole groups: group g's result is stored at group g - s (mod G), and the
// derivatives read the output's gradient there.
//
// The loops run over (group block, atom), the block outermost, so that one block's weights
// stay in the L1/L2 cache while the atoms pass.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <array>
#include <type_traits>
#include <cstdint>
#include <vector>

#include "cpu_kernel.h"

namespace {

constexpr int kE = 8;  // abstract edges per group
constexpr int kPaths = 4;
constexpr std::array<std::array<int, 3>, kPaths> kDegrees = {
    {{1, 1, 2}, {1, 2, 1}, {2, 1, 1}, {2, 2, 2}}};
constexpr int kWeights = kPaths * kE * kE * kE;  // per group
constexpr int kCoupling = 125;                   // the dense coupling tensor of a path, at most

constexpr int offset(int degree) { return degree == 1 ? 0 : 3; }
constexpr int size(int degree) { return 2 * degree + 1; }

// One path as the loops see it: whether A is the second operand b (then B is a), the sizes and
// component offsets of A, B and the output. Its coupling tensor is dense [na][nb][nc] in A, B
// order (the loops index it with constants, so that their sums stay in registers).
struct Path {
  bool swap;
  int na, nb, nc, a_off, b_off, c_off;
};

constexpr Path path_of(int p) {
  const auto [l1, l2, l3] = kDegrees[p];
  const bool swap = size(l2) > size(l1);  // contract the smaller operand with the weights
  const int la = swap ? l2 : l1, lb = swap ? l1 : l2;
  return Path{swap, size(la), size(lb), size(l3), offset(la), offset(lb), offset(l3)};
}

// groups per vector: two in float32 when the number of groups is even
template <typename T>
int groups_per_vector(int64_t groups) {
  return sizeof(T) == 4 && groups % 2 == 0 ? 2 : 1;
}

// The arranged weights, in the three orders the loops read as vectors: the forward pass's per
// block q of P groups, in vectors of 8 P lanes (lane h * 8 + t: group q P + h, channel t), the
// derivatives' per group g (8 lanes):
//   forward [q][p][y][x] over z, bwd_x [g][p][y][z] over x, bwd_y [g][p][z][x] over y,
// where x, y are the channels of A and B (u, v, or v, u where the path swaps them); then the
// four dense coupling tensors (kCoupling values each).
int64_t weight_index(int64_t q, int p, int r, int s) {
  return ((q * kPaths + p) * kE + r) * kE + s;
}

// calls f(index, g, p, x, y, z) for every weight W[g, p, u, v, z], index its place in the
// weights' own layout [G, 4, 8, 8, 8] and x, y the channels of A and B
template <typename Fn>
void for_each_weight(int64_t G, Fn f) {
  for (int64_t g = 0; g < G; ++g)
    for (int p = 0; p < kPaths; ++p) {
      const bool swap = path_of(p).swap;
      for (int u = 0; u < kE; ++u)
        for (int v = 0; v < kE; ++v)
          for (int z = 0; z < kE; ++z)
            f((((g * kPaths + p) * kE + u) * kE + v) * kE + z, g, p, swap ? v : u, swap ? u : v, z);
    }
}

template <typename T>
void arrange(const T* w, int64_t G, int P, const std::vector<at::Tensor>& cg, T* out) {
  const int64_t part = G * kWeights;
  T* forward = out;
  T* bwd_x = out + part;
  T* bwd_y = out + 2 * part;
  const int L = kE * P;
  for_each_weight(G, [&](int64_t index, int64_t g, int p, int x, int y, int z) {
    const T value = w[index];
    forward[weight_index(g / P, p, y, x) * L + (g % P) * kE + z] = value;
    bwd_x[weight_index(g, p, y, z) * kE + x] = value;
    bwd_y[weight_index(g, p, z, x) * kE + y] = value;
  });
  T* coupling = out + 3 * part;
  for (int p = 0; p < kPaths; ++p) {
    const auto [l1, l2, l3] = kDegrees[p];
    const Path path = path_of(p);
    auto c = cg[p].to(at::kDouble).contiguous();
    TORCH_CHECK(c.numel() == size(l1) * size(l2) * size(l3), "group_cg: coupling tensor size");
    const double* data = c.data_ptr<double>();
    T* dense = coupling + p * kCoupling;
    for (int m1 = 0; m1 < size(l1); ++m1)
      for (int m2 = 0; m2 < size(l2); ++m2)
        for (int k = 0; k < size(l3); ++k) {
          const int i = path.swap ? m2 : m1, j = path.swap ? m1 : m2;
          dense[(i * path.nb + j) * path.nc + k] =
              static_cast<T>(data[(m1 * size(l2) + m2) * size(l3) + k]);
        }
  }
}

int64_t arranged_size(int64_t groups) { return 3 * groups * kWeights + kPaths * kCoupling; }

template <typename T, int P>
struct Kernel {
  static constexpr int L = kE * P;  // lanes of a vector
  typedef T V __attribute__((vector_size(L * sizeof(T))));

  int64_t N, G, shift;  // shift: the output's channel shift, in groups
  const V *forward_w, *bwd_x, *bwd_y;  // the arranged weights, as vectors
  const T* coupling;                   // [kPaths][kCoupling]

  Kernel(int64_t N, int64_t G, int64_t shift, const T* arranged) : N(N), G(G), shift(shift) {
    // PyTorch's CPU allocations are 64-byte aligned and every vector starts at a multiple of
    // 8 P values, so the vectors are aligned
    const V* data = reinterpret_cast<const V*>(arranged);
    const int64_t part = G * kWeights / L;
    forward_w = data, bwd_x = data + part, bwd_y = data + 2 * part;
    coupling = arranged + 3 * G * kWeights;
  }

  int64_t F() const { return G * kE; }
  int64_t blocks() const { return G / P; }
  // where group g's output lies: out = roll(T, -8 shift) over the channels
  int64_t shifted(int64_t g) const { return ((g - shift) % G + G) % G; }

  static V load(const T* p) {
    V v;
    __builtin_memcpy(&v, p, sizeof(v));
    return v;
  }

  static void store(T* p, const V& v) { __builtin_memcpy(p, &v, sizeof(v)); }

  // integer lanes of T's width, for lane permutations
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I;
  typedef I Index __attribute__((vector_size(L * sizeof(T))));

  struct SpreadIndex {
    Index index[kE];
    SpreadIndex() {
      for (int t = 0; t < kE; ++t)
        for (int l = 0; l < L; ++l) index[t][l] = (l / kE) * kE + t;
    }
  };
  static const Index* spread_index() {
    static const SpreadIndex table;
    return table.index;
  }

  // lane t of each group's 8 lanes, repeated over them
  static V spread(const V& v, int t) {
    if constexpr (P == 1) return V{} + v[t];  // a broadcast
#if defined(__GNUC__) && !defined(__clang__)
    return __builtin_shuffle(v, spread_index()[t]);
#else
    V out;
    for (int l = 0; l < L; ++l) out[l] = v[(l / kE) * kE + t];
    return out;
#endif
  }

  // one atom's operand of one group (P = 1) as rows [8] and as values [8][8]
  static void gather_values(const T* src, int64_t F, V* rows, T (*values)[kE]) {
    for (int m = 0; m < 8; ++m) {
      rows[m] = load(src + m * F);
      __builtin_memcpy(values[m], src + m * F, kE * sizeof(T));
    }
  }

  // one atom's operand of a block as rows [8] (component) and spread values [8][8]
  // (component, channel)
  static void gather(const T* src, int64_t F, V* rows, V (*spreads)[kE]) {
    for (int m = 0; m < 8; ++m) {
      rows[m] = load(src + m * F);
      for (int t = 0; t < kE; ++t) spreads[m][t] = spread(rows[m], t);
    }
  }

  // Bw[j][x] (over z) = sum_y B[j][y] Wf[y][x]: eight independent sums per j
  template <int NB, typename S>  // S: a spread value V, or the scalar T of one group
  static void contract_b(const S (*B)[kE], const V* Wf, V (*Bw)[kE]) {
    for (int j = 0; j < NB; ++j) {
      V acc[kE] = {};
      for (int y = 0; y < kE; ++y) {
        const S s = B[j][y];
        for (int x = 0; x < kE; ++x) acc[x] += s * Wf[y * kE + x];
      }
      for (int x = 0; x < kE; ++x) Bw[j][x] = acc[x];
    }
  }

  // the (NA, NB, NC) of a path as one number, for the switches that call the loops below with
  // them as constants (fixed bounds and indices)
  static int sizes(const Path& path) { return 100 * path.na + 10 * path.nb + path.nc; }

  // one path's contribution to the outputs acc [8] (over z) of one atom and block, with its
  // dense coupling tensor C [NA][NB][NC]
  template <int NA, int NB, int NC>
  static void path_forward(const T* C, const V (*A)[kE], const V (*B)[kE], const V* Wf,
                           V* acc) {
    constexpr int c_off = NC == 3 ? 0 : 3;
    V Bw[NB][kE];
    contract_b<NB>(B, Wf, Bw);
    V R[NA][NB] = {};  // R[i][j] = sum_x A[i][x] Bw[j][x]: NA x NB independent sums
    for (int x = 0; x < kE; ++x)
      for (int i = 0; i < NA; ++i)
        for (int j = 0; j < NB; ++j) R[i][j] += A[i][x] * Bw[j][x];
    for (int i = 0; i < NA; ++i)
      for (int j = 0; j < NB; ++j)
        for (int k = 0; k < NC; ++k) {
          const T c = C[(i * NB + j) * NC + k];
          if (c != T(0)) acc[c_off + k] += c * R[i][j];
        }
  }

  void forward(const T* a, const T* b, T* out) const {
    const int64_t F = this->F();
    at::parallel_for(0, blocks() * N, 64 / P, [&](int64_t begin, int64_t end) {
      V rows[2][8], spreads[2][8][kE];
      for (int64_t index = begin; index < end; ++index) {
        const int64_t q = index / N, n = index % N;
        const int64_t base = n * 8 * F + q * L;
        gather(a + base, F, rows[0], spreads[0]);
        gather(b + base, F, rows[1], spreads[1]);
        V acc[8] = {};
        for (int p = 0; p < kPaths; ++p) {
          const Path path = path_of(p);
          const V(*A)[kE] = spreads[path.swap ? 1 : 0] + path.a_off;
          const V(*B)[kE] = spreads[path.swap ? 0 : 1] + path.b_off;
          const V* Wf = &forward_w[weight_index(q, p, 0, 0)];
          const T* C = coupling + p * kCoupling;
          switch (sizes(path)) {
            case 335: path_forward<3, 3, 5>(C, A, B, Wf, acc); break;
            case 533: path_forward<5, 3, 3>(C, A, B, Wf, acc); break;
            case 555: path_forward<5, 5, 5>(C, A, B, Wf, acc); break;
            default: TORCH_CHECK(false, "group_cg: unexpected path sizes");
          }
        }
        for (int h = 0; h < P; ++h) {  // each group's 8 lanes to its shifted place
          T* dst = out + n * 8 * F + shifted(q * P + h) * kE;
          for (int m = 0; m < 8; ++m)
            __builtin_memcpy(dst + m * F, reinterpret_cast<const T*>(&acc[m]) + h * kE,
                             kE * sizeof(T));
        }
      }
    });
  }

  // One path's derivatives for one atom and block, from the output's gradient gO [8]: added
  // to gA [NA] and gB [NB] (over x and y) where given, and to the weights' gw (the bwd_x
  // order of this block and path) where given. rowA: A's components as rows (over x).
  template <int NA, int NB, int NC>
  static void path_backward(const T* C, const V* rowA, const T (*B)[kE], const V* Wx,
                            const V* Wy, const V* gO, V* gA, V* gB, V* gw) {
    constexpr int c_off = NC == 3 ? 0 : 3;
    V gR[NA][NB] = {};  // over z
    for (int i = 0; i < NA; ++i)
      for (int j = 0; j < NB; ++j)
        for (int k = 0; k < NC; ++k) {
          const T c = C[(i * NB + j) * NC + k];
          if (c != T(0)) gR[i][j] += c * gO[c_off + k];
        }
    if (gA != nullptr) {  // gA[i] = sum_j sum_z gR[i][j][z] Bw[j][z], Bw[j][z] (over x)
      V Bw[NB][kE];
      contract_b<NB>(B, Wx, Bw);
      V sum[NA][2] = {};
      for (int j = 0; j < NB; ++j)
        for (int z = 0; z < kE; ++z)
          for (int i = 0; i < NA; ++i) sum[i][z & 1] += gR[i][j][z] * Bw[j][z];
      for (int i = 0; i < NA; ++i) gA[i] += sum[i][0] + sum[i][1];
    }
    V gBw[NB][kE] = {};  // gBw[j][z] (over x) = sum_i gR[i][j][z] A[i]
    for (int i = 0; i < NA; ++i)
      for (int j = 0; j < NB; ++j)
        for (int z = 0; z < kE; ++z) gBw[j][z] += gR[i][j][z] * rowA[i];
    if (gB != nullptr) {  // gB[j] (over y) = sum_z sum_x gBw[j][z][x] Wy[z][x]
      V sum[NB][2] = {};
      for (int z = 0; z < kE; ++z)
        for (int x = 0; x < kE; ++x) {
          const V w = Wy[z * kE + x];
          for (int j = 0; j < NB; ++j) sum[j][x & 1] += gBw[j][z][x] * w;
        }
      for (int j = 0; j < NB; ++j) gB[j] += sum[j][0] + sum[j][1];
    }
    if (gw != nullptr)  // dL/dW[x, y, z] = sum_j B[j][y] gBw[j][z][x]
      for (int j = 0; j < NB; ++j)
        for (int y = 0; y < kE; ++y) {
          const T s = B[j][y];
          for (int z = 0; z < kE; ++z) gw[y * kE + z] += s * gBw[j][z];
        }
  }

  // The derivatives for one atom and block: grad_ab[0], grad_ab[1] of a and b (accumulated),
  // or, where gw is given, the weights' (accumulated into this block's bwd_x order).
  void atom_backward(int64_t q, const V (*rows)[8], const T (*ab)[8][kE], const V* grad,
                     V (*grad_ab)[8], V* gw) const {
    static_assert(P == 1, "the derivatives take one group per vector");
    for (int p = 0; p < kPaths; ++p) {
      const Path path = path_of(p);
      const int ia = path.swap ? 1 : 0, ib = 1 - ia;
      const V* rowA = rows[ia] + path.a_off;
      const T(*B)[kE] = ab[ib] + path.b_off;
      V* gA = grad_ab == nullptr ? nullptr : grad_ab[ia] + path.a_off;
      V* gB = grad_ab == nullptr ? nullptr : grad_ab[ib] + path.b_off;
      const V* Wx = &bwd_x[weight_index(q, p, 0, 0)];
      const V* Wy = &bwd_y[weight_index(q, p, 0, 0)];
      V* gwp = gw == nullptr ? nullptr : gw + weight_index(0, p, 0, 0);
      const T* C = coupling + p * kCoupling;
      switch (sizes(path)) {
        case 335: path_backward<3, 3, 5>(C, rowA, B, Wx, Wy, grad, gA, gB, gwp); break;
        case 533: path_backward<5, 3, 3>(C, rowA, B, Wx, Wy, grad, gA, gB, gwp); break;
        case 555: path_backward<5, 5, 5>(C, rowA, B, Wx, Wy, grad, gA, gB, gwp); break;
        default: TORCH_CHECK(false, "group_cg: unexpected path sizes");
      }
    }
  }

  void backward_inputs(const T* a, const T* b, const T* grad, T* ga, T* gb) const {
    const int64_t F = this->F();
    at::parallel_for(0, blocks() * N, 64 / P, [&](int64_t begin, int64_t end) {
      V rows[2][8];
      T ab[2][8][kE];
      V gO[8];
      for (int64_t index = begin; index < end; ++index) {
        const int64_t q = index / N, n = index % N;
        const int64_t base = n * 8 * F + q * L;
        gather_values(a + base, F, rows[0], ab[0]);
        gather_values(b + base, F, rows[1], ab[1]);
        const T* g_out = grad + n * 8 * F + shifted(q) * kE;
        for (int m = 0; m < 8; ++m) gO[m] = load(g_out + m * F);
        V grads[2][8] = {};
        atom_backward(q, rows, ab, gO, grads, nullptr);
        for (int m = 0; m < 8; ++m) {
          if (ga != nullptr) store(ga + base + m * F, grads[0][m]);
          if (gb != nullptr) store(gb + base + m * F, grads[1][m]);
        }
      }
    });
  }

  // dL/dW in the bwd_x order [q][p][y][z] over x, one block per task
  void backward_weights(const T* a, const T* b, const T* grad, V* gw) const {
    const int64_t F = this->F();
    at::parallel_for(0, blocks(), 1, [&](int64_t begin, int64_t end) {
      V rows[2][8];
      T ab[2][8][kE];
      V gO[8];
      for (int64_t q = begin; q < end; ++q)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t base = n * 8 * F + q * L;
          gather_values(a + base, F, rows[0], ab[0]);
          gather_values(b + base, F, rows[1], ab[1]);
          const T* g_out = grad + n * 8 * F + shifted(q) * kE;
          for (int m = 0; m < 8; ++m) gO[m] = load(g_out + m * F);
          atom_backward(q, rows, ab, gO, nullptr, gw + weight_index(q, 0, 0, 0));
        }
    });
  }

  // the first derivatives; gw (where defined) [1, G, 4 * 8^3] in the weights' own layout,
  // summed first in scratch (G * 4 * 8^3 zeros, 64-byte aligned) in the bwd_x order
  void backward(const T* a, const T* b, const T* grad, T* ga, T* gb, T* gw, T* scratch) const {
    if (ga != nullptr || gb != nullptr) backward_inputs(a, b, grad, ga, gb);
    if (gw == nullptr) return;
    V* gx = reinterpret_cast<V*>(scratch);  // [q][p][y][z] over (h, x)
    backward_weights(a, b, grad, gx);
    for_each_weight(G, [&](int64_t index, int64_t g, int p, int x, int y, int z) {
      gw[index] = gx[weight_index(g / P, p, y, z)][(g % P) * kE + x];
    });
  }
};

void check(const at::Tensor& a, const at::Tensor& b, const at::Tensor& arranged,
           int64_t groups) {
  TORCH_CHECK(a.dim() == 3 && a.size(1) == 8 && a.sizes() == b.sizes(),
              "group_cg: a and b must be [N, 8, F]");
  TORCH_CHECK(groups > 0 && a.size(2) == groups * kE,
              "group_cg: the kernel takes 8 abstract edges per group (F = 8 G)");
  TORCH_CHECK(arranged.is_contiguous() && arranged.numel() == arranged_size(groups),
              "group_cg: the weights as group_cg_weights arranges them");
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && a.scalar_type() == arranged.scalar_type(),
              "group_cg: a, b and the weights must have one dtype");
}

}  // namespace

at::Tensor group_cg_weights(at::Tensor w, std::vector<at::Tensor> cg, int64_t groups) {
  TORCH_CHECK(w.numel() == groups * kWeights, "group_cg: weights [G, 4 E^3]");
  TORCH_CHECK(cg.size() == kPaths, "group_cg: expected 4 coupling tensors");
  w = w.contiguous();
  auto out = at::zeros({arranged_size(groups)}, w.options());  // unused places defined
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "group_cg_weights", [&] {
    const int P = groups_per_vector<scalar_t>(groups);
    arrange(w.data_ptr<scalar_t>(), groups, P, cg, out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor group_cg_forward(at::Tensor a, at::Tensor b, at::Tensor arranged, int64_t groups,
                            int64_t shift) {
  check(a, b, arranged, groups);
  a = a.contiguous(), b = b.contiguous();
  auto out = at::empty_like(a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "group_cg_forward", [&] {
    using T = scalar_t;
    const T *w = arranged.data_ptr<T>(), *pa = a.data_ptr<T>(), *pb = b.data_ptr<T>();
    if (groups_per_vector<T>(groups) == 2)
      Kernel<T, 2>(a.size(0), groups, shift, w).forward(pa, pb, out.data_ptr<T>());
    else
      Kernel<T, 1>(a.size(0), groups, shift, w).forward(pa, pb, out.data_ptr<T>());
  });
  return out;
}

std::vector<at::Tensor> group_cg_backward(at::Tensor a, at::Tensor b, at::Tensor arranged,
                                          int64_t groups, int64_t shift, at::Tensor grad,
                                          bool need_a, bool need_b, bool need_w) {
  check(a, b, arranged, groups);
  a = a.contiguous(), b = b.contiguous(), grad = grad.contiguous();
  at::Tensor ga = need_a ? at::empty_like(a) : at::Tensor();
  at::Tensor gb = need_b ? at::empty_like(b) : at::Tensor();
  at::Tensor gw = need_w ? at::empty({1, groups, kWeights}, a.options()) : at::Tensor();
  at::Tensor scratch = need_w ? at::zeros({groups * kWeights}, a.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "group_cg_backward", [&] {
    using T = scalar_t;  // one group per vector (see the head of this file)
    const Kernel<T, 1> kernel(a.size(0), groups, shift, arranged.data_ptr<T>());
    kernel.backward(a.data_ptr<T>(), b.data_ptr<T>(), grad.data_ptr<T>(),
                    need_a ? ga.data_ptr<T>() : nullptr, need_b ? gb.data_ptr<T>() : nullptr,
                    need_w ? gw.data_ptr<T>() : nullptr,
                    need_w ? scratch.data_ptr<T>() : nullptr);
  });
  return {ga, gb, gw};
}
