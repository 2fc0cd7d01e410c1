// Rebuilt PEFT adapters: what export-peft writes loads with the strict PEFT loader and its update
// s·B·A equals the bank's reconstruction U Σ Vᵀ; names, overwrite protection and dtypes behave.
#include "engine/bank/peft_export.hpp"
#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"
#include "tests/support/random_bank.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>

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

} // namespace

class TestPeftExport : public QObject {
    Q_OBJECT
private slots:
    void exportedUpdateEqualsBank_data() {
        QTest::addColumn<int>("kind");
        QTest::newRow("jd-full") << int(bank::method::jd_full);
        QTest::newRow("jd-diag") << int(bank::method::jd_diag);
    }
    void exportedUpdateEqualsBank() {
        QFETCH(int, kind);
        QTemporaryDir tmp;
        const auto b = test::make_random_bank(bank::method(kind), 11);
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
        const auto b = test::make_random_bank(bank::method::jd_full, 12);
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
        const auto b = test::make_random_bank(bank::method::jd_full, 13);
        bank::peft_export_options opt;
        opt.adapters = {"adapter-1", "no-such-adapter"};
        QVERIFY_THROWS_EXCEPTION(usage_error, bank::export_peft_adapters(b, tmp.path().toStdString(), opt));
        QVERIFY(fs::is_empty(tmp.path().toStdString()));
    }
    void existingAdapterNotOverwritten() {
        QTemporaryDir tmp;
        const auto b = test::make_random_bank(bank::method::jd_full, 14);
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
};

QTEST_APPLESS_MAIN(TestPeftExport)
#include "test_peft_export.moc"
