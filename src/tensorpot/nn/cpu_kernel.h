// The functions of tensorpot's CPU kernel, defined in the sources beside this file and registered
// as the operators torch.ops.tensorpot.* in cpu_kernel.cpp.

#pragma once

#include <ATen/ATen.h>

#include <vector>

// convolution_kernel.cpp
std::vector<at::Tensor> convolution_forward(at::Tensor sources, at::Tensor reverse,
                                            at::Tensor radial, at::Tensor order,
                                            at::Tensor offsets, std::vector<at::Tensor> hT,
                                            std::vector<at::Tensor> yk,
                                            std::vector<at::Tensor> cols,
                                            std::vector<at::Tensor> sign, int64_t num_nodes);
std::vector<at::Tensor> convolution_backward(at::Tensor nodes, at::Tensor reverse,
                                             at::Tensor radial, at::Tensor order,
                                             at::Tensor offsets, std::vector<at::Tensor> hT,
                                             std::vector<at::Tensor> yk,
                                             std::vector<at::Tensor> cols,
                                             std::vector<at::Tensor> sign,
                                             std::vector<at::Tensor> grads,
                                             std::vector<bool> need_h, std::vector<bool> need_yk,
                                             bool need_radial);
// matmul_kernel.cpp
at::Tensor tall_matmul(at::Tensor x, at::Tensor w);
// group_cg_kernel.cpp
at::Tensor group_cg_weights(at::Tensor w, std::vector<at::Tensor> cg, int64_t groups);
at::Tensor group_cg_forward(at::Tensor a, at::Tensor b, at::Tensor arranged, int64_t groups,
                            int64_t shift);
std::vector<at::Tensor> group_cg_backward(at::Tensor a, at::Tensor b, at::Tensor arranged,
                                          int64_t groups, int64_t shift, at::Tensor grad,
                                          bool need_a, bool need_b, bool need_w);
