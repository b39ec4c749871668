// Instance normalization fused with its activation and the residual add (CycleGAN, pix2pix):
//
//   y[n,c,s]   = (x[n,c,s] - mean[n,c]) * rstd[n,c] * weight[c] + bias[c]
//   out[n,c,s] = act(y) + residual[n,c,s]          act: identity | relu | leaky_relu(slope)
//
// mean and the biased var are taken over the M spatial elements of each (n, c) plane
// (training), or are the running statistics (use_input_stats=false); rstd = 1/sqrt(var + eps).
// Backward, with gy = grad_out * act'(y) and xc = x - mean:
//   grad_x = weight * rstd * (gy - mean_s(gy) - xc * rstd^2 * mean_s(gy * xc))   (input stats)
//   grad_x = weight * rstd * gy                                                    (running stats)
//   grad_weight[c] = sum_n rstd * sum_s gy * xc,   grad_bias[c] = sum_{n,s} gy
//
// Layouts: contiguous (every (n, c) plane is one run of M elements, "planar") and channels
// innermost (channels_last, channels_last_3d, NLC: every sample is an M x C row-major matrix,
// "interleaved"). The output keeps the input's layout; any other layout is made contiguous.
// The sweeps over one task's data are in csrc/instance_norm/planar.h and interleaved.h, the
// activation and the split mean in csrc/instance_norm/common.h; this file plans the work,
// runs the forward and backward passes over it and checks the arguments.
//
// Work is split into tasks of (sample, channel block, spatial chunk) small enough to stay in
// L2. When a task covers whole planes (the usual case) it computes the statistics and then
// normalizes from cache, so forward reads x from memory once, and backward reads x and
// grad_out once. Bigger planes are cut into chunks whose moments (mean, M2) are combined
// exactly (Chan et al.) in a fixed order before a second sweep. Chunking depends only on the
// shape, never on the thread count, so results are deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/rows.h"
#include "common/vec_io.h"
#include "instance_norm/common.h"
#include "instance_norm/interleaved.h"
#include "instance_norm/planar.h"

namespace fastgen {
namespace {

// One task's slice of x (and of grad_out in backward) is at most this many bytes.
constexpr int64_t kTaskBytes = 512 * 1024;
// Most channels one interleaved task covers (its per-channel arrays live on the stack).
constexpr int64_t kMaxBlock = 1024;
// Planar planes of at most kBlockBytes / kBlock bytes are processed kBlock at a time.
constexpr int64_t kBlock = 16;
constexpr int64_t kBlockBytes = 256 * 1024;
// Work below this many elements is not worth waking another thread for.
constexpr int64_t kGrainElements = 32768;

// ------------------------------------------------------------------------------------------
// layout and work split

// Dense with dim 1 (channels) innermost, then the spatial dims in order, then the batch:
// channels_last for 4-D, channels_last_3d for 5-D, (N, L, C) memory for 3-D.
bool channels_innermost(const at::Tensor& t) {
  if (t.dim() < 3) return false;
  int64_t expected = 1;
  auto next = [&](int64_t d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return false;
    expected *= t.size(d);
    return true;
  };
  if (!next(1)) return false;
  for (int64_t d = t.dim() - 1; d >= 2; --d) {
    if (!next(d)) return false;
  }
  return next(0);
}

struct Plan {
  bool interleaved = false;
  int64_t N = 0, C = 0, M = 0;
  int64_t cb = 1;      // channels per task (1 when planar)
  int64_t blocks = 0;  // channel blocks per sample
  int64_t rows = 0;    // spatial elements per chunk
  int64_t chunks = 0;  // chunks per (sample, channel block)

  int64_t tasks() const { return N * blocks * chunks; }
  bool whole_planes() const { return chunks == 1; }

  struct Task {
    int64_t n, c0, count, r0, r1;
  };
  Task task(int64_t t) const {
    const int64_t chunk = t % chunks;
    const int64_t nb = t / chunks;
    const int64_t block = nb % blocks;
    Task out;
    out.n = nb / blocks;
    out.c0 = block * cb;
    out.count = std::min(cb, C - out.c0);
    out.r0 = chunk * rows;
    out.r1 = std::min(M, out.r0 + rows);
    return out;
  }
  int64_t grain() const { return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, rows * cb)); }
};

Plan make_plan(bool interleaved, int64_t N, int64_t C, int64_t M, int64_t elem_size, int64_t width) {
  Plan p;
  p.interleaved = interleaved;
  p.N = N;
  p.C = C;
  p.M = M;
  const int64_t budget = std::max<int64_t>(kTaskBytes / elem_size, width);
  if (interleaved) {
    // Whole rows: a chunk of rows of one sample is one contiguous block of memory. (Blocks of
    // channels would read each row in short pieces at a power-of-two stride, which thrashes
    // the cache sets.)
    p.cb = C;
    const int64_t threads = at::get_num_threads();
    if (M * C <= budget && N < threads && C > width) {
      // Small samples, too few to share out: split the channels instead (results do not
      // change: every channel is summed in its own lane, row after row).
      const int64_t per_thread = (C + threads - 1) / threads;
      p.cb = (per_thread + width - 1) / width * width;
    }
    p.cb = std::max<int64_t>(1, std::min({p.cb, C, kMaxBlock}));
  }
  p.blocks = C == 0 ? 0 : (C + p.cb - 1) / p.cb;
  p.rows = M * p.cb <= budget ? M : std::max<int64_t>(width, budget / p.cb / width * width);
  p.chunks = M == 0 ? 0 : (M + p.rows - 1) / p.rows;
  return p;
}

// Per-channel arrays of one task, padded to whole vectors.
template <typename opmath_t>
struct alignas(64) ChannelArray {
  opmath_t v[kMaxBlock + 64 / sizeof(opmath_t)];
  opmath_t* data() { return v; }
  const opmath_t* data() const { return v; }
  opmath_t& operator[](int64_t i) { return v[i]; }
  opmath_t operator[](int64_t i) const { return v[i]; }
};

// ------------------------------------------------------------------------------------------
// forward

template <typename scalar_t>
struct Params {
  using opmath_t = at::opmath_type<scalar_t>;
  const opmath_t* weight = nullptr;  // (C,) or null: 1
  const opmath_t* bias = nullptr;    // (C,) or null: 0
  opmath_t* mean = nullptr;          // (N, C)
  opmath_t* var = nullptr;           // (N, C)
  double eps = 0;
  opmath_t slope = 0;
  int64_t C = 0;

  opmath_t w(int64_t c) const { return weight ? weight[c] : opmath_t(1); }
  opmath_t b(int64_t c) const { return bias ? bias[c] : opmath_t(0); }
  // In double, rounded once: rstd's rounding is amplified in the backward (planes of few
  // elements), and so is every extra rounding of var + eps, sqrt and the division.
  opmath_t rstd(int64_t nc) const { return static_cast<opmath_t>(1.0 / std::sqrt(double(var[nc]) + eps)); }

  // The kernels take y = (x - hi) * scale + shift for plane nc of channel c: scale = weight *
  // rstd, and the mean's lo half (see SplitMean) folded into shift = bias - lo * scale.
  void coefficients(int64_t nc, int64_t c, opmath_t lo, opmath_t& scale, opmath_t& shift) const {
    scale = w(c) * rstd(nc);
    shift = b(c) - lo * scale;
  }

  // grad_x = gy * scale + (x - hi - lo) * cx + ca, from plane nc's sums of gy and gy * (x - mean)
  // (input statistics; with running statistics cx = ca = 0). The lo term goes into ca.
  void grad_coefficients(int64_t nc, opmath_t scale, opmath_t lo, opmath_t sum_gy, opmath_t sum_gy_xc, opmath_t inv_m,
                         opmath_t& cx, opmath_t& ca) const {
    const opmath_t r = rstd(nc);
    cx = -scale * r * r * sum_gy_xc * inv_m;
    ca = -scale * sum_gy * inv_m - lo * cx;
  }
};

// Chan et al.'s exact merge of chunk moments, in chunk order.
struct MomentMerge {
  double count = 0, mean = 0, m2 = 0;
  void add(double n, double chunk_mean, double chunk_m2) {
    if (n == 0) return;
    if (count == 0) {
      count = n;
      mean = chunk_mean;
      m2 = chunk_m2;
      return;
    }
    const double total = count + n;
    const double delta = chunk_mean - mean;
    mean += delta * n / total;
    m2 += chunk_m2 + delta * delta * count * n / total;
    count = total;
  }
};

template <typename scalar_t, Act A, bool RES>
void forward_kernel(const Plan& p, const Params<scalar_t>& prm, const scalar_t* x, const scalar_t* res, scalar_t* out,
                    bool use_input_stats) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t W = VecIO<scalar_t>::size();
  const int64_t C = p.C, M = p.M;
  const int64_t tile = tile_rows(C, sizeof(scalar_t));
  const bool small_planes = !p.interleaved && p.whole_planes() && M * int64_t(sizeof(scalar_t)) * kBlock <= kBlockBytes;

  // Moments of task t's channels over its rows: the mean as hi + lo (see SplitMean) and m2
  // (arrays indexed by channel - c0).
  auto moments = [&](const Plan::Task& t, opmath_t* hi, opmath_t* lo, opmath_t* m2) {
    if (!p.interleaved) {
      planar_moments(x + (t.n * C + t.c0) * M + t.r0, t.r1 - t.r0, hi[0], lo[0], m2[0]);
      return;
    }
    const scalar_t* img = x + t.n * M * C;
    const int64_t padded = (t.count + W - 1) / W * W;  // the group sweeps touch whole vectors
    std::fill(lo, lo + padded, opmath_t(0));  // first the sums relative to the first row
    std::fill(m2, m2 + padded, opmath_t(0));
    const scalar_t* first_row = img + t.r0 * C + t.c0;
    for (int64_t j = 0; j < padded; ++j) hi[j] = j < t.count ? static_cast<opmath_t>(first_row[j]) : opmath_t(0);
    for_tiles<W>(t.c0, t.count, t.r0, t.r1, tile, [&](auto nv, int64_t c, int64_t span, int64_t r0, int64_t r1) {
      interleaved_moment_group<scalar_t, decltype(nv)::value, Moment::Offset>(img, C, c, span, r0, r1, hi + (c - t.c0),
                                                                              lo + (c - t.c0));
    });
    const int64_t rows = t.r1 - t.r0;
    for (int64_t j = 0; j < t.count; ++j) {
      const SplitMean<opmath_t> mean(double(hi[j]) + double(lo[j]) / double(rows));
      hi[j] = mean.hi;
      lo[j] = mean.lo;
    }
    for_tiles<W>(t.c0, t.count, t.r0, t.r1, tile, [&](auto nv, int64_t c, int64_t span, int64_t r0, int64_t r1) {
      interleaved_moment_group<scalar_t, decltype(nv)::value, Moment::Square>(img, C, c, span, r0, r1, hi + (c - t.c0),
                                                                              m2 + (c - t.c0));
    });
    for (int64_t j = 0; j < t.count; ++j) m2[j] -= static_cast<opmath_t>(rows) * lo[j] * lo[j];
  };

  // The lo halves of the means when the chunks' moments are merged (phase 1), per (n, c).
  std::vector<opmath_t> mean_lo;

  if (use_input_stats && !p.whole_planes()) {
    // Phase 1: chunk moments in parallel; then merge them per (n, c) in chunk order.
    const int64_t tasks = p.tasks();
    std::vector<double> part_mean(tasks * p.cb);
    std::vector<opmath_t> part_m2(tasks * p.cb);
    mean_lo.resize(p.N * C);
    at::parallel_for(0, tasks, p.grain(), [&](int64_t first, int64_t last) {
      ChannelArray<opmath_t> hi, lo, m2;
      for (int64_t ti = first; ti < last; ++ti) {
        const Plan::Task t = p.task(ti);
        moments(t, hi.data(), lo.data(), m2.data());
        for (int64_t j = 0; j < t.count; ++j) part_mean[ti * p.cb + j] = double(hi[j]) + double(lo[j]);
        std::copy(m2.data(), m2.data() + t.count, &part_m2[ti * p.cb]);
      }
    });
    at::parallel_for(0, p.N * p.blocks, 1, [&](int64_t first, int64_t last) {
      for (int64_t nb = first; nb < last; ++nb) {
        const Plan::Task head = p.task(nb * p.chunks);
        for (int64_t j = 0; j < head.count; ++j) {
          MomentMerge merge;
          for (int64_t k = 0; k < p.chunks; ++k) {
            const Plan::Task t = p.task(nb * p.chunks + k);
            const int64_t at = (nb * p.chunks + k) * p.cb + j;
            merge.add(static_cast<double>(t.r1 - t.r0), part_mean[at], part_m2[at]);
          }
          const int64_t nc = head.n * C + head.c0 + j;
          const SplitMean<opmath_t> mean(merge.mean);
          prm.mean[nc] = mean.hi;
          mean_lo[nc] = mean.lo;
          prm.var[nc] = static_cast<opmath_t>(merge.m2 / static_cast<double>(M));
        }
      }
    });
  }

  // Phase 2 (or the only phase): normalize, computing whole-plane statistics first if needed.
  at::parallel_for(0, p.tasks(), p.grain(), [&](int64_t first, int64_t last) {
    if (small_planes) {
      // Task ti is plane ti. Small planes are latency-bound one at a time (statistics, rstd,
      // then the normalization depend on each other), so a block of planes goes through each
      // step together and their independent chains overlap; the block stays in L2.
      opmath_t hi[kBlock], lo[kBlock], m2[kBlock], scale[kBlock], shift[kBlock];
      int64_t c = first % C;
      for (int64_t b0 = first; b0 < last; b0 += kBlock) {
        const int64_t nb = std::min(kBlock, last - b0);
        for (int64_t k = 0; k < nb; ++k) {
          if (use_input_stats) {
            planar_moments(x + (b0 + k) * M, M, hi[k], lo[k], m2[k]);
            prm.mean[b0 + k] = hi[k];
            prm.var[b0 + k] = m2[k] / static_cast<opmath_t>(M);
          } else {
            hi[k] = prm.mean[b0 + k];
            lo[k] = 0;
          }
        }
        for (int64_t k = 0; k < nb; ++k, c = c + 1 == C ? 0 : c + 1) {
          prm.coefficients(b0 + k, c, lo[k], scale[k], shift[k]);
        }
        for (int64_t k = 0; k < nb; ++k) {
          const int64_t off = (b0 + k) * M;
          planar_normalize<scalar_t, A, RES>(x + off, RES ? res + off : nullptr, out + off, M, hi[k], scale[k],
                                             shift[k], prm.slope);
        }
      }
      return;
    }
    ChannelArray<opmath_t> mean, lo, scale, shift, m2;
    for (int64_t ti = first; ti < last; ++ti) {
      const Plan::Task t = p.task(ti);
      const int64_t nc0 = t.n * C + t.c0;
      if (use_input_stats && p.whole_planes()) {
        moments(t, mean.data(), lo.data(), m2.data());
        for (int64_t j = 0; j < t.count; ++j) {
          prm.mean[nc0 + j] = mean[j];
          prm.var[nc0 + j] = m2[j] / static_cast<opmath_t>(M);
        }
      }
      for (int64_t j = 0; j < t.count; ++j) {
        mean[j] = prm.mean[nc0 + j];
        const opmath_t mean_rest = !use_input_stats ? opmath_t(0) : p.whole_planes() ? lo[j] : mean_lo[nc0 + j];
        prm.coefficients(nc0 + j, t.c0 + j, mean_rest, scale[j], shift[j]);
      }
      if (!p.interleaved) {
        const int64_t off = nc0 * M + t.r0;
        planar_normalize<scalar_t, A, RES>(x + off, RES ? res + off : nullptr, out + off, t.r1 - t.r0, mean[0],
                                           scale[0], shift[0], prm.slope);
        continue;
      }
      const int64_t img = t.n * M * C;
      for_tiles<W>(t.c0, t.count, t.r0, t.r1, tile, [&](auto nv, int64_t c, int64_t span, int64_t r0, int64_t r1) {
        const int64_t j = c - t.c0;
        interleaved_normalize_group<scalar_t, decltype(nv)::value, A, RES>(
            x + img, RES ? res + img : nullptr, out + img, C, c, span, r0, r1, mean.data() + j, scale.data() + j,
            shift.data() + j, prm.slope);
      });
    }
  });
}

// ------------------------------------------------------------------------------------------
// backward

template <typename scalar_t, Act A>
void backward_kernel(const Plan& p, const Params<scalar_t>& prm, const scalar_t* g, const scalar_t* x, scalar_t* dx,
                     at::opmath_type<scalar_t>* sum_gy, at::opmath_type<scalar_t>* sum_gy_xc, bool use_input_stats,
                     bool need_sums) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t W = VecIO<scalar_t>::size();
  const int64_t C = p.C, M = p.M;
  const int64_t tile = tile_rows(C, sizeof(scalar_t));
  const bool small_planes = !p.interleaved && p.whole_planes() && M * int64_t(sizeof(scalar_t)) * kBlock <= kBlockBytes;

  // The saved mean is the forward's hi (see SplitMean); lo, what its rounding dropped, is
  // recomputed from the data as sum (x - hi) / M (for whole planes while the plane is in cache
  // for the sweeps that follow; for chunked planes in a pass of its own, merged in double).
  // offset_sums writes sum (x - hi) over task t's rows.
  auto offset_sums = [&](const Plan::Task& t, const opmath_t* hi, opmath_t* out) {
    if (!p.interleaved) {
      out[0] = planar_offset_sum(x + (t.n * C + t.c0) * M + t.r0, t.r1 - t.r0, hi[0]);
      return;
    }
    const int64_t padded = (t.count + W - 1) / W * W;
    std::fill(out, out + padded, opmath_t(0));
    for_tiles<W>(t.c0, t.count, t.r0, t.r1, tile, [&](auto nv, int64_t c, int64_t span, int64_t r0, int64_t r1) {
      interleaved_moment_group<scalar_t, decltype(nv)::value, Moment::Offset>(x + t.n * M * C, C, c, span, r0, r1,
                                                                              hi + (c - t.c0), out + (c - t.c0));
    });
  };
  std::vector<opmath_t> mean_lo;  // per (n, c), for chunked planes
  // hi, lo, scale (= weight * rstd) and shift (= bias - lo * scale) of task t's channels: the
  // kernels take (x - hi) * scale + shift.
  auto coefficients = [&](const Plan::Task& t, opmath_t* mean, opmath_t* lo, opmath_t* scale, opmath_t* shift) {
    const int64_t nc0 = t.n * C + t.c0;
    const int64_t padded = (t.count + W - 1) / W * W;
    for (int64_t j = 0; j < padded; ++j) mean[j] = j < t.count ? prm.mean[nc0 + j] : opmath_t(0);
    if (!use_input_stats) {
      std::fill(lo, lo + t.count, opmath_t(0));  // running statistics are exact as given
    } else if (p.whole_planes()) {
      offset_sums(t, mean, lo);
      for (int64_t j = 0; j < t.count; ++j) lo[j] /= static_cast<opmath_t>(M);
    } else {
      std::copy(&mean_lo[nc0], &mean_lo[nc0] + t.count, lo);
    }
    for (int64_t j = 0; j < t.count; ++j) {
      prm.coefficients(nc0 + j, t.c0 + j, lo[j], scale[j], shift[j]);
    }
  };
  auto sums_about_hi = [&](const Plan::Task& t, const opmath_t* mean, const opmath_t* scale, const opmath_t* shift,
                           opmath_t* s1, opmath_t* s2) {
    if (!p.interleaved) {
      const int64_t off = (t.n * C + t.c0) * M + t.r0;
      planar_grad_sums<scalar_t, A>(g + off, x + off, t.r1 - t.r0, mean[0], scale[0], shift[0], prm.slope, s1[0],
                                    s2[0]);
      return;
    }
    const int64_t img = t.n * M * C;
    const int64_t padded = (t.count + W - 1) / W * W;  // the group sweeps touch whole vectors
    std::fill(s1, s1 + padded, opmath_t(0));
    std::fill(s2, s2 + padded, opmath_t(0));
    for_tiles<W>(t.c0, t.count, t.r0, t.r1, tile, [&](auto nv, int64_t c, int64_t span, int64_t r0, int64_t r1) {
      const int64_t j = c - t.c0;
      interleaved_grad_sums_group<scalar_t, decltype(nv)::value, A>(g + img, x + img, C, c, span, r0, r1, mean + j,
                                                                    scale + j, shift + j, prm.slope, s1 + j, s2 + j);
    });
  };
  // sum gy and sum gy * (x - hi - lo) = sum gy * (x - hi) - lo * sum gy.
  auto sums = [&](const Plan::Task& t, const opmath_t* mean, const opmath_t* lo, const opmath_t* scale,
                  const opmath_t* shift, opmath_t* s1, opmath_t* s2) {
    sums_about_hi(t, mean, scale, shift, s1, s2);
    for (int64_t j = 0; j < t.count; ++j) s2[j] -= lo[j] * s1[j];
  };
  if (use_input_stats && !p.whole_planes()) {
    const int64_t tasks = p.tasks();
    std::vector<opmath_t> part(tasks * p.cb);
    mean_lo.resize(p.N * C);
    at::parallel_for(0, tasks, p.grain(), [&](int64_t first, int64_t last) {
      ChannelArray<opmath_t> hi, sum;
      for (int64_t ti = first; ti < last; ++ti) {
        const Plan::Task t = p.task(ti);
        const int64_t padded = (t.count + W - 1) / W * W;
        for (int64_t j = 0; j < padded; ++j) hi[j] = j < t.count ? prm.mean[t.n * C + t.c0 + j] : opmath_t(0);
        offset_sums(t, hi.data(), sum.data());
        std::copy(sum.data(), sum.data() + t.count, &part[ti * p.cb]);
      }
    });
    for (int64_t nb = 0; nb < p.N * p.blocks; ++nb) {
      const Plan::Task head = p.task(nb * p.chunks);
      for (int64_t j = 0; j < head.count; ++j) {
        double total = 0;
        for (int64_t k = 0; k < p.chunks; ++k) total += part[(nb * p.chunks + k) * p.cb + j];
        mean_lo[head.n * C + head.c0 + j] = static_cast<opmath_t>(total / static_cast<double>(M));
      }
    }
  }

  if (need_sums && !p.whole_planes()) {
    const int64_t tasks = p.tasks();
    std::vector<opmath_t> part_s1(tasks * p.cb), part_s2(tasks * p.cb);
    at::parallel_for(0, tasks, p.grain(), [&](int64_t first, int64_t last) {
      ChannelArray<opmath_t> mean, lo, scale, shift, s1, s2;
      for (int64_t ti = first; ti < last; ++ti) {
        const Plan::Task t = p.task(ti);
        coefficients(t, mean.data(), lo.data(), scale.data(), shift.data());
        sums(t, mean.data(), lo.data(), scale.data(), shift.data(), s1.data(), s2.data());
        std::copy(s1.data(), s1.data() + t.count, &part_s1[ti * p.cb]);
        std::copy(s2.data(), s2.data() + t.count, &part_s2[ti * p.cb]);
      }
    });
    for (int64_t nb = 0; nb < p.N * p.blocks; ++nb) {
      const Plan::Task head = p.task(nb * p.chunks);
      for (int64_t j = 0; j < head.count; ++j) {
        double a = 0, b = 0;
        for (int64_t k = 0; k < p.chunks; ++k) {
          a += part_s1[(nb * p.chunks + k) * p.cb + j];
          b += part_s2[(nb * p.chunks + k) * p.cb + j];
        }
        sum_gy[head.n * C + head.c0 + j] = static_cast<opmath_t>(a);
        sum_gy_xc[head.n * C + head.c0 + j] = static_cast<opmath_t>(b);
      }
    }
  }
  const bool fused_sums = need_sums && p.whole_planes();
  if (!fused_sums && dx == nullptr) return;

  at::parallel_for(0, p.tasks(), p.grain(), [&](int64_t first, int64_t last) {
    if (small_planes) {
      // Task ti is plane ti; a block of planes goes through each step together (as in the
      // forward), the same arithmetic as the general path below.
      opmath_t hi[kBlock], lo[kBlock], scale[kBlock], shift[kBlock];
      const opmath_t inv_m = opmath_t(1) / static_cast<opmath_t>(M);
      int64_t c = first % C;
      for (int64_t b0 = first; b0 < last; b0 += kBlock) {
        const int64_t nb = std::min(kBlock, last - b0);
        for (int64_t k = 0; k < nb; ++k) {
          hi[k] = prm.mean[b0 + k];
          lo[k] = use_input_stats ? planar_offset_sum(x + (b0 + k) * M, M, hi[k]) / static_cast<opmath_t>(M)
                                  : opmath_t(0);
        }
        for (int64_t k = 0; k < nb; ++k, c = c + 1 == C ? 0 : c + 1) {
          prm.coefficients(b0 + k, c, lo[k], scale[k], shift[k]);
        }
        if (fused_sums) {
          for (int64_t k = 0; k < nb; ++k) {
            const int64_t nc = b0 + k;
            opmath_t s1 = 0, s2 = 0;
            planar_grad_sums<scalar_t, A>(g + nc * M, x + nc * M, M, hi[k], scale[k], shift[k], prm.slope, s1, s2);
            sum_gy[nc] = s1;
            sum_gy_xc[nc] = s2 - lo[k] * s1;
          }
        }
        if (dx == nullptr) continue;
        for (int64_t k = 0; k < nb; ++k) {
          const int64_t nc = b0 + k;
          opmath_t cx = 0, ca = 0;
          if (use_input_stats) prm.grad_coefficients(nc, scale[k], lo[k], sum_gy[nc], sum_gy_xc[nc], inv_m, cx, ca);
          planar_grad_input<scalar_t, A>(g + nc * M, x + nc * M, dx + nc * M, M, hi[k], scale[k], shift[k], prm.slope,
                                         scale[k], cx, ca, use_input_stats);
        }
      }
      return;
    }
    ChannelArray<opmath_t> mean, lo, scale, shift, cg, cx, ca, s1, s2;
    for (int64_t ti = first; ti < last; ++ti) {
      const Plan::Task t = p.task(ti);
      const int64_t nc0 = t.n * C + t.c0;
      coefficients(t, mean.data(), lo.data(), scale.data(), shift.data());
      if (fused_sums) {
        sums(t, mean.data(), lo.data(), scale.data(), shift.data(), s1.data(), s2.data());
        std::copy(s1.data(), s1.data() + t.count, sum_gy + nc0);
        std::copy(s2.data(), s2.data() + t.count, sum_gy_xc + nc0);
      }
      if (dx == nullptr) continue;
      const opmath_t inv_m = opmath_t(1) / static_cast<opmath_t>(M);
      for (int64_t j = 0; j < t.count; ++j) {
        cg[j] = scale[j];  // weight * rstd
        cx[j] = ca[j] = 0;
        if (use_input_stats) {
          prm.grad_coefficients(nc0 + j, scale[j], lo[j], sum_gy[nc0 + j], sum_gy_xc[nc0 + j], inv_m, cx[j], ca[j]);
        }
      }
      if (!p.interleaved) {
        const int64_t off = nc0 * M + t.r0;
        planar_grad_input<scalar_t, A>(g + off, x + off, dx + off, t.r1 - t.r0, mean[0], scale[0], shift[0], prm.slope,
                                       cg[0], cx[0], ca[0], use_input_stats);
        continue;
      }
      const int64_t img = t.n * M * C;
      for_tiles<W>(t.c0, t.count, t.r0, t.r1, tile, [&](auto nv, int64_t c, int64_t span, int64_t r0, int64_t r1) {
        const int64_t j = c - t.c0;
        interleaved_grad_input_group<scalar_t, decltype(nv)::value, A>(
            g + img, x + img, dx + img, C, c, span, r0, r1, mean.data() + j, scale.data() + j, shift.data() + j,
            prm.slope, cg.data() + j, cx.data() + j, ca.data() + j, use_input_stats);
      });
    }
  });
}

// ------------------------------------------------------------------------------------------
// argument checks and the ops

void check_input(const at::Tensor& input, const char* op) {
  checks::floating(op, "input", input);
  checks::same_device(op, "input", input, {});
  TORCH_CHECK_VALUE(input.dim() >= 2, "fastgen.", op, ": input must have at least 2 dimensions (N, C, ...), got ",
                    input.dim(), "-D input of shape ", input.sizes());
}

int64_t spatial_size(const at::Tensor& input) {
  int64_t m = 1;
  for (int64_t d = 2; d < input.dim(); ++d) m *= input.size(d);
  return m;
}

// A per-channel parameter as a contiguous (C,) tensor of the op math type, or undefined.
at::Tensor channel_param(const std::optional<at::Tensor>& t, const at::Tensor& input, const char* name,
                         const char* op) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  const int64_t C = input.size(1);
  checks::floating(op, name, *t);
  TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == C, "fastgen.", op, ": ", name, " must have shape (", C,
                    ",) (the input's channels), got ", t->sizes());
  checks::same_device(op, "input", input, {{name, t}});
  return t->to(at::toOpMathType(input.scalar_type())).contiguous();
}

void check_like_input(const at::Tensor& t, const at::Tensor& input, const char* name, const char* op) {
  checks::like(op, name, t, "input", input);
}

void check_stats(const at::Tensor& t, const at::Tensor& input, const char* name, const char* op) {
  const auto opmath = at::toOpMathType(input.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 2 && t.size(0) == input.size(0) && t.size(1) == input.size(1), "fastgen.", op, ": ",
                    name, " must have shape (", input.size(0), ", ", input.size(1), "), got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == opmath, "fastgen.", op, ": ", name, " must be ", opmath, " for ",
                   input.scalar_type(), " input, got ", t.scalar_type());
  checks::same_device(op, "input", input, {{name, t}});
}

// The layout the kernels walk: input itself when contiguous or channels-innermost, else a copy.
at::Tensor kernel_layout(const at::Tensor& input, bool& interleaved) {
  interleaved = !input.is_contiguous() && channels_innermost(input);
  return (interleaved || input.is_contiguous()) ? input : input.contiguous();
}

// An operand of x's shape (grad_out, residual) walked with x's indexing. The kernels address
// elements from the sizes alone, so any tensor in the same layout will do, whatever the
// strides of its size-1 dims (e.g. a channel slice of a batch-1 cat's gradient); else a copy.
at::Tensor walked_like(const at::Tensor& t, const at::Tensor& x, bool interleaved) {
  const bool same = interleaved ? channels_innermost(t) : t.is_contiguous();
  return same ? t : in_layout_of(t, x);
}

// Planes whose statistics overflow the op math type: (x - mean)^2 leaves float32's range once
// |x - mean| passes ~1.8e19, and var (then rstd) becomes inf or NaN, whereas the normalized
// output is of order 1. A call with such a plane (float32, bfloat16 or float16 input: checked on
// the (N, C) variances after the float32 pass, so the usual call pays nothing) is computed again
// in double, whose range holds it, and rounded back: it gets float64's result. NaN or inf inputs
// take the same path and give NaN planes, as eager does.
// The same path takes variances above kMaxFloatVar, finite or not: the backward's coefficient
// weight * rstd^3 * sum(gy * xc) / M is of order weight / var, which underflows float32 (below
// 1.2e-38) and loses its digits long before var itself overflows.
constexpr double kMaxFloatVar = 1e30;

bool float_stats_ok(const at::Tensor& var) {
  const at::Tensor t = var.contiguous();
  const float* v = t.const_data_ptr<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (!(std::abs(v[i]) <= kMaxFloatVar)) return false;  // NaN and inf included
  }
  return true;
}

std::optional<at::Tensor> as_double(const std::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return t;
  return t->to(at::kDouble);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> instance_norm_cpu(
    const at::Tensor& input, const std::optional<at::Tensor>& weight_in, const std::optional<at::Tensor>& bias_in,
    const std::optional<at::Tensor>& running_mean, const std::optional<at::Tensor>& running_var,
    const std::optional<at::Tensor>& residual_in, bool use_input_stats, double eps, c10::string_view activation,
    double negative_slope) {
  const char* op = "instance_norm";
  check_input(input, op);
  const Act act = parse_activation(activation, op);
  const int64_t N = input.size(0), C = input.size(1), M = spatial_size(input);
  const at::Tensor weight = channel_param(weight_in, input, "weight", op);
  const at::Tensor bias = channel_param(bias_in, input, "bias", op);
  const auto opmath = at::toOpMathType(input.scalar_type());
  at::Tensor mean = at::empty({N, C}, input.options().dtype(opmath));
  at::Tensor var = at::empty({N, C}, input.options().dtype(opmath));
  if (use_input_stats) {
    TORCH_CHECK_VALUE(M != 1, "fastgen.", op, ": Expected more than 1 spatial element when training, got input size ",
                      input.sizes());
    if (M == 0) {  // statistics of nothing, as torch's mean and var
      mean.fill_(std::numeric_limits<double>::quiet_NaN());
      var.fill_(std::numeric_limits<double>::quiet_NaN());
    }
  } else {
    TORCH_CHECK_VALUE(
        running_mean.has_value() && running_mean->defined() && running_var.has_value() && running_var->defined(),
        "fastgen.", op, ": running_mean and running_var must be given when use_input_stats is False");
    mean.copy_(channel_param(running_mean, input, "running_mean", op).view({1, C}).expand({N, C}));
    var.copy_(channel_param(running_var, input, "running_var", op).view({1, C}).expand({N, C}));
  }
  bool interleaved = false;
  const at::Tensor x = kernel_layout(input, interleaved);
  const bool has_res = residual_in.has_value() && residual_in->defined();
  at::Tensor residual;
  if (has_res) {
    check_like_input(*residual_in, input, "residual", op);
    residual = walked_like(*residual_in, x, interleaved);
  }
  at::Tensor out = at::empty_like(x);
  if (x.numel() == 0) return {out, mean, var};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "instance_norm", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    Params<scalar_t> prm;
    prm.weight = weight.defined() ? weight.const_data_ptr<opmath_t>() : nullptr;
    prm.bias = bias.defined() ? bias.const_data_ptr<opmath_t>() : nullptr;
    prm.mean = mean.mutable_data_ptr<opmath_t>();
    prm.var = var.mutable_data_ptr<opmath_t>();
    prm.eps = eps;
    prm.slope = static_cast<opmath_t>(negative_slope);
    prm.C = C;
    const Plan plan = make_plan(interleaved, N, C, M, x.element_size(), VecIO<scalar_t>::size());
    const scalar_t* res = has_res ? residual.const_data_ptr<scalar_t>() : nullptr;
    with_act(act, [&](auto a) {
      with_bool(has_res, [&](auto r) {
        forward_kernel<scalar_t, decltype(a)::value, decltype(r)::value>(
            plan, prm, x.const_data_ptr<scalar_t>(), res, out.mutable_data_ptr<scalar_t>(), use_input_stats);
      });
    });
  });
  if (use_input_stats && opmath == at::kFloat && !float_stats_ok(var)) {  // see float_stats_ok
    const auto r = instance_norm_cpu(input.to(at::kDouble), as_double(weight_in), as_double(bias_in), std::nullopt,
                                     std::nullopt, as_double(residual_in), true, eps, activation, negative_slope);
    return {std::get<0>(r).to(input.scalar_type()), std::get<1>(r).to(opmath), std::get<2>(r).to(opmath)};
  }
  return {out, mean, var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> instance_norm_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& input, const std::optional<at::Tensor>& weight_in,
    const std::optional<at::Tensor>& bias_in, const at::Tensor& mean_in, const at::Tensor& var_in, bool use_input_stats,
    double eps, c10::string_view activation, double negative_slope, std::array<bool, 3> output_mask) {
  const char* op = "instance_norm_backward";
  check_input(input, op);
  const Act act = parse_activation(activation, op);
  check_like_input(grad_out_in, input, "grad_out", op);
  check_stats(mean_in, input, "mean", op);
  check_stats(var_in, input, "var", op);
  const int64_t N = input.size(0), C = input.size(1), M = spatial_size(input);
  const at::Tensor weight = channel_param(weight_in, input, "weight", op);
  const at::Tensor bias = channel_param(bias_in, input, "bias", op);
  TORCH_CHECK_VALUE(!output_mask[1] || weight.defined(), "fastgen.", op, ": output_mask[1] (grad_weight) needs weight");
  TORCH_CHECK_VALUE(!output_mask[2] || bias.defined(), "fastgen.", op, ": output_mask[2] (grad_bias) needs bias");
  const at::Tensor mean = mean_in.contiguous();
  const at::Tensor var = var_in.contiguous();
  const auto opmath = at::toOpMathType(input.scalar_type());
  if (use_input_stats && opmath == at::kFloat && input.numel() != 0 && !float_stats_ok(var)) {
    // Statistics beyond float32's range (see float_stats_ok): recompute them and the gradients in double.
    const at::Tensor x64 = input.to(at::kDouble);
    const auto w64 = as_double(weight_in), b64 = as_double(bias_in);
    const auto stats = instance_norm_cpu(x64, w64, b64, std::nullopt, std::nullopt, std::nullopt, true, eps, activation,
                                         negative_slope);
    const auto r = instance_norm_backward_cpu(grad_out_in.to(at::kDouble), x64, w64, b64, std::get<1>(stats),
                                              std::get<2>(stats), true, eps, activation, negative_slope, output_mask);
    return {std::get<0>(r).to(input.scalar_type()),
            std::get<1>(r).to(output_mask[1] ? weight_in->scalar_type() : input.scalar_type()),
            std::get<2>(r).to(output_mask[2] ? bias_in->scalar_type() : input.scalar_type())};
  }
  bool interleaved = false;
  const at::Tensor x = kernel_layout(input, interleaved);
  const at::Tensor grad_out = walked_like(grad_out_in, x, interleaved);

  at::Tensor grad_input = output_mask[0] ? at::empty_like(x) : at::empty({0}, input.options());
  const bool need_params = output_mask[1] || output_mask[2];
  const bool need_sums = need_params || (output_mask[0] && use_input_stats);
  // Per (n, c): sum gy and sum gy * (x - mean).
  at::Tensor sums = at::zeros({2, N, C}, input.options().dtype(opmath));
  if (x.numel() != 0 && (need_sums || output_mask[0])) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "instance_norm_backward", [&] {
      using opmath_t = at::opmath_type<scalar_t>;
      Params<scalar_t> prm;
      prm.weight = weight.defined() ? weight.const_data_ptr<opmath_t>() : nullptr;
      prm.bias = bias.defined() ? bias.const_data_ptr<opmath_t>() : nullptr;
      prm.mean = const_cast<opmath_t*>(mean.const_data_ptr<opmath_t>());
      prm.var = const_cast<opmath_t*>(var.const_data_ptr<opmath_t>());
      prm.eps = eps;
      prm.slope = static_cast<opmath_t>(negative_slope);
      prm.C = C;
      const Plan plan = make_plan(interleaved, N, C, M, x.element_size(), VecIO<scalar_t>::size());
      opmath_t* s = sums.mutable_data_ptr<opmath_t>();
      with_act(act, [&](auto a) {
        backward_kernel<scalar_t, decltype(a)::value>(
            plan, prm, grad_out.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
            output_mask[0] ? grad_input.mutable_data_ptr<scalar_t>() : nullptr, s, s + N * C, use_input_stats,
            need_sums);
      });
    });
  }
  at::Tensor grad_weight = at::empty({0}, input.options());
  at::Tensor grad_bias = at::empty({0}, input.options());
  if (need_params) {
    // Summed over the batch in double, in sample order.
    const at::Tensor s = sums.to(at::kDouble);
    const at::Tensor v = var.to(at::kDouble);
    at::Tensor gw = at::zeros({C}, input.options().dtype(at::kDouble));
    at::Tensor gb = at::zeros({C}, input.options().dtype(at::kDouble));
    const double* s1 = s.const_data_ptr<double>();
    const double* s2 = s1 + N * C;
    const double* vp = v.const_data_ptr<double>();
    double* gwp = gw.mutable_data_ptr<double>();
    double* gbp = gb.mutable_data_ptr<double>();
    const bool reduced = opmath == at::kFloat;
    // Planes of no elements (M == 0) add nothing: their sums are 0 but their statistics NaN,
    // and 0 * rstd would make the gradient NaN where eager's is 0.
    for (int64_t n = 0; n < (M == 0 ? 0 : N); ++n) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t nc = n * C + c;
        // rstd as the kernels compute it (Params::rstd), rounded to the op math type.
        const double rstd = reduced ? static_cast<double>(static_cast<float>(1.0 / std::sqrt(vp[nc] + eps)))
                                    : 1.0 / std::sqrt(vp[nc] + eps);
        gwp[c] += rstd * s2[nc];
        gbp[c] += s1[nc];
      }
    }
    if (output_mask[1]) grad_weight = gw.to(weight_in->scalar_type());
    if (output_mask[2]) grad_bias = gb.to(bias_in->scalar_type());
  }
  return {grad_input, grad_weight, grad_bias};
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(instance_norm, m) {
  m.impl("instance_norm", &instance_norm_cpu);
  m.impl("instance_norm_backward", &instance_norm_backward_cpu);
}

}  // namespace fastgen
