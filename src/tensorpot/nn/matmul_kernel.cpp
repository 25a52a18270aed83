// out = x @ w for a tall x [M, K] and a small w [K, N], both contiguous (the radial MLP).
//
// Six rows of out at a time, two vectors of columns per block, the accumulators in registers:
// the products that the MLP's narrow layers (K, N <= 64, M in the thousands) make, which run
// below a general BLAS's speed on such shapes.

#include "cpu_kernel.h"

#include <ATen/Parallel.h>

namespace {

constexpr int kRows = 6;

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int lanes = 32 / sizeof(T);
};

// rows [i0, i0 + R) and columns [j, j + 2 lanes) of out
template <typename T, int R>
inline void block(const T* x, const T* w, T* out, int64_t i0, int64_t j, int64_t K, int64_t N) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  V acc[R][2];
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V w0, w1;
    __builtin_memcpy(&w0, w + k * N + j, sizeof(V));
    __builtin_memcpy(&w1, w + k * N + j + L, sizeof(V));
    for (int r = 0; r < R; ++r) {
      const T xv = x[(i0 + r) * K + k];
      acc[r][0] += xv * w0;
      acc[r][1] += xv * w1;
    }
  }
  for (int r = 0; r < R; ++r) {
    __builtin_memcpy(out + (i0 + r) * N + j, &acc[r][0], sizeof(V));
    __builtin_memcpy(out + (i0 + r) * N + j + L, &acc[r][1], sizeof(V));
  }
}

// rows [i0, i0 + R) and columns [j, j + lanes) of out
template <typename T, int R>
inline void half_block(const T* x, const T* w, T* out, int64_t i0, int64_t j, int64_t K,
                       int64_t N) {
  using V = typename Vec<T>::type;
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = V{};
  for (int64_t k = 0; k < K; ++k) {
    V w0;
    __builtin_memcpy(&w0, w + k * N + j, sizeof(V));
    for (int r = 0; r < R; ++r) acc[r] += x[(i0 + r) * K + k] * w0;
  }
  for (int r = 0; r < R; ++r) __builtin_memcpy(out + (i0 + r) * N + j, &acc[r], sizeof(V));
}

// rows [i0, i0 + R), all columns
template <typename T, int R>
inline void rows(const T* x, const T* w, T* out, int64_t i0, int64_t K, int64_t N) {
  constexpr int L = Vec<T>::lanes;
  int64_t j = 0;
  for (; j + 2 * L <= N; j += 2 * L) block<T, R>(x, w, out, i0, j, K, N);
  for (; j + L <= N; j += L) half_block<T, R>(x, w, out, i0, j, K, N);
  for (; j < N; ++j) {  // the columns that do not fill a vector
    for (int r = 0; r < R; ++r) {
      T s = T(0);
      for (int64_t k = 0; k < K; ++k) s += x[(i0 + r) * K + k] * w[k * N + j];
      out[(i0 + r) * N + j] = s;
    }
  }
}

}  // namespace

at::Tensor tall_matmul(at::Tensor x, at::Tensor w) {  // [M, K] @ [K, N] -> [M, N]
  TORCH_CHECK(x.dim() == 2 && w.dim() == 2 && x.size(1) == w.size(0), "matmul: shapes");
  x = x.contiguous();
  w = w.contiguous();
  const int64_t M = x.size(0), K = x.size(1), N = w.size(1);
  auto out = at::empty({M, N}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "matmul", [&] {
    const scalar_t *xp = x.data_ptr<scalar_t>(), *wp = w.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t blocks = M / kRows;
    at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) rows<scalar_t, kRows>(xp, wp, op, b * kRows, K, N);
    });
    for (int64_t i = blocks * kRows; i < M; ++i) rows<scalar_t, 1>(xp, wp, op, i, K, N);
  });
  return out;
}
