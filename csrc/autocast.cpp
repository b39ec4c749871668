// fastgen's ops under torch.autocast (CPU and CUDA); compiled once, no kernels here.
//
// An autocast region hands a fused op tensors of two dtypes: a bfloat16 activation from a
// convolution beside a float32 input, parameter or target. Outside autocast the ops require one
// dtype (a clear error, as torch's fused ops do); inside, these kernels first bring the tensors
// that must agree to one dtype, as eager PyTorch's type promotion would for the elementwise math
// each op fuses, then run the op with autocast excluded. Instance norm keeps float32 parameters
// beside a lower-precision input (as torch's norms do), so only its input and residual agree;
// PReLU runs in its input's dtype, as torch's autocast runs prelu in the lower precision.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <c10/core/DispatchKeySet.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace fastgen {
namespace {

enum class Policy { Promote, FollowFirst };

struct Agreement {
  Policy policy;
  std::vector<std::string> arguments;  // floating-point tensors that must share a dtype
};

const std::unordered_map<std::string, Agreement>& agreements() {
  static const std::unordered_map<std::string, Agreement> table = {
      {"fastgen::reparam_kl", {Policy::Promote, {"mu", "logvar", "eps"}}},
      {"fastgen::kl_normal", {Policy::Promote, {"mu", "logvar"}}},
      {"fastgen::affine_coupling", {Policy::Promote, {"x", "s", "t", "scale"}}},
      {"fastgen::instance_norm", {Policy::Promote, {"input", "residual"}}},
      {"fastgen::pixel_shuffle_prelu", {Policy::FollowFirst, {"self", "weight"}}},
      {"fastgen::interpolate", {Policy::Promote, {"real", "fake", "alpha"}}},
      {"fastgen::margin_softmax", {Policy::Promote, {"embeddings", "weight"}}},
      {"fastgen::triplet_margin_loss", {Policy::Promote, {"anchor", "positive", "negative"}}},
      {"fastgen::contrastive_loss", {Policy::Promote, {"x1", "x2", "y"}}},
  };
  return table;
}

void agree_then_run(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const auto& schema = op.schema();
  const auto& agreement = agreements().at(schema.operator_name().name);
  const auto first = stack->size() - schema.arguments().size();
  std::vector<size_t> slots;
  for (const auto& name : agreement.arguments) {
    const auto index = schema.argumentIndexWithName(name);
    TORCH_INTERNAL_ASSERT(index.has_value(), schema.name(), " has no argument ", name);
    const auto& value = (*stack)[first + *index];
    if (value.isTensor() && value.toTensor().defined() && value.toTensor().is_floating_point()) {
      slots.push_back(first + *index);
    }
  }
  if (!slots.empty()) {
    auto dtype = (*stack)[slots[0]].toTensor().scalar_type();
    if (agreement.policy == Policy::Promote) {
      for (auto slot : slots) dtype = c10::promoteTypes(dtype, (*stack)[slot].toTensor().scalar_type());
    }
    for (auto slot : slots) (*stack)[slot] = (*stack)[slot].toTensor().to(dtype);
  }
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  op.callBoxed(stack);
}

void register_autocast_kernels(torch::Library& m) {
  for (const auto& entry : agreements()) {
    const auto op = entry.first.substr(std::string("fastgen::").size());
    m.impl(op.c_str(), torch::CppFunction::makeFromBoxedFunction<&agree_then_run>());
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(fastgen, AutocastCPU, m) { register_autocast_kernels(m); }
TORCH_LIBRARY_IMPL(fastgen, AutocastCUDA, m) { register_autocast_kernels(m); }

}  // namespace fastgen
