// The Serve tab: the rolling history's derived series against hand-made snapshots; the controller
// serving a real compressed bank (built here from a synthetic fleet) on the bundled demo model, with the
// load generator's own tally checked against the engine's counters, /health answered over HTTP and the
// port freed by Stop; the view's charts and table against the controller's snapshots; clear errors for
// a bad model folder. Offscreen; LORAFLEET_SERVE_SCREENSHOT=PNG also saves the loaded view.
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/text_format.hpp"
#include "ui/serve/serve_controller.hpp"
#include "ui/serve/serve_history.hpp"
#include "ui/serve/serve_resources.hpp"
#include "ui/serve/serve_view.hpp"
#include "ui/workspace/session.hpp"

#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <netinet/in.h>
#include <qcustomplot.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <set>

using namespace lorafleet;

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// True when a connection to 127.0.0.1:port is refused: no socket listens there any more. (Binding it
// again is not the test: the server's closed connections may sit in TIME_WAIT on that port.)
bool nothingListens(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(std::uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool refused =
        ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == ECONNREFUSED;
    ::close(fd);
    return refused;
}

serve::metrics_snapshot snapshotAt(double t, std::vector<std::pair<std::string, std::uint64_t>> perAdapter,
                                   std::uint64_t hits, std::uint64_t misses) {
    serve::metrics_snapshot m;
    m.uptime_s = t;
    for (auto& [name, n] : perAdapter) {
        serve::adapter_traffic a;
        a.name = name;
        a.requests = n;
        m.per_adapter.push_back(a);
    }
    m.adapter_cache_hits = hits;
    m.adapter_cache_misses = misses;
    return m;
}

} // namespace

class TestServeView : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    std::shared_ptr<const bank::compressed_bank> m_bank;

    static QString modelDir() {
        return QString::fromStdString((test::source_dir() / "resources/models/tinystories-656k").string());
    }

    bool waitForState(ui::ServeController& c, ui::ServeController::State s, int timeoutMs = 60'000) {
        QElapsedTimer timer;
        timer.start();
        while (c.state() != s && timer.elapsed() < timeoutMs)
            QTest::qWait(20);
        return c.state() == s;
    }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_dir.isValid());
        const QString fleet = m_dir.filePath(QStringLiteral("fleet"));
        test::writeTinyFleet(fleet, 12);
        std::vector<std::shared_ptr<const io::peft_adapter>> adapters;
        for (const auto& dir : io::find_adapter_dirs(fleet.toStdString()))
            adapters.push_back(std::make_shared<const io::peft_adapter>(io::load_peft_adapter(dir)));
        QCOMPARE(int(adapters.size()), 12);
        compress::compress_options options;
        options.jd.rank = 4;
        options.clusters = 2;
        auto backend = lorafleet::backend::make_compress_backend("cpu", 1);
        auto fb = bank::compress_adapters_to_bank(adapters, *backend, options, std::nullopt, 1);
        m_bank = std::make_shared<const bank::compressed_bank>(std::move(fb.bank));
    }

    // The bundled model and prompts are found from the test executable inside the build tree.
    void findsBundledResources() {
        QCOMPARE(QDir(ui::demoModelDir()).canonicalPath(), QDir(modelDir()).canonicalPath());
        const QStringList prompts = ui::readPromptFile(ui::sonnetsPath());
        // Independently: paragraphs = non-empty lines that follow an empty line (or start the file).
        std::ifstream in(test::source_dir() / "resources/prompts/sonnets.txt");
        std::string line;
        bool previousEmpty = true;
        int paragraphs = 0;
        while (std::getline(in, line)) {
            const bool empty = line.find_first_not_of(" \t\r") == std::string::npos;
            if (!empty && previousEmpty) ++paragraphs;
            previousEmpty = empty;
        }
        QVERIFY(paragraphs >= 20);
        QCOMPARE(int(prompts.size()), paragraphs);
        QVERIFY(prompts.first().startsWith(QStringLiteral("From fairest creatures")));
        QCOMPARE(int(prompts.first().count(QLatin1Char('\n'))), 13); // a sonnet: 14 lines
    }

    // Active adapters and hit rate over the last 2 s, from counters the test chooses.
    void historyDerivesActiveAdaptersAndHitRate() {
        ui::ServeHistory h(10, 2);
        QVERIFY(h.add(snapshotAt(1.0, {{"a", 3}, {"b", 1}}, 8, 2), false));
        QCOMPARE(h.last().activeAdapters, 2); // first sample: everything since start
        QCOMPARE(h.last().hitRate, 0.8);
        QVERIFY(!h.add(snapshotAt(1.0, {}, 0, 0), false)); // not newer: ignored
        QVERIFY(h.add(snapshotAt(2.0, {{"a", 5}, {"b", 1}}, 8, 2), false));
        QCOMPARE(h.last().activeAdapters, 1); // only a moved since t = 1
        QCOMPARE(h.last().hitRate, 0.8);      // no lookups: the previous value
        QVERIFY(h.add(snapshotAt(3.5, {{"a", 5}, {"b", 2}, {"c", 1}}, 11, 4), false));
        // Reference: t = 1 (the newest sample >= 2 s old is none, so the oldest kept).
        QCOMPARE(h.last().activeAdapters, 3);
        QCOMPARE(h.last().hitRate, 3.0 / 5.0);
        QVERIFY(h.add(snapshotAt(4.5, {{"a", 5}, {"b", 2}, {"c", 1}}, 11, 4), false));
        // Reference now t = 2: a unchanged since, b and c moved.
        QCOMPARE(h.last().activeAdapters, 2);
        QVERIFY(h.add(snapshotAt(14.0, {{"a", 5}, {"b", 2}, {"c", 1}}, 11, 4), true));
        QCOMPARE(h.last().activeAdapters, 0);
        QCOMPARE(h.last().hitRate, 1.0);      // compressed: every adapter resident
        QCOMPARE(int(h.samples().size()), 2); // 10 s window back from t = 14: t = 4.5 and 14 remain
        QCOMPARE(h.samples().front().t, 4.5);
    }

    // The controller serves the bank: HTTP /health answers, the generator's completions are exactly the
    // engine's, spread over the chosen adapters, and Stop closes the port.
    void controllerServesBankUnderLoad() {
        ui::ServeController controller(nullptr);
        controller.setPollInterval(100);
        QSignalSpy started(&controller, &ui::ServeController::started);
        QSignalSpy failed(&controller, &ui::ServeController::failed);
        ui::ServeConfig config;
        config.modelDir = modelDir();
        config.source = ui::ServeConfig::Source::Bank;
        config.bank = m_bank;
        config.threads = 1;
        controller.start(config);
        QCOMPARE(controller.state(), ui::ServeController::State::Starting);
        QVERIFY(started.wait(60'000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(controller.state(), ui::ServeController::State::Running);
        QCOMPARE(controller.adapterMode(), QString("compressed"));
        QStringList expected;
        for (const auto& a : m_bank->adapters)
            expected << QString::fromStdString(a.name);
        expected.sort();
        QCOMPARE(controller.adapterNames(), expected);
        const int port = controller.port();
        QVERIFY(port > 0);
        QCOMPARE(started.first().at(0).toInt(), port);

        test::http_client client(port, 5000);
        QCOMPARE(client.get("/health").status, 200);
        QVERIFY(!nothingListens(port));

        ui::LoadSettings load;
        load.rate = 25;
        load.adapters = 4;
        load.duration_s = 2;
        load.max_tokens = 8;
        QSignalSpy finished(&controller, &ui::ServeController::loadFinished);
        QString error;
        QVERIFY2(controller.startLoad(load, &error), qPrintable(error));
        QVERIFY(controller.isLoadRunning());
        QVERIFY(finished.wait(120'000));
        controller.pollNow();
        const auto tally = *controller.loadTally();
        QVERIFY2(tally.submitted >= 20, qPrintable(QString::number(tally.submitted))); // ~50 expected
        QCOMPARE(tally.rejected, 0u);
        QCOMPARE(tally.failed, 0u);
        QCOMPARE(tally.completed, tally.submitted);
        QCOMPARE(tally.completionTokens, tally.completed * 8); // EOS ignored: exactly max_tokens each

        // The engine's counters agree with the client's tally.
        const auto& m = *controller.lastSnapshot();
        QCOMPARE(m.requests_completed, tally.completed);
        QCOMPARE(m.completion_tokens, tally.completionTokens);
        std::set<std::string> targets;
        for (int i = 0; i < 4; ++i)
            targets.insert(expected[i].toStdString());
        std::uint64_t sum = 0;
        for (const auto& a : m.per_adapter) {
            QVERIFY2(targets.count(a.name), a.name.c_str()); // only the first 4 adapters by name
            QCOMPARE(a.completion_tokens, a.requests * 8);
            sum += a.requests;
        }
        QCOMPARE(sum, tally.completed);
        QCOMPARE(int(m.per_adapter.size()), 4); // ~50 uniform draws over 4 reach all of them
        const ui::ServeSample& last = controller.history().last();
        QCOMPARE(last.completed, tally.completed);
        QCOMPARE(last.tokensPerS, m.decode_tokens_per_s);

        QSignalSpy stopped(&controller, &ui::ServeController::stopped);
        controller.stop();
        QVERIFY(stopped.wait(60'000));
        QCOMPARE(controller.state(), ui::ServeController::State::Stopped);
        QCOMPARE(controller.port(), 0);
        QVERIFY(nothingListens(port));
        client.close();
        QCOMPARE(test::http_client(port, 1000).get("/health").status, -1);
    }

    // Raw PEFT folders behind the LRU cache: raw mode, every folder listed, the generator's completions
    // are the engine's. The 12 adapters (2 layers x q, v at rank 4: 14 KiB each in float32) all fit the
    // 1 MiB cache, so each adapter served misses exactly once and nothing is evicted.
    void controllerServesRawFolders() {
        ui::ServeController controller(nullptr);
        QSignalSpy started(&controller, &ui::ServeController::started);
        QSignalSpy failed(&controller, &ui::ServeController::failed);
        ui::ServeConfig config;
        config.modelDir = modelDir();
        config.source = ui::ServeConfig::Source::RawFolders;
        config.adapterFolders = {m_dir.filePath(QStringLiteral("fleet"))};
        config.adapterCacheMiB = 1;
        config.threads = 1;
        controller.start(config);
        QVERIFY(started.wait(60'000));
        QCOMPARE(failed.count(), 0);
        QCOMPARE(controller.adapterMode(), QString("raw"));
        QCOMPARE(controller.adapterNames().size(), 12);
        ui::LoadSettings load;
        load.rate = 30;
        load.adapters = 12;
        load.duration_s = 1.5;
        load.max_tokens = 4;
        QSignalSpy finished(&controller, &ui::ServeController::loadFinished);
        QVERIFY(controller.startLoad(load));
        QVERIFY(finished.wait(120'000));
        controller.pollNow();
        const auto tally = *controller.loadTally();
        const auto& m = *controller.lastSnapshot();
        QVERIFY(tally.completed > 10);
        QCOMPARE(tally.failed, 0u);
        QCOMPARE(m.requests_completed, tally.completed);
        QVERIFY(m.adapter_cache_misses >= 1); // each adapter is loaded on first use at least
        const double rate =
            double(m.adapter_cache_hits) / double(m.adapter_cache_hits + m.adapter_cache_misses);
        // The first sample's window covers the run when it began with nothing looked up before it.
        QVERIFY(controller.history().last().hitRate >= 0 && controller.history().last().hitRate <= 1);
        QVERIFY(rate < 1.0);
        QSignalSpy stopped(&controller, &ui::ServeController::stopped);
        controller.stop();
        QVERIFY(stopped.wait(60'000));
    }

    // The view over the session's bank under load: every chart's last point is the controller's last
    // snapshot, one point per sample, the table is the snapshot's per-adapter list.
    void viewChartsMatchSnapshots() {
        ui::Session session;
        session.setBank(m_bank);
        ui::ServeView view(&session);
        view.resize(1500, 900);
        view.show();
        QCOMPARE(QDir(view.modelDir()).canonicalPath(), QDir(modelDir()).canonicalPath()); // the default
        QSignalSpy live(&view, &ui::ServeView::liveDataReady);
        view.startDemoLoad();
        QVERIFY(live.wait(120'000));
        QVERIFY(view.hasLiveData());
        auto* c = view.controller();
        QCOMPARE(c->adapterMode(), QString("compressed"));
        QVERIFY(
            view.curlExample().contains(QStringLiteral("http://127.0.0.1:%1/v1/completions").arg(c->port())));
        QVERIFY(
            view.curlExample().contains(QStringLiteral("\"model\": \"%1\"").arg(c->adapterNames().first())));

        c->pollNow();
        view.refreshNow();
        const auto& h = c->history();
        const auto& m = *c->lastSnapshot();
        QVERIFY(h.span() >= 2.0);
        QVERIFY(m.requests_completed > 0);
        const int n = int(h.samples().size());
        for (QCustomPlot* p :
             {view.throughputPlot(), view.latencyPlot(), view.memoryPlot(), view.adaptersPlot()})
            for (int g = 0; g < p->graphCount(); ++g)
                QCOMPARE(p->graph(g)->dataCount(), n);
        auto lastValue = [](QCustomPlot* p, int g) { return (p->graph(g)->data()->constEnd() - 1)->value; };
        auto lastKey = [](QCustomPlot* p, int g) { return (p->graph(g)->data()->constEnd() - 1)->key; };
        QCOMPARE(lastKey(view.throughputPlot(), 0), m.uptime_s);
        QCOMPARE(lastValue(view.throughputPlot(), 0), m.decode_tokens_per_s);
        QCOMPARE(lastValue(view.throughputPlot(), 2), m.requests_per_s);
        QVERIFY(m.decode_tokens_per_s > 0);
        QCOMPARE(lastValue(view.latencyPlot(), 0), m.ttft.p50 * 1e3);
        QCOMPARE(lastValue(view.latencyPlot(), 3), m.end_to_end.p99 * 1e3);
        QCOMPARE(lastValue(view.memoryPlot(), 0), double(m.memory.weights) / kMiB);
        const double stacked = double(m.memory.weights) / kMiB + double(m.memory.kv_cache_used) / kMiB +
                               double(m.memory.adapters) / kMiB + double(m.memory.other) / kMiB;
        QVERIFY(std::abs(lastValue(view.memoryPlot(), 3) - stacked) < 1e-9 * std::max(1.0, stacked));
        QVERIFY(m.memory.adapters > 0);                     // the bank's bases and cores are resident
        QCOMPARE(lastValue(view.adaptersPlot(), 1), 100.0); // compressed: all resident
        QCOMPARE(lastValue(view.adaptersPlot(), 0), double(h.last().activeAdapters));

        QTableWidget* table = view.adapterTable();
        QCOMPARE(table->rowCount(), int(m.per_adapter.size()));
        for (int r = 0; r < table->rowCount(); ++r) {
            QCOMPARE(table->item(r, 0)->text(), QString::fromStdString(m.per_adapter[std::size_t(r)].name));
            QCOMPARE(table->item(r, 1)->text(),
                     ui::formatCount(qint64(m.per_adapter[std::size_t(r)].requests)));
        }

        const QByteArray shot = qgetenv("LORAFLEET_SERVE_SCREENSHOT");
        if (!shot.isEmpty()) {
            QTest::qWait(1500);
            view.refreshNow();
            QTest::qWait(50); // the queued replots
            QVERIFY(view.grab().save(QString::fromLocal8Bit(shot)));
        }

        const int port = c->port();
        QSignalSpy stopped(c, &ui::ServeController::stopped);
        view.stopServer();
        QVERIFY(stopped.wait(60'000));
        QVERIFY(nothingListens(port));
        QVERIFY(view.statusText().contains(QStringLiteral("Stopped")));
    }

    // A missing folder and a folder that is not a model: a clear message in the view, nothing running.
    void invalidModelFolderShowsError() {
        ui::Session session;
        ui::ServeView view(&session);
        auto* c = view.controller();
        QSignalSpy failed(c, &ui::ServeController::failed);
        view.setModelDir(m_dir.filePath(QStringLiteral("no-such-model")));
        view.setSource(ui::ServeView::Source::BaseOnly);
        view.startServer();
        QVERIFY(failed.wait(30'000));
        QCOMPARE(c->state(), ui::ServeController::State::Stopped);
        QVERIFY2(view.statusText().contains(QStringLiteral("does not exist")), qPrintable(view.statusText()));
        QVERIFY(view.statusText().contains(QStringLiteral("no-such-model")));

        view.setModelDir(m_dir.filePath(QStringLiteral("fleet"))); // a folder, but not a model
        view.startServer();
        QVERIFY(failed.wait(30'000));
        QVERIFY2(view.statusText().contains(QStringLiteral("config.json")), qPrintable(view.statusText()));

        // The bank source with no bank in the session says so.
        view.setModelDir(modelDir());
        view.setSource(ui::ServeView::Source::Bank);
        view.startServer();
        QVERIFY(failed.wait(30'000));
        QVERIFY2(view.statusText().contains(QStringLiteral("no compressed bank")),
                 qPrintable(view.statusText()));
        QCOMPARE(c->state(), ui::ServeController::State::Stopped);
    }
};

QTEST_MAIN(TestServeView)
#include "test_serve_view.moc"
