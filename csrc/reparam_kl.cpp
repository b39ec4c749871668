// VAE reparameterized sampling fused with the KL divergence to N(0, I).
//
//   z      = mu + exp(0.5 * logvar) * eps
//   kl[b]  = -0.5 * sum_j (1 + logvar - mu^2 - exp(logvar))      (j over the non-batch dims)
//
// One pass forward and one pass backward. When eps is not given, it is drawn inside the
// kernel from Philox (common/philox.h) and regenerated in backward from the same seed,
// so the noise never touches memory.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/philox.h"
#include "common/reduction.h"
#include "common/rows.h"
#include "common/vec_io.h"
#include "common/vec_math.h"

namespace fastgen {
namespace {

// Noise is generated per block of this many elements into a stack buffer (a multiple of
// philox::kBlock, so every block starts on a whole counter block).
constexpr int64_t kNoiseBlock = 256;
static_assert(kNoiseBlock % philox::kBlock == 0 && kRowChunk % kNoiseBlock == 0,
              "row slices must start on whole noise blocks");

void check_pair(const at::Tensor& mu, const at::Tensor& logvar, const char* op) {
  TORCH_CHECK_VALUE(mu.dim() >= 1, "fastgen.", op, ": mu must have a batch dimension (at least 1-D), got a 0-d tensor");
  checks::floating(op, "mu", mu);
  checks::same_device(op, "mu", mu, {});
  checks::like(op, "logvar", logvar, "mu", mu);
}

void check_like_mu(const at::Tensor& t, const at::Tensor& mu, const char* op, const char* name) {
  checks::like(op, name, t, "mu", mu);
}

// The seed: a one-element int64 tensor on mu's device (a meta seed beside CPU tensors sent the
// call to the fake impl, which returned uninitialised memory).
void check_seed(const std::optional<at::Tensor>& seed, const at::Tensor& mu, const char* op) {
  if (!seed.has_value() || !seed->defined()) return;
  TORCH_CHECK_TYPE(seed->scalar_type() == at::kLong, "fastgen.", op, ": seed must be a one-element int64 tensor, got ",
                   seed->scalar_type());
  TORCH_CHECK_VALUE(seed->numel() == 1, "fastgen.", op, ": seed must be a one-element int64 tensor, got shape ",
                    seed->sizes());
  checks::same_device(op, "mu", mu, {{"seed", seed}});
}

uint64_t read_seed(const at::Tensor& seed, const char* op) { return static_cast<uint64_t>(seed.item<int64_t>()); }

// Operands of one call, all in the same batch-major dense layout (common/rows.h), so the
// element (row, j) of each sits at row * cols + j.
template <typename scalar_t>
struct Operands {
  const scalar_t* mu = nullptr;
  const scalar_t* logvar = nullptr;
  const scalar_t* eps = nullptr;     // null: draw Philox noise
  const scalar_t* grad_z = nullptr;  // backward only; null: no gradient flows from z
  scalar_t* z = nullptr;             // forward; null: KL only
  scalar_t* grad_mu = nullptr;
  scalar_t* grad_logvar = nullptr;
  scalar_t* grad_eps = nullptr;      // null: eps needs no gradient
  bool grad_kl = false;              // backward: a gradient flows from kl
  uint64_t seed = 0;
  int64_t cols = 0;
};

// Walks the row slice [begin, end) one vector at a time and calls
// body(offset, count, eps) with the element offset (row * cols + j), the number of live lanes
// and eps for those lanes: from the eps tensor, or from Philox noise drawn per block (when
// need_eps and no eps tensor was given). Lanes past `count` load as 0.
template <typename scalar_t, typename Body>
void walk_slice(const Operands<scalar_t>& p, bool need_eps, int64_t row, int64_t begin, int64_t end, const Body& body) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const bool draw_noise = need_eps && p.eps == nullptr;
  alignas(64) float noise[kNoiseBlock];
  for (int64_t block = begin; block < end; block += kNoiseBlock) {
    const int64_t len = std::min(kNoiseBlock, end - block);
    const int64_t base = row * p.cols + block;
    if (draw_noise) philox::fill_normals(p.seed, row, block, len, p.cols, noise);
    for (int64_t i = 0; i < len; i += W) {
      const int64_t n = std::min(W, len - i);
      Vec eps(0);
      if (draw_noise) {
        eps = IO::load_float(noise + i, n);
      } else if (need_eps) {
        eps = IO::load(p.eps + base + i, n);
      }
      body(base + i, n, eps);
    }
  }
}

// Forward over one row slice: writes z (if wanted) and returns
// sum(1 + logvar - mu^2 - exp(logvar)) over the slice.
template <typename scalar_t>
at::opmath_type<scalar_t> forward_slice(const Operands<scalar_t>& p, int64_t row, int64_t begin, int64_t end) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  const Vec one(1), half(0.5);
  Vec kl_terms(0);
  walk_slice(p, /*need_eps=*/p.z != nullptr, row, begin, end, [&](int64_t at, int64_t n, const Vec& eps) {
    const Vec mu = IO::load(p.mu + at, n);
    const Vec logvar = IO::load(p.logvar + at, n);
    const Vec std = vec_math::exp(logvar * half);
    if (p.z != nullptr) IO::store(p.z + at, at::vec::fmadd(std, eps, mu), n);
    // Lanes past n were loaded as 0 and add 1 + 0 - 0 - 1 = 0.
    kl_terms = kl_terms + (one + logvar - mu * mu - std * std);
  });
  return IO::sum_lanes(kl_terms);
}

// Backward over one row slice, given d(loss)/d(kl[row]) = grad_kl_row:
//   grad_mu     = grad_z + grad_kl_row * mu
//   grad_logvar = 0.5 * grad_z * std * eps + 0.5 * grad_kl_row * (exp(logvar) - 1)
//   grad_eps    = grad_z * std
template <typename scalar_t>
void backward_slice(const Operands<scalar_t>& p, at::opmath_type<scalar_t> grad_kl_row, int64_t row, int64_t begin,
                    int64_t end) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  const bool has_grad_z = p.grad_z != nullptr;
  const Vec one(1), half(0.5), gkl(grad_kl_row);
  walk_slice(p, /*need_eps=*/has_grad_z, row, begin, end, [&](int64_t at, int64_t n, const Vec& eps) {
    const Vec mu = IO::load(p.mu + at, n);
    const Vec logvar = IO::load(p.logvar + at, n);
    const Vec std = vec_math::exp(logvar * half);
    // Without a gradient from kl its terms are absent, not 0 * (...): an infinite mu or logvar
    // would make them NaN where eager's gradient (from z alone) is finite.
    Vec grad_mu = p.grad_kl ? gkl * mu : Vec(0);
    Vec grad_logvar = p.grad_kl ? half * gkl * (std * std - one) : Vec(0);
    if (has_grad_z) {
      const Vec grad_z = IO::load(p.grad_z + at, n);
      grad_mu = grad_mu + grad_z;
      grad_logvar = at::vec::fmadd(half * grad_z * std, eps, grad_logvar);
      if (p.grad_eps != nullptr) IO::store(p.grad_eps + at, grad_z * std, n);
    }
    IO::store(p.grad_mu + at, grad_mu, n);
    IO::store(p.grad_logvar + at, grad_logvar, n);
  });
}

// The shared forward of reparam_kl and kl_normal. `want_z` false computes the KL only.
std::tuple<at::Tensor, at::Tensor> forward_impl(const at::Tensor& mu_in, const at::Tensor& logvar_in,
                                                const std::optional<at::Tensor>& eps_in,
                                                const std::optional<at::Tensor>& seed, c10::string_view reduction_name,
                                                bool want_z, const char* op) {
  check_pair(mu_in, logvar_in, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  const bool has_eps = eps_in.has_value() && eps_in->defined();
  if (has_eps) check_like_mu(*eps_in, mu_in, op, "eps");
  check_seed(seed, mu_in, op);
  TORCH_CHECK_VALUE(!want_z || has_eps || (seed.has_value() && seed->defined()), "fastgen.", op,
                    ": either eps or seed must be given");

  const at::Tensor mu = is_batch_major_dense(mu_in) ? mu_in : mu_in.contiguous();
  const at::Tensor logvar = in_layout_of(logvar_in, mu);
  const at::Tensor eps = has_eps ? in_layout_of(*eps_in, mu) : at::Tensor();
  const int64_t rows = mu.size(0);
  const int64_t cols = rows == 0 ? 0 : mu.numel() / rows;
  at::Tensor z = want_z ? at::empty_like(mu) : at::Tensor();
  at::Tensor kl;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, mu.scalar_type(), "reparam_kl", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    Operands<scalar_t> p;
    p.mu = mu.const_data_ptr<scalar_t>();
    p.logvar = logvar.const_data_ptr<scalar_t>();
    p.eps = has_eps ? eps.const_data_ptr<scalar_t>() : nullptr;
    p.z = want_z ? z.mutable_data_ptr<scalar_t>() : nullptr;
    p.seed = (want_z && !has_eps) ? read_seed(*seed, op) : 0;
    p.cols = cols;
    std::vector<opmath_t> row_sums = parallel_rows<opmath_t>(rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
      return forward_slice<scalar_t>(p, row, begin, end);
    });
    for (auto& v : row_sums) v *= opmath_t(-0.5);
    if (reduction == Reduction::None) {
      kl = at::empty({rows}, mu.options());
      scalar_t* out = kl.mutable_data_ptr<scalar_t>();
      for (int64_t b = 0; b < rows; ++b) out[b] = static_cast<scalar_t>(row_sums[b]);
    } else {
      kl = scalar_result(reduce_rows(row_sums, reduction), mu.options());
    }
  });
  return {z, kl};
}

std::tuple<at::Tensor, at::Tensor> reparam_kl_cpu(const at::Tensor& mu, const at::Tensor& logvar,
                                                  const std::optional<at::Tensor>& eps,
                                                  const std::optional<at::Tensor>& seed, c10::string_view reduction) {
  return forward_impl(mu, logvar, eps, seed, reduction, /*want_z=*/true, "reparam_kl");
}

at::Tensor kl_normal_cpu(const at::Tensor& mu, const at::Tensor& logvar, c10::string_view reduction) {
  return std::get<1>(forward_impl(mu, logvar, std::nullopt, std::nullopt, reduction,
                                  /*want_z=*/false, "kl_normal"));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> reparam_kl_backward_cpu(
    const std::optional<at::Tensor>& grad_z_in, const std::optional<at::Tensor>& grad_kl_in, const at::Tensor& mu_in,
    const at::Tensor& logvar_in, const std::optional<at::Tensor>& eps_in, const std::optional<at::Tensor>& seed,
    c10::string_view reduction_name, bool eps_grad) {
  const char* op = "reparam_kl_backward";
  check_pair(mu_in, logvar_in, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  const bool has_grad_z = grad_z_in.has_value() && grad_z_in->defined();
  const bool has_grad_kl = grad_kl_in.has_value() && grad_kl_in->defined();
  const bool has_eps = eps_in.has_value() && eps_in->defined();
  if (has_grad_z) check_like_mu(*grad_z_in, mu_in, op, "grad_z");
  if (has_eps) check_like_mu(*eps_in, mu_in, op, "eps");
  check_seed(seed, mu_in, op);
  if (has_grad_kl) {
    checks::floating(op, "grad_kl", *grad_kl_in);
    checks::same_device(op, "mu", mu_in, {{"grad_kl", grad_kl_in}});
  }
  TORCH_CHECK_VALUE(!has_grad_z || has_eps || (seed.has_value() && seed->defined()), "fastgen.", op,
                    ": grad_z needs eps or the forward's seed to regenerate the noise");
  TORCH_CHECK_VALUE(!eps_grad || has_eps, "fastgen.", op, ": eps_grad=True needs eps");

  const at::Tensor mu = is_batch_major_dense(mu_in) ? mu_in : mu_in.contiguous();
  const at::Tensor logvar = in_layout_of(logvar_in, mu);
  const at::Tensor eps = has_eps ? in_layout_of(*eps_in, mu) : at::Tensor();
  const at::Tensor grad_z = has_grad_z ? in_layout_of(*grad_z_in, mu) : at::Tensor();
  const int64_t rows = mu.size(0);
  const int64_t cols = rows == 0 ? 0 : mu.numel() / rows;

  // d(loss)/d(kl[row]) for every row, from the gradient of the (reduced) kl output.
  std::vector<double> grad_kl_rows(static_cast<size_t>(rows), 0.0);
  if (has_grad_kl) {
    const at::Tensor g = grad_kl_in->to(at::kDouble).contiguous();
    if (reduction == Reduction::None) {
      TORCH_CHECK_VALUE(g.dim() == 1 && g.size(0) == rows, "fastgen.", op, ": grad_kl must have shape (", rows,
                        ",) for reduction='none', got ", g.sizes());
      const double* src = g.const_data_ptr<double>();
      std::copy(src, src + rows, grad_kl_rows.begin());
    } else {
      TORCH_CHECK_VALUE(g.numel() == 1, "fastgen.", op, ": grad_kl must be a scalar for reduction='",
                        std::string(reduction_name), "', got shape ", g.sizes());
      const double scale = reduction == Reduction::Mean ? 1.0 / static_cast<double>(rows) : 1.0;
      std::fill(grad_kl_rows.begin(), grad_kl_rows.end(), g.item<double>() * scale);
    }
  }

  at::Tensor grad_mu = at::empty_like(mu);
  at::Tensor grad_logvar = at::empty_like(mu);
  // grad_eps = grad_z * std: written by the row walk only when grad_z is given, zero otherwise.
  at::Tensor grad_eps = !eps_grad ? at::empty({0}, mu.options()) : has_grad_z ? at::empty_like(mu) : at::zeros_like(mu);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, mu.scalar_type(), "reparam_kl_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    Operands<scalar_t> p;
    p.mu = mu.const_data_ptr<scalar_t>();
    p.logvar = logvar.const_data_ptr<scalar_t>();
    p.eps = has_eps ? eps.const_data_ptr<scalar_t>() : nullptr;
    p.grad_z = has_grad_z ? grad_z.const_data_ptr<scalar_t>() : nullptr;
    p.grad_mu = grad_mu.mutable_data_ptr<scalar_t>();
    p.grad_logvar = grad_logvar.mutable_data_ptr<scalar_t>();
    p.grad_eps = eps_grad ? grad_eps.mutable_data_ptr<scalar_t>() : nullptr;
    p.grad_kl = has_grad_kl;
    p.seed = (has_grad_z && !has_eps) ? read_seed(*seed, op) : 0;
    p.cols = cols;
    parallel_rows<opmath_t>(rows, cols, [&](int64_t row, int64_t begin, int64_t end) {
      backward_slice<scalar_t>(p, static_cast<opmath_t>(grad_kl_rows[row]), row, begin, end);
      return opmath_t(0);
    });
  });
  return {grad_mu, grad_logvar, grad_eps};
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(reparam_kl, m) {
  m.impl("reparam_kl", &reparam_kl_cpu);
  m.impl("kl_normal", &kl_normal_cpu);
  m.impl("reparam_kl_backward", &reparam_kl_backward_cpu);
}

}  // namespace fastgen
