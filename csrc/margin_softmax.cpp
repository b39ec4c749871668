// Margin softmax cross-entropy for face recognition (ArcFace, CosFace, SphereFace and the
// combined margin of InsightFace), fused over chunks of classes.
//
//   cos[b, c] = normalize(x_b) . normalize(w_c)
//   logit[b, c] = s * cos[b, c]                         (c != y_b)
//   logit[b, y] = s * (psi(m1 * acos(cos) + m2) - m3)   (the target class, see target_logit)
//   lse[b] = logsumexp_c logit[b, c],   loss[b] = lse[b] - logit[b, y_b]
//
// The op returns per row (lse, target logit, target cosine); lse is float64 whatever the input
// dtype: with s = 64 the logits are large, and a float32 lse (one ulp is ~4e-6 at 64) would
// put that error into every softmax probability of the backward. The reduction is a few scalar
// ops in Python (fastgen/functional.py). Classes are processed in chunks: for each chunk the
// vendor GEMM (at::mm -> MKL) computes x_n @ W_chunk^T into a small buffer that stays in
// cache, and a vectorized pass over it updates an online log-sum-exp. Nothing of size
// batch x classes is ever allocated, in forward or backward. Backward recomputes a chunk's
// cosines (one GEMM), turns them into d(loss)/d(cos) in place, and feeds two more GEMMs
// (grad of the normalized embeddings, grad of the chunk's weight rows). The normalizations'
// backward is applied per row at the end (embeddings) or per chunk (weight rows).
//
// `class_start` / `num_classes` let the op work on one shard of the classes (model-parallel
// training, fastgen/distributed.py): the weight holds classes [class_start, class_start + C)
// of num_classes; lse is then over the shard only, and rows whose label lies in another
// shard have no target here (target logit and cosine 0).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <array>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/vec_io.h"
#include "common/vec_math.h"

namespace fastgen {
namespace {

constexpr double kPi = 3.14159265358979323846;
// F.normalize's eps: rows are divided by max(||row||, kNormEps).
constexpr double kNormEps = 1e-12;

// The target cosine is clamped to [-1 + eps, 1 - eps] before acos so that d acos / d cos stays
// finite. The kernels compute cosines in float32 for float32, float16 and bfloat16 inputs, where
// 1e-7 is enough, and in float64 for float64, which uses float64's own epsilon (1e-7 would move
// every theta below 4.5e-4 rad to 4.5e-4). (Eager code in bfloat16 or float16 needs a clamp
// representable next to 1 in that dtype, 2^-7 or 2^-10 - see fastgen/reference/margin_softmax.py -
// which zeroes the margin's gradient for every target cosine past 0.992 in bfloat16; fastgen does
// not inherit that.) fastgen/ops/margin_softmax.py's clamp_eps is the same rule.
constexpr double kClampEps = 1e-7;

double clamp_eps(at::ScalarType dtype) {
  return dtype == at::kDouble ? std::numeric_limits<double>::epsilon() : kClampEps;
}

struct Margin {
  double s, m1, m2, m3;
  bool easy_margin;
  double clamp_eps;
  bool straight_through;
};

// The target logit s * (psi - m3) for a target cosine `cos`, and its derivative d/d cos.
//   theta = acos(clamp(cos)), phi = m1 * theta + m2
//   psi   = (-1)^k cos(phi) - 2k with k = floor(phi / pi)   (SphereFace's monotonic extension;
//           plain cos(phi) while phi <= pi)
//   except: easy_margin and cos <= 0        -> psi = cos
//           not easy, m1 == 1 and phi > pi  -> psi = cos - m2 sin(m2)   (ArcFace's fallback)
// The exact gradient through acos (no straight-through estimate). Computed in double: it
// is B scalars per call.
// With straight_through (InsightFace's current arcface_torch rule): psi = cos(m1 theta + m2)
// for every theta, theta = acos(clamp(cos, -1, 1)) (no fallback, no monotonic extension;
// easy_margin still keeps psi = cos where cos <= 0), and the margin is a constant in backward:
// d psi / d cos = 1.
inline void target_logit(double cos, const Margin& mg, double& logit, double& dlogit) {
  if (mg.straight_through) {
    const double c = std::min(std::max(cos, -1.0), 1.0);
    const double psi = (mg.easy_margin && !(cos > 0)) ? cos : std::cos(mg.m1 * std::acos(c) + mg.m2);
    logit = mg.s * (psi - mg.m3);
    dlogit = mg.s;
    return;
  }
  const double lo = -1.0 + mg.clamp_eps, hi = 1.0 - mg.clamp_eps;
  const double c = std::min(std::max(cos, lo), hi);
  const double theta = std::acos(c);
  const double phi = mg.m1 * theta + mg.m2;
  const bool use_margin = mg.easy_margin ? cos > 0 : !(mg.m1 == 1.0 && phi > kPi);
  double psi, dpsi;
  if (use_margin) {
    const double k = std::floor(phi / kPi);
    const double sign = std::fmod(k, 2.0) == 0.0 ? 1.0 : -1.0;
    psi = sign * std::cos(phi) - 2.0 * k;
    // torch.clamp passes the gradient on [lo, hi] inclusive.
    dpsi = (cos >= lo && cos <= hi) ? sign * mg.m1 * std::sin(phi) / std::sqrt(1.0 - c * c) : 0.0;
  } else if (mg.easy_margin) {
    psi = cos;
    dpsi = 1.0;
  } else {
    psi = cos - mg.m2 * std::sin(mg.m2);
    dpsi = 1.0;
  }
  logit = mg.s * (psi - mg.m3);
  dlogit = mg.s * dpsi;
}

// ---------------------------------------------------------------------------------------
// argument checks (fastgen/ops/margin_softmax.py makes the same ones for the fake impls)

void check_args(const at::Tensor& emb, const at::Tensor& weight, const at::Tensor& labels, int64_t class_start,
                int64_t num_classes, double s, const char* op) {
  TORCH_CHECK_VALUE(emb.dim() == 2, "fastgen.", op, ": embeddings must be 2-D (batch, embedding_size), got ", emb.dim(),
                    "-D");
  checks::floating(op, "embeddings", emb);
  TORCH_CHECK_VALUE(weight.dim() == 2, "fastgen.", op, ": weight must be 2-D (num_classes, embedding_size), got ",
                    weight.dim(), "-D");
  checks::same_dtype(op, "weight", weight, "embeddings", emb);
  checks::same_device(op, "embeddings", emb, {{"weight", weight}, {"labels", labels}});
  TORCH_CHECK_VALUE(weight.size(1) == emb.size(1), "fastgen.", op, ": weight must have embedding size ", emb.size(1),
                    " (the embeddings' size), got ", weight.size(1));
  TORCH_CHECK_VALUE(weight.size(0) > 0, "fastgen.", op, ": weight must have at least one class, got 0");
  TORCH_CHECK_VALUE(labels.dim() == 1 && labels.size(0) == emb.size(0), "fastgen.", op, ": labels must have shape (",
                    emb.size(0), ",), got ", labels.sizes());
  checks::integral(op, "labels", labels);
  // class_start + weight.size(0) is formed only once class_start is known not to overflow it.
  TORCH_CHECK_VALUE(class_start >= 0 && class_start <= num_classes && weight.size(0) <= num_classes - class_start,
                    "fastgen.", op, ": the weight's classes [class_start, class_start + ", weight.size(0),
                    ") must lie in [0, num_classes), got class_start=", class_start, ", num_classes=", num_classes);
  TORCH_CHECK_VALUE(s > 0 && std::isfinite(s), "fastgen.", op, ": s must be a positive finite scale, got ", s);
}

// Labels as int64, each checked to be a class or ignore_index.
std::vector<int64_t> read_labels(const at::Tensor& labels, int64_t num_classes, int64_t ignore_index, const char* op) {
  const at::Tensor l = labels.to(at::kLong).contiguous();
  const int64_t* p = l.const_data_ptr<int64_t>();
  std::vector<int64_t> out(p, p + l.numel());
  for (const int64_t y : out) {
    TORCH_CHECK(y == ignore_index || (y >= 0 && y < num_classes), "fastgen.", op,
                ": labels must be class indices in [0, ", num_classes, ") or ignore_index (", ignore_index, "), got ",
                y);
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// rows and chunks

template <typename T>
using Opmath = at::opmath_type<T>;

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  Vec acc(0);
  int64_t i = 0;
  for (; i + W <= n; i += W) acc = at::vec::fmadd(Vec::loadu(a + i), Vec::loadu(b + i), acc);
  if (i < n) acc = at::vec::fmadd(Vec::loadu(a + i, n - i), Vec::loadu(b + i, n - i), acc);
  return at::vec::vec_reduce_all<T>([](Vec& x, Vec& y) { return x + y; }, acc);
}

// y[0, n) += alpha * x[0, n)
template <typename T>
void axpy(T* y, const T* x, T alpha, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const Vec va(alpha);
  int64_t i = 0;
  for (; i + W <= n; i += W) at::vec::fmadd(va, Vec::loadu(x + i), Vec::loadu(y + i)).store(y + i);
  if (i < n) at::vec::fmadd(va, Vec::loadu(x + i, n - i), Vec::loadu(y + i, n - i)).store(y + i, n - i);
}

// Embeddings normalized into opmath rows: xn[b] = x[b] / max(||x[b]||, eps).
template <typename scalar_t>
struct NormalizedRows {
  at::Tensor xn;  // (B, E) opmath, contiguous
  std::vector<Opmath<scalar_t>> inv_norm;
  std::vector<uint8_t> clamped;  // ||x[b]|| < eps: the normalization's backward has no projection
};

template <typename scalar_t>
NormalizedRows<scalar_t> normalize_rows(const at::Tensor& x_in) {
  using opmath_t = Opmath<scalar_t>;
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), E = x.size(1);
  NormalizedRows<scalar_t> out;
  out.xn = at::empty({B, E}, x.options().dtype(c10::CppTypeToScalarType<opmath_t>::value));
  out.inv_norm.assign(B, opmath_t(0));
  out.clamped.assign(B, 0);
  const scalar_t* src = x.const_data_ptr<scalar_t>();
  opmath_t* dst = out.xn.template mutable_data_ptr<opmath_t>();
  at::parallel_for(0, B, std::max<int64_t>(1, 16384 / std::max<int64_t>(E, 1)), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const double norm = std::sqrt(static_cast<double>(sum_squares(src + b * E, E)));
      out.clamped[b] = norm < kNormEps;
      const opmath_t denom = static_cast<opmath_t>(std::max(norm, kNormEps));
      out.inv_norm[b] = static_cast<opmath_t>(1.0 / std::max(norm, kNormEps));
      // Divided, as F.normalize does: a row that is a multiple of a basis vector stays exact.
      for (int64_t e = 0; e < E; ++e) dst[b * E + e] = static_cast<opmath_t>(src[b * E + e]) / denom;
    }
  });
  return out;
}

// Work split. Classes are cut into chunks; each chunk's (B, chunk) cosine buffer stays in
// cache from its GEMM through the passes over it. Consecutive chunks form kBlocks blocks
// (fewer for small C), and one parallel region hands whole blocks to the threads, which run
// single-threaded GEMMs: no fork/join per chunk, the chunk stays in its core's cache from
// the weight-norm pass to the last GEMM, and each block keeps its own partial results
// (online log-sum-exp state, grad of the normalized embeddings) that are combined in block
// order, so results do not depend on the number of threads.
constexpr int64_t kBlocks = 16;

struct Split {
  int64_t chunk = 0, chunks = 0, blocks = 0;
  int64_t first_chunk(int64_t block) const { return block * chunks / blocks; }
};

Split split_classes(int64_t B, int64_t E, int64_t C) {
  Split sp;
  int64_t n = (int64_t(1) << 19) / std::max<int64_t>(B, 1);  // buffer of 2 MiB in float
  n = std::min(n, (int64_t(1) << 19) / std::max<int64_t>(E, 1));  // weight chunk of 2 MiB at most
  n = std::max<int64_t>(64, std::min<int64_t>(2048, n / 64 * 64));
  sp.chunk = std::min(n, C);
  sp.chunks = (C + sp.chunk - 1) / sp.chunk;
  sp.blocks = std::min(kBlocks, sp.chunks);
  return sp;
}

// One chunk of weight rows [c0, c0 + n) in opmath, with their inverse norms. For float and
// double it is a view of the weight; reduced-precision rows are widened into `widened`.
template <typename scalar_t>
struct WeightChunk {
  at::Tensor w;  // (n, E) opmath
  std::vector<Opmath<scalar_t>> denom, inv_norm, scale;  // max(||w_c||, eps), its inverse, s times that
  std::vector<uint8_t> clamped;
};

template <typename scalar_t>
void load_chunk(const at::Tensor& weight, int64_t c0, int64_t n, double s, at::Tensor& widened,
                WeightChunk<scalar_t>& ch) {
  using opmath_t = Opmath<scalar_t>;
  const int64_t E = weight.size(1);
  const scalar_t* src = weight.const_data_ptr<scalar_t>() + c0 * E;
  opmath_t* dst = nullptr;
  if constexpr (std::is_same_v<scalar_t, opmath_t>) {
    ch.w = weight.narrow(0, c0, n);
  } else {
    ch.w = widened.narrow(0, 0, n);
    dst = ch.w.template mutable_data_ptr<opmath_t>();
  }
  ch.denom.resize(n);
  ch.inv_norm.resize(n);
  ch.scale.resize(n);
  ch.clamped.resize(n);
  for (int64_t r = 0; r < n; ++r) {
    const double norm = std::sqrt(static_cast<double>(sum_squares(src + r * E, E)));
    ch.clamped[r] = norm < kNormEps;
    ch.denom[r] = static_cast<opmath_t>(std::max(norm, kNormEps));
    ch.inv_norm[r] = static_cast<opmath_t>(1.0 / std::max(norm, kNormEps));
    ch.scale[r] = static_cast<opmath_t>(s) * ch.inv_norm[r];
    if constexpr (!std::is_same_v<scalar_t, opmath_t>) {
      using IO = VecIO<scalar_t>;
      constexpr int64_t W = IO::size();
      for (int64_t e = 0; e < E; e += W) {
        const int64_t cnt = std::min(W, E - e);
        IO::load(src + r * E + e, cnt).store(dst + r * E + e, cnt);
      }
    }
  }
}

// Per-row facts shared by forward and backward.
struct RowTarget {
  bool ignored;
  int64_t local;  // label - class_start when the label is in this shard, else -1
};

std::vector<RowTarget> row_targets(const std::vector<int64_t>& labels, int64_t class_start, int64_t C,
                                   int64_t ignore_index) {
  std::vector<RowTarget> rows(labels.size());
  for (size_t b = 0; b < labels.size(); ++b) {
    const int64_t y = labels[b];
    rows[b].ignored = y == ignore_index;
    rows[b].local = (!rows[b].ignored && y >= class_start && y < class_start + C) ? y - class_start : -1;
  }
  return rows;
}

// ---------------------------------------------------------------------------------------
// forward

// Online log-sum-exp state of each row over the classes seen so far.
template <typename T>
struct LseState {
  std::vector<T> max, sum;
  explicit LseState(int64_t B) : max(B, -std::numeric_limits<T>::infinity()), sum(B, T(0)) {}
  void merge(int64_t b, T m, T s) {
    const T new_max = std::max(max[b], m);
    if (std::isinf(new_max) && new_max > 0) {  // NaN or +inf logits: the result is NaN
      sum[b] = std::numeric_limits<T>::quiet_NaN();
    } else if (m != -std::numeric_limits<T>::infinity()) {
      sum[b] = sum[b] * std::exp(max[b] - new_max) + s * std::exp(m - new_max);
    }
    max[b] = new_max;
  }
};

// One chunk's cosines x_n @ W_chunk^T (buffer `z`, B x n, raw dot products) -> logits in
// place and the chunk's (max, sum of exp) per row, merged into `state`.
template <typename opmath_t>
void forward_chunk_rows(opmath_t* buf, int64_t B, int64_t n, int64_t c0, const opmath_t* inv_norm,
                        const opmath_t* scale, const std::vector<RowTarget>& rows, const Margin& mg,
                        LseState<double>& state, opmath_t* tlogit, opmath_t* tcos) {
  using Vec = at::vec::Vectorized<opmath_t>;
  constexpr int64_t W = Vec::size();
  const opmath_t neg_inf = -std::numeric_limits<opmath_t>::infinity();
  for (int64_t b = 0; b < B; ++b) {
    if (rows[b].ignored) continue;
    opmath_t* z = buf + b * n;
    const int64_t t = rows[b].local - c0;
    const bool has_target = rows[b].local >= 0 && t >= 0 && t < n;
    double target = 0;
    if (has_target) {
      // Rounded to opmath_t and saved as such: backward recomputes the target logit from it.
      const opmath_t cos_t = z[t] * inv_norm[t];
      double dtarget;
      target_logit(static_cast<double>(cos_t), mg, target, dtarget);
      tcos[b] = cos_t;
      tlogit[b] = static_cast<opmath_t>(target);
      z[t] = neg_inf;  // left out of pass 1's max (scale > 0); the target logit goes in after it
    }
    // pass 1: logits s * cos in place, and their max
    Vec vmax(neg_inf);
    int64_t i = 0;
    for (; i + W <= n; i += W) {
      const Vec v = Vec::loadu(z + i) * Vec::loadu(scale + i);
      v.store(z + i);
      vmax = at::vec::clamp_min(v, vmax);  // max, passing NaN from v
    }
    if (i < n) {
      const Vec v = Vec::loadu(z + i, n - i) * Vec::loadu(scale + i, n - i);
      v.store(z + i, n - i);
      vmax = at::vec::clamp_min(Vec::set(Vec(neg_inf), v, n - i), vmax);
    }
    opmath_t m = at::vec::vec_reduce_all<opmath_t>([](Vec& a, Vec& c) { return at::vec::clamp_min(a, c); }, vmax);
    if (has_target) {
      z[t] = static_cast<opmath_t>(target);
      m = std::max(m, z[t]);
    }
    if (std::isnan(m)) {
      state.merge(b, std::numeric_limits<opmath_t>::infinity(), opmath_t(0));
      continue;
    }
    // pass 2: sum of exp(logit - max)
    const Vec vm(m);
    Vec acc(0);
    i = 0;
    for (; i + W <= n; i += W) acc = acc + vec_math::exp(Vec::loadu(z + i) - vm);
    if (i < n) acc = acc + vec_math::exp(Vec::set(Vec(neg_inf), Vec::loadu(z + i, n - i), n - i) - vm);
    state.merge(b, m, at::vec::vec_reduce_all<opmath_t>([](Vec& a, Vec& c) { return a + c; }, acc));
  }
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& emb, const at::Tensor& weight, const std::vector<RowTarget>& rows,
                    const Margin& mg, at::Tensor& lse_out, at::Tensor& target_logit_out, at::Tensor& target_cos_out) {
  using opmath_t = Opmath<scalar_t>;
  const int64_t B = emb.size(0), E = emb.size(1), C = weight.size(0);
  double* lse = lse_out.mutable_data_ptr<double>();
  opmath_t* tlogit = target_logit_out.mutable_data_ptr<opmath_t>();
  opmath_t* tcos = target_cos_out.mutable_data_ptr<opmath_t>();
  for (int64_t b = 0; b < B; ++b) tlogit[b] = tcos[b] = opmath_t(0);
  if (B == 0) return;

  const NormalizedRows<scalar_t> x = normalize_rows<scalar_t>(emb);
  const Split sp = split_classes(B, E, C);
  const auto opts = emb.options().dtype(c10::CppTypeToScalarType<opmath_t>::value);
  std::vector<LseState<double>> states(sp.blocks, LseState<double>(B));
  std::atomic<int64_t> next_block{0};
  at::parallel_for(0, std::min<int64_t>(sp.blocks, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    // Worker threads do not inherit the caller's dispatch state: the GEMMs below must not
    // see autograd (the weight may require grad; this is already the op's kernel).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor buffer = at::empty({B * sp.chunk}, opts);
    at::Tensor widened = std::is_same_v<scalar_t, opmath_t> ? at::Tensor() : at::empty({sp.chunk, E}, opts);
    WeightChunk<scalar_t> ch;
    // Blocks are handed out one at a time (a thread that runs late on a busy machine takes
    // fewer); what a block computes depends only on its index.
    for (int64_t k = next_block++; k < sp.blocks; k = next_block++) {
      for (int64_t j = sp.first_chunk(k); j < sp.first_chunk(k + 1); ++j) {
        const int64_t c0 = j * sp.chunk, n = std::min(sp.chunk, C - c0);
        load_chunk<scalar_t>(weight, c0, n, mg.s, widened, ch);
        at::Tensor cos = buffer.narrow(0, 0, B * n).view({B, n});
        at::mm_out(cos, x.xn, ch.w.t());  // raw dot products x_n . w_c (single-threaded here)
        forward_chunk_rows<opmath_t>(cos.mutable_data_ptr<opmath_t>(), B, n, c0, ch.inv_norm.data(), ch.scale.data(),
                                     rows, mg, states[k], tlogit, tcos);
      }
    }
  });
  for (int64_t b = 0; b < B; ++b) {
    if (rows[b].ignored) {
      lse[b] = 0.0;
      continue;
    }
    LseState<double>& total = states[0];
    for (int64_t k = 1; k < sp.blocks; ++k) total.merge(b, states[k].max[b], states[k].sum[b]);
    lse[b] = total.max[b] + std::log(total.sum[b]);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> margin_softmax_cpu(const at::Tensor& emb, const at::Tensor& weight_in,
                                                                  const at::Tensor& labels, int64_t class_start,
                                                                  int64_t num_classes, double s, double m1, double m2,
                                                                  double m3, bool easy_margin, int64_t ignore_index,
                                                                  bool straight_through) {
  const char* op = "margin_softmax";
  check_args(emb, weight_in, labels, class_start, num_classes, s, op);
  const std::vector<int64_t> y = read_labels(labels, num_classes, ignore_index, op);
  const at::Tensor weight = weight_in.contiguous();
  const int64_t B = emb.size(0);
  const Margin mg{s, m1, m2, m3, easy_margin, clamp_eps(emb.scalar_type()), straight_through};
  const auto rows = row_targets(y, class_start, weight.size(0), ignore_index);
  const auto opmath = emb.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor lse = at::empty({B}, emb.options().dtype(at::kDouble));
  at::Tensor tlogit = at::empty({B}, emb.options().dtype(opmath));
  at::Tensor tcos = at::empty({B}, emb.options().dtype(opmath));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, emb.scalar_type(), "margin_softmax",
                                  [&] { forward_kernel<scalar_t>(emb, weight, rows, mg, lse, tlogit, tcos); });
  return {lse, tlogit, tcos};
}

// ---------------------------------------------------------------------------------------
// backward

// d(loss)/d(input) of row = v / max(||v||, eps) given d(loss)/d(row) = g, in place on g:
//   g <- (g - row (row . g)) * inv_norm       (row normalized; no projection when clamped)
template <typename T>
void normalize_backward_row(T* g, const T* row_normalized, T inv_norm, bool clamped, int64_t n) {
  if (!clamped) axpy(g, row_normalized, -dot(row_normalized, g, n), n);
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const Vec vi(inv_norm);
  int64_t i = 0;
  for (; i + W <= n; i += W) (Vec::loadu(g + i) * vi).store(g + i);
  if (i < n) (Vec::loadu(g + i, n - i) * vi).store(g + i, n - i);
}

// Per-row inputs of the backward pass.
template <typename T>
struct RowGrads {
  std::vector<T> coef;         // s * d(loss)/d(lse[b]): weight of the softmax term
  std::vector<T> target;       // d(loss)/d(target cosine) (rows whose target is in this shard)
  std::vector<uint8_t> active; // the row sends any gradient
  // lse split as hi + lo (hi = lse rounded to T): exp((l - hi) - lo) keeps the float64 lse's
  // precision, since l - hi is exact where the probability is large (Sterbenz).
  std::vector<T> lse_hi, lse_lo;
};

// One chunk's raw dot products in `buf` -> G[b, c] = d(loss)/d(cos[b, c]) / ||w_c|| in place,
// so the GEMMs that follow take the raw weight rows.
template <typename opmath_t>
void backward_chunk_rows(opmath_t* buf, int64_t B, int64_t n, int64_t c0, const opmath_t* inv_norm,
                         const opmath_t* scale, const std::vector<RowTarget>& rows, const RowGrads<opmath_t>& rg) {
  using Vec = at::vec::Vectorized<opmath_t>;
  constexpr int64_t W = Vec::size();
  for (int64_t b = 0; b < B; ++b) {
    opmath_t* z = buf + b * n;
    const opmath_t coef = rg.coef[b];
    if (!rg.active[b] || coef == 0) {
      std::fill(z, z + n, opmath_t(0));
    } else {
      // coef * softmax[b, c] / ||w_c||, softmax = exp(s cos - lse)
      const Vec hi(rg.lse_hi[b]), lo(rg.lse_lo[b]), vc(coef);
      int64_t i = 0;
      for (; i + W <= n; i += W) {
        // The logit rounded as the forward rounded it (the build keeps a * b - c unfused).
        const Vec p = vec_math::exp((Vec::loadu(z + i) * Vec::loadu(scale + i) - hi) - lo);
        (vc * p * Vec::loadu(inv_norm + i)).store(z + i);
      }
      if (i < n) {
        const int64_t r = n - i;
        const Vec p = vec_math::exp((Vec::loadu(z + i, r) * Vec::loadu(scale + i, r) - hi) - lo);
        (vc * p * Vec::loadu(inv_norm + i, r)).store(z + i, r);
      }
    }
    const int64_t t = rows[b].local - c0;
    if (rg.active[b] && rows[b].local >= 0 && t >= 0 && t < n) z[t] = rg.target[b] * inv_norm[t];
  }
}

template <typename scalar_t>
void backward_kernel(const std::vector<double>& grad_lse, const std::vector<double>& grad_target, const at::Tensor& emb,
                     const at::Tensor& weight, const std::vector<RowTarget>& rows, const at::Tensor& lse_in,
                     const at::Tensor& tcos_in, const Margin& mg, bool need_x, bool need_w, at::Tensor& grad_emb,
                     at::Tensor& grad_weight) {
  using opmath_t = Opmath<scalar_t>;
  using Vec = at::vec::Vectorized<opmath_t>;
  using IO = VecIO<scalar_t>;
  constexpr int64_t W = Vec::size();
  constexpr bool kWide = std::is_same_v<scalar_t, opmath_t>;
  const int64_t B = emb.size(0), E = emb.size(1), C = weight.size(0);
  const auto opts = emb.options().dtype(c10::CppTypeToScalarType<opmath_t>::value);
  if (B == 0) {
    if (need_w) grad_weight.zero_();
    return;
  }
  const at::Tensor lse_t = lse_in.to(at::kDouble).contiguous();
  const double* lse = lse_t.const_data_ptr<double>();
  const at::Tensor tcos_t = tcos_in.to(opts.dtype()).contiguous();
  const opmath_t* tcos = tcos_t.const_data_ptr<opmath_t>();

  RowGrads<opmath_t> rg;
  rg.lse_hi.resize(B);
  rg.lse_lo.resize(B);
  for (int64_t b = 0; b < B; ++b) {
    rg.lse_hi[b] = static_cast<opmath_t>(lse[b]);
    rg.lse_lo[b] = static_cast<opmath_t>(lse[b] - static_cast<double>(rg.lse_hi[b]));
  }
  rg.coef.assign(B, opmath_t(0));
  rg.target.assign(B, opmath_t(0));
  rg.active.assign(B, 0);
  for (int64_t b = 0; b < B; ++b) {
    if (rows[b].ignored) continue;
    rg.coef[b] = static_cast<opmath_t>(grad_lse[b] * mg.s);
    rg.active[b] = grad_lse[b] != 0 || (rows[b].local >= 0 && grad_target[b] != 0);
    if (rows[b].local >= 0) {
      double logit, dlogit;
      target_logit(static_cast<double>(tcos[b]), mg, logit, dlogit);
      // The logit as forward rounded it, so a row whose softmax is all target gets p = 1 exactly.
      const double p = std::exp(static_cast<double>(static_cast<opmath_t>(logit)) - lse[b]);
      rg.target[b] = static_cast<opmath_t>((grad_lse[b] * p + grad_target[b]) * dlogit);
    }
  }

  const NormalizedRows<scalar_t> x = normalize_rows<scalar_t>(emb);
  const Split sp = split_classes(B, E, C);
  // Per block: sum over its classes of G[b, c] w_c (the grad of the normalized embeddings).
  at::Tensor partial_xn = need_x ? at::empty({sp.blocks, B, E}, opts) : at::Tensor();
  scalar_t* gw_out = need_w ? grad_weight.mutable_data_ptr<scalar_t>() : nullptr;

  std::atomic<int64_t> next_block{0};
  at::parallel_for(0, std::min<int64_t>(sp.blocks, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    // Worker threads do not inherit the caller's dispatch state: the GEMMs below must not
    // see autograd (the weight may require grad; this is already the op's kernel).
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor buffer = at::empty({B * sp.chunk}, opts);
    at::Tensor widened = kWide ? at::Tensor() : at::empty({sp.chunk, E}, opts);
    at::Tensor u_wide = (kWide || !need_w) ? at::Tensor() : at::empty({sp.chunk, E}, opts);
    std::vector<opmath_t> unit(E);
    WeightChunk<scalar_t> ch;
    // Blocks are handed out one at a time (a thread that runs late on a busy machine takes
    // fewer); what a block computes depends only on its index.
    for (int64_t k = next_block++; k < sp.blocks; k = next_block++) {
      at::Tensor acc = need_x ? partial_xn.select(0, k) : at::Tensor();
      for (int64_t j = sp.first_chunk(k); j < sp.first_chunk(k + 1); ++j) {
        const int64_t c0 = j * sp.chunk, n = std::min(sp.chunk, C - c0);
        load_chunk<scalar_t>(weight, c0, n, mg.s, widened, ch);
        at::Tensor g = buffer.narrow(0, 0, B * n).view({B, n});
        at::mm_out(g, x.xn, ch.w.t());  // the chunk's cosines again (times ||w_c||)
        backward_chunk_rows<opmath_t>(g.mutable_data_ptr<opmath_t>(), B, n, c0, ch.inv_norm.data(), ch.scale.data(),
                                      rows, rg);
        if (need_x) {
          if (j == sp.first_chunk(k)) {
            at::mm_out(acc, g, ch.w);
          } else {
            at::addmm_out(acc, acc, g, ch.w);
          }
        }
        if (need_w) {
          // u_c = sum_b G[b, c] x_n[b] = d(loss)/d(w_c / ||w_c||) / ||w_c||; then the projection
          // of the normalization's backward: grad w_c = u_c - w_c (w_c . u_c) / ||w_c||^2.
          at::Tensor u = kWide ? grad_weight.narrow(0, c0, n) : u_wide.narrow(0, 0, n);
          at::mm_out(u, g.t(), x.xn);
          opmath_t* up = u.template mutable_data_ptr<opmath_t>();
          const opmath_t* wp = ch.w.template const_data_ptr<opmath_t>();
          for (int64_t r = 0; r < n; ++r) {
            opmath_t* ur = up + r * E;
            if (!ch.clamped[r]) {
              // w_c / ||w_c|| divided as F.normalize rounds it, then u -= w_n (w_n . u).
              const Vec d(ch.denom[r]);
              for (int64_t e = 0; e < E; e += W) {
                const int64_t cnt = std::min(W, E - e);
                (Vec::loadu(wp + r * E + e, cnt) / d).store(unit.data() + e, cnt);
              }
              axpy(ur, unit.data(), -dot(unit.data(), ur, E), E);
            }
            if constexpr (!kWide) {
              for (int64_t e = 0; e < E; e += W) {
                const int64_t cnt = std::min(W, E - e);
                IO::store(gw_out + (c0 + r) * E + e, Vec::loadu(ur + e, cnt), cnt);
              }
            }
          }
        }
      }
    }
  });

  if (need_x) {
    const opmath_t* parts = partial_xn.const_data_ptr<opmath_t>();
    const opmath_t* xn = x.xn.template const_data_ptr<opmath_t>();
    scalar_t* out = grad_emb.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, B, std::max<int64_t>(1, 8192 / std::max<int64_t>(E, 1)), [&](int64_t b0, int64_t b1) {
      std::vector<opmath_t> g(E);
      for (int64_t b = b0; b < b1; ++b) {
        std::copy(parts + b * E, parts + (b + 1) * E, g.begin());
        for (int64_t k = 1; k < sp.blocks; ++k) axpy(g.data(), parts + (k * B + b) * E, opmath_t(1), E);
        normalize_backward_row(g.data(), xn + b * E, x.inv_norm[b], x.clamped[b], E);
        for (int64_t e = 0; e < E; e += W) {
          const int64_t cnt = std::min(W, E - e);
          IO::store(out + b * E + e, Vec::loadu(g.data() + e, cnt), cnt);
        }
      }
    });
  }
}

std::vector<double> read_row_grads(const std::optional<at::Tensor>& g, int64_t B, const char* op, const char* name) {
  std::vector<double> out(B, 0.0);
  if (!g.has_value() || !g->defined()) return out;
  TORCH_CHECK_VALUE(g->dim() == 1 && g->size(0) == B, "fastgen.", op, ": ", name, " must have shape (", B, ",), got ",
                    g->sizes());
  checks::floating(op, name, *g);
  checks::same_device(op, name, *g, {});
  const at::Tensor d = g->to(at::kDouble).contiguous();
  std::copy(d.const_data_ptr<double>(), d.const_data_ptr<double>() + B, out.begin());
  return out;
}

std::tuple<at::Tensor, at::Tensor> margin_softmax_backward_cpu(
    const std::optional<at::Tensor>& grad_lse_in, const std::optional<at::Tensor>& grad_target_in,
    const at::Tensor& emb, const at::Tensor& weight_in, const at::Tensor& labels, const at::Tensor& lse,
    const at::Tensor& target_cos, int64_t class_start, int64_t num_classes, double s, double m1, double m2, double m3,
    bool easy_margin, int64_t ignore_index, std::array<bool, 2> output_mask, bool straight_through) {
  const char* op = "margin_softmax_backward";
  check_args(emb, weight_in, labels, class_start, num_classes, s, op);
  const int64_t B = emb.size(0);
  TORCH_CHECK_VALUE(lse.dim() == 1 && lse.size(0) == B, "fastgen.", op, ": lse must have shape (", B, ",), got ",
                    lse.sizes());
  TORCH_CHECK_VALUE(target_cos.dim() == 1 && target_cos.size(0) == B, "fastgen.", op, ": target_cos must have shape (",
                    B, ",), got ", target_cos.sizes());
  checks::floating(op, "lse", lse);
  checks::floating(op, "target_cos", target_cos);
  checks::same_device(op, "embeddings", emb, {{"lse", lse}, {"target_cos", target_cos}});
  const std::vector<int64_t> y = read_labels(labels, num_classes, ignore_index, op);
  const std::vector<double> gl = read_row_grads(grad_lse_in, B, op, "grad_lse");
  const std::vector<double> gt = read_row_grads(grad_target_in, B, op, "grad_target");
  const at::Tensor weight = weight_in.contiguous();
  const Margin mg{s, m1, m2, m3, easy_margin, clamp_eps(emb.scalar_type()), straight_through};
  const auto rows = row_targets(y, class_start, weight.size(0), ignore_index);
  const bool need_x = output_mask[0], need_w = output_mask[1];
  at::Tensor grad_emb = need_x ? at::empty(emb.sizes(), emb.options()) : at::empty({0}, emb.options());
  at::Tensor grad_weight = need_w ? at::empty(weight.sizes(), weight.options()) : at::empty({0}, weight.options());
  if (!need_x && !need_w) return {grad_emb, grad_weight};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, emb.scalar_type(), "margin_softmax_backward", [&] {
    backward_kernel<scalar_t>(gl, gt, emb, weight, rows, lse, target_cos, mg, need_x, need_w, grad_emb, grad_weight);
  });
  return {grad_emb, grad_weight};
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(margin_softmax, m) {
  m.impl("margin_softmax", &margin_softmax_cpu);
  m.impl("margin_softmax_backward", &margin_softmax_backward_cpu);
}

}  // namespace fastgen
