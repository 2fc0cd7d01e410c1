// kernels/sampling_row.hpp on the CPU against the engine's sampler: fed the same uniforms as the sampler
// draws (random_stream::uniform from the same seed, one per non-greedy draw), sample_row must choose the
// very same token for every combination of temperature, top-k and top-p, on odd vocabularies, with ties
// and non-finite logits in the rows; and so must the device's block-parallel path (bitonic sort, parallel
// weights, one-thread draw), emulated stage by stage.
#include "engine/core/random.hpp"
#include "engine/serve/scheduling/sampler.hpp"
#include "kernels/sampling_row.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <limits>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace k = lorafleet::kernels;

namespace {

// The sampled-row path of serve_kernels.cu's sample_rows_kernel, emulated: the block's count / max, the
// slot_count, the bitonic stages (each stage's compare-exchanges in reverse slot order, to show they are
// independent), the weights, then the one-thread draw. Scratch starts as garbage / NaN.
int emulate_device_sampled_row(const std::vector<float>& row, const k::sampling_row_params& P, double u) {
    const int vocab = int(row.size());
    int keep = 0;
    float mx = -INFINITY;
    for (float x : row)
        if (k::finite_logit(x)) {
            ++keep;
            mx = std::max(mx, x);
        }
    if (keep == 0) return -1;
    const bool cut = P.top_k > 0 && P.top_k < keep;
    const bool order = cut || P.top_p < 1.0f;
    const int slot_count = order ? k::sampling_sort_size(vocab) : vocab;
    std::vector<int> ids(static_cast<std::size_t>(k::sampling_sort_size(vocab)), 123456);
    std::vector<double> prob(static_cast<std::size_t>(vocab), std::nan(""));
    for (int i = 0; i < slot_count; ++i)
        ids[std::size_t(i)] = k::sampling_slot(row.data(), vocab, i);
    if (order)
        for (int kk = 2; kk <= slot_count; kk <<= 1)
            for (int j = kk >> 1; j > 0; j >>= 1)
                for (int i = slot_count; i-- > 0;)
                    k::sampling_bitonic_step(row.data(), ids.data(), kk, j, i);
    const int n = order ? (cut ? P.top_k : keep) : vocab;
    for (int i = 0; i < n; ++i)
        prob[std::size_t(i)] =
            ids[std::size_t(i)] >= 0
                ? k::sampling_weight(row[std::size_t(ids[std::size_t(i)])], mx, P.temperature)
                : 0.0;
    return k::sample_from_weights(ids.data(), prob.data(), n, P.top_p, u);
}

} // namespace

class TestServeSamplingRow : public QObject {
    Q_OBJECT
private slots:
    void sampleRowChoosesWhatTheSamplerChooses() {
        const float temps[] = {0.0f, 0.3f, 1.0f, 2.5f};
        const int top_ks[] = {0, 1, 2, 19, 5000};
        const float top_ps[] = {1.0f, 0.9f, 0.5f, 0.01f};
        int draws = 0, distinct_choices = 0, device_draws = 0;
        for (int vocab : {1, 2, 19, 111, 989}) {
            for (float temp : temps)
                for (int top_k : top_ks)
                    for (float top_p : top_ps) {
                        sampling_params params;
                        params.temperature = temp;
                        params.top_k = top_k;
                        params.top_p = top_p;
                        params.seed = std::uint64_t(vocab * 1000 + top_k) + std::uint64_t(temp * 10);
                        sampler cpu(params);
                        random_stream uniforms(params.seed);
                        random_stream logit_rng(params.seed + 99);
                        const k::sampling_row_params p{temp, top_k, top_p};
                        std::vector<int> ids(static_cast<std::size_t>(vocab));
                        std::vector<double> prob(static_cast<std::size_t>(vocab));
                        std::vector<int> seen;
                        for (int row = 0; row < 12; ++row) {
                            std::vector<float> logits(static_cast<std::size_t>(vocab));
                            for (auto& x : logits) // coarse values: plenty of ties
                                x = std::round(float(logit_rng.normal() * 2.0) * 2.0f) / 2.0f;
                            if (vocab > 2 && row % 3 == 1) {
                                logits[0] = std::numeric_limits<float>::quiet_NaN();
                                logits[std::size_t(vocab) - 1] = std::numeric_limits<float>::infinity();
                                logits[std::size_t(vocab) / 2] = -std::numeric_limits<float>::infinity();
                            }
                            const int want = cpu.sample(logits);
                            const bool greedy = temp == 0.0f || top_k == 1;
                            const double u = greedy ? 0.0 : uniforms.uniform();
                            const int got =
                                k::sample_row(logits.data(), vocab, p, u, ids.data(), prob.data());
                            QVERIFY2(got == want,
                                     qPrintable(QString("vocab %1 T %2 k %3 p %4 row %5: %6 vs %7")
                                                    .arg(vocab)
                                                    .arg(temp)
                                                    .arg(top_k)
                                                    .arg(top_p)
                                                    .arg(row)
                                                    .arg(got)
                                                    .arg(want)));
                            QVERIFY(std::isfinite(logits[std::size_t(got)]));
                            if (!greedy) {
                                const int dev = emulate_device_sampled_row(logits, p, u);
                                QVERIFY2(dev == want,
                                         qPrintable(QString("device path: vocab %1 T %2 k %3 p %4 "
                                                            "row %5: %6 vs %7")
                                                        .arg(vocab)
                                                        .arg(temp)
                                                        .arg(top_k)
                                                        .arg(top_p)
                                                        .arg(row)
                                                        .arg(dev)
                                                        .arg(want)));
                                ++device_draws;
                            }
                            if (std::find(seen.begin(), seen.end(), got) == seen.end()) seen.push_back(got);
                            ++draws;
                        }
                        if (seen.size() > 1) ++distinct_choices;
                    }
        }
        QVERIFY(draws > 3000);
        QVERIFY(device_draws > 2000);
        QVERIFY(distinct_choices > 50); // the comparison covered real sampling, not only greedy picks
    }

    void greedyTakesTheLowestIdOnTiesAndSkipsNonFinite() {
        const float nan = std::numeric_limits<float>::quiet_NaN(),
                    inf = std::numeric_limits<float>::infinity();
        const float row[] = {nan, 1.0f, inf, 3.0f, -inf, 3.0f};
        QCOMPARE(k::greedy_row(row, 6), 3);
        const float none[] = {nan, inf, -inf};
        QCOMPARE(k::greedy_row(none, 3), -1);
        int ids[3];
        double prob[3];
        QCOMPARE(k::sample_row(none, 3, k::sampling_row_params{1.0f, 0, 0.9f}, 0.5, ids, prob), -1);
    }

    void sortOrdersByLogitThenId() {
        const float logits[] = {0.5f, 2.0f, 0.5f, -1.0f, 2.0f, 7.0f, 0.5f};
        int ids[] = {6, 5, 4, 3, 2, 1, 0};
        k::sampling_sort(logits, ids, 7);
        const int want[] = {5, 1, 4, 0, 2, 6, 3};
        for (int i = 0; i < 7; ++i)
            QCOMPARE(ids[i], want[i]);
    }
};

QTEST_GUILESS_MAIN(TestServeSamplingRow)
#include "test_serve_sampling_row.moc"
