// Argument checks shared by the CPU kernels. Every torch.ops.fastgen.* op is a public entry
// point, so each kernel validates its own arguments (the fake impls in fastgen/ops/ check the
// same). Messages read "fastgen.<op>: <arg> must be ..., got ..."; TORCH_CHECK_VALUE raises
// ValueError, TORCH_CHECK_TYPE TypeError, as torch's own argument checks do.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/safe_numerics.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <optional>

namespace fastgen {
inline namespace CPU_CAPABILITY {
namespace checks {

// A named tensor argument; an absent optional one (None) is skipped by the checks.
struct Arg {
  const char* name;
  const at::Tensor* tensor;
  Arg(const char* n, const at::Tensor& t) : name(n), tensor(t.defined() ? &t : nullptr) {}
  Arg(const char* n, const std::optional<at::Tensor>& t)
      : name(n), tensor(t.has_value() && t->defined() ? &*t : nullptr) {}
};

// Every tensor in `args` on the device of `ref`. The dispatcher picks the kernel from the
// highest-priority device among the arguments, so a CPU kernel can be handed a tensor of
// another device only through a mistake; reading it would return garbage or crash.
inline void same_device(const char* op, const char* ref_name, const at::Tensor& ref, std::initializer_list<Arg> args) {
  TORCH_CHECK_VALUE(ref.device().is_cpu(), "fastgen.", op, ": ", ref_name,
                    " must be a CPU tensor for the CPU kernel, got a tensor on ", ref.device());
  for (const Arg& a : args) {
    if (a.tensor == nullptr) continue;
    TORCH_CHECK_VALUE(a.tensor->device() == ref.device(), "fastgen.", op, ": ", a.name, " must be on the device of ",
                      ref_name, " (", ref.device(), "), got ", a.tensor->device());
  }
}

inline void floating(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), "fastgen.", op, ": ", name,
                   " must be a floating-point tensor (float16, bfloat16, float32 or float64), got ", t.scalar_type());
}

inline void integral(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_TYPE(at::isIntegralType(t.scalar_type(), /*includeBool=*/false), "fastgen.", op, ": ", name,
                   " must be an integer tensor, got ", t.scalar_type());
}

inline void same_dtype(const char* op, const char* name, const at::Tensor& t, const char* ref_name,
                       const at::Tensor& ref) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "fastgen.", op, ": ", name, " must have the dtype of ",
                   ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
}

// `t` has the shape, dtype and device of `ref`.
inline void like(const char* op, const char* name, const at::Tensor& t, const char* ref_name, const at::Tensor& ref) {
  TORCH_CHECK_VALUE(t.sizes() == ref.sizes(), "fastgen.", op, ": ", name, " must have the shape of ", ref_name, " ",
                    ref.sizes(), ", got ", t.sizes());
  same_dtype(op, name, t, ref_name, ref);
  TORCH_CHECK_VALUE(t.device() == ref.device(), "fastgen.", op, ": ", name, " must be on the device of ", ref_name,
                    " (", ref.device(), "), got ", t.device());
}

// a * b for sizes and factors taken from the caller: overflow is an argument error, never a
// wrapped product (a factor of 2^32 squares to 0 in int64 and was then a divisor).
inline int64_t mul(const char* op, const char* what, int64_t a, int64_t b) {
  int64_t out = 0;
  TORCH_CHECK_VALUE(!c10::mul_overflows(a, b, &out), "fastgen.", op, ": ", what, " overflows int64 (", a, " * ", b,
                    ")");
  return out;
}

inline void finite(const char* op, const char* name, double v) {
  TORCH_CHECK_VALUE(std::isfinite(v), "fastgen.", op, ": ", name, " must be a finite number, got ", v);
}

}  // namespace checks
}  // namespace CPU_CAPABILITY
}  // namespace fastgen
