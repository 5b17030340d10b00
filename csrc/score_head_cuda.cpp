// The CUDA implementation of the zreward score-head ops: the torch binding of the torch-free kernels
// in score_head_kernels.cu. It reaches CUDA only through c10 core (device guard and current
// stream via the virtual guard), so it compiles against any torch build; it is linked into
// zreward._C only when torch has CUDA.
#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/library.h>

#include "score_head_common.h"
#include "score_head_kernels.h"

namespace zreward {
namespace {

void* current_stream(const c10::Device& device) {
  c10::impl::VirtualGuardImpl impl(c10::DeviceType::CUDA);
  return impl.getStream(device).native_handle();
}

cuda::DType kernel_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return cuda::DType::Float32;
    case at::kHalf:
      return cuda::DType::Float16;
    case at::kBFloat16:
      return cuda::DType::BFloat16;
    default:
      TORCH_CHECK(false, "score_head: the CUDA kernels take float32, float16 or bfloat16 hidden states, got ", t);
  }
}

// The norm weight as float32 (H values; a view when it already is), or an undefined tensor.
at::Tensor float_norm_weight(const std::optional<at::Tensor>& norm_weight) {
  return norm_weight.has_value() ? norm_weight->to(at::kFloat).contiguous() : at::Tensor();
}

const float* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr<float>() : nullptr; }

void check_launch(int status, const char* what) {
  TORCH_CHECK(status == 0, "score_head: CUDA ", what, " kernel launch failed (cudaError ", status, ")");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> score_head_fwd_cuda(
    const at::Tensor& hidden_in, const at::Tensor& weight_in, const at::Tensor& values,
    const std::optional<at::Tensor>& norm_weight, double eps, double temperature) {
  check_forward_inputs(hidden_in, weight_in, values, norm_weight, temperature);
  const auto dtype = kernel_dtype(hidden_in.scalar_type());
  c10::DeviceGuard guard(hidden_in.device());
  const at::Tensor hidden = hidden_in.contiguous(), weight = weight_in.contiguous(), v = values.contiguous();
  const int64_t n = hidden.size(0), h = hidden.size(1), k = weight.size(0);
  const at::Tensor nw = float_norm_weight(norm_weight);
  auto opts = hidden.options().dtype(at::kFloat);
  at::Tensor probs = at::empty({n, k}, opts), mean = at::empty({n}, opts), var = at::empty({n}, opts);
  at::Tensor logits = at::empty({n, k}, opts), rstd = at::empty({n}, opts);
  check_launch(cuda::score_head_forward(dtype, hidden.const_data_ptr(), weight.const_data_ptr(), ptr_or_null(nw),
                                        v.const_data_ptr<float>(), n, h, k, static_cast<float>(eps), static_cast<float>(1.0 / temperature),
                                        probs.data_ptr<float>(), mean.data_ptr<float>(), var.data_ptr<float>(),
                                        logits.data_ptr<float>(), rstd.data_ptr<float>(),
                                        current_stream(hidden.device())),
               "forward");
  return {probs, mean, var, logits, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> score_head_bwd_cuda(
    const at::Tensor& grad_probs, const at::Tensor& grad_mean, const at::Tensor& grad_var, const at::Tensor& hidden_in,
    const at::Tensor& weight_in, const at::Tensor& values, const std::optional<at::Tensor>& norm_weight,
    const at::Tensor& probs, const at::Tensor& mean, const at::Tensor& logits, const at::Tensor& rstd,
    double temperature) {
  check_forward_inputs(hidden_in, weight_in, values, norm_weight, temperature);
  const auto dtype = kernel_dtype(hidden_in.scalar_type());
  c10::DeviceGuard guard(hidden_in.device());
  const at::Tensor hidden = hidden_in.contiguous(), weight = weight_in.contiguous(), v = values.contiguous();
  const int64_t n = hidden.size(0), h = hidden.size(1), k = weight.size(0);
  const at::Tensor nw = float_norm_weight(norm_weight);
  auto prep = [](const at::Tensor& t) { return t.to(at::kFloat).contiguous(); };
  const at::Tensor gp = prep(grad_probs), gm = prep(grad_mean), gv = prep(grad_var);
  const at::Tensor p = prep(probs), m = prep(mean), s = prep(logits), r = prep(rstd);
  at::Tensor grad_hidden = at::empty_like(hidden);
  at::Tensor ds = at::empty({n, k}, hidden.options().dtype(at::kFloat));
  check_launch(cuda::score_head_backward(dtype, hidden.const_data_ptr(), weight.const_data_ptr(), ptr_or_null(nw),
                                         v.const_data_ptr<float>(), p.const_data_ptr<float>(),
                                         m.const_data_ptr<float>(), s.const_data_ptr<float>(),
                                         r.const_data_ptr<float>(), gp.const_data_ptr<float>(),
                                         gm.const_data_ptr<float>(), gv.const_data_ptr<float>(), n, h, k,
                                         static_cast<float>(1.0 / temperature),
                                         grad_hidden.data_ptr(), ds.data_ptr<float>(),
                                         current_stream(hidden.device())),
               "backward");
  auto [grad_weight, grad_norm_weight] = weight_grads(ds, hidden, weight, r, norm_weight);
  return {grad_hidden, grad_weight, grad_norm_weight};
}

}  // namespace
}  // namespace zreward

TORCH_LIBRARY_IMPL(zreward, CUDA, m) {
  m.impl("score_head_fwd", &zreward::score_head_fwd_cuda);
  m.impl("score_head_bwd", &zreward::score_head_bwd_cuda);
}
