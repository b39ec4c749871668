// Vector math the hot loops need cheaper than Sleef's general-purpose versions, written with
// at::vec::Vectorized<float> only (so they build for AVX512, AVX2 and the generic fallback).
#pragma once

#include <ATen/cpu/vec/vec.h>

namespace fastgen {
inline namespace CPU_CAPABILITY {  // one copy per variant: csrc/common/cpu_kernels.h
namespace vec_math {

using Vec = at::vec::Vectorized<float>;
using IVec = at::vec::Vectorized<int32_t>;

// exp(x) to about 1 ulp (Cephes' expf polynomial), inlined: Sleef's out-of-line exp is a
// large share of a memory-bound elementwise kernel. Overflows to inf, underflows through the
// denormals to 0, and propagates NaN, as std::exp does.
inline Vec exp(const Vec& x_in) {
  // Beyond these bounds the result is inf or 0 anyway; clamping keeps 2^n representable.
  // (at::vec::clamp passes NaN through and is cheaper than maximum/minimum.)
  const Vec x = at::vec::clamp(x_in, Vec(-104.0f), Vec(89.0f));
  const Vec n = (x * Vec(1.44269504088896341f)).round();
  // r = x - n ln2, with ln2 split in two so that n * ln2_hi is exact.
  Vec r = at::vec::fnmadd(n, Vec(0.693359375f), x);
  r = at::vec::fnmadd(n, Vec(-2.12194440e-4f), r);
  Vec p(1.9875691500e-4f);
  p = at::vec::fmadd(p, r, Vec(1.3981999507e-3f));
  p = at::vec::fmadd(p, r, Vec(8.3334519073e-3f));
  p = at::vec::fmadd(p, r, Vec(4.1665795894e-2f));
  p = at::vec::fmadd(p, r, Vec(1.6666665459e-1f));
  p = at::vec::fmadd(p, r, Vec(5.0000001201e-1f));
  p = at::vec::fmadd(p * r, r, r + Vec(1.0f));
  // Scale by 2^n as 2^(n/2) * 2^(n - n/2): each factor stays a normal float for |n| <= 150.
  const IVec ni = at::vec::convert_to_int_of_same_size<float>(n);
  const IVec half = ni >> IVec(1);
  const Vec scale_a = at::vec::cast<float>((half + IVec(127)) << IVec(23));
  const Vec scale_b = at::vec::cast<float>((ni - half + IVec(127)) << IVec(23));
  return p * scale_a * scale_b;
}

// float64 kernels keep Sleef's exp (double is not the hot path).
inline at::vec::Vectorized<double> exp(const at::vec::Vectorized<double>& x) { return x.exp(); }

// tanh(x) to about 2 ulp (Cephes' tanhf), inlined: x + x^3 P(x^2) for |x| < 0.625, else
// 1 - 2 / (exp(2|x|) + 1) with the sign of x. Saturates to +-1 and propagates NaN.
inline Vec tanh(const Vec& x) {
  const Vec ax = x.abs();
  const Vec sign = x & Vec(-0.0f);
  const Vec large = (Vec(1.0f) - Vec(2.0f) / (exp(ax + ax) + Vec(1.0f))) | sign;
  const Vec z = x * x;
  Vec p(-5.70498872745e-3f);
  p = at::vec::fmadd(p, z, Vec(2.06390887954e-2f));
  p = at::vec::fmadd(p, z, Vec(-5.37397155531e-2f));
  p = at::vec::fmadd(p, z, Vec(1.33314422036e-1f));
  p = at::vec::fmadd(p, z, Vec(-3.33332819422e-1f));
  const Vec small = at::vec::fmadd(p * z, x, x);
  return Vec::blendv(large, small, ax < Vec(0.625f));
}

inline at::vec::Vectorized<double> tanh(const at::vec::Vectorized<double>& x) { return x.tanh(); }

// Natural logarithm of positive, normal floats (Cephes' logf polynomial, about 1 ulp).
inline Vec log_positive(const Vec& x) {
  const IVec bits = at::vec::cast<int32_t>(x);
  // x = m * 2^e with m in [0.5, 1).
  const IVec e = (bits >> IVec(23)) - IVec(126);
  Vec m = at::vec::cast<float>((bits & IVec(0x007fffff)) | IVec(0x3f000000));
  // Recentre m into [sqrt(1/2), sqrt(2)) - 1 so the polynomial sees |m| < 0.42.
  const Vec below = m < Vec(0.707106781186547524f);
  const Vec exponent = at::vec::convert_to_fp_of_same_size<float>(e) - (below & Vec(1.0f));
  m = m + (below & m) - Vec(1.0f);
  const Vec z = m * m;
  Vec p(7.0376836292e-2f);
  p = at::vec::fmadd(p, m, Vec(-1.1514610310e-1f));
  p = at::vec::fmadd(p, m, Vec(1.1676998740e-1f));
  p = at::vec::fmadd(p, m, Vec(-1.2420140846e-1f));
  p = at::vec::fmadd(p, m, Vec(1.4249322787e-1f));
  p = at::vec::fmadd(p, m, Vec(-1.6668057665e-1f));
  p = at::vec::fmadd(p, m, Vec(2.0000714765e-1f));
  p = at::vec::fmadd(p, m, Vec(-2.4999993993e-1f));
  p = at::vec::fmadd(p, m, Vec(3.3333331174e-1f));
  Vec y = p * m * z;
  y = at::vec::fmadd(exponent, Vec(-2.12194440e-4f), y);
  y = at::vec::fmadd(z, Vec(-0.5f), y);
  return at::vec::fmadd(exponent, Vec(0.693359375f), m + y);
}

// sin(2 pi u) and cos(2 pi u) for u in [0, 1]: reduce to the nearest quarter turn, evaluate
// Cephes' sinf/cosf polynomials on [-pi/4, pi/4], then rotate by the quarter turns.
inline void sincos_2pi(const Vec& u, Vec& sin_out, Vec& cos_out) {
  const Vec quarter_turns = (u * Vec(4.0f)).round();
  const Vec t = (u - quarter_turns * Vec(0.25f)) * Vec(6.283185307179586f);
  const Vec t2 = t * t;
  Vec s(-1.9515295891e-4f);
  s = at::vec::fmadd(s, t2, Vec(8.3321608736e-3f));
  s = at::vec::fmadd(s, t2, Vec(-1.6666654611e-1f));
  s = at::vec::fmadd(s * t2, t, t);
  Vec c(2.443315711809948e-5f);
  c = at::vec::fmadd(c, t2, Vec(-1.388731625493765e-3f));
  c = at::vec::fmadd(c, t2, Vec(4.166664568298827e-2f));
  c = at::vec::fmadd(c * t2, t2, at::vec::fmadd(t2, Vec(-0.5f), Vec(1.0f)));
  // Quarter turn q: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s) for q mod 4 = 0..3.
  const IVec q = at::vec::convert_to_int_of_same_size<float>(quarter_turns);
  const Vec odd = at::vec::cast<float>((q & IVec(1)) == IVec(1));
  const Vec sin_sign = at::vec::cast<float>((q & IVec(2)) << IVec(30));
  const Vec cos_sign = at::vec::cast<float>(((q + IVec(1)) & IVec(2)) << IVec(30));
  sin_out = Vec::blendv(s, c, odd) ^ sin_sign;
  cos_out = Vec::blendv(c, s, odd) ^ cos_sign;
}

}  // namespace vec_math
}  // namespace CPU_CAPABILITY
}  // namespace fastgen
