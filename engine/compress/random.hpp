// Deterministic pseudo-random numbers for the compression core: xoshiro256** seeded by splitmix64, and
// a Box-Muller normal generator. Ours rather than <random>'s distributions because those are
// implementation-defined (libstdc++ and libc++ give different std::normal_distribution streams), and a
// seeded compression must give the same result on every platform.
#pragma once

#include "engine/compress/dense.hpp"

#include <cmath>
#include <cstdint>
#include <numbers>

namespace lorafleet::compress {

// splitmix64 step: used to expand one 64-bit seed into independent generator states.
inline std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// xoshiro256** with normal deviates by the Box-Muller transform (the second value of each pair is cached).
class rng {
public:
    explicit rng(std::uint64_t seed, std::uint64_t stream = 0) {
        std::uint64_t sm = seed ^ (stream * 0xd1b54a32d192ed03ull);
        for (auto& w : m_s)
            w = splitmix64(sm);
    }

    std::uint64_t next_u64() {
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

    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    // Uniform integer in [0, n) (n > 0), by rejection so it is unbiased.
    std::uint64_t below(std::uint64_t n) {
        const std::uint64_t limit = ~std::uint64_t(0) - (~std::uint64_t(0) % n);
        std::uint64_t x = 0;
        do
            x = next_u64();
        while (x >= limit);
        return x % n;
    }

    double normal() {
        if (m_have_spare) {
            m_have_spare = false;
            return m_spare;
        }
        double u1 = 0.0;
        do
            u1 = uniform();
        while (u1 <= 0.0);
        const double u2 = uniform();
        const double radius = std::sqrt(-2.0 * std::log(u1));
        const double angle = 2.0 * std::numbers::pi * u2;
        m_spare = radius * std::sin(angle);
        m_have_spare = true;
        return radius * std::cos(angle);
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

    std::uint64_t m_s[4] = {};
    double m_spare = 0.0;
    bool m_have_spare = false;
};

// A [rows, cols] matrix of independent standard normal entries, filled column by column.
inline matrix gaussian_matrix(std::int64_t rows, std::int64_t cols, rng& g) {
    matrix m(rows, cols);
    for (auto& x : m.data)
        x = static_cast<float>(g.normal());
    return m;
}

// A random orthonormal [rows, cols] basis (rows >= cols): QR of a Gaussian matrix.
inline matrix random_orthonormal(std::int64_t rows, std::int64_t cols, rng& g) {
    return orthonormalize(gaussian_matrix(rows, cols, g));
}

} // namespace lorafleet::compress
