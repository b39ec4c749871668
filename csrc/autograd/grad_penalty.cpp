// Autograd of fastgen::interpolate, fastgen::grad_penalty and their backward ops (double
// backward). The kernels are in csrc/grad_penalty.cpp. Both backward ops are linear in their
// incoming gradient, so their own backward is short: it is what lets the penalty sit inside a
// critic whose input gradient was taken with create_graph=True.
#include "autograd/common.h"

#include <ATen/ops/rsub.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

namespace fastgen::autograd {
namespace {

using InterpolateSig = Tensor(const Tensor&, const Tensor&, const Tensor&);
using InterpolateBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const OptTensor&, const OptTensor&,
                                                                  const Tensor&, std::array<bool, 3>);
using PenaltySig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, double, double, bool, bool);
using PenaltyBackwardSig = Tensor(const OptTensor&, const OptTensor&, const Tensor&, const Tensor&, double, double,
                                  bool);

at::ScalarType acc_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// (B,) -> (B, 1, ..., 1), to broadcast against `like`.
Tensor per_row(const Tensor& v, const Tensor& like) {
  std::vector<c10::SymInt> shape(like.dim(), 1);
  shape[0] = like.sym_size(0);
  return v.reshape_symint(shape);
}

// sum over the non-batch dims, accumulated in `dtype`: (B, ...) -> (B,).
Tensor row_sums(const Tensor& t, at::ScalarType dtype) {
  return t.reshape_symint({t.sym_size(0), -1}).sum(1, false, dtype);
}

struct InterpolateBackward : public torch::autograd::Function<InterpolateBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& grad, const OptTensor& real, const OptTensor& fake,
                               const Tensor& alpha, std::array<bool, 3> mask) {
    Tensor gr, gf, ga;
    std::tie(gr, gf, ga) = call_below_autograd(FASTGEN_OP("interpolate_backward", InterpolateBackwardSig), grad, real,
                                               fake, alpha, mask);
    ctx->set_materialize_grads(false);
    ctx->saved_data["mask"] = int64_t(mask[0]) | int64_t(mask[1]) << 1 | int64_t(mask[2]) << 2;
    ctx->save_for_backward({grad, value_or_undefined(real), value_or_undefined(fake), alpha});
    return {gr, gf, ga};
  }

  // VJP of (grad_real, grad_fake, grad_alpha) = (a g, (1 - a) g, sum_j g (real - fake)).
  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Tensor &grad = saved[0], &real = saved[1], &fake = saved[2], &alpha = saved[3];
    const int64_t mask = ctx->saved_data["mask"].toInt();
    const Tensor gg_real = (mask & 1) ? gg[0] : Tensor();
    const Tensor gg_fake = (mask & 2) ? gg[1] : Tensor();
    const Tensor gg_alpha = (mask & 4) ? gg[2] : Tensor();
    Tensor a = per_row(alpha, grad);
    const auto acc = acc_dtype(grad.scalar_type());
    Tensor d_grad, d_real, d_fake, d_alpha;
    if (gg_real.defined()) {
      d_grad = a * gg_real;
      d_alpha = row_sums(grad * gg_real, acc);
    }
    if (gg_fake.defined()) {
      d_grad = plus(d_grad, at::rsub(a, 1) * gg_fake);
      d_alpha = plus(d_alpha, row_sums(grad * gg_fake, acc).neg());
    }
    if (gg_alpha.defined()) {
      Tensor k = per_row(gg_alpha, grad);
      d_grad = plus(d_grad, k * (real - fake));
      d_real = k * grad;
      d_fake = d_real.neg();
    }
    if (d_alpha.defined()) d_alpha = d_alpha.to(alpha.scalar_type());
    return {d_grad, d_real, d_fake, d_alpha, Tensor()};
  }
};

struct Interpolate : public torch::autograd::Function<Interpolate> {
  static Tensor forward(AutogradContext* ctx, const Tensor& real, const Tensor& fake, const Tensor& alpha) {
    const bool alpha_grad = alpha.requires_grad();
    ctx->saved_data["alpha_grad"] = alpha_grad;
    ctx->save_for_backward({alpha_grad ? real : Tensor(), alpha_grad ? fake : Tensor(), alpha});
    return call_below_autograd(FASTGEN_OP("interpolate", InterpolateSig), real, fake, alpha);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    std::array<bool, 3> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                             ctx->saved_data["alpha_grad"].toBool()};
    auto g = InterpolateBackward::apply(grads[0], optional(saved[0]), optional(saved[1]), saved[2], mask);
    return {maybe(mask[0], g[0]), maybe(mask[1], g[1]), maybe(mask[2], g[2])};
  }
};

struct GradPenaltyBackward : public torch::autograd::Function<GradPenaltyBackward> {
  static Tensor forward(AutogradContext* ctx, const OptTensor& grad_penalty, const OptTensor& grad_norms,
                        const Tensor& grads, const Tensor& norms, double target, double weight, bool one_sided) {
    ctx->saved_data["target"] = target;
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["one_sided"] = one_sided;
    ctx->save_for_backward({value_or_undefined(grad_penalty), value_or_undefined(grad_norms), grads, norms});
    return call_below_autograd(FASTGEN_OP("grad_penalty_backward", PenaltyBackwardSig), grad_penalty, grad_norms, grads,
                               norms, target, weight, one_sided);
  }

  // VJP of out = c[b] * grads[b], where (n = norms, h = n - target, clipped at 0 when one-sided)
  //     c[b] = grad_penalty * k * h / n + grad_norms[b] / n,   k = 2 weight / B.
  // out is linear in grads with these coefficients, so d/d(grads) is the same op applied to gg;
  // the coefficients take r[b] = sum_j gg[b, j] grads[b, j].
  static variable_list backward(AutogradContext* ctx, variable_list ggs) {
    auto saved = ctx->get_saved_variables();
    const Tensor &grad_penalty = saved[0], &grad_norms = saved[1], &grads = saved[2], &norms = saved[3];
    const double target = ctx->saved_data["target"].toDouble();
    const double weight = ctx->saved_data["weight"].toDouble();
    const bool one_sided = ctx->saved_data["one_sided"].toBool();
    const Tensor& gg = ggs[0];
    variable_list result(7);
    if (!gg.defined()) return result;
    result[2] = GradPenaltyBackward::apply(optional(grad_penalty), optional(grad_norms), gg, norms, target, weight,
                                           one_sided);
    Tensor r = row_sums(gg * grads, norms.scalar_type());
    Tensor h = norms - target;
    if (one_sided) h = h.clamp_min(0);
    Tensor d_norms;
    if (grad_penalty.defined()) {
      const at::Scalar k(c10::SymFloat(2.0 * weight) / c10::SymFloat(grads.sym_size(0)));
      result[0] = ((r * h / norms).sum() * k).to(grad_penalty.scalar_type()).reshape_symint(grad_penalty.sym_sizes());
      // d(h / n)/dn = target / n^2 where h > 0 (or two-sided), else 0 (Python's target / t is
      // t.reciprocal() * target: same rounding here).
      Tensor dh = (norms * norms).reciprocal() * target;
      if (one_sided) dh = at::where(norms.gt(target), dh, at::zeros_like(dh));
      d_norms = r * k * grad_penalty.to(norms.scalar_type()).reshape({}) * dh;
    }
    if (grad_norms.defined()) {
      result[1] = r / norms;
      d_norms = plus(d_norms, r.neg() * grad_norms / (norms * norms));
    }
    result[3] = d_norms;
    return result;
  }
};

bool plain_cpu_tensor(const Tensor& t) {
  // Not a fake / functional tensor (torch.compile traces): .item() is allowed.
  return t.device().is_cpu() &&
         !t.key_set().has_any(c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::Functionalize}));
}

struct GradPenalty : public torch::autograd::Function<GradPenalty> {
  static variable_list forward(AutogradContext* ctx, const Tensor& grads, double target, double weight, bool one_sided,
                               bool with_grad) {
    Tensor penalty, norms, d_grads;
    std::tie(penalty, norms, d_grads) = call_below_autograd(FASTGEN_OP("grad_penalty", PenaltySig), grads, target,
                                                            weight, one_sided, with_grad);
    ctx->set_materialize_grads(false);  // an unused output's gradient comes as undefined, not zeros
    ctx->mark_non_differentiable({d_grads});
    ctx->saved_data["target"] = target;
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["one_sided"] = one_sided;
    ctx->save_for_backward({grads, norms, with_grad ? d_grads : Tensor()});
    return {penalty, norms, d_grads};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads_in) {
    const Tensor &grad_penalty = grads_in[0], &grad_norms = grads_in[1];
    variable_list result(5);
    if (!grad_penalty.defined() && !grad_norms.defined()) return result;
    auto saved = ctx->get_saved_variables();
    const Tensor &grads = saved[0], &norms = saved[1], &d_grads = saved[2];
    if (d_grads.defined() && !grad_norms.defined() && !at::GradMode::is_enabled() && plain_cpu_tensor(grad_penalty) &&
        grad_penalty.item<double>() == 1.0) {
      // The forward already computed d(penalty)/d(grads) for an upstream gradient of 1 (the
      // penalty added to a loss). With create_graph=True the op below keeps it differentiable.
      result[0] = d_grads;
      return result;
    }
    result[0] = GradPenaltyBackward::apply(optional(grad_penalty), optional(grad_norms), grads, norms,
                                           ctx->saved_data["target"].toDouble(), ctx->saved_data["weight"].toDouble(),
                                           ctx->saved_data["one_sided"].toBool());
    return result;
  }
};

Tensor interpolate_autograd(const Tensor& real, const Tensor& fake, const Tensor& alpha) {
  return Interpolate::apply(real, fake, alpha);
}
std::tuple<Tensor, Tensor, Tensor> interpolate_backward_autograd(const Tensor& grad, const OptTensor& real,
                                                                 const OptTensor& fake, const Tensor& alpha,
                                                                 std::array<bool, 3> mask) {
  auto r = InterpolateBackward::apply(grad, real, fake, alpha, mask);
  return {r[0], r[1], r[2]};
}
std::tuple<Tensor, Tensor, Tensor> grad_penalty_autograd(const Tensor& grads, double target, double weight,
                                                         bool one_sided, bool with_grad) {
  auto r = GradPenalty::apply(grads, target, weight, one_sided, with_grad);
  return {r[0], r[1], r[2]};
}
Tensor grad_penalty_backward_autograd(const OptTensor& grad_penalty, const OptTensor& grad_norms, const Tensor& grads,
                                      const Tensor& norms, double target, double weight, bool one_sided) {
  return GradPenaltyBackward::apply(grad_penalty, grad_norms, grads, norms, target, weight, one_sided);
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("interpolate", &fastgen::autograd::interpolate_autograd);
  m.impl("interpolate_backward", &fastgen::autograd::interpolate_backward_autograd);
  m.impl("grad_penalty", &fastgen::autograd::grad_penalty_autograd);
  m.impl("grad_penalty_backward", &fastgen::autograd::grad_penalty_backward_autograd);
}
