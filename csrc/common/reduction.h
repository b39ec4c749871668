// The `reduction` argument shared by fastgen's loss-like ops: "none" | "mean" | "sum",
// with torch's meaning (mean of an empty batch is NaN, sum of an empty batch is 0).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/scalar_tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace fastgen {
inline namespace CPU_CAPABILITY {  // one copy per variant: csrc/common/cpu_kernels.h

enum class Reduction { None, Mean, Sum };

inline Reduction parse_reduction(c10::string_view reduction, const char* op) {
  if (reduction == "none") return Reduction::None;
  if (reduction == "mean") return Reduction::Mean;
  if (reduction == "sum") return Reduction::Sum;
  TORCH_CHECK_VALUE(false, "fastgen.", op, ": reduction must be 'none', 'mean' or 'sum', got '", std::string(reduction),
                    "'");
}

// Reduces per-row values (already in the op's accumulation type) over the batch.
// Accumulates in double: B is small, and the batch sum should not lose what the rows kept.
template <typename acc_t>
double reduce_rows(const std::vector<acc_t>& rows, Reduction reduction) {
  double total = 0.0;
  for (const acc_t v : rows) total += static_cast<double>(v);
  if (reduction == Reduction::Mean) {
    return rows.empty() ? std::numeric_limits<double>::quiet_NaN() : total / static_cast<double>(rows.size());
  }
  return total;
}

// A reduced loss (computed in double) as a 0-d tensor of `options`' dtype, rounded as a tensor
// cast rounds: beyond the dtype's range it is inf, as eager's reduction gives (at::scalar_tensor
// refuses to narrow an out-of-range double and raises).
inline at::Tensor scalar_result(double value, const at::TensorOptions& options) {
  return at::scalar_tensor(value, options.dtype(at::kDouble)).to(options.dtype());
}

}  // namespace CPU_CAPABILITY
}  // namespace fastgen
