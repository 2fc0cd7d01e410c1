// The device forward test's bank (device_fixture_bank.hpp) on the CPU, where it can run without a GPU:
// it passes compressed_bank::validate (what upload_bank and BankDelta run first), cluster 2 really has
// no basis in the last module and none of its adapters has that module, and the shape of the earlier
// fixture (a2 of cluster 2 keeping a core there) is what the validator refuses, with the message the
// H200 run printed — so the GPU test now exercises the empty-basis corner instead of aborting on it.
#include "engine/core/error.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "tests/kernels_host/device_fixture_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

using namespace lorafleet;

class TestDeviceFixtureBank : public QObject {
    Q_OBJECT
private slots:
    void init() { LORAFLEET_REQUIRE_FIXTURES(); }

    void bankIsValidAndHasTheEmptyBasisCorner_data() {
        QTest::addColumn<int>("kind");
        QTest::newRow("jd-full") << int(compress::jd_method::full);
        QTest::newRow("jd-diag") << int(compress::jd_method::diag);
    }
    void bankIsValidAndHasTheEmptyBasisCorner() {
        QFETCH(int, kind);
        const auto w = serve::model_weights::load(test::fixtures_dir() / "models/tinystories-656k");
        const auto& g = w->geometry();
        const auto bank = test::device_fixture_bank(g, compress::jd_method(kind));
        bank.validate("fixture bank"); // throws on failure
        serve::BankDelta cpu(bank, g, "fixture bank");
        const std::size_t last = bank.modules.size() - 1;
        QCOMPARE(bank.modules[last].path, "model.layers." + std::to_string(g.num_layers - 1) + ".o_proj");
        QVERIFY(bank.bases[last][test::device_fixture_empty_cluster].empty());
        int members = 0;
        for (std::size_t i = 0; i < bank.adapters.size(); ++i) {
            const bool in_empty = bank.adapters[i].cluster == test::device_fixture_empty_cluster;
            members += in_empty;
            QCOMPARE(bank.adapters[i].has_module(last), !in_empty);
            QVERIFY(bank.adapters[i].has_module(0));
        }
        QCOMPARE(members, 2);
    }

    // The earlier fixture: a2 (cluster 2) kept its core and an error of 0.1 in the module where cluster 2
    // has no basis. The validator refuses it with the H200 run's message.
    void theOldFixtureIsRefused() {
        const auto w = serve::model_weights::load(test::fixtures_dir() / "models/tinystories-656k");
        auto bank = test::device_fixture_bank(w->geometry(), compress::jd_method::full);
        const std::size_t last = bank.modules.size() - 1;
        bank.adapters[2].errors[last] = 0.1;
        try {
            bank.validate("bank");
            QFAIL("the validator accepted an adapter in a cluster without a basis");
        } catch (const validation_error& e) {
            QVERIFY2(std::string(e.what()).find("cluster 2 has no basis but adapter 'a2' uses it") !=
                         std::string::npos,
                     e.what());
        }
        // An adapter the bank represents by nothing (error 1, an incremental add) is allowed there.
        bank.adapters[2].errors[last] = 1.0;
        bank.validate("bank");
    }
};

QTEST_GUILESS_MAIN(TestDeviceFixtureBank)
#include "test_device_fixture_bank.moc"
