// GAN training core: the WGAN-GP interpolation and the gradient-norm penalty.
//
//   interpolate:   x_hat[b] = alpha[b] * real[b] + (1 - alpha[b]) * fake[b]
//   grad_penalty:  norms[b] = sqrt(sum_j g[b, j]^2 + 1e-12)          (j over the non-batch dims)
//                  penalty  = weight * mean_b(h(norms[b] - target)^2),  h = identity or max(0, .)
//                  (target == 0: the squared norm sum_j g^2 itself, no sqrt: the R1 penalty)
//
// Each is one pass forward and one pass backward; the backward ops are differentiable in turn
// (fastgen/ops/grad_penalty.py), so the penalty sits inside a critic's double backward.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <limits>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/reduction.h"
#include "common/rows.h"
#include "common/vec_io.h"

namespace fastgen {
namespace {

// The floor under the squared norm: sqrt stays differentiable at a zero gradient.
constexpr double kNormFloor = 1e-12;

void check_batched_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.dim() >= 1, "fastgen.", op, ": ", name,
                    " must have a batch dimension (at least 1-D), got a 0-d tensor");
  checks::floating(op, name, t);
  checks::same_device(op, name, t, {});
}

void check_like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name, const char* ref_name) {
  checks::like(op, name, t, ref_name, ref);
}

// A per-sample vector (alpha, norms): shape (B,), on x's device; `dtype` as given.
void check_per_sample(const at::Tensor& v, const at::Tensor& x, at::ScalarType dtype, const char* op, const char* name,
                      const char* x_name) {
  TORCH_CHECK_VALUE(v.dim() == 1 && v.size(0) == x.size(0), "fastgen.", op, ": ", name, " must have shape (", x.size(0),
                    ",) (one value per sample of ", x_name, "), got ", v.sizes());
  TORCH_CHECK_TYPE(v.scalar_type() == dtype, "fastgen.", op, ": ", name, " must have dtype ", dtype, ", got ",
                   v.scalar_type());
  checks::same_device(op, x_name, x, {{name, v}});
}

at::ScalarType acc_type_of(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// =========================================================================================
// interpolate

at::Tensor interpolate_cpu(const at::Tensor& real_in, const at::Tensor& fake_in, const at::Tensor& alpha_in) {
  const char* op = "interpolate";
  check_batched_floating(real_in, op, "real");
  check_like(fake_in, real_in, op, "fake", "real");
  check_per_sample(alpha_in, real_in, real_in.scalar_type(), op, "alpha", "real");

  const at::Tensor real = is_batch_major_dense(real_in) ? real_in : real_in.contiguous();
  const at::Tensor fake = in_layout_of(fake_in, real);
  const at::Tensor alpha = alpha_in.contiguous();
  const int64_t rows = real.size(0);
  const int64_t cols = rows == 0 ? 0 : real.numel() / rows;
  at::Tensor out = at::empty_like(real);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, real.scalar_type(), "interpolate", [&] {
    using IO = VecIO<scalar_t>;
    using Vec = typename IO::Vec;
    using opmath_t = at::opmath_type<scalar_t>;
    constexpr int64_t W = IO::size();
    const scalar_t* r = real.const_data_ptr<scalar_t>();
    const scalar_t* f = fake.const_data_ptr<scalar_t>();
    const scalar_t* a = alpha.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    parallel_rows<opmath_t>(rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
      const opmath_t a_row = static_cast<opmath_t>(a[row]);
      const Vec va(a_row), vb(opmath_t(1) - a_row);
      const int64_t base = row * cols;
      int64_t j = begin;
      for (; j + W <= end; j += W) {
        IO::store(o + base + j, at::vec::fmadd(va, IO::load(r + base + j), vb * IO::load(f + base + j)));
      }
      if (j < end) {
        const int64_t n = end - j;
        IO::store(o + base + j, at::vec::fmadd(va, IO::load(r + base + j, n), vb * IO::load(f + base + j, n)), n);
      }
      return opmath_t(0);
    });
  });
  return out;
}

// grad_real = alpha * grad, grad_fake = (1 - alpha) * grad, grad_alpha[b] = sum_j grad * (real - fake).
// Outputs not asked for in output_mask are empty tensors; real and fake are needed only for
// grad_alpha.
std::tuple<at::Tensor, at::Tensor, at::Tensor> interpolate_backward_cpu(const at::Tensor& grad_in,
                                                                        const std::optional<at::Tensor>& real_in,
                                                                        const std::optional<at::Tensor>& fake_in,
                                                                        const at::Tensor& alpha_in,
                                                                        std::array<bool, 3> output_mask) {
  const char* op = "interpolate_backward";
  check_batched_floating(grad_in, op, "grad");
  check_per_sample(alpha_in, grad_in, grad_in.scalar_type(), op, "alpha", "grad");
  const bool want_real = output_mask[0], want_fake = output_mask[1], want_alpha = output_mask[2];
  const bool has_real = real_in.has_value() && real_in->defined();
  const bool has_fake = fake_in.has_value() && fake_in->defined();
  TORCH_CHECK_VALUE(!want_alpha || (has_real && has_fake), "fastgen.", op,
                    ": the gradient of alpha needs real and fake, got ", has_real ? "" : "no real ",
                    has_fake ? "" : "no fake");
  if (has_real) check_like(*real_in, grad_in, op, "real", "grad");
  if (has_fake) check_like(*fake_in, grad_in, op, "fake", "grad");

  const at::Tensor grad = is_batch_major_dense(grad_in) ? grad_in : grad_in.contiguous();
  const at::Tensor alpha = alpha_in.contiguous();
  const at::Tensor real = want_alpha ? in_layout_of(*real_in, grad) : at::Tensor();
  const at::Tensor fake = want_alpha ? in_layout_of(*fake_in, grad) : at::Tensor();
  const int64_t rows = grad.size(0);
  const int64_t cols = rows == 0 ? 0 : grad.numel() / rows;
  at::Tensor grad_real = want_real ? at::empty_like(grad) : at::empty({0}, grad.options());
  at::Tensor grad_fake = want_fake ? at::empty_like(grad) : at::empty({0}, grad.options());
  at::Tensor grad_alpha = want_alpha ? at::empty({rows}, alpha.options()) : at::empty({0}, alpha.options());
  if (!want_real && !want_fake && !want_alpha) return {grad_real, grad_fake, grad_alpha};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "interpolate_backward", [&] {
    using IO = VecIO<scalar_t>;
    using Vec = typename IO::Vec;
    using opmath_t = at::opmath_type<scalar_t>;
    constexpr int64_t W = IO::size();
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const scalar_t* a = alpha.const_data_ptr<scalar_t>();
    const scalar_t* r = want_alpha ? real.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* f = want_alpha ? fake.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* gr = want_real ? grad_real.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gf = want_fake ? grad_fake.mutable_data_ptr<scalar_t>() : nullptr;
    const std::vector<opmath_t> sums = parallel_rows<opmath_t>(
        rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
          const opmath_t a_row = static_cast<opmath_t>(a[row]);
          const Vec va(a_row), vb(opmath_t(1) - a_row);
          const int64_t base = row * cols;
          // sum g * real - sum g * fake, as eager's autograd sums the two products: real - fake
          // first would overflow (inf, then NaN) for huge real and fake whose gradient is finite.
          Vec acc_r(0), acc_f(0);
          for (int64_t j = begin; j < end; j += W) {
            const int64_t n = std::min(W, end - j);
            const Vec vg = IO::load(g + base + j, n);
            if (gr != nullptr) IO::store(gr + base + j, va * vg, n);
            if (gf != nullptr) IO::store(gf + base + j, vb * vg, n);
            if (r != nullptr) {
              acc_r = at::vec::fmadd(vg, IO::load(r + base + j, n), acc_r);
              acc_f = at::vec::fmadd(vg, IO::load(f + base + j, n), acc_f);
            }
          }
          return IO::sum_lanes(acc_r) - IO::sum_lanes(acc_f);
        });
    if (want_alpha) {
      scalar_t* ga = grad_alpha.mutable_data_ptr<scalar_t>();
      for (int64_t b = 0; b < rows; ++b) ga[b] = static_cast<scalar_t>(sums[b]);
    }
  });
  return {grad_real, grad_fake, grad_alpha};
}

// =========================================================================================
// grad_penalty

void check_penalty_args(const at::Tensor& grads, double target, double weight, const char* op) {
  check_batched_floating(grads, op, "grads");
  TORCH_CHECK_VALUE(std::isfinite(target) && target >= 0, "fastgen.", op, ": target must be a finite number >= 0, got ",
                    target);
  checks::finite(op, "weight", weight);
}

// h = norm - target, clipped at 0 when one-sided. A NaN norm stays NaN (as torch's relu
// and clamp_min pass NaN): the penalty of a NaN gradient is NaN, never a finite number.
inline double penalty_h(double norm, double target, bool one_sided) {
  const double h = norm - target;
  return one_sided && h < 0.0 ? 0.0 : h;
}

// The gradient coefficient of a row for the penalty's gradient `grad_penalty`:
// grad_penalty * (2 weight / B) * h / n.
// For target 0 (R1: the squared norm, no sqrt) h / n is 1: taken as is, so that an overflowing
// norm (inf / inf) does not turn a finite gradient into NaN.
inline double penalty_coef(double norm, double target, bool one_sided, double scale) {
  if (target == 0.0) return scale;
  return scale * penalty_h(norm, target, one_sided) / norm;
}

// out[0, n) = c * g[0, n)
template <typename scalar_t>
void scale_slice(const scalar_t* g, scalar_t* out, int64_t n, at::opmath_type<scalar_t> coef) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Vec c(coef);
  int64_t j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    IO::store(out + j, c * IO::load(g + j));
    IO::store(out + j + W, c * IO::load(g + j + W));
  }
  for (; j < n; j += W) {
    const int64_t m = std::min(W, n - j);
    IO::store(out + j, c * IO::load(g + j, m), m);
  }
}

// Rows up to this many elements are reduced and scaled by one thread back to back, the second
// read coming from its cache; longer rows (or fewer rows than threads) take two parallel passes.
constexpr int64_t kFusedRowElements = int64_t{1} << 18;

// with_grad: also returns d_grads = d(penalty)/d(grads) for an upstream gradient of 1 (else an
// empty tensor), computed in the same pass, so that the usual backward (upstream exactly 1, the
// penalty added to a loss) has nothing left to compute.
std::tuple<at::Tensor, at::Tensor, at::Tensor> grad_penalty_cpu(const at::Tensor& grads_in, double target,
                                                                double weight, bool one_sided, bool with_grad) {
  const char* op = "grad_penalty";
  check_penalty_args(grads_in, target, weight, op);
  const at::Tensor grads = is_batch_major_dense(grads_in) ? grads_in : grads_in.contiguous();
  const int64_t rows = grads.size(0);
  const int64_t cols = rows == 0 ? 0 : grads.numel() / rows;
  at::Tensor norms = at::empty({rows}, grads.options().dtype(acc_type_of(grads.scalar_type())));
  at::Tensor d_grads = with_grad ? at::empty_like(grads) : at::empty({0}, grads.options());
  const double coef_scale = rows == 0 ? 0.0 : 2.0 * weight / static_cast<double>(rows);
  double total = 0.0;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grads.scalar_type(), "grad_penalty", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grads.const_data_ptr<scalar_t>();
    scalar_t* dg = with_grad ? d_grads.mutable_data_ptr<scalar_t>() : nullptr;
    opmath_t* n_out = norms.mutable_data_ptr<opmath_t>();
    auto norm_of = [](opmath_t squares) { return std::sqrt(squares + static_cast<opmath_t>(kNormFloor)); };
    std::vector<opmath_t> squares;
    if (with_grad && cols <= kFusedRowElements && rows >= at::get_num_threads()) {
      squares.assign(static_cast<size_t>(rows), opmath_t(0));
      at::parallel_for(0, rows, std::max<int64_t>(1, kParallelGrainElements / std::max<int64_t>(cols, 1)),
                       [&](int64_t first, int64_t last) {
                         for (int64_t row = first; row < last; ++row) {
                           const scalar_t* g_row = g + row * cols;
                           opmath_t sum(0);  // chunk by chunk, in parallel_rows' order: the same norms either way
                           for (int64_t begin = 0; begin < cols; begin += kRowChunk) {
                             sum += sum_squares<scalar_t>(g_row + begin, std::min(kRowChunk, cols - begin));
                           }
                           squares[row] = sum;
                           const double coef = penalty_coef(static_cast<double>(norm_of(sum)), target, one_sided,
                                                            coef_scale);
                           scale_slice<scalar_t>(g_row, dg + row * cols, cols, static_cast<opmath_t>(coef));
                         }
                       });
    } else {
      squares = parallel_rows<opmath_t>(rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
        return sum_squares<scalar_t>(g + row * cols + begin, end - begin);
      });
      if (with_grad) {
        parallel_rows<opmath_t>(rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
          const double coef = penalty_coef(static_cast<double>(norm_of(squares[row])), target, one_sided, coef_scale);
          scale_slice<scalar_t>(g + row * cols + begin, dg + row * cols + begin, end - begin,
                                static_cast<opmath_t>(coef));
          return opmath_t(0);
        });
      }
    }
    for (int64_t b = 0; b < rows; ++b) {
      const opmath_t norm = norm_of(squares[b]);
      n_out[b] = norm;
      if (target == 0.0) {
        total += static_cast<double>(squares[b]);  // R1: the squared norm itself, no sqrt
      } else {
        const double h = penalty_h(static_cast<double>(norm), target, one_sided);
        total += h * h;
      }
    }
  });
  const double penalty = rows == 0 ? std::numeric_limits<double>::quiet_NaN()
                                   : weight * total / static_cast<double>(rows);
  return {scalar_result(penalty, grads.options()), norms, d_grads};
}

// d(loss)/d(grads) = coef[b] * grads[b], with (n = norms[b], h = n - target, clipped at 0 when one-sided)
//   coef[b] = grad_penalty * weight / B * 2 h / n + grad_norms[b] / n
at::Tensor grad_penalty_backward_cpu(const std::optional<at::Tensor>& grad_penalty_in,
                                     const std::optional<at::Tensor>& grad_norms_in, const at::Tensor& grads_in,
                                     const at::Tensor& norms_in, double target, double weight, bool one_sided) {
  const char* op = "grad_penalty_backward";
  check_penalty_args(grads_in, target, weight, op);
  const at::ScalarType acc = acc_type_of(grads_in.scalar_type());
  check_per_sample(norms_in, grads_in, acc, op, "norms", "grads");
  const bool has_gp = grad_penalty_in.has_value() && grad_penalty_in->defined();
  const bool has_gn = grad_norms_in.has_value() && grad_norms_in->defined();
  checks::same_device(op, "grads", grads_in, {{"grad_penalty", grad_penalty_in}, {"grad_norms", grad_norms_in}});
  if (has_gp) {
    checks::floating(op, "grad_penalty", *grad_penalty_in);
    TORCH_CHECK_VALUE(grad_penalty_in->numel() == 1, "fastgen.", op,
                      ": grad_penalty must be a scalar (the gradient of the penalty), got shape ",
                      grad_penalty_in->sizes());
  }
  if (has_gn) check_per_sample(*grad_norms_in, grads_in, acc, op, "grad_norms", "grads");

  const at::Tensor grads = is_batch_major_dense(grads_in) ? grads_in : grads_in.contiguous();
  const int64_t rows = grads.size(0);
  const int64_t cols = rows == 0 ? 0 : grads.numel() / rows;
  at::Tensor out = at::empty_like(grads);

  // Per-row coefficients, computed in double (B values) from the norms (acc dtype).
  std::vector<double> coef(static_cast<size_t>(rows), 0.0);
  AT_DISPATCH_FLOATING_TYPES(acc, "grad_penalty_backward_coef", [&] {
    const at::Tensor n = norms_in.contiguous();
    const at::Tensor gn = has_gn ? grad_norms_in->contiguous() : at::Tensor();
    const scalar_t* nv = n.const_data_ptr<scalar_t>();
    const scalar_t* gnv = has_gn ? gn.const_data_ptr<scalar_t>() : nullptr;
    const double scale = has_gp ? grad_penalty_in->item<double>() * (2.0 * weight / static_cast<double>(rows)) : 0.0;
    for (int64_t b = 0; b < rows; ++b) {
      const double norm = static_cast<double>(nv[b]);
      double c = has_gp ? penalty_coef(norm, target, one_sided, scale) : 0.0;
      if (has_gn) c += static_cast<double>(gnv[b]) / norm;
      coef[b] = c;
    }
  });

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grads.scalar_type(), "grad_penalty_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const scalar_t* g = grads.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    parallel_rows<opmath_t>(rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
      scale_slice<scalar_t>(g + row * cols + begin, o + row * cols + begin, end - begin,
                            static_cast<opmath_t>(coef[row]));
      return opmath_t(0);
    });
  });
  return out;
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(grad_penalty, m) {
  m.impl("interpolate", &interpolate_cpu);
  m.impl("interpolate_backward", &interpolate_backward_cpu);
  m.impl("grad_penalty", &grad_penalty_cpu);
  m.impl("grad_penalty_backward", &grad_penalty_backward_cpu);
}

}  // namespace fastgen
