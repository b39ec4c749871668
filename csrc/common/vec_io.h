// Loads and stores between tensor storage (float, double, BFloat16, Half) and the
// vectors fastgen computes in: Vectorized<float> for float/BFloat16/Half, Vectorized<double>
// for double. Every kernel computes in this "opmath" type, so reduced-precision inputs
// are widened once on load and rounded once on store.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

namespace fastgen {
inline namespace CPU_CAPABILITY {  // one copy per variant: csrc/common/cpu_kernels.h

template <typename scalar_t>
struct VecIO {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<opmath_t>;
  static constexpr bool kReduced = at::vec::is_reduced_floating_point_v<scalar_t>;

  static constexpr int64_t size() { return Vec::size(); }

  // Loads `count` (<= size()) elements; the other lanes are zero.
  static Vec load(const scalar_t* ptr, int64_t count = Vec::size()) {
    if constexpr (kReduced) {
      if (count == Vec::size()) {
        Vec out;
        at::vec::load_to_float(ptr, out);
        return out;
      }
      auto narrow = at::vec::Vectorized<scalar_t>::loadu(ptr, count);
      return std::get<0>(at::vec::convert_to_float<scalar_t>(narrow));
    } else {
      return Vec::loadu(ptr, count);
    }
  }

  // Stores the first `count` (<= size()) lanes, rounding to scalar_t.
  static void store(scalar_t* ptr, const Vec& v, int64_t count = Vec::size()) {
    if constexpr (kReduced) {
      at::vec::convert_from_float<scalar_t>(v, v).store(ptr, count);
    } else {
      v.store(ptr, count);
    }
  }

  // Loads `count` float32 values (e.g. generated noise) as opmath vectors.
  static Vec load_float(const float* ptr, int64_t count = Vec::size()) {
    if constexpr (std::is_same_v<opmath_t, float>) {
      return Vec::loadu(ptr, count);
    } else {
      alignas(64) opmath_t widened[Vec::size()] = {};
      for (int64_t i = 0; i < count; ++i) widened[i] = static_cast<opmath_t>(ptr[i]);
      return Vec::loadu(widened);
    }
  }

  static opmath_t sum_lanes(const Vec& v) {
    return at::vec::vec_reduce_all<opmath_t>([](Vec& a, Vec& b) { return a + b; }, v);
  }
};

// Sum of squares of n contiguous elements, in the op math type; four independent accumulators
// for throughput. (Row norms: the penalty's gradients, pixel norm, margin softmax.)
template <typename scalar_t>
at::opmath_type<scalar_t> sum_squares(const scalar_t* p, int64_t n) {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::size();
  Vec acc0(0), acc1(0), acc2(0), acc3(0);
  int64_t j = 0;
  for (; j + 4 * W <= n; j += 4 * W) {
    const Vec v0 = IO::load(p + j), v1 = IO::load(p + j + W);
    const Vec v2 = IO::load(p + j + 2 * W), v3 = IO::load(p + j + 3 * W);
    acc0 = at::vec::fmadd(v0, v0, acc0);
    acc1 = at::vec::fmadd(v1, v1, acc1);
    acc2 = at::vec::fmadd(v2, v2, acc2);
    acc3 = at::vec::fmadd(v3, v3, acc3);
  }
  for (; j < n; j += W) {
    const Vec v = IO::load(p + j, std::min(W, n - j));
    acc0 = at::vec::fmadd(v, v, acc0);
  }
  return IO::sum_lanes((acc0 + acc1) + (acc2 + acc3));
}

}  // namespace CPU_CAPABILITY
}  // namespace fastgen
