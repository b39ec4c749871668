// Per-capability CPU kernels, as ATen's DispatchStub builds them: every csrc/<family>.cpp is
// compiled once per CPU capability (DEFAULT, AVX2, AVX512; fastgen/_build.py), each time with
// CPU_CAPABILITY naming that variant. A family ends with
//
//   FASTGEN_REGISTER_CPU_KERNELS(family, m) { m.impl("op", &op_cpu); ... }
//
// which defines fastgen::<CPU_CAPABILITY>::register_cpu_kernels_<family> and records it at load
// time; csrc/cpu_dispatch.cpp then registers the one variant that matches torch's capability.
// Shared helpers in csrc/common/ sit in `inline namespace CPU_CAPABILITY` so each variant has
// its own copy (one copy of an AVX-512-compiled helper would otherwise serve every variant).
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <cstdint>

#define FASTGEN_STRINGIFY_(x) #x
#define FASTGEN_STRINGIFY(x) FASTGEN_STRINGIFY_(x)

namespace fastgen {

using RegisterCpuKernels = void (*)(torch::Library&);

// Defined in csrc/cpu_dispatch.cpp (compiled once).
bool add_cpu_kernels(const char* capability, const char* family, RegisterCpuKernels fn, int64_t float_vector_width);

}  // namespace fastgen

#define FASTGEN_REGISTER_CPU_KERNELS(family, m)                                                                        \
  namespace CPU_CAPABILITY {                                                                                           \
  void register_cpu_kernels_##family(torch::Library&);                                                                 \
  static const bool cpu_kernels_##family##_recorded = ::fastgen::add_cpu_kernels(                                      \
      FASTGEN_STRINGIFY(CPU_CAPABILITY), #family, &register_cpu_kernels_##family, at::vec::Vectorized<float>::size()); \
  }                                                                                                                    \
  void CPU_CAPABILITY::register_cpu_kernels_##family(torch::Library& m)
