// Adding an adapter to a bank: the way `lorafleet-cli add` does it (bank::add_to_bank on the bank, several
// threads, then serving the grown bank) and the serving engine's live add (BankDelta::add on the bank as
// it was) give the same adapter: the same cluster and error, bit-identical cores (project_onto_bank vs
// the grown bank's), and the same served delta U_c·Σ·V_cᵀx for every module of every layer (compared
// through BankDelta::apply, 1e-6 relative), for JD-Full and JD-Diag. The adapter has a module the bank
// lacks (listed as ignored); the bank passed to project_onto_bank is left unchanged.
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/bank_add.hpp"
#include "engine/core/random.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;
namespace fs = std::filesystem;

class TestBankAdd : public QObject {
    Q_OBJECT
    QTemporaryDir m_tmp;
    io::model_geometry m_g;
    fs::path m_adapter;

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        m_g = serve::model_weights::load(test::demo_model_dir())->geometry();
        m_adapter = fs::path(m_tmp.path().toStdString()) / "newcomer";
        test::write_crafted_adapter(
            m_adapter, test::crafted_llama_adapter(m_g, {"q_proj", "v_proj", "gate_proj"}, 2, 4.0));
    }

    void cliAddAndLiveAddGiveTheSameAdapter_data() {
        QTest::addColumn<bool>("full");
        QTest::newRow("jd-full") << true;
        QTest::newRow("jd-diag") << false;
    }
    void cliAddAndLiveAddGiveTheSameAdapter() {
        QFETCH(bool, full);
        test::model_bank_spec spec;
        spec.kind = full ? compress::jd_method::full : compress::jd_method::diag;
        spec.modules = {"q_proj", "v_proj", "o_proj"};
        spec.adapters = 4;
        spec.clusters = 2;
        spec.rank = 4;
        const bank::compressed_bank original = [&] {
            auto b = test::make_model_bank(m_g, spec);
            for (auto& mod : b.modules) // PEFT's module paths, as a compressed fleet's bank has them
                mod.path = "model.layers." + std::to_string(mod.layer) + ".self_attn." + mod.short_name;
            return b;
        }();

        // `lorafleet-cli add`: the adapter loaded against the base, projected on 4 threads, appended.
        io::peft_load_options lo;
        lo.base = &m_g;
        const io::fleet fleet{std::make_shared<const io::peft_adapter>(io::load_peft_adapter(m_adapter, lo))};
        bank::compressed_bank grown = original;
        const auto cli_backend = backend::make_compress_backend("cpu", 4);
        const auto added = bank::add_to_bank(grown, fleet, *cli_backend, 4);
        QCOMPARE(added.size(), std::size_t(1));
        QCOMPARE(added[0].name, std::string("newcomer"));
        QCOMPARE(added[0].ignored_modules.size(), std::size_t(m_g.num_layers)); // gate_proj of every layer
        QCOMPARE(grown.adapters.size(), original.adapters.size() + 1);

        // The live add's projection: the same cores, bit for bit, and the bank untouched.
        const bank::compressed_bank before = original;
        const auto live_backend = backend::make_compress_backend("cpu", 1);
        const auto projected = bank::project_onto_bank(original, fleet.front(), *live_backend);
        QCOMPARE(projected.adapter.cluster, added[0].cluster);
        QCOMPARE(projected.summary.error, added[0].error);
        QCOMPARE(original.adapters.size(), before.adapters.size());
        QVERIFY(original.cores == before.cores);
        const std::size_t last = grown.adapters.size() - 1, cs = std::size_t(grown.core_size());
        int compared = 0;
        for (std::size_t m = 0; m < grown.modules.size(); ++m) {
            QCOMPARE(projected.cores[m].empty(), !grown.adapters[last].has_module(m));
            if (projected.cores[m].empty()) continue;
            const float* g = grown.core(m, last);
            QVERIFY(std::equal(g, g + cs, projected.cores[m].begin()));
            ++compared;
        }
        QCOMPARE(compared, 2 * m_g.num_layers); // q_proj and v_proj of every layer

        // Served: the grown bank as `add` writes it vs the original bank with the adapter added live.
        serve::BankDelta from_cli(grown, m_g, "grown");
        serve::BankDelta live(original, m_g, "original");
        const auto info = live.add(m_adapter, "newcomer");
        const int cli_slot = from_cli.find("newcomer");
        QVERIFY(cli_slot >= 0);
        const auto cli_info = from_cli.list()[std::size_t(cli_slot)];
        QCOMPARE(info.cluster, cli_info.cluster);
        QCOMPARE(info.error, cli_info.error);
        auto rs = random_stream::derive(11, {stream_id("bank-add")});
        double worst = 0, largest = 0;
        for (int layer = 0; layer < m_g.num_layers; ++layer)
            for (const auto kind :
                 {serve::module_kind::q_proj, serve::module_kind::v_proj, serve::module_kind::o_proj}) {
                const auto shape = *m_g.linear_shape(std::string(serve::module_name(kind)));
                const int n = 3;
                std::vector<float> x(std::size_t(n * shape.d_in));
                for (auto& v : x)
                    v = float(rs.normal());
                std::vector<float> y_cli(std::size_t(n * shape.d_out), 0.0f), y_live = y_cli;
                const std::vector<int> cli_slots(n, cli_slot), live_slots(n, info.slot);
                from_cli.apply(layer, kind, x.data(), y_cli.data(), n, cli_slots, nullptr);
                live.apply(layer, kind, x.data(), y_live.data(), n, live_slots, nullptr);
                for (std::size_t i = 0; i < y_cli.size(); ++i) {
                    worst = std::max(worst, std::abs(double(y_cli[i]) - double(y_live[i])));
                    largest = std::max(largest, std::abs(double(y_cli[i])));
                }
            }
        qInfo("largest delta %.3g, worst CLI-vs-live difference %.3g", largest, worst);
        QVERIFY(largest > 1e-3); // the adapter does change q_proj / v_proj outputs
        QVERIFY(worst <= 1e-6 * largest);
    }
};

QTEST_GUILESS_MAIN(TestBankAdd)
#include "test_bank_add.moc"
