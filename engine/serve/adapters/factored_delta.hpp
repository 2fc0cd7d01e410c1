// The CPU kernel of compressed serving (method.md §7): for the tokens of ONE cluster, each with its own
// adapter core Σ_i, y_t += U·(Σ_i·(Vᵀx_t)). Per token z = Vᵀx [r], w = Σ_i z [r] (an r×r core or its
// diagonal), y += U·w [d_out]; nothing of size d per adapter, no gather of the rows, no [n, r] buffers.
// Tokens are taken in groups of up to four so that every row of Vᵀ and Uᵀ read from the cache feeds four
// tokens: the bases of a bank with many clusters do not fit in L2 together with the model, so the bytes
// of Vᵀ and Uᵀ read per step, not the multiply-adds, set the cost. For the same reason the bases may be
// stored as IEEE half (a bank written as F16 holds exactly those values, so nothing is rounded); they are
// widened to float32 in registers and all arithmetic is float32.
// A token's result depends on its own row only, never on which tokens share its group (every sum runs in
// the same order whatever the group size), so serving stays batch-invariant. Pure functions, thread-safe.
// AVX2+FMA+F16C where the CPU has them (chosen once at run time), else portable loops; the two paths may
// differ in the last bits.
#pragma once

#include <cstdint>
#include <span>

namespace lorafleet::serve {

// One module's cluster basis, transposed for the kernel. Elem is float or std::uint16_t (IEEE half).
template <class Elem> struct factored_basis {
    const Elem* vt = nullptr; // [r, d_in]  Vᵀ, row-major
    const Elem* ut = nullptr; // [r, d_out] Uᵀ, row-major
    int rank = 0;             // r
    int d_in = 0;
    int d_out = 0;
};

// One token of a cluster: its input row, output row and its adapter's core.
struct factored_token {
    const float* x = nullptr;    // [d_in]
    float* y = nullptr;          // [d_out], accumulated into
    const float* core = nullptr; // Σᵀ [r, r] row-major, i.e. Σ column-major (full); or σ [r] (diagonal)
};

// y_t += U·(Σ_t·(Vᵀx_t)) for every token. `scratch` holds at least 8·r floats.
void add_factored_delta(const factored_basis<float>& basis, bool full, std::span<const factored_token> tokens,
                        float* scratch);
void add_factored_delta(const factored_basis<std::uint16_t>& basis, bool full,
                        std::span<const factored_token> tokens, float* scratch);

// The same update in two halves, for callers that spread the expand over blocks of output columns:
// factored_shrink writes w_t = Σ_t·(Vᵀx_t) to w + t·r for every token (`scratch`: at least 4·r floats);
// factored_expand then adds (U·w_t)[j0, j1) to y_t[j0, j1). Shrinking once and expanding over column
// ranges whose starts are multiples of 16 gives bit for bit what add_factored_delta gives.
void factored_shrink(const factored_basis<float>& basis, bool full, std::span<const factored_token> tokens,
                     float* w, float* scratch);
void factored_shrink(const factored_basis<std::uint16_t>& basis, bool full,
                     std::span<const factored_token> tokens, float* w, float* scratch);
void factored_expand(const factored_basis<float>& basis, std::span<const factored_token> tokens,
                     const float* w, int j0, int j1);
void factored_expand(const factored_basis<std::uint16_t>& basis, std::span<const factored_token> tokens,
                     const float* w, int j0, int j1);

// One token with plain scalar loops in double, widening half inputs: the reference of the tests.
void add_factored_delta_reference(const factored_basis<float>& basis, bool full, const factored_token& token);
void add_factored_delta_reference(const factored_basis<std::uint16_t>& basis, bool full,
                                  const factored_token& token);

} // namespace lorafleet::serve
