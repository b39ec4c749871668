// Shared pieces of the C++ autograd (csrc/autograd/<family>.cpp): each differentiable op is a
// torch::autograd::Function registered for the Autograd key; its backward calls the backward op
// through the dispatcher, and the backward op has its own Function (double backward).
#pragma once

#include <ATen/TensorOperators.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

namespace fastgen::autograd {

using at::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using OptTensor = std::optional<at::Tensor>;

// The typed handle of fastgen::<name>, looked up on first use. Calls go through the dispatcher
// (CPU kernel, Triton kernel, fake impl, or the op's own autograd).
#define FASTGEN_OP(name, ...)                                                                      \
  ([]() -> const c10::TypedOperatorHandle<__VA_ARGS__>& {                                          \
    static const auto handle =                                                                     \
        c10::Dispatcher::singleton().findSchemaOrThrow("fastgen::" name, "").typed<__VA_ARGS__>(); \
    return handle;                                                                                 \
  }())

inline bool defined(const OptTensor& t) { return t.has_value() && t->defined(); }
inline Tensor value_or_undefined(const OptTensor& t) { return defined(t) ? *t : Tensor(); }
inline OptTensor optional(const Tensor& t) { return t.defined() ? OptTensor(t) : OptTensor(); }
inline bool requires_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
inline bool requires_grad(const OptTensor& t) { return defined(t) && t->requires_grad(); }

// Bit i set: tensor argument i was a defined tensor (an edge of the graph node). Saved in the
// forward so that the backward can map argument positions to needs_input_grad's edge indices.
inline int64_t defined_bits(std::initializer_list<bool> defined) {
  int64_t bits = 0, i = 0;
  for (bool d : defined) bits |= int64_t(d) << i++;
  return bits;
}

// needs[i]: whether the gradient of tensor argument i (of n) is wanted.
inline std::vector<bool> needs_grads(AutogradContext* ctx, int64_t bits, int n) {
  std::vector<bool> needs(n, false);
  size_t edge = 0;
  for (int i = 0; i < n; ++i) {
    if (bits >> i & 1) needs[i] = ctx->needs_input_grad(edge++);
  }
  return needs;
}

// Forward: run the op below autograd (the Function records the graph). A backward calls the
// backward op's Function, which records a graph only when one is being built (create_graph).
using BelowAutograd = at::AutoDispatchBelowADInplaceOrView;

// op.call(args...) below autograd: call_below_autograd(FASTGEN_OP("name", Sig), args...).
template <typename Sig, typename... Args>
auto call_below_autograd(const c10::TypedOperatorHandle<Sig>& op, Args&&... args) {
  BelowAutograd guard;
  return op.call(std::forward<Args>(args)...);
}

inline Tensor maybe(bool keep, const Tensor& t) { return keep ? t : Tensor(); }

// a + b, or b when a is undefined (a sum of terms that may be absent).
inline Tensor plus(const Tensor& a, const Tensor& b) { return a.defined() ? a + b : b; }

}  // namespace fastgen::autograd
