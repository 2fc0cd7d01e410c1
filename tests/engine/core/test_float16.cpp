// Exhaustive checks of engine/core/float16.hpp against independent references: the compiler's own
// IEEE binary16 type (_Float16, GCC 12+ on x86-64) for f16, and exact long double arithmetic (candidate
// neighbours, distance comparison, ties to even) for bf16. NaNs are compared as NaNs (payloads may differ).
#include "engine/core/float16.hpp"

#include <QtTest/QtTest>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using namespace lorafleet;

namespace {

std::uint32_t bits(float f) {
    return std::bit_cast<std::uint32_t>(f);
}

bool f16_is_nan(std::uint16_t h) {
    return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}
bool bf16_is_nan(std::uint16_t h) {
    return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
}

QString hex(std::uint32_t v) {
    return "0x" + QString::number(v, 16);
}

// The exact value of a bf16 bit pattern from its fields (sign, 8-bit exponent bias 127, 7-bit mantissa).
long double bf16_value(std::uint16_t h) {
    const int sign = (h >> 15) ? -1 : 1;
    const int exp = (h >> 7) & 0xff;
    const int mant = h & 0x7f;
    if (exp == 0xff) return mant ? std::numeric_limits<long double>::quiet_NaN() : sign * HUGE_VALL;
    if (exp == 0) return sign * std::ldexp(static_cast<long double>(mant), -126 - 7);
    return sign * std::ldexp(static_cast<long double>(128 + mant), exp - 127 - 7);
}

// float32 -> bf16 by arithmetic: bracket |f| between the two neighbouring multiples of the bf16 quantum
// at its binade, take the nearer, on a tie the one with an even multiple; 2^128 means overflow to Inf.
// Returns the result as float32 bits (bf16 << 16). Not for NaN.
std::uint32_t bf16_reference(float f) {
    if (f == 0.0f || std::isinf(f)) return bits(f);
    const long double a = std::fabs(static_cast<long double>(f));
    const int binade = std::max(std::ilogb(f), -126); // below 2^-126 the quantum is fixed (subnormals)
    const long double quantum = std::ldexp(1.0L, binade - 7);
    const long double k = std::floor(a / quantum); // exact: a / quantum has at most 24 significant bits
    const long double lo = k * quantum, hi = (k + 1) * quantum;
    long double r;
    if (a - lo < hi - a)
        r = lo;
    else if (hi - a < a - lo)
        r = hi;
    else
        r = std::fmod(k, 2.0L) == 0 ? lo : hi;
    const float out =
        r >= std::ldexp(1.0L, 128) ? std::numeric_limits<float>::infinity() : static_cast<float>(r);
    return bits(std::copysign(out, f));
}

// A spread of float32 inputs: every exponent (random bit patterns), the f16 range, and fixed edge values.
std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> in_f16_range(-70000.0f, 70000.0f);
    std::uniform_real_distribution<float> small(-1.0f / 16384, 1.0f / 16384); // f16 subnormals and below
    std::vector<float> out;
    out.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        switch (i % 3) {
        case 0:
            out.push_back(std::bit_cast<float>(std::uint32_t(rng())));
            break;
        case 1:
            out.push_back(in_f16_range(rng));
            break;
        default:
            out.push_back(small(rng));
            break;
        }
    }
    return out;
}

} // namespace

class TestFloat16 : public QObject {
    Q_OBJECT
private slots:
    // ---- IEEE binary16 -------------------------------------------------------------------------------
    void f16ToF32AllPatternsMatchFloat16Type() {
#ifdef __FLT16_MANT_DIG__
        int mismatches = 0;
        QString first;
        for (std::uint32_t i = 0; i < 65536; ++i) {
            const auto h = std::uint16_t(i);
            const float ref = static_cast<float>(std::bit_cast<_Float16>(h));
            const float got = f16_to_f32(h);
            const bool ok = std::isnan(ref) ? std::isnan(got) && std::signbit(got) == std::signbit(ref)
                                            : bits(got) == bits(ref);
            if (!ok && mismatches++ == 0) first = hex(i) + ": " + hex(bits(got)) + " != " + hex(bits(ref));
        }
        QVERIFY2(mismatches == 0, qPrintable(QString("%1 mismatches, first %2").arg(mismatches).arg(first)));
#else
        QSKIP("this compiler has no _Float16 type to compare with");
#endif
    }

    void f16RoundTripAllPatterns() {
        int nan_count = 0;
        for (std::uint32_t i = 0; i < 65536; ++i) {
            const auto h = std::uint16_t(i);
            const std::uint16_t back = f32_to_f16(f16_to_f32(h));
            if (f16_is_nan(h)) {
                ++nan_count;
                QVERIFY2(f16_is_nan(back) && (back & 0x8000u) == (h & 0x8000u), qPrintable(hex(i)));
            } else {
                QVERIFY2(back == h, qPrintable(hex(i) + " -> " + hex(back)));
            }
        }
        QCOMPARE(nan_count, 2 * 1023); // both signs, every non-zero mantissa with exponent 31
    }

    void f16KnownValues() {
        // Hand-derived encodings (sign | exponent << 10 | mantissa, bias 15).
        QCOMPARE(f32_to_f16(1.0f), std::uint16_t(0x3c00));
        QCOMPARE(f32_to_f16(-2.0f), std::uint16_t(0xc000));
        QCOMPARE(f32_to_f16(65504.0f), std::uint16_t(0x7bff));  // largest finite
        QCOMPARE(f32_to_f16(65519.99f), std::uint16_t(0x7bff)); // just below the overflow tie
        QCOMPARE(f32_to_f16(65520.0f), std::uint16_t(0x7c00));  // tie with 65536 rounds to even: Inf
        QCOMPARE(f32_to_f16(-65520.0f), std::uint16_t(0xfc00));
        QCOMPARE(f32_to_f16(0x1p-14f), std::uint16_t(0x0400)); // smallest normal
        QCOMPARE(f32_to_f16(0x1p-24f), std::uint16_t(0x0001)); // smallest subnormal
        QCOMPARE(f32_to_f16(0x1p-25f), std::uint16_t(0x0000)); // tie between 0 and 2^-24: even is 0
        QCOMPARE(f32_to_f16(std::nextafter(0x1p-25f, 1.0f)), std::uint16_t(0x0001));
        QCOMPARE(f32_to_f16(3 * 0x1p-25f), std::uint16_t(0x0002));    // tie between 1 and 2 quanta: even is 2
        QCOMPARE(f32_to_f16(1.0f + 0x1p-11f), std::uint16_t(0x3c00)); // tie: even mantissa 0
        QCOMPARE(f32_to_f16(1.0f + 3 * 0x1p-11f), std::uint16_t(0x3c02)); // tie: even mantissa 2
        QCOMPARE(f32_to_f16(-0.0f), std::uint16_t(0x8000));
        QCOMPARE(f32_to_f16(std::numeric_limits<float>::denorm_min()), std::uint16_t(0x0000));
        QCOMPARE(f32_to_f16(std::numeric_limits<float>::infinity()), std::uint16_t(0x7c00));
        QVERIFY(f16_is_nan(f32_to_f16(std::numeric_limits<float>::quiet_NaN())));
        QCOMPARE(f16_to_f32(0x3555), 0x1.554p-2f);
        QCOMPARE(f16_to_f32(0x0001), 0x1p-24f);
        QCOMPARE(f16_to_f32(0x03ff), 0x1.ff8p-15f); // largest subnormal: 1023 * 2^-24
    }

    void f32ToF16MatchesFloat16Type() {
#ifdef __FLT16_MANT_DIG__
        std::vector<float> inputs = random_floats(3'000'000, 1234);
        // Every tie between neighbouring f16 values, and the floats just either side of it.
        for (std::uint32_t h = 0; h < 0x7c00; ++h) {
            const double lo = double(static_cast<float>(std::bit_cast<_Float16>(std::uint16_t(h))));
            const double hi = h + 1 == 0x7c00
                                  ? 65536.0
                                  : double(static_cast<float>(std::bit_cast<_Float16>(std::uint16_t(h + 1))));
            const float mid = float((lo + hi) / 2); // exact: 12 significant bits
            for (const float f : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
                inputs.push_back(f);
                inputs.push_back(-f);
            }
        }
        const float edges[] = {0.0f,
                               -0.0f,
                               65504.0f,
                               65520.0f,
                               65536.0f,
                               1e30f,
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::min(),
                               std::numeric_limits<float>::denorm_min(),
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(),
                               0x1p-24f,
                               0x1p-25f,
                               0x1.8p-25f,
                               0x1p-26f,
                               0x1.ffcp-15f,
                               0x1.ffep-15f,
                               0x1.fffp-15f,
                               0x1p-14f};
        inputs.insert(inputs.end(), std::begin(edges), std::end(edges));

        std::size_t mismatches = 0;
        QString first;
        for (const float f : inputs) {
            const auto ref = std::bit_cast<std::uint16_t>(static_cast<_Float16>(f));
            const std::uint16_t got = f32_to_f16(f);
            const bool ok =
                std::isnan(f) ? f16_is_nan(got) && (got & 0x8000u) == (ref & 0x8000u) : got == ref;
            if (!ok && mismatches++ == 0)
                first =
                    QString("%1 (%2): %3 != %4").arg(double(f)).arg(hex(bits(f))).arg(hex(got)).arg(hex(ref));
        }
        QVERIFY2(mismatches == 0, qPrintable(QString("%1 mismatches, first %2").arg(mismatches).arg(first)));
#else
        QSKIP("this compiler has no _Float16 type to compare with");
#endif
    }

    // ---- bfloat16 ------------------------------------------------------------------------------------
    void bf16ToF32AllPatternsMatchFieldArithmetic() {
        for (std::uint32_t i = 0; i < 65536; ++i) {
            const auto h = std::uint16_t(i);
            const float got = bf16_to_f32(h);
            const long double ref = bf16_value(h);
            if (std::isnan(ref))
                QVERIFY2(std::isnan(got), qPrintable(hex(i)));
            else
                QVERIFY2(static_cast<long double>(got) == ref && std::signbit(got) == bool(h & 0x8000u),
                         qPrintable(hex(i)));
        }
    }

    void bf16RoundTripAllPatterns() {
        for (std::uint32_t i = 0; i < 65536; ++i) {
            const auto h = std::uint16_t(i);
            const std::uint16_t back = f32_to_bf16(bf16_to_f32(h));
            if (bf16_is_nan(h))
                QVERIFY2(bf16_is_nan(back) && (back & 0x8000u) == (h & 0x8000u), qPrintable(hex(i)));
            else
                QVERIFY2(back == h, qPrintable(hex(i) + " -> " + hex(back)));
        }
    }

    void bf16KnownValues() {
        QCOMPARE(f32_to_bf16(1.0f), std::uint16_t(0x3f80));
        QCOMPARE(f32_to_bf16(1.0f + 0x1p-8f), std::uint16_t(0x3f80));     // tie: even mantissa 0
        QCOMPARE(f32_to_bf16(1.0f + 3 * 0x1p-8f), std::uint16_t(0x3f82)); // tie: even mantissa 2
        QCOMPARE(f32_to_bf16(std::nextafter(1.0f + 0x1p-8f, 2.0f)), std::uint16_t(0x3f81));
        QCOMPARE(f32_to_bf16(std::numeric_limits<float>::max()), std::uint16_t(0x7f80)); // rounds to Inf
        QCOMPARE(f32_to_bf16(-0.0f), std::uint16_t(0x8000));
        QCOMPARE(f32_to_bf16(std::numeric_limits<float>::denorm_min()), std::uint16_t(0x0000));
        QVERIFY(bf16_is_nan(f32_to_bf16(std::numeric_limits<float>::quiet_NaN())));
        // A signalling NaN whose payload lies only in the low 16 bits must not become Inf.
        QVERIFY(bf16_is_nan(f32_to_bf16(std::bit_cast<float>(0x7f800001u))));
        QVERIFY(bf16_is_nan(f32_to_bf16(std::bit_cast<float>(0xff800001u))));
    }

    void f32ToBf16MatchesLongDoubleReference() {
        std::vector<float> inputs = random_floats(300'000, 99);
        // Ties between neighbouring bf16 values (exact in float32) and their float neighbours, in every
        // binade including subnormals and the overflow boundary.
        std::mt19937 rng(7);
        for (int i = 0; i < 20000; ++i) {
            const auto h = std::uint16_t(rng() & 0x7f7fu);
            const float tie = std::bit_cast<float>((std::uint32_t(h) << 16) | 0x8000u);
            for (const float f : {tie, std::nextafter(tie, 0.0f), std::nextafter(tie, HUGE_VALF)}) {
                inputs.push_back(f);
                inputs.push_back(-f);
            }
        }
        const float edges[] = {std::bit_cast<float>(0x7f7f8000u),
                               std::bit_cast<float>(0x7f7f7fffu),
                               std::numeric_limits<float>::max(),
                               std::numeric_limits<float>::min(),
                               std::numeric_limits<float>::denorm_min(),
                               std::bit_cast<float>(0x00008000u),
                               std::bit_cast<float>(0x00018000u),
                               std::bit_cast<float>(0x007fffffu),
                               0.0f,
                               -0.0f,
                               std::numeric_limits<float>::infinity()};
        inputs.insert(inputs.end(), std::begin(edges), std::end(edges));

        std::size_t mismatches = 0, checked = 0;
        QString first;
        for (const float f : inputs) {
            if (std::isnan(f)) {
                QVERIFY(bf16_is_nan(f32_to_bf16(f)));
                continue;
            }
            const std::uint32_t ref = bf16_reference(f);
            QVERIFY((ref & 0xffffu) == 0); // the reference always lands on a bf16 value
            const std::uint16_t got = f32_to_bf16(f);
            ++checked;
            if (got != (ref >> 16) && mismatches++ == 0)
                first = QString("%1 (%2): %3 != %4")
                            .arg(double(f))
                            .arg(hex(bits(f)))
                            .arg(hex(got))
                            .arg(hex(ref >> 16));
        }
        QVERIFY(checked > 300'000);
        QVERIFY2(mismatches == 0, qPrintable(QString("%1 mismatches, first %2").arg(mismatches).arg(first)));
    }
};

QTEST_APPLESS_MAIN(TestFloat16)
#include "test_float16.moc"
