// Autograd of the Siamese losses (fastgen::triplet_margin_loss, fastgen::contrastive_loss,
// fastgen::batch_hard_triplet_loss) and of their backward ops (double backward: the ATen-op
// formulations below, differentiated twice by vjp_of_vjp). The kernels are in csrc/triplet.cpp.
#include "autograd/vjp_of_vjp.h"

#include <ATen/ops/index.h>
#include <ATen/ops/pairwise_distance.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/triplet_margin_loss.h>
#include <ATen/ops/where.h>

#include <string>

namespace fastgen::autograd {
namespace {

using TripletSig = Tensor(const Tensor&, const Tensor&, const Tensor&, double, double, double, bool, c10::string_view);
using TripletBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                              const Tensor&, double, double, double, bool,
                                                              c10::string_view);
using ContrastiveSig = Tensor(const Tensor&, const Tensor&, const Tensor&, double, double, c10::string_view);
using ContrastiveBackwardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                                  const Tensor&, double, double, c10::string_view,
                                                                  bool);
using BatchHardSig = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, double, bool, c10::string_view);
using BatchHardBackwardSig = Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double, bool,
                                    c10::string_view);

int64_t reduction_enum(const std::string& reduction) {
  if (reduction == "none") return 0;  // at::Reduction::None
  return reduction == "mean" ? 1 : 2;  // Mean, Sum
}

Tensor reduce(const Tensor& per_row, const std::string& reduction, const Tensor& count = Tensor()) {
  if (reduction == "none") return per_row;
  if (reduction == "sum") return per_row.sum();
  return count.defined() ? per_row.sum() / count : per_row.sum() / at::Scalar(per_row.sym_size(0));
}

// The losses in ATen ops (double backward only).
Tensor aten_contrastive_loss(const Tensor& x1, const Tensor& x2, const Tensor& y_in, double margin, double eps,
                             const std::string& reduction) {
  Tensor d = at::pairwise_distance(x1, x2, 2.0, eps, false);
  Tensor y = y_in.to(d.scalar_type());
  return reduce(y * d.pow(2) + at::rsub(y, 1) * at::relu(at::rsub(d, margin)).pow(2), reduction);
}

Tensor safe_distance(const Tensor& d2, bool squared) {
  if (squared) return d2;
  Tensor positive = d2.gt(0);
  return at::where(positive, at::sqrt(at::where(positive, d2, at::Scalar(1.0))), at::Scalar(0.0));
}

// The loss for given hardest positives / negatives (the op's second and third outputs).
Tensor aten_batch_hard_triplet_loss(const Tensor& embeddings, const Tensor& positive, const Tensor& negative,
                                    double margin, bool squared, const std::string& reduction) {
  Tensor valid = positive.ge(0).logical_and(negative.ge(0));
  Tensor rows_p = at::index(embeddings, c10::List<std::optional<Tensor>>({positive.clamp_min(0)}));
  Tensor rows_n = at::index(embeddings, c10::List<std::optional<Tensor>>({negative.clamp_min(0)}));
  const auto compute = c10::promoteTypes(embeddings.scalar_type(), at::kFloat);
  Tensor d_ap = safe_distance((embeddings - rows_p).to(compute).pow(2).sum(1), squared);
  Tensor d_an = safe_distance((embeddings - rows_n).to(compute).pow(2).sum(1), squared);
  Tensor per_row = at::where(valid, at::relu(d_ap - d_an + margin), at::Scalar(0.0)).to(embeddings.scalar_type());
  return reduce(per_row, reduction, valid.sum().clamp_min(1));
}

// --- triplet margin loss --------------------------------------------------------------------

struct TripletBackward : public torch::autograd::Function<TripletBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& grad, const Tensor& anchor, const Tensor& positive,
                               const Tensor& negative, double margin, double p, double eps, bool swap,
                               c10::string_view reduction) {
    Tensor ga, gp, gn;
    std::tie(ga, gp, gn) = call_below_autograd(FASTGEN_OP("triplet_margin_loss_backward", TripletBackwardSig), grad,
                                               anchor, positive, negative, margin, p, eps, swap, reduction);
    ctx->saved_data["margin"] = margin;
    ctx->saved_data["p"] = p;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["swap"] = swap;
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->save_for_backward({grad, anchor, positive, negative});
    return {ga, gp, gn};
  }

  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const double margin = ctx->saved_data["margin"].toDouble(), p = ctx->saved_data["p"].toDouble(),
                 eps = ctx->saved_data["eps"].toDouble();
    const bool swap = ctx->saved_data["swap"].toBool();
    const int64_t reduction = reduction_enum(ctx->saved_data["reduction"].toStringRef());
    auto r = vjp_of_vjp(
        [&](const variable_list& in) -> variable_list {
          return {at::triplet_margin_loss(in[0], in[1], in[2], margin, p, eps, swap, reduction)};
        },
        {saved[1], saved[2], saved[3]}, {saved[0]}, {gg[0], gg[1], gg[2]}, {true, true, true});
    variable_list result(9);
    result[0] = r.d_cotangents[0];
    for (int i = 0; i < 3; ++i) result[1 + i] = r.d_primals[i];
    return result;
  }
};

struct Triplet : public torch::autograd::Function<Triplet> {
  static Tensor forward(AutogradContext* ctx, const Tensor& anchor, const Tensor& positive, const Tensor& negative,
                        double margin, double p, double eps, bool swap, c10::string_view reduction) {
    ctx->saved_data["margin"] = margin;
    ctx->saved_data["p"] = p;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["swap"] = swap;
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->save_for_backward({anchor, positive, negative});
    return call_below_autograd(FASTGEN_OP("triplet_margin_loss", TripletSig), anchor, positive, negative, margin, p,
                               eps, swap, reduction);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    auto g = TripletBackward::apply(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["margin"].toDouble(),
                                    ctx->saved_data["p"].toDouble(), ctx->saved_data["eps"].toDouble(),
                                    ctx->saved_data["swap"].toBool(), c10::string_view(reduction));
    variable_list result(8);
    for (int i = 0; i < 3; ++i) result[i] = maybe(ctx->needs_input_grad(i), g[i]);
    return result;
  }
};

// --- contrastive loss -----------------------------------------------------------------------

struct ContrastiveBackward : public torch::autograd::Function<ContrastiveBackward> {
  static variable_list forward(AutogradContext* ctx, const Tensor& grad, const Tensor& x1, const Tensor& x2,
                               const Tensor& y, double margin, double eps, c10::string_view reduction, bool y_grad) {
    Tensor g1, g2, gy;
    std::tie(g1, g2, gy) = call_below_autograd(FASTGEN_OP("contrastive_loss_backward", ContrastiveBackwardSig), grad,
                                               x1, x2, y, margin, eps, reduction, y_grad);
    ctx->saved_data["margin"] = margin;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->saved_data["y_grad"] = y_grad;
    ctx->save_for_backward({grad, x1, x2, y});
    return {g1, g2, gy};
  }

  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Tensor& y = saved[3];
    const double margin = ctx->saved_data["margin"].toDouble(), eps = ctx->saved_data["eps"].toDouble();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    const bool floating_y = at::isFloatingType(y.scalar_type());
    auto r = vjp_of_vjp(
        [&](const variable_list& in) -> variable_list {
          return {aten_contrastive_loss(in[0], in[1], in[2], margin, eps, reduction)};
        },
        {saved[1], saved[2], y}, {saved[0]}, {gg[0], gg[1], ctx->saved_data["y_grad"].toBool() ? gg[2] : Tensor()},
        {true, true, floating_y});
    variable_list result(8);
    result[0] = r.d_cotangents[0];
    result[1] = r.d_primals[0];
    result[2] = r.d_primals[1];
    if (floating_y) result[3] = r.d_primals[2];
    return result;
  }
};

struct Contrastive : public torch::autograd::Function<Contrastive> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x1, const Tensor& x2, const Tensor& y, double margin,
                        double eps, c10::string_view reduction) {
    ctx->saved_data["margin"] = margin;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->save_for_backward({x1, x2, y});
    return call_below_autograd(FASTGEN_OP("contrastive_loss", ContrastiveSig), x1, x2, y, margin, eps, reduction);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    const bool y_grad = ctx->needs_input_grad(2);
    auto g = ContrastiveBackward::apply(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["margin"].toDouble(),
                                        ctx->saved_data["eps"].toDouble(), c10::string_view(reduction), y_grad);
    variable_list result(6);
    result[0] = maybe(ctx->needs_input_grad(0), g[0]);
    result[1] = maybe(ctx->needs_input_grad(1), g[1]);
    result[2] = maybe(y_grad, g[2]);
    return result;
  }
};

// --- batch-hard triplet loss ------------------------------------------------------------------

struct BatchHardBackward : public torch::autograd::Function<BatchHardBackward> {
  static Tensor forward(AutogradContext* ctx, const Tensor& grad, const Tensor& embeddings, const Tensor& positive,
                        const Tensor& negative, double margin, bool squared, c10::string_view reduction) {
    ctx->saved_data["margin"] = margin;
    ctx->saved_data["squared"] = squared;
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->save_for_backward({grad, embeddings, positive, negative});
    return call_below_autograd(FASTGEN_OP("batch_hard_triplet_loss_backward", BatchHardBackwardSig), grad, embeddings,
                               positive, negative, margin, squared, reduction);
  }

  static variable_list backward(AutogradContext* ctx, variable_list gg) {
    auto saved = ctx->get_saved_variables();
    const Tensor &positive = saved[2], &negative = saved[3];
    const double margin = ctx->saved_data["margin"].toDouble();
    const bool squared = ctx->saved_data["squared"].toBool();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    auto r = vjp_of_vjp(
        [&](const variable_list& in) -> variable_list {
          return {aten_batch_hard_triplet_loss(in[0], positive, negative, margin, squared, reduction)};
        },
        {saved[1]}, {saved[0]}, {gg[0]}, {true});
    variable_list result(7);
    result[0] = r.d_cotangents[0];
    result[1] = r.d_primals[0];
    return result;
  }
};

struct BatchHard : public torch::autograd::Function<BatchHard> {
  static variable_list forward(AutogradContext* ctx, const Tensor& embeddings, const Tensor& labels, double margin,
                               bool squared, c10::string_view reduction) {
    Tensor loss, positive, negative;
    std::tie(loss, positive, negative) = call_below_autograd(FASTGEN_OP("batch_hard_triplet_loss", BatchHardSig),
                                                             embeddings, labels, margin, squared, reduction);
    ctx->mark_non_differentiable({positive, negative});
    ctx->set_materialize_grads(false);  // the indices carry no gradient: no zeros made for them
    ctx->saved_data["margin"] = margin;
    ctx->saved_data["squared"] = squared;
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->save_for_backward({embeddings, positive, negative});
    return {loss, positive, negative};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const std::string reduction = ctx->saved_data["reduction"].toStringRef();
    variable_list result(5);
    if (!grads[0].defined()) return result;
    result[0] = BatchHardBackward::apply(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["margin"].toDouble(),
                                         ctx->saved_data["squared"].toBool(), c10::string_view(reduction));
    return result;
  }
};

Tensor triplet_autograd(const Tensor& a, const Tensor& p, const Tensor& n, double margin, double pnorm, double eps,
                        bool swap, c10::string_view reduction) {
  return Triplet::apply(a, p, n, margin, pnorm, eps, swap, reduction);
}
std::tuple<Tensor, Tensor, Tensor> triplet_backward_autograd(const Tensor& grad, const Tensor& a, const Tensor& p,
                                                             const Tensor& n, double margin, double pnorm, double eps,
                                                             bool swap, c10::string_view reduction) {
  auto r = TripletBackward::apply(grad, a, p, n, margin, pnorm, eps, swap, reduction);
  return {r[0], r[1], r[2]};
}
Tensor contrastive_autograd(const Tensor& x1, const Tensor& x2, const Tensor& y, double margin, double eps,
                            c10::string_view reduction) {
  return Contrastive::apply(x1, x2, y, margin, eps, reduction);
}
std::tuple<Tensor, Tensor, Tensor> contrastive_backward_autograd(const Tensor& grad, const Tensor& x1, const Tensor& x2,
                                                                 const Tensor& y, double margin, double eps,
                                                                 c10::string_view reduction, bool y_grad) {
  auto r = ContrastiveBackward::apply(grad, x1, x2, y, margin, eps, reduction, y_grad);
  return {r[0], r[1], r[2]};
}
std::tuple<Tensor, Tensor, Tensor> batch_hard_autograd(const Tensor& embeddings, const Tensor& labels, double margin,
                                                       bool squared, c10::string_view reduction) {
  auto r = BatchHard::apply(embeddings, labels, margin, squared, reduction);
  return {r[0], r[1], r[2]};
}
Tensor batch_hard_backward_autograd(const Tensor& grad, const Tensor& embeddings, const Tensor& positive,
                                    const Tensor& negative, double margin, bool squared, c10::string_view reduction) {
  return BatchHardBackward::apply(grad, embeddings, positive, negative, margin, squared, reduction);
}

}  // namespace
}  // namespace fastgen::autograd

TORCH_LIBRARY_IMPL(fastgen, Autograd, m) {
  m.impl("triplet_margin_loss", &fastgen::autograd::triplet_autograd);
  m.impl("triplet_margin_loss_backward", &fastgen::autograd::triplet_backward_autograd);
  m.impl("contrastive_loss", &fastgen::autograd::contrastive_autograd);
  m.impl("contrastive_loss_backward", &fastgen::autograd::contrastive_backward_autograd);
  m.impl("batch_hard_triplet_loss", &fastgen::autograd::batch_hard_autograd);
  m.impl("batch_hard_triplet_loss_backward", &fastgen::autograd::batch_hard_backward_autograd);
}
