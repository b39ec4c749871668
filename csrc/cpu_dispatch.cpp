// Picks the CPU kernels' variant at run time (compiled once, with no vector flags).
//
// Every csrc/<family>.cpp is compiled once per capability (csrc/common/cpu_kernels.h) and
// records its registration function here when the library loads. fastgen/_ext.py then calls
// fastgen::_select_cpu_capability with torch's own capability
// (torch.backends.cpu.get_cpu_capability(), which honours ATEN_CPU_CAPABILITY) or
// FASTGEN_CPU_CAPABILITY, and only that variant's kernels are registered for the CPU key.
// A capability this CPU cannot execute is an error, never an illegal instruction.
#include <torch/library.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/cpu_kernels.h"

namespace fastgen {
namespace {

struct CpuKernelSet {
  std::string capability;
  std::string family;
  RegisterCpuKernels fn;
  int64_t float_vector_width;
};

std::vector<CpuKernelSet>& kernel_sets() {
  static std::vector<CpuKernelSet> sets;  // a function-local static: filled during static init
  return sets;
}

std::mutex selection_mutex;
std::string selected;
int64_t selected_width = 0;
std::unique_ptr<torch::Library> cpu_library;

// The instruction sets each variant is compiled for (fastgen/_build.py), checked on this CPU.
std::string missing_instructions(const std::string& capability) {
  std::string missing;
#if defined(__x86_64__) || defined(_M_X64)
  auto need = [&](bool present, const char* name) {
    if (!present) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  if (capability == "AVX2" || capability == "AVX512") {
    need(__builtin_cpu_supports("avx2"), "avx2");
    need(__builtin_cpu_supports("fma"), "fma");
  }
  if (capability == "AVX512") {
    need(__builtin_cpu_supports("avx512f"), "avx512f");
    need(__builtin_cpu_supports("avx512dq"), "avx512dq");
    need(__builtin_cpu_supports("avx512vl"), "avx512vl");
    need(__builtin_cpu_supports("avx512bw"), "avx512bw");
  }
#endif
  return missing;
}

// The variants this build holds, in the order they were recorded (fastgen._cpu_capabilities).
std::vector<std::string> compiled_capabilities() {
  std::vector<std::string> out;
  for (const auto& set : kernel_sets()) {
    bool seen = false;
    for (const auto& c : out) seen = seen || c == set.capability;
    if (!seen) out.push_back(set.capability);
  }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

std::string select_cpu_capability(std::string capability) {
  for (auto& ch : capability) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  std::lock_guard<std::mutex> lock(selection_mutex);
  if (!selected.empty()) {
    TORCH_CHECK_VALUE(capability == selected, "fastgen._select_cpu_capability: the ", selected,
                      " kernels are already registered in this process; capability ", capability,
                      " cannot replace them (set FASTGEN_CPU_CAPABILITY before importing fastgen)");
    return selected;
  }
  const auto compiled = compiled_capabilities();
  bool known = false;
  for (const auto& c : compiled) known = known || c == capability;
  TORCH_CHECK_VALUE(known, "fastgen._select_cpu_capability: capability must be one of ", join(compiled),
                    " (the variants this build holds), got ", capability);
  const auto missing = missing_instructions(capability);
  TORCH_CHECK_VALUE(missing.empty(), "fastgen._select_cpu_capability: this CPU cannot run the ", capability,
                    " kernels (it lacks ", missing, "); choose one of ", join(compiled), " that it supports");
  cpu_library = std::make_unique<torch::Library>(torch::Library::IMPL, "fastgen", c10::DispatchKey::CPU, __FILE__,
                                                 __LINE__);
  for (const auto& set : kernel_sets()) {
    if (set.capability != capability) continue;
    set.fn(*cpu_library);
    selected_width = set.float_vector_width;
  }
  selected = capability;
  return selected;
}

std::string cpu_capability() {
  std::lock_guard<std::mutex> lock(selection_mutex);
  return selected;
}

int64_t float_vector_width() {
  std::lock_guard<std::mutex> lock(selection_mutex);
  return selected_width;
}

}  // namespace

bool add_cpu_kernels(const char* capability, const char* family, RegisterCpuKernels fn, int64_t float_vector_width) {
  kernel_sets().push_back({capability, family, fn, float_vector_width});
  return true;
}

TORCH_LIBRARY_FRAGMENT(fastgen, m) {
  // Which CPU variant is registered: called once by fastgen/_ext.py at import.
  m.def("_select_cpu_capability(str capability) -> str", &select_cpu_capability);
  m.def("_cpu_capability() -> str", &cpu_capability);
  m.def("_cpu_capabilities() -> str[]", &compiled_capabilities);
  m.def("_float_vector_width() -> int", &float_vector_width);
}

}  // namespace fastgen
