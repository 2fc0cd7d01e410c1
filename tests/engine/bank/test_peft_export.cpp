// Rebuilt PEFT adapters: what export-peft writes loads with the strict PEFT loader and its update
// s·B·A equals the bank's reconstruction U Σ Vᵀ; names, overwrite protection and dtypes behave.
#include "engine/bank/peft_export.hpp"
#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"
#include "tests/support/random_bank.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <csignal>
#include <fstream>
#include <set>
#include <sys/resource.h>
#include <unistd.h>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

// Dense s·B·A of a loaded module, [d_out, d_in].
std::vector<double> dense_of(const io::lora_module& m) {
    const auto f = m.factors_f32();
    std::vector<double> out(std::size_t(f.d_out * f.d_in), 0.0);
    for (std::int64_t i = 0; i < f.d_out; ++i)
        for (int k = 0; k < f.rank; ++k)
            for (std::int64_t j = 0; j < f.d_in; ++j)
                out[std::size_t(i * f.d_in + j)] +=
                    double(f.b[std::size_t(i * f.rank + k)]) * f.a[std::size_t(k * f.d_in + j)];
    return out;
}

std::size_t staging_leftovers(const fs::path& parent) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(parent))
        n += e.path().filename().string().find(".tmp-") != std::string::npos;
    return n;
}

// Every file below `dir` with its size and modification time: equal snapshots = untouched export.
std::set<std::string> snapshot(const fs::path& dir) {
    std::set<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        out.insert(e.path().lexically_relative(dir).string() + " " +
                   (e.is_regular_file() ? std::to_string(e.file_size()) : "dir") + " " +
                   std::to_string(e.last_write_time().time_since_epoch().count()));
    return out;
}

} // namespace

class TestPeftExport : public QObject {
    Q_OBJECT
private slots:
    void exportedUpdateEqualsBank_data() {
        QTest::addColumn<int>("kind");
        QTest::newRow("jd-full") << int(compress::jd_method::full);
        QTest::newRow("jd-diag") << int(compress::jd_method::diag);
    }
    void exportedUpdateEqualsBank() {
        QFETCH(int, kind);
        QTemporaryDir tmp;
        const auto b = test::make_random_bank(compress::jd_method(kind), 11);
        const fs::path out = tmp.path().toStdString();
        const auto dirs = bank::export_peft_adapters(b, out);
        QCOMPARE(dirs.size(), b.adapters.size());
        for (std::size_t i = 0; i < b.adapters.size(); ++i) {
            QCOMPARE(dirs[i], out / b.adapters[i].name);
            const auto loaded = io::load_peft_adapter(dirs[i]);
            QCOMPARE(loaded.config.r, b.rank);
            QCOMPARE(loaded.config.lora_alpha, double(b.rank));
            QCOMPARE(loaded.config.base_model_name_or_path, b.adapters[i].base_model);
            std::size_t present = 0;
            for (std::size_t m = 0; m < b.modules.size(); ++m) {
                const auto* mod = loaded.find(b.modules[m].path);
                QCOMPARE(mod != nullptr, b.adapters[i].has_module(m));
                if (!mod) continue;
                ++present;
                QCOMPARE(mod->scale, 1.0);
                const auto got = dense_of(*mod);
                const auto want = b.dense_update(m, i);
                double err = 0, norm = 0;
                for (std::size_t k = 0; k < want.size(); ++k) {
                    err += (got[k] - want[k]) * (got[k] - want[k]);
                    norm += double(want[k]) * want[k];
                }
                QVERIFY2(err <= 1e-10 * norm, qPrintable(QString("relative error %1").arg(err / norm)));
            }
            QCOMPARE(loaded.modules.size(), present);
        }
    }
    void selectedAdaptersAndDtype() {
        QTemporaryDir tmp;
        const auto b = test::make_random_bank(compress::jd_method::full, 12);
        bank::peft_export_options opt;
        opt.adapters = {"adapter-3"};
        opt.weights = io::dtype::BF16;
        const auto dirs = bank::export_peft_adapters(b, tmp.path().toStdString(), opt);
        QCOMPARE(dirs.size(), std::size_t(1));
        const auto loaded = io::load_peft_adapter(dirs[0]);
        QCOMPARE(loaded.weight_dtype().value(), io::dtype::BF16);
        QVERIFY(!fs::exists(tmp.filePath("adapter-0").toStdString()));
    }
    void unknownNameWritesNothing() {
        QTemporaryDir tmp;
        const auto b = test::make_random_bank(compress::jd_method::full, 13);
        bank::peft_export_options opt;
        opt.adapters = {"adapter-1", "no-such-adapter"};
        QVERIFY_THROWS_EXCEPTION(usage_error, bank::export_peft_adapters(b, tmp.path().toStdString(), opt));
        QVERIFY(fs::is_empty(tmp.path().toStdString()));
    }
    void existingAdapterNotOverwritten() {
        QTemporaryDir tmp;
        const auto b = test::make_random_bank(compress::jd_method::full, 14);
        bank::peft_export_options opt;
        opt.adapters = {"adapter-2"};
        bank::export_peft_adapters(b, tmp.path().toStdString(), opt);
        const auto before =
            fs::last_write_time(tmp.filePath("adapter-2/adapter_model.safetensors").toStdString());
        QVERIFY_THROWS_EXCEPTION(usage_error, bank::export_peft_adapters(b, tmp.path().toStdString(), opt));
        QCOMPARE(fs::last_write_time(tmp.filePath("adapter-2/adapter_model.safetensors").toStdString()),
                 before);
        opt.overwrite = true;
        QCOMPARE(bank::export_peft_adapters(b, tmp.path().toStdString(), opt).size(), std::size_t(1));
    }
    void failedExportLeavesThePreviousOneIntact() {
        QTemporaryDir tmp;
        const fs::path out = tmp.filePath("export").toStdString();
        const auto b = test::make_random_bank(compress::jd_method::full, 15);
        bank::peft_export_options opt;
        QCOMPARE(bank::export_peft_adapters(b, out, opt).size(), std::size_t(6));
        const auto before = snapshot(out);
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));

        // Cancelled after 3 adapters: nothing of the new export shows, the old one stays.
        opt.overwrite = true;
        opt.progress = [](std::size_t done, std::size_t) { return done < 3; };
        QVERIFY_THROWS_EXCEPTION(cancelled_error, bank::export_peft_adapters(b, out, opt));
        QCOMPARE(snapshot(out), before);
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));

        // A full disk half-way (a file-size limit: writes fail with EFBIG after 700 bytes of a file).
        opt.progress = {};
        rlimit old{};
        getrlimit(RLIMIT_FSIZE, &old);
        std::signal(SIGXFSZ, SIG_IGN);
        rlimit small = old;
        small.rlim_cur = 700;
        setrlimit(RLIMIT_FSIZE, &small);
        bool threw = false;
        try {
            bank::export_peft_adapters(b, out, opt);
        } catch (const io_error& e) {
            threw = std::string(e.what()).find("cannot write") != std::string::npos;
        }
        setrlimit(RLIMIT_FSIZE, &old);
        QVERIFY(threw);
        QCOMPARE(snapshot(out), before);
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));

        // Without a previous export, a failure leaves no folder at all.
        const fs::path fresh = tmp.filePath("fresh").toStdString();
        setrlimit(RLIMIT_FSIZE, &small);
        QVERIFY_THROWS_EXCEPTION(io_error, bank::export_peft_adapters(b, fresh, opt));
        setrlimit(RLIMIT_FSIZE, &old);
        QVERIFY(!fs::exists(fresh));
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));

        // --overwrite replaces the whole export once the new one is complete.
        opt.adapters = {"adapter-1"};
        QCOMPARE(bank::export_peft_adapters(b, out, opt).size(), std::size_t(1));
        QCOMPARE(int(std::distance(fs::directory_iterator(out), fs::directory_iterator())), 1);
    }
    void foreignFolderNeverReplaced() {
        QTemporaryDir tmp;
        const fs::path out = tmp.filePath("mine").toStdString();
        fs::create_directories(out / "adapter-0");
        std::ofstream(out / "notes.txt") << "mine";
        const auto b = test::make_random_bank(compress::jd_method::diag, 16);
        bank::peft_export_options opt;
        opt.overwrite = true;
        try {
            bank::export_peft_adapters(b, out, opt);
            QFAIL("a folder with other files was replaced");
        } catch (const usage_error& e) {
            QVERIFY2(std::string(e.what()).find("other than PEFT adapter folders") != std::string::npos,
                     e.what());
        }
        QVERIFY(fs::exists(out / "notes.txt"));
        QCOMPARE(staging_leftovers(tmp.path().toStdString()), std::size_t(0));
    }
    void staleStagingOfDeadRunsRemoved() {
        QTemporaryDir tmp;
        const fs::path out = tmp.filePath("export").toStdString();
        // pid 2^22+1 is above Linux's pid_max limit: a process that cannot exist. And an old-style one.
        const fs::path dead = tmp.filePath(".export.tmp-4194305-abcdef").toStdString();
        const fs::path live = tmp.filePath(QString(".export.tmp-%1-ghijkl").arg(::getpid())).toStdString();
        const fs::path other = tmp.filePath(".other.tmp-4194305-abcdef").toStdString();
        for (const auto& d : {dead, live, other})
            fs::create_directories(d / "adapter-0");
        const auto b = test::make_random_bank(compress::jd_method::diag, 17);
        bank::export_peft_adapters(b, out, {});
        QVERIFY(!fs::exists(dead));
        QVERIFY(fs::exists(live));  // ours, and young
        QVERIFY(fs::exists(other)); // another target's
    }
};

QTEST_APPLESS_MAIN(TestPeftExport)
#include "test_peft_export.moc"
