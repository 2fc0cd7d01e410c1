// The device's adapter arithmetic on the CPU against the engine's adapter deltas: the compressed bank's
// tiled kernels (kernels/bank_tiles.hpp, emulated as device_bank runs them) against BankDelta::apply on a
// random bank with every corner (JD-Full and JD-Diag, a GQA-shaped module, an adapter lacking a module, an
// empty basis, base tokens), and the raw BGMV shrink/expand (kernels/adapter_rows.hpp) against
// RawLoraDelta::apply with odd shapes and mixed ranks.
#include "engine/core/random.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/raw_lora_delta.hpp"
#include "kernels/adapter_rows.hpp"
#include "kernels/bank_tiles.hpp"
#include "tests/support/bank_tiles_emulation.hpp"
#include "tests/support/random_bank.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace k = lorafleet::kernels;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint64_t seed) {
    random_stream rng(seed);
    std::vector<float> v(n);
    for (auto& x : v)
        x = float(rng.normal());
    return v;
}

// The random bank's geometry: q_proj [16, 16], k_proj [8, 16], two layers.
io::model_geometry bank_geometry() {
    io::model_geometry g;
    g.name = "test/base";
    g.model_type = "llama";
    g.hidden_size = 16;
    g.num_layers = 2;
    g.num_heads = 2;
    g.num_kv_heads = 1;
    g.head_dim = 8;
    g.intermediate_size = 24;
    g.vocab_size = 32;
    g.max_position_embeddings = 64;
    return g;
}

void compare_rows(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
    QCOMPARE(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i)
        QVERIFY2(std::abs(got[i] - want[i]) <= 1e-4f * (1 + std::abs(want[i])),
                 qPrintable(QString("%1: element %2: %3 vs %4").arg(what).arg(i).arg(got[i]).arg(want[i])));
}

} // namespace

class TestServeAdapterRows : public QObject {
    Q_OBJECT
private slots:
    void bankTokenPathMatchesBankDelta_data() {
        QTest::addColumn<int>("kind");
        QTest::newRow("jd-full") << int(compress::jd_method::full);
        QTest::newRow("jd-diag") << int(compress::jd_method::diag);
    }
    void bankTokenPathMatchesBankDelta() {
        QFETCH(int, kind);
        const bank::compressed_bank bank = test::make_random_bank(compress::jd_method(kind), 17);
        BankDelta delta(bank, bank_geometry(), "random bank");
        const int n = 19;
        std::vector<int> token_slots(n);
        for (int t = 0; t < n; ++t)
            token_slots[std::size_t(t)] = t % 7 - 1; // -1 (base) and every adapter 0..5
        for (std::size_t m = 0; m < bank.modules.size(); ++m) {
            const auto& mod = bank.modules[m];
            const int d_in = int(mod.d_in), d_out = int(mod.d_out);
            const auto x = random_vector(std::size_t(n) * d_in, 40 + m);
            const auto y0 = random_vector(std::size_t(n) * d_out, 50 + m);
            auto want = y0;
            delta.apply(mod.layer, *parse_module_kind(mod.short_name), x.data(), want.data(), n, token_slots,
                        nullptr);
            auto got = y0;
            test::emulate_bank_module(bank, m, token_slots, x.data(), got.data(), n);
            int touched = 0; // tokens whose adapter has the module and a basis for it
            for (int t = 0; t < n; ++t) {
                const int s = token_slots[std::size_t(t)];
                if (s < 0 || !bank.adapters[std::size_t(s)].has_module(m)) continue;
                if (!bank.bases[m][std::size_t(bank.adapters[std::size_t(s)].cluster)].empty()) ++touched;
            }
            QVERIFY(touched > 0);
            QVERIFY(got != y0);
            compare_rows(got, want, mod.path.c_str());
        }
    }

    void bankCoreProductIsTheMatrixVectorProduct() {
        for (int r : {1, 4, 19}) {
            const auto core = random_vector(std::size_t(r) * r, 3 + r);
            const auto z = random_vector(std::size_t(r), 4 + r); // one token, one split
            std::vector<float> w(static_cast<std::size_t>(r));
            for (int p = 0; p < r; ++p)
                w[std::size_t(p)] = k::bank_core_from_splits(core.data(), true, z.data(), 1, 1, 0, p, r);
            for (int p = 0; p < r; ++p) {
                double ref = 0;
                for (int q = 0; q < r; ++q)
                    ref += double(core[std::size_t(p * r + q)]) * z[std::size_t(q)];
                QVERIFY(std::abs(w[std::size_t(p)] - ref) <= 1e-5 * (1 + std::abs(ref)));
            }
            for (int p = 0; p < r; ++p) // diagonal: first r entries
                w[std::size_t(p)] = k::bank_core_from_splits(core.data(), false, z.data(), 1, 1, 0, p, r);
            for (int p = 0; p < r; ++p)
                QCOMPARE(w[std::size_t(p)], core[std::size_t(p)] * z[std::size_t(p)]);
        }
    }

    void rawBgmvMatchesRawLoraDelta() {
        io::model_geometry g;
        g.name = "odd";
        g.model_type = "llama";
        g.hidden_size = 38;
        g.num_layers = 1;
        g.num_heads = 2;
        g.num_kv_heads = 1;
        g.head_dim = 19;
        g.intermediate_size = 111;
        g.vocab_size = 32;
        g.max_position_embeddings = 64;
        RawLoraDelta delta(g);
        const int ranks[] = {1, 3, 16};
        const module_kind mods[] = {module_kind::q_proj, module_kind::k_proj, module_kind::up_proj,
                                    module_kind::down_proj};
        std::vector<std::vector<lora_module_weights>> weights(3);
        for (int s = 0; s < 3; ++s)
            for (module_kind m : mods) {
                const auto shape = *g.linear_shape(module_name(m));
                lora_module_weights w;
                w.rank = ranks[s];
                w.scale = 0.5f + float(s);
                w.a = random_vector(std::size_t(w.rank * shape.d_in), 100 + 10 * s + int(m));
                w.b = random_vector(std::size_t(shape.d_out * w.rank), 200 + 10 * s + int(m));
                weights[std::size_t(s)].push_back(w);
                delta.set_module(s, 0, m, w);
            }
        const int n = 19;
        // Runs of one adapter (RawLoraDelta groups them) and isolated tokens, plus base tokens.
        const std::vector<int> token_slots = {0, 0, 0, -1, 1, 2, 2, -1, -1, 1, 0, 2, 2, 2, 2, 1, -1, 0, 1};
        for (std::size_t mi = 0; mi < std::size(mods); ++mi) {
            const auto shape = *g.linear_shape(module_name(mods[mi]));
            const int d_in = int(shape.d_in), d_out = int(shape.d_out);
            const auto x = random_vector(std::size_t(n) * d_in, 300 + mi);
            const auto y0 = random_vector(std::size_t(n) * d_out, 400 + mi);
            auto want = y0;
            delta.apply(0, mods[mi], x.data(), want.data(), n, token_slots, nullptr);
            auto got = y0;
            for (int t = 0; t < n; ++t) {
                const int s = token_slots[std::size_t(t)];
                if (s < 0) continue;
                const lora_module_weights& w = weights[std::size_t(s)][mi];
                std::vector<float> tmp(static_cast<std::size_t>(w.rank));
                k::bgmv_shrink_token(w.a.data(), x.data() + std::size_t(t) * d_in, tmp.data(), w.rank, d_in);
                k::bgmv_expand_token(w.b.data(), tmp.data(), got.data() + std::size_t(t) * d_out, d_out,
                                     w.rank, w.scale);
            }
            for (int t = 0; t < n; ++t)
                if (token_slots[std::size_t(t)] < 0)
                    for (int o = 0; o < d_out; ++o)
                        QCOMPARE(got[std::size_t(t) * d_out + o], y0[std::size_t(t) * d_out + o]);
            compare_rows(got, want, std::string(module_name(mods[mi])).c_str());
        }
    }
};

QTEST_GUILESS_MAIN(TestServeAdapterRows)
#include "test_serve_adapter_rows.moc"
