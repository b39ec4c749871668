// Counter-based Philox4x32-10 normal noise, bit-compatible with Triton's tl.randn4x, so the
// C++ CPU kernels and the Triton CUDA kernels draw the same noise from the same seed.
//
// Convention shared with triton_kernels/reparam_kl.py. A row of `cols` elements is cut into
// blocks of 64; block g uses the 16 Philox counters
//     row * counters_per_row(cols) + 16 * g + i,   i = 0..15   (key = the 64-bit seed)
// and element 64 * g + 16 * k + i gets component k (0..3) of counter i's four normals.
// So each run of 16 elements is one vector of one component (no shuffles on the CPU, a
// (G, 4, 16) tile in Triton), and every row starts on fresh counters: a kernel can work on
// any row slice that starts at a multiple of 64 without looking at its neighbours.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include "common/vec_math.h"

#include <cstdint>
#include <utility>

namespace fastgen {
inline namespace CPU_CAPABILITY {  // one copy per variant: csrc/common/cpu_kernels.h
namespace philox {

constexpr uint32_t kKeyA = 0x9E3779B9u;
constexpr uint32_t kKeyB = 0xBB67AE85u;
constexpr uint32_t kRoundA = 0xD2511F53u;
constexpr uint32_t kRoundB = 0xCD9E8D57u;
constexpr int kRounds = 10;
constexpr int64_t kLanes = 16;                 // counters per block
constexpr int64_t kBlock = 4 * kLanes;         // normals per block

inline int64_t counters_per_row(int64_t cols) { return kLanes * ((cols + kBlock - 1) / kBlock); }

// The first counter of the block holding element `col` (a multiple of kBlock) of `row`.
inline uint64_t block_counter(int64_t row, int64_t col, int64_t cols) {
  return static_cast<uint64_t>(row) * static_cast<uint64_t>(counters_per_row(cols)) +
         static_cast<uint64_t>(kLanes * (col / kBlock));
}

using U32Vec = at::vec::Vectorized<int32_t>;  // lanes hold uint32 bit patterns

// (hi, lo) 32-bit halves of the 64-bit products a * m, lane by lane. Vectorized<int32_t> has
// no high-half multiply, so the vector ISAs use vpmuludq on the even and odd lanes.
inline void mulhilo(const U32Vec& a, uint32_t m, U32Vec& hi, U32Vec& lo) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512i mv = _mm512_set1_epi32(static_cast<int32_t>(m));
  const __m512i av = a;
  const __m512i even = _mm512_mul_epu32(av, mv);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(av, 32), mv);
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256i mv = _mm256_set1_epi32(static_cast<int32_t>(m));
  const __m256i av = a;
  const __m256i even = _mm256_mul_epu32(av, mv);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(av, 32), mv);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
#else
  alignas(64) int32_t x[U32Vec::size()], h[U32Vec::size()], l[U32Vec::size()];
  a.store(x);
  for (int64_t i = 0; i < U32Vec::size(); ++i) {
    const uint64_t p = static_cast<uint64_t>(static_cast<uint32_t>(x[i])) * m;
    h[i] = static_cast<int32_t>(static_cast<uint32_t>(p >> 32));
    l[i] = static_cast<int32_t>(static_cast<uint32_t>(p));
  }
  hi = U32Vec::loadu(h);
  lo = U32Vec::loadu(l);
#endif
}

// Triton's uint_to_uniform_float on a vector: bits -> float in [0, 1).
inline at::vec::Vectorized<float> to_uniform(const U32Vec& bits) {
  const U32Vec folded = bits ^ (bits >> U32Vec(31));  // x < 0 ? ~x : x
  return at::vec::convert_to_fp_of_same_size<float>(folded) * at::vec::Vectorized<float>(4.6566127342e-10f);
}

// Philox4x32-10 on S independent vectors of counters at once: the rounds of one vector are a
// serial chain of multiplies, so interleaving S of them keeps the multiply units busy.
template <int S>
inline void philox_rounds(U32Vec (&c)[S][4], uint64_t seed) {
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < kRounds; ++r) {
    const U32Vec key0(static_cast<int32_t>(k0)), key1(static_cast<int32_t>(k1));
    for (int s = 0; s < S; ++s) {
      U32Vec hi_b, lo_b, hi_a, lo_a;
      mulhilo(c[s][2], kRoundB, hi_b, lo_b);
      mulhilo(c[s][0], kRoundA, hi_a, lo_a);
      c[s][0] = hi_b ^ c[s][1] ^ key0;
      c[s][2] = hi_a ^ c[s][3] ^ key1;
      c[s][1] = lo_b;
      c[s][3] = lo_a;
    }
    k0 += kKeyA;
    k1 += kKeyB;
  }
}

// Normals for S vectors of consecutive counters: vector s starts at counter first[s] and
// writes component k of its lanes to out[s] + kLanes * k.
template <int S>
inline void normal_vectors(uint64_t seed, const uint64_t (&first)[S], float* const (&out)[S]) {
  using Vec = at::vec::Vectorized<float>;
  static_assert(U32Vec::size() == Vec::size(), "int32 and float vectors must have one width");
  alignas(64) int32_t lane_ids[U32Vec::size()];
  for (int64_t i = 0; i < U32Vec::size(); ++i) lane_ids[i] = static_cast<int32_t>(i);
  const U32Vec lanes = U32Vec::loadu(lane_ids);
  U32Vec c[S][4];
  for (int s = 0; s < S; ++s) {
    // Vectors start at multiples of their width, so the low word never wraps inside one.
    c[s][0] = lanes + U32Vec(static_cast<int32_t>(static_cast<uint32_t>(first[s])));
    c[s][1] = U32Vec(static_cast<int32_t>(static_cast<uint32_t>(first[s] >> 32)));
    c[s][2] = U32Vec(0);
    c[s][3] = U32Vec(0);
  }
  philox_rounds<S>(c, seed);
  // Box-Muller on the pairs (c0, c1) and (c2, c3), as Triton's pair_uniform_to_normal:
  // r = sqrt(-2 log(max(u0, 1e-7))), then (r cos(2 pi u1), r sin(2 pi u1)).
  const Vec tiny(1.0e-7f), minus_two(-2.0f);
  for (int s = 0; s < S; ++s) {
    for (int pair = 0; pair < 2; ++pair) {
      const Vec radius_u = at::vec::clamp_min(to_uniform(c[s][2 * pair]), tiny);
      const Vec radius = (minus_two * vec_math::log_positive(radius_u)).sqrt();
      Vec sin_theta, cos_theta;
      vec_math::sincos_2pi(to_uniform(c[s][2 * pair + 1]), sin_theta, cos_theta);
      (radius * cos_theta).store(out[s] + kLanes * (2 * pair));
      (radius * sin_theta).store(out[s] + kLanes * (2 * pair + 1));
    }
  }
}

// Fills out[0, len) with the normals of elements [col, col + len) of `row`; `col` must be a
// multiple of kBlock and `out` must have room for len rounded up to a whole block.
inline void fill_normals(uint64_t seed, int64_t row, int64_t col, int64_t len, int64_t cols, float* out) {
  constexpr int64_t W = U32Vec::size();
  static_assert(kLanes % W == 0, "a block must be whole vectors");
  // Vector v of block j: counters block_counter(j) + v..., output at out + j + v.
  const int64_t vectors = ((len + kBlock - 1) / kBlock) * (kLanes / W);
  auto first_counter = [&](int64_t unit) {
    const int64_t j = (unit / (kLanes / W)) * kBlock, v = (unit % (kLanes / W)) * W;
    return std::make_pair(block_counter(row, col + j, cols) + static_cast<uint64_t>(v), out + j + v);
  };
  int64_t unit = 0;
  for (; unit + 2 <= vectors; unit += 2) {
    const auto a = first_counter(unit), b = first_counter(unit + 1);
    normal_vectors<2>(seed, {a.first, b.first}, {a.second, b.second});
  }
  if (unit < vectors) {
    const auto a = first_counter(unit);
    normal_vectors<1>(seed, {a.first}, {a.second});
  }
}

}  // namespace philox
}  // namespace CPU_CAPABILITY
}  // namespace fastgen
