// Every fastgen op schema, in one place. Kernels live in one file per op family
// (TORCH_LIBRARY_IMPL(fastgen, CPU, m)); fake impls, autograd and the CUDA (Triton)
// kernels are registered from Python in fastgen/ops/<family>.py.
#include <Python.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <string>

// CPU_CAPABILITY (AVX512, AVX2 or DEFAULT) is set by fastgen/_build.py.
#define FASTGEN_STRINGIFY_(x) #x
#define FASTGEN_STRINGIFY(x) FASTGEN_STRINGIFY_(x)

namespace fastgen {
namespace {

// What this binary was compiled for, reported by fastgen.build_info().
int64_t float_vector_width() { return at::vec::Vectorized<float>::size(); }
std::string cpu_capability() { return FASTGEN_STRINGIFY(CPU_CAPABILITY); }
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

  // --- Image-to-image: PixelShuffle (+PReLU) (csrc/pixel_shuffle.cpp) ---------------------

  // --- GAN training core: gradient penalty and friends (csrc/grad_penalty.cpp) ------------

  // --- Face recognition: margin cross-entropy (csrc/margin_softmax.cpp) -------------------

  // --- build information ---------------------------------------------------------------
  m.def("_float_vector_width() -> int", &float_vector_width);
  m.def("_cpu_capability() -> str", &cpu_capability);
  m.def("_openmp_enabled() -> bool", &openmp_enabled);
  m.def("_num_threads() -> int", &num_threads);
}

}  // namespace fastgen

// fastgen._C is imported as a Python module for its side effect of registering the ops.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
