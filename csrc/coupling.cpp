// RealNVP affine coupling (Dinh et al.) with its log-determinant, forward and inverse.
//
//   forward:  y_b = x_b * exp(s) + t         logdet[b] =  sum(s) over the transformed part
//   inverse:  x_b = (y_b - t) * exp(-s)      logdet[b] = -sum(s)
//   identity on the conditioning part; with `scale`, s is replaced by scale * tanh(s).
//
// mask "channel": x is (B, C, ...) or (B, D), halves split on dim 1 (mask_parity 0 transforms
// the second half, 1 the first); s, t have the shape of one half.
// mask "checkerboard": x is (B, C, H, W), the transformed elements are those with
// (h + w) % 2 != mask_parity; s, t have the shape of x and are ignored elsewhere.
//
// One pass forward, one pass backward. A row (dim 0) of every tensor is walked in the memory
// order of x's row ("row order": contiguous, channels_last, any dense permutation). s and t are
// read in place whenever their rows are laid out in that order, whatever their batch stride, so
// the two halves of a conditioner's output (st.chunk(2, 1)) are never copied. No mask tensor
// exists: a row is a sequence of segments (one half of a channel block, or one line of the
// checkerboard) and the checkerboard's alternation inside a line is a vector lane mask.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "common/cpu_kernels.h"
#include "common/vec_io.h"
#include "common/vec_math.h"

namespace fastgen {
namespace {

enum class Mask { Channel, Checkerboard };

Mask parse_mask(c10::string_view mask, const char* op) {
  if (mask == "channel") return Mask::Channel;
  if (mask == "checkerboard") return Mask::Checkerboard;
  TORCH_CHECK_VALUE(false, "fastgen.", op, ": mask must be 'channel' or 'checkerboard', got '", std::string(mask), "'");
}

// ------------------------------------------------------------------------------ checks

void check_same(const at::Tensor& t, const at::Tensor& x, const char* op, const char* name) {
  checks::same_dtype(op, name, t, "x", x);
  checks::same_device(op, "x", x, {{name, t}});
}

// The shape s and t must have.
std::vector<int64_t> s_shape(const at::Tensor& x, Mask mask) {
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  if (mask == Mask::Channel) shape[1] /= 2;
  return shape;
}

void check_x(const at::Tensor& x, Mask mask, int64_t parity, const char* op) {
  checks::floating(op, "x", x);
  checks::same_device(op, "x", x, {});
  if (mask == Mask::Channel) {
    TORCH_CHECK_VALUE(x.dim() >= 2, "fastgen.", op, ": x must be (B, C, ...) or (B, D) for mask='channel', got shape ",
                      x.sizes());
    TORCH_CHECK_VALUE(x.size(1) % 2 == 0, "fastgen.", op,
                      ": x must have an even number of channels (dim 1) for mask='channel', got ", x.size(1));
  } else {
    TORCH_CHECK_VALUE(x.dim() == 4, "fastgen.", op, ": x must be 4-D (B, C, H, W) for mask='checkerboard', got shape ",
                      x.sizes());
  }
  TORCH_CHECK_VALUE(parity == 0 || parity == 1, "fastgen.", op, ": mask_parity must be 0 or 1, got ", parity);
}

void check_s_like(const at::Tensor& t, const at::Tensor& x, Mask mask, const char* op, const char* name) {
  const auto want = s_shape(x, mask);
  TORCH_CHECK_VALUE(t.sizes() == at::IntArrayRef(want), "fastgen.", op, ": ", name, " must have shape ",
                    at::IntArrayRef(want), " (", mask == Mask::Channel ? "one half of x" : "the shape of x", "), got ",
                    t.sizes());
  check_same(t, x, op, name);
}

void check_scale(const at::Tensor& scale, const at::Tensor& s, const at::Tensor& x, const char* op) {
  check_same(scale, x, op, "scale");
  bool ok = scale.dim() <= s.dim();
  for (int64_t i = 1; ok && i <= scale.dim(); ++i) {
    const int64_t a = scale.size(-i), b = s.size(-i);
    ok = a == 1 || a == b;
  }
  TORCH_CHECK_VALUE(ok, "fastgen.", op, ": scale must broadcast to the shape of s ", s.sizes(), ", got shape ",
                    scale.sizes());
}

// ------------------------------------------------------------------------------ layouts

// Dims 1..n-1 of t from outermost to innermost in memory (ties keep dim order) when each row
// t[b] is one dense block; otherwise the natural order 1..n-1. Mirrored in fastgen/ops/coupling.py.
std::vector<int64_t> row_order(const at::Tensor& t) {
  std::vector<int64_t> dims(t.dim() - 1);
  std::iota(dims.begin(), dims.end(), 1);
  std::vector<int64_t> order = dims;
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return t.stride(a) > t.stride(b); });
  int64_t expected = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    if (t.size(*it) == 1) continue;
    if (t.stride(*it) != expected) return dims;
    expected *= t.size(*it);
  }
  return order;
}

// Strides of a tensor of `sizes` whose rows are dense in `order`, packed one after another.
std::vector<int64_t> row_strides(at::IntArrayRef sizes, const std::vector<int64_t>& order) {
  std::vector<int64_t> strides(sizes.size());
  int64_t step = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    strides[*it] = step;
    step *= sizes[*it];
  }
  strides[0] = step;
  return strides;
}

// t itself when every row of t is laid out as `strides` says (the batch stride may be anything:
// these tensors are only read), else a copy with exactly those strides.
at::Tensor with_rows(const at::Tensor& t, const std::vector<int64_t>& strides) {
  bool match = true;
  for (int64_t d = 1; d < t.dim() && t.numel() != 0; ++d) {
    if (t.size(d) != 1 && t.stride(d) != strides[d]) match = false;
  }
  if (match) return t;
  return at::empty_strided(t.sizes(), strides, t.options()).copy_(t);
}

struct Layout {
  std::vector<int64_t> order;      // row order of x
  std::vector<int64_t> x_strides;  // x and every x-shaped output
  std::vector<int64_t> s_strides;  // s, t and their gradients
};

Layout layout_for(const at::Tensor& x, Mask mask) {
  Layout l;
  l.order = row_order(x);
  l.x_strides = row_strides(x.sizes(), l.order);
  l.s_strides = row_strides(s_shape(x, mask), l.order);
  return l;
}

// How one row of x maps to segments (see walk_row).
struct Plan {
  bool checkerboard = false;
  int64_t cols = 0;    // elements in a row of x
  int64_t s_cols = 0;  // elements in a row of s
  // channel: a row is blocks of C * inner elements (inner: the dims after C in row order);
  // the conditioning and transformed halves of a block are `half` elements each.
  int64_t block = 0, half = 0, tr_begin = 0;
  // checkerboard: a row is n0 x n1 x n2 in row order; lines of n2 elements.
  int64_t n1 = 1, n2 = 1;
  bool sp0 = false, sp1 = false, sp2 = false;  // which of those dims are spatial (H or W)
  int64_t parity = 0;
};

Plan make_plan(const at::Tensor& x, const Layout& l, Mask mask, int64_t parity) {
  Plan p;
  p.parity = parity;
  p.cols = 1;
  for (int64_t d = 1; d < x.dim(); ++d) p.cols *= x.size(d);
  if (mask == Mask::Channel) {
    const auto at_c = std::find(l.order.begin(), l.order.end(), int64_t(1));
    int64_t inner = 1;
    for (auto it = at_c + 1; it != l.order.end(); ++it) inner *= x.size(*it);
    p.block = x.size(1) * inner;
    p.half = p.block / 2;
    p.tr_begin = parity == 0 ? p.half : 0;
    p.s_cols = p.cols / 2;
  } else {
    p.checkerboard = true;
    p.n1 = x.size(l.order[1]);
    p.n2 = x.size(l.order[2]);
    p.sp0 = l.order[0] != 1;
    p.sp1 = l.order[1] != 1;
    p.sp2 = l.order[2] != 1;
    p.s_cols = p.cols;
  }
  return p;
}

// Segment kinds: copied through, transformed entirely, or transformed on the even (odd)
// elements counted from the segment's start.
enum Kind : int { kCopy = 0, kAll = 1, kEven = 2, kOdd = 3 };

// Calls seg(x_offset, s_offset, length, kind) for every segment of a row, in memory order.
template <typename Fn>
void walk_row(const Plan& p, const Fn& seg) {
  if (!p.checkerboard) {
    for (int64_t base = 0, o = 0; base < p.cols; base += p.block, ++o) {
      seg(base + (p.tr_begin == 0 ? p.half : 0), int64_t(-1), p.half, kCopy);
      seg(base + p.tr_begin, o * p.half, p.half, kAll);
    }
    return;
  }
  if (p.n2 == 0) return;
  const int64_t lines = p.cols / p.n2;
  for (int64_t line = 0; line < lines; ++line) {
    const int64_t i0 = line / p.n1, i1 = line - i0 * p.n1;
    // (h + w) of the line's first element; along a spatial line it alternates.
    const int64_t coord = (p.sp0 ? i0 : 0) + (p.sp1 ? i1 : 0);
    const bool first_on = (coord & 1) != p.parity;
    const int kind = p.sp2 ? (first_on ? kEven : kOdd) : (first_on ? kAll : kCopy);
    seg(line * p.n2, line * p.n2, p.n2, kind);
  }
}

// Rows are processed in slabs of whole rows, at least kSlabElements per slab; a row's sums are
// formed by one thread in a fixed order, so results do not depend on the number of threads.
constexpr int64_t kSlabElements = 32768;

int64_t rows_per_slab(int64_t cols) { return std::max<int64_t>(1, kSlabElements / std::max<int64_t>(cols, 1)); }

template <typename Fn>
void parallel_slabs(int64_t rows, int64_t cols, const Fn& fn) {
  const int64_t per = rows_per_slab(cols);
  const int64_t slabs = (rows + per - 1) / per;
  at::parallel_for(0, slabs, 1, [&](int64_t first, int64_t last) {
    for (int64_t slab = first; slab < last; ++slab) fn(slab, slab * per, std::min(rows, (slab + 1) * per));
  });
}

// ------------------------------------------------------------------------------ kernels

template <typename scalar_t>
struct Operands {
  using opmath_t = at::opmath_type<scalar_t>;
  const scalar_t* x = nullptr;  // forward: the input; backward: the x side (see the schema)
  const scalar_t* s = nullptr;
  const scalar_t* t = nullptr;
  const scalar_t* g = nullptr;       // backward: grad_output, or null
  const opmath_t* gl = nullptr;      // backward: grad_logdet per row, or null
  const opmath_t* scale = nullptr;   // the scale in s's row layout (opmath), or null
  scalar_t* y = nullptr;             // forward output / backward grad_input
  scalar_t* gs = nullptr;
  scalar_t* gt = nullptr;
  opmath_t* gscale = nullptr;        // backward: grad_scale accumulators (one row of s each)
  opmath_t* logdet = nullptr;
  int64_t x_rs = 0, s_rs = 0, t_rs = 0, g_rs = 0, scale_rs = 0;  // row strides (elements)
  bool gscale_per_row = false;       // accumulate per row (scale varies along the batch) or per slab
};

template <typename scalar_t, bool kInverse, bool kScale>
struct Kernel {
  using IO = VecIO<scalar_t>;
  using Vec = typename IO::Vec;
  using opmath_t = typename IO::opmath_t;
  static constexpr int64_t W = IO::size();

  // All bits set on the lanes a segment kind transforms.
  struct Lanes {
    Vec masks[4];
    Lanes() {
      using bits_t = std::conditional_t<sizeof(opmath_t) == 4, uint32_t, uint64_t>;
      alignas(64) bits_t even[W], odd[W];
      for (int64_t i = 0; i < W; ++i) {
        even[i] = i % 2 == 0 ? ~bits_t(0) : bits_t(0);
        odd[i] = ~even[i];
      }
      masks[kEven] = Vec::loadu(even);
      masks[kOdd] = Vec::loadu(odd);
      masks[kAll] = masks[kEven] | masks[kOdd];
      masks[kCopy] = Vec(0);
    }
  };

  static Vec load_scale(const opmath_t* scale, int64_t n) { return Vec::loadu(scale, n); }

  // One transformed segment of the forward; returns acc + the effective s of its lanes.
  static Vec forward_segment(const scalar_t* x, const scalar_t* s, const scalar_t* t, const opmath_t* scale,
                             scalar_t* y, int64_t len, const Vec& lanes, Vec acc) {
    for (int64_t i = 0; i < len; i += W) {
      const int64_t n = std::min(W, len - i);
      Vec sv = IO::load(s + i, n);
      if constexpr (kScale) sv = load_scale(scale + i, n) * vec_math::tanh(sv);
      sv = sv & lanes;  // 0 on the conditioning lanes (and past n): exp(0) = 1 leaves x as it is
      const Vec tv = IO::load(t + i, n) & lanes;
      const Vec xv = IO::load(x + i, n);
      if constexpr (kInverse) {
        IO::store(y + i, (xv - tv) * vec_math::exp(sv.neg()), n);
      } else {
        IO::store(y + i, at::vec::fmadd(xv, vec_math::exp(sv), tv), n);
      }
      acc = acc + sv;
    }
    return acc;
  }

  // One transformed segment of the backward. With e = exp(+-s_eff), gl = d loss / d logdet[row]:
  //   forward:  grad_x = g e, grad_t = g,      d s_eff = g x e + gl
  //   inverse:  grad_y = g e, grad_t = -g e,   d s_eff = -(g x + gl)   (x: the inverse's output)
  //   grad_s = d s_eff * scale * (1 - tanh(s)^2), grad_scale += d s_eff * tanh(s)  (with scale)
  static void backward_segment(const Operands<scalar_t>& p, int64_t row_x, int64_t row_s, int64_t row_g,
                               int64_t row_out, int64_t row_sout, const opmath_t* scale, opmath_t* gscale, int64_t xo,
                               int64_t so, int64_t len, const Vec& lanes, const Vec& gl) {
    const scalar_t* s = p.s + row_s + so;
    const scalar_t* x = p.x + row_x + xo;
    const scalar_t* g = p.g ? p.g + row_g + xo : nullptr;
    scalar_t* gi = p.y ? p.y + row_out + xo : nullptr;
    scalar_t* gs = p.gs ? p.gs + row_sout + so : nullptr;
    scalar_t* gt = p.gt ? p.gt + row_sout + so : nullptr;
    for (int64_t i = 0; i < len; i += W) {
      const int64_t n = std::min(W, len - i);
      const Vec sv = IO::load(s + i, n);
      Vec th, sc, se;
      if constexpr (kScale) {
        th = vec_math::tanh(sv) & lanes;
        sc = load_scale(scale + so + i, n);
        se = sc * th;
      } else {
        se = sv & lanes;
      }
      Vec gi_v(0), gt_v(0), dse;
      if (g != nullptr) {
        const Vec gv = IO::load(g + i, n);
        const Vec xv = IO::load(x + i, n);
        if constexpr (kInverse) {
          gi_v = gv * vec_math::exp(se.neg());
          gt_v = gi_v.neg() & lanes;
          dse = at::vec::fmadd(gv, xv, gl).neg();
        } else {
          const Vec e = vec_math::exp(se);
          gi_v = gv * e;
          gt_v = gv & lanes;
          dse = at::vec::fmadd(gv * xv, e, gl);
        }
      } else {
        dse = kInverse ? gl.neg() : gl;
      }
      dse = dse & lanes;
      Vec gs_v = dse;
      if constexpr (kScale) {
        gs_v = dse * sc * (Vec(1) - th * th);
        if (gscale != nullptr) (Vec::loadu(gscale + so + i, n) + dse * th).store(gscale + so + i, n);
      }
      if (gi != nullptr) IO::store(gi + i, gi_v, n);
      if (gs != nullptr) IO::store(gs + i, gs_v, n);
      if (gt != nullptr) IO::store(gt + i, gt_v, n);
    }
  }

  static void forward(const Plan& plan, const Operands<scalar_t>& p, int64_t rows) {
    parallel_slabs(rows, plan.cols, [&](int64_t, int64_t first, int64_t last) {
      const Lanes lanes;
      for (int64_t row = first; row < last; ++row) {
        const scalar_t* x = p.x + row * p.x_rs;
        const scalar_t* s = p.s + row * p.s_rs;
        const scalar_t* t = p.t + row * p.t_rs;
        const opmath_t* scale = kScale ? p.scale + row * p.scale_rs : nullptr;
        scalar_t* y = p.y + row * plan.cols;
        Vec acc(0);
        walk_row(plan, [&](int64_t xo, int64_t so, int64_t len, int kind) {
          if (kind == kCopy) {
            std::memcpy(y + xo, x + xo, len * sizeof(scalar_t));
          } else {
            acc = forward_segment(x + xo, s + so, t + so, kScale ? scale + so : nullptr, y + xo, len, lanes.masks[kind],
                                  acc);
          }
        });
        const opmath_t total = IO::sum_lanes(acc);
        p.logdet[row] = kInverse ? -total : total;
      }
    });
  }

  static void backward(const Plan& plan, const Operands<scalar_t>& p, int64_t rows) {
    parallel_slabs(rows, plan.cols, [&](int64_t slab, int64_t first, int64_t last) {
      const Lanes lanes;
      for (int64_t row = first; row < last; ++row) {
        const Vec gl(p.gl ? p.gl[row] : opmath_t(0));
        const opmath_t* scale = kScale ? p.scale + row * p.scale_rs : nullptr;
        opmath_t* gscale = nullptr;
        if (kScale && p.gscale != nullptr) gscale = p.gscale + (p.gscale_per_row ? row : slab) * plan.s_cols;
        const int64_t row_out = row * plan.cols, row_sout = row * plan.s_cols;
        walk_row(plan, [&](int64_t xo, int64_t so, int64_t len, int kind) {
          if (kind == kCopy) {
            if (p.y != nullptr) {
              scalar_t* gi = p.y + row_out + xo;
              if (p.g != nullptr) {
                std::memcpy(gi, p.g + row * p.g_rs + xo, len * sizeof(scalar_t));
              } else {
                std::fill(gi, gi + len, scalar_t(0));
              }
            }
            if (so >= 0) {  // checkerboard: s and t have entries here, which get no gradient
              if (p.gs != nullptr) std::fill(p.gs + row_sout + so, p.gs + row_sout + so + len, scalar_t(0));
              if (p.gt != nullptr) std::fill(p.gt + row_sout + so, p.gt + row_sout + so + len, scalar_t(0));
            }
          } else {
            backward_segment(p, row * p.x_rs, row * p.s_rs, row * p.g_rs, row_out, row_sout, scale, gscale, xo, so, len,
                             lanes.masks[kind], gl);
          }
        });
      }
    });
  }
};

template <typename scalar_t, typename Fn>
void dispatch_variant(bool inverse, bool has_scale, const Fn& fn) {
  if (inverse) {
    if (has_scale) fn(Kernel<scalar_t, true, true>{});
    else fn(Kernel<scalar_t, true, false>{});
  } else {
    if (has_scale) fn(Kernel<scalar_t, false, true>{});
    else fn(Kernel<scalar_t, false, false>{});
  }
}

at::ScalarType opmath_type_of(const at::Tensor& x) { return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// The scale broadcast to one row of s (to every row when it varies along the batch), in s's
// row layout and in the op math type.
at::Tensor scale_rows(const at::Tensor& scale, const at::Tensor& s, const Layout& l, bool& per_row) {
  per_row = scale.dim() == s.dim() && scale.size(0) != 1;
  std::vector<int64_t> sizes(s.sizes().begin(), s.sizes().end());
  if (!per_row) sizes[0] = 1;
  return at::empty_strided(sizes, l.s_strides, s.options().dtype(opmath_type_of(s))).copy_(scale.expand(sizes));
}

// ------------------------------------------------------------------------------ ops

std::tuple<at::Tensor, at::Tensor> affine_coupling_cpu(const at::Tensor& x_in, const at::Tensor& s_in,
                                                       const at::Tensor& t_in,
                                                       const std::optional<at::Tensor>& scale_in,
                                                       c10::string_view mask_name, int64_t parity, bool inverse) {
  const char* op = "affine_coupling";
  const Mask mask = parse_mask(mask_name, op);
  check_x(x_in, mask, parity, op);
  check_s_like(s_in, x_in, mask, op, "s");
  check_s_like(t_in, x_in, mask, op, "t");
  const bool has_scale = scale_in.has_value() && scale_in->defined();
  if (has_scale) check_scale(*scale_in, s_in, x_in, op);

  const Layout l = layout_for(x_in, mask);
  const at::Tensor x = with_rows(x_in, l.x_strides);
  const at::Tensor s = with_rows(s_in, l.s_strides);
  const at::Tensor t = with_rows(t_in, l.s_strides);
  const Plan plan = make_plan(x, l, mask, parity);
  const int64_t rows = x.size(0);
  bool per_row = false;
  const at::Tensor scale = has_scale ? scale_rows(*scale_in, s, l, per_row) : at::Tensor();
  at::Tensor y = at::empty_strided(x.sizes(), l.x_strides, x.options());
  at::Tensor logdet = at::empty({rows}, x.options().dtype(opmath_type_of(x)));
  if (rows == 0 || plan.cols == 0) return {y, logdet.zero_()};

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "affine_coupling", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    Operands<scalar_t> p;
    p.x = x.const_data_ptr<scalar_t>();
    p.s = s.const_data_ptr<scalar_t>();
    p.t = t.const_data_ptr<scalar_t>();
    p.x_rs = x.stride(0);
    p.s_rs = s.stride(0);
    p.t_rs = t.stride(0);
    if (has_scale) {
      p.scale = scale.const_data_ptr<opmath_t>();
      p.scale_rs = per_row ? plan.s_cols : 0;
    }
    p.y = y.mutable_data_ptr<scalar_t>();
    p.logdet = logdet.mutable_data_ptr<opmath_t>();
    dispatch_variant<scalar_t>(inverse, has_scale, [&](auto kernel) { decltype(kernel)::forward(plan, p, rows); });
  });
  return {y, logdet};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> affine_coupling_backward_cpu(
    const std::optional<at::Tensor>& grad_output_in, const std::optional<at::Tensor>& grad_logdet_in,
    const at::Tensor& x_in, const at::Tensor& s_in, const std::optional<at::Tensor>& scale_in,
    c10::string_view mask_name, int64_t parity, bool inverse, std::array<bool, 4> output_mask) {
  const char* op = "affine_coupling_backward";
  const Mask mask = parse_mask(mask_name, op);
  check_x(x_in, mask, parity, op);
  check_s_like(s_in, x_in, mask, op, "s");
  const bool has_scale = scale_in.has_value() && scale_in->defined();
  if (has_scale) check_scale(*scale_in, s_in, x_in, op);
  const bool want_input = output_mask[0], want_s = output_mask[1], want_t = output_mask[2];
  const bool want_scale = has_scale && output_mask[3];
  const bool has_g = grad_output_in.has_value() && grad_output_in->defined();
  const bool has_gl = grad_logdet_in.has_value() && grad_logdet_in->defined();
  const int64_t rows = x_in.size(0);
  if (has_g) {
    TORCH_CHECK_VALUE(grad_output_in->sizes() == x_in.sizes(), "fastgen.", op,
                      ": grad_output must have the shape of x ", x_in.sizes(), ", got ", grad_output_in->sizes());
    check_same(*grad_output_in, x_in, op, "grad_output");
  }
  if (has_gl) {
    TORCH_CHECK_VALUE(grad_logdet_in->dim() == 1 && grad_logdet_in->size(0) == rows, "fastgen.", op,
                      ": grad_logdet must have shape (", rows, ",), got ", grad_logdet_in->sizes());
    checks::floating(op, "grad_logdet", *grad_logdet_in);
    checks::same_device(op, "x", x_in, {{"grad_logdet", grad_logdet_in}});
  }

  const Layout l = layout_for(x_in, mask);
  const at::Tensor x = with_rows(x_in, l.x_strides);
  const at::Tensor s = with_rows(s_in, l.s_strides);
  const at::Tensor g = has_g ? with_rows(*grad_output_in, l.x_strides) : at::Tensor();
  const at::ScalarType acc_type = opmath_type_of(x);
  const at::Tensor gl = has_gl ? grad_logdet_in->to(acc_type).contiguous() : at::Tensor();
  const Plan plan = make_plan(x, l, mask, parity);
  bool per_row = false;
  const at::Tensor scale = has_scale ? scale_rows(*scale_in, s, l, per_row) : at::Tensor();

  // Outputs not asked for are (distinct) empty tensors.
  const auto none = [&] { return at::empty({0}, x.options()); };
  at::Tensor grad_input = want_input ? at::empty_strided(x.sizes(), l.x_strides, x.options()) : none();
  at::Tensor grad_s = want_s ? at::empty_strided(s.sizes(), l.s_strides, s.options()) : none();
  at::Tensor grad_t = want_t ? at::empty_strided(s.sizes(), l.s_strides, s.options()) : none();
  const int64_t per = rows_per_slab(plan.cols);
  const int64_t accumulators = !want_scale ? 0 : per_row ? rows : (rows + per - 1) / per;
  at::Tensor gscale = at::zeros({accumulators, plan.s_cols}, x.options().dtype(acc_type));

  if (rows != 0 && plan.cols != 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "affine_coupling_backward", [&] {
      using opmath_t = at::opmath_type<scalar_t>;
      Operands<scalar_t> p;
      p.x = x.const_data_ptr<scalar_t>();
      p.s = s.const_data_ptr<scalar_t>();
      p.x_rs = x.stride(0);
      p.s_rs = s.stride(0);
      if (has_g) {
        p.g = g.const_data_ptr<scalar_t>();
        p.g_rs = g.stride(0);
      }
      if (has_gl) p.gl = gl.const_data_ptr<opmath_t>();
      if (has_scale) {
        p.scale = scale.const_data_ptr<opmath_t>();
        p.scale_rs = per_row ? plan.s_cols : 0;
        if (want_scale) p.gscale = gscale.mutable_data_ptr<opmath_t>();
        p.gscale_per_row = per_row;
      }
      if (want_input) p.y = grad_input.mutable_data_ptr<scalar_t>();
      if (want_s) p.gs = grad_s.mutable_data_ptr<scalar_t>();
      if (want_t) p.gt = grad_t.mutable_data_ptr<scalar_t>();
      dispatch_variant<scalar_t>(inverse, has_scale, [&](auto kernel) { decltype(kernel)::backward(plan, p, rows); });
    });
  }

  at::Tensor grad_scale;
  if (want_scale) {
    // Sum the slab accumulators in order (per-row ones are already per row), view the result in
    // s's layout, and reduce it to the scale's shape.
    std::vector<int64_t> sizes(s.sizes().begin(), s.sizes().end());
    at::Tensor summed = gscale;
    if (!per_row) {
      sizes[0] = 1;
      summed = at::zeros({1, plan.s_cols}, gscale.options());
      AT_DISPATCH_FLOATING_TYPES(acc_type, "affine_coupling_grad_scale", [&] {
        scalar_t* out = summed.mutable_data_ptr<scalar_t>();
        const scalar_t* in = gscale.const_data_ptr<scalar_t>();
        for (int64_t a = 0; a < accumulators; ++a) {
          for (int64_t j = 0; j < plan.s_cols; ++j) out[j] += in[a * plan.s_cols + j];
        }
      });
    }
    const at::Tensor full = summed.as_strided(sizes, l.s_strides);
    grad_scale =
        at::empty(scale_in->sizes(), scale_in->options()).copy_(full.to(at::kDouble).sum_to_size(scale_in->sizes()));
  } else {
    grad_scale = none();
  }
  return {grad_input, grad_s, grad_t, grad_scale};
}

}  // namespace

FASTGEN_REGISTER_CPU_KERNELS(coupling, m) {
  m.impl("affine_coupling", &affine_coupling_cpu);
  m.impl("affine_coupling_backward", &affine_coupling_backward_cpu);
}

}  // namespace fastgen
