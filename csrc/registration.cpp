// Every fastgen op schema, in one place. CPU kernels live in one file per op family
// (FASTGEN_REGISTER_CPU_KERNELS, one variant per CPU capability: csrc/cpu_dispatch.cpp); fake impls, autograd and the
// CUDA (Triton) kernels are registered from Python in fastgen/ops/<family>.py.
#include <Python.h>

#include <ATen/Parallel.h>
#include <torch/library.h>

namespace fastgen {
namespace {

// What this binary can do, reported by fastgen.build_info() (the CPU capability in use and its
// vector width come from csrc/cpu_dispatch.cpp).
bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}
int64_t num_threads() { return at::get_num_threads(); }

}  // namespace

TORCH_LIBRARY(fastgen, m) {
  // Each family's fake impls and autograd live in fastgen/ops/<family>.py; set_python_module
  // names that module for the defs that follow it.

  // --- VAE: reparameterized sampling + KL (csrc/reparam_kl.cpp) --------------------------
  m.set_python_module("fastgen.ops.reparam_kl");
  // seed: one-element int64 tensor drawn from torch's generator; used when eps is None.
  m.def("reparam_kl(Tensor mu, Tensor logvar, Tensor? eps, Tensor? seed, str reduction)"
        " -> (Tensor z, Tensor kl)");
  m.def("kl_normal(Tensor mu, Tensor logvar, str reduction) -> Tensor");
  // grad_z or grad_kl may be None (that output did not reach the loss). grad_eps is an
  // empty tensor unless eps_grad.
  m.def("reparam_kl_backward(Tensor? grad_z, Tensor? grad_kl, Tensor mu, Tensor logvar,"
        " Tensor? eps, Tensor? seed, str reduction, bool eps_grad)"
        " -> (Tensor grad_mu, Tensor grad_logvar, Tensor grad_eps)");

  // --- RealNVP: affine coupling with log-det (csrc/coupling.cpp) --------------------------
  m.set_python_module("fastgen.ops.coupling");
  // y = x_b * exp(s) + t on the transformed part (inverse: (x_b - t) * exp(-s)), identity
  // elsewhere; logdet (B,) = +-sum(s) in float32 (float64 for float64). mask: "channel" |
  // "checkerboard"; scale (broadcast to s), when given, makes s_eff = scale * tanh(s).
  m.def("affine_coupling(Tensor x, Tensor s, Tensor t, Tensor? scale, str mask, int mask_parity,"
        " bool inverse) -> (Tensor y, Tensor logdet)");
  // x is the untransformed side: the forward's input when inverse=False, its output when
  // inverse=True. grad_output / grad_logdet may be None. output_mask says which of grad_input,
  // grad_s, grad_t, grad_scale to compute; the others (and grad_scale without scale) are empty.
  m.def("affine_coupling_backward(Tensor? grad_output, Tensor? grad_logdet, Tensor x, Tensor s,"
        " Tensor? scale, str mask, int mask_parity, bool inverse, bool[4] output_mask)"
        " -> (Tensor grad_input, Tensor grad_s, Tensor grad_t, Tensor grad_scale)");

  // --- Image-to-image: instance norm (csrc/instance_norm.cpp) -----------------------------
  m.set_python_module("fastgen.ops.instance_norm");
  // out = act((x - mean) * rstd * weight + bias) + residual per (sample, channel), with
  // activation "none" | "relu" | "leaky_relu". use_input_stats: the statistics of x (returned
  // as mean and the biased var, (N, C) in float32, float64 for float64 inputs); otherwise
  // running_mean/running_var are used (and returned broadcast to (N, C)). The running stats
  // are updated by fastgen.functional from the returned mean and var.
  m.def("instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean,"
        " Tensor? running_var, Tensor? residual, bool use_input_stats, float eps, str activation,"
        " float negative_slope) -> (Tensor out, Tensor mean, Tensor var)");
  // Gradients of input, weight and bias (output_mask picks them; the others come back as
  // empty tensors). The residual's gradient is grad_out itself.
  m.def("instance_norm_backward(Tensor grad_out, Tensor input, Tensor? weight, Tensor? bias,"
        " Tensor mean, Tensor var, bool use_input_stats, float eps, str activation,"
        " float negative_slope, bool[3] output_mask)"
        " -> (Tensor grad_input, Tensor grad_weight, Tensor grad_bias)");

  // --- Image-to-image: PixelShuffle (+PReLU) (csrc/pixel_shuffle.cpp) ---------------------
  m.set_python_module("fastgen.ops.pixel_shuffle");
  // (*, C*r*r, H, W) <-> (*, C, H*r, W*r); 4-D channels_last inputs give channels_last outputs.
  m.def("pixel_shuffle(Tensor self, int upscale_factor) -> Tensor");
  m.def("pixel_unshuffle(Tensor self, int downscale_factor) -> Tensor");
  // PReLU (weight: 1 or C elements) applied to the shuffled output, in the same pass.
  m.def("pixel_shuffle_prelu(Tensor self, Tensor weight, int upscale_factor) -> Tensor");
  // Gradients the flags ask for; an unrequested one is an empty (0,) tensor.
  m.def("pixel_shuffle_prelu_backward(Tensor grad_output, Tensor self, Tensor weight,"
        " int upscale_factor, bool input_grad, bool weight_grad)"
        " -> (Tensor grad_input, Tensor grad_weight)");

  // --- GAN training core: gradient penalty and friends (csrc/grad_penalty.cpp) ------------
  m.set_python_module("fastgen.ops.grad_penalty");
  // x_hat = alpha * real + (1 - alpha) * fake, alpha: (B,) in real's dtype.
  m.def("interpolate(Tensor real, Tensor fake, Tensor alpha) -> Tensor");
  // Outputs not in output_mask are empty; real and fake are needed only for grad_alpha.
  m.def("interpolate_backward(Tensor grad, Tensor? real, Tensor? fake, Tensor alpha, bool[3] output_mask)"
        " -> (Tensor grad_real, Tensor grad_fake, Tensor grad_alpha)");
  // penalty = weight * mean_b(h(norms - target)^2), norms[b] = sqrt(sum g[b]^2 + 1e-12) in float32
  // (float64 for float64 grads); h clips at 0 when one_sided; target 0 penalizes sum g^2 (R1).
  // with_grad: d_grads = d(penalty)/d(grads) for an upstream gradient of 1, computed in the same
  // pass (backward then returns it as is); an empty tensor otherwise. Not differentiable.
  m.def("grad_penalty(Tensor grads, float target, float weight, bool one_sided, bool with_grad)"
        " -> (Tensor penalty, Tensor norms, Tensor d_grads)");
  m.def("grad_penalty_backward(Tensor? grad_penalty, Tensor? grad_norms, Tensor grads, Tensor norms,"
        " float target, float weight, bool one_sided) -> Tensor");
  // Progressive GAN pixel norm (csrc/pixel_norm.cpp): x * rsqrt(mean over dim 1 of x^2 + eps).
  m.set_python_module("fastgen.ops.pixel_norm");
  m.def("pixel_norm(Tensor x, float eps) -> Tensor");
  m.def("pixel_norm_backward(Tensor grad, Tensor x, float eps) -> Tensor");

  // --- Face recognition: margin cross-entropy (csrc/margin_softmax.cpp) -------------------
  m.set_python_module("fastgen.ops.margin_softmax");
  // Per row: log-sum-exp of the margin logits over the weight's classes, the target logit and
  // the target cosine (0 for ignored rows and for targets outside [class_start, class_start + C)).
  // straight_through: InsightFace's current rule (no fallback past pi, the margin a constant in backward).
  m.def("margin_softmax(Tensor embeddings, Tensor weight, Tensor labels, int class_start, int num_classes,"
        " float s, float m1, float m2, float m3, bool easy_margin, int ignore_index, bool straight_through=False)"
        " -> (Tensor lse, Tensor target_logit, Tensor target_cos)");
  // grad_lse / grad_target may be None; a gradient not in output_mask is an empty tensor.
  m.def("margin_softmax_backward(Tensor? grad_lse, Tensor? grad_target, Tensor embeddings, Tensor weight,"
        " Tensor labels, Tensor lse, Tensor target_cos, int class_start, int num_classes, float s, float m1,"
        " float m2, float m3, bool easy_margin, int ignore_index, bool[2] output_mask, bool straight_through=False)"
        " -> (Tensor grad_embeddings, Tensor grad_weight)");
  // Siamese losses (csrc/triplet.cpp): inputs (B, D); the backward ops take the gradient of the
  // (reduced) loss.
  m.set_python_module("fastgen.ops.triplet");
  m.def("triplet_margin_loss(Tensor anchor, Tensor positive, Tensor negative, float margin, float p, float eps,"
        " bool swap, str reduction) -> Tensor");
  m.def("triplet_margin_loss_backward(Tensor grad, Tensor anchor, Tensor positive, Tensor negative, float margin,"
        " float p, float eps, bool swap, str reduction)"
        " -> (Tensor grad_anchor, Tensor grad_positive, Tensor grad_negative)");
  m.def("contrastive_loss(Tensor x1, Tensor x2, Tensor y, float margin, float eps, str reduction) -> Tensor");
  // grad_y is an empty tensor unless y_grad (y floating-point).
  m.def("contrastive_loss_backward(Tensor grad, Tensor x1, Tensor x2, Tensor y, float margin, float eps,"
        " str reduction, bool y_grad) -> (Tensor grad_x1, Tensor grad_x2, Tensor grad_y)");
  // positive / negative: each anchor's hardest positive and negative row (-1: none).
  m.def("batch_hard_triplet_loss(Tensor embeddings, Tensor labels, float margin, bool squared, str reduction)"
        " -> (Tensor loss, Tensor positive, Tensor negative)");
  m.def("batch_hard_triplet_loss_backward(Tensor grad, Tensor embeddings, Tensor positive, Tensor negative,"
        " float margin, bool squared, str reduction) -> Tensor");

  // --- build information ---------------------------------------------------------------
  m.def("_openmp_enabled() -> bool", &openmp_enabled);
  m.def("_num_threads() -> int", &num_threads);
}

}  // namespace fastgen

// fastgen._C is imported as a Python module for its side effect of registering the ops.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
