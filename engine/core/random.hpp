// Deterministic, platform-independent random numbers for synthetic data and randomized algorithms.
// Invariants: the same seed and stream ids give the same bits on every platform and standard library,
// because everything here is integer arithmetic plus IEEE-754 double +, -, *, / and sqrt (all correctly
// rounded) in a fixed order. No <random> distributions (their output differs between libstdc++, libc++
// and MSVC) and no libm log/exp (not correctly rounded everywhere): det_log / det_exp below are our own.
// (Targets that fuse a*b+c into one FMA by default, e.g. aarch64 GCC, need -ffp-contract=off for
// bit-identical normals; x86-64 without -mfma never fuses.)
//
// Streams: random_stream::derive(seed, {id, ...}) hashes the seed and a path of ids into an independent
// generator, so "adapter 17, layer 3, q_proj" gets the same numbers however many adapters are generated,
// in which order, or on how many threads. Engine: xoshiro256** seeded through splitmix64; normals:
// a 256-layer ziggurat (about 99% of draws cost one 64-bit number and a multiply).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>

namespace lorafleet {

// One splitmix64 step: advances `state` by the golden-ratio increment and returns the mixed value.
constexpr std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// splitmix64's finalizer as a stateless hash; a bijection on 64-bit words, so distinct inputs never collide.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// A stream id for a name ("q_proj"): FNV-1a over the bytes, then mixed. Names, not list positions, key
// the streams, so reordering a module list does not change any module's content.
constexpr std::uint64_t stream_id(std::string_view name) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (char c : name) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ull;
    }
    return mix64(h);
}

namespace detail {

// Natural log for finite x > 0: x = m * 2^e with m in [sqrt(1/2), sqrt(2)), then
// ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716, summed to s^23 (truncation < 1e-18 relative).
inline double det_log(double x) noexcept {
    int e = 0;
    double m = std::frexp(x, &e); // exact; m in [0.5, 1)
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        --e;
    }
    const double s = (m - 1.0) / (m + 1.0);
    const double s2 = s * s;
    double p = 1.0 / 23.0;
    for (int k = 21; k >= 1; k -= 2)
        p = p * s2 + 1.0 / k;
    constexpr double ln2_hi = 6.93147180369123816490e-01; // ln 2 split so that e * ln2_hi is exact
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    return e * ln2_hi + (2.0 * s * p + e * ln2_lo);
}

// e^x for |x| < 700: x = k ln2 + r with |r| <= ln2/2, e^r by Taylor to r^14 (truncation < 1e-17).
inline double det_exp(double x) noexcept {
    constexpr double inv_ln2 = 1.44269504088896338700;
    constexpr double ln2_hi = 6.93147180369123816490e-01;
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    const double k = std::floor(x * inv_ln2 + 0.5);
    const double r = (x - k * ln2_hi) - k * ln2_lo;
    double p = 1.0;
    for (int n = 14; n >= 1; --n)
        p = 1.0 + p * r / n;
    return std::ldexp(p, static_cast<int>(k));
}

// Ziggurat for the half-normal density f(x) = exp(-x^2/2) with 256 layers of equal area v.
// Layer 0 is [0, x[0]] x [0, f(R)] (the base strip plus, beyond R, the tail); layer i >= 1 is
// [0, x[i]] x [f(x[i]), f(x[i+1])]; x[1] = R, x[256] = 0. R and v solve "the top layer ends at f = 1"
// (computed once to 50 digits; v = R f(R) + integral of f from R to infinity).
struct ziggurat_tables {
    static constexpr int layers = 256;
    static constexpr double r = 3.6541528853610088;
    static constexpr double v = 4.9286732339746553e-3;
    std::array<double, layers + 1> x{};
    std::array<double, layers + 1> f{}; // f(x[i]); f[0] is unused by sampling

    ziggurat_tables() noexcept {
        const double fr = det_exp(-0.5 * r * r);
        x[0] = v / fr;
        f[0] = fr;
        x[1] = r;
        f[1] = fr;
        for (int i = 1; i < layers - 1; ++i) {
            f[i + 1] = f[i] + v / x[i];
            x[i + 1] = std::sqrt(-2.0 * det_log(f[i + 1]));
        }
        x[layers] = 0.0;
        f[layers] = 1.0;
    }
};

inline const ziggurat_tables& ziggurat() noexcept {
    static const ziggurat_tables tables;
    return tables;
}

} // namespace detail

// xoshiro256** with splitmix64 seeding. Not cryptographic; copyable (a copy replays the same numbers).
class random_stream {
public:
    explicit random_stream(std::uint64_t seed) noexcept {
        // splitmix64 is a bijection of its counter, so at most one of four outputs is zero: the state can
        // never be the all-zero fixed point of xoshiro.
        for (auto& w : m_s)
            w = splitmix64(seed);
    }

    // An independent stream for a path of ids under `seed`: ids are folded in order, so (1, 2) and (2, 1)
    // differ, as do (1) and (1, 0).
    static random_stream derive(std::uint64_t seed, std::initializer_list<std::uint64_t> ids) noexcept {
        std::uint64_t h = mix64(seed + 0x243f6a8885a308d3ull);
        for (std::uint64_t id : ids)
            h = mix64(h ^ mix64(id + 0x13198a2e03707344ull));
        return random_stream(h);
    }

    std::uint64_t next_u64() noexcept {
        const std::uint64_t result = rotl(m_s[1] * 5, 7) * 9;
        const std::uint64_t t = m_s[1] << 17;
        m_s[2] ^= m_s[0];
        m_s[3] ^= m_s[1];
        m_s[1] ^= m_s[2];
        m_s[0] ^= m_s[3];
        m_s[2] ^= t;
        m_s[3] = rotl(m_s[3], 45);
        return result;
    }

    // Uniform integer in [0, n) without modulo bias (rejects the first 2^64 mod n values); n >= 1.
    std::uint64_t below(std::uint64_t n) noexcept {
        const std::uint64_t threshold = (0 - n) % n; // 2^64 mod n
        for (;;) {
            const std::uint64_t x = next_u64();
            if (x >= threshold) return x % n;
        }
    }

    // Conversions go through int64: the values fit in 53 bits, and signed conversion is one instruction.
    double uniform() noexcept { return to_double(next_u64() >> 11) * 0x1p-53; }           // [0, 1)
    double uniform_pos() noexcept { return to_double((next_u64() >> 11) + 1) * 0x1p-53; } // (0, 1]

    // A standard normal deviate. One 64-bit draw supplies the layer (8 bits), the sign (1 bit) and a
    // 53-bit uniform, so draws are independent. The common case is kept small enough to inline; the
    // tail and wedge cases (about 1% of draws) are out of line.
    double normal() noexcept { return normal(detail::ziggurat()); }

    void fill_normal(std::span<double> out, double sigma = 1.0) noexcept {
        const auto& z = detail::ziggurat();
        for (double& v : out)
            v = sigma * normal(z);
    }

private:
    double normal(const detail::ziggurat_tables& z) noexcept {
        const std::uint64_t bits = next_u64();
        const int i = static_cast<int>(bits & 0xff);
        const double x = to_double(bits >> 11) * 0x1p-53 * z.x[i];
        if (x < z.x[i + 1]) [[likely]] // inside the part of the layer that lies under the curve
            return (bits & 0x100) ? -x : x;
        return normal_slow(z, i, x, (bits & 0x100) != 0);
    }

    [[gnu::noinline]] double normal_slow(const detail::ziggurat_tables& z, int i, double x,
                                         bool negative) noexcept {
        for (;;) {
            if (i == 0) {
                // Tail beyond R (Marsaglia's method): R + a with density ∝ exp(-R a) exp(-a^2/2).
                for (;;) {
                    const double a = -detail::det_log(uniform_pos()) / z.r;
                    const double b = -detail::det_log(uniform_pos());
                    if (2.0 * b >= a * a) return negative ? -(z.r + a) : z.r + a;
                }
            }
            // Wedge between the layer's rectangle and the curve: accept when a uniform height is below f(x).
            const double y = z.f[i] + uniform() * (z.f[i + 1] - z.f[i]);
            if (y < detail::det_exp(-0.5 * x * x)) return negative ? -x : x;
            // Rejected: a fresh draw, exactly as the fast path would make it.
            const std::uint64_t bits = next_u64();
            i = static_cast<int>(bits & 0xff);
            negative = (bits & 0x100) != 0;
            x = to_double(bits >> 11) * 0x1p-53 * z.x[i];
            if (x < z.x[i + 1]) return negative ? -x : x;
        }
    }

    static double to_double(std::uint64_t below_2_53) noexcept {
        return static_cast<double>(static_cast<std::int64_t>(below_2_53));
    }
    static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
        return (x << k) | (x >> (64 - k));
    }
    std::array<std::uint64_t, 4> m_s{};
};

} // namespace lorafleet
