// Double backward for ops whose first backward is a fused kernel: differentiate an ATen-op
// formulation of the op twice (the loss families, csrc/autograd/triplet.cpp and
// csrc/autograd/margin_softmax.cpp, whose forward math is too branchy for a hand-written Hessian).
//
// The backward op computed grads = VJP(f)(primals; cotangents). Its own VJP, given the incoming
// gradients gg of those grads, is d<VJP(f)(primals; cotangents), gg> with respect to the
// cotangents and the primals, which autograd gives when f is written in ATen ops. With
// create_graph the result stays differentiable (third order and up).
#pragma once

#include "autograd/common.h"

#include <torch/csrc/autograd/autograd.h>

#include <functional>

namespace fastgen::autograd {

struct VjpOfVjp {
  variable_list d_cotangents;  // one per cotangent (undefined where nothing flows)
  variable_list d_primals;     // one per primal (undefined where not differentiable)
};

namespace detail {
// `t` itself when the graph must reach through it, else a fresh leaf that requires grad.
inline Tensor as_input(const Tensor& t, bool create_graph) {
  if (!t.defined()) return t;
  if (create_graph && t.requires_grad()) return t;
  return t.detach().requires_grad_(at::isFloatingType(t.scalar_type()));
}
}  // namespace detail

// (gradients w.r.t. cotangents, gradients w.r.t. primals) of sum_i <grad_i, gg[i]>, where
// grad_i = d(sum_j <forward(primals)[j], cotangents[j]>)/d(primals[i]). forward returns one
// output per cotangent; differentiable[i] false marks a primal that is not differentiated
// (integer labels, ...); gg has one entry per primal (undefined or ignored where not
// differentiable).
inline VjpOfVjp vjp_of_vjp(const std::function<variable_list(const variable_list&)>& forward,
                           const variable_list& primals, const variable_list& cotangents, const variable_list& gg,
                           const std::vector<bool>& differentiable) {
  const bool create_graph = at::GradMode::is_enabled();
  at::AutoGradMode enable(true);
  variable_list ins, cots;
  for (size_t i = 0; i < primals.size(); ++i) {
    ins.push_back(differentiable[i] ? detail::as_input(primals[i], create_graph) : primals[i]);
  }
  for (const auto& c : cotangents) cots.push_back(detail::as_input(c, create_graph));
  variable_list outs = forward(ins);
  variable_list pair_outs, pair_cots;
  for (size_t j = 0; j < outs.size(); ++j) {
    if (cots[j].defined()) {
      pair_outs.push_back(outs[j]);
      pair_cots.push_back(cots[j].to(outs[j].scalar_type()));
    }
  }
  std::vector<size_t> wrt;
  variable_list wrt_ins;
  for (size_t i = 0; i < primals.size(); ++i) {
    if (differentiable[i]) {
      wrt.push_back(i);
      wrt_ins.push_back(ins[i]);
    }
  }
  variable_list first = torch::autograd::grad(pair_outs, wrt_ins, pair_cots, /*retain_graph=*/std::nullopt,
                                              /*create_graph=*/true, /*allow_unused=*/true);
  variable_list term_f, term_g;
  for (size_t k = 0; k < wrt.size(); ++k) {
    const Tensor& g = gg[wrt[k]];
    if (first[k].defined() && g.defined() && g.sym_numel() != 0) {
      term_f.push_back(first[k]);
      term_g.push_back(g.to(first[k].scalar_type()));
    }
  }
  variable_list targets;
  for (const auto& c : cots) {
    if (c.defined()) targets.push_back(c);
  }
  for (size_t i : wrt) targets.push_back(ins[i]);
  variable_list second(targets.size());
  if (!term_f.empty()) {
    second = torch::autograd::grad(term_f, targets, term_g, /*retain_graph=*/std::nullopt, create_graph,
                                   /*allow_unused=*/true);
  }
  VjpOfVjp result;
  size_t next = 0;
  for (const auto& c : cotangents) {
    Tensor d = c.defined() ? second[next++] : Tensor();
    result.d_cotangents.push_back(d.defined() ? d.to(c.scalar_type()) : d);
  }
  result.d_primals.resize(primals.size());
  for (size_t i : wrt) {
    Tensor d = second[next++];
    result.d_primals[i] = d.defined() ? d.to(primals[i].scalar_type()) : d;
  }
  return result;
}

}  // namespace fastgen::autograd
