// The Serve tab: the rolling history's derived series against hand-made snapshots; the controller
// serving a real compressed bank (built here from a synthetic fleet) on the bundled demo model, with the
// load generator's own tally checked against the engine's counters, /health answered over HTTP and the
// port freed by Stop; the view's charts and table against the controller's snapshots (memory split in
// MiB with a thin not-to-scale band for the rest of the process, legend entries never cut off, no
// hit-rate line without a cache and none before a lookup with one, requests/s in its own strip, tiles
// reset on Stop, New Workspace clears everything); the workspace's adapters served raw, by cluster or by
// the Fleet selection, a broken one skipped and listed; the load generator's limits and dropped
// arrivals explained; F5 / Shift+F5 in the Serve menu; clear errors for a bad model folder.
// Offscreen; LORAFLEET_SERVE_SCREENSHOT=PNG also saves the loaded view (..._RAW_SCREENSHOT the raw mode,
// ..._SKIPPED_SCREENSHOT the skipped list).
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/main/main_window.hpp"
#include "ui/serve/adapter_choice.hpp"
#include "ui/serve/serve_controller.hpp"
#include "ui/serve/serve_history.hpp"
#include "ui/serve/serve_resources.hpp"
#include "ui/serve/serve_view.hpp"
#include "ui/workspace/session.hpp"

#include <QMenu>
#include <QMenuBar>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <netinet/in.h>
#include <qcustomplot.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
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
        io::fleet adapters;
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

    // Active adapters and hit rate over the last 2 s, from counters the test chooses. The hit rate
    // exists only with a cache and only over an interval that looked something up: no invented 100%.
    void historyDerivesActiveAdaptersAndHitRate() {
        ui::ServeHistory h(10, 2);
        QVERIFY(h.add(snapshotAt(1.0, {{"a", 3}, {"b", 1}}, 8, 2), true));
        QCOMPARE(h.last().activeAdapters, 2); // first sample: everything since start
        QCOMPARE(h.last().hitRate, 0.8);
        QVERIFY(!h.add(snapshotAt(1.0, {}, 0, 0), true)); // not newer: ignored
        QVERIFY(h.add(snapshotAt(2.0, {{"a", 5}, {"b", 1}}, 8, 2), true));
        QCOMPARE(h.last().activeAdapters, 1);  // only a moved since t = 1
        QVERIFY(std::isnan(h.last().hitRate)); // no lookups since t = 1: no rate (a gap), not 100%
        QVERIFY(h.add(snapshotAt(3.5, {{"a", 5}, {"b", 2}, {"c", 1}}, 11, 4), true));
        // Reference: t = 1 (the newest sample >= 2 s old is none, so the oldest kept).
        QCOMPARE(h.last().activeAdapters, 3);
        QCOMPARE(h.last().hitRate, 3.0 / 5.0);
        QVERIFY(h.add(snapshotAt(4.5, {{"a", 5}, {"b", 2}, {"c", 1}}, 11, 4), true));
        // Reference now t = 2: a unchanged since, b and c moved.
        QCOMPARE(h.last().activeAdapters, 2);
        QVERIFY(h.add(snapshotAt(14.0, {{"a", 5}, {"b", 2}, {"c", 1}}, 11, 4), false));
        QCOMPARE(h.last().activeAdapters, 0);
        QVERIFY(std::isnan(h.last().hitRate)); // no cache (a bank): never a hit rate
        QCOMPARE(int(h.samples().size()), 2);  // 10 s window back from t = 14: t = 4.5 and 14 remain
        QCOMPARE(h.samples().front().t, 4.5);

        // Before any request (nothing looked up yet), even with a cache: no rate.
        ui::ServeHistory fresh(10, 2);
        QVERIFY(fresh.add(snapshotAt(0.5, {}, 0, 0), true));
        QVERIFY(std::isnan(fresh.last().hitRate));
    }

    // The memory split: the engine's parts, "runtime" = growth since the baseline beyond them, "other" =
    // the rest of the process; they add up to the RSS and none is negative.
    void historySplitsMemory() {
        ui::ServeHistory h(10, 2);
        h.setBaselineRss(300ull << 20);
        serve::metrics_snapshot m = snapshotAt(1.0, {}, 0, 0);
        m.memory.weights = 10ull << 20;
        m.memory.adapters = 2ull << 20;
        m.memory.kv_cache_used = 3ull << 20;
        m.memory.kv_cache_reserved = 64ull << 20;
        m.memory.rss = 340ull << 20; // 15 MiB known + 25 MiB grown + 300 MiB the rest
        QVERIFY(h.add(m, false));
        const ui::ServeSample& s = h.last();
        QCOMPARE(s.weightsMiB, 10.0);
        QCOMPARE(s.adaptersMiB, 2.0);
        QCOMPARE(s.kvMiB, 3.0);
        QCOMPARE(s.kvReservedMiB, 64.0);
        QCOMPARE(s.runtimeMiB, 25.0);
        QCOMPARE(s.otherMiB, 300.0);
        // RSS below the baseline plus the parts (memory given back): runtime 0, other what is left.
        m.uptime_s = 2.0;
        m.memory.rss = 200ull << 20;
        QVERIFY(h.add(m, false));
        QCOMPARE(h.last().runtimeMiB, 0.0);
        QCOMPARE(h.last().otherMiB, 185.0);
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
        // Memory: weights, + adapters, + KV in use, + runtime (the server's parts and what the process
        // grew by since Start), then the rest of the process as a thin band, not to scale.
        QCOMPARE(lastValue(view.memoryPlot(), 0), double(m.memory.weights) / kMiB);
        const double own = double(m.memory.weights + m.memory.adapters + m.memory.kv_cache_used) / kMiB +
                           h.last().runtimeMiB;
        QVERIFY(std::abs(lastValue(view.memoryPlot(), 3) - own) < 1e-9 * std::max(1.0, own));
        QVERIFY(std::abs(own + h.last().otherMiB - double(m.memory.rss) / kMiB) < 1e-6); // adds up to RSS
        QVERIFY2(h.last().otherMiB > 0, "the test process itself (Qt, the fleet) is the rest");
        double ownMax = 0;
        for (const auto& s : h.samples())
            ownMax = std::max(ownMax, s.weightsMiB + s.adaptersMiB + s.kvMiB + s.runtimeMiB);
        const QCPRange memRange = view.memoryPlot()->yAxis->range();
        QVERIFY2(memRange.upper >= ownMax && memRange.upper <= 1.3 * ownMax,
                 qPrintable(QString("axis %1, server parts %2 MiB").arg(memRange.upper).arg(ownMax)));
        const double bandHeight = lastValue(view.memoryPlot(), 4) - lastValue(view.memoryPlot(), 3);
        QVERIFY2(bandHeight > 0 && bandHeight <= 0.1 * memRange.size(),
                 qPrintable(QString::number(bandHeight)));
        QVERIFY(m.memory.adapters > 0); // the bank's bases and cores are resident
        // Legend: every layer's size with its unit, e.g. "adapters 2.0 MiB", "KV in use 0.1 of 64.0 MiB".
        const auto mib = [](double v) { // the sample's MiB back to bytes, in the app's size format
            return ui::formatBytes(quint64(std::llround(v * kMiB)));
        };
        QCOMPARE(view.memoryPlot()->graph(1)->name(),
                 QStringLiteral("adapters ") + mib(h.last().adaptersMiB));
        QVERIFY2(view.memoryPlot()->graph(2)->name().startsWith(QStringLiteral("KV in use ")) &&
                     view.memoryPlot()->graph(2)->name().endsWith(QStringLiteral(" of ") +
                                                                  mib(h.last().kvReservedMiB)),
                 qPrintable(view.memoryPlot()->graph(2)->name()));
        QVERIFY(view.memoryPlot()->graph(4)->name().contains(mib(h.last().otherMiB)));
        // No legend entry is cut off: each gets at least its own minimum width, inside the chart.
        QTest::qWait(50); // the queued replots
        for (QCustomPlot* p :
             {view.throughputPlot(), view.latencyPlot(), view.memoryPlot(), view.adaptersPlot()}) {
            p->replot();
            for (int i = 0; i < p->legend->itemCount(); ++i) {
                QCPAbstractLegendItem* item = p->legend->item(i);
                if (!item) continue; // an empty cell of a wrapped last row
                const QRect r = item->outerRect();
                QVERIFY2(r.width() >= item->minimumOuterSizeHint().width() && p->rect().contains(r),
                         qPrintable(QString("%1: legend item %2 at %3,%4 %5x%6 (needs %7) in %8 px")
                                        .arg(p->objectName())
                                        .arg(i)
                                        .arg(r.x())
                                        .arg(r.y())
                                        .arg(r.width())
                                        .arg(r.height())
                                        .arg(item->minimumOuterSizeHint().width())
                                        .arg(p->width())));
            }
        }
        // Compressed mode has no cache: no hit-rate line, legend entry or right axis.
        QVERIFY(!view.adaptersPlot()->graph(1)->visible());
        QVERIFY(!view.adaptersPlot()->legend->hasItemWithPlottable(view.adaptersPlot()->graph(1)));
        QVERIFY(!view.adaptersPlot()->yAxis2->visible());
        QCOMPARE(lastValue(view.adaptersPlot(), 0), double(h.last().activeAdapters));
        // Requests/s in a strip of its own, below the tokens/s (never drawn over them).
        QCPAxisRect* tokensRect = view.throughputPlot()->graph(1)->valueAxis()->axisRect();
        QCPAxisRect* requestsRect = view.throughputPlot()->graph(2)->valueAxis()->axisRect();
        QVERIFY(tokensRect != requestsRect);
        QVERIFY2(
            requestsRect->rect().top() >= tokensRect->rect().bottom(),
            qPrintable(QString("%1 vs %2").arg(requestsRect->rect().top()).arg(tokensRect->rect().bottom())));
        QCOMPARE(requestsRect->axis(QCPAxis::atBottom)->range(), view.throughputPlot()->xAxis->range());
        // Tiles show the live numbers while serving.
        QVERIFY(!view.tileTexts().contains(QStringLiteral("–")));

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
        view.refreshNow();
        QCOMPARE(view.tileTexts(), QStringList(6, QStringLiteral("–"))); // no stale numbers after Stop
        QVERIFY(view.throughputPlot()->graph(0)->dataCount() > 0);       // the last run stays on the charts
        QVERIFY(view.adapterTable()->rowCount() > 0);

        // New Workspace: charts, table, tiles and tally are cleared.
        view.resetForNewWorkspace();
        for (QCustomPlot* p :
             {view.throughputPlot(), view.latencyPlot(), view.memoryPlot(), view.adaptersPlot()})
            for (int g = 0; g < p->graphCount(); ++g)
                QCOMPARE(p->graph(g)->dataCount(), 0);
        QCOMPARE(view.adapterTable()->rowCount(), 0);
        QCOMPARE(view.tileTexts(), QStringList(6, QStringLiteral("–")));
        QVERIFY(view.tallyText().isEmpty());
    }

    // The workspace's imported adapters served raw: the hit-rate line is shown (a cache exists), with no
    // value before anything was looked up; the load generator's Adapters box stops at the served count
    // and says so; dropped arrivals are explained.
    void workspaceAdaptersRawWithCacheAndLoadLimits() {
        ui::Session session;
        QVERIFY(session.importPaths({m_dir.filePath(QStringLiteral("fleet"))}));
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 12);
        ui::ServeView view(&session);
        view.resize(1500, 900);
        view.show();
        auto* c = view.controller();
        c->setPollInterval(100);
        view.setSource(ui::ServeView::Source::WorkspaceAdapters);
        view.setSubset(ui::AdapterChoice::Subset::All);
        QSignalSpy started(c, &ui::ServeController::started);
        view.startServer();
        QVERIFY2(started.wait(60'000), qPrintable(view.statusText()));
        QCOMPARE(c->adapterMode(), QString("raw"));
        QCOMPARE(c->adapterNames().size(), 12);
        view.refreshNow();
        QVERIFY(view.adaptersPlot()->graph(1)->visible());
        QVERIFY(view.adaptersPlot()->legend->hasItemWithPlottable(view.adaptersPlot()->graph(1)));
        QVERIFY(view.adaptersPlot()->yAxis2->visible());
        // Before any request nothing was looked up: no hit rate at all (not a flat 100%).
        QVERIFY(std::isnan(c->history().samples().front().hitRate));
        QVERIFY(std::isnan(view.adaptersPlot()->graph(1)->data()->constBegin()->value));

        // Asking for 100 adapters when 12 are served: the box shows 12 and says only 12 are served.
        ui::LoadSettings load;
        load.rate = 400;
        load.adapters = 100;
        load.duration_s = 1;
        load.max_tokens = 16;
        load.max_in_flight = 2; // far below what 400 req/s needs: arrivals are dropped
        view.setLoadSettings(load);
        QCOMPARE(view.loadSettings().adapters, 12);
        QVERIFY2(view.loadNote().contains(QStringLiteral("only 12 served")), qPrintable(view.loadNote()));
        QSignalSpy finished(c, &ui::ServeController::loadFinished);
        view.startLoad();
        QVERIFY(finished.wait(60'000));
        c->pollNow();
        view.refreshNow();
        const auto tally = *c->loadTally();
        QVERIFY(tally.dropped > 0);
        QVERIFY2(view.tallyText().contains(QStringLiteral("dropped %1 (not sent: 2 already in flight)")
                                               .arg(ui::formatCount(qint64(tally.dropped)))),
                 qPrintable(view.tallyText()));
        QVERIFY2(view.tallyToolTip().contains(QStringLiteral("did not send")),
                 qPrintable(view.tallyToolTip()));
        // After requests, the raw cache was looked up: the hit rate has values in 0..100.
        bool finite = false;
        for (auto it = view.adaptersPlot()->graph(1)->data()->constBegin();
             it != view.adaptersPlot()->graph(1)->data()->constEnd(); ++it)
            if (!std::isnan(it->value)) {
                finite = true;
                QVERIFY(it->value >= 0 && it->value <= 100);
            }
        QVERIFY(finite);
        const QByteArray shot = qgetenv("LORAFLEET_SERVE_RAW_SCREENSHOT");
        if (!shot.isEmpty()) {
            QTest::qWait(50); // the queued replots
            QVERIFY(view.grab().save(QString::fromLocal8Bit(shot)));
        }

        QSignalSpy stopped(c, &ui::ServeController::stopped);
        view.stopAction()->trigger(); // Shift+F5
        QVERIFY(stopped.wait(60'000));
        QCOMPARE(view.loadSettings().adapters, 100); // stopped: what was asked for again
        QVERIFY(view.loadNote().isEmpty());
    }

    // Serving part of the workspace: one cluster of the bank, or the Fleet table's selection, in
    // compressed and raw mode; the served names are exactly the chosen ones.
    void servesChosenSubset() {
        ui::Session session;
        QVERIFY(session.importPaths({m_dir.filePath(QStringLiteral("fleet"))}));
        QVERIFY(test::waitForImport(session));
        session.setBank(m_bank);
        ui::ServeView view(&session);
        auto* c = view.controller();
        auto serveAndList = [&]() -> QStringList {
            QSignalSpy started(c, &ui::ServeController::started);
            QSignalSpy failed(c, &ui::ServeController::failed);
            view.startServer();
            if (!started.wait(60'000)) return {QStringLiteral("failed: ") + view.statusText()};
            const QStringList names = c->adapterNames();
            QSignalSpy stopped(c, &ui::ServeController::stopped);
            view.stopServer();
            if (!stopped.wait(60'000)) return {QStringLiteral("did not stop")};
            return names;
        };
        QStringList cluster1; // independently: the bank's members of cluster 1
        for (const auto& a : m_bank->adapters)
            if (a.cluster == 1) cluster1 << QString::fromStdString(a.name);
        cluster1.sort();
        QVERIFY(!cluster1.isEmpty() && cluster1.size() < 12);

        view.setSource(ui::ServeView::Source::Bank);
        view.setSubset(ui::AdapterChoice::Subset::Cluster, 1);
        QCOMPARE(serveAndList(), cluster1);
        view.setSource(ui::ServeView::Source::WorkspaceAdapters);
        view.setSubset(ui::AdapterChoice::Subset::Cluster, 1);
        QCOMPARE(serveAndList(), cluster1);

        const QStringList picked = {QStringLiteral("adapter-0007"), QStringLiteral("adapter-0002"),
                                    QStringLiteral("adapter-0010")};
        view.setSelectionProvider([&] { return picked; });
        QStringList want = picked;
        want.sort();
        view.setSource(ui::ServeView::Source::Bank);
        view.setSubset(ui::AdapterChoice::Subset::Selection);
        QCOMPARE(serveAndList(), want);
        view.setSource(ui::ServeView::Source::WorkspaceAdapters);
        view.setSubset(ui::AdapterChoice::Subset::Selection);
        QCOMPARE(serveAndList(), want);

        // An empty selection is refused with a reason, nothing starts.
        view.setSelectionProvider([] { return QStringList(); });
        view.setSubset(ui::AdapterChoice::Subset::Selection);
        view.startServer();
        QCOMPARE(c->state(), ui::ServeController::State::Stopped);
        QVERIFY2(view.statusText().contains(QStringLiteral("no adapter is selected")),
                 qPrintable(view.statusText()));

        // The bank subset is a valid bank holding exactly the chosen adapters' cores.
        const auto sub = ui::bankSubset(*m_bank, want);
        sub->validate("subset");
        QCOMPARE(int(sub->adapters.size()), 3);
        for (std::size_t i = 0; i < sub->adapters.size(); ++i) {
            const std::size_t j = *m_bank->find_adapter(sub->adapters[i].name);
            for (std::size_t m = 0; m < m_bank->modules.size(); ++m)
                QVERIFY(std::equal(sub->core(m, i), sub->core(m, i) + sub->core_size(), m_bank->core(m, j)));
        }
    }

    // An imported adapter whose file broke after the import is skipped with its reason; the others serve.
    void brokenWorkspaceAdapterIsSkippedAndListed() {
        QTemporaryDir dir;
        test::writeTinyFleet(dir.filePath(QStringLiteral("fleet")), 4, 21);
        ui::Session session;
        QVERIFY(session.importPaths({dir.filePath(QStringLiteral("fleet"))}));
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 4);
        const QString broken = dir.filePath(QStringLiteral("fleet/adapter-0001/adapter_model.safetensors"));
        { // a new, truncated file in its place (renamed over it: the imported adapter's mapping stays valid)
            const std::string tmp = broken.toStdString() + ".tmp";
            std::filesystem::copy_file(broken.toStdString(), tmp);
            std::filesystem::resize_file(tmp, std::filesystem::file_size(tmp) / 2);
            std::filesystem::rename(tmp, broken.toStdString());
        }
        ui::ServeView view(&session);
        auto* c = view.controller();
        view.setSource(ui::ServeView::Source::WorkspaceAdapters);
        QSignalSpy started(c, &ui::ServeController::started);
        view.startServer();
        QVERIFY2(started.wait(60'000), qPrintable(view.statusText()));
        QCOMPARE(c->adapterNames(), QStringList({"adapter-0000", "adapter-0002", "adapter-0003"}));
        QCOMPARE(c->skippedAdapters().size(), 1);
        QVERIFY2(view.skippedText().contains(QStringLiteral("adapter-0001")), qPrintable(view.skippedText()));
        QVERIFY(view.skippedText().contains(QStringLiteral("Skipped 1 adapter")));
        QVERIFY(c->skippedAdapters().first().reason.size() > 20); // the engine's reason, not a placeholder
        const QByteArray shot = qgetenv("LORAFLEET_SERVE_SKIPPED_SCREENSHOT");
        if (!shot.isEmpty()) {
            view.resize(1500, 900);
            view.show();
            QTest::qWait(100);
            QVERIFY(view.grab().save(QString::fromLocal8Bit(shot)));
        }
        QSignalSpy stopped(c, &ui::ServeController::stopped);
        view.stopServer();
        QVERIFY(stopped.wait(60'000));
    }

    // Start / Stop are actions with F5 / Shift+F5, in the main window's Serve menu.
    void startStopShortcutsInMenu() {
        ui::MainWindow w;
        ui::ServeView* view = w.serveView();
        QCOMPARE(view->startAction()->shortcut(), QKeySequence(Qt::Key_F5));
        QCOMPARE(view->stopAction()->shortcut(), QKeySequence(Qt::SHIFT | Qt::Key_F5));
        QMenu* serveMenu = nullptr;
        for (QAction* a : w.menuBar()->actions())
            if (a->menu() && a->text().remove(QLatin1Char('&')) == QStringLiteral("Serve"))
                serveMenu = a->menu();
        QVERIFY(serveMenu);
        QVERIFY(serveMenu->actions().contains(view->startAction()));
        QVERIFY(serveMenu->actions().contains(view->stopAction()));
        QVERIFY(view->startAction()->isEnabled());
        QVERIFY(!view->stopAction()->isEnabled());
        view->setSource(ui::ServeView::Source::BaseOnly);
        QSignalSpy started(view->controller(), &ui::ServeController::started);
        view->startAction()->trigger();
        QVERIFY(started.wait(60'000));
        QVERIFY(!view->startAction()->isEnabled());
        QVERIFY(view->stopAction()->isEnabled());
        QSignalSpy stopped(view->controller(), &ui::ServeController::stopped);
        view->stopAction()->trigger();
        QVERIFY(stopped.wait(60'000));
    }

    // File > New Workspace (Session::newWorkspace) through the main window: the server serving the old
    // workspace stops and the Serve tab's charts, table and tiles are cleared.
    void newWorkspaceResetsServeTab() {
        ui::MainWindow w;
        ui::ServeView* view = w.serveView();
        auto* c = view->controller();
        view->setSource(ui::ServeView::Source::BaseOnly);
        QSignalSpy started(c, &ui::ServeController::started);
        view->startServer();
        QVERIFY(started.wait(60'000));
        c->pollNow();
        view->refreshNow();
        QVERIFY(view->memoryPlot()->graph(0)->dataCount() > 0);
        QSignalSpy stopped(c, &ui::ServeController::stopped);
        w.session()->newWorkspace();
        QVERIFY(c->state() != ui::ServeController::State::Running);
        QVERIFY(stopped.count() == 1 || stopped.wait(60'000));
        view->refreshNow();
        for (QCustomPlot* p :
             {view->throughputPlot(), view->latencyPlot(), view->memoryPlot(), view->adaptersPlot()})
            for (int g = 0; g < p->graphCount(); ++g)
                QCOMPARE(p->graph(g)->dataCount(), 0);
        QCOMPARE(view->adapterTable()->rowCount(), 0);
        QCOMPARE(view->tileTexts(), QStringList(6, QStringLiteral("–")));
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
