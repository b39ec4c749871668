// Autograd of fastgen::pixel_shuffle, fastgen::pixel_unshuffle, fastgen::pixel_shuffle_prelu and
// fastgen::pixel_shuffle_prelu_backward (double backward). The kernels are in
// csrc/pixel_shuffle.cpp; pixel_shuffle and pixel_unshuffle are each other's gradient.
#include "autograd/common.h"

#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

namespace fastgen::autograd {
namespace {

using ShuffleSig = Tensor(const Tensor&, int64_t);
using PreluSig = Tensor(const Tensor&, const Tensor&, int64_t);
using PreluBackwardSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, int64_t, bool, bool);

struct PixelUnshuffle;

struct PixelShuffle : public torch::autograd::Function<PixelShuffle> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t r) {
    ctx->saved_data["r"] = r;
    return call_below_autograd(FASTGEN_OP("pixel_shuffle", ShuffleSig), x, r);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct PixelUnshuffle : public torch::autograd::Function<PixelUnshuffle> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, int64_t r) {
    ctx->saved_data["r"] = r;
    return call_below_autograd(FASTGEN_OP("pixel_unshuffle", ShuffleSig), x, r);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {PixelShuffle::apply(grads[0], ctx->saved_data["r"].toInt()), Tensor()};
  }
};

variable_list PixelShuffle::backward(AutogradContext* ctx, variable_list grads) {
  return {PixelUnshuffle::apply(grads[0], ctx->saved_data["r"].toInt()), Tensor()};
}

// The weight shaped to broadcast against a (*, C, H, W) tensor, and the adjoint.
Tensor weight_broadcast(const Tensor& weight) {
  return weight.sym_numel() == 1 ? weight.reshape({}) : weight.reshape({-1, 1, 1});
}
Tensor sum_to_weight(const Tensor& t, const Tensor& weight) {
  if (weight.sym_numel() == 1) return t.sum().reshape_symint(weight.sym_sizes());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (d != t.dim() - 3) dims.push_back(d);
  }
  return t.sum(dims).reshape_symint(weight.sym_sizes());
}

struct PixelShufflePreluBackward : public torch::autograd::Function<PixelShufflePreluBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& grad_output, const Tensor& x, const Tensor& weight,
                               int64_t r, bool input_grad, bool weight_grad) {
    Tensor gx, gw;
    std::tie(gx, gw) = call_below_autograd(FASTGEN_OP("pixel_shuffle_prelu_backward", PreluBackwardSig), grad_output, x,
                                           weight, r, input_grad, weight_grad);
    ctx->saved_data["r"] = r;
    ctx->saved_data["input_grad"] = input_grad;
    ctx->saved_data["weight_grad"] = weight_grad;
    ctx->save_for_backward({grad_output, x, weight});
    return {gx, gw};
  }

  // Vector-Jacobian product of pixel_shuffle_prelu_backward, in differentiable ATen ops. With
  // xs = shuffle(x), m = xs > 0 and a the weight broadcast over its channels:
  //   grad_input  = unshuffle(where(m, g, a * g))
  //   grad_weight = sum over all but the channel of where(m, 0, xs * g)
  // (the mask's derivative is zero almost everywhere).
  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Tensor &grad_output = saved[0], &x = saved[1], &weight = saved[2];
    const int64_t r = ctx->saved_data["r"].toInt();
    const Tensor gg_input = ctx->saved_data["input_grad"].toBool() ? gg[0] : Tensor();
    const Tensor gg_weight = ctx->saved_data["weight_grad"].toBool() ? gg[1] : Tensor();
    Tensor xs = PixelShuffle::apply(x, r);
    Tensor positive = xs.gt(0);
    Tensor a = weight_broadcast(weight);
    Tensor zero = at::zeros({}, x.options());
    Tensor d_grad, d_x, d_weight;
    if (gg_input.defined()) {
      Tensor gg_big = PixelShuffle::apply(gg_input, r);
      d_grad = at::where(positive, gg_big, a * gg_big);
      d_weight = sum_to_weight(at::where(positive, zero, gg_big * grad_output), weight);
    }
    if (gg_weight.defined()) {
      Tensor b = weight_broadcast(gg_weight);
      Tensor term = at::where(positive, zero, xs * b);
      d_grad = d_grad.defined() ? d_grad + term : term;
      d_x = PixelUnshuffle::apply(at::where(positive, zero, grad_output * b), r);
    }
    return {d_grad, d_x, d_weight, Tensor(), Tensor(), Tensor()};
  }
};

struct PixelShufflePrelu : public torch::autograd::Function<PixelShufflePrelu> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, int64_t r) {
    ctx->saved_data["r"] = r;
    ctx->save_for_backward({x, weight});
    return call_below_autograd(FASTGEN_OP("pixel_shuffle_prelu", PreluSig), x, weight, r);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const bool input_grad = ctx->needs_input_grad(0), weight_grad = ctx->needs_input_grad(1);
    auto g = PixelShufflePreluBackward::apply(grads[0], saved[0], saved[1], ctx->saved_data["r"].toInt(), input_grad,
                                              weight_grad);
    return {maybe(input_grad, g[0]), maybe(weight_grad, g[1]), Tensor()};
  }
};

Tensor pixel_shuffle_autograd(const Tensor& x, int64_t r) { return PixelShuffle::apply(x, r); }
Tensor pixel_unshuffle_autograd(const Tensor& x, int64_t r) { return PixelUnshuffle::apply(x, r); }
Tensor pixel_shuffle_prelu_autograd(const Tensor& x, const Tensor& weight, int64_t r) {
  return PixelShufflePrelu::apply(x, weight, r);
}
std::tuple<Tensor, Tensor> pixel_shuffle_prelu_backward_autograd(const Tensor& grad_output, const Tensor& x,
                                                                 const Tensor& weight, int64_t r, bool input_grad,
                                                                 bool weight_grad) {
  auto g = PixelShufflePreluBackward::apply(grad_output, x, weight, r, input_grad, weight_grad);
  return {g[0], g[1]};
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("pixel_shuffle", &fastgen::autograd::pixel_shuffle_autograd);
  m.impl("pixel_unshuffle", &fastgen::autograd::pixel_unshuffle_autograd);
  m.impl("pixel_shuffle_prelu", &fastgen::autograd::pixel_shuffle_prelu_autograd);
  m.impl("pixel_shuffle_prelu_backward", &fastgen::autograd::pixel_shuffle_prelu_backward_autograd);
}
