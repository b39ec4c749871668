// Autograd of fastgen::margin_softmax and fastgen::margin_softmax_backward. The kernels are in
// csrc/margin_softmax.cpp. The double backward differentiates an ATen-op formulation of the op
// (aten_margin_softmax below, the same as fastgen/ops/margin_softmax.py's torch_margin_softmax),
// which materializes the batch x classes cosines: it exists for correctness of higher-order
// gradients, not speed.
#include "autograd/vjp_of_vjp.h"

#include <ATen/ops/acos.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/floor.h>
#include <ATen/ops/linalg_vector_norm.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/remainder.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/where.h>

#include <c10/util/irange.h>

#include <cmath>
#include <limits>

namespace fastgen::autograd {
namespace {

using ForwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t,
                                                      double, double, double, double, bool, int64_t, bool);
using BackwardSig = std::tuple<Tensor, Tensor>(const OptTensor&, const OptTensor&, const Tensor&, const Tensor&,
                                               const Tensor&, const Tensor&, const Tensor&, int64_t, int64_t, double,
                                               double, double, double, bool, int64_t, std::array<bool, 2>, bool);

constexpr double kPi = 3.14159265358979323846;

struct Params {
  int64_t class_start, num_classes;
  double s, m1, m2, m3;
  bool easy_margin;
  int64_t ignore_index;
  bool straight_through;

  void save(AutogradContext* ctx) const {
    ctx->saved_data["class_start"] = class_start;
    ctx->saved_data["num_classes"] = num_classes;
    ctx->saved_data["s"] = s;
    ctx->saved_data["m1"] = m1;
    ctx->saved_data["m2"] = m2;
    ctx->saved_data["m3"] = m3;
    ctx->saved_data["easy_margin"] = easy_margin;
    ctx->saved_data["ignore_index"] = ignore_index;
    ctx->saved_data["straight_through"] = straight_through;
  }
  static Params load(AutogradContext* ctx) {
    auto& d = ctx->saved_data;
    return {d["class_start"].toInt(),  d["num_classes"].toInt(),  d["s"].toDouble(),
            d["m1"].toDouble(),        d["m2"].toDouble(),        d["m3"].toDouble(),
            d["easy_margin"].toBool(), d["ignore_index"].toInt(), d["straight_through"].toBool()};
  }
};

at::ScalarType opmath(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// fastgen/ops/margin_softmax.py clamp_eps.
double clamp_eps(at::ScalarType dtype) { return dtype == at::kDouble ? std::numeric_limits<double>::epsilon() : 1e-7; }

// torch.nn.functional.normalize(x, dim=1), op for op.
Tensor normalize_rows(const Tensor& x) {
  Tensor denom = at::linalg_vector_norm(x, 2.0, at::IntArrayRef{1}, /*keepdim=*/true).clamp_min(1e-12).expand_as(x);
  return x / denom;
}

// s * (psi - m3) of csrc/margin_softmax.cpp's target_logit, in differentiable ATen ops.
Tensor aten_target_logit(const Tensor& cos_t, const Params& p, double eps) {
  if (p.straight_through) {
    // InsightFace's current rule: cos(m1 theta + m2) for every theta, the margin a constant in
    // backward (cos_t - cos_t.detach() is 0 forward and passes d/d cos = 1).
    Tensor psi = at::cos(at::acos(cos_t.detach().clamp(-1, 1)) * p.m1 + p.m2);
    if (p.easy_margin) psi = at::where(cos_t.gt(0), psi, cos_t.detach());
    return ((cos_t - cos_t.detach() + psi) - p.m3) * p.s;
  }
  Tensor c = cos_t.clamp(-1 + eps, 1 - eps);
  Tensor phi = at::acos(c) * p.m1 + p.m2;
  Tensor k = at::floor(phi.detach() / kPi);
  Tensor psi = at::rsub(at::remainder(k, 2) * 2, 1) * at::cos(phi) - k * 2;
  Tensor value;
  if (p.easy_margin) {
    value = at::where(cos_t.gt(0), psi, cos_t);
  } else if (p.m1 == 1.0) {
    value = at::where(phi.gt(kPi), cos_t - p.m2 * std::sin(p.m2), psi);
  } else {
    value = psi;
  }
  return (value - p.m3) * p.s;
}

// (lse, target_logit) of fastgen::margin_softmax, materializing the cosines.
variable_list aten_margin_softmax(const Tensor& embeddings, const Tensor& weight, const Tensor& labels,
                                  const Params& p) {
  const auto compute = opmath(embeddings.scalar_type());
  Tensor cos = at::matmul(normalize_rows(embeddings.to(compute)), normalize_rows(weight.to(compute)).t());
  Tensor local = labels.to(at::kLong) - p.class_start;
  Tensor ignored = labels.eq(p.ignore_index);
  Tensor has_target = ignored.bitwise_not().bitwise_and(local.ge(0)).bitwise_and(local.lt(weight.sym_size(0)));
  Tensor index = at::where(has_target, local, at::Scalar(0)).unsqueeze(1);
  Tensor cos_t = cos.gather(1, index).squeeze(1);
  Tensor target = aten_target_logit(cos_t, p, clamp_eps(embeddings.scalar_type()));
  Tensor logits = cos * p.s;
  logits = logits.scatter(1, index, at::where(has_target, target, logits.gather(1, index).squeeze(1)).unsqueeze(1));
  Tensor lse = at::where(ignored, at::Scalar(0.0), at::logsumexp(logits, 1));
  return {lse.to(at::kDouble), at::where(has_target, target, at::Scalar(0.0))};
}

struct MarginSoftmaxBackward : public torch::autograd::Function<MarginSoftmaxBackward> {
  static variable_list forward(AutogradContext* ctx, const OptTensor& grad_lse, const OptTensor& grad_target,
                               const Tensor& embeddings, const Tensor& weight, const Tensor& labels, const Tensor& lse,
                               const Tensor& target_cos, int64_t class_start, int64_t num_classes, double s, double m1,
                               double m2, double m3, bool easy_margin, int64_t ignore_index,
                               std::array<bool, 2> output_mask, bool straight_through) {
    Tensor g_emb, g_w;
    std::tie(g_emb, g_w) = call_below_autograd(
        FASTGEN_OP("margin_softmax_backward", BackwardSig), grad_lse, grad_target, embeddings, weight, labels, lse,
        target_cos, class_start, num_classes, s, m1, m2, m3, easy_margin, ignore_index, output_mask, straight_through);
    Params{class_start, num_classes, s, m1, m2, m3, easy_margin, ignore_index, straight_through}.save(ctx);
    ctx->saved_data["output_mask"] = int64_t(output_mask[0]) | int64_t(output_mask[1]) << 1;
    ctx->save_for_backward({value_or_undefined(grad_lse), value_or_undefined(grad_target), embeddings, weight, labels});
    return {g_emb, g_w};
  }

  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Params p = Params::load(ctx);
    const int64_t mask = ctx->saved_data["output_mask"].toInt();
    auto r = vjp_of_vjp([&](const variable_list& in) { return aten_margin_softmax(in[0], in[1], in[2], p); },
                        {saved[2], saved[3], saved[4]}, {saved[0], saved[1]},
                        {(mask & 1) ? gg[0] : Tensor(), (mask & 2) ? gg[1] : Tensor(), Tensor()}, {true, true, false});
    variable_list result(17);
    result[0] = r.d_cotangents[0];
    result[1] = r.d_cotangents[1];
    result[2] = r.d_primals[0];
    result[3] = r.d_primals[1];
    return result;
  }
};

struct MarginSoftmax : public torch::autograd::Function<MarginSoftmax> {
  static variable_list forward(AutogradContext* ctx, const Tensor& embeddings, const Tensor& weight,
                               const Tensor& labels, int64_t class_start, int64_t num_classes, double s, double m1,
                               double m2, double m3, bool easy_margin, int64_t ignore_index, bool straight_through) {
    Tensor lse, target_logit, target_cos;
    std::tie(lse, target_logit, target_cos) = call_below_autograd(FASTGEN_OP("margin_softmax", ForwardSig), embeddings,
                                                                  weight, labels, class_start, num_classes, s, m1, m2,
                                                                  m3, easy_margin, ignore_index, straight_through);
    ctx->mark_non_differentiable({target_cos});
    Params{class_start, num_classes, s, m1, m2, m3, easy_margin, ignore_index, straight_through}.save(ctx);
    ctx->save_for_backward({embeddings, weight, labels, lse, target_cos});
    return {lse, target_logit, target_cos};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const Params p = Params::load(ctx);
    std::array<bool, 2> mask{ctx->needs_input_grad(0), ctx->needs_input_grad(1)};
    auto g = MarginSoftmaxBackward::apply(optional(grads[0]), optional(grads[1]), saved[0], saved[1], saved[2],
                                          saved[3], saved[4], p.class_start, p.num_classes, p.s, p.m1, p.m2, p.m3,
                                          p.easy_margin, p.ignore_index, mask, p.straight_through);
    variable_list result(12);
    result[0] = maybe(mask[0], g[0]);
    result[1] = maybe(mask[1], g[1]);
    return result;
  }
};

std::tuple<Tensor, Tensor, Tensor> margin_softmax_autograd(const Tensor& embeddings, const Tensor& weight,
                                                           const Tensor& labels, int64_t class_start,
                                                           int64_t num_classes, double s, double m1, double m2,
                                                           double m3, bool easy_margin, int64_t ignore_index,
                                                           bool straight_through) {
  auto r = MarginSoftmax::apply(embeddings, weight, labels, class_start, num_classes, s, m1, m2, m3, easy_margin,
                                ignore_index, straight_through);
  return {r[0], r[1], r[2]};
}

std::tuple<Tensor, Tensor> margin_softmax_backward_autograd(const OptTensor& grad_lse, const OptTensor& grad_target,
                                                            const Tensor& embeddings, const Tensor& weight,
                                                            const Tensor& labels, const Tensor& lse,
                                                            const Tensor& target_cos, int64_t class_start,
                                                            int64_t num_classes, double s, double m1, double m2,
                                                            double m3, bool easy_margin, int64_t ignore_index,
                                                            std::array<bool, 2> output_mask, bool straight_through) {
  auto r = MarginSoftmaxBackward::apply(grad_lse, grad_target, embeddings, weight, labels, lse, target_cos, class_start,
                                        num_classes, s, m1, m2, m3, easy_margin, ignore_index, output_mask,
                                        straight_through);
  return {r[0], r[1]};
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("margin_softmax", &fastgen::autograd::margin_softmax_autograd);
  m.impl("margin_softmax_backward", &fastgen::autograd::margin_softmax_backward_autograd);
}
