// CudaLinalgOps::qr_many on a real device (label gpu): matrices of mixed shapes uploaded in one copy and
// factored by ONE kernel launch (kernels::qr_thin_many, one block per matrix) give, for every matrix, BIT FOR
// BIT what the CPU emulation of that kernel gives (kernels::qr_householder_host with the kernel's block
// size: the same functions in the same order, every rounding explicit, see kernels/householder_qr.hpp),
// and what qr() gives it alone (cuSOLVER sgeqrf / sorgqr) and the host's LAPACK qr() within the bound
// derived in tests/kernels_host/qr_reference.hpp, with LAPACK's R diagonal signs, Q^T Q = I and Q R = A.
// The subspace step's sizes (25 [Q, M Q] of 4096 x 32 and a 14336 x 32) too. NaN input is reported as a
// device error; a matrix with fewer rows than columns is rejected. Without a usable device main() exits
// 77 (skipped).
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/backend/device_error.hpp"
#include "engine/compress/dense.hpp"
#include "engine/core/error.hpp"
#include "kernels/device_probe.hpp"
#include "kernels/householder_qr.hpp"
#include "tests/kernels_host/qr_reference.hpp"

#include <QtTest/QtTest>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

using namespace lorafleet;
using namespace lorafleet::compress;

namespace {

bool same_bits(const matrix& a, const std::vector<float>& b) {
    return a.data.size() == b.size() && std::memcmp(a.data.data(), b.data(), b.size() * sizeof(float)) == 0;
}

// |a - b| entrywise within dq (Q) / dr (R) of qr_reference.hpp for two fp32 QRs of `in` (ours: double
// Householder; theirs: an fp32 Householder), where that bound is informative; R's diagonal signs equal.
QString compare_fp32(const matrix& in, const std::pair<matrix, matrix>& ours,
                     const std::pair<matrix, matrix>& theirs) {
    using namespace lorafleet::qr_test;
    const auto ad = widen(in.data.data(), in.rows, in.cols, in.rows);
    const double kappa = condition(ad), g32 = householder_g(in.rows, in.cols, u32),
                 g64 = householder_g(in.rows, in.cols, u64);
    const double dq = q_distance(kappa, in.cols, g32) + q_distance(kappa, in.cols, g64);
    if (!(dq < 0.5)) return {};
    const double dr = r_distance(kappa, in.cols, g32, norm2(ad), frobenius(ad)) +
                      r_distance(kappa, in.cols, g64, norm2(ad), frobenius(ad));
    for (std::size_t i = 0; i < ours.first.data.size(); ++i)
        if (!(std::abs(ours.first.data[i] - theirs.first.data[i]) <= dq + u32 * std::abs(ours.first.data[i])))
            return QString("Q entry %1: %2 vs %3 (bound %4)")
                .arg(i)
                .arg(ours.first.data[i])
                .arg(theirs.first.data[i])
                .arg(dq);
    for (std::size_t i = 0; i < ours.second.data.size(); ++i)
        if (!(std::abs(ours.second.data[i] - theirs.second.data[i]) <=
              dr + u32 * std::abs(ours.second.data[i])))
            return QString("R entry %1: %2 vs %3 (bound %4)")
                .arg(i)
                .arg(ours.second.data[i])
                .arg(theirs.second.data[i])
                .arg(dr);
    const auto ref = lapack_qr_f64(ad);
    for (std::int64_t k = 0; k < in.cols; ++k)
        if (std::abs(ref.alpha[std::size_t(k)]) > 10 * (dq + g32) * column_norm(ad, k) &&
            (ours.second(k, k) < 0) != (theirs.second(k, k) < 0))
            return QString("R(%1, %1) sign").arg(k);
    return {};
}

} // namespace

class TestQrManyCuda : public QObject {
    Q_OBJECT

private slots:
    void manyEqualsEmulationBitForBitAndLapack() {
        std::mt19937 rng(3);
        std::normal_distribution<float> g;
        const std::vector<std::pair<int, int>> shapes = {{96, 8},  {96, 8}, {96, 8},  {40, 16},  {33, 1},
                                                         {12, 12}, {64, 0}, {257, 9}, {1001, 17}};
        std::vector<matrix> in;
        for (auto [m, n] : shapes) {
            matrix a(m, n);
            for (auto& x : a.data)
                x = g(rng);
            in.push_back(a);
        }
        // A zero column and a duplicate column (rank-deficient): still orthonormal, still bit for bit.
        matrix d(50, 6);
        for (auto& x : d.data)
            x = g(rng);
        for (int i = 0; i < 50; ++i) {
            d(i, 2) = 0.0f;
            d(i, 4) = d(i, 1);
        }
        in.push_back(d);
        CudaLinalgOps ops(std::size_t(256) << 20);
        const auto before = ops.batched_counters();
        const auto many = ops.qr_many(in);
        const auto after = ops.batched_counters();
        QCOMPARE(after.calls, before.calls + 1);
        QCOMPARE(after.launches, before.launches + 1); // one kernel for every matrix
        QCOMPARE(after.transfers, before.transfers + 5);
        QCOMPARE(many.size(), in.size());
        for (std::size_t j = 0; j < in.size(); ++j) {
            const auto& [q, r] = many[j];
            QCOMPARE(q.rows, in[j].rows);
            QCOMPARE(q.cols, in[j].cols);
            QCOMPARE(r.rows, in[j].cols);
            if (in[j].cols == 0) continue;
            std::vector<float> eq = in[j].data, er(std::size_t(in[j].cols * in[j].cols));
            QCOMPARE(kernels::qr_householder_host(in[j].rows, in[j].cols, eq.data(), in[j].rows, er.data(),
                                                  kernels::qr_block_threads),
                     0);
            QVERIFY2(same_bits(q, eq),
                     qPrintable(QString("Q of matrix %1 differs from the emulation").arg(j)));
            QVERIFY2(same_bits(r, er),
                     qPrintable(QString("R of matrix %1 differs from the emulation").arg(j)));
            // Q^T Q = I within double Householder's distance to orthogonal (eo = sqrt(n) m n 2^-53) plus Q's
            // fp32 rounding (2u + u^2) and this double sum's rounding (qr_reference.hpp).
            const double eo =
                std::sqrt(double(q.cols)) * qr_test::householder_g(q.rows, q.cols, qr_test::u64);
            const double orth = (2 * qr_test::u32 + qr_test::u32 * qr_test::u32) * (1 + eo) * (1 + eo) +
                                2 * eo + eo * eo + 1.01 * double(q.rows) * qr_test::u64;
            for (std::int64_t a = 0; a < q.cols; ++a)
                for (std::int64_t b = 0; b < q.cols; ++b) {
                    double dot = 0;
                    for (std::int64_t i = 0; i < q.rows; ++i)
                        dot += double(q(i, a)) * double(q(i, b));
                    QVERIFY(std::abs(dot - (a == b ? 1.0 : 0.0)) <= orth);
                }
            for (std::int64_t i = 0; i < r.rows; ++i)
                for (std::int64_t k = 0; k < i; ++k)
                    QCOMPARE(r(i, k), 0.0f);
            if (j + 1 == in.size()) continue; // rank-deficient: Q's trailing columns are not determined
            auto e = compare_fp32(in[j], many[j], ops.qr(in[j]));
            QVERIFY2(e.isEmpty(), qPrintable(QString("vs cuSOLVER, matrix %1: %2").arg(j).arg(e)));
            e = compare_fp32(in[j], many[j], qr(in[j]));
            QVERIFY2(e.isEmpty(), qPrintable(QString("vs LAPACK, matrix %1: %2").arg(j).arg(e)));
        }
        QVERIFY(ops.qr_many({}).empty());
    }

    void subspaceStepSizesBitForBit() {
        std::mt19937 rng(4);
        std::normal_distribution<float> g;
        std::vector<matrix> in;
        for (int j = 0; j < 25; ++j) {
            matrix a(4096, 32);
            for (auto& x : a.data)
                x = g(rng);
            in.push_back(a);
        }
        matrix big(14336, 32);
        for (auto& x : big.data)
            x = g(rng);
        in.push_back(big);
        CudaLinalgOps ops(std::size_t(1) << 30);
        const auto before = ops.batched_counters();
        const auto many = ops.qr_many(in);
        QCOMPARE(ops.batched_counters().launches, before.launches + 1);
        // Printed, not asserted (speed belongs to benchmarks): the one-launch batch against one qr() per
        // matrix (cuSOLVER sgeqrf + sorgqr, a wait each), warm.
        const auto t0 = std::chrono::steady_clock::now();
        (void)ops.qr_many(in);
        const auto t1 = std::chrono::steady_clock::now();
        for (const auto& m : in)
            (void)ops.qr(m);
        const auto t2 = std::chrono::steady_clock::now();
        std::printf(
            "qr_many of 25 x [4096, 32] + [14336, 32]: %.2f ms in one launch; one qr() each: %.2f ms\n",
            std::chrono::duration<double, std::milli>(t1 - t0).count(),
            std::chrono::duration<double, std::milli>(t2 - t1).count());
        for (std::size_t j = 0; j < in.size(); j += 5) { // every fifth, and the 14336-row one
            std::vector<float> eq = in[j].data, er(32 * 32);
            QCOMPARE(kernels::qr_householder_host(in[j].rows, 32, eq.data(), in[j].rows, er.data(),
                                                  kernels::qr_block_threads),
                     0);
            QVERIFY2(same_bits(many[j].first, eq), qPrintable(QString("Q of matrix %1").arg(j)));
            QVERIFY2(same_bits(many[j].second, er), qPrintable(QString("R of matrix %1").arg(j)));
        }
    }

    void nanInputIsAnError() {
        CudaLinalgOps ops(std::size_t(64) << 20);
        std::vector<matrix> in = {matrix(8, 4), matrix(9, 3)};
        for (auto& m : in)
            for (auto& x : m.data)
                x = 1.0f + float(&x - m.data.data());
        in[1](4, 2) = std::nanf("");
        QVERIFY_THROWS_EXCEPTION(backend::device_error, ops.qr_many(in));
        in[1](4, 2) = 1.0f;
        QCOMPARE(ops.qr_many(in).size(), std::size_t(2)); // the ops still work
    }

    void wideMatrixIsRejected() {
        CudaLinalgOps ops(std::size_t(64) << 20);
        std::vector<matrix> in = {matrix(8, 4), matrix(3, 5)};
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, ops.qr_many(in));
    }
};

int main(int argc, char** argv) {
    const auto probe = kernels::probe_cuda_devices();
    if (!probe.available) {
        std::printf("SKIP: no usable CUDA device: %s\n", probe.reason.c_str());
        return 77; // CTest: SKIP_RETURN_CODE
    }
    TestQrManyCuda t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_qr_many_cuda.moc"
