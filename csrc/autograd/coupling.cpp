// Autograd of fastgen::affine_coupling and fastgen::affine_coupling_backward (double backward).
// The kernels are in csrc/coupling.cpp.
#include "autograd/common.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <string>

namespace fastgen::autograd {
namespace {

using ForwardSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const OptTensor&,
                                              c10::string_view, int64_t, bool);
using BackwardSig = std::tuple<Tensor, Tensor, Tensor, Tensor>(const OptTensor&, const OptTensor&, const Tensor&,
                                                               const Tensor&, const OptTensor&, c10::string_view,
                                                               int64_t, bool, std::array<bool, 4>);

// The transformed part of x-shaped tensors and the way back, in ATen ops (double backward only:
// the kernels never build a mask).
struct Parts {
  int64_t parity;
  c10::SymInt half = 0, start = 0;
  Tensor on;  // checkerboard: the transformed entries; undefined for the channel mask

  Parts(const Tensor& x, const std::string& mask, int64_t parity_) : parity(parity_) {
    if (mask == "channel") {
      half = x.sym_size(1) / 2;
      start = parity == 0 ? half : 0;
    } else {
      auto idx = at::TensorOptions().dtype(at::kLong).device(x.device());
      Tensor h = at::arange(at::Scalar(x.sym_size(2)), idx).view({-1, 1});
      Tensor w = at::arange(at::Scalar(x.sym_size(3)), idx).view({1, -1});
      on = (h + w).remainder(2).ne(parity).unsqueeze(0).unsqueeze(0);
    }
  }
  // x-shaped -> s-shaped: the transformed part.
  Tensor tr(const Tensor& z) const { return on.defined() ? z : z.narrow_symint(1, start, half); }
  // s-shaped, zeroed on the checkerboard's ignored entries.
  Tensor only(const Tensor& z) const { return on.defined() ? at::where(on, z, at::zeros({}, z.options())) : z; }
  // x-shaped from an x-shaped tensor holding the conditioning part (undefined: zeros) and the
  // transformed part.
  Tensor join(const Tensor& cond_in, const Tensor& tr_part) const {
    if (!on.defined()) {
      Tensor cond = cond_in.defined() ? cond_in.narrow_symint(1, half - start, half) : at::zeros_like(tr_part);
      return parity == 0 ? at::cat({cond, tr_part}, 1) : at::cat({tr_part, cond}, 1);
    }
    return cond_in.defined() ? at::where(on, tr_part, cond_in) : only(tr_part);
  }
};

struct AffineCouplingBackward : public torch::autograd::Function<AffineCouplingBackward> {
  static variable_list forward(AutogradContext* ctx, const OptTensor& grad_output, const OptTensor& grad_logdet,
                               const Tensor& x, const Tensor& s, const OptTensor& scale, c10::string_view mask,
                               int64_t parity, bool inverse, std::array<bool, 4> output_mask) {
    Tensor g_in, g_s, g_t, g_scale;
    std::tie(g_in, g_s, g_t, g_scale) = call_below_autograd(FASTGEN_OP("affine_coupling_backward", BackwardSig),
                                                            grad_output, grad_logdet, x, s, scale, mask, parity,
                                                            inverse, output_mask);
    ctx->saved_data["mask"] = std::string(mask);
    ctx->saved_data["parity"] = parity;
    ctx->saved_data["inverse"] = inverse;
    ctx->saved_data["output_mask"] = int64_t(output_mask[0]) | int64_t(output_mask[1]) << 1 |
                                     int64_t(output_mask[2]) << 2 | int64_t(output_mask[3]) << 3;
    ctx->save_for_backward(
        {value_or_undefined(grad_output), value_or_undefined(grad_logdet), x, s, value_or_undefined(scale)});
    return {g_in, g_s, g_t, g_scale};
  }

  // Vector-Jacobian product of affine_coupling_backward, in differentiable ATen ops.
  //
  // On the transformed part, with s_eff = scale * tanh(s) (or s), e = exp(+-s_eff), gl the row's
  // logdet gradient and X the untransformed side (see the schema):
  //   forward:  grad_in = g e,  grad_t = g,      dse = g X e + gl
  //   inverse:  grad_in = g e,  grad_t = -g e,   dse = -(g X + gl)
  //   grad_s = dse * scale * (1 - tanh(s)^2),   grad_scale = sum(dse * tanh(s))
  // (grad_s = dse without scale), and grad_in = g on the conditioning part.
  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Tensor &g = saved[0], &gl = saved[1], &X = saved[2], &s = saved[3], &scale = saved[4];
    const int64_t want = ctx->saved_data["output_mask"].toInt();
    const bool inverse = ctx->saved_data["inverse"].toBool();
    // Outputs that were not computed (empty) carry no gradient.
    const Tensor gg_in = (want & 1) ? gg[0] : Tensor();
    const Tensor gg_s = (want & 2) ? gg[1] : Tensor();
    const Tensor gg_t = (want & 4) ? gg[2] : Tensor();
    const Tensor gg_scale = (want & 8) && scale.defined() ? gg[3] : Tensor();
    const Parts parts(X, ctx->saved_data["mask"].toStringRef(), ctx->saved_data["parity"].toInt());
    Tensor zeros = at::zeros_like(s);
    Tensor a = gg_in.defined() ? parts.tr(gg_in) : zeros;
    Tensor b = gg_s.defined() ? gg_s : zeros;
    Tensor c = gg_t.defined() ? parts.only(gg_t) : zeros;
    Tensor g_tr = g.defined() ? parts.tr(g) : zeros;
    Tensor x_tr = parts.tr(X);
    Tensor gl_rows = zeros;
    if (gl.defined()) {
      std::vector<int64_t> shape(s.dim(), 1);
      shape[0] = -1;
      gl_rows = gl.to(s.scalar_type()).view(shape);
    }
    Tensor th, s_eff, ds_eff, u;
    if (scale.defined()) {
      th = parts.only(s.tanh());
      s_eff = scale * th;
      ds_eff = scale * at::rsub(th * th, 1);  // d s_eff / d s
      u = b * ds_eff;
      if (gg_scale.defined()) u = u + gg_scale * th;
    } else {
      s_eff = parts.only(s);
      u = b;
    }
    u = parts.only(u);  // what reaches dse from grad_s and grad_scale
    Tensor e = (inverse ? s_eff.neg() : s_eff).exp();
    Tensor d_g_tr, d_x_tr, d_se, dse, d_gl;
    if (!inverse) {
      d_g_tr = a * e + c + u * x_tr * e;
      d_x_tr = u * g_tr * e;
      d_se = g_tr * e * (a + u * x_tr);  // d loss / d s_eff through e
      dse = g_tr * x_tr * e + gl_rows;
      d_gl = u.flatten(1).sum(1);
    } else {
      d_g_tr = (a - c) * e - u * x_tr;
      d_x_tr = u.neg() * g_tr;
      d_se = (a - c).neg() * g_tr * e;
      dse = (g_tr * x_tr + gl_rows).neg();
      d_gl = u.flatten(1).sum(1).neg();
    }
    d_se = parts.only(d_se);
    Tensor d_s, d_scale;
    if (scale.defined()) {
      dse = parts.only(dse);
      Tensor one_m_th2 = at::rsub(th * th, 1);
      Tensor twice = b * 2 * scale * th;
      Tensor direct = gg_scale.defined() ? gg_scale - twice : at::rsub(twice, 0);
      d_s = d_se * ds_eff + dse * one_m_th2 * direct;
      d_scale = parts.only(d_se * th + b * dse * one_m_th2).sum_to_size_symint(scale.sym_sizes());
    } else {
      d_s = d_se;
    }
    variable_list result(9);
    if (g.defined()) {
      result[0] = parts.join(gg_in, parts.only(d_g_tr));
      result[2] = parts.join(Tensor(), parts.only(d_x_tr));
    }
    if (gl.defined()) result[1] = d_gl.to(gl.scalar_type());
    result[3] = parts.only(d_s);
    result[4] = d_scale;
    return result;
  }
};

struct AffineCoupling : public torch::autograd::Function<AffineCoupling> {
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const Tensor& s, const Tensor& t,
                               const OptTensor& scale, c10::string_view mask, int64_t parity, bool inverse) {
    Tensor y, logdet;
    std::tie(y, logdet) = call_below_autograd(FASTGEN_OP("affine_coupling", ForwardSig), x, s, t, scale, mask, parity,
                                              inverse);
    // An output that reaches no loss passes no gradient (not zeros): the kernel leaves its terms out.
    ctx->set_materialize_grads(false);
    ctx->saved_data["mask"] = std::string(mask);
    ctx->saved_data["parity"] = parity;
    ctx->saved_data["inverse"] = inverse;
    // The untransformed side: the input going forward, the output going back (so the inverse's
    // backward needs neither t nor a recomputation).
    ctx->save_for_backward({inverse ? y : x, s, value_or_undefined(scale)});
    return {y, logdet};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor &grad_y = grads[0], &grad_logdet = grads[1];
    if (!grad_y.defined() && !grad_logdet.defined()) return variable_list(7);
    auto saved = ctx->get_saved_variables();
    const Tensor &x_side = saved[0], &s = saved[1], &scale = saved[2];
    const std::string mask = ctx->saved_data["mask"].toStringRef();
    const int64_t parity = ctx->saved_data["parity"].toInt();
    const bool inverse = ctx->saved_data["inverse"].toBool();
    const bool need_x = ctx->needs_input_grad(0), need_s = ctx->needs_input_grad(1), need_t = ctx->needs_input_grad(2);
    const bool need_scale = scale.defined() && ctx->needs_input_grad(3);
    // Going forward with the channel mask, grad_t is grad_y's transformed half exactly: hand out
    // that view (as eager's cat backward does) instead of writing a copy.
    const bool t_is_view = need_t && mask == "channel" && !inverse;
    auto r = AffineCouplingBackward::apply(optional(grad_y), optional(grad_logdet), x_side, s, optional(scale),
                                           c10::string_view(mask), parity, inverse,
                                           std::array<bool, 4>{need_x, need_s, need_t && !t_is_view, need_scale});
    Tensor grad_t = r[2];
    if (t_is_view) {
      const c10::SymInt half = s.sym_size(1);
      grad_t = grad_y.defined() ? grad_y.narrow_symint(1, parity == 0 ? half : c10::SymInt(0), half) : Tensor();
    }
    return {maybe(need_x, r[0]),
            maybe(need_s, r[1]),
            maybe(need_t, grad_t),
            maybe(need_scale, r[3]),
            Tensor(),
            Tensor(),
            Tensor()};
  }
};

std::tuple<Tensor, Tensor> affine_coupling_autograd(const Tensor& x, const Tensor& s, const Tensor& t,
                                                    const OptTensor& scale, c10::string_view mask, int64_t parity,
                                                    bool inverse) {
  auto r = AffineCoupling::apply(x, s, t, scale, mask, parity, inverse);
  return {r[0], r[1]};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> affine_coupling_backward_autograd(
    const OptTensor& grad_output, const OptTensor& grad_logdet, const Tensor& x, const Tensor& s,
    const OptTensor& scale, c10::string_view mask, int64_t parity, bool inverse, std::array<bool, 4> output_mask) {
  auto r = AffineCouplingBackward::apply(grad_output, grad_logdet, x, s, scale, mask, parity, inverse, output_mask);
  return {r[0], r[1], r[2], r[3]};
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("affine_coupling", &fastgen::autograd::affine_coupling_autograd);
  m.impl("affine_coupling_backward", &fastgen::autograd::affine_coupling_backward_autograd);
}
