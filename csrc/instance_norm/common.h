// csrc/instance_norm.cpp's shared pieces: the activation (its value and its gradient, as torch
// computes them), the compile-time dispatch on it, and the mean kept as hi + lo (SplitMean).
//
// Included only by csrc/instance_norm.cpp and its csrc/instance_norm/*.h, which are compiled
// once per CPU capability (csrc/common/cpu_kernels.h): like the .cpp, these headers keep
// everything in the anonymous namespace, so each variant has its own copy.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <string>
#include <type_traits>

namespace fastgen {
namespace {

enum class Act { None, Relu, LeakyRelu };

Act parse_activation(c10::string_view name, const char* op) {
  if (name == "none") return Act::None;
  if (name == "relu") return Act::Relu;
  if (name == "leaky_relu") return Act::LeakyRelu;
  TORCH_CHECK_VALUE(false, "fastgen.", op, ": activation must be 'none', 'relu' or 'leaky_relu', got '",
                    std::string(name), "'");
}

template <typename F>
void with_act(Act act, const F& f) {
  switch (act) {
    case Act::None: f(std::integral_constant<Act, Act::None>{}); break;
    case Act::Relu: f(std::integral_constant<Act, Act::Relu>{}); break;
    case Act::LeakyRelu: f(std::integral_constant<Act, Act::LeakyRelu>{}); break;
  }
}

template <typename F>
void with_bool(bool b, const F& f) {
  if (b) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

// NaN in, NaN out, as torch's relu and leaky_relu (clamp_min passes NaN from its first argument).
template <Act A, typename Vec>
inline Vec activate(const Vec& y, const Vec& slope) {
  if constexpr (A == Act::Relu) {
    return at::vec::clamp_min(y, Vec(0));
  } else if constexpr (A == Act::LeakyRelu) {
    return Vec::blendv(y * slope, y, y > Vec(0));
  } else {
    return y;
  }
}

// grad * act'(y) with torch's conventions: relu passes the gradient unless y <= 0
// (threshold_backward), leaky_relu scales it unless y > 0.
template <Act A, typename Vec>
inline Vec activation_grad(const Vec& y, const Vec& grad, const Vec& slope) {
  if constexpr (A == Act::Relu) {
    return Vec::blendv(grad, Vec(0), y <= Vec(0));
  } else if constexpr (A == Act::LeakyRelu) {
    return Vec::blendv(grad * slope, grad, y > Vec(0));
  } else {
    return grad;
  }
}

// The mean of a plane is kept as a pair hi + lo of op-math numbers (hi the rounded mean, lo
// what rounding dropped), and every deviation is taken as (x - hi) - lo, folded into the
// per-channel coefficients. x - hi is exact for x near the mean (Sterbenz), so deviations stay
// accurate when the spread of a plane is tiny against its mean (a plane of two close values),
// where x - round(mean) would lose most of its digits. (ATen keeps such statistics in double.)
template <typename opmath_t>
struct SplitMean {
  opmath_t hi, lo;
  explicit SplitMean(double mean) : hi(static_cast<opmath_t>(mean)), lo(static_cast<opmath_t>(mean - double(hi))) {}
};

}  // namespace
}  // namespace fastgen
