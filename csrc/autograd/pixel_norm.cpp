// Autograd of fastgen::pixel_norm and fastgen::pixel_norm_backward (double backward). The kernels
// are in csrc/pixel_norm.cpp. With r = (mean_c x^2 + eps)^(-1/2) per pixel:
//     y  = r x
//     gx = r g - r^3 x mean_c(g x)                      (pixel_norm_backward)
#include "autograd/common.h"

#include <ATen/ops/rsqrt.h>

namespace fastgen::autograd {
namespace {

using ForwardSig = Tensor(const Tensor&, double);
using BackwardSig = Tensor(const Tensor&, const Tensor&, double);

struct PixelNormBackward : public torch::autograd::Function<PixelNormBackward> {
  static Tensor forward(AutogradContext* ctx, const Tensor& grad, const Tensor& x, double eps) {
    ctx->saved_data["eps"] = eps;
    ctx->save_for_backward({grad, x});
    return call_below_autograd(FASTGEN_OP("pixel_norm_backward", BackwardSig), grad, x, eps);
  }

  // VJP of gx = r g - r^3 x (x.g)/C (per pixel, dots over the channels), given a = d/d(gx):
  //     d/dg = r a - r^3 x (x.a)/C                     (the same map: it is symmetric)
  //     d/dx = -(a.g) r^3 x/C + 3 r^5 (x.a)(x.g) x/C^2 - r^3 ((x.g) a + (x.a) g)/C
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &grad = saved[0], &x = saved[1];
    const Tensor& a = grads[0];
    const double eps = ctx->saved_data["eps"].toDouble();
    if (!a.defined()) return {Tensor(), Tensor(), Tensor()};
    Tensor d_grad = PixelNormBackward::apply(a, x, eps);
    const c10::SymInt c = x.sym_size(1);
    Tensor r = at::rsqrt(x.pow(2).mean(1, /*keepdim=*/true) + eps);
    Tensor r3 = r * r * r;
    Tensor xa = (x * a).sum(1, /*keepdim=*/true);
    Tensor xg = (x * grad).sum(1, /*keepdim=*/true);
    Tensor ag = (a * grad).sum(1, /*keepdim=*/true);
    Tensor d_x = (r3 * 3 * r * r * xa * xg / at::Scalar(c * c) - r3 * ag / at::Scalar(c)) * x -
                 (r3 / at::Scalar(c)) * (xg * a + xa * grad);
    return {d_grad, d_x, Tensor()};
  }
};

struct PixelNorm : public torch::autograd::Function<PixelNorm> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, double eps) {
    ctx->saved_data["eps"] = eps;
    ctx->save_for_backward({x});
    return call_below_autograd(FASTGEN_OP("pixel_norm", ForwardSig), x, eps);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    return {PixelNormBackward::apply(grads[0], saved[0], ctx->saved_data["eps"].toDouble()), Tensor()};
  }
};

Tensor pixel_norm_autograd(const Tensor& x, double eps) { return PixelNorm::apply(x, eps); }
Tensor pixel_norm_backward_autograd(const Tensor& grad, const Tensor& x, double eps) {
  return PixelNormBackward::apply(grad, x, eps);
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("pixel_norm", &fastgen::autograd::pixel_norm_autograd);
  m.impl("pixel_norm_backward", &fastgen::autograd::pixel_norm_backward_autograd);
}
