// The compressed bank on disk: exact round trips (F32) and correctly rounded ones (F16/BF16), the
// manifest's contents, every corruption caught with a clear error, and the all-or-nothing folder write.
#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/core/sha256.hpp"
#include "tests/support/random_bank.hpp"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <csignal>
#include <fstream>
#include <random>
#include <sys/resource.h>

using namespace lorafleet;
using bank::compressed_bank;
namespace fs = std::filesystem;

namespace {

float round_trip(float x, io::dtype t) {
    if (t == io::dtype::F16) return f16_to_f32(f32_to_f16(x));
    if (t == io::dtype::BF16) return bf16_to_f32(f32_to_bf16(x));
    return x;
}

void compare(const compressed_bank& want, const compressed_bank& got, io::dtype storage) {
    QCOMPARE(got.kind, want.kind);
    QCOMPARE(got.rank, want.rank);
    QCOMPARE(got.clusters, want.clusters);
    QCOMPARE(got.modules.size(), want.modules.size());
    QCOMPARE(got.adapters.size(), want.adapters.size());
    QCOMPARE(got.parameters, want.parameters);
    for (std::size_t i = 0; i < want.adapters.size(); ++i) {
        QCOMPARE(got.adapters[i].name, want.adapters[i].name);
        QCOMPARE(got.adapters[i].cluster, want.adapters[i].cluster);
        for (std::size_t m = 0; m < want.modules.size(); ++m)
            QCOMPARE(got.adapters[i].has_module(m), want.adapters[i].has_module(m));
        QCOMPARE(got.adapters[i].mean_error(), want.adapters[i].mean_error());
    }
    auto same = [&](const std::vector<float>& a, const std::vector<float>& b) {
        QCOMPARE(a.size(), b.size());
        for (std::size_t k = 0; k < a.size(); ++k)
            QCOMPARE(b[k], round_trip(a[k], storage));
    };
    for (std::size_t m = 0; m < want.modules.size(); ++m) {
        same(want.cores[m], got.cores[m]);
        for (int c = 0; c < want.clusters; ++c) {
            QCOMPARE(got.bases[m][c].empty(), want.bases[m][c].empty());
            same(want.bases[m][c].u, got.bases[m][c].u);
            same(want.bases[m][c].vt, got.bases[m][c].vt);
        }
    }
}

nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

void write_json(const fs::path& p, const nlohmann::json& j) {
    std::ofstream(p) << j.dump(1);
}

template <class E, class F> void expect_error(F&& f, const char* needle) {
    try {
        f();
        QFAIL(qPrintable(QString("no exception, expected one containing: ") + needle));
    } catch (const E& e) {
        if (std::string(e.what()).find(needle) == std::string::npos)
            QFAIL(qPrintable(QString("message '%1' lacks '%2'").arg(e.what(), needle)));
    }
}

std::size_t staging_leftovers(const fs::path& parent) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(parent))
        n += e.path().filename().string().find(".tmp-") != std::string::npos;
    return n;
}

} // namespace

class TestBankFormat : public QObject {
    Q_OBJECT
private slots:
    void roundTrip_data() {
        QTest::addColumn<int>("kind");
        QTest::addColumn<int>("storage");
        for (auto k : {compress::jd_method::full, compress::jd_method::diag})
            for (auto t : {io::dtype::F32, io::dtype::F16, io::dtype::BF16})
                QTest::newRow(
                    (std::string(compress::to_string(k)) + "/" + std::string(io::dtype_name(t))).c_str())
                    << int(k) << int(t);
    }
    void roundTrip() {
        QFETCH(int, kind);
        QFETCH(int, storage);
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        const auto want = lorafleet::test::make_random_bank(compress::jd_method(kind), 7);
        const auto bytes = bank::write_bank(dir, want, {io::dtype(storage), false});
        const auto got = bank::read_bank(dir);
        compare(want, got, io::dtype(storage));
        // Byte count: every stored float at the storage width, plus the safetensors headers.
        const std::uint64_t floats = want.stored_parameters();
        QVERIFY(bytes >= floats * io::dtype_size(io::dtype(storage)));
        QVERIFY(bytes < floats * io::dtype_size(io::dtype(storage)) + 64 * 1024);
        QCOMPARE(bank::read_bank_files_info(dir).data_bytes, bytes);
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));
    }
    void manifestListsFilesWithChecksums() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        bank::write_bank(dir, lorafleet::test::make_random_bank(compress::jd_method::full, 1));
        const auto j = read_json(dir / "manifest.json");
        QCOMPARE(j["format"].get<std::string>(), std::string("lorafleet-bank"));
        QCOMPARE(j["version"].get<int>(), 1);
        QCOMPARE(j["dtype"].get<std::string>(), std::string("F16"));
        QCOMPARE(j["files"].size(), std::size_t(4)); // cores + 3 clusters
        for (const auto& f : j["files"]) {
            const auto p = dir / f["name"].get<std::string>();
            QCOMPARE(std::uint64_t(fs::file_size(p)), f["bytes"].get<std::uint64_t>());
            QCOMPARE(sha256_file_hex(p), f["sha256"].get<std::string>());
        }
        QVERIFY(j["adapters"][5]["errors"][2].is_null());
    }
    void metadataOnlyRead() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        bank::write_bank(dir, lorafleet::test::make_random_bank(compress::jd_method::diag, 2));
        const auto got = bank::read_bank(dir, {false, false});
        QCOMPARE(got.adapters.size(), std::size_t(6));
        QVERIFY(got.cores.empty());
    }
    void corruptionIsCaught() {
        QTemporaryDir tmp;
        const fs::path good = tmp.filePath("good").toStdString();
        bank::write_bank(good, lorafleet::test::make_random_bank(compress::jd_method::full, 3));
        auto fresh = [&](const char* name) {
            const fs::path p = tmp.filePath(name).toStdString();
            fs::copy(good, p, fs::copy_options::recursive);
            return p;
        };
        { // a flipped byte in the data
            const auto p = fresh("flip");
            std::fstream f(p / "cores.safetensors", std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(-3, std::ios::end);
            f.put('\x55');
            f.close();
            expect_error<format_error>([&] { bank::read_bank(p); }, "SHA-256");
        }
        { // truncated
            const auto p = fresh("trunc");
            fs::resize_file(p / "bases/cluster-001.safetensors", 100);
            expect_error<format_error>([&] { bank::read_bank(p); }, "cluster-001.safetensors has 100 bytes");
        }
        { // missing file
            const auto p = fresh("missing");
            fs::remove(p / "bases/cluster-002.safetensors");
            expect_error<format_error>([&] { bank::read_bank(p); }, "cluster-002.safetensors is missing");
        }
        { // manifest problems
            const auto p = fresh("manifest");
            auto j = read_json(p / "manifest.json");
            std::ofstream(p / "manifest.json") << "{ not json";
            expect_error<format_error>([&] { bank::read_bank(p); }, "not valid JSON");
            auto v = j;
            v["version"] = 99;
            write_json(p / "manifest.json", v);
            expect_error<unsupported_error>([&] { bank::read_bank(p); }, "version 99 is newer");
            v = j;
            v["method"] = "svd";
            write_json(p / "manifest.json", v);
            expect_error<format_error>([&] { bank::read_bank(p); }, "unknown method \"svd\"");
            v = j;
            v["adapters"][0]["cluster"] = 3;
            write_json(p / "manifest.json", v);
            expect_error<format_error>([&] { bank::read_bank(p); }, "\"cluster\" = 3 is out of range");
            v = j;
            v["files"][0]["name"] = "../../etc/passwd";
            write_json(p / "manifest.json", v);
            expect_error<format_error>([&] { bank::read_bank(p); }, "lists a file that is not");
            v = j;
            v["rank"] = 5; // tensors are rank 4
            write_json(p / "manifest.json", v);
            expect_error<shape_mismatch>([&] { bank::read_bank(p, {false, true}); }, "is not [6, 5, 5]");
        }
        expect_error<io_error>([&] { bank::read_bank(tmp.filePath("nothing").toStdString()); },
                               "no such bank");
        expect_error<format_error>([&] { bank::read_bank(tmp.path().toStdString()); }, "not a bank");
    }
    void nanInCoresRejected() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        auto b = lorafleet::test::make_random_bank(compress::jd_method::full, 4);
        b.cores[1][3] = std::nanf("");
        // Refused before anything is written (read-side refusal: test_bank_validation).
        expect_error<validation_error>(
            [&] {
                bank::write_bank(dir, b, {io::dtype::F32, false});
            },
            "NaN or Inf");
        QVERIFY(!fs::exists(dir));
    }
    void writesAreAllOrNothing() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.filePath("bank").toStdString();
        const auto first = lorafleet::test::make_random_bank(compress::jd_method::full, 5);
        bank::write_bank(dir, first, {io::dtype::F32, false});
        const auto second = lorafleet::test::make_random_bank(compress::jd_method::diag, 6);
        expect_error<usage_error>([&] { bank::write_bank(dir, second); }, "already exists");
        compare(first, bank::read_bank(dir), io::dtype::F32);

        // A full disk half-way: simulated with a file-size limit so writes fail with EFBIG.
        rlimit old{};
        getrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, SIG_IGN);
        rlimit small = old;
        small.rlim_cur = 700;
        setrlimit(RLIMIT_FSIZE, &small);
        bool threw = false;
        try {
            bank::write_bank(dir, second, {io::dtype::F32, true});
        } catch (const io_error&) {
            threw = true;
        }
        setrlimit(RLIMIT_FSIZE, &old);
        QVERIFY(threw);
        compare(first, bank::read_bank(dir), io::dtype::F32);
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));

        bank::write_bank(dir, second, {io::dtype::F32, true});
        compare(second, bank::read_bank(dir), io::dtype::F32);
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));

        const fs::path user = tmp.filePath("user-data").toStdString();
        fs::create_directories(user);
        std::ofstream(user / "notes.txt") << "mine";
        expect_error<usage_error>(
            [&] {
                bank::write_bank(user, first, {io::dtype::F32, true});
            },
            "not a bank");
        QVERIFY(fs::exists(user / "notes.txt"));
    }
    void invalidBankRefused() {
        QTemporaryDir tmp;
        auto b = lorafleet::test::make_random_bank(compress::jd_method::full, 8);
        b.adapters[2].cluster = 2; // cluster 2 has no basis for module 2, and adapter 2 has module 2
        expect_error<validation_error>([&] { bank::write_bank(tmp.filePath("x").toStdString(), b); },
                                       "has no basis");
        b = lorafleet::test::make_random_bank(compress::jd_method::full, 8);
        b.adapters[1].name = b.adapters[0].name;
        expect_error<validation_error>([&] { bank::write_bank(tmp.filePath("x").toStdString(), b); },
                                       "repeats");
        QVERIFY(!fs::exists(tmp.filePath("x").toStdString()));
    }
    void denseUpdateIsUSigmaVt() {
        for (auto kind : {compress::jd_method::full, compress::jd_method::diag}) {
            const auto b = lorafleet::test::make_random_bank(kind, 9);
            const std::size_t m = 1, i = 3;
            const auto& mod = b.modules[m];
            const auto& basis = b.bases[m][b.adapters[i].cluster];
            const auto dense = b.dense_update(m, i);
            const float* s = b.core(m, i);
            for (std::int64_t row = 0; row < mod.d_out; ++row)
                for (std::int64_t col = 0; col < mod.d_in; ++col) {
                    double want = 0;
                    for (int p = 0; p < b.rank; ++p)
                        for (int q = 0; q < b.rank; ++q) {
                            const double sig =
                                kind == compress::jd_method::full ? s[p * b.rank + q] : (p == q ? s[p] : 0);
                            want += double(basis.u[row * b.rank + p]) * sig * basis.vt[q * mod.d_in + col];
                        }
                    QVERIFY(std::abs(dense[row * mod.d_in + col] - want) < 1e-4 * (1 + std::abs(want)));
                }
        }
    }
};

QTEST_APPLESS_MAIN(TestBankFormat)
#include "test_bank_format.moc"
