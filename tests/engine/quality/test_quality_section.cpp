// The bank manifest's optional "quality" section (bank_format.hpp, compressed_bank.hpp): it round-trips
// through write_bank / read_bank and through write_bank_quality (which rewrites the manifest alone, so the
// data files and their checksums stay valid); a bank without it (every bank written before it existed)
// still reads, with no section; results of adapters the bank no longer has are dropped on write; a
// malformed section is a clear format_error; the version stays 1, so older readers accept the bank and
// ignore the section.
#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/regular_file.hpp"
#include "tests/support/random_bank.hpp"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <fstream>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

bank::quality_section sample_section(const bank::compressed_bank& b) {
    bank::quality_section q;
    q.model = "tinystories-656k";
    q.prompts = 32;
    q.max_tokens = 32;
    q.prompt_set = std::string(64, 'a');
    for (std::size_t i = 0; i < b.adapters.size(); i += 2) {
        bank::adapter_quality a;
        a.prompts = 32;
        a.tokens = 1000 + int(i);
        a.exact_matches = int(i);
        a.agreeing_tokens = 900 + int(i);
        a.first_divergence = i == 0 ? -1 : int(i);
        a.mean_first_divergence = 12.5 + double(i);
        a.mean_kl = 0.001 * double(i + 1);
        q.adapters[b.adapters[i].name] = a;
    }
    return q;
}

void compare(const bank::quality_section& want, const bank::quality_section& got) {
    QCOMPARE(got.model, want.model);
    QCOMPARE(got.prompts, want.prompts);
    QCOMPARE(got.max_tokens, want.max_tokens);
    QCOMPARE(got.prompt_set, want.prompt_set);
    QCOMPARE(got.adapters.size(), want.adapters.size());
    for (const auto& [name, a] : want.adapters) {
        QVERIFY(got.adapters.count(name));
        const auto& g = got.adapters.at(name);
        QCOMPARE(g.prompts, a.prompts);
        QCOMPARE(g.tokens, a.tokens);
        QCOMPARE(g.exact_matches, a.exact_matches);
        QCOMPARE(g.agreeing_tokens, a.agreeing_tokens);
        QCOMPARE(g.first_divergence, a.first_divergence);
        QCOMPARE(g.mean_first_divergence, a.mean_first_divergence);
        QCOMPARE(g.mean_kl, a.mean_kl);
        QCOMPARE(g.exact_match(), a.exact_match());
        QCOMPARE(g.token_agreement(), a.token_agreement());
    }
}

nlohmann::json read_manifest(const fs::path& bank) {
    return nlohmann::json::parse(io::read_text_file(bank / "manifest.json", 1 << 24, "manifest"));
}

void write_manifest(const fs::path& bank, const nlohmann::json& j) {
    io::write_file_atomic(bank / "manifest.json", j.dump(1));
}

} // namespace

class TestQualitySection : public QObject {
    Q_OBJECT
private slots:
    void oldBankReadsWithoutSection() {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString()) / "bank";
        const auto b = test::make_random_bank(compress::jd_method::full, 3);
        QVERIFY(!b.quality);
        bank::write_bank(dir, b, {io::dtype::F32, false});
        const auto j = read_manifest(dir);
        QVERIFY(!j.contains("quality")); // the manifest is exactly the format-1 one
        QCOMPARE(j["version"].get<int>(), 1);
        QVERIFY(!bank::read_bank(dir).quality);
    }

    void roundTripsThroughWriteBank() {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString()) / "bank";
        auto b = test::make_random_bank(compress::jd_method::diag, 4);
        const auto q = sample_section(b);
        b.quality = q;
        bank::write_bank(dir, b, {io::dtype::F16, false});
        QCOMPARE(read_manifest(dir)["version"].get<int>(), 1);
        const auto got = bank::read_bank(dir);
        QVERIFY(got.quality);
        compare(q, *got.quality);
        // A stored exact_match / token_agreement is what the counts say.
        const nlohmann::json m = read_manifest(dir);
        QVERIFY(m.contains("quality"));
        const auto& first = m["quality"]["adapters"][b.adapters[2].name];
        QCOMPARE(first["token_agreement"].get<double>(), q.adapters.at(b.adapters[2].name).token_agreement());
    }

    void writeBankQualityRewritesOnlyTheManifest() {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString()) / "bank";
        const auto b = test::make_random_bank(compress::jd_method::full, 5);
        bank::write_bank(dir, b, {io::dtype::F16, false});
        const auto cores_before = io::read_text_file(dir / "cores.safetensors", 1 << 26, "cores");
        const auto q = sample_section(b);
        bank::write_bank_quality(dir, q);
        QCOMPARE(io::read_text_file(dir / "cores.safetensors", 1 << 26, "cores"), cores_before);
        const auto got = bank::read_bank(dir); // checksums verified
        QVERIFY(got.quality);
        compare(q, *got.quality);
        // A second write replaces the section.
        auto q2 = q;
        q2.prompts = 8;
        q2.adapters.erase(q2.adapters.begin());
        bank::write_bank_quality(dir, q2);
        compare(q2, *bank::read_bank(dir).quality);
        // No temporary file is left beside the manifest.
        int files = 0;
        for (const auto& e : fs::directory_iterator(dir))
            files += e.is_regular_file() ? 1 : 0;
        QCOMPARE(files, 2); // manifest.json, cores.safetensors
        // An adapter the bank lacks is refused, and nothing changes.
        auto bad = q2;
        bad.adapters["no-such-adapter"] = bank::adapter_quality{};
        QVERIFY_THROWS_EXCEPTION(usage_error, bank::write_bank_quality(dir, bad));
        compare(q2, *bank::read_bank(dir).quality);
        QVERIFY_THROWS_EXCEPTION(error, bank::write_bank_quality(fs::path(tmp.path().toStdString()), q2));
    }

    void staleResultsAreDroppedOnRewrite() {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString()) / "bank";
        auto b = test::make_random_bank(compress::jd_method::full, 6);
        auto q = sample_section(b);
        q.adapters["gone"] = bank::adapter_quality{};
        b.quality = q;
        bank::write_bank(dir, b, {io::dtype::F32, false});
        const auto got = bank::read_bank(dir);
        QVERIFY(!got.quality->adapters.count("gone"));
        QCOMPARE(got.quality->adapters.size(), q.adapters.size() - 1);
    }

    void malformedSectionIsAFormatError() {
        QTemporaryDir tmp;
        const fs::path dir = fs::path(tmp.path().toStdString()) / "bank";
        auto b = test::make_random_bank(compress::jd_method::full, 7);
        b.quality = sample_section(b);
        bank::write_bank(dir, b, {io::dtype::F32, false});
        const auto good = read_manifest(dir);
        const std::string name = b.adapters[0].name;
        const std::vector<std::function<void(nlohmann::json&)>> breaks{
            [](nlohmann::json& j) { j["quality"] = "yes"; },
            [](nlohmann::json& j) { j["quality"]["adapters"] = nlohmann::json::array(); },
            [](nlohmann::json& j) { j["quality"].erase("prompts"); },
            [&](nlohmann::json& j) { j["quality"]["adapters"][name]["mean_kl"] = -1.0; },
            [&](nlohmann::json& j) { j["quality"]["adapters"][name]["mean_kl"] = "0.1"; },
            [&](nlohmann::json& j) { j["quality"]["adapters"][name]["exact_matches"] = 33; }, // > prompts
            [&](nlohmann::json& j) { j["quality"]["adapters"]["stranger"] = j["quality"]["adapters"][name]; },
        };
        for (std::size_t i = 0; i < breaks.size(); ++i) {
            auto j = good;
            breaks[i](j);
            write_manifest(dir, j);
            try {
                (void)bank::read_bank(dir);
                QFAIL(("break " + std::to_string(i) + " was accepted").c_str());
            } catch (const format_error& e) {
                QVERIFY(std::string(e.what()).find("quality") != std::string::npos);
            }
        }
        // null is "no section".
        auto j = good;
        j["quality"] = nullptr;
        write_manifest(dir, j);
        QVERIFY(!bank::read_bank(dir).quality);
    }
};

QTEST_GUILESS_MAIN(TestQualitySection)
#include "test_quality_section.moc"
