// FreeCG's group CG transform (tensorpot.nn.visnet.GroupCG) and its first derivatives, for
// E = 8 abstract edges per group (the released models; other E run the PyTorch operations).
//
// Per atom n and group g, with a, b, out [N, 8, G, 8] (components 0-2 degree 1, 3-7 degree 2)
// and weights W [G, 4, 8, 8, 8] (path p, u, v, w):
//   out[n, k, g, w] = sum_p sum_{(i, j, k) in C_p} C_p[i, j, k] sum_{u, v} a[n, i, g, u]
//                     b[n, j, g, v] W[g, p, u, v, w].
// Each path contracts one operand with the weights first, the one with fewer components
// (call it B, its channel y; the other A, channel x): Bw[j, x, z] = sum_y B[j, y] W[x, y, z],
// then R[i, j, z] = sum_x A[i, x] Bw[j, x, z] for the (i, j) with a coupling, and
// out[k, z] += C[i, j, k] R[i, j, z]: about 14 x 64 + 64 x 8 vector products of 8 lanes per
// atom and group, against 64 x 16 x 8 for the products of all pairs (u, v) first. The first
// derivatives run the same steps backwards. Every vector has the 8 lanes of one channel index
// (x, y or z), and the weights are rearranged once per call so that each product reads one
// contiguous vector of them: no horizontal sums.
//
// The loops run over (group, atom), the group outermost, so that one group's weights (3 x 8 KB
// in float32) stay in the L1 cache while the atoms pass.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <array>
#include <vector>

#include "cpu_kernel.h"

namespace {

constexpr int kE = 8;  // abstract edges per group
constexpr int kPaths = 4;
constexpr std::array<std::array<int, 3>, kPaths> kDegrees = {
    {{1, 1, 2}, {1, 2, 1}, {2, 1, 1}, {2, 2, 2}}};

constexpr int offset(int degree) { return degree == 1 ? 0 : 3; }
constexpr int size(int degree) { return 2 * degree + 1; }

template <typename T>
struct Lanes {
  typedef T V __attribute__((vector_size(kE * sizeof(T))));
};

// One path as the loops see it: whether A is the second operand b (then B is a), the
// component offsets of A, B and the output, and the coupling tensor in A, B order, dense
// [na][nb][nc] (the loops index it with constants, so that their sums stay in registers).
struct Path {
  bool swap;
  int na, nb, nc, a_off, b_off, c_off;
  std::vector<double> coupling;
};

std::vector<Path> paths_of(const std::vector<at::Tensor>& cg) {
  TORCH_CHECK(cg.size() == kPaths, "group_cg: expected 4 coupling tensors");
  std::vector<Path> paths;
  for (int p = 0; p < kPaths; ++p) {
    const auto [l1, l2, l3] = kDegrees[p];
    auto c = cg[p].to(at::kDouble).contiguous();
    TORCH_CHECK(c.numel() == size(l1) * size(l2) * size(l3), "group_cg: coupling tensor size");
    const double* data = c.data_ptr<double>();
    Path path;
    path.swap = size(l2) > size(l1);  // contract the smaller operand with the weights
    const int la = path.swap ? l2 : l1, lb = path.swap ? l1 : l2;
    path.na = size(la), path.nb = size(lb), path.nc = size(l3);
    path.a_off = offset(la), path.b_off = offset(lb), path.c_off = offset(l3);
    path.coupling.assign(path.na * path.nb * path.nc, 0.0);
    for (int m1 = 0; m1 < size(l1); ++m1)
      for (int m2 = 0; m2 < size(l2); ++m2)
        for (int k = 0; k < size(l3); ++k) {
          const int i = path.swap ? m2 : m1, j = path.swap ? m1 : m2;
          path.coupling[(i * path.nb + j) * path.nc + k] =
              data[(m1 * size(l2) + m2) * size(l3) + k];
        }
    paths.push_back(std::move(path));
  }
  return paths;
}

// The weights of every group and path in the three orders the loops read, as vectors:
//   forward [g][p][y][x] over z, bwd_x [g][p][y][z] over x, bwd_y [g][p][z][x] over y,
// where x, y are the channels of A and B (u, v, or v, u where the path swaps them). Made once
// for a set of weights by group_cg_weights (a [3, G, 4, 8, 8, 8] tensor) and read from it.
int64_t weight_index(int64_t g, int p, int r, int s) { return ((g * kPaths + p) * kE + r) * kE + s; }

template <typename T>
void arrange(const T* w, int64_t G, const std::vector<Path>& paths, T* out) {
  const int64_t part = G * kPaths * kE * kE * kE;
  T* forward = out;
  T* bwd_x = out + part;
  T* bwd_y = out + 2 * part;
  for (int64_t g = 0; g < G; ++g)
    for (int p = 0; p < kPaths; ++p)
      for (int u = 0; u < kE; ++u)
        for (int v = 0; v < kE; ++v)
          for (int z = 0; z < kE; ++z) {
            const T value = w[(((g * kPaths + p) * kE + u) * kE + v) * kE + z];
            const int x = paths[p].swap ? v : u, y = paths[p].swap ? u : v;
            forward[weight_index(g, p, y, x) * kE + z] = value;
            bwd_x[weight_index(g, p, y, z) * kE + x] = value;
            bwd_y[weight_index(g, p, z, x) * kE + y] = value;
          }
}

template <typename T>
struct Weights {
  using V = typename Lanes<T>::V;
  const V *forward, *bwd_x, *bwd_y;

  static int64_t at(int64_t g, int p, int r, int s) { return weight_index(g, p, r, s); }

  Weights(const at::Tensor& arranged) {
    // PyTorch's CPU allocations are 64-byte aligned and every vector starts at a multiple of
    // 8 values, so the vectors are aligned
    const V* data = reinterpret_cast<const V*>(arranged.data_ptr<T>());
    const int64_t part = arranged.numel() / 3 / kE;
    forward = data, bwd_x = data + part, bwd_y = data + 2 * part;
  }
};

template <typename T>
typename Lanes<T>::V load(const T* p) {
  typename Lanes<T>::V v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
void store(T* p, const typename Lanes<T>::V& v) {
  __builtin_memcpy(p, &v, sizeof(v));
}

template <typename T>
struct Kernel {
  using V = typename Lanes<T>::V;
  int64_t N, G;
  const std::vector<Path>& paths;
  const Weights<T>& W;
  std::array<std::vector<T>, kPaths> coupling;  // the paths' coupling tensors in T

  Kernel(int64_t N, int64_t G, const std::vector<Path>& paths, const Weights<T>& W)
      : N(N), G(G), paths(paths), W(W) {
    for (int p = 0; p < kPaths; ++p)
      coupling[p].assign(paths[p].coupling.begin(), paths[p].coupling.end());
  }

  int64_t F() const { return G * kE; }

  // the atom's operands as 8 x 8 values (component, channel): a row of [N, 8, F]
  static void gather(const T* src, int64_t F, T (*dst)[kE]) {
    for (int m = 0; m < 8; ++m) __builtin_memcpy(dst[m], src + m * F, kE * sizeof(T));
  }

  // Bw[j][x] (over z) = sum_y B[j][y] Wf[y][x]: eight independent sums per j
  template <int NB>
  static void contract_b(const T (*B)[kE], const V* Wf, V (*Bw)[kE]) {
    for (int j = 0; j < NB; ++j) {
      V acc[kE] = {};
      for (int y = 0; y < kE; ++y) {
        const T s = B[j][y];
        for (int x = 0; x < kE; ++x) acc[x] += s * Wf[y * kE + x];
      }
      for (int x = 0; x < kE; ++x) Bw[j][x] = acc[x];
    }
  }

  // the (NA, NB, NC) of a path as one number, for the switches that call the loops below with
  // them as constants (fixed bounds and indices: the sums stay in registers)
  static int sizes(const Path& P) { return 100 * P.na + 10 * P.nb + P.nc; }

  // one path's contribution to the outputs acc [8] (over z) of one atom and group, with its
  // dense coupling tensor C [NA][NB][NC] (the output's components start at 0 for degree 1,
  // 3 for degree 2)
  template <int NA, int NB, int NC>
  static void path_forward(const T* C, const T (*A)[kE], const T (*B)[kE], const V* Wf, V* acc) {
    constexpr int c_off = NC == 3 ? 0 : 3;
    V Bw[NB][kE];
    contract_b<NB>(B, Wf, Bw);
    V R[NA][NB] = {};  // R[i][j] = sum_x A[i][x] Bw[j][x]: NA x NB independent sums
    for (int x = 0; x < kE; ++x)
      for (int i = 0; i < NA; ++i) {
        const T s = A[i][x];
        for (int j = 0; j < NB; ++j) R[i][j] += s * Bw[j][x];
      }
    for (int i = 0; i < NA; ++i)
      for (int j = 0; j < NB; ++j)
        for (int k = 0; k < NC; ++k) {
          const T c = C[(i * NB + j) * NC + k];
          if (c != T(0)) acc[c_off + k] += c * R[i][j];
        }
  }

  void forward(const T* a, const T* b, T* out) const {
    const int64_t F = this->F();
    at::parallel_for(0, G * N, 64, [&](int64_t begin, int64_t end) {
      T ab[2][8][kE];
      for (int64_t index = begin; index < end; ++index) {
        const int64_t g = index / N, n = index % N;
        const int64_t base = n * 8 * F + g * kE;
        gather(a + base, F, ab[0]);
        gather(b + base, F, ab[1]);
        V acc[8] = {};
        for (int p = 0; p < kPaths; ++p) {
          const Path& P = paths[p];
          const T(*A)[kE] = ab[P.swap ? 1 : 0] + P.a_off;
          const T(*B)[kE] = ab[P.swap ? 0 : 1] + P.b_off;
          const V* Wf = &W.forward[Weights<T>::at(g, p, 0, 0)];
          const T* C = coupling[p].data();
          switch (sizes(P)) {
            case 335: path_forward<3, 3, 5>(C, A, B, Wf, acc); break;
            case 533: path_forward<5, 3, 3>(C, A, B, Wf, acc); break;
            case 555: path_forward<5, 5, 5>(C, A, B, Wf, acc); break;
            default: TORCH_CHECK(false, "group_cg: unexpected path sizes");
          }
        }
        for (int m = 0; m < 8; ++m) store(out + base + m * F, acc[m]);
      }
    });
  }

  // One path's derivatives for one atom and group, from the output's gradient gO [8]: added
  // to gA [NA] and gB [NB] (over x and y) where given, and to the weights' gw (the bwd_x
  // order of this group and path) where given.
  template <int NA, int NB, int NC>
  static void path_backward(const T* C, const T (*A)[kE], const T (*B)[kE], const V* Wx,
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
    for (int i = 0; i < NA; ++i) {
      const V Ai = load(A[i]);
      for (int j = 0; j < NB; ++j)
        for (int z = 0; z < kE; ++z) gBw[j][z] += gR[i][j][z] * Ai;
    }
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

  // The derivatives for one atom and group: grad_ab[0], grad_ab[1] of a and b (accumulated),
  // or, where gw is given, the weights' (accumulated into this group's bwd_x order).
  void atom_backward(int64_t g, const T (*ab)[8][kE], const V* grad, V (*grad_ab)[8],
                     V* gw) const {
    for (int p = 0; p < kPaths; ++p) {
      const Path& P = paths[p];
      const T(*A)[kE] = ab[P.swap ? 1 : 0] + P.a_off;
      const T(*B)[kE] = ab[P.swap ? 0 : 1] + P.b_off;
      V* gA = grad_ab == nullptr ? nullptr : grad_ab[P.swap ? 1 : 0] + P.a_off;
      V* gB = grad_ab == nullptr ? nullptr : grad_ab[P.swap ? 0 : 1] + P.b_off;
      const V* Wx = &W.bwd_x[Weights<T>::at(g, p, 0, 0)];
      const V* Wy = &W.bwd_y[Weights<T>::at(g, p, 0, 0)];
      V* gwp = gw == nullptr ? nullptr : gw + Weights<T>::at(0, p, 0, 0);
      const T* C = coupling[p].data();
      switch (sizes(P)) {
        case 335: path_backward<3, 3, 5>(C, A, B, Wx, Wy, grad, gA, gB, gwp); break;
        case 533: path_backward<5, 3, 3>(C, A, B, Wx, Wy, grad, gA, gB, gwp); break;
        case 555: path_backward<5, 5, 5>(C, A, B, Wx, Wy, grad, gA, gB, gwp); break;
        default: TORCH_CHECK(false, "group_cg: unexpected path sizes");
      }
    }
  }

  void backward_inputs(const T* a, const T* b, const T* grad, T* ga, T* gb) const {
    const int64_t F = this->F();
    at::parallel_for(0, G * N, 64, [&](int64_t begin, int64_t end) {
      T ab[2][8][kE];
      V gO[8];
      for (int64_t index = begin; index < end; ++index) {
        const int64_t g = index / N, n = index % N;
        const int64_t base = n * 8 * F + g * kE;
        gather(a + base, F, ab[0]);
        gather(b + base, F, ab[1]);
        for (int m = 0; m < 8; ++m) gO[m] = load(grad + base + m * F);
        V grads[2][8] = {};
        atom_backward(g, ab, gO, grads, nullptr);
        for (int m = 0; m < 8; ++m) {
          if (ga != nullptr) store(ga + base + m * F, grads[0][m]);
          if (gb != nullptr) store(gb + base + m * F, grads[1][m]);
        }
      }
    });
  }

  // dL/dW in the bwd_x order [G][p][y][z] over x, one group per task
  void backward_weights(const T* a, const T* b, const T* grad, V* gw) const {
    const int64_t F = this->F();
    at::parallel_for(0, G, 1, [&](int64_t begin, int64_t end) {
      T ab[2][8][kE];
      V gO[8];
      for (int64_t g = begin; g < end; ++g)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t base = n * 8 * F + g * kE;
          gather(a + base, F, ab[0]);
          gather(b + base, F, ab[1]);
          for (int m = 0; m < 8; ++m) gO[m] = load(grad + base + m * F);
          atom_backward(g, ab, gO, nullptr, gw + Weights<T>::at(g, 0, 0, 0));
        }
    });
  }
};

void check(const at::Tensor& a, const at::Tensor& b, const at::Tensor& arranged,
           int64_t groups) {
  TORCH_CHECK(a.dim() == 3 && a.size(1) == 8 && a.sizes() == b.sizes(),
              "group_cg: a and b must be [N, 8, F]");
  TORCH_CHECK(groups > 0 && a.size(2) == groups * kE,
              "group_cg: the kernel takes 8 abstract edges per group (F = 8 G)");
  TORCH_CHECK(arranged.is_contiguous() && arranged.numel() == 3 * groups * kPaths * kE * kE * kE,
              "group_cg: the weights as group_cg_weights arranges them");
  TORCH_CHECK(a.scalar_type() == b.scalar_type() && a.scalar_type() == arranged.scalar_type(),
              "group_cg: a, b and the weights must have one dtype");
}

}  // namespace

at::Tensor group_cg_weights(at::Tensor w, std::vector<at::Tensor> cg, int64_t groups) {
  TORCH_CHECK(w.numel() == groups * kPaths * kE * kE * kE, "group_cg: weights [G, 4 E^3]");
  w = w.contiguous();
  const std::vector<Path> paths = paths_of(cg);
  auto out = at::empty({3, groups, kPaths, kE, kE, kE}, w.options());
  AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "group_cg_weights", [&] {
    arrange(w.data_ptr<scalar_t>(), groups, paths, out.data_ptr<scalar_t>());
  });
  return out;
}

at::Tensor group_cg_forward(at::Tensor a, at::Tensor b, at::Tensor arranged,
                            std::vector<at::Tensor> cg, int64_t groups) {
  check(a, b, arranged, groups);
  a = a.contiguous(), b = b.contiguous();
  const std::vector<Path> paths = paths_of(cg);
  auto out = at::empty_like(a);
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "group_cg_forward", [&] {
    const Weights<scalar_t> weights(arranged);
    const Kernel<scalar_t> kernel{a.size(0), groups, paths, weights};
    kernel.forward(a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return out;
}

std::vector<at::Tensor> group_cg_backward(at::Tensor a, at::Tensor b, at::Tensor arranged,
                                          std::vector<at::Tensor> cg, int64_t groups,
                                          at::Tensor grad, bool need_a, bool need_b,
                                          bool need_w) {
  check(a, b, arranged, groups);
  a = a.contiguous(), b = b.contiguous(), grad = grad.contiguous();
  const std::vector<Path> paths = paths_of(cg);
  at::Tensor ga = need_a ? at::empty_like(a) : at::Tensor();
  at::Tensor gb = need_b ? at::empty_like(b) : at::Tensor();
  at::Tensor gw = need_w ? at::empty({1, groups, kPaths * kE * kE * kE}, a.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "group_cg_backward", [&] {
    using T = scalar_t;
    using V = typename Lanes<T>::V;
    const Weights<T> weights(arranged);
    const Kernel<T> kernel{a.size(0), groups, paths, weights};
    if (need_a || need_b)
      kernel.backward_inputs(a.data_ptr<T>(), b.data_ptr<T>(), grad.data_ptr<T>(),
                             need_a ? ga.data_ptr<T>() : nullptr,
                             need_b ? gb.data_ptr<T>() : nullptr);
    if (need_w) {
      std::vector<V> gx(groups * kPaths * kE * kE, V{});  // [g][p][y][z] over x
      kernel.backward_weights(a.data_ptr<T>(), b.data_ptr<T>(), grad.data_ptr<T>(), gx.data());
      T* out = gw.data_ptr<T>();
      for (int64_t g = 0; g < groups; ++g)
        for (int p = 0; p < kPaths; ++p)
          for (int u = 0; u < kE; ++u)
            for (int v = 0; v < kE; ++v)
              for (int z = 0; z < kE; ++z) {
                const int x = paths[p].swap ? v : u, y = paths[p].swap ? u : v;
                out[(((g * kPaths + p) * kE + u) * kE + v) * kE + z] =
                    gx[weight_index(g, p, y, z)][x];
              }
    }
  });
  return {ga, gb, gw};
}
