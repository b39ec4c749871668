// Autograd of fastgen::reparam_kl, fastgen::kl_normal and fastgen::reparam_kl_backward (double
// backward). The kernels are in csrc/reparam_kl.cpp. With in-kernel noise (eps None) the
// backward regenerates the noise from the saved seed tensor; it is never materialized, except
// in the double backward.
#include "autograd/common.h"

#include <ATen/ops/zeros_like.h>

#include <string>

namespace fastgen::autograd {
namespace {

using ForwardSig = std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const OptTensor&, const OptTensor&,
                                              c10::string_view);
using KlSig = Tensor(const Tensor&, const Tensor&, c10::string_view);
using BackwardSig = std::tuple<Tensor, Tensor, Tensor>(const OptTensor&, const OptTensor&, const Tensor&, const Tensor&,
                                                       const OptTensor&, const OptTensor&, c10::string_view, bool);

// fastgen/_layout.py batch_major: t if each batch entry is one dense run, else a contiguous copy.
Tensor batch_major(const Tensor& t) {
  const bool dense = t.is_non_overlapping_and_dense() &&
                     (t.dim() == 0 || t.sym_size(0) <= 1 || t.sym_stride(0) == t.sym_numel() / t.sym_size(0));
  return dense ? t : t.contiguous();
}

// The eps that reparam_kl drew for `mu` from `seed`, materialized (z of mu=0, logvar=0). Noise is
// indexed by memory position in the layout the kernels walk, so the zeros are made in that layout.
Tensor regenerate_noise(const Tensor& mu, const Tensor& seed) {
  BelowAutograd guard;
  Tensor zeros = at::zeros_like(batch_major(mu.detach()));
  return std::get<0>(FASTGEN_OP("reparam_kl", ForwardSig).call(zeros, zeros, std::nullopt, seed, "none"));
}

// d(loss)/d(kl[b]) shaped (B, 1, ..., 1) to broadcast against mu.
Tensor per_row(const Tensor& grad_kl, const Tensor& mu, const std::string& reduction) {
  const c10::SymInt batch = mu.sym_size(0);
  Tensor rows;
  if (reduction == "none") {
    rows = grad_kl;
  } else if (reduction == "mean") {
    rows = (grad_kl / at::Scalar(batch)).expand_symint({batch});
  } else {
    rows = grad_kl.expand_symint({batch});
  }
  std::vector<c10::SymInt> shape(mu.dim(), 1);
  shape[0] = batch;
  return rows.reshape_symint(shape);
}

// The adjoint of per_row: (B, ...) -> the shape of grad_kl.
Tensor sum_rows(const Tensor& t, const std::string& reduction) {
  Tensor rows = t.dim() > 1 ? t.flatten(1).sum(1) : t;
  if (reduction == "none") return rows;
  Tensor total = rows.sum();
  return reduction == "mean" ? total / at::Scalar(t.sym_size(0)) : total;
}

struct ReparamKLBackward : public torch::autograd::Function<ReparamKLBackward> {
  static variable_list forward(AutogradContext* ctx, const OptTensor& grad_z, const OptTensor& grad_kl,
                               const Tensor& mu, const Tensor& logvar, const OptTensor& eps, const OptTensor& seed,
                               c10::string_view reduction, bool eps_grad) {
    Tensor g_mu, g_logvar, g_eps;
    std::tie(g_mu, g_logvar, g_eps) = call_below_autograd(FASTGEN_OP("reparam_kl_backward", BackwardSig), grad_z,
                                                          grad_kl, mu, logvar, eps, seed, reduction, eps_grad);
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->saved_data["eps_grad"] = eps_grad;
    ctx->save_for_backward({value_or_undefined(grad_z), value_or_undefined(grad_kl), mu, logvar,
                            value_or_undefined(eps), value_or_undefined(seed)});
    return {g_mu, g_logvar, g_eps};
  }

  // Vector-Jacobian product of reparam_kl_backward, in differentiable ATen ops. With
  // s = exp(logvar / 2), v = exp(logvar) and k the per-row KL gradient:
  //   grad_mu     = grad_z + k * mu
  //   grad_logvar = grad_z * s * eps / 2 + k * (v - 1) / 2
  //   grad_eps    = grad_z * s
  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Tensor &grad_z = saved[0], &grad_kl = saved[1], &mu = saved[2], &logvar = saved[3], &eps = saved[4],
                 &seed = saved[5];
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    const Tensor& gg_mu = gg[0];
    const Tensor& gg_logvar = gg[1];
    const Tensor gg_eps = ctx->saved_data["eps_grad"].toBool() ? gg[2] : Tensor();
    Tensor std_ = (logvar * 0.5).exp();
    Tensor noise;
    if (grad_z.defined()) noise = eps.defined() ? eps : regenerate_noise(mu, seed);

    Tensor d_grad_z, d_grad_kl, d_mu, d_logvar, d_eps;
    if (grad_z.defined()) {
      if (gg_mu.defined()) d_grad_z = gg_mu;
      if (gg_logvar.defined()) d_grad_z = plus(d_grad_z, gg_logvar * 0.5 * std_ * noise);
      if (gg_eps.defined()) d_grad_z = plus(d_grad_z, gg_eps * std_);
    }
    if (grad_kl.defined()) {
      Tensor k = per_row(grad_kl, mu, reduction);
      Tensor row_terms;
      if (gg_mu.defined()) {
        row_terms = gg_mu * mu;
        d_mu = gg_mu * k;
      }
      if (gg_logvar.defined()) {
        row_terms = plus(row_terms, gg_logvar * 0.5 * (std_ * std_ - 1));
        d_logvar = gg_logvar * 0.5 * k * std_ * std_;
      }
      if (row_terms.defined()) d_grad_kl = sum_rows(row_terms, reduction);
    }
    if (grad_z.defined()) {
      if (gg_logvar.defined()) {
        d_logvar = plus(d_logvar, gg_logvar * 0.25 * grad_z * std_ * noise);
        if (eps.defined()) d_eps = gg_logvar * 0.5 * grad_z * std_;
      }
      if (gg_eps.defined()) d_logvar = plus(d_logvar, gg_eps * 0.5 * grad_z * std_);
    }
    return {d_grad_z, d_grad_kl, d_mu, d_logvar, d_eps, Tensor(), Tensor(), Tensor()};
  }
};

struct ReparamKL : public torch::autograd::Function<ReparamKL> {
  static variable_list forward(AutogradContext* ctx, const Tensor& mu, const Tensor& logvar, const OptTensor& eps,
                               const OptTensor& seed, c10::string_view reduction) {
    Tensor z, kl;
    std::tie(z, kl) = call_below_autograd(FASTGEN_OP("reparam_kl", ForwardSig), mu, logvar, eps, seed, reduction);
    // An output that reaches no loss passes no gradient (not zeros): the kernel then leaves its
    // terms out, as eager does (0 * an infinite mu would be NaN).
    ctx->set_materialize_grads(false);
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->saved_data["eps_grad"] = requires_grad(eps);
    ctx->save_for_backward({mu, logvar, value_or_undefined(eps), value_or_undefined(seed)});
    return {z, kl};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined() && !grads[1].defined()) return variable_list(5);
    auto saved = ctx->get_saved_variables();
    // eps reaches the loss only through z.
    const bool eps_grad = ctx->saved_data["eps_grad"].toBool() && grads[0].defined();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    auto r = ReparamKLBackward::apply(optional(grads[0]), optional(grads[1]), saved[0], saved[1], optional(saved[2]),
                                      optional(saved[3]), c10::string_view(reduction), eps_grad);
    return {r[0], r[1], maybe(eps_grad, r[2]), Tensor(), Tensor()};
  }
};

struct KlNormal : public torch::autograd::Function<KlNormal> {
  static Tensor forward(AutogradContext* ctx, const Tensor& mu, const Tensor& logvar, c10::string_view reduction) {
    Tensor kl = call_below_autograd(FASTGEN_OP("kl_normal", KlSig), mu, logvar, reduction);
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->save_for_backward({mu, logvar});
    return kl;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    auto r = ReparamKLBackward::apply(std::nullopt, optional(grads[0]), saved[0], saved[1], std::nullopt, std::nullopt,
                                      c10::string_view(reduction), false);
    return {r[0], r[1], Tensor()};
  }
};

std::tuple<Tensor, Tensor> reparam_kl_autograd(const Tensor& mu, const Tensor& logvar, const OptTensor& eps,
                                               const OptTensor& seed, c10::string_view reduction) {
  auto r = ReparamKL::apply(mu, logvar, eps, seed, reduction);
  return {r[0], r[1]};
}

Tensor kl_normal_autograd(const Tensor& mu, const Tensor& logvar, c10::string_view reduction) {
  return KlNormal::apply(mu, logvar, reduction);
}

std::tuple<Tensor, Tensor, Tensor> reparam_kl_backward_autograd(const OptTensor& grad_z, const OptTensor& grad_kl,
                                                                const Tensor& mu, const Tensor& logvar,
                                                                const OptTensor& eps, const OptTensor& seed,
                                                                c10::string_view reduction, bool eps_grad) {
  auto r = ReparamKLBackward::apply(grad_z, grad_kl, mu, logvar, eps, seed, reduction, eps_grad);
  return {r[0], r[1], r[2]};
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("reparam_kl", &fastgen::autograd::reparam_kl_autograd);
  m.impl("kl_normal", &fastgen::autograd::kl_normal_autograd);
  m.impl("reparam_kl_backward", &fastgen::autograd::reparam_kl_backward_autograd);
}
