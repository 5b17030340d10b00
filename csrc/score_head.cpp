// The zreward op library: the score-head schema and its CPU implementation (forward and backward).
//
// Forward, per row (see score_head_common.h for the notation): one pass over x accumulates the
// K dot products x . wn_k and sum(x^2) together (wn is formed a chunk at a time, never stored); then s = r * dots, p = softmax(s / T), and the
// moments. Backward, per row: g_k = dL/dp_k + dL/dmean * v_k + dL/dvar * (v_k - mean)^2 (the
// centred variance's derivative, exact through the softmax), ds = p * (g - p . g) / T,
// c = ds . s, and dL/dx = r * (ds @ wn) - x * r^2 * c / H (= ds @ wn without a norm). The upstream
// gradients are read in the backward, never assumed in the forward.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <Python.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>

#include "score_head_common.h"

// Row kernels are compiled for several x86 vector widths and picked at load time, so that one
// build runs on any x86-64 CPU and still uses AVX-512 where there is one.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ZR_MULTIVERSION __attribute__((target_clones("arch=skylake-avx512", "arch=haswell", "default")))
#else
#define ZR_MULTIVERSION
#endif

namespace zreward {
namespace {

// Work is done kRows rows by kChunk columns at a time: the weight chunk (times the norm weight) is
// converted once into a stack buffer and serves kRows rows, so nothing of size (K, H) or (N, H) is
// allocated (the forward allocates its outputs only). Dot products accumulate in kLanes-wide
// partial sums, reduced once per row, so that the inner loops are plain vector FMAs.
constexpr int64_t kChunk = 256;
constexpr int64_t kRows = 4;
constexpr int64_t kLanes = 16;

// acc[(r * kMaxK + kk) * kLanes + l] += sum_j x[r][j] w[kk][j] over j = l (mod kLanes), and the same
// for sum(x^2) in ss[r * kLanes + l]; len is a multiple of kLanes (buffers are zero-padded).
template <typename acc_t>
ZR_MULTIVERSION void chunk_dots(const acc_t* xbuf, const acc_t* wbuf, int64_t rows, int64_t k, int64_t len,
                                acc_t* acc, acc_t* ss) {
  for (int64_t r = 0; r < rows; ++r) {
    const acc_t* xr = xbuf + r * kChunk;
    acc_t t[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) t[l] = ss[r * kLanes + l];
    for (int64_t j = 0; j < len; j += kLanes) {
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) t[l] += xr[j + l] * xr[j + l];
    }
    for (int64_t l = 0; l < kLanes; ++l) ss[r * kLanes + l] = t[l];
    for (int64_t kk = 0; kk < k; ++kk) {
      const acc_t* wk = wbuf + kk * kChunk;
      acc_t* a = acc + (r * kMaxK + kk) * kLanes;
      for (int64_t l = 0; l < kLanes; ++l) t[l] = a[l];
      for (int64_t j = 0; j < len; j += kLanes) {
#pragma omp simd
        for (int64_t l = 0; l < kLanes; ++l) t[l] += xr[j + l] * wk[j + l];
      }
      for (int64_t l = 0; l < kLanes; ++l) a[l] = t[l];
    }
  }
}

// out[j] = sum_kk ds[kk] * w[kk][j] for j < len (a multiple of kLanes).
template <typename acc_t>
ZR_MULTIVERSION void chunk_combine(const acc_t* wbuf, const acc_t* ds, int64_t k, int64_t len, acc_t* out) {
  for (int64_t j = 0; j < len; j += kLanes) {
    acc_t t[kLanes] = {};
    for (int64_t kk = 0; kk < k; ++kk) {
      const acc_t* wk = wbuf + kk * kChunk + j;
      const acc_t d = ds[kk];
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) t[l] += d * wk[l];
    }
    for (int64_t l = 0; l < kLanes; ++l) out[j + l] = t[l];
  }
}

// y[j] += alpha * x[j] for j < n.
template <typename acc_t>
ZR_MULTIVERSION void axpy(acc_t alpha, const acc_t* x, acc_t* y, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

template <typename acc_t>
acc_t lane_sum(const acc_t* a) {
  acc_t s = 0;
  for (int64_t l = 0; l < kLanes; ++l) s += a[l];
  return s;
}

int64_t padded(int64_t len) { return (len + kLanes - 1) / kLanes * kLanes; }

// wbuf[kk * kChunk + j] = W[kk, j0 + j] * nw[j0 + j] in the compute dtype (nw = nullptr: no norm),
// zero from len up to the next multiple of kLanes.
template <typename scalar_t, typename nw_t, typename acc_t>
void weight_chunk(const scalar_t* w, const nw_t* nw, int64_t h, int64_t k, int64_t j0, int64_t len, acc_t* wbuf) {
  for (int64_t kk = 0; kk < k; ++kk) {
    const scalar_t* wr = w + kk * h + j0;
    acc_t* out = wbuf + kk * kChunk;
    if (nw != nullptr) {
      for (int64_t j = 0; j < len; ++j) out[j] = static_cast<acc_t>(wr[j]) * static_cast<acc_t>(nw[j0 + j]);
    } else {
      for (int64_t j = 0; j < len; ++j) out[j] = static_cast<acc_t>(wr[j]);
    }
    std::fill(out + len, out + padded(len), acc_t(0));
  }
}

template <typename scalar_t, typename acc_t>
void row_chunk(const scalar_t* x, int64_t len, acc_t* out) {
  for (int64_t j = 0; j < len; ++j) out[j] = static_cast<acc_t>(x[j]);
  std::fill(out + len, out + padded(len), acc_t(0));
}

template <typename scalar_t, typename nw_t, typename acc_t>
void forward_rows(const scalar_t* x, const scalar_t* w, const nw_t* nw, const acc_t* v, int64_t n0, int64_t n1,
                  int64_t h, int64_t k, acc_t eps, acc_t inv_temp, acc_t* probs, acc_t* mean, acc_t* var,
                  acc_t* logits, acc_t* rstd) {
  alignas(64) acc_t wbuf[kMaxK * kChunk];
  alignas(64) acc_t xbuf[kRows * kChunk];
  alignas(64) acc_t acc[kRows * kMaxK * kLanes];
  alignas(64) acc_t ss[kRows * kLanes];
  acc_t a[kMaxK];
  for (int64_t nb = n0; nb < n1; nb += kRows) {
    const int64_t rows = std::min(kRows, n1 - nb);
    std::fill(acc, acc + rows * kMaxK * kLanes, acc_t(0));
    std::fill(ss, ss + rows * kLanes, acc_t(0));
    for (int64_t j0 = 0; j0 < h; j0 += kChunk) {
      const int64_t len = std::min(kChunk, h - j0);
      weight_chunk(w, nw, h, k, j0, len, wbuf);
      for (int64_t r = 0; r < rows; ++r) row_chunk(x + (nb + r) * h + j0, len, xbuf + r * kChunk);
      chunk_dots(xbuf, wbuf, rows, k, padded(len), acc, ss);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = nb + r;
      const acc_t rs = nw != nullptr ? acc_t(1) / std::sqrt(lane_sum(ss + r * kLanes) / acc_t(h) + eps) : acc_t(1);
      acc_t mx = -INFINITY;
      for (int64_t kk = 0; kk < k; ++kk) {
        a[kk] = lane_sum(acc + (r * kMaxK + kk) * kLanes) * rs;
        logits[n * k + kk] = a[kk];
        mx = std::max(mx, a[kk] * inv_temp);  // NaN logits still give NaN through exp below
      }
      acc_t sum = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        a[kk] = std::exp(a[kk] * inv_temp - mx);
        sum += a[kk];
      }
      acc_t m = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        a[kk] /= sum;
        probs[n * k + kk] = a[kk];
        m += a[kk] * v[kk];
      }
      acc_t s2 = 0;
      for (int64_t kk = 0; kk < k; ++kk) s2 += a[kk] * (v[kk] - m) * (v[kk] - m);
      mean[n] = m;
      var[n] = s2;
      rstd[n] = rs;
    }
  }
}

// Also accumulates m (K, H) += (ds * r)^T x over its rows, for the weight gradients.
template <typename scalar_t, typename nw_t, typename acc_t>
void backward_rows(const scalar_t* x, const scalar_t* w, const nw_t* nw, const acc_t* v, const acc_t* probs,
                   const acc_t* mean, const acc_t* logits, const acc_t* rstd, const acc_t* gp, const acc_t* gm,
                   const acc_t* gv, int64_t n0, int64_t n1, int64_t h, int64_t k, acc_t inv_temp, scalar_t* gx,
                   acc_t* m_out) {
  alignas(64) acc_t wbuf[kMaxK * kChunk];
  alignas(64) acc_t xbuf[kChunk];
  alignas(64) acc_t buf[kChunk];
  acc_t ds[kRows][kMaxK];
  acc_t corr[kRows];
  for (int64_t nb = n0; nb < n1; nb += kRows) {
    const int64_t rows = std::min(kRows, n1 - nb);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = nb + r;
      const acc_t* p = probs + n * k;
      acc_t pg = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        const acc_t d = v[kk] - mean[n];
        ds[r][kk] = gp[n * k + kk] + gm[n] * v[kk] + gv[n] * d * d;
        pg += p[kk] * ds[r][kk];
      }
      acc_t c = 0;
      for (int64_t kk = 0; kk < k; ++kk) {
        ds[r][kk] = p[kk] * (ds[r][kk] - pg) * inv_temp;
        c += ds[r][kk] * logits[n * k + kk];
      }
      corr[r] = nw != nullptr ? rstd[n] * rstd[n] * c / acc_t(h) : acc_t(0);
    }
    for (int64_t j0 = 0; j0 < h; j0 += kChunk) {
      const int64_t len = std::min(kChunk, h - j0);
      weight_chunk(w, nw, h, k, j0, len, wbuf);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t n = nb + r;
        chunk_combine(wbuf, ds[r], k, padded(len), buf);
        row_chunk(x + n * h + j0, len, xbuf);
        scalar_t* out = gx + n * h + j0;
        const acc_t rs = nw != nullptr ? rstd[n] : acc_t(1);
        if (nw != nullptr) {
          for (int64_t j = 0; j < len; ++j) out[j] = static_cast<scalar_t>(rs * buf[j] - xbuf[j] * corr[r]);
        } else {
          for (int64_t j = 0; j < len; ++j) out[j] = static_cast<scalar_t>(buf[j]);
        }
        for (int64_t kk = 0; kk < k; ++kk) axpy(ds[r][kk] * rs, xbuf, m_out + kk * h + j0, len);
      }
    }
  }
}

// Rows per task: about 4M multiply-adds (~0.5 ms on one core). Waking a second thread costs a few
// microseconds on an idle machine but a scheduler tick (ms) on a busy one, so only work that is large
// next to a tick is split; a 64-slot batch of a 3584-wide model runs on the calling thread.
int64_t grain(int64_t h, int64_t k) {
  const int64_t rows = std::max<int64_t>(1, (int64_t(1) << 22) / std::max<int64_t>(1, h * (k + 1)));
  return (rows + kRows - 1) / kRows * kRows;
}

// Calls fn(nw) with the norm weight as scalar_t (hidden's dtype: no copy), as acc_t (another dtype,
// converted once: H values), or as a null scalar_t pointer (no norm).
template <typename scalar_t, typename acc_t, typename F>
void with_norm_weight(const std::optional<at::Tensor>& norm_weight, F&& fn) {
  if (!norm_weight.has_value()) {
    fn(static_cast<const scalar_t*>(nullptr));
  } else if (norm_weight->scalar_type() == c10::CppTypeToScalarType<scalar_t>::value) {
    const at::Tensor nw = norm_weight->contiguous();
    fn(nw.const_data_ptr<scalar_t>());
  } else {
    const at::Tensor nw = norm_weight->to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    fn(nw.const_data_ptr<acc_t>());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> score_head_fwd_cpu(
    const at::Tensor& hidden_in, const at::Tensor& weight_in, const at::Tensor& values,
    const std::optional<at::Tensor>& norm_weight, double eps, double temperature) {
  check_forward_inputs(hidden_in, weight_in, values, norm_weight, temperature);
  const at::Tensor hidden = hidden_in.contiguous(), weight = weight_in.contiguous(), v = values.contiguous();
  const auto ct = compute_type(hidden.scalar_type());
  const int64_t n = hidden.size(0), h = hidden.size(1), k = weight.size(0);
  auto opts = hidden.options().dtype(ct);
  at::Tensor probs = at::empty({n, k}, opts), mean = at::empty({n}, opts), var = at::empty({n}, opts);
  at::Tensor logits = at::empty({n, k}, opts), rstd = at::empty({n}, opts);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, hidden.scalar_type(), "score_head_fwd_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    with_norm_weight<scalar_t, acc_t>(norm_weight, [&](const auto* nw) {
      at::parallel_for(0, n, grain(h, k), [&](int64_t n0, int64_t n1) {
        forward_rows<scalar_t>(hidden.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), nw,
                               v.const_data_ptr<acc_t>(), n0, n1, h, k, static_cast<acc_t>(eps),
                               static_cast<acc_t>(1.0 / temperature), probs.data_ptr<acc_t>(), mean.data_ptr<acc_t>(),
                               var.data_ptr<acc_t>(), logits.data_ptr<acc_t>(), rstd.data_ptr<acc_t>());
      });
    });
  });
  return {probs, mean, var, logits, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> score_head_bwd_cpu(
    const at::Tensor& grad_probs, const at::Tensor& grad_mean, const at::Tensor& grad_var, const at::Tensor& hidden_in,
    const at::Tensor& weight_in, const at::Tensor& values, const std::optional<at::Tensor>& norm_weight,
    const at::Tensor& probs, const at::Tensor& mean, const at::Tensor& logits, const at::Tensor& rstd,
    double temperature) {
  check_forward_inputs(hidden_in, weight_in, values, norm_weight, temperature);
  const at::Tensor hidden = hidden_in.contiguous(), weight = weight_in.contiguous(), v = values.contiguous();
  const auto ct = compute_type(hidden.scalar_type());
  const int64_t n = hidden.size(0), h = hidden.size(1), k = weight.size(0);
  // Upstream gradients and saved tensors in the compute dtype, row-major.
  auto prep = [&](const at::Tensor& t) { return t.to(ct).contiguous(); };
  const at::Tensor gp = prep(grad_probs), gm = prep(grad_mean), gv = prep(grad_var);
  const at::Tensor p = prep(probs), m = prep(mean), s = prep(logits), r = prep(rstd);
  at::Tensor grad_hidden = at::empty_like(hidden);
  // Each task sums its rows' (ds * r)^T x into its own (K, H) slice; the slices are added after.
  const int64_t rows_per_task = grain(h, k), tasks = std::max<int64_t>(1, (n + rows_per_task - 1) / rows_per_task);
  at::Tensor partial = at::zeros({tasks, k, h}, hidden.options().dtype(ct));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, hidden.scalar_type(), "score_head_bwd_cpu", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    with_norm_weight<scalar_t, acc_t>(norm_weight, [&](const auto* nw) {
      at::parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          backward_rows<scalar_t>(hidden.const_data_ptr<scalar_t>(), weight.const_data_ptr<scalar_t>(), nw,
                                  v.const_data_ptr<acc_t>(), p.const_data_ptr<acc_t>(), m.const_data_ptr<acc_t>(),
                                  s.const_data_ptr<acc_t>(), r.const_data_ptr<acc_t>(), gp.const_data_ptr<acc_t>(),
                                  gm.const_data_ptr<acc_t>(), gv.const_data_ptr<acc_t>(), t * rows_per_task,
                                  std::min(n, (t + 1) * rows_per_task), h, k, static_cast<acc_t>(1.0 / temperature),
                                  grad_hidden.data_ptr<scalar_t>(), partial.data_ptr<acc_t>() + t * k * h);
        }
      });
    });
  });
  auto [grad_weight, grad_norm_weight] = grads_from_m(tasks == 1 ? partial[0] : partial.sum(0), weight, norm_weight);
  return {grad_hidden, grad_weight, grad_norm_weight};
}

}  // namespace
}  // namespace zreward

TORCH_LIBRARY(zreward, m) {
  m.def(
      "score_head_fwd(Tensor hidden, Tensor weight, Tensor values, Tensor? norm_weight, float eps, "
      "float temperature) -> (Tensor probs, Tensor mean, Tensor var, Tensor logits, Tensor rstd)");
  m.def(
      "score_head_bwd(Tensor grad_probs, Tensor grad_mean, Tensor grad_var, Tensor hidden, Tensor weight, "
      "Tensor values, Tensor? norm_weight, Tensor probs, Tensor mean, Tensor logits, Tensor rstd, "
      "float temperature) -> (Tensor grad_hidden, Tensor grad_weight, Tensor grad_norm_weight)");
}

TORCH_LIBRARY_IMPL(zreward, CPU, m) {
  m.impl("score_head_fwd", &zreward::score_head_fwd_cpu);
  m.impl("score_head_bwd", &zreward::score_head_bwd_cpu);
}

// `import zreward._C` loads the library (and so registers the ops); the module itself is empty.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
