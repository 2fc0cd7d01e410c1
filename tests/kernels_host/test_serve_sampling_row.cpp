// kernels/sampling_row.hpp on the CPU against the engine's sampler: fed the same uniforms as the sampler
// draws (random_stream::uniform from the same seed, one per non-greedy draw), sample_row must choose the
// very same token for every combination of temperature, top-k and top-p, on odd vocabularies, with ties
// and non-finite logits in the rows.
#include "engine/core/random.hpp"
#include "engine/serve/sampler.hpp"
#include "kernels/sampling_row.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <limits>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace k = lorafleet::kernels;

class TestServeSamplingRow : public QObject {
    Q_OBJECT
private slots:
    void sampleRowChoosesWhatTheSamplerChooses() {
        const float temps[] = {0.0f, 0.3f, 1.0f, 2.5f};
        const int top_ks[] = {0, 1, 2, 19, 5000};
        const float top_ps[] = {1.0f, 0.9f, 0.5f, 0.01f};
        int draws = 0, distinct_choices = 0;
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
                            if (std::find(seen.begin(), seen.end(), got) == seen.end()) seen.push_back(got);
                            ++draws;
                        }
                        if (seen.size() > 1) ++distinct_choices;
                    }
        }
        QVERIFY(draws > 3000);
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
