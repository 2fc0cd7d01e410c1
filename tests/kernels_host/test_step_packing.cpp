// CUDA-graph step packing on the CPU (kernels/step_packing.hpp): which bucket a step takes, which steps are
// eligible, and the padding contract — a decode step padded to its bucket and run through the kernels'
// own KV-write and attention row functions (every token of the bucket, as the captured grid does) gives
// the real tokens bit-identical outputs and caches to the unpadded step, and the padding tokens touch no
// block but the sink.
#include "kernels/paged_attention.hpp"
#include "kernels/step_packing.hpp"

#include "engine/core/random.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <vector>

using namespace lorafleet;
namespace k = lorafleet::kernels;

namespace {

// What the captured kernels do per token of a packed step (kv_write then decode attention), on a float
// pool [blocks, kv_heads = 1, block_size, hd]; k / v / q of token t are functions of (token id, position)
// so a padding token has its own, arbitrary values. out [tokens, hd].
void run_packed(const int* ints, const k::step_int_layout& L, int tokens, const k::paged_kv_layout& KL,
                std::vector<float>& keys, std::vector<float>& values, std::vector<float>& out) {
    const int hd = KL.head_dim;
    auto value_of = [&](int which, int t, int i) {
        const int token = ints[L.tokens() + t], pos = ints[L.positions() + t];
        return float(std::sin(0.37 * token + 0.11 * pos + 0.7 * which + 0.05 * i));
    };
    for (int t = 0; t < tokens; ++t) { // launch_kv_write
        const int pos = ints[L.positions() + t];
        const int* table = ints + L.tables() + ints[L.table_offset() + t];
        const std::size_t off = k::paged_kv_offset(KL, table[pos / KL.block_size], 0, pos % KL.block_size);
        for (int i = 0; i < hd; ++i) {
            k::kv_store(keys.data(), off + std::size_t(i), value_of(0, t, i));
            k::kv_store(values.data(), off + std::size_t(i), value_of(1, t, i));
        }
    }
    out.assign(std::size_t(tokens * hd), 0.0f);
    for (int t = 0; t < tokens; ++t) { // launch_decode_attention
        std::vector<float> q(static_cast<std::size_t>(hd));
        for (int i = 0; i < hd; ++i)
            q[std::size_t(i)] = value_of(2, t, i);
        k::paged_decode_attention_head(q.data(), keys.data(), values.data(),
                                       ints + L.tables() + ints[L.table_offset() + t],
                                       ints[L.positions() + t] + 1, 0, KL, 0.25f, out.data() + t * hd);
    }
}

} // namespace

class TestStepPacking : public QObject {
    Q_OBJECT
private slots:
    void bucketsAreTheSmallestThatHold() {
        QCOMPARE(k::graph_bucket_index(0), -1);
        QCOMPARE(k::graph_bucket_index(k::graph_max_tokens + 1), -1);
        for (int n = 1; n <= k::graph_max_tokens; ++n) {
            const int b = k::graph_bucket_index(n);
            QVERIFY(b >= 0);
            QVERIFY(k::graph_buckets[b] >= n);
            QVERIFY(b == 0 || k::graph_buckets[b - 1] < n);
        }
        QCOMPARE(k::graph_buckets[k::graph_bucket_index(64)], 64);
        QCOMPARE(k::graph_buckets[k::graph_bucket_index(65)], 128);
    }

    void onlyDecodeStepsAreEligible() {
        const int rows[] = {0, 1, 2};
        QVERIFY(k::graph_step_eligible(3, rows, 3));
        QVERIFY(!k::graph_step_eligible(4, rows, 3)); // a prefill chunk: 4 tokens, 3 output rows
        const int shuffled[] = {0, 2, 1};
        QVERIFY(!k::graph_step_eligible(3, shuffled, 3));
        std::vector<int> many(static_cast<std::size_t>(k::graph_max_tokens + 1));
        for (std::size_t i = 0; i < many.size(); ++i)
            many[i] = int(i);
        QVERIFY(!k::graph_step_eligible(int(many.size()), many.data(), int(many.size())));
    }

    void packingRefusesWhatDoesNotFit() {
        const int tokens[] = {5, 6}, pos[] = {3, 4}, off[] = {0, 1}, tables[] = {0, 1}, rows[] = {0};
        k::step_ints st{2, tokens, pos, off, tables, 2, rows, 1, nullptr};
        std::vector<int> out(64, -7);
        const k::step_int_layout L{8, 4};
        QVERIFY(!k::pack_step(st, 4, 9, L, out.data()));  // padding a step whose rows are not its tokens
        QVERIFY(!k::pack_step(st, 16, 9, L, out.data())); // beyond the capacity
        QVERIFY(!k::pack_step(st, 1, 9, L, out.data()));  // fewer than its tokens
        QCOMPARE(out[0], -7);                             // untouched
        QVERIFY(k::pack_step(st, 2, 9, L, out.data()));   // unpadded: fine
        const k::step_int_layout tight{8, 2};
        const int rows2[] = {0, 1};
        k::step_ints dec{2, tokens, pos, off, tables, 2, rows2, 2, nullptr};
        QVERIFY(!k::pack_step(dec, 4, 9, tight, out.data())); // no room for the sink entry
        QVERIFY(k::pack_step(dec, 4, 9, k::step_int_layout{8, 3}, out.data()));
    }

    // Five decode tokens of five sequences (scattered blocks, different lengths) padded to bucket 8.
    void paddingChangesNoRealRow() {
        const int hd = 12, bs = 4, blocks = 16, sink = blocks; // the sink is one past the cache's blocks
        const k::paged_kv_layout KL{1, bs, hd};
        const std::vector<std::vector<int>> seq_tables = {{3}, {7, 1}, {0, 12, 5}, {9}, {14, 2}};
        const std::vector<int> lengths = {2, 6, 10, 0, 7}; // the decode token's position
        std::vector<int> tokens, positions, offsets, tables, rows, adapter_slot;
        for (std::size_t s = 0; s < seq_tables.size(); ++s) {
            tokens.push_back(int(11 + 13 * s));
            positions.push_back(lengths[s]);
            offsets.push_back(int(tables.size()));
            tables.insert(tables.end(), seq_tables[s].begin(), seq_tables[s].end());
            rows.push_back(int(s));
            adapter_slot.push_back(s % 2 ? int(s) : -1);
        }
        const int n = int(tokens.size());
        const k::step_ints st{n,
                              tokens.data(),
                              positions.data(),
                              offsets.data(),
                              tables.data(),
                              int(tables.size()),
                              rows.data(),
                              n,
                              adapter_slot.data()};
        QVERIFY(k::graph_step_eligible(n, rows.data(), n));
        const int bucket = k::graph_buckets[k::graph_bucket_index(n)];
        QCOMPARE(bucket, 8);

        // A cache with history: random keys / values everywhere, the same start for both runs.
        random_stream rng(3);
        std::vector<float> pool(static_cast<std::size_t>((blocks + 1) * bs * hd));
        for (auto& x : pool)
            x = float(rng.normal());
        const std::vector<float> start_keys = pool, start_values = [&] {
            std::vector<float> v(pool.size());
            for (auto& x : v)
                x = float(rng.normal());
            return v;
        }();

        const k::step_int_layout plain{n, int(tables.size())};
        std::vector<int> a(static_cast<std::size_t>(plain.total()));
        QVERIFY(k::pack_step(st, n, sink, plain, a.data()));
        std::vector<float> ka = start_keys, va = start_values, outa;
        run_packed(a.data(), plain, n, KL, ka, va, outa);

        const k::step_int_layout graph{k::graph_max_tokens, blocks + 1 + k::graph_max_tokens};
        std::vector<int> b(std::size_t(graph.total()), -99);
        QVERIFY(k::pack_step(st, bucket, sink, graph, b.data()));
        for (int t = n; t < bucket; ++t) { // the contract
            QCOMPARE(b[std::size_t(graph.tokens() + t)], 0);
            QCOMPARE(b[std::size_t(graph.positions() + t)], 0);
            QCOMPARE(b[std::size_t(graph.adapter_slots() + t)], -1);
            QCOMPARE(b[std::size_t(graph.out_rows() + t)], t);
            QCOMPARE(b[std::size_t(graph.tables() + b[std::size_t(graph.table_offset() + t)])], sink);
        }
        for (int t = 0; t < n; ++t)
            QCOMPARE(b[std::size_t(graph.adapter_slots() + t)], adapter_slot[std::size_t(t)]);
        std::vector<float> kb = start_keys, vb = start_values, outb;
        run_packed(b.data(), graph, bucket, KL, kb, vb, outb);

        // Real rows: bit-identical. Cache: identical outside the sink block; the sink was written.
        for (int t = 0; t < n; ++t)
            for (int i = 0; i < hd; ++i)
                QCOMPARE(outb[std::size_t(t * hd + i)], outa[std::size_t(t * hd + i)]);
        const std::size_t sink_begin = std::size_t(sink * bs * hd);
        bool sink_written = false;
        for (std::size_t i = 0; i < kb.size(); ++i) {
            if (i >= sink_begin) {
                sink_written = sink_written || kb[i] != ka[i];
                continue;
            }
            QCOMPARE(kb[i], ka[i]);
            QCOMPARE(vb[i], va[i]);
        }
        QVERIFY(sink_written);
        // And the unpadded step did write the real tokens' positions (the check above is not vacuous).
        QVERIFY(ka != start_keys);
    }
};

QTEST_GUILESS_MAIN(TestStepPacking)
#include "test_step_packing.moc"
