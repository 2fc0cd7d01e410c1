// The one bank validation: every tampered bank (checksums fixed up, so only the validation can tell) is
// refused by validate_bank, by read_bank (which the console, add and export use) and by the serving
// loader (open_bank_provider), all with the same one-line message; a good bank passes all three; a bank
// that does not fit the served base model is refused before serving; write_bank refuses to write what
// the validation would refuse; the module and adapter name rules.
#include "engine/bank/bank_format.hpp"
#include "engine/bank/bank_validation.hpp"
#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "tests/support/bank_tamper.hpp"
#include "tests/support/random_bank.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

io::model_geometry tiny() {
    return *io::geometry_preset("tinystories-656k"); // 2 layers, hidden 128, kv dim 64
}

bank::compressed_bank tiny_bank() {
    test::model_bank_spec spec;
    spec.modules = {"q_proj", "v_proj"};
    spec.adapters = 3;
    spec.clusters = 2;
    spec.rank = 4;
    auto b = test::make_model_bank(tiny(), spec);
    b.base = tiny();
    return b;
}

// The message of what `f` throws as a lorafleet::error ("" when it does not throw).
template <class F> std::string refusal(F&& f) {
    try {
        f();
    } catch (const error& e) {
        return e.what();
    }
    return "";
}

} // namespace

class TestBankValidation : public QObject {
    Q_OBJECT
private slots:
    void goodBankPassesEveryReader() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        bank::write_bank(dir, tiny_bank(), {io::dtype::F32, false});
        QVERIFY(bank::validate_bank(dir).empty());
        QVERIFY(bank::validate_bank(dir, tiny()).empty());
        QCOMPARE(refusal([&] { bank::read_bank(dir); }), std::string());
        QCOMPARE(refusal([&] { serve::open_bank_provider(dir, tiny()); }), std::string());
    }

    void tamperedBanksAreRefusedAlikeEverywhere() {
        QTemporaryDir tmp;
        const fs::path good = tmp.filePath("good").toStdString();
        bank::write_bank(good, tiny_bank(), {io::dtype::F32, false});
        int n = 0;
        for (const auto& c : test::bank_tamper_cases()) {
            const fs::path dir = tmp.filePath(QString("case-%1").arg(n)).toStdString();
            const fs::path outside = tmp.filePath(QString("outside-%1").arg(n++)).toStdString();
            fs::create_directories(outside);
            fs::copy(good, dir, fs::copy_options::recursive);
            c.apply(dir, outside);
            const auto problems = bank::validate_bank(dir);
            QVERIFY2(!problems.empty(), c.name.c_str());
            const auto read = refusal([&] { bank::read_bank(dir); });
            const auto served = refusal([&] { serve::open_bank_provider(dir, tiny()); });
            const auto info = refusal([&] { bank::read_bank(dir, {false, true}); }); // bank-info --no-verify
            QVERIFY2(read.find(c.needle) != std::string::npos, (c.name + ": " + read).c_str());
            QVERIFY2(served == read, (c.name + ": served '" + served + "' vs read '" + read + "'").c_str());
            QVERIFY2(info == read, (c.name + ": " + info).c_str());
            QVERIFY2(problems.front().find(c.needle) != std::string::npos,
                     (c.name + ": " + problems.front()).c_str());
        }
        QVERIFY(n >= 12);
    }

    void wrongBaseModelRefusedBeforeServing() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        auto b = tiny_bank();
        b.base.reset(); // nothing recorded: only the served base can tell
        bank::write_bank(dir, b, {io::dtype::F32, false});
        auto other = tiny();
        other.num_layers = 1; // layer 1 of the bank does not exist
        const auto problems = bank::validate_bank(dir, other);
        QVERIFY(!problems.empty());
        QVERIFY2(problems.front().find("is in layer 1 but the base model") != std::string::npos,
                 problems.front().c_str());
        const auto served = refusal([&] { serve::open_bank_provider(dir, other); });
        QVERIFY2(served.find(problems.front()) != std::string::npos, served.c_str());
        other = tiny();
        other.hidden_size = 256; // q_proj becomes [256, 256]
        other.head_dim = 32;
        QVERIFY(!bank::validate_bank(dir, other).empty());
    }

    void writeRefusesWhatReadWouldRefuse() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        auto b = tiny_bank();
        b.cores[2][5] = std::nanf("");
        QVERIFY(refusal([&] {
                    bank::write_bank(dir, b, {io::dtype::F32, false});
                }).find("NaN or Inf") != std::string::npos);
        b = tiny_bank();
        b.bases[0][1].u[0] = INFINITY;
        QVERIFY(!refusal([&] { bank::write_bank(dir, b, {io::dtype::F32, false}); }).empty());
        b = tiny_bank();
        b.modules[0].layer = -1;
        QVERIFY(!refusal([&] { bank::write_bank(dir, b, {io::dtype::F32, false}); }).empty());
        b = tiny_bank();
        b.modules[0].path = "../../etc/x";
        QVERIFY(refusal([&] {
                    bank::write_bank(dir, b, {io::dtype::F32, false});
                }).find("outside") != std::string::npos);
        QVERIFY(!fs::exists(dir));
        QCOMPARE(
            int(std::distance(fs::directory_iterator(tmp.path().toStdString()), fs::directory_iterator())),
            0);
    }

    void moduleAndAdapterNameRules() {
        int layer = -7;
        QCOMPARE(io::module_path_problem("model.layers.3.self_attn.q_proj", 0, &layer), std::string());
        QCOMPARE(layer, 3);
        QCOMPARE(io::module_path_problem("model.layers.3.self_attn.q_proj", 4), std::string());
        QVERIFY(!io::module_path_problem("model.layers.3.self_attn.q_proj", 3).empty());
        for (const char* bad : {"model.layers.-1.self_attn.q_proj", "model.layers.999999999999.mlp.up_proj",
                                "model.layers.1048576.mlp.up_proj", "../../etc/x", "/etc/x.layers.0.q",
                                "model.layers.0..q_proj", "model.layers.0.q_proj.", "lm_head",
                                "model.layers.x.q_proj", "model.layers", "model.layers.0.layers.1.q",
                                "model.layers.0.self attn.q_proj", "model.layers.+1.q_proj", ""})
            QVERIFY2(!io::module_path_problem(bad).empty(), bad);
        QCOMPARE(io::adapter_name_problem("adapter-7_v2.final"), std::string());
        for (const char* bad : {"", ".", "..", "a/b", "a\\b", "tab\there"})
            QVERIFY2(!io::adapter_name_problem(bad).empty(), bad);
        QVERIFY(!io::adapter_name_problem(std::string(256, 'a')).empty());
    }
};

QTEST_APPLESS_MAIN(TestBankValidation)
#include "test_bank_validation.moc"
