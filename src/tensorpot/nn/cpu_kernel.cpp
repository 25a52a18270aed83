// tensorpot's CPU kernel as PyTorch operators, torch.ops.tensorpot.*: the schemas and their CPU
// implementations, from the sources beside this file. The library registers them when it is
// loaded (torch.ops.load_library), in any process; tensorpot adds their fake implementations
// (shapes for tracing) and autograd formulas in Python (tensorpot/nn/operators.py).
//
// Each operator checks its inputs (CPU, one floating dtype) and makes them contiguous. An
// output a caller did not ask for (the need_* flags of a backward) is an empty tensor.

#include <torch/library.h>

#include "cpu_kernel.h"

namespace {

at::Tensor contiguous(const at::Tensor& t) { return t.contiguous(); }

std::vector<at::Tensor> contiguous(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> out;
  out.reserve(ts.size());
  for (const auto& t : ts) out.push_back(t.contiguous());
  return out;
}

// every tensor on the CPU and of `like`'s floating dtype (float32 or float64)
void check_floats(const char* op, const at::Tensor& like, const std::vector<at::Tensor>& ts) {
  TORCH_CHECK(like.device().is_cpu(), "tensorpot::", op, ": tensors must be on the CPU");
  TORCH_CHECK(like.scalar_type() == at::kFloat || like.scalar_type() == at::kDouble,
              "tensorpot::", op, ": float32 or float64 only, got ", like.scalar_type());
  for (const auto& t : ts) {
    TORCH_CHECK(t.device().is_cpu(), "tensorpot::", op, ": tensors must be on the CPU");
    TORCH_CHECK(t.scalar_type() == like.scalar_type(), "tensorpot::", op,
                ": all floating tensors must have one dtype, got ", t.scalar_type(), " and ",
                like.scalar_type());
  }
}

void check_index(const char* op, const std::vector<at::Tensor>& ts) {
  for (const auto& t : ts) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kLong, "tensorpot::", op,
                ": index tensors must be int64 on the CPU");
  }
}

std::vector<at::Tensor> cat(std::vector<at::Tensor> a, const std::vector<at::Tensor>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<bool> flags(const c10::List<bool>& list) {
  std::vector<bool> out;
  for (const bool flag : list) out.push_back(flag);
  return out;
}

at::Tensor or_empty(const at::Tensor& t, const at::Tensor& like) {
  return t.defined() ? t : at::empty({0}, like.options());
}

// The aggregated messages [N, Q, C] of every group. `nodes` (the receiver of every row) is not
// read: it is an input so that the autograd formula has what the backward pass needs.
std::vector<at::Tensor> convolution_op(const at::Tensor& nodes, const at::Tensor& sources,
                                       const at::Tensor& reverse, const at::Tensor& radial,
                                       const at::Tensor& order, const at::Tensor& offsets,
                                       at::TensorList hT, at::TensorList yk, at::TensorList cols,
                                       at::TensorList sign) {
  const std::vector<at::Tensor> h = hT.vec(), y = yk.vec(), s = sign.vec(), c = cols.vec();
  TORCH_CHECK(!h.empty() && h.size() == y.size() && h.size() == c.size() && h.size() == s.size(),
              "tensorpot::convolution: one hT, yk, cols and sign per group");
  check_floats("convolution", radial, cat(cat(cat(h, y), s), {reverse}));
  check_index("convolution", cat({nodes, sources, order, offsets}, c));
  return convolution_forward(sources.contiguous(), reverse.contiguous(), radial.contiguous(),
                             order.contiguous(), offsets.contiguous(), contiguous(h),
                             contiguous(y), contiguous(c), contiguous(s), h[0].size(0));
}

// grad_hT per group, grad_yk per group and grad_radial, in that order (empty where not needed).
std::vector<at::Tensor> convolution_backward_op(
    const at::Tensor& nodes, const at::Tensor& sources, const at::Tensor& reverse,
    const at::Tensor& radial, const at::Tensor& order, const at::Tensor& offsets,
    at::TensorList hT, at::TensorList yk, at::TensorList cols, at::TensorList sign,
    at::TensorList grads, c10::List<bool> need_h, c10::List<bool> need_yk,
    bool need_radial) {
  const std::vector<at::Tensor> h = hT.vec(), y = yk.vec(), s = sign.vec(), c = cols.vec(),
                                g = grads.vec();
  TORCH_CHECK(!h.empty() && h.size() == y.size() && h.size() == c.size() && h.size() == s.size() &&
                  h.size() == g.size() && h.size() == need_h.size() &&
                  h.size() == need_yk.size(),
              "tensorpot::convolution_backward: one hT, yk, cols, sign, grad and flag per group");
  check_floats("convolution_backward", radial, cat(cat(cat(cat(h, y), s), g), {reverse}));
  check_index("convolution_backward", cat({nodes, sources, order, offsets}, c));
  // rows sorted by source: row r ^ 1 is the other direction of row r (convolution.py)
  const at::Tensor by_source = at::bitwise_xor(order, 1);
  auto out = convolution_backward(nodes.contiguous(), reverse.contiguous(), radial.contiguous(),
                                  by_source, offsets.contiguous(), contiguous(h), contiguous(y),
                                  contiguous(c), contiguous(s), contiguous(g), flags(need_h),
                                  flags(need_yk), need_radial);
  for (auto& t : out) t = or_empty(t, radial);
  return out;
}

at::Tensor matmul_op(const at::Tensor& x, const at::Tensor& w) {
  check_floats("matmul", x, {w});
  return tall_matmul(x, w);
}

at::Tensor group_cg_weights_op(const at::Tensor& weight, at::TensorList cg, int64_t groups) {
  check_floats("group_cg_weights", weight, {});
  return group_cg_weights(weight, cg.vec(), groups);
}

// `weight` and `cg` are not read (`arranged` holds both): they are inputs for the autograd
// formula, which differentiates with respect to the weights and arranges new ones.
at::Tensor group_cg_op(const at::Tensor& a, const at::Tensor& b, const at::Tensor& weight,
                       const at::Tensor& arranged, at::TensorList cg, int64_t groups,
                       int64_t shift) {
  check_floats("group_cg", a, {b, weight, arranged});
  return group_cg_forward(a, b, arranged.contiguous(), groups, shift);
}

std::vector<at::Tensor> group_cg_backward_op(const at::Tensor& a, const at::Tensor& b,
                                             const at::Tensor& weight, const at::Tensor& arranged,
                                             at::TensorList cg, int64_t groups, int64_t shift,
                                             const at::Tensor& grad, bool need_a, bool need_b,
                                             bool need_w) {
  check_floats("group_cg_backward", a, {b, weight, arranged, grad});
  auto out = group_cg_backward(a, b, arranged.contiguous(), groups, shift, grad, need_a, need_b,
                               need_w);
  for (auto& t : out) t = or_empty(t, a);
  return out;
}

}  // namespace

TORCH_LIBRARY(tensorpot, m) {
  m.def(
      "convolution(Tensor nodes, Tensor sources, Tensor reverse, Tensor radial, Tensor order, "
      "Tensor offsets, Tensor[] hT, Tensor[] yk, Tensor[] cols, Tensor[] sign) -> Tensor[]");
  m.def(
      "convolution_backward(Tensor nodes, Tensor sources, Tensor reverse, Tensor radial, "
      "Tensor order, Tensor offsets, Tensor[] hT, Tensor[] yk, Tensor[] cols, Tensor[] sign, "
      "Tensor[] grads, bool[] need_h, bool[] need_yk, bool need_radial) -> Tensor[]");
  m.def("matmul(Tensor x, Tensor w) -> Tensor");
  m.def("group_cg_weights(Tensor weight, Tensor[] cg, int groups) -> Tensor");
  m.def(
      "group_cg(Tensor a, Tensor b, Tensor weight, Tensor arranged, Tensor[] cg, int groups, "
      "int shift) -> Tensor");
  m.def(
      "group_cg_backward(Tensor a, Tensor b, Tensor weight, Tensor arranged, Tensor[] cg, "
      "int groups, int shift, Tensor grad, bool need_a, bool need_b, bool need_w) -> Tensor[]");
}

TORCH_LIBRARY_IMPL(tensorpot, CPU, m) {
  m.impl("convolution", &convolution_op);
  m.impl("convolution_backward", &convolution_backward_op);
  m.impl("matmul", &matmul_op);
  m.impl("group_cg_weights", &group_cg_weights_op);
  m.impl("group_cg", &group_cg_op);
  m.impl("group_cg_backward", &group_cg_backward_op);
}
