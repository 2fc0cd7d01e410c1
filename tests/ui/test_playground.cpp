// The Playground: the divergence functions on planted strings and token lists; the view over a workspace
// (a synthetic tinystories fleet of strong adapters imported, compressed lossily at rank 2 into one
// cluster, so raw departs from base and compressed from raw) on the bundled
// demo model, checked against independent generations: the raw column is serve::generate with the
// adapter's PEFT folder (open_raw_provider), the compressed column serve::generate with the bank
// (open_bank_provider), the base column serve::generate without an adapter, all greedy; the columns
// stream (several pieces, each before the column's end, concatenating to the final text); the highlight
// starts where the raw and compressed texts first differ (found here by std::mismatch); a workspace
// without a bank says so in the compressed column. Offscreen; LORAFLEET_PLAYGROUND_SCREENSHOT=PNG saves
// the view after a run.
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/support/watchdog.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/playground/playground_diff.hpp"
#include "ui/playground/playground_view.hpp"
#include "ui/workspace/session.hpp"

#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <algorithm>
#include <chrono>
#include <random>
#include <vector>

using namespace lorafleet;
using ui::PlaygroundColumn;

namespace {

constexpr int kMaxTokens = 40;
const char* const kPrompt = "Once upon a time there was a little";

struct Reference {
    std::string text;
    std::vector<int> tokens;
};

// Greedy generation without the serving engine: the single-sequence path over a transformer.
Reference generateAlone(const std::shared_ptr<const serve::model_weights>& weights,
                        const serve::Tokenizer& tok, serve::AdapterProvider* provider,
                        const std::string& adapter) {
    serve::transformer model(weights, 1);
    const std::vector<int> prompt = tok.encode(kPrompt, true);
    serve::generation_params params;
    params.max_tokens = kMaxTokens;
    if (provider) {
        params.adapter = provider->find(adapter);
        if (params.adapter < 0) throw std::runtime_error("unknown adapter " + adapter);
        provider->prepare(std::span(&params.adapter, 1));
    }
    const auto result = serve::generate(model, tok, prompt, params, {}, provider);
    return {result.text, result.tokens};
}

} // namespace

class TestPlayground : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    std::shared_ptr<const bank::compressed_bank> m_bank;
    std::shared_ptr<const serve::model_weights> m_weights;
    std::shared_ptr<const serve::Tokenizer> m_tokenizer;

    bool runAndWait(ui::PlaygroundView& view) {
        QSignalSpy done(&view, &ui::PlaygroundView::runFinished);
        if (!view.run()) return false;
        return done.wait(120'000);
    }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_dir.isValid());
        // Strong adapters (scale alpha / r = 128 on every attention projection), so each one changes the
        // base model's greedy text, and noise that a rank-2 bank cannot keep, so compressed departs.
        synth::synth_options options;
        options.out_dir = m_dir.filePath(QStringLiteral("fleet")).toStdString();
        options.adapters = 6;
        options.geometry = *io::geometry_preset("tinystories-656k");
        options.modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
        options.rank = 4;
        options.alpha = 512.0;
        options.clusters = 2;
        options.noise = 0.5;
        options.seed = 5;
        options.threads = 1;
        synth::write_synthetic_fleet(options);
        m_weights = serve::model_weights::load(test::demo_model_dir());
        m_tokenizer = serve::load_tokenizer(test::demo_model_dir());
    }

    // Planted pairs: the first differing character / token, prefixes, equal and empty inputs.
    void diffFindsFirstDivergence() {
        QCOMPARE(ui::firstDifference(u"Once upon a time", u"Once upon a dime"), qsizetype(12));
        QCOMPARE(ui::firstDifference(u"abc", u"abc"), qsizetype(-1));
        QCOMPARE(ui::firstDifference(u"", u""), qsizetype(-1));
        QCOMPARE(ui::firstDifference(u"abc", u"abcdef"), qsizetype(3)); // a prefix: the shorter length
        QCOMPARE(ui::firstDifference(u"abcdef", u"abc"), qsizetype(3));
        QCOMPARE(ui::firstDifference(u"", u"x"), qsizetype(0));
        QCOMPARE(ui::firstDifference(u"xbc", u"abc"), qsizetype(0));
        const std::vector<int> a = {5, 9, 2, 7, 7}, b = {5, 9, 2, 8, 7}, c = {5, 9};
        QCOMPARE(ui::firstDifferentToken(a, b), qsizetype(3));
        QCOMPARE(ui::firstDifferentToken(a, a), qsizetype(-1));
        QCOMPARE(ui::firstDifferentToken(a, c), qsizetype(2));
        QCOMPARE(ui::firstDifferentToken({}, {}), qsizetype(-1));
    }

    // Raw, compressed and base columns equal independent greedy generations; they stream; the highlight
    // starts where raw and compressed part.
    void columnsMatchIndependentGeneration() {
        ui::Session session;
        QVERIFY(session.importPaths({m_dir.filePath(QStringLiteral("fleet"))}));
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 6);
        compress::compress_options options;
        options.jd.rank = 2; // below the adapters' rank 4: lossy, so compressed may depart from raw
        options.clusters = 1;
        auto backend = backend::make_compress_backend("cpu", 1);
        auto fb =
            bank::compress_adapters_to_bank(session.store()->adapters(), *backend, options, std::nullopt, 1);
        m_bank = std::make_shared<const bank::compressed_bank>(std::move(fb.bank));
        session.setBank(m_bank);

        ui::PlaygroundView view(&session);
        view.resize(1400, 800);
        view.show();
        QCOMPARE(view.adapterNames().size(), 6);
        view.setModelDir(QString::fromStdString(test::demo_model_dir().string()));
        view.setPrompt(QString::fromLatin1(kPrompt));
        view.setMaxTokens(kMaxTokens);
        view.setTemperature(0);

        // Independent references for every adapter; the test then looks at one whose compressed output
        // departs from its raw one (and one whose raw output departs from the base), when there is one.
        auto raw = serve::open_raw_provider({m_dir.filePath(QStringLiteral("fleet")).toStdString()},
                                            m_weights->geometry(), 64ull << 20);
        auto compressed = serve::open_bank_provider(*m_bank, m_weights->geometry(), "the test's bank");
        const Reference base = generateAlone(m_weights, *m_tokenizer, nullptr, "");
        QString chosen;
        int departing = 0, adapted = 0;
        std::ptrdiff_t latest = -1;
        for (const QString& name : view.adapterNames()) {
            const Reference r = generateAlone(m_weights, *m_tokenizer, raw.get(), name.toStdString());
            const Reference c = generateAlone(m_weights, *m_tokenizer, compressed.get(), name.toStdString());
            if (r.tokens != base.tokens) ++adapted;
            if (r.tokens != c.tokens) ++departing;
            // Prefer the adapter whose compressed output departs latest (a highlight mid-text).
            const auto at =
                std::mismatch(r.tokens.begin(), r.tokens.end(), c.tokens.begin(), c.tokens.end()).first -
                r.tokens.begin();
            if (r.tokens != base.tokens && r.tokens != c.tokens && at >= latest) {
                latest = at;
                chosen = name;
            }
        }
        qInfo("of 6 adapters: %d change the base's greedy output, %d compressed depart from raw", adapted,
              departing);
        QVERIFY2(adapted > 0, "no adapter changes the base's output: the raw check would be vacuous");
        QVERIFY2(departing > 0, "no compressed adapter departs from its raw one: the highlight is untested");
        const Reference wantRaw = generateAlone(m_weights, *m_tokenizer, raw.get(), chosen.toStdString());
        const Reference wantComp =
            generateAlone(m_weights, *m_tokenizer, compressed.get(), chosen.toStdString());

        // Streaming: record the order of pieces and column ends.
        std::vector<std::pair<int, QString>> events; // (column, piece) or (column + 10, "") for the end
        connect(view.runner(), &ui::PlaygroundRunner::textAppended, this,
                [&](PlaygroundColumn c, const QString& piece) { events.emplace_back(int(c), piece); });
        connect(view.runner(), &ui::PlaygroundRunner::columnFinished, this,
                [&](PlaygroundColumn c) { events.emplace_back(int(c) + 10, QString()); });

        QVERIFY(view.setAdapter(chosen));
        QVERIFY(runAndWait(view));
        QVERIFY2(view.statusText().contains(QStringLiteral("Done")), qPrintable(view.statusText()));
        const auto& outRaw = view.runner()->output(PlaygroundColumn::Raw);
        const auto& outComp = view.runner()->output(PlaygroundColumn::Compressed);
        const auto& outBase = view.runner()->output(PlaygroundColumn::Base);
        QVERIFY2(outRaw.error.isEmpty(), qPrintable(outRaw.error));
        QVERIFY2(outComp.error.isEmpty(), qPrintable(outComp.error));
        QVERIFY2(outBase.error.isEmpty(), qPrintable(outBase.error));
        QCOMPARE(outRaw.tokens, wantRaw.tokens);
        QCOMPARE(view.outputText(PlaygroundColumn::Raw), QString::fromStdString(wantRaw.text));
        QCOMPARE(outComp.tokens, wantComp.tokens);
        QCOMPARE(view.outputText(PlaygroundColumn::Compressed), QString::fromStdString(wantComp.text));
        QCOMPARE(outBase.tokens, base.tokens);
        QCOMPARE(view.outputText(PlaygroundColumn::Base), QString::fromStdString(base.text));
        QVERIFY(!wantRaw.tokens.empty());
        for (PlaygroundColumn c :
             {PlaygroundColumn::Raw, PlaygroundColumn::Compressed, PlaygroundColumn::Base})
            QVERIFY2(view.columnStatus(c).contains(QStringLiteral("tokens/s")),
                     qPrintable(view.columnStatus(c)));

        for (int c = 0; c < 3; ++c) {
            int pieces = 0, endAt = -1;
            QString joined;
            for (int i = 0; i < int(events.size()); ++i) {
                if (events[std::size_t(i)].first == c) {
                    QVERIFY2(endAt < 0, "a piece after the column's end");
                    ++pieces;
                    joined += events[std::size_t(i)].second;
                } else if (events[std::size_t(i)].first == c + 10) {
                    endAt = i;
                }
            }
            QVERIFY(endAt >= 0);
            QVERIFY2(pieces > 1, qPrintable(QString("column %1: %2 pieces").arg(c).arg(pieces)));
            QCOMPARE(joined, view.outputText(PlaygroundColumn(c)));
        }

        // The highlight: from the first character where the texts differ (std::mismatch), to the end.
        const QString rawText = QString::fromStdString(wantRaw.text);
        const QString compText = QString::fromStdString(wantComp.text);
        const auto mismatch = std::mismatch(rawText.begin(), rawText.end(), compText.begin(), compText.end());
        if (rawText == compText) {
            QVERIFY2(view.diffText().contains(QStringLiteral("identical")), qPrintable(view.diffText()));
            QCOMPARE(view.highlightedRange().first, -1);
        } else {
            const int at = int(mismatch.second - compText.begin());
            QCOMPARE(view.highlightedRange().first, at);
            QCOMPARE(view.highlightedRange().second, int(compText.size()));
            const auto tokenAt = std::mismatch(wantRaw.tokens.begin(), wantRaw.tokens.end(),
                                               wantComp.tokens.begin(), wantComp.tokens.end())
                                     .first -
                                 wantRaw.tokens.begin();
            QVERIFY2(view.diffText().contains(QStringLiteral("at token %1 ").arg(tokenAt + 1)),
                     qPrintable(view.diffText()));
        }

        const QByteArray shot = qgetenv("LORAFLEET_PLAYGROUND_SCREENSHOT");
        if (!shot.isEmpty()) QVERIFY(view.grab().save(QString::fromLocal8Bit(shot)));

        // A second run reuses the engines and gives the same greedy outputs.
        events.clear();
        QVERIFY(runAndWait(view));
        QCOMPARE(view.runner()->output(PlaygroundColumn::Raw).tokens, wantRaw.tokens);
        QCOMPARE(view.runner()->output(PlaygroundColumn::Compressed).tokens, wantComp.tokens);
    }

    // Run / Stop / destroy-mid-run races over many iterations, under a watchdog: every run that is not
    // destroyed ends with runFinished and every requested column done (finished or cancelled); a view
    // destroyed while its run streams joins it (no callback reaches a dead object).
    void stressRunStopDestroy() {
        test::watchdog dog("playground run/stop/destroy", std::chrono::seconds(300));
        ui::Session session;
        QVERIFY(session.importPaths({m_dir.filePath(QStringLiteral("fleet"))}));
        QVERIFY(test::waitForImport(session));
        QVERIFY(m_bank);
        session.setBank(m_bank);
        const long n = test::stress_iterations(30);
        std::mt19937 rng(7);
        int stopped = 0, completed = 0, destroyed = 0, cancelledColumns = 0;
        for (long i = 0; i < n; ++i) {
            auto view = std::make_unique<ui::PlaygroundView>(&session);
            view->setModelDir(QString::fromStdString(test::demo_model_dir().string()));
            view->setMaxTokens(200);
            QVERIFY(view->setAdapter(view->adapterNames().at(int(i % 6))));
            QSignalSpy done(view.get(), &ui::PlaygroundView::runFinished);
            QVERIFY(view->run());
            QTest::qWait(int(rng() % 6));
            switch (i % 3) {
            case 0:
                view->stop();
                [[fallthrough]];
            case 1:
                QTRY_VERIFY_WITH_TIMEOUT(done.count() == 1, 60'000);
                for (PlaygroundColumn c :
                     {PlaygroundColumn::Raw, PlaygroundColumn::Compressed, PlaygroundColumn::Base}) {
                    const auto& out = view->runner()->output(c);
                    QVERIFY(out.requested && out.done);
                    QVERIFY2(out.error.isEmpty() || out.error == QStringLiteral("cancelled"),
                             qPrintable(out.error));
                    if (out.error == QStringLiteral("cancelled")) ++cancelledColumns;
                }
                ++(i % 3 == 0 ? stopped : completed);
                break;
            default:
                view.reset(); // mid-run (or just after): joins
                ++destroyed;
                break;
            }
        }
        qInfo("%ld runs: %d stopped (%d columns cut short), %d completed, %d destroyed mid-run", n, stopped,
              cancelledColumns, completed, destroyed);
        QVERIFY2(cancelledColumns > 0, "Stop never landed mid-generation: the cancel path went untested");
    }

    // Without a bank the compressed column says why; raw and base still run.
    void noBankSaysSo() {
        ui::Session session;
        QVERIFY(session.importPaths({m_dir.filePath(QStringLiteral("fleet"))}));
        QVERIFY(test::waitForImport(session));
        ui::PlaygroundView view(&session);
        view.setModelDir(QString::fromStdString(test::demo_model_dir().string()));
        view.setMaxTokens(8);
        QVERIFY(view.setAdapter(view.adapterNames().first()));
        QVERIFY(runAndWait(view));
        QVERIFY2(
            view.columnStatus(PlaygroundColumn::Compressed).contains(QStringLiteral("no compressed bank")),
            qPrintable(view.columnStatus(PlaygroundColumn::Compressed)));
        QVERIFY(view.outputText(PlaygroundColumn::Compressed).isEmpty());
        QVERIFY(!view.runner()->output(PlaygroundColumn::Raw).tokens.empty());
        QVERIFY(!view.runner()->output(PlaygroundColumn::Base).tokens.empty());
        QVERIFY(view.diffText().isEmpty());
    }

    // A bad model folder and an empty prompt are refused with a reason; nothing runs.
    void badInputIsRefused() {
        ui::Session session;
        ui::PlaygroundView view(&session);
        view.setModelDir(m_dir.filePath(QStringLiteral("no-such-model")));
        QVERIFY(!view.run());
        QVERIFY2(view.statusText().contains(QStringLiteral("config.json")), qPrintable(view.statusText()));
        view.setModelDir(QString::fromStdString(test::demo_model_dir().string()));
        view.setPrompt(QStringLiteral("   "));
        QVERIFY(!view.run());
        QVERIFY2(view.statusText().contains(QStringLiteral("prompt")), qPrintable(view.statusText()));
        QVERIFY(!view.runner()->isRunning());
    }
};

QTEST_MAIN(TestPlayground)
#include "test_playground.moc"
