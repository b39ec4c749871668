// Helpers for ops that work on a batch as B rows of N = numel / B elements each:
// elementwise maps with a per-row reduction (KL per sample, log-det per sample, norms).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <vector>

namespace fastgen {
inline namespace CPU_CAPABILITY {  // one copy per variant: csrc/common/cpu_kernels.h

// True when the elements of `t` fill one dense block in which every batch entry (dim 0) is
// a contiguous run of numel / size(0) elements, in any order inside the run: contiguous,
// channels_last and other permutations of the non-batch dims all qualify. Row kernels can
// then walk memory linearly and write outputs with empty_like(t), keeping t's layout.
inline bool is_batch_major_dense(const at::Tensor& t) {
  if (!t.is_non_overlapping_and_dense()) return false;
  const int64_t batch = t.size(0);
  if (batch <= 1) return true;
  return t.stride(0) == t.numel() / batch;
}

// `t` laid out exactly like `like` (a batch-major dense tensor of the same shape): `t` itself
// when the strides already agree, otherwise a copy. Lets every operand be walked with one index.
inline at::Tensor in_layout_of(const at::Tensor& t, const at::Tensor& like) {
  if (t.strides() == like.strides()) return t;
  return at::empty_like(like).copy_(t);
}

// Rows are processed in chunks of at most kRowChunk elements; chunk starts are multiples of
// kRowChunk (a multiple of 64, so vector loops and Philox counter groups stay aligned).
constexpr int64_t kRowChunk = 16384;
// Work below this many elements is not worth waking another thread for.
constexpr int64_t kParallelGrainElements = 32768;

// Runs fn(row, begin, end) -> acc_t over every chunk of every row in parallel and returns
// the per-row sums of what fn returned. Chunk partials are added in a fixed order, so the
// result does not depend on the number of threads.
template <typename acc_t, typename Fn>
std::vector<acc_t> parallel_rows(int64_t rows, int64_t cols, const Fn& fn) {
  std::vector<acc_t> row_totals(static_cast<size_t>(rows), acc_t(0));
  if (rows == 0 || cols == 0) return row_totals;
  const int64_t chunks_per_row = (cols + kRowChunk - 1) / kRowChunk;
  const int64_t chunk_len = std::min(cols, kRowChunk);
  const int64_t tasks = rows * chunks_per_row;
  std::vector<acc_t> partials(static_cast<size_t>(tasks), acc_t(0));
  const int64_t grain = std::max<int64_t>(1, kParallelGrainElements / chunk_len);
  at::parallel_for(0, tasks, grain, [&](int64_t first, int64_t last) {
    for (int64_t task = first; task < last; ++task) {
      const int64_t row = task / chunks_per_row;
      const int64_t begin = (task % chunks_per_row) * kRowChunk;
      const int64_t end = std::min(cols, begin + kRowChunk);
      partials[task] = fn(row, begin, end);
    }
  });
  for (const auto row : c10::irange(rows)) {
    acc_t total(0);
    for (const auto c : c10::irange(chunks_per_row)) total += partials[row * chunks_per_row + c];
    row_totals[row] = total;
  }
  return row_totals;
}

}  // namespace CPU_CAPABILITY
}  // namespace fastgen
