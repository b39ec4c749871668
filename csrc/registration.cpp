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

  // --- Image-to-image: instance norm (csrc/instance_norm.cpp) -----------------------------

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
