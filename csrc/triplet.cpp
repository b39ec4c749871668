// Siamese / metric-learning losses, one pass over the embeddings each way:
//
//   triplet_margin_loss   torch's semantics: d(x, y) = ||x - y + eps||_p, loss = max(margin + d(a, p)
//                         - d(a, n), 0), with `swap` using min(d(a, n), d(p, n)).
//   contrastive_loss      d = ||x1 - x2 + eps||_2, loss = y d^2 + (1 - y) max(margin - d, 0)^2
//                         (Hadsell et al.; y = 1 for a pair of the same class).
//   batch_hard_triplet    for every anchor, the hardest positive (farthest, same label) and the
//                         hardest negative (nearest, other label) found while the pairwise
//                         distances are computed (no B x B matrix), loss = relu(d_ap - d_an + margin),
//                         averaged over the anchors that have both; distances are
//                         ||e_i - e_j|| (or its square), whose gradient is 0 at 0 (no NaN for
//                         identical points).
//
// Distances are computed from the differences (not from a Gram matrix), accumulated in
// float32 (float64 for float64).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <array>
#include <cmath>
#include <limits>
#include <vector>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/reduction.h"
#include "common/vec_io.h"

namespace fastgen {
namespace {

template <typename T>
using Opmath = at::opmath_type<T>;

// ---------------------------------------------------------------------------------------
// p-norm distances between rows and their gradients

enum class NormKind { L2, L1, Inf, General };

struct PNorm {
  NormKind kind;
  double p;
  explicit PNorm(double p_) : p(p_) {
    kind = p_ == 2.0 ? NormKind::L2 : p_ == 1.0 ? NormKind::L1 : std::isinf(p_) ? NormKind::Inf : NormKind::General;
  }
};

// torch.minimum: NaN if either is NaN.
template <typename T>
inline T nan_min(T a, T b) {
  return (std::isnan(a) || a < b) ? a : b;
}

template <typename T>
inline T sgn(T v) {
  return v > T(0) ? T(1) : (v < T(0) ? T(-1) : T(0));
}

// ||x - y + eps||_p over n elements.
template <typename scalar_t>
Opmath<scalar_t> distance(const scalar_t* x, const scalar_t* y, int64_t n, Opmath<scalar_t> eps, const PNorm& norm) {
  using opmath_t = Opmath<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Vec ve(eps);
  if (norm.kind == NormKind::L2 || norm.kind == NormKind::L1) {
    Vec acc(0);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t cnt = std::min(W, n - i);
      const Vec v = Vec::set(Vec(0), IO::load(x + i, cnt) - IO::load(y + i, cnt) + ve, cnt);
      acc = norm.kind == NormKind::L2 ? at::vec::fmadd(v, v, acc) : acc + v.abs();
    }
    const opmath_t total = IO::sum_lanes(acc);
    return norm.kind == NormKind::L2 ? std::sqrt(total) : total;
  }
  opmath_t acc = 0;
  for (int64_t i = 0; i < n; ++i) {
    const opmath_t v = std::abs(static_cast<opmath_t>(x[i]) - static_cast<opmath_t>(y[i]) + eps);
    if (norm.kind == NormKind::Inf) {
      acc = (std::isnan(v) || v > acc) ? v : acc;
    } else {
      acc += std::pow(v, static_cast<opmath_t>(norm.p));
    }
  }
  return norm.kind == NormKind::Inf ? acc : std::pow(acc, static_cast<opmath_t>(1.0 / norm.p));
}

// out[0, n) += g * d||x - y + eps||_p / dx (the gradient w.r.t. y is its negative), given the
// distance d. At d = 0 the gradient is 0, as torch's norm backward.
template <typename scalar_t>
void add_distance_grad(Opmath<scalar_t>* out, const scalar_t* x, const scalar_t* y, int64_t n, Opmath<scalar_t> eps,
                       Opmath<scalar_t> d, Opmath<scalar_t> g, const PNorm& norm) {
  using opmath_t = Opmath<scalar_t>;
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  if (g == opmath_t(0) || d == opmath_t(0)) return;
  const Vec ve(eps);
  if (norm.kind == NormKind::L2) {
    const Vec scale(g / d);
    for (int64_t i = 0; i < n; i += W) {
      const int64_t cnt = std::min(W, n - i);
      const Vec v = IO::load(x + i, cnt) - IO::load(y + i, cnt) + ve;
      at::vec::fmadd(scale, v, Vec::loadu(out + i, cnt)).store(out + i, cnt);
    }
    return;
  }
  if (norm.kind == NormKind::L1) {
    for (int64_t i = 0; i < n; ++i) out[i] += g * sgn(static_cast<opmath_t>(x[i]) - static_cast<opmath_t>(y[i]) + eps);
    return;
  }
  if (norm.kind == NormKind::Inf) {
    // torch: sgn(v) * (|v| == max) / (number of maxima)
    int64_t ties = 0;
    for (int64_t i = 0; i < n; ++i) {
      ties += std::abs(static_cast<opmath_t>(x[i]) - static_cast<opmath_t>(y[i]) + eps) == d;
    }
    for (int64_t i = 0; i < n; ++i) {
      const opmath_t v = static_cast<opmath_t>(x[i]) - static_cast<opmath_t>(y[i]) + eps;
      if (std::abs(v) == d) out[i] += g * sgn(v) / static_cast<opmath_t>(ties);
    }
    return;
  }
  // general p: sgn(v) |v|^(p - 1) / d^(p - 1)
  const opmath_t p = static_cast<opmath_t>(norm.p);
  const opmath_t inv = g / std::pow(d, p - opmath_t(1));
  for (int64_t i = 0; i < n; ++i) {
    const opmath_t v = static_cast<opmath_t>(x[i]) - static_cast<opmath_t>(y[i]) + eps;
    if (v != opmath_t(0)) out[i] += inv * sgn(v) * std::pow(std::abs(v), p - opmath_t(1));
  }
}

// d(loss)/d(loss[b]) for every row from the gradient of the (reduced) loss; `count` is the
// number of rows a "mean" divides by.
std::vector<double> row_grads(const at::Tensor& grad, Reduction reduction, int64_t rows, int64_t count,
                              const char* op) {
  std::vector<double> out(static_cast<size_t>(rows), 0.0);
  checks::floating(op, "grad", grad);
  checks::same_device(op, "grad", grad, {});
  const at::Tensor g = grad.to(at::kDouble).contiguous();
  if (reduction == Reduction::None) {
    TORCH_CHECK_VALUE(g.dim() == 1 && g.size(0) == rows, "fastgen.", op, ": grad must have shape (", rows,
                      ",) for reduction='none', got ", g.sizes());
    std::copy(g.const_data_ptr<double>(), g.const_data_ptr<double>() + rows, out.begin());
  } else {
    TORCH_CHECK_VALUE(g.numel() == 1, "fastgen.", op, ": grad must be a scalar for a reduced loss, got shape ",
                      g.sizes());
    const double scale = reduction == Reduction::Mean ? 1.0 / static_cast<double>(count) : 1.0;
    std::fill(out.begin(), out.end(), g.item<double>() * scale);
  }
  return out;
}

at::Tensor reduce_loss(const std::vector<double>& per_row, Reduction reduction, const at::TensorOptions& opts,
                       int64_t mean_count) {
  if (reduction == Reduction::None) {
    at::Tensor out = at::empty({static_cast<int64_t>(per_row.size())}, opts.dtype(at::kDouble));
    std::copy(per_row.begin(), per_row.end(), out.mutable_data_ptr<double>());
    return out.to(opts.dtype());
  }
  double total = 0;
  for (const double v : per_row) total += v;
  if (reduction == Reduction::Mean) {
    total = mean_count > 0 ? total / static_cast<double>(mean_count) : std::numeric_limits<double>::quiet_NaN();
  }
  return scalar_result(total, opts);
}

void check_rows(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name, const char* ref_name) {
  checks::like(op, name, t, ref_name, ref);
}

void check_embeddings(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK_VALUE(x.dim() == 2, "fastgen.", op, ": ", name, " must be 2-D (batch, embedding_size), got ", x.dim(),
                    "-D");
  checks::floating(op, name, x);
  checks::same_device(op, name, x, {});
}

constexpr int64_t kRowGrain = 16384;  // elements of work per task

// ---------------------------------------------------------------------------------------
// triplet margin loss

struct TripletArgs {
  double margin, eps;
  PNorm norm;
  bool swap;
};

// Per row: the loss and which negative distance was used (0: d(a, n), 1: d(p, n), 2: tie).
template <typename scalar_t>
void triplet_row(const scalar_t* a, const scalar_t* p, const scalar_t* n, int64_t D, const TripletArgs& t,
                 Opmath<scalar_t>& d_ap, Opmath<scalar_t>& d_an, Opmath<scalar_t>& d_pn, double& loss) {
  using opmath_t = Opmath<scalar_t>;
  const opmath_t eps = static_cast<opmath_t>(t.eps);
  d_ap = distance(a, p, D, eps, t.norm);
  d_an = distance(a, n, D, eps, t.norm);
  d_pn = t.swap ? distance(p, n, D, eps, t.norm) : opmath_t(0);
  const opmath_t v = static_cast<opmath_t>(t.margin) + d_ap - (t.swap ? nan_min(d_an, d_pn) : d_an);
  loss = std::isnan(v) ? v : std::max<double>(v, 0.0);
}

void check_triplet(const at::Tensor& a, const at::Tensor& p, const at::Tensor& n, double pnorm, const char* op) {
  check_embeddings(a, op, "anchor");
  check_rows(p, a, op, "positive", "anchor");
  check_rows(n, a, op, "negative", "anchor");
  TORCH_CHECK_VALUE(pnorm > 0, "fastgen.", op, ": p must be positive, got ", pnorm);
}

// As torch.nn.functional.triplet_margin_loss: margin <= 0 is refused (NaN passes, giving NaN).
void check_margin(double margin, const char* op) {
  TORCH_CHECK_VALUE(!(margin <= 0), "fastgen.", op, ": margin must be greater than 0, got ", margin);
}

at::Tensor triplet_margin_loss_cpu(const at::Tensor& anchor, const at::Tensor& positive, const at::Tensor& negative,
                                   double margin, double pnorm, double eps, bool swap,
                                   c10::string_view reduction_name) {
  const char* op = "triplet_margin_loss";
  check_triplet(anchor, positive, negative, pnorm, op);
  check_margin(margin, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  const at::Tensor a = anchor.contiguous(), p = positive.contiguous(), n = negative.contiguous();
  const int64_t B = a.size(0), D = a.size(1);
  std::vector<double> loss(B, 0.0);
  const TripletArgs t{margin, eps, PNorm(pnorm), swap};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "triplet_margin_loss", [&] {
    using opmath_t = Opmath<scalar_t>;
    const scalar_t *pa = a.const_data_ptr<scalar_t>(), *pp = p.const_data_ptr<scalar_t>(),
                   *pn = n.const_data_ptr<scalar_t>();
    at::parallel_for(0, B, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(3 * D, 1)), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        opmath_t d_ap, d_an, d_pn;
        triplet_row(pa + b * D, pp + b * D, pn + b * D, D, t, d_ap, d_an, d_pn, loss[b]);
      }
    });
  });
  return reduce_loss(loss, reduction, a.options(), B);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> triplet_margin_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& anchor, const at::Tensor& positive, const at::Tensor& negative,
    double margin, double pnorm, double eps, bool swap, c10::string_view reduction_name) {
  const char* op = "triplet_margin_loss_backward";
  check_triplet(anchor, positive, negative, pnorm, op);
  check_margin(margin, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  const at::Tensor a = anchor.contiguous(), p = positive.contiguous(), n = negative.contiguous();
  const int64_t B = a.size(0), D = a.size(1);
  const std::vector<double> g = row_grads(grad, reduction, B, B, op);
  at::Tensor ga = at::empty_like(a), gp = at::empty_like(a), gn = at::empty_like(a);
  const TripletArgs t{margin, eps, PNorm(pnorm), swap};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "triplet_margin_loss_backward", [&] {
    using opmath_t = Opmath<scalar_t>;
    using IO = VecIO<scalar_t>;
    constexpr int64_t W = IO::size();
    const scalar_t *pa = a.const_data_ptr<scalar_t>(), *pp = p.const_data_ptr<scalar_t>(),
                   *pn = n.const_data_ptr<scalar_t>();
    scalar_t *oa = ga.mutable_data_ptr<scalar_t>(), *op_ = gp.mutable_data_ptr<scalar_t>(),
             *on = gn.mutable_data_ptr<scalar_t>();
    const opmath_t e = static_cast<opmath_t>(eps);
    at::parallel_for(0, B, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(6 * D, 1)), [&](int64_t b0, int64_t b1) {
      std::vector<opmath_t> bufa(D), bufp(D), bufn(D);
      for (int64_t b = b0; b < b1; ++b) {
        std::fill(bufa.begin(), bufa.end(), opmath_t(0));
        std::fill(bufp.begin(), bufp.end(), opmath_t(0));
        std::fill(bufn.begin(), bufn.end(), opmath_t(0));
        const scalar_t *ra = pa + b * D, *rp = pp + b * D, *rn = pn + b * D;
        opmath_t d_ap, d_an, d_pn;
        double loss;
        triplet_row(ra, rp, rn, D, t, d_ap, d_an, d_pn, loss);
        // clamp_min's gradient passes where margin + d_ap - d_neg >= 0
        const opmath_t neg = swap ? nan_min(d_an, d_pn) : d_an;
        const opmath_t gr = static_cast<opmath_t>(g[b]);
        if (static_cast<opmath_t>(margin) + d_ap - neg >= 0 && gr != 0) {
          add_distance_grad(bufa.data(), ra, rp, D, e, d_ap, gr, t.norm);      // + d(a, p)
          for (int64_t i = 0; i < D; ++i) bufp[i] = -bufa[i];
          // - d_neg; torch.minimum splits the gradient of a tie in halves
          const opmath_t w_an = !swap || d_an < d_pn ? opmath_t(1) : (d_an == d_pn ? opmath_t(0.5) : opmath_t(0));
          const opmath_t w_pn = swap ? opmath_t(1) - w_an : opmath_t(0);
          if (w_an != 0) {
            add_distance_grad(bufn.data(), ra, rn, D, e, d_an, gr * w_an, t.norm);  // d/dn of -d(a, n)
            for (int64_t i = 0; i < D; ++i) bufa[i] -= bufn[i];
          }
          if (w_pn != 0) {
            std::vector<opmath_t> tmp(D, opmath_t(0));
            add_distance_grad(tmp.data(), rp, rn, D, e, d_pn, gr * w_pn, t.norm);
            for (int64_t i = 0; i < D; ++i) {
              bufp[i] -= tmp[i];
              bufn[i] += tmp[i];
            }
          }
        }
        // NaN in, NaN out: a triplet whose loss is NaN (a NaN element, or inf - inf) gets NaN
        // gradients for a, p and n, whatever p-norm (eager's depend on it: 0 * NaN in its chain
        // rule for p = 2, plain 0 for p = 1), so that GradScaler and NaN checks see it.
        if (std::isnan(loss) && gr != 0) {
          for (auto* buf : {&bufa, &bufp, &bufn}) {
            std::fill(buf->begin(), buf->end(), std::numeric_limits<opmath_t>::quiet_NaN());
          }
        }
        for (int64_t i = 0; i < D; i += W) {
          const int64_t cnt = std::min(W, D - i);
          IO::store(oa + b * D + i, IO::Vec::loadu(bufa.data() + i, cnt), cnt);
          IO::store(op_ + b * D + i, IO::Vec::loadu(bufp.data() + i, cnt), cnt);
          IO::store(on + b * D + i, IO::Vec::loadu(bufn.data() + i, cnt), cnt);
        }
      }
    });
  });
  return {ga, gp, gn};
}

// ---------------------------------------------------------------------------------------
// contrastive loss

void check_contrastive(const at::Tensor& x1, const at::Tensor& x2, const at::Tensor& y, const char* op) {
  check_embeddings(x1, op, "x1");
  check_rows(x2, x1, op, "x2", "x1");
  TORCH_CHECK_VALUE(y.dim() == 1 && y.size(0) == x1.size(0), "fastgen.", op, ": y must have shape (", x1.size(0),
                    ",), got ", y.sizes());
  checks::same_device(op, "x1", x1, {{"y", y}});
}

at::Tensor contrastive_loss_cpu(const at::Tensor& x1_in, const at::Tensor& x2_in, const at::Tensor& y_in, double margin,
                                double eps, c10::string_view reduction_name) {
  const char* op = "contrastive_loss";
  check_contrastive(x1_in, x2_in, y_in, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  const at::Tensor x1 = x1_in.contiguous(), x2 = x2_in.contiguous();
  const at::Tensor y = y_in.to(at::kDouble).contiguous();
  const int64_t B = x1.size(0), D = x1.size(1);
  std::vector<double> loss(B, 0.0);
  const PNorm l2(2.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x1.scalar_type(), "contrastive_loss", [&] {
    using opmath_t = Opmath<scalar_t>;
    const scalar_t *p1 = x1.const_data_ptr<scalar_t>(), *p2 = x2.const_data_ptr<scalar_t>();
    const double* py = y.const_data_ptr<double>();
    at::parallel_for(0, B, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(2 * D, 1)), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const double d = distance(p1 + b * D, p2 + b * D, D, static_cast<opmath_t>(eps), l2);
        const double hinge = std::max(margin - d, 0.0);
        loss[b] = py[b] * d * d + (1.0 - py[b]) * hinge * hinge;
      }
    });
  });
  return reduce_loss(loss, reduction, x1.options(), B);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> contrastive_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& x1_in, const at::Tensor& x2_in, const at::Tensor& y_in, double margin,
    double eps, c10::string_view reduction_name, bool y_grad) {
  const char* op = "contrastive_loss_backward";
  check_contrastive(x1_in, x2_in, y_in, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  TORCH_CHECK_TYPE(!y_grad || at::isFloatingType(y_in.scalar_type()), "fastgen.", op,
                   ": y_grad=True needs a floating-point y, got ", y_in.scalar_type());
  const at::Tensor x1 = x1_in.contiguous(), x2 = x2_in.contiguous();
  const at::Tensor y = y_in.to(at::kDouble).contiguous();
  const int64_t B = x1.size(0), D = x1.size(1);
  const std::vector<double> g = row_grads(grad, reduction, B, B, op);
  at::Tensor g1 = at::empty_like(x1), g2 = at::empty_like(x1);
  std::vector<double> gy(B, 0.0);
  const PNorm l2(2.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x1.scalar_type(), "contrastive_loss_backward", [&] {
    using opmath_t = Opmath<scalar_t>;
    using IO = VecIO<scalar_t>;
    constexpr int64_t W = IO::size();
    const scalar_t *p1 = x1.const_data_ptr<scalar_t>(), *p2 = x2.const_data_ptr<scalar_t>();
    scalar_t *o1 = g1.mutable_data_ptr<scalar_t>(), *o2 = g2.mutable_data_ptr<scalar_t>();
    const double* py = y.const_data_ptr<double>();
    const opmath_t e = static_cast<opmath_t>(eps);
    at::parallel_for(0, B, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(4 * D, 1)), [&](int64_t b0, int64_t b1) {
      std::vector<opmath_t> buf(D);
      for (int64_t b = b0; b < b1; ++b) {
        std::fill(buf.begin(), buf.end(), opmath_t(0));
        const scalar_t *r1 = p1 + b * D, *r2 = p2 + b * D;
        const opmath_t d = distance(r1, r2, D, e, l2);
        const double hinge = std::max(margin - static_cast<double>(d), 0.0);
        // d loss / d d = 2 y d - 2 (1 - y) max(margin - d, 0)
        const double dl_dd = 2.0 * py[b] * d - 2.0 * (1.0 - py[b]) * hinge;
        add_distance_grad(buf.data(), r1, r2, D, e, d, static_cast<opmath_t>(g[b] * dl_dd), l2);
        gy[b] = g[b] * (static_cast<double>(d) * d - hinge * hinge);
        for (int64_t i = 0; i < D; i += W) {
          const int64_t cnt = std::min(W, D - i);
          const auto v = IO::Vec::loadu(buf.data() + i, cnt);
          IO::store(o1 + b * D + i, v, cnt);
          IO::store(o2 + b * D + i, v.neg(), cnt);
        }
      }
    });
  });
  at::Tensor grad_y = at::empty({y_grad ? B : 0}, y_grad ? y_in.options() : x1.options());
  if (y_grad) {
    at::Tensor tmp = at::empty({B}, y_in.options().dtype(at::kDouble));
    std::copy(gy.begin(), gy.end(), tmp.mutable_data_ptr<double>());
    grad_y.copy_(tmp);
  }
  return {g1, g2, grad_y};
}

// ---------------------------------------------------------------------------------------
// batch-hard triplet loss

void check_batch_hard(const at::Tensor& emb, const at::Tensor& labels, const char* op) {
  check_embeddings(emb, op, "embeddings");
  TORCH_CHECK_VALUE(labels.dim() == 1 && labels.size(0) == emb.size(0), "fastgen.", op, ": labels must have shape (",
                    emb.size(0), ",), got ", labels.sizes());
  checks::integral(op, "labels", labels);
  checks::same_device(op, "embeddings", emb, {{"labels", labels}});
}

// Squared distance between two rows (no eps: identical points are at 0), summed in element
// order with fused multiply-adds: exactly what the forward's vector lanes compute, so the
// backward sees the forward's distances bit for bit.
template <typename scalar_t>
Opmath<scalar_t> squared_distance(const scalar_t* x, const scalar_t* y, int64_t n) {
  using opmath_t = Opmath<scalar_t>;
  opmath_t acc = 0;
  for (int64_t k = 0; k < n; ++k) {
    const opmath_t v = static_cast<opmath_t>(x[k]) - static_cast<opmath_t>(y[k]);
    acc = std::fma(v, v, acc);
  }
  return acc;
}

// Squared distances from one anchor row `a` (opmath, E elements) to candidates [j0, j0 + 4W)
// of the transposed embeddings eT (E x ld, opmath): each lane sums its candidate's squared
// differences in element order (as squared_distance above).
template <typename opmath_t>
inline void anchor_distances(const opmath_t* a, const opmath_t* eT, int64_t ld, int64_t E, int64_t j0, opmath_t* out) {
  using Vec = at::vec::Vectorized<opmath_t>;
  constexpr int64_t W = Vec::size();
  Vec acc0(0), acc1(0), acc2(0), acc3(0);
  for (int64_t k = 0; k < E; ++k) {
    const Vec ak(a[k]);
    const opmath_t* col = eT + k * ld + j0;
    const Vec v0 = ak - Vec::loadu(col), v1 = ak - Vec::loadu(col + W);
    const Vec v2 = ak - Vec::loadu(col + 2 * W), v3 = ak - Vec::loadu(col + 3 * W);
    acc0 = at::vec::fmadd(v0, v0, acc0);
    acc1 = at::vec::fmadd(v1, v1, acc1);
    acc2 = at::vec::fmadd(v2, v2, acc2);
    acc3 = at::vec::fmadd(v3, v3, acc3);
  }
  acc0.store(out);
  acc1.store(out + W);
  acc2.store(out + 2 * W);
  acc3.store(out + 3 * W);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_hard_triplet_loss_cpu(const at::Tensor& emb_in,
                                                                           const at::Tensor& labels_in, double margin,
                                                                           bool squared,
                                                                           c10::string_view reduction_name) {
  const char* op = "batch_hard_triplet_loss";
  check_batch_hard(emb_in, labels_in, op);
  const Reduction reduction = parse_reduction(reduction_name, op);
  const at::Tensor emb = emb_in.contiguous();
  const at::Tensor labels = labels_in.to(at::kLong).contiguous();
  const int64_t B = emb.size(0), E = emb.size(1);
  at::Tensor pos = at::empty({B}, emb.options().dtype(at::kLong));
  at::Tensor neg = at::empty({B}, emb.options().dtype(at::kLong));
  std::vector<double> loss(B, 0.0);
  int64_t* pos_idx = pos.mutable_data_ptr<int64_t>();
  int64_t* neg_idx = neg.mutable_data_ptr<int64_t>();
  const int64_t* y = labels.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, emb.scalar_type(), "batch_hard_triplet_loss", [&] {
    using opmath_t = Opmath<scalar_t>;
    constexpr int64_t W = at::vec::Vectorized<opmath_t>::size();
    constexpr int64_t kGroup = 4 * W;  // candidates per anchor_distances call
    const scalar_t* e = emb.const_data_ptr<scalar_t>();
    // The embeddings transposed (E x ld, candidates padded to whole groups) in opmath, so one
    // vector holds one element of W candidates: W distances per FMA, no horizontal sums.
    const int64_t ld = std::max<int64_t>(kGroup, (B + kGroup - 1) / kGroup * kGroup);
    std::vector<opmath_t> eT(static_cast<size_t>(E * ld), opmath_t(0));
    for (int64_t j = 0; j < B; ++j) {
      for (int64_t k = 0; k < E; ++k) eT[k * ld + j] = static_cast<opmath_t>(e[j * E + k]);
    }
    at::parallel_for(0, B, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(B * E, 1)), [&](int64_t i0, int64_t i1) {
      std::vector<opmath_t> a(E);
      alignas(64) opmath_t d2[kGroup];
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t k = 0; k < E; ++k) a[k] = static_cast<opmath_t>(e[i * E + k]);
        // Hardest positive: the largest distance (the first on ties); hardest negative: the
        // smallest. Squared distances order as distances do. NaN wins and stays (torch's
        // max / min propagate it).
        opmath_t best_pos = -1, best_neg = std::numeric_limits<opmath_t>::infinity();
        int64_t p = -1, n = -1;
        for (int64_t j0 = 0; j0 < B; j0 += kGroup) {
          anchor_distances(a.data(), eT.data(), ld, E, j0, d2);
          const int64_t count = std::min(kGroup, B - j0);
          for (int64_t l = 0; l < count; ++l) {
            const int64_t j = j0 + l;
            if (j == i) continue;
            if (y[j] == y[i]) {
              if (!std::isnan(best_pos) && (std::isnan(d2[l]) || d2[l] > best_pos)) {
                best_pos = d2[l];
                p = j;
              }
            } else if (!std::isnan(best_neg) && (std::isnan(d2[l]) || d2[l] < best_neg)) {
              best_neg = d2[l];
              n = j;
            }
          }
        }
        pos_idx[i] = p;
        neg_idx[i] = n;
        if (p >= 0 && n >= 0) {
          const opmath_t dp = squared ? best_pos : std::sqrt(best_pos);
          const opmath_t dn = squared ? best_neg : std::sqrt(best_neg);
          const double v = static_cast<double>(dp - dn + static_cast<opmath_t>(margin));
          loss[i] = std::isnan(v) ? v : std::max(v, 0.0);
        }
      }
    });
  });
  int64_t valid = 0;
  for (int64_t i = 0; i < B; ++i) valid += pos_idx[i] >= 0 && neg_idx[i] >= 0;
  at::Tensor out = reduce_loss(loss, reduction, emb.options(), valid);
  if (reduction == Reduction::Mean && valid == 0) out.zero_();  // no anchor with both: loss 0
  return {out, pos, neg};
}

at::Tensor batch_hard_triplet_loss_backward_cpu(const at::Tensor& grad, const at::Tensor& emb_in,
                                                const at::Tensor& positive_in, const at::Tensor& negative_in,
                                                double margin, bool squared, c10::string_view reduction_name) {
  const char* op = "batch_hard_triplet_loss_backward";
  check_embeddings(emb_in, op, "embeddings");
  const Reduction reduction = parse_reduction(reduction_name, op);
  const int64_t B = emb_in.size(0), E = emb_in.size(1);
  for (const auto* t : {&positive_in, &negative_in}) {
    const char* name = t == &positive_in ? "positive" : "negative";
    TORCH_CHECK_TYPE(t->scalar_type() == at::kLong, "fastgen.", op, ": ", name, " must be an int64 index tensor, got ",
                     t->scalar_type());
    TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == B, "fastgen.", op, ": ", name, " must have shape (", B, ",), got ",
                      t->sizes());
  }
  checks::same_device(op, "embeddings", emb_in, {{"positive", positive_in}, {"negative", negative_in}});
  const at::Tensor emb = emb_in.contiguous();
  const at::Tensor pos = positive_in.contiguous(), neg = negative_in.contiguous();
  const int64_t* pi = pos.const_data_ptr<int64_t>();
  const int64_t* ni = neg.const_data_ptr<int64_t>();
  int64_t valid = 0;
  for (int64_t i = 0; i < B; ++i) {
    TORCH_CHECK_INDEX(pi[i] >= -1 && pi[i] < B && ni[i] >= -1 && ni[i] < B, "fastgen.", op,
                      ": positive and negative must hold row indices in [-1, ", B, "), got ", pi[i], " and ", ni[i],
                      " at row ", i);
    valid += pi[i] >= 0 && ni[i] >= 0;
  }
  const std::vector<double> g = row_grads(grad, reduction, B, std::max<int64_t>(valid, 1), op);
  at::Tensor out = at::empty_like(emb);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, emb.scalar_type(), "batch_hard_triplet_loss_backward", [&] {
    using opmath_t = Opmath<scalar_t>;
    using IO = VecIO<scalar_t>;
    using Vec = typename IO::Vec;
    constexpr int64_t W = IO::size();
    const scalar_t* e = emb.const_data_ptr<scalar_t>();
    std::vector<opmath_t> acc(B * E, opmath_t(0));
    // d(distance)/d(e_i) for the pair (i, j), added as `sign` times it to row i and minus
    // that to row j: 2 (e_i - e_j) squared, (e_i - e_j) / d otherwise (0 at d = 0).
    auto add_pair = [&](int64_t i, int64_t j, opmath_t coef) {
      const scalar_t *ri = e + i * E, *rj = e + j * E;
      for (int64_t k = 0; k < E; k += W) {
        const int64_t cnt = std::min(W, E - k);
        const Vec v = (IO::load(ri + k, cnt) - IO::load(rj + k, cnt)) * Vec(coef);
        (Vec::loadu(acc.data() + i * E + k, cnt) + v).store(acc.data() + i * E + k, cnt);
        (Vec::loadu(acc.data() + j * E + k, cnt) - v).store(acc.data() + j * E + k, cnt);
      }
    };
    // Scatter to the positives and negatives of other anchors: one thread, in anchor order
    // (B x E work, small next to the forward's B^2 x E).
    for (int64_t i = 0; i < B; ++i) {
      const int64_t p = pi[i], n = ni[i];
      if (p < 0 || n < 0 || g[i] == 0) continue;
      const opmath_t d2p = squared_distance(e + i * E, e + p * E, E);
      const opmath_t d2n = squared_distance(e + i * E, e + n * E, E);
      const opmath_t dp = squared ? d2p : std::sqrt(d2p), dn = squared ? d2n : std::sqrt(d2n);
      const opmath_t hinge = dp - dn + static_cast<opmath_t>(margin);
      if (std::isnan(hinge)) {  // a NaN loss: NaN gradients for the anchor and its pair (as triplet_margin_loss)
        for (const int64_t r : {i, p, n}) {
          std::fill(acc.begin() + r * E, acc.begin() + (r + 1) * E, std::numeric_limits<opmath_t>::quiet_NaN());
        }
        continue;
      }
      if (!(hinge > 0)) continue;  // relu's gradient (as forward rounds it)
      const opmath_t gi = static_cast<opmath_t>(g[i]);
      if (squared) {
        add_pair(i, p, 2 * gi);
        add_pair(i, n, -2 * gi);
      } else {
        if (dp > 0) add_pair(i, p, gi / dp);
        if (dn > 0) add_pair(i, n, -gi / dn);
      }
    }
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    for (int64_t k = 0; k < B * E; k += W) {
      const int64_t cnt = std::min(W, B * E - k);
      IO::store(o + k, Vec::loadu(acc.data() + k, cnt), cnt);
    }
  });
  return out;
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(triplet, m) {
  m.impl("triplet_margin_loss", &triplet_margin_loss_cpu);
  m.impl("triplet_margin_loss_backward", &triplet_margin_loss_backward_cpu);
  m.impl("contrastive_loss", &contrastive_loss_cpu);
  m.impl("contrastive_loss_backward", &contrastive_loss_backward_cpu);
  m.impl("batch_hard_triplet_loss", &batch_hard_triplet_loss_cpu);
  m.impl("batch_hard_triplet_loss_backward", &batch_hard_triplet_loss_backward_cpu);
}

}  // namespace fastgen
