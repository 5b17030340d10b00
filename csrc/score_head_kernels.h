// Plain C++ launchers of the CUDA score-head kernels (score_head_kernels.cu): raw pointers, sizes
// and a stream, no torch types, so that the kernels compile with nvcc alone and the torch binding
// (score_head_cuda.cpp) compiles without CUDA headers.
//
// Buffers are row-major and contiguous: hidden (n, h) and weight (k, h) of `dtype`; norm_weight (h)
// float32 or nullptr (no norm); values (k) float32; probs / logits / grad_probs / ds (n, k) and mean /
// var / rstd / grad_mean / grad_var (n) float32. `stream` is a cudaStream_t. Each returns a
// cudaError_t as an int (0 = success).
#pragma once

#include <cstdint>

namespace zreward {
namespace cuda {

enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2 };

// The largest K the kernels are compiled for.
constexpr int kMaxK = 64;

int score_head_forward(DType dtype, const void* hidden, const void* weight, const float* norm_weight,
                       const float* values, int64_t n, int64_t h, int64_t k, float eps, float inv_temp, float* probs,
                       float* mean, float* var, float* logits, float* rstd, void* stream);

// grad_hidden (n, h) of `dtype`; ds (n, k) = dL/dlogits (before the temperature), for the weight grads.
int score_head_backward(DType dtype, const void* hidden, const void* weight, const float* norm_weight,
                        const float* values, const float* probs, const float* mean, const float* logits,
                        const float* rstd, const float* grad_probs, const float* grad_mean, const float* grad_var,
                        int64_t n, int64_t h, int64_t k, float inv_temp, void* grad_hidden, float* ds, void* stream);

}  // namespace cuda
}  // namespace zreward
