// CUDA kernels of the fused score head, torch-free (see score_head_kernels.h for the buffers and
// score_head.cpp for the maths, which these kernels follow step by step in float32).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "score_head_kernels.h"

namespace zreward {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One block per ROWS rows. Each thread strides over h holding ROWS x (KMAX + 1) partial sums (the
// K dot products x . wn_k with wn_k = W_k * nw, then sum(x^2)); each weight value it loads serves all
// ROWS rows, which keeps the (K, H) weight's re-reads from L2 below the hidden states' own traffic.
template <typename T, int KMAX, int ROWS>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ x, const T* __restrict__ weight, const float* __restrict__ nw,
                   const float* __restrict__ values, int64_t n, int64_t h, int k, float eps, float inv_temp,
                   float* __restrict__ probs,
                   float* __restrict__ mean, float* __restrict__ var, float* __restrict__ logits,
                   float* __restrict__ rstd) {
  constexpr int S = KMAX + 1;
  __shared__ float partial[kWarps][ROWS][S];
  __shared__ float total[ROWS][S];
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * ROWS;

  float acc[ROWS][S];
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
#pragma unroll
    for (int s = 0; s < S; ++s) acc[r][s] = 0.f;

  for (int64_t j = threadIdx.x; j < h; j += kThreads) {
    float xv[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      xv[r] = row0 + r < n ? to_float(x[(row0 + r) * h + j]) : 0.f;
      acc[r][KMAX] += xv[r] * xv[r];
    }
    const float scale = nw != nullptr ? nw[j] : 1.f;
#pragma unroll
    for (int kk = 0; kk < KMAX; ++kk) {
      if (kk < k) {
        const float w = to_float(weight[kk * h + j]) * scale;
#pragma unroll
        for (int r = 0; r < ROWS; ++r) acc[r][kk] += xv[r] * w;
      }
    }
  }

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int s = 0; s < S; ++s) {
      if (s < k || s == KMAX) {
        const float v = warp_sum(acc[r][s]);
        if (lane == 0) partial[warp][r][s] = v;
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < ROWS * S; i += kThreads) {
    const int r = i / S, s = i % S;
    if (s < k || s == KMAX) {
      float v = 0.f;
      for (int w = 0; w < kWarps; ++w) v += partial[w][r][s];
      total[r][s] = v;
    }
  }
  __syncthreads();

  // Epilogue: one thread per row (K <= 64 values, serial is cheapest).
  if (threadIdx.x >= ROWS) return;
  const int r = threadIdx.x;
  const int64_t row = row0 + r;
  if (row >= n) return;
  const float rs = nw != nullptr ? 1.f / sqrtf(total[r][KMAX] / static_cast<float>(h) + eps) : 1.f;
  float mx = -INFINITY;
  for (int kk = 0; kk < k; ++kk) {
    const float s = total[r][kk] * rs;
    logits[row * k + kk] = s;
    total[r][kk] = s * inv_temp;
    mx = fmaxf(mx, total[r][kk]);  // a NaN logit is skipped here but still makes exp(NaN) below
  }
  float sum = 0.f;
  for (int kk = 0; kk < k; ++kk) {
    total[r][kk] = expf(total[r][kk] - mx);
    sum += total[r][kk];
  }
  float m = 0.f;
  for (int kk = 0; kk < k; ++kk) {
    const float p = total[r][kk] / sum;
    total[r][kk] = p;
    probs[row * k + kk] = p;
    m += p * values[kk];
  }
  float v2 = 0.f;
  for (int kk = 0; kk < k; ++kk) v2 += total[r][kk] * (values[kk] - m) * (values[kk] - m);
  mean[row] = m;
  var[row] = v2;
  rstd[row] = rs;
}

// One block per row: thread 0 turns the upstream gradients into ds (K values, in shared memory) and
// the norm's correction c; then all threads write dL/dx = r * nw * (ds @ W) - x * r^2 * c / H.
template <typename T, int KMAX>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ x, const T* __restrict__ weight, const float* __restrict__ nw,
                    const float* __restrict__ values,
                    const float* __restrict__ probs, const float* __restrict__ mean,
                    const float* __restrict__ logits, const float* __restrict__ rstd,
                    const float* __restrict__ grad_probs, const float* __restrict__ grad_mean,
                    const float* __restrict__ grad_var, int64_t h, int k, float inv_temp,
                    T* __restrict__ grad_hidden, float* __restrict__ ds_out) {
  __shared__ float ds[KMAX];
  __shared__ float corr_shared;
  const int64_t row = blockIdx.x;
  if (threadIdx.x == 0) {
    const float* p = probs + row * k;
    const float m = mean[row];
    float pg = 0.f;
    for (int kk = 0; kk < k; ++kk) {
      const float d = values[kk] - m;
      ds[kk] = grad_probs[row * k + kk] + grad_mean[row] * values[kk] + grad_var[row] * d * d;
      pg += p[kk] * ds[kk];
    }
    float c = 0.f;
    for (int kk = 0; kk < k; ++kk) {
      ds[kk] = p[kk] * (ds[kk] - pg) * inv_temp;
      ds_out[row * k + kk] = ds[kk];
      c += ds[kk] * logits[row * k + kk];
    }
    const float r = rstd[row];
    corr_shared = nw != nullptr ? r * r * c / static_cast<float>(h) : 0.f;
  }
  __syncthreads();
  const float r = nw != nullptr ? rstd[row] : 1.f;
  const float corr = corr_shared;
  for (int64_t j = threadIdx.x; j < h; j += kThreads) {
    float g = 0.f;
#pragma unroll
    for (int kk = 0; kk < KMAX; ++kk) {
      if (kk < k) g += ds[kk] * to_float(weight[kk * h + j]);
    }
    const float out = nw != nullptr ? r * nw[j] * g - to_float(x[row * h + j]) * corr : g;
    grad_hidden[row * h + j] = from_float<T>(out);
  }
}

template <typename T>
int launch_forward(const void* hidden, const void* weight, const float* nw, const float* values, int64_t n, int64_t h,
                   int64_t k, float eps, float inv_temp, float* probs, float* mean, float* var, float* logits,
                   float* rstd, cudaStream_t stream) {
  const T* x = static_cast<const T*>(hidden);
  const T* w = static_cast<const T*>(weight);
  const int ki = static_cast<int>(k);
  if (k <= 16) {
    constexpr int rows = 4;
    const unsigned grid = static_cast<unsigned>((n + rows - 1) / rows);
    forward_kernel<T, 16, rows><<<grid, kThreads, 0, stream>>>(x, w, nw, values, n, h, ki, eps, inv_temp, probs, mean,
                                                               var, logits, rstd);
  } else {
    forward_kernel<T, kMaxK, 1><<<static_cast<unsigned>(n), kThreads, 0, stream>>>(
        x, w, nw, values, n, h, ki, eps, inv_temp, probs, mean, var, logits, rstd);
  }
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_backward(const void* hidden, const void* weight, const float* nw, const float* values, const float* probs,
                    const float* mean, const float* logits, const float* rstd, const float* grad_probs,
                    const float* grad_mean, const float* grad_var, int64_t n, int64_t h, int64_t k, float inv_temp,
                    void* grad_hidden, float* ds, cudaStream_t stream) {
  const T* x = static_cast<const T*>(hidden);
  const T* w = static_cast<const T*>(weight);
  T* gx = static_cast<T*>(grad_hidden);
  const int ki = static_cast<int>(k);
  const unsigned grid = static_cast<unsigned>(n);
  if (k <= 16) {
    backward_kernel<T, 16><<<grid, kThreads, 0, stream>>>(x, w, nw, values, probs, mean, logits, rstd, grad_probs,
                                                          grad_mean, grad_var, h, ki, inv_temp, gx, ds);
  } else {
    backward_kernel<T, kMaxK><<<grid, kThreads, 0, stream>>>(x, w, nw, values, probs, mean, logits, rstd, grad_probs,
                                                             grad_mean, grad_var, h, ki, inv_temp, gx, ds);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int score_head_forward(DType dtype, const void* hidden, const void* weight, const float* norm_weight,
                       const float* values, int64_t n, int64_t h, int64_t k, float eps, float inv_temp, float* probs,
                       float* mean, float* var, float* logits, float* rstd, void* stream) {
  if (k < 1 || k > kMaxK || h < 1 || n < 0) return static_cast<int>(cudaErrorInvalidValue);
  if (n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::Float32:
      return launch_forward<float>(hidden, weight, norm_weight, values, n, h, k, eps, inv_temp, probs, mean, var,
                                   logits, rstd, s);
    case DType::Float16:
      return launch_forward<__half>(hidden, weight, norm_weight, values, n, h, k, eps, inv_temp, probs, mean, var,
                                    logits, rstd, s);
    case DType::BFloat16:
      return launch_forward<__nv_bfloat16>(hidden, weight, norm_weight, values, n, h, k, eps, inv_temp, probs, mean,
                                           var, logits, rstd, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int score_head_backward(DType dtype, const void* hidden, const void* weight, const float* norm_weight,
                        const float* values, const float* probs, const float* mean, const float* logits,
                        const float* rstd, const float* grad_probs, const float* grad_mean, const float* grad_var,
                        int64_t n, int64_t h, int64_t k, float inv_temp, void* grad_hidden, float* ds, void* stream) {
  if (k < 1 || k > kMaxK || h < 1 || n < 0) return static_cast<int>(cudaErrorInvalidValue);
  if (n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::Float32:
      return launch_backward<float>(hidden, weight, norm_weight, values, probs, mean, logits, rstd, grad_probs,
                                    grad_mean, grad_var, n, h, k, inv_temp, grad_hidden, ds, s);
    case DType::Float16:
      return launch_backward<__half>(hidden, weight, norm_weight, values, probs, mean, logits, rstd, grad_probs,
                                     grad_mean, grad_var, n, h, k, inv_temp, grad_hidden, ds, s);
    case DType::BFloat16:
      return launch_backward<__nv_bfloat16>(hidden, weight, norm_weight, values, probs, mean, logits, rstd,
                                            grad_probs, grad_mean, grad_var, n, h, k, inv_temp, grad_hidden, ds, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace cuda
}  // namespace zreward
