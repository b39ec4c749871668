// Autograd of fastgen::instance_norm and fastgen::instance_norm_backward (double backward).
// The kernels are in csrc/instance_norm.cpp.
#include "autograd/common.h"

#include <ATen/ops/ones.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <string>

namespace fastgen::autograd {
namespace {

using ForwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const OptTensor&, const OptTensor&,
                                                      const OptTensor&, const OptTensor&, const OptTensor&, bool,
                                                      double, c10::string_view, double);
using BackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                                                       const Tensor&, const Tensor&, bool, double, c10::string_view,
                                                       double, std::array<bool, 3>);

at::ScalarType opmath(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

std::vector<int64_t> spatial_dims(int64_t nd, bool with_batch) {
  std::vector<int64_t> dims;
  if (with_batch) dims.push_back(0);
  for (int64_t d = 2; d < nd; ++d) dims.push_back(d);
  return dims;
}

// (C,) -> (1, C, 1, ...) and (N, C) -> (N, C, 1, ...), to broadcast against (N, C, *spatial).
Tensor per_channel(const Tensor& t, int64_t nd) {
  std::vector<int64_t> shape(nd, 1);
  shape[1] = -1;
  return t.view(shape);
}
Tensor per_plane(const Tensor& t, int64_t nd) {
  Tensor r = t;
  for (int64_t d = 2; d < nd; ++d) r = r.unsqueeze(-1);
  return r;
}

// act'(y), piecewise constant (no gradient flows through it); undefined for the identity.
// Same conventions (and float32 constants) as csrc/instance_norm.cpp's backward.
Tensor activation_slope(const Tensor& y_in, const std::string& activation, double slope) {
  Tensor y = y_in.detach();
  if (activation == "relu") return at::where(y.le(0), at::Scalar(0.0), at::Scalar(1.0)).to(y.scalar_type());
  if (activation == "leaky_relu") return at::where(y.gt(0), at::Scalar(1.0), at::Scalar(slope)).to(y.scalar_type());
  return Tensor();
}

// All first-order gradients when the running statistics normalize (use_input_stats=False) and
// themselves need gradients: in ATen ops, so every order of derivative comes from autograd.
// With gy = grad_out * act'(y):
//   grad_x = gy w rstd,   grad_w = sum gy (x - rm) rstd,   grad_b = sum gy,
//   grad_rm = -sum gy w rstd,   grad_rv = -1/2 sum gy w (x - rm) rstd^3.
variable_list eval_grads_in_aten_ops(const Tensor& grad_out, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                     const Tensor& running_mean, const Tensor& running_var, double eps,
                                     const std::string& activation, double slope) {
  const int64_t nd = x.dim();
  const auto dtype = opmath(x.scalar_type());
  Tensor xf = x.to(dtype), gf = grad_out.to(dtype);
  Tensor rm = per_channel(running_mean.to(dtype), nd);
  Tensor rstd = per_channel(at::rsqrt(running_var.to(dtype) + eps), nd);
  Tensor w = weight.defined() ? per_channel(weight.to(dtype), nd) : at::ones({}, x.options().dtype(dtype));
  Tensor xc = xf - rm;
  Tensor pre = xc * (w * rstd);
  if (bias.defined()) pre = pre + per_channel(bias.to(dtype), nd);
  Tensor slope_t = activation_slope(pre, activation, slope);
  Tensor gy = slope_t.defined() ? gf * slope_t : gf;
  auto dims = spatial_dims(nd, true);
  Tensor grad_x = (gy * w * rstd).to(x.scalar_type());
  Tensor grad_w = weight.defined() ? (gy * xc * rstd).sum(dims).to(weight.scalar_type()) : Tensor();
  Tensor grad_b = bias.defined() ? gy.sum(dims).to(bias.scalar_type()) : Tensor();
  Tensor grad_rm = (gy * w * rstd).sum(dims).neg();
  Tensor grad_rv = (gy * w * xc * rstd.pow(3)).sum(dims) * -0.5;
  return {grad_x, grad_w, grad_b, grad_rm.to(running_mean.scalar_type()), grad_rv.to(running_var.scalar_type())};
}

struct InstanceNormBackward : public torch::autograd::Function<InstanceNormBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& grad_out, const Tensor& x, const OptTensor& weight,
                               const OptTensor& bias, const Tensor& mean, const Tensor& var, bool use_input_stats,
                               double eps, c10::string_view activation, double slope, std::array<bool, 3> output_mask) {
    Tensor gx, gw, gb;
    std::tie(gx, gw, gb) = call_below_autograd(FASTGEN_OP("instance_norm_backward", BackwardSig), grad_out, x, weight,
                                               bias, mean, var, use_input_stats, eps, activation, slope, output_mask);
    ctx->saved_data["use_input_stats"] = use_input_stats;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["slope"] = slope;
    ctx->saved_data["mask"] = int64_t(output_mask[0]) | int64_t(output_mask[1]) << 1 | int64_t(output_mask[2]) << 2;
    ctx->save_for_backward({grad_out, x, value_or_undefined(weight), value_or_undefined(bias), mean, var});
    return {gx, gw, gb};
  }

  // Vector-Jacobian product of instance_norm_backward, in differentiable ATen ops.
  //
  // Per (n, c) plane of M elements, with xhat = (x - mu) * r, gy = g * act'(y) (act' piecewise
  // constant), A = <gy>, B = <gy * xhat> (<.> the plane mean) and P(v) = v - <v> - xhat <v xhat>:
  //   grad_x = w r P(gy)              grad_w = sum M B           grad_b = sum M A
  // so for upstream gradients (Gx, Gw, Gb):
  //   d g = act'(y) * (w r P(Gx) + Gw xhat + Gb)
  //   d w = sum_{n,s} Gx r (gy - A - xhat B)
  //   d x = r P(h) - w r^2 xhat (<Gx gy> - A <Gx> - B <Gx xhat>),  h = -w r (gy <Gx xhat> + B Gx) + Gw gy
  // With running statistics (use_input_stats=False) mu and r are constants:
  //   d g = act'(y) * (w r Gx + Gw xhat + Gb),   d w = sum Gx r gy,   d x = Gw r gy.
  // The statistics are recomputed from x in ATen ops, so higher orders are exact too.
  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Tensor &g = saved[0], &x = saved[1], &weight = saved[2], &bias = saved[3], &mean = saved[4], &var = saved[5];
    const bool use_input_stats = ctx->saved_data["use_input_stats"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble();
    const std::string activation = ctx->saved_data["activation"].toStringRef();
    const double slope = ctx->saved_data["slope"].toDouble();
    const int64_t mask = ctx->saved_data["mask"].toInt();
    variable_list result(11);
    Tensor gg_x = (mask & 1) ? gg[0] : Tensor();
    Tensor gg_w = (mask & 2) ? gg[1] : Tensor();
    Tensor gg_b = (mask & 4) ? gg[2] : Tensor();
    if (!gg_x.defined() && !gg_w.defined() && !gg_b.defined()) return result;
    const int64_t nd = x.dim();
    const auto dims = spatial_dims(nd, false);
    const auto dtype = opmath(x.scalar_type());
    Tensor xf = x.to(dtype), gf = g.to(dtype);
    auto plane_mean = [&](const Tensor& t) { return t.mean(dims, /*keepdim=*/true); };

    Tensor xc, r;
    if (use_input_stats) {
      xc = xf - plane_mean(xf);
      r = at::rsqrt(plane_mean(xc * xc) + eps);
    } else {
      xc = xf - per_plane(mean, nd);
      r = at::rsqrt(per_plane(var, nd) + eps);
    }
    Tensor xhat = xc * r;
    Tensor w = weight.defined() ? per_channel(weight.to(dtype), nd) : Tensor();
    Tensor wr = w.defined() ? r * w : r;
    Tensor pre = xc * wr;
    if (bias.defined()) pre = pre + per_channel(bias.to(dtype), nd);
    Tensor slope_t = activation_slope(pre, activation, slope);
    Tensor gy = slope_t.defined() ? gf * slope_t : gf;
    Tensor gx_up = gg_x.defined() ? gg_x.to(dtype) : Tensor();
    Tensor gw_up = gg_w.defined() ? per_channel(gg_w.to(dtype), nd) : Tensor();
    Tensor gb_up = gg_b.defined() ? per_channel(gg_b.to(dtype), nd) : Tensor();
    auto project = [&](const Tensor& v) { return v - plane_mean(v) - xhat * plane_mean(v * xhat); };

    Tensor d_gy = at::zeros_like(xf);
    if (gx_up.defined()) d_gy = d_gy + wr * (use_input_stats ? project(gx_up) : gx_up);
    if (gw_up.defined()) d_gy = d_gy + gw_up * xhat;
    if (gb_up.defined()) d_gy = d_gy + gb_up;
    Tensor d_g = slope_t.defined() ? d_gy * slope_t : d_gy;

    const auto reduce_dims = spatial_dims(nd, true);
    Tensor d_w, d_x;
    if (use_input_stats) {
      Tensor A = plane_mean(gy), B = plane_mean(gy * xhat);
      if (weight.defined() && gx_up.defined()) d_w = (gx_up * r * (gy - A - xhat * B)).sum(reduce_dims);
      Tensor h = at::zeros_like(xf);
      Tensor c_x;
      if (gx_up.defined()) {
        c_x = plane_mean(gx_up * xhat);
        h = h - wr * (gy * c_x + B * gx_up);
      }
      if (gw_up.defined()) h = h + gw_up * gy;
      d_x = r * project(h);
      if (gx_up.defined()) {
        Tensor wr1 = w.defined() ? w * r : r;
        d_x = d_x - wr1 * r * xhat * (plane_mean(gx_up * gy) - A * plane_mean(gx_up) - B * c_x);
      }
    } else {
      if (weight.defined() && gx_up.defined()) d_w = (gx_up * r * gy).sum(reduce_dims);
      if (gw_up.defined()) d_x = gw_up * r * gy;
    }
    result[0] = d_g.to(g.scalar_type());
    if (d_x.defined()) result[1] = d_x.to(x.scalar_type());
    if (d_w.defined()) result[2] = d_w.to(weight.scalar_type());
    return result;
  }
};

struct InstanceNorm : public torch::autograd::Function<InstanceNorm> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const OptTensor& weight, const OptTensor& bias,
                               const OptTensor& running_mean, const OptTensor& running_var, const OptTensor& residual,
                               bool use_input_stats, double eps, c10::string_view activation, double slope) {
    Tensor out, mean, var;
    std::tie(out, mean, var) = call_below_autograd(FASTGEN_OP("instance_norm", ForwardSig), x, weight, bias,
                                                   running_mean, running_var, residual, use_input_stats, eps,
                                                   activation, slope);
    ctx->mark_non_differentiable({mean, var});
    ctx->set_materialize_grads(false);  // mean and var carry no gradient: no zeros made for them
    const bool stats_grad = !use_input_stats && (requires_grad(running_mean) || requires_grad(running_var));
    ctx->saved_data["bits"] = defined_bits(
        {true, defined(weight), defined(bias), defined(running_mean), defined(running_var), defined(residual)});
    ctx->saved_data["use_input_stats"] = use_input_stats;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["activation"] = std::string(activation);
    ctx->saved_data["slope"] = slope;
    ctx->saved_data["stats_grad"] = stats_grad;
    ctx->save_for_backward({x, value_or_undefined(weight), value_or_undefined(bias), mean, var,
                            stats_grad ? value_or_undefined(running_mean) : Tensor(),
                            stats_grad ? value_or_undefined(running_var) : Tensor()});
    return {out, mean, var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &weight = saved[1], &bias = saved[2], &mean = saved[3], &var = saved[4];
    const bool use_input_stats = ctx->saved_data["use_input_stats"].toBool();
    const double eps = ctx->saved_data["eps"].toDouble();
    const std::string activation = ctx->saved_data["activation"].toStringRef();
    const double slope = ctx->saved_data["slope"].toDouble();
    const auto needs = needs_grads(ctx, ctx->saved_data["bits"].toInt(), 6);
    const Tensor& grad_out = grads[0];
    std::array<bool, 3> mask{needs[0], weight.defined() && needs[1], bias.defined() && needs[2]};
    variable_list result(10);
    if (!grad_out.defined()) return result;
    if (ctx->saved_data["stats_grad"].toBool()) {
      auto all = eval_grads_in_aten_ops(grad_out, x, weight, bias, saved[5], saved[6], eps, activation, slope);
      for (int i = 0; i < 5; ++i) result[i] = maybe(needs[i], all[i]);
    } else if (mask[0] || mask[1] || mask[2]) {
      auto r = InstanceNormBackward::apply(grad_out, x, optional(weight), optional(bias), mean, var, use_input_stats,
                                           eps, c10::string_view(activation), slope, mask);
      for (int i = 0; i < 3; ++i) result[i] = maybe(mask[i], r[i]);
    }
    result[5] = maybe(needs[5], grad_out);
    return result;
  }
};

std::tuple<Tensor, Tensor, Tensor> instance_norm_autograd(const Tensor& x, const OptTensor& weight,
                                                          const OptTensor& bias, const OptTensor& running_mean,
                                                          const OptTensor& running_var, const OptTensor& residual,
                                                          bool use_input_stats, double eps, c10::string_view activation,
                                                          double slope) {
  auto r = InstanceNorm::apply(x, weight, bias, running_mean, running_var, residual, use_input_stats, eps, activation,
                               slope);
  return {r[0], r[1], r[2]};
}

std::tuple<Tensor, Tensor, Tensor> instance_norm_backward_autograd(const Tensor& grad_out, const Tensor& x,
                                                                   const OptTensor& weight, const OptTensor& bias,
                                                                   const Tensor& mean, const Tensor& var,
                                                                   bool use_input_stats, double eps,
                                                                   c10::string_view activation, double slope,
                                                                   std::array<bool, 3> output_mask) {
  auto r = InstanceNormBackward::apply(grad_out, x, weight, bias, mean, var, use_input_stats, eps, activation, slope,
                                       output_mask);
  return {r[0], r[1], r[2]};
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("instance_norm", &fastgen::autograd::instance_norm_autograd);
  m.impl("instance_norm_backward", &fastgen::autograd::instance_norm_backward_autograd);
}
