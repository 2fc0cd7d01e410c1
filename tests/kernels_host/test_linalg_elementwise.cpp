// The __host__ __device__ element logic of the linear-algebra kernels (kernels/linalg_elementwise.hpp),
// run on the CPU against independent references: binary16 / bfloat16 decoding against the arithmetic
// definition (ldexp), the gather-transpose index against an explicit transpose of PEFT's lora_B layout,
// widening to double (exact) and narrowing back (round to nearest even) of the fp64 eigen paths,
// and the build's linalg entry points failing with a linalg_error (not a crash) when no device is usable.
#include "kernels/device_probe.hpp"
#include "kernels/linalg_device.hpp"
#include "kernels/linalg_elementwise.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <cstring>
#include <vector>

using namespace lorafleet::kernels;

namespace {

std::uint32_t bits(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

// IEEE binary16 by its definition: (-1)^s 2^(e-15) (1 + m/1024), subnormal 2^-14 (m/1024).
double f16_reference(std::uint16_t h) {
    const int s = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v;
    if (e == 0)
        v = std::ldexp(m / 1024.0, -14);
    else if (e == 31)
        v = m == 0 ? INFINITY : NAN;
    else
        v = std::ldexp(1.0 + m / 1024.0, e - 15);
    return s ? -v : v;
}

} // namespace

class TestLinalgElementwise : public QObject {
    Q_OBJECT

private slots:
    void f16DecodesEveryValue() {
        for (std::uint32_t h = 0; h < 65536; ++h) {
            const float got = f16_bits_to_float(static_cast<std::uint16_t>(h));
            const double want = f16_reference(static_cast<std::uint16_t>(h));
            if (std::isnan(want)) {
                QVERIFY2(std::isnan(got), qPrintable(QString::number(h, 16)));
                // The payload survives (shifted into the float mantissa).
                QCOMPARE(bits(got) & 0x007fe000u, static_cast<std::uint32_t>(h & 0x3ff) << 13);
                continue;
            }
            QVERIFY2(double(got) == want,
                     qPrintable(QString("h=%1 got %2 want %3").arg(h, 0, 16).arg(got).arg(want)));
            QCOMPARE(std::signbit(got), bool(h & 0x8000));
        }
    }

    void bf16IsTheUpperHalfOfAFloat() {
        const float samples[] = {0.0f, -0.0f, 1.0f, -2.5f, 3.1415926f, 1e-30f, -6.5e4f, INFINITY, 1e30f};
        for (const float f : samples) {
            const auto h = static_cast<std::uint16_t>(bits(f) >> 16);
            const float got = bf16_bits_to_float(h);
            // Truncation to bf16 keeps 8 mantissa bits: relative error < 2^-7, exact for these upper bits.
            QCOMPARE(bits(got), bits(f) & 0xffff0000u);
            if (std::isfinite(f) && f != 0.0f) QVERIFY(std::abs(got - f) <= std::abs(f) * (1.0f / 128.0f));
        }
    }

    void gatherTransposeIndexTransposesLoraB() {
        // Two adapters' lora_B, row-major [d, r_k], concatenated as the upload stages them.
        const std::int64_t d = 5;
        const std::int64_t ranks[] = {3, 2};
        std::vector<float> raw;
        std::vector<std::vector<std::vector<float>>> b(2); // b[k][row][col]
        for (int k = 0; k < 2; ++k) {
            b[k].assign(d, std::vector<float>(ranks[k]));
            for (std::int64_t i = 0; i < d; ++i)
                for (std::int64_t j = 0; j < ranks[k]; ++j) {
                    b[k][i][j] = float(100 * k + 10 * i + j);
                    raw.push_back(b[k][i][j]);
                }
        }
        // Destination column c of T_u = [B_1 B_2] (column-major [d, 5]).
        std::int64_t base = 0, col = 0;
        for (int k = 0; k < 2; ++k) {
            for (std::int64_t j = 0; j < ranks[k]; ++j, ++col)
                for (std::int64_t i = 0; i < d; ++i)
                    QCOMPARE(raw[std::size_t(block_transpose_source(i, j, base, ranks[k]))], b[k][i][j]);
            base += d * ranks[k];
        }
        QCOMPARE(col, std::int64_t(5));
        QCOMPARE(reversed_column(0, 4), std::int64_t(3));
        QCOMPARE(reversed_column(3, 4), std::int64_t(0));
    }

    void sumSquaresAccumulatesInDouble() {
        // 2^24 + 1 ones: a float accumulator stalls at 2^24, the double one is exact.
        const std::vector<float> ones((1u << 24) + 1, 1.0f);
        QCOMPARE(sum_squares(ones.data(), std::int64_t(ones.size())), double((1u << 24) + 1));
        const float v[] = {3.0f, -4.0f, 0.5f};
        QCOMPARE(sum_squares(v, 3), 25.25);
        QCOMPARE(sum_squares(v, 0), 0.0);
    }

    void widenIsExactAndNarrowRoundsToNearestEven() {
        // Every float widens to the same value (the fp64 eigen paths lose nothing on the way in).
        const float samples[] = {
            0.0f,    -0.0f,         1.0f,     -2.5f,    3.1415926f, 1e-40f /* subnormal */,
            -6.5e4f, 3.4028235e38f, INFINITY, -INFINITY};
        for (const float f : samples) {
            const double w = widen(f);
            QCOMPARE(static_cast<float>(w), f);
            QCOMPARE(std::signbit(w), std::signbit(f));
            QVERIFY(w == static_cast<double>(f) || (std::isnan(w) && std::isnan(f)));
        }
        QVERIFY(std::isnan(widen(NAN)));
        // narrow(x) is the float nearest to x (against nextafter neighbours), ties to the even mantissa.
        std::uint64_t state = 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < 20000; ++i) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            const double x = std::ldexp(static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5,
                                        static_cast<int>((state >> 3) % 200) - 100);
            const float n = narrow(x);
            const float up = std::nextafter(n, INFINITY), down = std::nextafter(n, -INFINITY);
            const double e = std::abs(x - double(n));
            QVERIFY2(e <= std::abs(x - double(up)) && e <= std::abs(x - double(down)),
                     qPrintable(QString::number(x)));
        }
        const double tie = 1.0 + std::ldexp(1.0, -24);          // halfway between 1 and 1 + 2^-23
        QCOMPARE(bits(narrow(tie)), bits(1.0f));                // even mantissa (0) wins
        const double tie_up = 1.0 + 3.0 * std::ldexp(1.0, -24); // halfway between 1 + 2^-23 and 1 + 2^-22
        QCOMPARE(bits(narrow(tie_up)), bits(1.0f + std::ldexp(1.0f, -22)));
        QCOMPARE(narrow(1e300), INFINITY);
        QCOMPARE(narrow(-1e300), -INFINITY);
        QVERIFY(std::isnan(narrow(std::nan(""))));
    }

    void unusableDeviceIsAnErrorNotACrash() {
        const auto probe = probe_cuda_devices();
        QCOMPARE(linalg_compiled(), probe.compiled);
        if (probe.available) QSKIP("a CUDA device is usable here: tests/kernels covers the device path");
        bool thrown = false;
        try {
            linalg_context ctx(1 << 20);
        } catch (const linalg_error& e) {
            thrown = true;
            QVERIFY(!e.api().empty());
            QVERIFY(std::string(e.what()).size() > e.api().size());
            if (!probe.compiled) QVERIFY(std::string(e.what()).find("not compiled") != std::string::npos);
        }
        QVERIFY(thrown);
    }
};

QTEST_APPLESS_MAIN(TestLinalgElementwise)
#include "test_linalg_elementwise.moc"
