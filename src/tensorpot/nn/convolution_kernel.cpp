// The convolution of tensorpot.nn.convolution as one loop over edges (CPU), first derivatives.
//
// Row r = 2g + d is direction d of edge pair g: receiver nodes[r], source sources[r]; the
// factor of column q is 1 for d = 0 and reverse[g] * sign[q] for d = 1 (see convolution.py).
// Per group n (node rank l1; Q columns, I = 2 l1 + 1 components, C channels):
//
//   m[r, q, c]   = sum_i yk[g, q, i] hT[source, i, c]
//   agg[u, q, c] += f(r, q) radial[g, cols[q], c] m[r, q, c]      over rows r with receiver u
//
// The messages m are formed row by row in a buffer of C values and never stored. The forward
// pass runs in parallel over receivers, the backward pass over sources (rows sorted by each,
// `order` and `offsets` in CSR form) once per direction, so that every thread writes only its
// own nodes, and a pair's gradients are written by one row at a time. Nodes are handed to the
// threads in small chunks as they come free, since their work differs: degrees differ, and a
// backward pass holds the rows of one direction, which in a small periodic cell fall unevenly
// on the nodes.

#include "cpu_kernel.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#define SIMD _Pragma("omp simd")

namespace {

// body(begin, end) over [0, n) in chunks of `chunk`, on PyTorch's intra-op threads, each chunk
// taken by the next free thread (serially inside a parallel region, or without OpenMP)
template <typename F>
void parallel_chunks(int64_t n, int64_t chunk, const F& body) {
  const int threads = at::in_parallel_region() ? 1 : at::get_num_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t begin = 0; begin < n; begin += chunk) body(begin, std::min(n, begin + chunk));
}

struct Group {
  const void* hT;       // [N, I, C]
  const void* yk;       // [G, Q, I]
  const int64_t* cols;  // [Q]
  const void* sign;     // [Q]
  int64_t Q, I;

  // YK of pair g [Q, I], features of node v [I, C], and the signs [Q]
  template <typename T>
  const T* yk_of(int64_t g) const { return static_cast<const T*>(yk) + g * Q * I; }
  template <typename T>
  const T* h_of(int64_t v, int64_t C) const { return static_cast<const T*>(hT) + v * I * C; }
  template <typename T>
  const T* signs() const { return static_cast<const T*>(sign); }
};

std::vector<Group> groups_of(const std::vector<at::Tensor>& hT, const std::vector<at::Tensor>& yk,
                             const std::vector<at::Tensor>& cols,
                             const std::vector<at::Tensor>& sign) {
  std::vector<Group> out;
  for (size_t n = 0; n < hT.size(); ++n) {
    out.push_back({hT[n].data_ptr(), yk[n].data_ptr(), cols[n].data_ptr<int64_t>(),
                   sign[n].data_ptr(), yk[n].size(1), yk[n].size(2)});
  }
  return out;
}

template <typename T, int CC>
void forward_impl(const int64_t* sources, const T* reverse, const T* radial, const int64_t* order,
                  const int64_t* offsets, const std::vector<Group>& groups,
                  const std::vector<T*>& aggs, int64_t num_nodes, int64_t P, int64_t C_) {
  const int64_t C = CC ? CC : C_;
  parallel_chunks(num_nodes, 4, [&](int64_t begin, int64_t end) {
    std::vector<T> m(C);
    for (int64_t u = begin; u < end; ++u) {
      for (int64_t k = offsets[u]; k < offsets[u + 1]; ++k) {
        const int64_t r = order[k], g = r >> 1, d = r & 1;
        const T rho = d ? reverse[g] : T(1);
        if (rho == T(0)) continue;
        const int64_t v = sources[r];
        const T* w = radial + g * P * C;
        for (size_t n = 0; n < groups.size(); ++n) {
          const Group& gr = groups[n];
          const int64_t Q = gr.Q, I = gr.I;
          const T *y = gr.yk_of<T>(g), *h = gr.h_of<T>(v, C), *sign = gr.signs<T>();
          T* a = aggs[n] + u * Q * C;
          for (int64_t q = 0; q < Q; ++q) {
            SIMD for (int64_t c = 0; c < C; ++c) m[c] = T(0);
            for (int64_t i = 0; i < I; ++i) {
              const T yi = y[q * I + i];
              const T* hi = h + i * C;
              SIMD for (int64_t c = 0; c < C; ++c) m[c] += yi * hi[c];
            }
            const T f = d ? rho * sign[q] : T(1);
            const T* wp = w + gr.cols[q] * C;
            T* aq = a + q * C;
            SIMD for (int64_t c = 0; c < C; ++c) aq[c] += f * wp[c] * m[c];
          }
        }
      }
    }
  });
}

template <typename T, int CC>
void backward_impl(const int64_t* nodes, const T* reverse, const T* radial, const int64_t* order,
                   const int64_t* offsets, const std::vector<Group>& groups,
                   const std::vector<const T*>& grads, const std::vector<T*>& grad_hT,
                   const std::vector<T*>& grad_yk, T* grad_radial, int64_t num_nodes,
                   int64_t P, int64_t C_) {
  const int64_t C = CC ? CC : C_;
  // one pass per direction: in a pass every pair has one row, so the gradients of a pair are
  // written by one thread; those of a source node by the thread that owns the node
  for (int64_t pass = 0; pass < 2; ++pass) {
    parallel_chunks(num_nodes, 4, [&](int64_t begin, int64_t end) {
      std::vector<T> m(C), gm(C);
      for (int64_t v = begin; v < end; ++v) {
        for (int64_t k = offsets[v]; k < offsets[v + 1]; ++k) {
          const int64_t r = order[k], g = r >> 1, d = r & 1;
          if (d != pass) continue;
          const T rho = d ? reverse[g] : T(1);
          if (rho == T(0)) continue;
          const int64_t u = nodes[r];
          const T* w = radial + g * P * C;
          T* gw_row = grad_radial ? grad_radial + g * P * C : nullptr;
          for (size_t n = 0; n < groups.size(); ++n) {
            const Group& gr = groups[n];
            const int64_t Q = gr.Q, I = gr.I;
            const T *y = gr.yk_of<T>(g), *h = gr.h_of<T>(v, C), *sign = gr.signs<T>();
            const T* go = grads[n] + u * Q * C;
            T* gh = grad_hT[n] ? grad_hT[n] + v * I * C : nullptr;
            T* gy = grad_yk[n] ? grad_yk[n] + g * Q * I : nullptr;
            for (int64_t q = 0; q < Q; ++q) {
              const T f = d ? rho * sign[q] : T(1);
              const T* wp = w + gr.cols[q] * C;
              const T* gq = go + q * C;
              SIMD for (int64_t c = 0; c < C; ++c) gm[c] = f * gq[c] * wp[c];
              if (gw_row) {
                SIMD for (int64_t c = 0; c < C; ++c) m[c] = T(0);
                for (int64_t i = 0; i < I; ++i) {
                  const T yi = y[q * I + i];
                  const T* hi = h + i * C;
                  SIMD for (int64_t c = 0; c < C; ++c) m[c] += yi * hi[c];
                }
                T* gwp = gw_row + gr.cols[q] * C;
                SIMD for (int64_t c = 0; c < C; ++c) gwp[c] += f * gq[c] * m[c];
              }
              for (int64_t i = 0; i < I; ++i) {
                const T* hi = h + i * C;
                if (gy) {
                  T s = T(0);
#pragma omp simd reduction(+ : s)
                  for (int64_t c = 0; c < C; ++c) s += gm[c] * hi[c];
                  gy[q * I + i] += s;
                }
                if (gh) {
                  const T yi = y[q * I + i];
                  T* ghi = gh + i * C;
                  SIMD for (int64_t c = 0; c < C; ++c) ghi[c] += gm[c] * yi;
                }
              }
            }
          }
        }
      }
    });
  }
}

}  // namespace

std::vector<at::Tensor> convolution_forward(at::Tensor sources, at::Tensor reverse,
                                            at::Tensor radial, at::Tensor order,
                                            at::Tensor offsets, std::vector<at::Tensor> hT,
                                            std::vector<at::Tensor> yk,
                                            std::vector<at::Tensor> cols,
                                            std::vector<at::Tensor> sign, int64_t num_nodes) {
  const int64_t P = radial.size(1), C = radial.size(2);
  std::vector<at::Tensor> aggs;
  for (size_t n = 0; n < yk.size(); ++n) {
    aggs.push_back(at::zeros({num_nodes, yk[n].size(1), C}, radial.options()));
  }
  const auto groups = groups_of(hT, yk, cols, sign);
  AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "convolution_forward", [&] {
    std::vector<scalar_t*> out;
    for (auto& a : aggs) out.push_back(a.data_ptr<scalar_t>());
    auto run = [&](auto impl) {
      impl(sources.data_ptr<int64_t>(), reverse.data_ptr<scalar_t>(), radial.data_ptr<scalar_t>(),
           order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), groups, out, num_nodes, P, C);
    };
    if (C == 8) run(forward_impl<scalar_t, 8>);
    else if (C == 16) run(forward_impl<scalar_t, 16>);
    else if (C == 32) run(forward_impl<scalar_t, 32>);
    else run(forward_impl<scalar_t, 0>);
  });
  return aggs;
}

// Returns grad_hT [N, I, C] per group, grad_yk [G, Q, I] per group and grad_radial [G, P, C],
// each undefined where not needed, in that order.
std::vector<at::Tensor> convolution_backward(at::Tensor nodes, at::Tensor reverse,
                                             at::Tensor radial, at::Tensor order,
                                             at::Tensor offsets, std::vector<at::Tensor> hT,
                                             std::vector<at::Tensor> yk,
                                             std::vector<at::Tensor> cols,
                                             std::vector<at::Tensor> sign,
                                             std::vector<at::Tensor> grads,
                                             std::vector<bool> need_h, std::vector<bool> need_yk,
                                             bool need_radial) {
  const int64_t P = radial.size(1), C = radial.size(2);
  const int64_t num_nodes = hT[0].size(0);
  std::vector<at::Tensor> grad_hT, grad_yk;
  for (size_t n = 0; n < yk.size(); ++n) {
    grad_hT.push_back(need_h[n] ? at::zeros_like(hT[n]) : at::Tensor());
    grad_yk.push_back(need_yk[n] ? at::zeros_like(yk[n]) : at::Tensor());
  }
  at::Tensor grad_radial = need_radial ? at::zeros_like(radial) : at::Tensor();
  const auto groups = groups_of(hT, yk, cols, sign);
  AT_DISPATCH_FLOATING_TYPES(radial.scalar_type(), "convolution_backward", [&] {
    std::vector<const scalar_t*> g;
    std::vector<scalar_t*> gh, gy;
    for (size_t n = 0; n < yk.size(); ++n) {
      g.push_back(grads[n].data_ptr<scalar_t>());
      gh.push_back(need_h[n] ? grad_hT[n].data_ptr<scalar_t>() : nullptr);
      gy.push_back(need_yk[n] ? grad_yk[n].data_ptr<scalar_t>() : nullptr);
    }
    auto run = [&](auto impl) {
      impl(nodes.data_ptr<int64_t>(), reverse.data_ptr<scalar_t>(), radial.data_ptr<scalar_t>(),
           order.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(), groups, g, gh, gy,
           need_radial ? grad_radial.data_ptr<scalar_t>() : nullptr, num_nodes, P, C);
    };
    if (C == 8) run(backward_impl<scalar_t, 8>);
    else if (C == 16) run(backward_impl<scalar_t, 16>);
    else if (C == 32) run(backward_impl<scalar_t, 32>);
    else run(backward_impl<scalar_t, 0>);
  });
  std::vector<at::Tensor> out = grad_hT;
  out.insert(out.end(), grad_yk.begin(), grad_yk.end());
  out.push_back(grad_radial);
  return out;
}
