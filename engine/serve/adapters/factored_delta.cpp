// add_factored_delta (see the header). For a group of G <= 4 tokens:
//  shrink: z_t = Vᵀx_t two rows of Vᵀ at a time, each (row, token) pair with its own 8-lane accumulator
//          over d_in (2·G <= 8 of them, padded with zeros), reduced together by one transpose-add; each
//          Vᵀ vector loaded feeds G tokens;
//  core:   w_t = Σ_t z_t (r×r: Σ_q z[q]·Σᵀ[q, :], eight outputs per vector; diagonal: a product each);
//  expand: y_t += Σ_p w_t[p]·Uᵀ[p, o..o+16) for 16 outputs at a time, G×2 accumulators, each Uᵀ vector
//          loaded feeds G tokens.
// Every (row, token) accumulator sees the same sequence of operations whatever G is, so a token's result
// does not depend on its neighbours. The expand of a column range [j0, j1) with j0 a multiple of 16 runs
// exactly the vector/scalar steps the whole-row expand runs on those columns, so splitting the expand by
// such ranges (factored_expand) changes no bit.
#include "engine/serve/adapters/factored_delta.hpp"

#include "engine/core/float16.hpp"

#include <immintrin.h>

#include <algorithm>
#include <vector>

namespace lorafleet::serve {
namespace {

constexpr int max_group = 4;

inline float widen(float v) {
    return v;
}
inline float widen(std::uint16_t v) {
    return f16_to_f32(v);
}

// ---- Portable (one token at a time, float32 in the same loop order as the AVX2 path's scalar tails) -----
template <class Elem>
void shrink_portable(const factored_basis<Elem>& b, bool full, const factored_token& t, float* w, float* z) {
    const int r = b.rank;
    for (int p = 0; p < r; ++p) {
        float acc = 0.0f;
        for (int k = 0; k < b.d_in; ++k)
            acc += widen(b.vt[std::size_t(p) * b.d_in + k]) * t.x[k];
        z[p] = acc;
    }
    for (int p = 0; p < r; ++p) {
        if (full) {
            float acc = 0.0f;
            for (int q = 0; q < r; ++q)
                acc += z[q] * t.core[q * r + p];
            w[p] = acc;
        } else {
            w[p] = t.core[p] * z[p];
        }
    }
}

template <class Elem>
void expand_portable(const factored_basis<Elem>& b, const factored_token& t, const float* w, int j0, int j1) {
    for (int o = j0; o < j1; ++o) {
        float acc = 0.0f;
        for (int p = 0; p < b.rank; ++p)
            acc += w[p] * widen(b.ut[std::size_t(p) * b.d_out + o]);
        t.y[o] += acc;
    }
}

// ---- AVX2 + FMA + F16C ------------------------------------------------------------------------------------
#define LF_TARGET [[gnu::target("avx2,fma,f16c")]]

LF_TARGET inline __m256 load8(const float* p) {
    return _mm256_loadu_ps(p);
}
LF_TARGET inline __m256 load8(const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Lane j of the result is the sum of the eight lanes of a[j], always in the same order.
LF_TARGET inline __m256 transpose_sum8(const __m256 (&a)[8]) {
    const __m256 t0 = _mm256_hadd_ps(a[0], a[1]);
    const __m256 t1 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t2 = _mm256_hadd_ps(a[4], a[5]);
    const __m256 t3 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t0, t1); // [a0 a1 a2 a3 | a0 a1 a2 a3]: low and high half sums
    const __m256 u1 = _mm256_hadd_ps(t2, t3); // [a4 a5 a6 a7 | a4 a5 a6 a7]
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// out_t[p] = Σ_k m[p, k]·x_t[k] for G inputs, m row-major [rows, cols]. Accumulator (row i, input g) is
// acc[i·4 + g] for rows in pairs, so its reduction lane does not depend on G.
template <int G, class Elem>
LF_TARGET void matvec_group(int rows, int cols, const Elem* m, const float* const* x, float* const* out) {
    const int kv = cols - cols % 8;
    for (int p = 0; p < rows; p += 2) {
        const int pr = std::min(2, rows - p);
        __m256 acc[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; ++j)
            acc[j] = _mm256_setzero_ps();
        const Elem* m0 = m + std::size_t(p) * cols;
        const Elem* m1 = pr == 2 ? m0 + cols : m0; // a lone last row is computed twice, the copy dropped
        for (int k = 0; k < kv; k += 8) {
            const __m256 r0 = load8(m0 + k), r1 = load8(m1 + k);
#pragma GCC unroll 4
            for (int g = 0; g < G; ++g) {
                const __m256 xv = _mm256_loadu_ps(x[g] + k);
                acc[g] = _mm256_fmadd_ps(r0, xv, acc[g]);
                acc[4 + g] = _mm256_fmadd_ps(r1, xv, acc[4 + g]);
            }
        }
        alignas(32) float sums[8];
        _mm256_store_ps(sums, transpose_sum8(acc));
        for (int g = 0; g < G; ++g)
            for (int i = 0; i < pr; ++i) {
                const Elem* row = m0 + std::size_t(i) * cols;
                float tail = 0.0f;
                for (int k = kv; k < cols; ++k)
                    tail += widen(row[k]) * x[g][k];
                out[g][p + i] = sums[i * 4 + g] + tail;
            }
    }
}

// y_t[o] += Σ_p w_t[p]·ut[p, o] for G tokens and o in [0, width); ut's rows are `stride` apart.
template <int G, class Elem>
LF_TARGET void expand_group(int r, int width, int stride, const Elem* ut, const float* const* w,
                            float* const* y) {
    const int d_out = width;
    int o = 0;
    for (; o + 16 <= d_out; o += 16) {
        __m256 acc[G][2];
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g)
            acc[g][0] = acc[g][1] = _mm256_setzero_ps();
        for (int p = 0; p < r; ++p) {
            const Elem* row = ut + std::size_t(p) * stride + o;
            const __m256 u0 = load8(row), u1 = load8(row + 8);
#pragma GCC unroll 4
            for (int g = 0; g < G; ++g) {
                const __m256 wp = _mm256_broadcast_ss(w[g] + p);
                acc[g][0] = _mm256_fmadd_ps(wp, u0, acc[g][0]);
                acc[g][1] = _mm256_fmadd_ps(wp, u1, acc[g][1]);
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; ++g) {
            _mm256_storeu_ps(y[g] + o, _mm256_add_ps(_mm256_loadu_ps(y[g] + o), acc[g][0]));
            _mm256_storeu_ps(y[g] + o + 8, _mm256_add_ps(_mm256_loadu_ps(y[g] + o + 8), acc[g][1]));
        }
    }
    for (; o + 8 <= d_out; o += 8) {
        for (int g = 0; g < G; ++g) {
            __m256 acc = _mm256_setzero_ps();
            for (int p = 0; p < r; ++p)
                acc = _mm256_fmadd_ps(_mm256_broadcast_ss(w[g] + p), load8(ut + std::size_t(p) * stride + o),
                                      acc);
            _mm256_storeu_ps(y[g] + o, _mm256_add_ps(_mm256_loadu_ps(y[g] + o), acc));
        }
    }
    for (; o < d_out; ++o)
        for (int g = 0; g < G; ++g) {
            float acc = 0.0f;
            for (int p = 0; p < r; ++p)
                acc += w[g][p] * widen(ut[std::size_t(p) * stride + o]);
            y[g][o] += acc;
        }
}

// w[p] = Σ_q z[q]·Σᵀ[q, p]: eight outputs per vector, the chain over q in order.
LF_TARGET void core_full(int r, const float* core_t, const float* z, float* w) {
    int p = 0;
    for (; p + 8 <= r; p += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int q = 0; q < r; ++q)
            acc = _mm256_fmadd_ps(_mm256_broadcast_ss(z + q),
                                  _mm256_loadu_ps(core_t + std::size_t(q) * r + p), acc);
        _mm256_storeu_ps(w + p, acc);
    }
    for (; p < r; ++p) {
        float acc = 0.0f;
        for (int q = 0; q < r; ++q)
            acc += z[q] * core_t[std::size_t(q) * r + p];
        w[p] = acc;
    }
}

// w_t = Σ_t·(Vᵀx_t) for G tokens, into w + g·r; `z` holds G·r floats.
template <int G, class Elem>
LF_TARGET void shrink_group(const factored_basis<Elem>& b, bool full, const factored_token* t, float* w_out,
                            float* z_buf) {
    const int r = b.rank;
    const float* x[G];
    float* z[G];
    for (int g = 0; g < G; ++g) {
        x[g] = t[g].x;
        z[g] = z_buf + std::size_t(g) * r;
    }
    matvec_group<G>(r, b.d_in, b.vt, x, z);
    for (int g = 0; g < G; ++g) {
        float* w = w_out + std::size_t(g) * r;
        if (full) {
            core_full(r, t[g].core, z[g], w);
        } else {
            for (int p = 0; p < r; ++p)
                w[p] = t[g].core[p] * z[g][p];
        }
    }
}

// y_t[j0, j1) += (U·w_t)[j0, j1) for G tokens, w_t at w + g·r.
template <int G, class Elem>
LF_TARGET void expand_columns(const factored_basis<Elem>& b, const factored_token* t, const float* w_in,
                              int j0, int j1) {
    const float* w[G];
    float* y[G];
    for (int g = 0; g < G; ++g) {
        w[g] = w_in + std::size_t(g) * b.rank;
        y[g] = t[g].y + j0;
    }
    expand_group<G>(b.rank, j1 - j0, b.d_out, b.ut + j0, w, y);
}

// Calls fn.template operator()<G>(first token index) for groups of four, then one group of the rest.
template <class Fn> LF_TARGET void for_groups(std::size_t n, Fn&& fn) {
    std::size_t i = 0;
    for (; i + max_group <= n; i += max_group)
        fn.template operator()<4>(i);
    switch (n - i) {
    case 3:
        fn.template operator()<3>(i);
        break;
    case 2:
        fn.template operator()<2>(i);
        break;
    case 1:
        fn.template operator()<1>(i);
        break;
    default:
        break;
    }
}

template <class Elem>
LF_TARGET void shrink_avx2(const factored_basis<Elem>& b, bool full, std::span<const factored_token> tokens,
                           float* w, float* scratch) {
    for_groups(tokens.size(), [&]<int G>(std::size_t i) {
        shrink_group<G>(b, full, tokens.data() + i, w + i * std::size_t(b.rank), scratch);
    });
}

template <class Elem>
LF_TARGET void expand_avx2(const factored_basis<Elem>& b, std::span<const factored_token> tokens,
                           const float* w, int j0, int j1) {
    for_groups(tokens.size(), [&]<int G>(std::size_t i) {
        expand_columns<G>(b, tokens.data() + i, w + i * std::size_t(b.rank), j0, j1);
    });
}

template <class Elem>
LF_TARGET void delta_avx2(const factored_basis<Elem>& b, bool full, std::span<const factored_token> tokens,
                          float* scratch) {
    // Group by group, so a group's w stays in registers' reach: scratch holds z (4·r) then w (4·r).
    const int r = b.rank;
    for_groups(tokens.size(), [&]<int G>(std::size_t i) {
        float* w = scratch + std::size_t(max_group) * r;
        shrink_group<G>(b, full, tokens.data() + i, w, scratch);
        expand_columns<G>(b, tokens.data() + i, w, 0, b.d_out);
    });
}

#undef LF_TARGET

bool use_avx2() {
    __builtin_cpu_init();
    static const bool yes =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    return yes;
}

template <class Elem> void reference(const factored_basis<Elem>& b, bool full, const factored_token& t) {
    const int r = b.rank;
    std::vector<double> z(static_cast<std::size_t>(r)), w(static_cast<std::size_t>(r));
    for (int p = 0; p < r; ++p)
        for (int k = 0; k < b.d_in; ++k)
            z[std::size_t(p)] += double(widen(b.vt[std::size_t(p) * b.d_in + k])) * t.x[k];
    for (int p = 0; p < r; ++p)
        if (full)
            for (int q = 0; q < r; ++q)
                w[std::size_t(p)] += double(t.core[q * r + p]) * z[std::size_t(q)];
        else
            w[std::size_t(p)] = double(t.core[p]) * z[std::size_t(p)];
    for (int o = 0; o < b.d_out; ++o) {
        double acc = 0.0;
        for (int p = 0; p < r; ++p)
            acc += w[std::size_t(p)] * widen(b.ut[std::size_t(p) * b.d_out + o]);
        t.y[o] = float(double(t.y[o]) + acc);
    }
}

template <class Elem>
void add_delta(const factored_basis<Elem>& basis, bool full, std::span<const factored_token> tokens,
               float* scratch) {
    if (use_avx2()) {
        delta_avx2(basis, full, tokens, scratch);
        return;
    }
    for (const auto& t : tokens) {
        shrink_portable(basis, full, t, scratch + basis.rank, scratch);
        expand_portable(basis, t, scratch + basis.rank, 0, basis.d_out);
    }
}

template <class Elem>
void shrink(const factored_basis<Elem>& basis, bool full, std::span<const factored_token> tokens, float* w,
            float* scratch) {
    if (use_avx2()) {
        shrink_avx2(basis, full, tokens, w, scratch);
        return;
    }
    for (std::size_t i = 0; i < tokens.size(); ++i)
        shrink_portable(basis, full, tokens[i], w + i * std::size_t(basis.rank), scratch);
}

template <class Elem>
void expand(const factored_basis<Elem>& basis, std::span<const factored_token> tokens, const float* w, int j0,
            int j1) {
    if (use_avx2()) {
        expand_avx2(basis, tokens, w, j0, j1);
        return;
    }
    for (std::size_t i = 0; i < tokens.size(); ++i)
        expand_portable(basis, tokens[i], w + i * std::size_t(basis.rank), j0, j1);
}

} // namespace

void add_factored_delta(const factored_basis<float>& basis, bool full, std::span<const factored_token> tokens,
                        float* scratch) {
    add_delta(basis, full, tokens, scratch);
}
void add_factored_delta(const factored_basis<std::uint16_t>& basis, bool full,
                        std::span<const factored_token> tokens, float* scratch) {
    add_delta(basis, full, tokens, scratch);
}

void factored_shrink(const factored_basis<float>& basis, bool full, std::span<const factored_token> tokens,
                     float* w, float* scratch) {
    shrink(basis, full, tokens, w, scratch);
}
void factored_shrink(const factored_basis<std::uint16_t>& basis, bool full,
                     std::span<const factored_token> tokens, float* w, float* scratch) {
    shrink(basis, full, tokens, w, scratch);
}

void factored_expand(const factored_basis<float>& basis, std::span<const factored_token> tokens,
                     const float* w, int j0, int j1) {
    expand(basis, tokens, w, j0, j1);
}
void factored_expand(const factored_basis<std::uint16_t>& basis, std::span<const factored_token> tokens,
                     const float* w, int j0, int j1) {
    expand(basis, tokens, w, j0, j1);
}

void add_factored_delta_reference(const factored_basis<float>& basis, bool full,
                                  const factored_token& token) {
    reference(basis, full, token);
}

void add_factored_delta_reference(const factored_basis<std::uint16_t>& basis, bool full,
                                  const factored_token& token) {
    reference(basis, full, token);
}

} // namespace lorafleet::serve
