// Instance norm's planar sweeps (contiguous input): one contiguous run of `len` elements of
// one (n, c) plane. Used by csrc/instance_norm.cpp (see its header comment for the math);
// anonymous namespace as in csrc/instance_norm/common.h.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>

#include "common/vec_io.h"
#include "instance_norm/common.h"

namespace fastgen {
namespace {

// sum (x - k) of a run.
template <typename scalar_t>
at::opmath_type<scalar_t> planar_offset_sum(const scalar_t* x, int64_t len, at::opmath_type<scalar_t> origin) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Vec k(origin);
  Vec s0(0), s1(0), s2(0), s3(0);
  int64_t i = 0;
  for (; i + 4 * W <= len; i += 4 * W) {
    s0 = s0 + (IO::load(x + i) - k);
    s1 = s1 + (IO::load(x + i + W) - k);
    s2 = s2 + (IO::load(x + i + 2 * W) - k);
    s3 = s3 + (IO::load(x + i + 3 * W) - k);
  }
  for (; i < len; i += W) {
    const int64_t n = std::min(W, len - i);
    s0 = s0 + Vec::set(Vec(0), IO::load(x + i, n) - k, n);
  }
  return IO::sum_lanes((s0 + s1) + (s2 + s3));
}

// Mean (as hi + lo) and M2 = sum (x - mean)^2 of a run, two passes (the run is in cache for the
// second). The mean is summed relative to the run's first element, exact for data near it, so a
// large offset does not cost the mean the precision the variance needs.
template <typename scalar_t>
void planar_moments(const scalar_t* x, int64_t len, at::opmath_type<scalar_t>& hi_out,
                    at::opmath_type<scalar_t>& lo_out, at::opmath_type<scalar_t>& m2_out) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int64_t W = IO::size();
  const opmath_t origin = static_cast<opmath_t>(x[0]);
  const SplitMean<opmath_t> mean(double(origin) + double(planar_offset_sum(x, len, origin)) / double(len));
  const Vec m(mean.hi);
  Vec s0(0), s1(0), s2(0), s3(0);
  int64_t i = 0;
  for (; i + 4 * W <= len; i += 4 * W) {
    const Vec d0 = IO::load(x + i) - m, d1 = IO::load(x + i + W) - m;
    const Vec d2 = IO::load(x + i + 2 * W) - m, d3 = IO::load(x + i + 3 * W) - m;
    s0 = at::vec::fmadd(d0, d0, s0);
    s1 = at::vec::fmadd(d1, d1, s1);
    s2 = at::vec::fmadd(d2, d2, s2);
    s3 = at::vec::fmadd(d3, d3, s3);
  }
  for (; i < len; i += W) {
    const int64_t n = std::min(W, len - i);
    const Vec d = Vec::set(Vec(0), IO::load(x + i, n) - m, n);  // lanes past n stay 0
    s0 = at::vec::fmadd(d, d, s0);
  }
  hi_out = mean.hi;
  lo_out = mean.lo;
  // sum (x - hi - lo)^2 = sum (x - hi)^2 - len lo^2, as sum (x - hi) = len lo.
  m2_out = IO::sum_lanes((s0 + s1) + (s2 + s3)) - static_cast<opmath_t>(len) * mean.lo * mean.lo;
}

template <typename scalar_t, Act A, bool RES>
void planar_normalize(const scalar_t* x, const scalar_t* res, scalar_t* out, int64_t len,
                      at::opmath_type<scalar_t> mean, at::opmath_type<scalar_t> scale, at::opmath_type<scalar_t> shift,
                      at::opmath_type<scalar_t> slope) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Vec m(mean), a(scale), b(shift), s(slope);
  int64_t i = 0;
  for (; i + 2 * W <= len; i += 2 * W) {
    Vec y0 = activate<A>(at::vec::fmadd(IO::load(x + i) - m, a, b), s);
    Vec y1 = activate<A>(at::vec::fmadd(IO::load(x + i + W) - m, a, b), s);
    if constexpr (RES) {
      y0 = y0 + IO::load(res + i);
      y1 = y1 + IO::load(res + i + W);
    }
    IO::store(out + i, y0);
    IO::store(out + i + W, y1);
  }
  for (; i < len; i += W) {
    const int64_t n = std::min(W, len - i);
    Vec y = activate<A>(at::vec::fmadd(IO::load(x + i, n) - m, a, b), s);
    if constexpr (RES) y = y + IO::load(res + i, n);
    IO::store(out + i, y, n);
  }
}

// sum gy and sum gy * (x - mean) over a run.
template <typename scalar_t, Act A>
void planar_grad_sums(const scalar_t* g, const scalar_t* x, int64_t len, at::opmath_type<scalar_t> mean,
                      at::opmath_type<scalar_t> scale, at::opmath_type<scalar_t> shift, at::opmath_type<scalar_t> slope,
                      at::opmath_type<scalar_t>& sum_gy, at::opmath_type<scalar_t>& sum_gy_xc) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Vec m(mean), a(scale), b(shift), s(slope);
  Vec s1a(0), s1b(0), s2a(0), s2b(0);
  int64_t i = 0;
  for (; i + 2 * W <= len; i += 2 * W) {
    const Vec xc0 = IO::load(x + i) - m, xc1 = IO::load(x + i + W) - m;
    const Vec gy0 = activation_grad<A>(at::vec::fmadd(xc0, a, b), IO::load(g + i), s);
    const Vec gy1 = activation_grad<A>(at::vec::fmadd(xc1, a, b), IO::load(g + i + W), s);
    s1a = s1a + gy0;
    s1b = s1b + gy1;
    s2a = at::vec::fmadd(gy0, xc0, s2a);
    s2b = at::vec::fmadd(gy1, xc1, s2b);
  }
  for (; i < len; i += W) {
    const int64_t n = std::min(W, len - i);
    // Lanes past n: g is 0, so gy is 0 (relu/leaky scale it, never create it).
    const Vec xc = IO::load(x + i, n) - m;
    const Vec gy = activation_grad<A>(at::vec::fmadd(xc, a, b), IO::load(g + i, n), s);
    s1a = s1a + gy;
    s2a = at::vec::fmadd(gy, xc, s2a);
  }
  sum_gy = IO::sum_lanes(s1a + s1b);
  sum_gy_xc = IO::sum_lanes(s2a + s2b);
}

// grad_x = gy * cg + (x - mean) * cx + ca over a run (centered: input statistics; with running
// statistics cx = ca = 0 and grad_x = gy * cg).
template <typename scalar_t, Act A>
void planar_grad_input(const scalar_t* g, const scalar_t* x, scalar_t* dx, int64_t len, at::opmath_type<scalar_t> mean,
                       at::opmath_type<scalar_t> scale, at::opmath_type<scalar_t> shift,
                       at::opmath_type<scalar_t> slope, at::opmath_type<scalar_t> cg, at::opmath_type<scalar_t> cx,
                       at::opmath_type<scalar_t> ca, bool centered) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Vec m(mean), a(scale), b(shift), s(slope), vg(cg), vx(cx), va(ca);
  int64_t i = 0;
  if (!centered) {
    // Running statistics: grad_x = gy * cg alone. x - mean may be infinite (an infinite input
    // or running mean) where gy is 0 (relu), and inf * 0 would be NaN where eager gives 0.
    for (; i < len; i += W) {
      const int64_t n = std::min(W, len - i);
      const Vec gy = activation_grad<A>(at::vec::fmadd(IO::load(x + i, n) - m, a, b), IO::load(g + i, n), s);
      IO::store(dx + i, gy * vg, n);
    }
    return;
  }
  for (; i + 2 * W <= len; i += 2 * W) {
    const Vec xc0 = IO::load(x + i) - m, xc1 = IO::load(x + i + W) - m;
    const Vec gy0 = activation_grad<A>(at::vec::fmadd(xc0, a, b), IO::load(g + i), s);
    const Vec gy1 = activation_grad<A>(at::vec::fmadd(xc1, a, b), IO::load(g + i + W), s);
    IO::store(dx + i, at::vec::fmadd(gy0, vg, at::vec::fmadd(xc0, vx, va)));
    IO::store(dx + i + W, at::vec::fmadd(gy1, vg, at::vec::fmadd(xc1, vx, va)));
  }
  for (; i < len; i += W) {
    const int64_t n = std::min(W, len - i);
    const Vec xc = IO::load(x + i, n) - m;
    const Vec gy = activation_grad<A>(at::vec::fmadd(xc, a, b), IO::load(g + i, n), s);
    IO::store(dx + i, at::vec::fmadd(gy, vg, at::vec::fmadd(xc, vx, va)), n);
  }
}

}  // namespace
}  // namespace fastgen
