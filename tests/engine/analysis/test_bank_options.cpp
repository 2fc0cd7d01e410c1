// The compression options read back from a bank's manifest (engine/analysis/bank_options.hpp): every
// field that bank::compression_parameters writes round-trips through a real bank written to disk and read
// back (non-default values, both methods, fixed and automatic cluster counts); an older manifest without
// parameters reads as the defaults; malformed parameters are a validation_error that names the field.
#include "engine/analysis/bank_options.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/core/error.hpp"
#include "tests/support/random_bank.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace lorafleet;

namespace {

// A bank of `o`'s method and rank whose manifest holds compression_parameters(o), written and read back.
bank::compressed_bank roundTrip(const compress::compress_options& o, const QString& dir) {
    auto b = test::make_random_bank(o.jd.method, 3);
    b.parameters = bank::compression_parameters(o, "cpu");
    const std::filesystem::path path = (dir + "/b.bank").toStdString();
    bank::write_bank(path, b);
    return bank::read_bank(path);
}

} // namespace

class TestBankOptions : public QObject {
    Q_OBJECT
private slots:
    void everyRecordedFieldRoundTrips() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        compress::compress_options o;
        o.jd.method = compress::jd_method::diag;
        o.jd.norm = compress::normalization::none;
        o.jd.init = compress::jd_init::random;
        o.jd.seed = 0xfeedbeef12345ull;
        o.jd.max_sweeps = 7;
        o.jd.tol = 3.5e-6;
        o.clusters = 3;
        o.target_error = 0.0125;
        const auto b = roundTrip(o, dir.path());
        o.jd.rank = b.rank; // the rank is the bank's own
        const auto s = analysis::bank_compression_settings(b);
        QVERIFY(s.options.jd.method == compress::jd_method::diag);
        QCOMPARE(s.options.jd.rank, std::int64_t(b.rank));
        QVERIFY(s.options.jd.norm == compress::normalization::none);
        QVERIFY(s.options.jd.init == compress::jd_init::random);
        QCOMPARE(s.options.jd.seed, o.jd.seed);
        QCOMPARE(s.options.jd.max_sweeps, 7);
        QCOMPARE(s.options.jd.tol, 3.5e-6);
        QCOMPARE(s.options.clusters, 3);
        QCOMPARE(s.options.target_error, 0.0125);
        QVERIFY(!s.automatic_clusters);
        QCOMPARE(QString::fromStdString(s.device), QString("cpu"));
        // Written again from what was read, the parameters are the same JSON.
        QCOMPARE(bank::compression_parameters(s.options, s.device).dump(), b.parameters.dump());
    }

    void automaticClustersAndTheOtherMethod() {
        QTemporaryDir dir;
        compress::compress_options o; // defaults: JD-Full, unit, hosvd
        o.clusters = 0;
        o.target_error = 0.3;
        const auto b = roundTrip(o, dir.path());
        const auto s = analysis::bank_compression_settings(b);
        QVERIFY(s.automatic_clusters);
        QCOMPARE(s.options.clusters, 0);
        QCOMPARE(s.options.target_error, 0.3);
        QVERIFY(s.options.jd.method == compress::jd_method::full);
        QVERIFY(s.options.jd.norm == compress::normalization::unit);
        QVERIFY(s.options.jd.init == compress::jd_init::hosvd);
    }

    void anOlderManifestReadsAsDefaults() {
        auto b = test::make_random_bank(compress::jd_method::full, 1);
        b.parameters = nlohmann::json::object();
        const auto s = analysis::bank_compression_settings(b);
        const compress::compress_options d;
        QCOMPARE(s.options.jd.seed, d.jd.seed);
        QCOMPARE(s.options.jd.max_sweeps, d.jd.max_sweeps);
        QCOMPARE(s.options.target_error, d.target_error);
        QCOMPARE(s.options.clusters, b.clusters); // the count is the bank's
        QVERIFY(!s.automatic_clusters);
        QVERIFY(s.device.empty());
    }

    void malformedParametersNameTheField() {
        auto b = test::make_random_bank(compress::jd_method::full, 1);
        const std::vector<std::pair<nlohmann::json, std::string>> cases = {
            {{{"normalize", "cubic"}}, "normalize"},
            {{{"normalize", 3}}, "normalize"},
            {{{"init", "svd"}}, "init"},
            {{{"seed", "x"}}, "seed"},
            {{{"clusters", "many"}}, "clusters"},
            {{{"clusters", "0"}}, "clusters"},
            {{{"clusters", -2}}, "clusters"},
            {{{"target_error", "low"}}, "target_error"},
            {{{"tol", true}}, "tol"}};
        for (const auto& [params, name] : cases) {
            b.parameters = params;
            try {
                analysis::bank_compression_settings(b);
                QFAIL(qPrintable(QString("accepted %1").arg(QString::fromStdString(params.dump()))));
            } catch (const validation_error& e) {
                QVERIFY2(std::string(e.what()).find(name) != std::string::npos, e.what());
            }
        }
        b.parameters = nlohmann::json::array();
        QVERIFY_THROWS_EXCEPTION(validation_error, analysis::bank_compression_settings(b));
    }
};

QTEST_GUILESS_MAIN(TestBankOptions)
#include "test_bank_options.moc"
