// The bindings of tensorpot's CPU kernel: one extension built from the sources beside this file.

#include "cpu_kernel.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("convolution_forward", &convolution_forward, "convolution, forward");
  m.def("convolution_backward", &convolution_backward, "convolution, first derivatives");
  m.def("matmul", &matmul, "x [M, K] @ w [K, N] for a tall x and a small w");
  m.def("group_cg_weights", &group_cg_weights, "FreeCG's group CG weights, arranged");
  m.def("group_cg_forward", &group_cg_forward, "FreeCG's group CG, forward");
  m.def("group_cg_backward", &group_cg_backward, "FreeCG's group CG, first derivatives");
}
