// The Serve tab's device and server settings, and the device memory chart:
// - the device choice lists Automatic, CPU and the GPU; on a machine without a usable GPU the GPU item is
//   disabled and says the registry's reason, Automatic says CPU;
// - what the tab is set to reaches the started engine and HTTP server (the real engine on the demo model
//   with raw PEFT folders): the device, the KV budget (the engine's reserved KV bytes equal a kv_cache of
//   that budget's), the adapter cache budget (the provider's capacity), the transformer threads (the
//   process gains exactly threads - 1 pool workers between a 1-thread and a 4-thread start) and the API
//   key (401 without it or with a wrong one, 200 with it; /health stays open); Automatic runs on the CPU
//   here and the status says why;
// - asking for the GPU where there is none fails in the tab with the engine's reason, no crash;
// - the memory chart shows the device breakdown (weights, adapters, KV pools, other used, free: stacked
//   to the device's total) for a synthetic snapshot that has device memory, the host breakdown otherwise;
// - the settings (not the API key) persist across a new view; the key is never written to the settings.
// Offscreen; LORAFLEET_SERVE_DEVICE_SCREENSHOT=DIR saves serve.png (the tab at 1280x800 under load) and
// device_chart.png (the charts fed a device snapshot) there.
#include "engine/backend/device_registry.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/device_combo.hpp"
#include "ui/common/text_format.hpp"
#include "ui/serve/serve_charts.hpp"
#include "ui/serve/serve_controller.hpp"
#include "ui/serve/serve_history.hpp"
#include "ui/serve/serve_view.hpp"
#include "ui/workspace/session.hpp"

#include <QSettings>
#include <QSignalSpy>
#include <QStandardItemModel>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <qcustomplot.h>

#include <fstream>

using namespace lorafleet;

namespace {

constexpr std::uint64_t kMiB = 1ull << 20, kGiB = 1ull << 30;

// Threads of this process now (/proc/self/status), -1 where unavailable.
int processThreads() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
    return -1;
}

// The thread count once it has stayed the same for 300 ms (a finished job's thread may still be exiting).
int settledThreads() {
    int last = processThreads(), same = 0;
    for (int i = 0; i < 100 && same < 6; ++i) {
        QTest::qWait(50);
        const int now = processThreads();
        same = now == last ? same + 1 : 0;
        last = now;
    }
    return last;
}

serve::metrics_snapshot deviceSnapshot(double t, std::uint64_t kvUsed) {
    serve::metrics_snapshot m;
    m.uptime_s = t;
    m.memory.weights = 100 * kMiB; // the host split: a different story, must not be drawn
    m.memory.kv_cache_reserved = 20 * kGiB;
    m.memory.kv_cache_used = kvUsed;
    m.memory.rss = 900 * kMiB;
    serve::device_memory_split d;
    d.device = "Planted H200";
    d.weights = 13 * kGiB + 512 * kMiB;
    d.adapters = 1 * kGiB;
    d.kv_cache = 20 * kGiB;
    d.used_other = 6 * kGiB + 512 * kMiB;
    d.free = 100 * kGiB;
    d.total = 141 * kGiB;
    m.device_memory = d;
    return m;
}

double lastValue(QCustomPlot* p, int g) {
    return (p->graph(g)->data()->constEnd() - 1)->value;
}

} // namespace

class TestServeDevice : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;

    static QString modelDir() { return QString::fromStdString(test::demo_model_dir().string()); }
    QString fleetDir() const { return m_dir.filePath(QStringLiteral("fleet")); }

    static bool waitForState(ui::ServeController* c, ui::ServeController::State s, int timeoutMs = 60'000) {
        QElapsedTimer timer;
        timer.start();
        while (c->state() != s && timer.elapsed() < timeoutMs)
            QTest::qWait(20);
        return c->state() == s;
    }

    // A view serving the raw test fleet with the given settings; waits until it runs.
    static bool startRaw(ui::ServeView& view, const QString& fleet) {
        view.setModelDir(modelDir());
        view.setSource(ui::ServeView::Source::RawFolders);
        view.setAdapterFolders({fleet});
        view.startServer();
        return waitForState(view.controller(), ui::ServeController::State::Running);
    }

    static void stop(ui::ServeView& view) {
        view.stopServer();
        QVERIFY(waitForState(view.controller(), ui::ServeController::State::Stopped));
    }

private slots:
    void initTestCase() {
        test::isolateSettings();
        // Settings of this binary only: other GUI tests read the same organisation's Serve settings.
        QCoreApplication::setApplicationName(QStringLiteral("lorafleet-tests-serve-device"));
        QSettings().clear();
        QVERIFY(m_dir.isValid());
        test::writeTinyFleet(fleetDir(), 3);
    }

    void cleanupTestCase() { QSettings().clear(); }

    void deviceChoiceOnThisMachine() {
        ui::ServeView view(nullptr);
        ui::DeviceCombo* combo = view.deviceCombo();
        QCOMPARE(combo->count(), 3);
        QCOMPARE(combo->itemData(0).toString(), QStringLiteral("auto"));
        QCOMPARE(combo->itemData(1).toString(), QStringLiteral("cpu"));
        QCOMPARE(combo->itemData(2).toString(), QStringLiteral("cuda"));
        auto* items = qobject_cast<QStandardItemModel*>(combo->model());
        QVERIFY(items);
        QVERIFY(items->item(0)->isEnabled() && items->item(1)->isEnabled());
        const backend::device_report& report = backend::devices();
        if (report.available) {
            QVERIFY(items->item(2)->isEnabled());
            QVERIFY(combo->itemText(2).contains(QString::fromStdString(report.devices.front().name)));
            QVERIFY(combo->itemText(0).contains(QStringLiteral("GPU")));
            return;
        }
        // No usable GPU: the item stays, disabled, saying why in the registry's words.
        QVERIFY(!items->item(2)->isEnabled());
        const QString why = report.compiled ? ui::oneLine(QString::fromStdString(report.reason))
                                            : QStringLiteral("this build has no CUDA backend");
        QVERIFY(!why.isEmpty());
        QCOMPARE(combo->itemText(2), QStringLiteral("GPU: no CUDA device: ") + why);
        QVERIFY(combo->itemData(2, Qt::ToolTipRole).toString().contains(why));
        QVERIFY(combo->itemText(0).contains(QStringLiteral("CPU")));
        QCOMPARE(view.deviceText(), QStringLiteral("GPU unavailable: ") + why);
        QCOMPARE(view.device(), QStringLiteral("auto")); // the default
    }

    // CPU + API key + threads + both cache budgets reach the engine and the HTTP server; then Automatic
    // with 4 threads, other budgets and no key.
    void settingsReachTheEngineAndTheServer() {
        ui::Session session;
        ui::ServeView view(&session);
        view.setDevice(QStringLiteral("cpu"));
        view.setThreads(1);
        view.setKvCacheMiB(6);
        view.setAdapterCacheMiB(3);
        const QString key = QStringLiteral("sk-test-Zq7_x");
        view.setApiKey(key);
        QVERIFY(startRaw(view, fleetDir()));
        ui::ServeController* c = view.controller();
        const int oneThread = settledThreads(); // before any request: HTTP handler threads start lazily
        QCOMPARE(c->device(), QStringLiteral("cpu"));
        QCOMPARE(c->deviceNote(), QStringLiteral("cpu"));
        QVERIFY2(view.statusText().contains(QStringLiteral(" on CPU.")), qPrintable(view.statusText()));
        QVERIFY(c->requiresApiKey());
        serve::metrics_snapshot m = c->engine()->metrics();
        QVERIFY(!m.device_memory); // the CPU has no device memory to chart
        const serve::kv_cache reference6(c->engine()->weights().geometry(), 6 * kMiB);
        QCOMPARE(m.memory.kv_cache_reserved,
                 std::uint64_t(reference6.total_blocks()) * reference6.bytes_per_block());
        QCOMPARE(m.memory.adapters_capacity, 3 * kMiB);
        // The key is required (never shown in clear in the example), /health stays open.
        QVERIFY(view.curlExample().contains(QStringLiteral("Bearer $LORAFLEET_API_KEY")));
        QVERIFY(!view.curlExample().contains(key));
        test::http_client http(c->port(), 30'000);
        QCOMPARE(http.get("/health").status, 200);
        QCOMPARE(http.get("/v1/models").status, 401);
        QCOMPARE(http.get("/v1/models", {{"Authorization", "Bearer wrong-key"}}).status, 401);
        const test::header_pairs auth{{"Authorization", "Bearer " + key.toStdString()}};
        const test::http_reply models = http.get("/v1/models", auth);
        QCOMPARE(models.status, 200);
        QVERIFY(models.body.find("adapter-0000") != std::string::npos);
        const std::string body =
            R"({"model": "adapter-0001", "prompt": "Once upon a time", "max_tokens": 4})";
        QCOMPARE(http.post("/v1/completions", body).status, 401);
        const test::http_reply done = http.post("/v1/completions", body, auth);
        QCOMPARE(done.status, 200);
        QVERIFY(done.body.find("\"choices\"") != std::string::npos);
        http.close();
        stop(view);

        // Automatic: the CPU here, and the status says why; no key: the API is open.
        if (backend::devices().available) QSKIP("a usable GPU: Automatic would not run on the CPU here");
        view.setDevice(QStringLiteral("auto"));
        view.setThreads(4);
        view.setKvCacheMiB(10);
        view.setAdapterCacheMiB(5);
        view.setApiKey(QString());
        QVERIFY(startRaw(view, fleetDir()));
        const int fourThreads = settledThreads();
        QCOMPARE(c->device(), QStringLiteral("cpu"));
        QVERIFY2(c->deviceNote().startsWith(QStringLiteral("cpu (auto: no usable CUDA device: ")),
                 qPrintable(c->deviceNote()));
        QVERIFY2(view.statusText().contains(QStringLiteral("on CPU (no usable CUDA device: ")),
                 qPrintable(view.statusText()));
        QVERIFY(!c->requiresApiKey());
        QVERIFY(!view.curlExample().contains(QStringLiteral("Authorization")));
        m = c->engine()->metrics();
        const serve::kv_cache reference10(c->engine()->weights().geometry(), 10 * kMiB);
        QCOMPARE(m.memory.kv_cache_reserved,
                 std::uint64_t(reference10.total_blocks()) * reference10.bytes_per_block());
        QCOMPARE(m.memory.adapters_capacity, 5 * kMiB);
        // The forward pass's pool: `threads` - 1 workers beside the engine thread.
        QVERIFY(oneThread > 0);
        QCOMPARE(fourThreads - oneThread, 3);
        QCOMPARE(test::http_client(c->port(), 30'000).get("/v1/models").status, 200);
        stop(view);
    }

    void gpuWithoutOneFailsInTheTab() {
        if (ui::DeviceCombo::gpuUsable()) QSKIP("a usable GPU: the cuda start would succeed");
        ui::ServeView view(nullptr);
        QSignalSpy failed(view.controller(), &ui::ServeController::failed);
        view.setDevice(QStringLiteral("cuda")); // disabled in the list, still settable (a saved choice)
        QCOMPARE(view.device(), QStringLiteral("cuda"));
        view.setModelDir(modelDir());
        view.setSource(ui::ServeView::Source::BaseOnly);
        view.startServer();
        QVERIFY(failed.wait(60'000));
        QCOMPARE(view.controller()->state(), ui::ServeController::State::Stopped);
        const QString reason = failed.first().at(0).toString();
        const backend::device_report& report = backend::devices();
        QVERIFY2(reason.contains(QString::fromStdString(report.reason)), qPrintable(reason));
        QVERIFY(view.statusText().startsWith(QStringLiteral("Could not start: ")));
        QVERIFY(view.statusText().contains(ui::oneLine(QString::fromStdString(report.reason))));
        // The tab is still usable: the CPU serves.
        view.setDevice(QStringLiteral("cpu"));
        view.startServer();
        QVERIFY(waitForState(view.controller(), ui::ServeController::State::Running));
        stop(view);
    }

    // The chart is the unit: a synthetic history with device memory, then one without.
    void memoryChartShowsTheDeviceWhenTheSnapshotHasIt() {
        ui::ServeHistory history;
        QVERIFY(history.add(deviceSnapshot(1.0, 5 * kGiB), false));
        QVERIFY(history.add(deviceSnapshot(2.0, 7 * kGiB), false));
        ui::ServeCharts charts;
        charts.resize(1000, 600);
        charts.rebuild(history);
        QCustomPlot* p = charts.memoryPlot();
        QVERIFY(charts.showsDeviceMemory());
        QCOMPARE(charts.memoryTitle(), QStringLiteral("Device memory: Planted H200 (stacked, GiB)"));
        QCOMPARE(p->yAxis->label(), QStringLiteral("GiB"));
        // Stacked in GiB: weights 13.5, + adapters 1, + KV pools 20, + other used 6.5, + free 100 = 141.
        QCOMPARE(lastValue(p, 0), 13.5);
        QCOMPARE(lastValue(p, 1), 14.5);
        QCOMPARE(lastValue(p, 2), 34.5);
        QCOMPARE(lastValue(p, 3), 41.0);
        QCOMPARE(lastValue(p, 4), 141.0);
        QVERIFY(p->yAxis->range().upper >= 141.0 && p->yAxis->range().upper <= 1.1 * 141.0);
        QCOMPARE(p->graph(0)->name(), QStringLiteral("weights ") + ui::formatBytes(13 * kGiB + 512 * kMiB));
        QCOMPARE(p->graph(2)->name(), QStringLiteral("KV cache ") + ui::formatBytes(20 * kGiB) +
                                          QStringLiteral(" (35% in use)")); // 7 of 20 GiB
        QCOMPARE(p->graph(3)->name(), QStringLiteral("other used ") + ui::formatBytes(6 * kGiB + 512 * kMiB));
        QCOMPARE(p->graph(4)->name(), QStringLiteral("free ") + ui::formatBytes(100 * kGiB) +
                                          QStringLiteral(" of ") + ui::formatBytes(141 * kGiB));

        const QByteArray shots = qgetenv("LORAFLEET_SERVE_DEVICE_SCREENSHOT");
        if (!shots.isEmpty()) {
            charts.show();
            QTest::qWait(50);
            charts.memoryPlot()->replot();
            QVERIFY(charts.grab().save(QString::fromLocal8Bit(shots) + QStringLiteral("/device_chart.png")));
        }

        // Without device memory (the CPU): the host split, in MiB, as before.
        ui::ServeHistory host;
        serve::metrics_snapshot m = deviceSnapshot(1.0, 0);
        m.device_memory.reset();
        QVERIFY(host.add(m, false));
        charts.rebuild(host);
        QVERIFY(!charts.showsDeviceMemory());
        QCOMPARE(charts.memoryTitle(), QStringLiteral("Server memory (stacked, MiB)"));
        QCOMPARE(p->yAxis->label(), QStringLiteral("MiB"));
        QCOMPARE(lastValue(p, 0), 100.0); // the host weights, MiB
        QVERIFY(p->graph(3)->name().startsWith(QStringLiteral("runtime ")));
        QVERIFY(p->graph(4)->name().startsWith(QStringLiteral("rest of process ")));
    }

    void settingsPersistButNotTheKey() {
        const QString key = QStringLiteral("never-stored-8c1f");
        {
            ui::ServeView view(nullptr);
            view.setDevice(QStringLiteral("cpu"));
            view.setThreads(3);
            view.setKvCacheMiB(48);
            view.setAdapterCacheMiB(96);
            view.setApiKey(key);
        }
        ui::ServeView reloaded(nullptr);
        QCOMPARE(reloaded.device(), QStringLiteral("cpu"));
        QCOMPARE(reloaded.threads(), 3);
        QCOMPARE(reloaded.kvCacheMiB(), 48);
        QCOMPARE(reloaded.adapterCacheMiB(), 96);
        QVERIFY(reloaded.apiKey().isEmpty());
        QSettings settings;
        settings.sync();
        for (const QString& k : settings.allKeys())
            QVERIFY2(!settings.value(k).toString().contains(key), qPrintable(k));
        QFile file(settings.fileName());
        if (file.open(QIODevice::ReadOnly)) QVERIFY(!file.readAll().contains(key.toUtf8()));
    }

    // LORAFLEET_SERVE_DEVICE_SCREENSHOT=DIR: the tab at 1280x800 serving raw adapters under load.
    void screenshot() {
        const QByteArray shots = qgetenv("LORAFLEET_SERVE_DEVICE_SCREENSHOT");
        if (shots.isEmpty()) QSKIP("set LORAFLEET_SERVE_DEVICE_SCREENSHOT=DIR to save the screenshots");
        ui::Session session;
        ui::ServeView view(&session);
        view.resize(1280, 800);
        view.show();
        view.setDevice(QStringLiteral("auto"));
        view.setApiKey(QStringLiteral("sk-screenshot"));
        QVERIFY(startRaw(view, fleetDir()));
        ui::LoadSettings load = ui::ServeView::demoLoadSettings();
        load.adapters = 3;
        load.duration_s = 30;
        view.setLoadSettings(load);
        view.startLoad();
        QTest::qWait(4000);
        view.refreshNow();
        QTest::qWait(100);
        QVERIFY(view.grab().save(QString::fromLocal8Bit(shots) + QStringLiteral("/serve.png")));
        stop(view);
    }
};

QTEST_MAIN(TestServeDevice)
#include "test_serve_device.moc"
