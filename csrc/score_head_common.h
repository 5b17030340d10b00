// Shared by the CPU implementation and the CUDA binding: input checks, the prepared weight, and the
// weight / norm-weight gradients (two small ATen ops after the per-row kernels).
//
// Notation (per row n): x (H) the hidden state, r = rsqrt(mean(x^2) + eps) (1 without a norm),
// wn = W * norm_weight (K, H) in the compute dtype, s_k = r * x . wn_k the logits before the
// temperature, p = softmax(s / T), mean and var the moments over the bin values v.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <tuple>

namespace zreward {

// The largest K the fused kernels support (zreward.ops.score_head.MAX_K).
constexpr int64_t kMaxK = 64;

inline at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_forward_inputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& values,
                                 const std::optional<at::Tensor>& norm_weight, double temperature) {
  TORCH_CHECK(hidden.dim() == 2, "score_head: hidden must be (N, H), got ", hidden.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == hidden.size(1),
              "score_head: weight must be (K, H) with H = ", hidden.size(1), ", got ", weight.sizes());
  const int64_t k = weight.size(0);
  TORCH_CHECK(k >= 1 && k <= kMaxK, "score_head: K=", k, " is outside what the kernels support (1..", kMaxK, ")");
  TORCH_CHECK(values.dim() == 1 && values.size(0) == k, "score_head: values must be (", k, "), got ", values.sizes());
  TORCH_CHECK(weight.scalar_type() == hidden.scalar_type(), "score_head: weight dtype ", weight.scalar_type(),
              " differs from hidden dtype ", hidden.scalar_type());
  TORCH_CHECK(values.scalar_type() == compute_type(hidden.scalar_type()),
              "score_head: values must be in the compute dtype ", compute_type(hidden.scalar_type()));
  TORCH_CHECK(weight.device() == hidden.device() && values.device() == hidden.device(),
              "score_head: hidden, weight and values must be on one device");
  if (norm_weight.has_value()) {
    TORCH_CHECK(norm_weight->dim() == 1 && norm_weight->size(0) == hidden.size(1),
                "score_head: norm_weight must be (", hidden.size(1), "), got ", norm_weight->sizes());
    TORCH_CHECK(norm_weight->device() == hidden.device(), "score_head: norm_weight is on another device");
    TORCH_CHECK(at::isFloatingType(norm_weight->scalar_type()), "score_head: norm_weight must be floating point");
  }
  TORCH_CHECK(temperature > 0, "score_head: temperature must be > 0");
}

// The weight gradients from m = (ds * r)^T x (K, H), ds (N, K) = dL/ds (the logits before the
// temperature): dL/dW = m * norm_weight (= m without a norm) and dL/dnorm_weight = sum_k m * W
// (an empty tensor without a norm).
inline std::tuple<at::Tensor, at::Tensor> grads_from_m(const at::Tensor& m, const at::Tensor& weight,
                                                       const std::optional<at::Tensor>& norm_weight) {
  if (!norm_weight.has_value()) return {m.to(weight.scalar_type()), at::empty({0}, weight.options())};
  const auto ct = m.scalar_type();
  at::Tensor gw = (m * norm_weight->to(ct).unsqueeze(0)).to(weight.scalar_type());
  at::Tensor gnw = (m * weight.to(ct)).sum(0).to(norm_weight->scalar_type());
  return {gw, gnw};
}

// m = (ds * r)^T x with one matmul (the CUDA path); no (N, H) intermediate beyond x in float32.
inline std::tuple<at::Tensor, at::Tensor> weight_grads(const at::Tensor& ds, const at::Tensor& hidden,
                                                       const at::Tensor& weight, const at::Tensor& rstd,
                                                       const std::optional<at::Tensor>& norm_weight) {
  const auto ct = ds.scalar_type();
  const at::Tensor scaled = norm_weight.has_value() ? ds * rstd.unsqueeze(1) : ds;
  return grads_from_m(at::mm(scaled.t(), hidden.to(ct)), weight, norm_weight);
}

}  // namespace zreward
