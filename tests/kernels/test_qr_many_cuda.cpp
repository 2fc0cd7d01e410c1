// CudaLinalgOps::qr_many on a real device (label gpu): matrices of mixed shapes uploaded in one copy and
// factored back to back (kernels::qr_thin_many) give, for every matrix, what qr() gives it alone and the
// host's Householder QR (same R diagonal signs: LAPACK's convention), with Q^T Q = I and Q R = A; a
// matrix with fewer rows than columns is rejected. Without a usable device main() exits 77 (skipped).
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/compress/dense.hpp"
#include "engine/core/error.hpp"
#include "kernels/device_probe.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <cstdio>
#include <random>

using namespace lorafleet;
using namespace lorafleet::compress;

namespace {

float max_abs_diff(const matrix& a, const matrix& b) {
    float d = 0.0f;
    for (std::size_t i = 0; i < a.data.size(); ++i)
        d = std::max(d, std::abs(a.data[i] - b.data[i]));
    return d;
}

} // namespace

class TestQrManyCuda : public QObject {
    Q_OBJECT

private slots:
    void manyEqualsOneByOneAndHost() {
        std::mt19937 rng(3);
        std::normal_distribution<float> g;
        const std::vector<std::pair<int, int>> shapes = {{96, 8}, {96, 8},  {96, 8}, {40, 16},
                                                         {33, 1}, {12, 12}, {64, 0}};
        std::vector<matrix> in;
        for (auto [m, n] : shapes) {
            matrix a(m, n);
            for (auto& x : a.data)
                x = g(rng);
            in.push_back(a);
        }
        CudaLinalgOps ops(std::size_t(256) << 20);
        const auto before = ops.batched_counters();
        const auto many = ops.qr_many(in);
        const auto after = ops.batched_counters();
        QCOMPARE(after.calls, before.calls + 1);
        QCOMPARE(after.transfers, before.transfers + 3);
        QCOMPARE(many.size(), in.size());
        for (std::size_t j = 0; j < in.size(); ++j) {
            const auto& [q, r] = many[j];
            QCOMPARE(q.rows, in[j].rows);
            QCOMPARE(q.cols, in[j].cols);
            QCOMPARE(r.rows, in[j].cols);
            if (in[j].cols == 0) continue;
            const auto one = ops.qr(in[j]);
            QVERIFY(max_abs_diff(q, one.first) < 1e-5f);
            QVERIFY(max_abs_diff(r, one.second) < 1e-5f);
            const auto host = qr(in[j]);
            QVERIFY2(max_abs_diff(q, host.first) < 1e-4f, qPrintable(QString("matrix %1").arg(j)));
            QVERIFY(max_abs_diff(r, host.second) < 1e-4f * (1.0f + std::abs(host.second(0, 0))));
            for (std::int64_t i = 0; i < r.rows; ++i) {
                QVERIFY((r(i, i) < 0) == (host.second(i, i) < 0));
                for (std::int64_t k = 0; k < i; ++k)
                    QCOMPARE(r(i, k), 0.0f);
            }
            const auto qtq = gemm(op::t, q.view(), op::n, q.view());
            for (std::int64_t a = 0; a < qtq.rows; ++a)
                for (std::int64_t b = 0; b < qtq.cols; ++b)
                    QVERIFY(std::abs(qtq(a, b) - (a == b ? 1.0f : 0.0f)) < 1e-5f);
            QVERIFY(max_abs_diff(gemm(op::n, q.view(), op::n, r.view()), in[j]) < 1e-4f);
        }
        QVERIFY(ops.qr_many({}).empty());
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
