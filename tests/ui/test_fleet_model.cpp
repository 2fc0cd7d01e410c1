// FleetModel and FleetProxyModel over a FleetStore of 5000 synthetic rows, every model under
// QAbstractItemModelTester: batched insertion, numeric sorting of sizes (not lexical), filtering,
// removal of scattered rows keeping exactly the others, results (cluster / error) changes, problems.
#include "tests/ui/ui_test_support.hpp"
#include "ui/fleet/fleet_model.hpp"
#include "ui/fleet/fleet_proxy_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/problem_model.hpp"

#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QtTest/QtTest>

#include <cmath>

using lorafleet::ui::FleetEntry;
using lorafleet::ui::FleetModel;
using lorafleet::ui::FleetProxyModel;
using lorafleet::ui::FleetStore;
using lorafleet::ui::ImportProblem;
using lorafleet::ui::ProblemModel;

namespace {

constexpr int kRows = 5000;
constexpr int kBatch = 1250;

// Row i: name "lora-<i>", sizes that sort differently as text and as numbers, a module set per i % 3.
FleetEntry fakeEntry(int i) {
    FleetEntry e;
    auto adapter = std::make_shared<lorafleet::io::peft_adapter>();
    adapter->name = "lora-" + std::to_string(i);
    e.adapter = std::move(adapter);
    auto& s = e.summary;
    s.name = QStringLiteral("lora-%1").arg(i);
    s.dir = QStringLiteral("/fleet/%1").arg(s.name);
    s.key = s.dir;
    s.minRank = s.maxRank = 4 << (i % 4);
    s.minAlpha = s.maxAlpha = 2.0 * s.maxRank;
    static const QStringList sets[] = {
        {"q_proj", "v_proj"}, {"q_proj", "k_proj", "v_proj", "o_proj"}, {"down_proj"}};
    s.modules = sets[i % 3];
    s.modulesLabel = lorafleet::ui::compactModuleLabel(s.modules);
    s.moduleCount = int(s.modules.size()) * 2;
    s.layers = 2;
    s.fileBytes = quint64((i * 7919) % kRows) * 1000 + 9; // a permutation of 0..kRows-1, times 1000
    s.weightBytes = s.fileBytes - 9;
    s.dtype = "BF16";
    if (i % 100 == 0) s.warnings << QStringLiteral("ignored 2 embedding LoRA tensors");
    return e;
}

std::vector<FleetEntry> fakeEntries(int first, int count) {
    std::vector<FleetEntry> out;
    for (int i = first; i < first + count; ++i)
        out.push_back(fakeEntry(i));
    return out;
}

} // namespace

class TestFleetModel : public QObject {
    Q_OBJECT
private:
    FleetStore* m_store = nullptr;
    FleetModel* m_model = nullptr;
    FleetProxyModel* m_proxy = nullptr;
    QAbstractItemModelTester* m_modelTester = nullptr;
    QAbstractItemModelTester* m_proxyTester = nullptr;

private slots:
    void init() {
        m_store = new FleetStore(this);
        m_model = new FleetModel(m_store, this);
        m_proxy = new FleetProxyModel(this);
        m_proxy->setSourceModel(m_model);
        m_modelTester = new QAbstractItemModelTester(
            m_model, QAbstractItemModelTester::FailureReportingMode::QtTest, this);
        m_proxyTester = new QAbstractItemModelTester(
            m_proxy, QAbstractItemModelTester::FailureReportingMode::QtTest, this);
        // Batches, as the import controller delivers them: one insertion per batch.
        QSignalSpy inserted(m_model, &QAbstractItemModel::rowsInserted);
        for (int first = 0; first < kRows; first += kBatch)
            m_store->append(fakeEntries(first, kBatch));
        QCOMPARE(inserted.count(), kRows / kBatch);
        QCOMPARE(m_model->rowCount(), kRows);
        QCOMPARE(m_proxy->rowCount(), kRows);
    }
    void cleanup() {
        delete m_proxyTester;
        delete m_modelTester;
        delete m_proxy;
        delete m_model;
        delete m_store;
    }

    void duplicatesAreSkipped() {
        QSignalSpy inserted(m_model, &QAbstractItemModel::rowsInserted);
        auto entries = fakeEntries(10, 5);       // all known
        entries.push_back(fakeEntry(kRows + 1)); // new
        const auto [added, duplicates] = m_store->append(std::move(entries));
        QCOMPARE(added, 1);
        QCOMPARE(duplicates, 5);
        QCOMPARE(inserted.count(), 1);
        QCOMPARE(m_model->rowCount(), kRows + 1);
    }

    void displayAndRoles() {
        const QModelIndex size = m_model->index(1, FleetModel::Size);
        QCOMPARE(size.data(FleetModel::SortRole).toULongLong(), m_store->entry(1).summary.fileBytes);
        QVERIFY(size.data().toString().endsWith("KiB") || size.data().toString().endsWith("MiB"));
        QVERIFY(size.data(Qt::TextAlignmentRole).value<Qt::Alignment>() & Qt::AlignRight);
        QCOMPARE(m_model->index(1, FleetModel::Modules).data().toString(), QStringLiteral("q, k, v, o"));
        QCOMPARE(m_model->index(0, FleetModel::Status).data().toString(),
                 QStringLiteral("ignored 2 embedding LoRA tensors"));
        QCOMPARE(m_model->index(1, FleetModel::Status).data().toString(), QStringLiteral("OK"));
        // Not compressed (not in a bank): a dash and the words, never a number.
        QCOMPARE(m_model->index(1, FleetModel::Cluster).data().toString(), QStringLiteral("\u2014"));
        QCOMPARE(m_model->index(1, FleetModel::Error).data().toString(), QStringLiteral("not compressed"));
        QCOMPARE(m_model->headerData(FleetModel::Size, Qt::Horizontal).toString(), QStringLiteral("Size"));
    }

    void sortsSizesNumerically() {
        m_proxy->sort(FleetModel::Size, Qt::AscendingOrder);
        quint64 previous = 0;
        for (int r = 0; r < m_proxy->rowCount(); ++r) {
            const quint64 bytes =
                m_proxy->index(r, FleetModel::Size).data(FleetModel::SortRole).toULongLong();
            QVERIFY2(bytes >= previous, qPrintable(QStringLiteral("row %1").arg(r)));
            previous = bytes;
        }
        // 9 B < 1009 B < 2009 B ...: lexical order of the display text would put "1,009" first.
        QCOMPARE(m_proxy->index(0, FleetModel::Size).data(FleetModel::SortRole).toULongLong(), 9ull);
        QCOMPARE(m_proxy->index(1, FleetModel::Size).data(FleetModel::SortRole).toULongLong(), 1009ull);
        m_proxy->sort(FleetModel::Size, Qt::DescendingOrder);
        QCOMPARE(m_proxy->index(0, FleetModel::Size).data(FleetModel::SortRole).toULongLong(),
                 quint64(kRows - 1) * 1000 + 9);
        // Names sort as text, ranks as numbers.
        m_proxy->sort(FleetModel::Rank, Qt::AscendingOrder);
        QCOMPARE(m_proxy->index(0, FleetModel::Rank).data().toString(), QStringLiteral("4"));
        QCOMPARE(m_proxy->index(kRows - 1, FleetModel::Rank).data().toString(), QStringLiteral("32"));
    }

    void filters() {
        m_proxy->setFilterText(QStringLiteral("lora-12"));
        // lora-12, lora-120..129, lora-1200..1299
        QCOMPARE(m_proxy->rowCount(), 1 + 10 + 100);
        m_proxy->setFilterText(QStringLiteral("LORA-12 down_proj")); // all words, any case
        for (int r = 0; r < m_proxy->rowCount(); ++r)
            QCOMPARE(m_proxy->index(r, FleetModel::Modules).data().toString(), QStringLiteral("down"));
        QVERIFY(m_proxy->rowCount() > 0);
        m_proxy->setFilterText(QStringLiteral("embedding")); // status text
        QCOMPARE(m_proxy->rowCount(), kRows / 100);
        m_proxy->setFilterText(QStringLiteral("no-such-adapter"));
        QCOMPARE(m_proxy->rowCount(), 0);
        m_proxy->setFilterText(QString());
        QCOMPARE(m_proxy->rowCount(), kRows);
    }

    void removalKeepsTheOtherRows() {
        m_proxy->sort(FleetModel::Size, Qt::DescendingOrder);
        // Remove every third store row plus a contiguous block, given out of order with a duplicate.
        QList<int> rows;
        for (int r = 0; r < kRows; r += 3)
            rows << r;
        for (int r = 1000; r < 1100; ++r)
            rows << r;
        std::reverse(rows.begin(), rows.end());
        rows << 3;
        QSet<QString> expected;
        const QSet<int> removed(rows.begin(), rows.end());
        for (int r = 0; r < kRows; ++r)
            if (!removed.contains(r)) expected.insert(m_store->entry(r).summary.name);
        m_store->removeRows(rows);
        QCOMPARE(m_store->size(), int(expected.size()));
        QCOMPARE(m_model->rowCount(), int(expected.size()));
        QCOMPARE(m_proxy->rowCount(), int(expected.size()));
        QSet<QString> shown;
        for (int r = 0; r < m_proxy->rowCount(); ++r)
            shown.insert(m_proxy->index(r, FleetModel::Name).data().toString());
        QCOMPARE(shown, expected);
        // Still sorted, and the removed keys can be imported again.
        for (int r = 1; r < m_proxy->rowCount(); ++r)
            QVERIFY(m_proxy->index(r - 1, FleetModel::Size).data(FleetModel::SortRole).toULongLong() >=
                    m_proxy->index(r, FleetModel::Size).data(FleetModel::SortRole).toULongLong());
        QVERIFY(!m_store->containsKey(QStringLiteral("/fleet/lora-0")));
        QCOMPARE(m_store->append(fakeEntries(0, 1)).first, 1);
    }

    void removalOfAFewRunsKeepsOrder() {
        QSignalSpy removed(m_model, &QAbstractItemModel::rowsRemoved);
        QSignalSpy dirs(m_store, &FleetStore::adaptersRemoved);
        const QString after = m_store->entry(8).summary.name;
        m_store->removeRows({7, 5, 6, 4000, 100});
        QCOMPARE(removed.count(), 3); // runs 5-7, 100, 4000
        QCOMPARE(dirs.count(), 1);
        QCOMPARE(dirs.front().front().toStringList().size(), 5);
        QCOMPARE(m_store->size(), kRows - 5);
        QCOMPARE(m_store->entry(5).summary.name, after);
        QCOMPARE(m_proxy->rowCount(), kRows - 5);
    }

    void resultsChangeInOneSignal() {
        QSignalSpy changed(m_model, &QAbstractItemModel::dataChanged);
        const auto adapters = m_store->adapters();
        std::vector<FleetStore::AdapterResult> results;
        for (std::size_t i = 0; i < adapters.size(); ++i)
            results.push_back({adapters[i].get(), int(i % 7), 0.001 * double(i % 50)});
        m_store->setResults(results);
        QCOMPARE(changed.count(), 1);
        QCOMPARE(m_model->index(8, FleetModel::Cluster).data().toInt(), 1);
        QCOMPARE(m_model->index(10, FleetModel::Error).data(FleetModel::SortRole).toDouble(), 0.01);
        QCOMPARE(m_model->index(10, FleetModel::Error).data().toString(),
                 QStringLiteral("0.0100")); // formatError
        m_proxy->sort(FleetModel::Cluster, Qt::DescendingOrder);
        QCOMPARE(m_proxy->index(0, FleetModel::Cluster).data().toInt(), 6);
        m_store->clearResults();
        QCOMPARE(m_model->index(8, FleetModel::Cluster).data().toString(), QStringLiteral("\u2014"));
        QCOMPARE(m_model->index(8, FleetModel::Error).data().toString(), QStringLiteral("not compressed"));
    }

    void clearResets() {
        m_store->clear();
        QCOMPARE(m_model->rowCount(), 0);
        QCOMPARE(m_proxy->rowCount(), 0);
        QCOMPARE(m_store->totalFileBytes(), 0ull);
    }

    void problems() {
        ProblemModel problems(m_store);
        QAbstractItemModelTester tester(&problems, QAbstractItemModelTester::FailureReportingMode::QtTest);
        m_store->addProblems(
            {{"/a/broken", "adapter_model.safetensors: truncated"}, {"/a/other", "no config"}});
        QCOMPARE(problems.rowCount(), 2);
        QCOMPARE(problems.index(0, ProblemModel::Folder).data().toString(), QStringLiteral("broken"));
        QCOMPARE(problems.index(0, ProblemModel::Reason).data().toString(),
                 QStringLiteral("adapter_model.safetensors: truncated"));
        m_store->addProblems({{"/a/broken", "still truncated"}}); // same folder: listed once
        QCOMPARE(problems.rowCount(), 2);
        m_store->clearProblems();
        QCOMPARE(problems.rowCount(), 0);
    }
};

QTEST_MAIN(TestFleetModel)
#include "test_fleet_model.moc"
