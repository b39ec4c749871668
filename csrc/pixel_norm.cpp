// Progressive GAN pixel norm: every pixel's feature vector scaled to unit mean square,
//
//   y[n, :, p] = x[n, :, p] * r,   r = 1 / sqrt(mean_c x[n, c, p]^2 + eps)
//
// and its backward, grad_x = r * g - r^3 * x * mean_c(g * x), each in one pass. x is (N, C, *)
// (C = dim 1, p over the remaining dims). Two layouts are walked as they are: planar (contiguous:
// the channels of a pixel are P apart, so vector lanes run over pixels) and interleaved
// (channels innermost, e.g. channels_last or (N, C): a pixel is one contiguous run of C). Other
// layouts are made contiguous first.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cmath>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/vec_io.h"

namespace fastgen {
namespace {

struct PixelShape {
  int64_t n = 0, c = 0, p = 0;
  bool interleaved = false;  // channels innermost (stride 1), else planar (pixels innermost)
};

void check_pixel_args(const at::Tensor& x, double eps, const char* op, const char* name) {
  TORCH_CHECK_VALUE(x.dim() >= 2, "fastgen.", op, ": ", name,
                    " must have a batch and a channel dimension (N, C, ...), got ", x.dim(), "-D");
  checks::floating(op, name, x);
  checks::same_device(op, name, x, {});
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "fastgen.", op, ": eps must be a finite number >= 0, got ", eps);
}

// x itself when it is planar or interleaved (fastgen/ops/pixel_norm.py::pixel_layout mirrors
// this), else a contiguous copy.
at::Tensor pixel_layout(const at::Tensor& x, PixelShape& shape) {
  shape.n = x.size(0);
  shape.c = x.size(1);
  shape.p = shape.c == 0 || shape.n == 0 ? 0 : x.numel() / (shape.n * shape.c);
  if (x.is_contiguous()) {
    shape.interleaved = shape.p == 1;  // (N, C): each sample is one run of C
    return x;
  }
  if (x.movedim(1, -1).is_contiguous()) {
    shape.interleaved = true;
    return x;
  }
  shape.interleaved = shape.p == 1;
  return x.contiguous();
}

// Work units: interleaved -> one pixel each; planar -> one block of kPlanarLanes pixels.
constexpr int64_t kPlanarLanes = 64;

template <typename Fn>
void for_pixel_units(const PixelShape& s, const Fn& fn) {
  const int64_t units_per_sample = s.interleaved ? s.p : (s.p + kPlanarLanes - 1) / kPlanarLanes;
  const int64_t units = s.n * units_per_sample;
  const int64_t per_unit = s.interleaved ? s.c : s.c * std::min(s.p, kPlanarLanes);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, per_unit));
  at::parallel_for(0, units, grain, [&](int64_t first, int64_t last) {
    for (int64_t u = first; u < last; ++u) fn(u / units_per_sample, u % units_per_sample);
  });
}

// ---------------------------------------------------------------------------------------- forward

template <typename scalar_t>
void forward_interleaved(const scalar_t* x, scalar_t* y, int64_t c, double eps) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t W = IO::size();
  const opmath_t mean_sq = sum_squares(x, c) / static_cast<opmath_t>(c);
  const Vec r(opmath_t(1) / std::sqrt(mean_sq + static_cast<opmath_t>(eps)));
  for (int64_t j = 0; j < c; j += W) {
    const int64_t n = std::min(W, c - j);
    IO::store(y + j, IO::load(x + j, n) * r, n);
  }
}

// `lanes` (<= kPlanarLanes) pixels starting at x, channels `stride` apart.
template <typename scalar_t>
void forward_planar(const scalar_t* x, scalar_t* y, int64_t c, int64_t stride, int64_t lanes, double eps) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t W = IO::size();
  constexpr int64_t V = kPlanarLanes / W;
  const int64_t nvec = (lanes + W - 1) / W;
  Vec acc[V];
  for (int64_t v = 0; v < V; ++v) acc[v] = Vec(0);
  for (int64_t ch = 0; ch < c; ++ch) {
    const scalar_t* row = x + ch * stride;
    for (int64_t v = 0; v < nvec; ++v) {
      const Vec xv = IO::load(row + v * W, std::min(W, lanes - v * W));
      acc[v] = at::vec::fmadd(xv, xv, acc[v]);
    }
  }
  const Vec inv_c(opmath_t(1) / static_cast<opmath_t>(c)), veps(static_cast<opmath_t>(eps)), one(1);
  for (int64_t v = 0; v < nvec; ++v) acc[v] = one / at::vec::fmadd(acc[v], inv_c, veps).sqrt();
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t v = 0; v < nvec; ++v) {
      const int64_t n = std::min(W, lanes - v * W);
      const int64_t off = ch * stride + v * W;
      IO::store(y + off, IO::load(x + off, n) * acc[v], n);
    }
  }
}

at::Tensor pixel_norm_cpu(const at::Tensor& x_in, double eps) {
  const char* op = "pixel_norm";
  check_pixel_args(x_in, eps, op, "x");
  PixelShape s;
  const at::Tensor x = pixel_layout(x_in, s);
  at::Tensor y = at::empty_like(x);
  if (x.numel() == 0) return y;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "pixel_norm", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const int64_t sample = s.c * s.p;
    for_pixel_units(s, [&](int64_t n, int64_t u) {
      if (s.interleaved) {
        const int64_t off = n * sample + u * s.c;
        forward_interleaved<scalar_t>(xp + off, yp + off, s.c, eps);
      } else {
        const int64_t off = n * sample + u * kPlanarLanes;
        forward_planar<scalar_t>(xp + off, yp + off, s.c, s.p, std::min(kPlanarLanes, s.p - u * kPlanarLanes), eps);
      }
    });
  });
  return y;
}

// ---------------------------------------------------------------------------------------- backward

template <typename scalar_t>
void backward_interleaved(const scalar_t* g, const scalar_t* x, scalar_t* gx, int64_t c, double eps) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t W = IO::size();
  Vec sq(0), dot(0);
  for (int64_t j = 0; j < c; j += W) {
    const int64_t n = std::min(W, c - j);
    const Vec xv = IO::load(x + j, n);
    sq = at::vec::fmadd(xv, xv, sq);
    dot = at::vec::fmadd(xv, IO::load(g + j, n), dot);
  }
  const opmath_t inv_c = opmath_t(1) / static_cast<opmath_t>(c);
  const opmath_t r = opmath_t(1) / std::sqrt(IO::sum_lanes(sq) * inv_c + static_cast<opmath_t>(eps));
  const Vec vr(r), vk(-r * r * r * IO::sum_lanes(dot) * inv_c);
  for (int64_t j = 0; j < c; j += W) {
    const int64_t n = std::min(W, c - j);
    IO::store(gx + j, at::vec::fmadd(vk, IO::load(x + j, n), vr * IO::load(g + j, n)), n);
  }
}

template <typename scalar_t>
void backward_planar(const scalar_t* g, const scalar_t* x, scalar_t* gx, int64_t c, int64_t stride, int64_t lanes,
                     double eps) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t W = IO::size();
  constexpr int64_t V = kPlanarLanes / W;
  const int64_t nvec = (lanes + W - 1) / W;
  Vec sq[V], dot[V];
  for (int64_t v = 0; v < V; ++v) sq[v] = dot[v] = Vec(0);
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t v = 0; v < nvec; ++v) {
      const int64_t n = std::min(W, lanes - v * W);
      const int64_t off = ch * stride + v * W;
      const Vec xv = IO::load(x + off, n);
      sq[v] = at::vec::fmadd(xv, xv, sq[v]);
      dot[v] = at::vec::fmadd(xv, IO::load(g + off, n), dot[v]);
    }
  }
  const Vec inv_c(opmath_t(1) / static_cast<opmath_t>(c)), veps(static_cast<opmath_t>(eps)), one(1);
  for (int64_t v = 0; v < nvec; ++v) {
    const Vec r = one / at::vec::fmadd(sq[v], inv_c, veps).sqrt();
    sq[v] = r;                                   // r
    dot[v] = Vec(0) - r * r * r * dot[v] * inv_c;  // -r^3 mean(g x)
  }
  for (int64_t ch = 0; ch < c; ++ch) {
    for (int64_t v = 0; v < nvec; ++v) {
      const int64_t n = std::min(W, lanes - v * W);
      const int64_t off = ch * stride + v * W;
      IO::store(gx + off, at::vec::fmadd(dot[v], IO::load(x + off, n), sq[v] * IO::load(g + off, n)), n);
    }
  }
}

at::Tensor pixel_norm_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in, double eps) {
  const char* op = "pixel_norm_backward";
  check_pixel_args(x_in, eps, op, "x");
  checks::like(op, "grad", grad_in, "x", x_in);
  PixelShape s;
  const at::Tensor x = pixel_layout(x_in, s);
  const at::Tensor grad = grad_in.strides() == x.strides() ? grad_in : at::empty_like(x).copy_(grad_in);
  at::Tensor gx = at::empty_like(x);
  if (x.numel() == 0) return gx;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "pixel_norm_backward", [&] {
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* op_ = gx.mutable_data_ptr<scalar_t>();
    const int64_t sample = s.c * s.p;
    for_pixel_units(s, [&](int64_t n, int64_t u) {
      if (s.interleaved) {
        const int64_t off = n * sample + u * s.c;
        backward_interleaved<scalar_t>(gp + off, xp + off, op_ + off, s.c, eps);
      } else {
        const int64_t off = n * sample + u * kPlanarLanes;
        backward_planar<scalar_t>(gp + off, xp + off, op_ + off, s.c, s.p,
                                  std::min(kPlanarLanes, s.p - u * kPlanarLanes), eps);
      }
    });
  });
  return gx;
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(pixel_norm, m) {
  m.impl("pixel_norm", &pixel_norm_cpu);
  m.impl("pixel_norm_backward", &pixel_norm_backward_cpu);
}

}  // namespace fastgen
