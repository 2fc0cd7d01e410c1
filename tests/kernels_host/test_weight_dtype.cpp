// kernels/weight_dtype.hpp (the conversions the device upload uses on the host, and device code may use)
// against the engine's engine/core/float16.hpp on every 16-bit pattern, and float32 -> bf16 on a sweep of
// float32 patterns (normals, subnormals, ties, Inf, NaN); weight_to_f32 reads each dtype from an offset.
#include "engine/core/float16.hpp"
#include "kernels/weight_dtype.hpp"

#include <QtTest/QtTest>

#include <bit>
#include <cmath>
#include <cstring>
#include <vector>

using namespace lorafleet;
namespace k = lorafleet::kernels;

namespace {

bool same(float a, float b) {
    if (std::isnan(a) || std::isnan(b))
        return std::isnan(a) && std::isnan(b) && std::signbit(a) == std::signbit(b);
    return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

} // namespace

class TestWeightDtype : public QObject {
    Q_OBJECT

private slots:
    void sixteenBitPatternsWidenLikeTheEngine() {
        for (std::uint32_t h = 0; h < 65536; ++h) {
            const auto bits = std::uint16_t(h);
            if (!same(k::weight_bf16_to_f32(bits), bf16_to_f32(bits)))
                QFAIL(qPrintable(QString("bf16 %1").arg(h)));
            if (!same(k::weight_f16_to_f32(bits), f16_to_f32(bits)))
                QFAIL(qPrintable(QString("f16 %1").arg(h)));
        }
    }

    void float32NarrowsToBf16LikeTheEngine() {
        // Every 2^12-th pattern plus its neighbours hits ties (low 16 bits 0x8000), Inf, NaN and subnormals.
        for (std::uint64_t u = 0; u <= 0xffffffffull; u += 4093) {
            for (const std::uint32_t v :
                 {std::uint32_t(u), std::uint32_t(u) | 0x8000u, std::uint32_t(u) & ~0xffffu}) {
                const float f = std::bit_cast<float>(v);
                QCOMPARE(k::weight_f32_to_bf16(f), f32_to_bf16(f));
            }
        }
    }

    void weightToF32ReadsEachDtype() {
        const std::vector<float> values = {1.5f, -2.25f, 0.0f, 3.0e-5f, 65504.0f, -0.125f, 7.0f};
        std::vector<std::uint16_t> bf(values.size()), hf(values.size());
        for (std::size_t i = 0; i < values.size(); ++i) {
            bf[i] = f32_to_bf16(values[i]);
            hf[i] = f32_to_f16(values[i]);
        }
        std::vector<float> out(5);
        k::weight_to_f32(values.data(), k::weight_f32, 2, 5, out.data());
        for (std::size_t i = 0; i < 5; ++i)
            QCOMPARE(out[i], values[i + 2]);
        k::weight_to_f32(bf.data(), k::weight_bf16, 2, 5, out.data());
        for (std::size_t i = 0; i < 5; ++i)
            QCOMPARE(out[i], bf16_to_f32(bf[i + 2]));
        k::weight_to_f32(hf.data(), k::weight_f16, 2, 5, out.data());
        for (std::size_t i = 0; i < 5; ++i)
            QCOMPARE(out[i], f16_to_f32(hf[i + 2]));
        QCOMPARE(k::weight_dtype_size(k::weight_f32), std::size_t(4));
        QCOMPARE(k::weight_dtype_size(k::weight_bf16), std::size_t(2));
        QCOMPARE(k::weight_dtype_size(k::weight_f16), std::size_t(2));
    }
};

QTEST_GUILESS_MAIN(TestWeightDtype)
#include "test_weight_dtype.moc"
