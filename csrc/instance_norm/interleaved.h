// Instance norm's interleaved sweeps (channels innermost: channels_last, channels_last_3d,
// NLC), used by csrc/instance_norm.cpp (see its header comment for the math); anonymous
// namespace as in csrc/instance_norm/common.h.
//
// A sweep covers rows [r0, r1) of one sample's M x C row-major matrix (img), channels
// [c, c + span), NV vectors of channels held in registers (the last one holds
// span - (NV - 1) * W lanes). Per-channel arrays (mean, scale, sums, ...) start at channel c.
// Callers walk a task's rows in short tiles and, inside a tile, every channel group, so
// memory is read row after row (see for_tiles).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/vec_io.h"
#include "instance_norm/common.h"

namespace fastgen {
namespace {

// Channels an interleaved sweep keeps in registers at once, in vectors.
constexpr int kGroupVectors = 4;

template <int NV, int64_t W>
constexpr int64_t lanes(int v, int64_t span) {
  return v < NV - 1 ? W : span - (NV - 1) * W;
}

// Three per-channel coefficient arrays held as NV vectors each: (mean, scale, shift) for
// y = (x - mean) * scale + shift, or (cg, cx, ca) for grad_x = gy * cg + (x - mean) * cx + ca.
template <typename Vec, int NV, typename opmath_t>
struct Coefficients {
  Vec p[NV], q[NV], r[NV];
  Coefficients(const opmath_t* p_in, const opmath_t* q_in, const opmath_t* r_in) {
    for (int v = 0; v < NV; ++v) {
      p[v] = Vec::loadu(p_in + v * Vec::size());
      q[v] = Vec::loadu(q_in + v * Vec::size());
      r[v] = Vec::loadu(r_in + v * Vec::size());
    }
  }
};

// What interleaved_moment_group adds up over rows, per channel j: x - origin[j] (the sums of
// the offsets from the first row, see planar_moments) or (x - origin[j])^2 (M2, origin the mean).
enum class Moment { Offset, Square };

// out[j] += sum over rows of the moment Kind about origin[j].
template <typename scalar_t, int NV, Moment Kind>
void interleaved_moment_group(const scalar_t* img, int64_t C, int64_t c, int64_t span, int64_t r0, int64_t r1,
                              const at::opmath_type<scalar_t>* origin, at::opmath_type<scalar_t>* out) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  Vec acc[NV], k[NV];
  for (int v = 0; v < NV; ++v) {
    acc[v] = Vec(0);
    k[v] = Vec::loadu(origin + v * W);
  }
  for (int64_t r = r0; r < r1; ++r) {
    const scalar_t* row = img + r * C + c;
    for (int v = 0; v < NV; ++v) {
      const Vec d = IO::load(row + v * W, lanes<NV, W>(v, span)) - k[v];
      if constexpr (Kind == Moment::Square) {
        acc[v] = at::vec::fmadd(d, d, acc[v]);
      } else {
        acc[v] = acc[v] + d;
      }
    }
  }
  for (int v = 0; v < NV; ++v) (Vec::loadu(out + v * W) + acc[v]).store(out + v * W);
}

template <typename scalar_t, int NV, Act A, bool RES>
void interleaved_normalize_group(const scalar_t* img, const scalar_t* rimg, scalar_t* oimg, int64_t C, int64_t c,
                                 int64_t span, int64_t r0, int64_t r1, const at::opmath_type<scalar_t>* mean,
                                 const at::opmath_type<scalar_t>* scale, const at::opmath_type<scalar_t>* shift,
                                 at::opmath_type<scalar_t> slope) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Coefficients<Vec, NV, at::opmath_type<scalar_t>> k(mean, scale, shift);
  const Vec s(slope);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t off = r * C + c;
    for (int v = 0; v < NV; ++v) {
      const int64_t n = lanes<NV, W>(v, span);
      Vec y = activate<A>(at::vec::fmadd(IO::load(img + off + v * W, n) - k.p[v], k.q[v], k.r[v]), s);
      if constexpr (RES) y = y + IO::load(rimg + off + v * W, n);
      IO::store(oimg + off + v * W, y, n);
    }
  }
}

// The two backward sweeps below both recompute xc = x - mean and gy = grad * act'(y) from x and
// the upstream gradient, written out at each site: a helper returning the pair measured 12 %
// slower on the channels_last backward (8x256x64x64 float32, AVX-512, GCC, 1 thread).

// sum_gy[j] += sum gy, sum_gy_xc[j] += sum gy * (x - mean).
template <typename scalar_t, int NV, Act A>
void interleaved_grad_sums_group(const scalar_t* gimg, const scalar_t* ximg, int64_t C, int64_t c, int64_t span,
                                 int64_t r0, int64_t r1, const at::opmath_type<scalar_t>* mean,
                                 const at::opmath_type<scalar_t>* scale, const at::opmath_type<scalar_t>* shift,
                                 at::opmath_type<scalar_t> slope, at::opmath_type<scalar_t>* sum_gy,
                                 at::opmath_type<scalar_t>* sum_gy_xc) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Coefficients<Vec, NV, at::opmath_type<scalar_t>> k(mean, scale, shift);
  Vec s1[NV], s2[NV];
  for (int v = 0; v < NV; ++v) s1[v] = s2[v] = Vec(0);
  const Vec s(slope);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t off = r * C + c;
    for (int v = 0; v < NV; ++v) {
      const int64_t n = lanes<NV, W>(v, span);
      const Vec xc = IO::load(ximg + off + v * W, n) - k.p[v];
      const Vec gy = activation_grad<A>(at::vec::fmadd(xc, k.q[v], k.r[v]), IO::load(gimg + off + v * W, n), s);
      s1[v] = s1[v] + gy;
      s2[v] = at::vec::fmadd(gy, xc, s2[v]);
    }
  }
  for (int v = 0; v < NV; ++v) {
    (Vec::loadu(sum_gy + v * W) + s1[v]).store(sum_gy + v * W);
    (Vec::loadu(sum_gy_xc + v * W) + s2[v]).store(sum_gy_xc + v * W);
  }
}

template <typename scalar_t, int NV, Act A>
void interleaved_grad_input_group(const scalar_t* gimg, const scalar_t* ximg, scalar_t* dimg, int64_t C, int64_t c,
                                  int64_t span, int64_t r0, int64_t r1, const at::opmath_type<scalar_t>* mean,
                                  const at::opmath_type<scalar_t>* scale, const at::opmath_type<scalar_t>* shift,
                                  at::opmath_type<scalar_t> slope, const at::opmath_type<scalar_t>* cg,
                                  const at::opmath_type<scalar_t>* cx, const at::opmath_type<scalar_t>* ca,
                                  bool centered) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  const Coefficients<Vec, NV, at::opmath_type<scalar_t>> k(mean, scale, shift);
  const Coefficients<Vec, NV, at::opmath_type<scalar_t>> d(cg, cx, ca);  // grad_x = gy * cg + xc * cx + ca
  const Vec s(slope);
  if (!centered) {  // running statistics: gy * cg alone (see planar_grad_input)
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t off = r * C + c;
      for (int v = 0; v < NV; ++v) {
        const int64_t n = lanes<NV, W>(v, span);
        const Vec xc = IO::load(ximg + off + v * W, n) - k.p[v];
        const Vec gy = activation_grad<A>(at::vec::fmadd(xc, k.q[v], k.r[v]), IO::load(gimg + off + v * W, n), s);
        IO::store(dimg + off + v * W, gy * d.p[v], n);
      }
    }
    return;
  }
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t off = r * C + c;
    for (int v = 0; v < NV; ++v) {
      const int64_t n = lanes<NV, W>(v, span);
      const Vec xc = IO::load(ximg + off + v * W, n) - k.p[v];
      const Vec gy = activation_grad<A>(at::vec::fmadd(xc, k.q[v], k.r[v]), IO::load(gimg + off + v * W, n), s);
      IO::store(dimg + off + v * W, at::vec::fmadd(gy, d.p[v], at::vec::fmadd(xc, d.q[v], d.r[v])), n);
    }
  }
}

// Rows of one tile: about 16 KiB of a sample's rows, so a tile stays in L1 while every
// channel group walks it. Sums are taken per tile and then added up, which also keeps the
// float32 rounding of a channel's sum (one lane, row after row) to about (tile + tiles) ulp.
inline int64_t tile_rows(int64_t C, int64_t elem_size) {
  return std::clamp<int64_t>((16 * 1024) / std::max<int64_t>(1, C * elem_size), 4, 128);
}

// Calls group(std::integral_constant<int, NV>, c, span, r0, r1) for every tile of rows
// [r0, r1) and, inside it, every group of at most kGroupVectors vectors of channels
// [c0, c0 + count).
template <int64_t W, typename F>
void for_tiles(int64_t c0, int64_t count, int64_t r0, int64_t r1, int64_t tile, const F& group) {
  for (int64_t rt = r0; rt < r1; rt += tile) {
    const int64_t re = std::min(r1, rt + tile);
    for (int64_t c = c0; c < c0 + count; c += kGroupVectors * W) {
      const int64_t span = std::min<int64_t>(kGroupVectors * W, c0 + count - c);
      switch ((span + W - 1) / W) {
        case 1: group(std::integral_constant<int, 1>{}, c, span, rt, re); break;
        case 2: group(std::integral_constant<int, 2>{}, c, span, rt, re); break;
        case 3: group(std::integral_constant<int, 3>{}, c, span, rt, re); break;
        default: group(std::integral_constant<int, 4>{}, c, span, rt, re); break;
      }
    }
  }
}

}  // namespace
}  // namespace fastgen
