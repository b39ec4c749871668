// PixelShuffle / PixelUnshuffle, and PixelShuffle fused with PReLU (the SRGAN upsampling tail).
//
// Shapes: the "small" tensor S is (*, C*r*r, H, W), the "big" tensor B is (*, C, H*r, W*r), and
//   B[n, c, h*r + i, w*r + j] = S[n, c*r*r + i*r + j, h, w].
// pixel_shuffle copies S -> B, pixel_unshuffle B -> S. pixel_shuffle_prelu writes
//   y = x > 0 ? x : a[c] * x        (a: 1 or C weights, as nn.PReLU; computed in opmath)
// on the way from S to B, so the forward is bit-exact with nn.PixelShuffle + nn.PReLU.
// Its backward, in one pass from B (grad) to S (grad_input), also sums the weight gradient
//   grad_a[c] = sum over the channel-c outputs of (x > 0 ? 0 : x * grad)
// per task and adds the task partials in a fixed order (independent of the thread count).
//
// Layouts: 4-D inputs whose strides suggest channels_last (NHWC) are walked natively and give
// channels_last outputs, as torch's pixel_shuffle does; everything else is made contiguous
// (NCHW), with the leading dims flattened into one batch dim.
// Upscale factor 2 (and 1, a plain PReLU) has vectorized paths: NCHW plane pairs are
// (de)interleaved with at::vec::interleave2 (walked flat across rows when half a vector divides
// W, else row by row), NHWC pixels by two rounds of it. Other factors use scalar loops (still
// one pass).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/vec_io.h"

namespace fastgen {
namespace {

// Work below this many elements is not worth waking another thread for.
constexpr int64_t kGrainElements = 32768;

// The problem in the small tensor's terms (leading dims flattened into `batch`).
struct Geometry {
  int64_t batch = 0;
  int64_t channels = 0;  // C: channels of the big tensor
  int64_t r = 1;
  int64_t height = 0;  // H, W: spatial size of the small tensor
  int64_t width = 0;
  bool channels_last = false;

  int64_t small_channels() const { return channels * r * r; }
};

// "(2, 3, 4)", as the Python side prints shapes.
std::string shape_str(at::IntArrayRef sizes) {
  std::string out = "(";
  for (size_t i = 0; i < sizes.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(sizes[i]);
  }
  return out + (sizes.size() == 1 ? ",)" : ")");
}

at::MemoryFormat layout_of(const at::Tensor& t) {
  return t.dim() == 4 ? t.suggest_memory_format() : at::MemoryFormat::Contiguous;
}

void check_input(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK_VALUE(x.dim() >= 3, "fastgen.", op, ": ", name, " must have at least 3 dimensions (*, C, H, W), got ",
                    x.dim());
  checks::floating(op, name, x);
  checks::same_device(op, name, x, {});
}

// r > 0, and r * r and the output's spatial sizes (H * r, W * r) fit in int64: a factor of
// 2^32 squares to 0, which was then a divisor (SIGFPE).
void check_factor(int64_t r, const char* op, const char* name) {
  TORCH_CHECK_VALUE(r > 0, "fastgen.", op, ": ", name, " must be positive, got ", r);
  checks::mul(op, (std::string(name) + "**2").c_str(), r, r);
}

// Geometry of a pixel_shuffle input `x` (the small tensor) with factor r.
Geometry small_geometry(const at::Tensor& x, int64_t r, const char* op, const char* name) {
  check_input(x, op, name);
  check_factor(r, op, "upscale_factor");
  const int64_t rr = r * r;
  checks::mul(op, "the output's height (H * upscale_factor)", x.size(-2), r);
  checks::mul(op, "the output's width (W * upscale_factor)", x.size(-1), r);
  TORCH_CHECK_VALUE(x.size(-3) % rr == 0, "fastgen.", op, ": ", name,
                    ".size(-3) (channels) must be divisible by upscale_factor**2 = ", rr, ", got ", x.size(-3));
  Geometry g;
  g.batch = 1;
  for (int64_t d = 0; d < x.dim() - 3; ++d) g.batch *= x.size(d);
  g.channels = x.size(-3) / rr;
  g.r = r;
  g.height = x.size(-2);
  g.width = x.size(-1);
  g.channels_last = layout_of(x) == at::MemoryFormat::ChannelsLast;
  return g;
}

std::vector<int64_t> big_sizes(const at::Tensor& small, const Geometry& g) {
  std::vector<int64_t> sizes(small.sizes().begin(), small.sizes().end() - 3);
  sizes.insert(sizes.end(), {g.channels, g.height * g.r, g.width * g.r});
  return sizes;
}

// The PReLU weights as C opmath values (a single weight is repeated).
template <typename scalar_t>
std::vector<at::opmath_type<scalar_t>> weight_buffer(const at::Tensor& weight, int64_t channels) {
  using opmath_t = at::opmath_type<scalar_t>;
  const at::Tensor w = weight.contiguous();
  const scalar_t* src = w.const_data_ptr<scalar_t>();
  std::vector<opmath_t> out(static_cast<size_t>(channels), opmath_t(0));
  for (int64_t c = 0; c < channels; ++c) {
    out[c] = static_cast<opmath_t>(src[w.numel() == 1 ? 0 : c]);
  }
  return out;
}

template <bool kPrelu, typename T>
inline T prelu(const T& x, const T& a) {
  if constexpr (kPrelu) {
    return x > T(0) ? x : a * x;
  } else {
    return x;
  }
}

template <bool kPrelu, typename Vec>
inline Vec prelu_vec(const Vec& x, const Vec& a) {
  if constexpr (kPrelu) {
    return Vec::blendv(a * x, x, x > Vec(0));
  } else {
    return x;
  }
}

// A small position (h, w) stepped through a plane by kHalf (which divides W) at a time, for the
// flat walks of factor 2: big_offset is where its interleaved pair starts in big row 2h + i.
struct FlatPosition {
  int64_t width;
  int64_t h = 0;
  int64_t w = 0;

  int64_t big_offset(int64_t i, int64_t big_width) const { return (2 * h + i) * big_width + 2 * w; }
  void advance(int64_t step) {
    w += step;
    if (w == width) {
      w = 0;
      ++h;
    }
  }
};

// Runs fn(task) for tasks [0, tasks) in parallel; a task covers `elements` elements, and
// chunks of tasks are sized to be worth waking a thread for.
template <typename Fn>
void parallel_tasks(int64_t tasks, int64_t elements, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, elements));
  at::parallel_for(0, tasks, grain, [&](int64_t first, int64_t last) {
    for (int64_t t = first; t < last; ++t) fn(t);
  });
}

// The PReLU weights of channel c (a vector of channels c.. c+V-1, or one), zero without PReLU.
template <typename scalar_t, bool kPrelu>
struct Weights {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = typename VecIO<scalar_t>::Vec;
  const opmath_t* data;  // weight_buffer(); null without PReLU

  Vec vec(int64_t c) const { return kPrelu ? Vec::loadu(data + c) : Vec(0); }
  opmath_t at(int64_t c) const { return kPrelu ? data[c] : opmath_t(0); }
};

// ---------------------------------------------------------------------------------------
// forward: small -> big, y = prelu(x)

template <typename scalar_t, bool kPrelu>
void shuffle_forward(const scalar_t* src, scalar_t* dst, const at::opmath_type<scalar_t>* weights, const Geometry& g) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t V = IO::size();
  constexpr int64_t kHalf = V / 2;
  const int64_t C = g.channels, r = g.r, H = g.height, W = g.width;
  const int64_t Hr = H * r, Wr = W * r, Cs = g.small_channels();
  const Weights<scalar_t, kPrelu> wt{weights};

  if (!g.channels_last) {
    // One task per big plane (n, c): its rows oh = h*r + i interleave the rows h of the r
    // small planes c*r*r + i*r + j, j = 0..r-1.
    const int64_t plane = Hr * Wr;
    parallel_tasks(g.batch * C, plane, [&](int64_t p) {
      const opmath_t a = wt.at(p % C);
      const Vec av(a);
      const scalar_t* in = src + p * r * r * H * W;  // small plane p*r*r
      scalar_t* out = dst + p * plane;
      if (r == 1) {
        for (int64_t k = 0; k < plane; k += V) {
          const int64_t n = std::min(V, plane - k);
          IO::store(out + k, prelu_vec<kPrelu>(IO::load(in + k, n), av), n);
        }
        return;
      }
      if (r == 2 && W % kHalf == 0) {
        // Walk the small planes 2i and 2i + 1 flat, across rows: half a vector of small
        // positions never straddles a row (kHalf divides W), so each interleaved half is V
        // contiguous outputs: whole-vector loads and stores, no per-row tails.
        const int64_t HW = H * W;
        for (int64_t i = 0; i < 2; ++i) {
          const scalar_t* pa = in + 2 * i * HW;
          const scalar_t* pb = pa + HW;
          FlatPosition pos{W};
          for (int64_t t = 0; t < HW; t += V) {
            const int64_t n = std::min(V, HW - t);  // V, or kHalf at the end of an odd plane
            const auto lohi = at::vec::interleave2(IO::load(pa + t, n), IO::load(pb + t, n));
            IO::store(out + pos.big_offset(i, Wr), prelu_vec<kPrelu>(lohi.first, av));
            pos.advance(kHalf);
            if (n > kHalf) {
              IO::store(out + pos.big_offset(i, Wr), prelu_vec<kPrelu>(lohi.second, av));
              pos.advance(kHalf);
            }
          }
        }
        return;
      }
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t i = 0; i < r; ++i) {
          const int64_t oh = h * r + i;
          const scalar_t* row0 = in + (i * r * H + h) * W;  // small plane i*r + j is at +j*H*W
          scalar_t* orow = out + oh * Wr;
          if (r == 2) {
            const scalar_t* row1 = row0 + H * W;
            for (int64_t w = 0; w < W; w += V) {
              const int64_t n = std::min(V, W - w);
              auto lohi = at::vec::interleave2(IO::load(row0 + w, n), IO::load(row1 + w, n));
              const Vec lo = prelu_vec<kPrelu>(lohi.first, av);
              const Vec hi = prelu_vec<kPrelu>(lohi.second, av);
              if (n == V) {
                IO::store(orow + 2 * w, lo);
                IO::store(orow + 2 * w + V, hi);
              } else {
                IO::store(orow + 2 * w, lo, std::min(2 * n, V));
                if (2 * n > V) IO::store(orow + 2 * w + V, hi, 2 * n - V);
              }
            }
          } else {
            for (int64_t j = 0; j < r; ++j) {
              const scalar_t* srow = row0 + j * H * W;
              for (int64_t w = 0; w < W; ++w) {
                orow[w * r + j] = static_cast<scalar_t>(prelu<kPrelu>(static_cast<opmath_t>(srow[w]), a));
              }
            }
          }
        }
      }
    });
    return;
  }

  // channels_last: one task per small row (n, h); each small pixel (Cs channels) feeds the r*r
  // big pixels (h*r + i, w*r + j), channel c of which is small channel c*r*r + i*r + j.
  parallel_tasks(g.batch * H, W * Cs, [&](int64_t q) {
    const int64_t n = q / H, h = q % H;
    for (int64_t w = 0; w < W; ++w) {
      const scalar_t* px = src + (q * W + w) * Cs;
      scalar_t* big0 = dst + ((n * Hr + h * r) * Wr + w * r) * C;  // big pixel (i, j) = (0, 0)
      if (r == 1) {
        int64_t c = 0;
        for (; c + V <= C; c += V) {
          IO::store(big0 + c, prelu_vec<kPrelu>(IO::load(px + c), wt.vec(c)));
        }
        for (; c < C; ++c) {
          big0[c] = static_cast<scalar_t>(prelu<kPrelu>(static_cast<opmath_t>(px[c]), wt.at(c)));
        }
        continue;
      }
      int64_t c = 0;
      if (r == 2) {
        scalar_t* b00 = big0;
        scalar_t* b01 = big0 + C;
        scalar_t* b10 = big0 + Wr * C;
        scalar_t* b11 = b10 + C;
        for (; c + V <= C; c += V) {
          // 4V small channels = V big channels x 4 sub-pixels s = 2i + j (s fastest).
          const scalar_t* s = px + 4 * c;
          auto e1o1 = at::vec::deinterleave2(IO::load(s), IO::load(s + V));
          auto e2o2 = at::vec::deinterleave2(IO::load(s + 2 * V), IO::load(s + 3 * V));
          auto s0s2 = at::vec::deinterleave2(e1o1.first, e2o2.first);
          auto s1s3 = at::vec::deinterleave2(e1o1.second, e2o2.second);
          const Vec av = wt.vec(c);
          IO::store(b00 + c, prelu_vec<kPrelu>(s0s2.first, av));
          IO::store(b01 + c, prelu_vec<kPrelu>(s1s3.first, av));
          IO::store(b10 + c, prelu_vec<kPrelu>(s0s2.second, av));
          IO::store(b11 + c, prelu_vec<kPrelu>(s1s3.second, av));
        }
      }
      // Channels past the last whole vector (all of them for r > 2).
      for (int64_t i = 0; i < r; ++i) {
        for (int64_t j = 0; j < r; ++j) {
          scalar_t* b = big0 + (i * Wr + j) * C;
          const scalar_t* s = px + i * r + j;
          for (int64_t cc = c; cc < C; ++cc) {
            b[cc] = static_cast<scalar_t>(prelu<kPrelu>(static_cast<opmath_t>(s[cc * r * r]), wt.at(cc)));
          }
        }
      }
    }
  });
}

// ---------------------------------------------------------------------------------------
// backward: big -> small. Without PReLU this is pixel_unshuffle (dx = grad). With it,
//   dx = x > 0 ? grad : a * grad,   partial_a += x > 0 ? 0 : x * grad
// where x is the forward's input (small layout). `dx` may be null (only the weight gradient)
// and `partials` null (no weight gradient). NCHW tasks are big planes p = (n, c) and write their
// sum to partials[p]; NHWC tasks are small rows q = (n, h) and add into partials[q * C + c].
// The products x * grad are rounded to opmath as eager's are; their sums are kept in double
// (eager sums with a cascade; a long float chain here would be less accurate than eager).

// Weight-gradient terms are summed in opmath vectors over at most this many vector steps
// (per lane), then added to the double accumulators.
constexpr int64_t kFlushSteps = 8;

// Adds the lanes of an opmath vector to `count` double accumulators.
template <typename Vec>
inline void add_lanes(double* acc, const Vec& v, int64_t count = Vec::size()) {
  alignas(64) typename Vec::value_type tmp[Vec::size()];
  v.store(tmp);
  for (int64_t k = 0; k < count; ++k) acc[k] += static_cast<double>(tmp[k]);
}

template <typename scalar_t, bool kPrelu>
void shuffle_backward(const scalar_t* grad, const scalar_t* x, scalar_t* dx, const at::opmath_type<scalar_t>* weights,
                      double* partials, const Geometry& g) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t V = IO::size();
  constexpr int64_t kHalf = V / 2;
  const int64_t C = g.channels, r = g.r, H = g.height, W = g.width;
  const int64_t Hr = H * r, Wr = W * r, Cs = g.small_channels();
  const bool want_dx = dx != nullptr;
  const bool want_da = kPrelu && partials != nullptr;
  const Vec zero(0);
  const Weights<scalar_t, kPrelu> wt{weights};

  // dx for one vector of (x, grad); the weight-gradient terms are added to term.
  auto step_vec = [&](const Vec& xv, const Vec& gv, const Vec& av, Vec& term) -> Vec {
    if constexpr (kPrelu) {
      const Vec pos = xv > zero;
      if (want_da) term = term + Vec::blendv(xv * gv, zero, pos);
      return Vec::blendv(av * gv, gv, pos);
    } else {
      return gv;
    }
  };
  auto step = [&](opmath_t xv, opmath_t gv, opmath_t a, double& acc) -> opmath_t {
    if constexpr (kPrelu) {
      if (xv > opmath_t(0)) return gv;
      acc += static_cast<double>(xv * gv);
      return a * gv;
    } else {
      return gv;
    }
  };

  if (!g.channels_last) {
    const int64_t plane = Hr * Wr;
    parallel_tasks(g.batch * C, plane, [&](int64_t p) {
      const opmath_t a = wt.at(p % C);
      const Vec av(a);
      alignas(64) double lanes[V] = {};
      double acc = 0.0;
      const int64_t small_offset = p * r * r * H * W;
      const scalar_t* gp = grad + p * plane;
      const scalar_t* xp = kPrelu ? x + small_offset : nullptr;
      scalar_t* dxp = want_dx ? dx + small_offset : nullptr;
      // Weight-gradient terms: summed in `term`, flushed to the double lanes every kFlushSteps.
      Vec term(0);
      int64_t steps = 0;
      auto count_step = [&]() {
        if (want_da && ++steps == kFlushSteps) {
          add_lanes(lanes, term);
          term = zero;
          steps = 0;
        }
      };
      // Factor 2: the big-layout grads (g0, g1) of n small positions at offsets sa and sb of
      // the small planes 2i and 2i + 1 (x and dx share the small layout).
      auto pair_step = [&](const Vec& g0, const Vec& g1, int64_t sa, int64_t sb, int64_t n) {
        const auto gab = at::vec::deinterleave2(g0, g1);
        const Vec xa = kPrelu ? IO::load(xp + sa, n) : zero;
        const Vec xb = kPrelu ? IO::load(xp + sb, n) : zero;
        const Vec da = step_vec(xa, gab.first, av, term);
        const Vec db = step_vec(xb, gab.second, av, term);
        if (want_dx) {
          IO::store(dxp + sa, da, n);
          IO::store(dxp + sb, db, n);
        }
        count_step();
      };
      if (r == 1) {
        for (int64_t k = 0; k < plane; k += V) {
          const int64_t n = std::min(V, plane - k);
          const Vec xv = kPrelu ? IO::load(xp + k, n) : zero;
          const Vec d = step_vec(xv, IO::load(gp + k, n), av, term);
          if (want_dx) IO::store(dxp + k, d, n);
          count_step();
        }
      } else if (r == 2 && W % kHalf == 0) {
        // The forward's flat walk (see shuffle_forward), reversed.
        const int64_t HW = H * W;
        for (int64_t i = 0; i < 2; ++i) {
          const int64_t pa = 2 * i * HW, pb = pa + HW;
          FlatPosition pos{W};
          for (int64_t t = 0; t < HW; t += V) {
            const int64_t n = std::min(V, HW - t);  // V, or kHalf at the end of an odd plane
            const Vec g0 = IO::load(gp + pos.big_offset(i, Wr));
            pos.advance(kHalf);
            Vec g1 = zero;
            if (n > kHalf) {
              g1 = IO::load(gp + pos.big_offset(i, Wr));
              pos.advance(kHalf);
            }
            pair_step(g0, g1, pa + t, pb + t, n);
          }
        }
      } else {
        for (int64_t h = 0; h < H; ++h) {
          for (int64_t i = 0; i < r; ++i) {
            const int64_t oh = h * r + i;
            const int64_t row0 = (i * r * H + h) * W;  // small plane i*r + j is at +j*H*W
            const scalar_t* grow = gp + oh * Wr;
            if (r == 2) {
              for (int64_t w = 0; w < W; w += V) {
                const int64_t n = std::min(V, W - w);
                const int64_t m = 2 * n;  // big elements
                const Vec g0 = IO::load(grow + 2 * w, std::min(m, V));
                const Vec g1 = m > V ? IO::load(grow + 2 * w + V, m - V) : zero;
                pair_step(g0, g1, row0 + w, row0 + H * W + w, n);
              }
            } else {
              for (int64_t j = 0; j < r; ++j) {
                const int64_t row = row0 + j * H * W;
                for (int64_t w = 0; w < W; ++w) {
                  const opmath_t xv = kPrelu ? static_cast<opmath_t>(xp[row + w]) : opmath_t(0);
                  const opmath_t d = step(xv, static_cast<opmath_t>(grow[w * r + j]), a, acc);
                  if (want_dx) dxp[row + w] = static_cast<scalar_t>(d);
                }
              }
            }
          }
        }
      }
      if (want_da) add_lanes(lanes, term);
      if (want_da) {
        for (int64_t k = 0; k < V; ++k) acc += lanes[k];
        partials[p] = acc;
      }
    });
    return;
  }

  const int64_t vector_channels = (r == 1 || r == 2) ? C / V * V : 0;
  parallel_tasks(g.batch * H, W * Cs, [&](int64_t q) {
    // Per-channel opmath sums of the last few pixels' whole-vector channels.
    std::vector<opmath_t> recent(static_cast<size_t>(want_da ? C : 0), opmath_t(0));
    const int64_t n = q / H, h = q % H;
    double* acc = want_da ? partials + q * C : nullptr;
    for (int64_t w = 0; w < W; ++w) {
      if (want_da && w > 0 && w % kFlushSteps == 0) {
        for (int64_t c = 0; c < vector_channels; c += V) {
          add_lanes(acc + c, Vec::loadu(recent.data() + c));
          zero.store(recent.data() + c);
        }
      }
      const int64_t px = (q * W + w) * Cs;
      const scalar_t* big0 = grad + ((n * Hr + h * r) * Wr + w * r) * C;
      int64_t c = 0;
      if (r == 1) {
        for (; c + V <= C; c += V) {
          Vec term(0);
          const Vec xv = kPrelu ? IO::load(x + px + c) : zero;
          const Vec d = step_vec(xv, IO::load(big0 + c), wt.vec(c), term);
          if (want_dx) IO::store(dx + px + c, d);
          if (want_da) (Vec::loadu(recent.data() + c) + term).store(recent.data() + c);
        }
      } else if (r == 2) {
        const scalar_t* b00 = big0;
        const scalar_t* b01 = big0 + C;
        const scalar_t* b10 = big0 + Wr * C;
        const scalar_t* b11 = b10 + C;
        for (; c + V <= C; c += V) {
          Vec s0 = zero, s1 = zero, s2 = zero, s3 = zero;
          if constexpr (kPrelu) {
            const scalar_t* xs = x + px + 4 * c;
            auto e1o1 = at::vec::deinterleave2(IO::load(xs), IO::load(xs + V));
            auto e2o2 = at::vec::deinterleave2(IO::load(xs + 2 * V), IO::load(xs + 3 * V));
            auto s0s2 = at::vec::deinterleave2(e1o1.first, e2o2.first);
            auto s1s3 = at::vec::deinterleave2(e1o1.second, e2o2.second);
            s0 = s0s2.first, s2 = s0s2.second, s1 = s1s3.first, s3 = s1s3.second;
          }
          const Vec av = wt.vec(c);
          Vec term(0);
          const Vec d0 = step_vec(s0, IO::load(b00 + c), av, term);
          const Vec d1 = step_vec(s1, IO::load(b01 + c), av, term);
          const Vec d2 = step_vec(s2, IO::load(b10 + c), av, term);
          const Vec d3 = step_vec(s3, IO::load(b11 + c), av, term);
          if (want_dx) {
            auto e1e2 = at::vec::interleave2(d0, d2);
            auto o1o2 = at::vec::interleave2(d1, d3);
            auto v01 = at::vec::interleave2(e1e2.first, o1o2.first);
            auto v23 = at::vec::interleave2(e1e2.second, o1o2.second);
            scalar_t* out = dx + px + 4 * c;
            IO::store(out, v01.first);
            IO::store(out + V, v01.second);
            IO::store(out + 2 * V, v23.first);
            IO::store(out + 3 * V, v23.second);
          }
          if (want_da) (Vec::loadu(recent.data() + c) + term).store(recent.data() + c);
        }
      }
      // Channels past the last whole vector (all of them for r > 2).
      for (int64_t i = 0; i < r; ++i) {
        for (int64_t j = 0; j < r; ++j) {
          const scalar_t* b = big0 + (i * Wr + j) * C;
          const int64_t s = px + i * r + j;
          for (int64_t cc = c; cc < C; ++cc) {
            const opmath_t xv = kPrelu ? static_cast<opmath_t>(x[s + cc * r * r]) : opmath_t(0);
            double unused = 0.0;
            const opmath_t d = step(xv, static_cast<opmath_t>(b[cc]), wt.at(cc), want_da ? acc[cc] : unused);
            if (want_dx) dx[s + cc * r * r] = static_cast<scalar_t>(d);
          }
        }
      }
    }
    if (want_da) {
      for (int64_t c = 0; c < vector_channels; c += V) add_lanes(acc + c, Vec::loadu(recent.data() + c));
    }
  });
}

// ---------------------------------------------------------------------------------------
// ops

void check_weight(const at::Tensor& weight, const at::Tensor& x, int64_t channels, const char* op) {
  TORCH_CHECK_VALUE(weight.dim() <= 1, "fastgen.", op, ": weight must be a scalar or 1-D tensor, got ", weight.dim(),
                    " dimensions");
  TORCH_CHECK_VALUE(weight.numel() == 1 || weight.numel() == channels, "fastgen.", op,
                    ": weight must have 1 or C = ", channels, " (output channels) elements, got ", weight.numel());
  // As fastgen.functional: a per-channel weight needs the channel dim of a 4-D (N, C, H, W)
  // input (torch's prelu reads dim 1 as channels, which a 3-D (C, H, W) input lacks).
  TORCH_CHECK_VALUE(weight.numel() == 1 || x.dim() == 4, "fastgen.", op,
                    ": input must be 4-D (N, C*r*r, H, W) with a per-channel weight, got ", x.dim(), "-D");
  checks::same_dtype(op, "weight", weight, "input", x);
  checks::same_device(op, "input", x, {{"weight", weight}});
}

at::Tensor forward_impl(const at::Tensor& self, const std::optional<at::Tensor>& weight, int64_t r, const char* op) {
  const Geometry g = small_geometry(self, r, op, "input");
  if (weight.has_value()) check_weight(*weight, self, g.channels, op);
  const at::MemoryFormat fmt = g.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor out = at::empty(big_sizes(self, g), self.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  const at::Tensor in = self.contiguous(fmt);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, self.scalar_type(), "pixel_shuffle", [&] {
    if (weight.has_value()) {
      const auto weights = weight_buffer<scalar_t>(*weight, g.channels);
      shuffle_forward<scalar_t, true>(in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), weights.data(),
                                      g);
    } else {
      shuffle_forward<scalar_t, false>(in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), nullptr, g);
    }
  });
  return out;
}

at::Tensor pixel_shuffle_cpu(const at::Tensor& self, int64_t upscale_factor) {
  return forward_impl(self, std::nullopt, upscale_factor, "pixel_shuffle");
}

at::Tensor pixel_shuffle_prelu_cpu(const at::Tensor& self, const at::Tensor& weight, int64_t upscale_factor) {
  return forward_impl(self, weight, upscale_factor, "pixel_shuffle_prelu");
}

at::Tensor pixel_unshuffle_cpu(const at::Tensor& self, int64_t downscale_factor) {
  const char* op = "pixel_unshuffle";
  check_input(self, op, "input");
  check_factor(downscale_factor, op, "downscale_factor");
  const int64_t r = downscale_factor;
  TORCH_CHECK_VALUE(self.size(-2) % r == 0 && self.size(-1) % r == 0, "fastgen.", op,
                    ": input's height and width must be divisible by downscale_factor = ", r, ", got ", self.size(-2),
                    " x ", self.size(-1));
  Geometry g;
  g.batch = 1;
  for (int64_t d = 0; d < self.dim() - 3; ++d) g.batch *= self.size(d);
  g.channels = self.size(-3);
  g.r = r;
  g.height = self.size(-2) / r;
  g.width = self.size(-1) / r;
  g.channels_last = layout_of(self) == at::MemoryFormat::ChannelsLast;
  const at::MemoryFormat fmt = g.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  std::vector<int64_t> sizes(self.sizes().begin(), self.sizes().end() - 3);
  sizes.insert(sizes.end(), {g.small_channels(), g.height, g.width});
  at::Tensor out = at::empty(sizes, self.options().memory_format(fmt));
  if (out.numel() == 0) return out;
  const at::Tensor in = self.contiguous(fmt);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, self.scalar_type(), "pixel_unshuffle", [&] {
    shuffle_backward<scalar_t, false>(in.const_data_ptr<scalar_t>(), nullptr, out.mutable_data_ptr<scalar_t>(), nullptr,
                                      nullptr, g);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> pixel_shuffle_prelu_backward_cpu(const at::Tensor& grad_output,
                                                                    const at::Tensor& self, const at::Tensor& weight,
                                                                    int64_t upscale_factor, bool input_grad,
                                                                    bool weight_grad) {
  const char* op = "pixel_shuffle_prelu_backward";
  const Geometry g = small_geometry(self, upscale_factor, op, "input");
  check_weight(weight, self, g.channels, op);
  const std::vector<int64_t> out_sizes = big_sizes(self, g);
  TORCH_CHECK_VALUE(grad_output.sizes() == at::IntArrayRef(out_sizes), "fastgen.", op,
                    ": grad_output must have the output's shape ", shape_str(out_sizes), ", got ",
                    shape_str(grad_output.sizes()));
  checks::same_dtype(op, "grad_output", grad_output, "input", self);
  checks::same_device(op, "input", self, {{"grad_output", grad_output}});
  const at::MemoryFormat fmt = g.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor grad_input = input_grad ? at::empty(self.sizes(), self.options().memory_format(fmt))
                                     : at::empty({0}, self.options());
  at::Tensor grad_weight;
  const int64_t tasks = g.channels_last ? g.batch * g.height : g.batch * g.channels;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, self.scalar_type(), "pixel_shuffle_prelu_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    // Partial sums, each written by one task only (see shuffle_backward).
    const int64_t n_partials = g.channels_last ? tasks * g.channels : tasks;
    std::vector<double> partials(static_cast<size_t>(weight_grad ? n_partials : 0), 0.0);
    if (self.numel() > 0 && (input_grad || weight_grad)) {
      const at::Tensor x = self.contiguous(fmt);
      const at::Tensor gout = grad_output.contiguous(fmt);
      const auto weights = weight_buffer<scalar_t>(weight, g.channels);
      shuffle_backward<scalar_t, true>(gout.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
                                       input_grad ? grad_input.mutable_data_ptr<scalar_t>() : nullptr, weights.data(),
                                       weight_grad ? partials.data() : nullptr, g);
    }
    if (!weight_grad) {
      grad_weight = at::empty({0}, weight.options());
      return;
    }
    // Task partials in a fixed order: NCHW task p = (n, c) holds its sum at p.
    std::vector<double> per_channel(static_cast<size_t>(g.channels), 0.0);
    if (g.channels_last) {
      for (int64_t t = 0; t < tasks; ++t)
        for (int64_t c = 0; c < g.channels; ++c) per_channel[c] += partials[t * g.channels + c];
    } else {
      for (int64_t t = 0; t < tasks; ++t) per_channel[t % g.channels] += partials[t];
    }
    grad_weight = at::empty(weight.sizes(), weight.options());
    scalar_t* gw = grad_weight.mutable_data_ptr<scalar_t>();
    if (weight.numel() == 1) {
      double total = 0.0;
      for (const double v : per_channel) total += v;
      gw[0] = static_cast<scalar_t>(total);
    } else {
      for (int64_t c = 0; c < g.channels; ++c) gw[c] = static_cast<scalar_t>(per_channel[c]);
    }
  });
  return {grad_input, grad_weight};
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(pixel_shuffle, m) {
  m.impl("pixel_shuffle", &pixel_shuffle_cpu);
  m.impl("pixel_unshuffle", &pixel_unshuffle_cpu);
  m.impl("pixel_shuffle_prelu", &pixel_shuffle_prelu_cpu);
  m.impl("pixel_shuffle_prelu_backward", &pixel_shuffle_prelu_backward_cpu);
}

}  // namespace fastgen
