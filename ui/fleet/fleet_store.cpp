// FleetStore (see fleet_store.hpp).
#include "ui/fleet/fleet_store.hpp"

#include "engine/io/fleet.hpp"

#include <algorithm>
#include <unordered_map>

namespace lorafleet::ui {

FleetStore::FleetStore(QObject* parent) : QObject(parent) {}

bool FleetStore::containsKey(const QString& key) const {
    return m_keys.count(key.toStdString()) != 0;
}

int FleetStore::rowOfKey(const QString& key) const {
    for (std::size_t i = 0; i < m_entries.size(); ++i)
        if (m_entries[i].summary.key == key) return int(i);
    return -1;
}

std::unordered_set<std::string> FleetStore::keys() const {
    return m_keys;
}

QStringList FleetStore::dirs() const {
    QStringList out;
    out.reserve(size());
    for (const auto& e : m_entries)
        out << e.summary.dir;
    return out;
}

io::fleet FleetStore::adapters() const {
    io::fleet out;
    out.reserve(m_entries.size());
    for (const auto& e : m_entries)
        out.push_back(e.adapter);
    return out;
}

std::pair<int, int> FleetStore::append(std::vector<FleetEntry> entries) {
    std::vector<FleetEntry> fresh;
    fresh.reserve(entries.size());
    int duplicates = 0;
    for (auto& e : entries) {
        if (!e.adapter || !m_keys.insert(e.summary.key.toStdString()).second) {
            ++duplicates;
            continue;
        }
        fresh.push_back(std::move(e));
    }
    if (fresh.empty()) return {0, duplicates};
    const int first = size();
    const int last = first + int(fresh.size()) - 1;
    emit rowsAboutToBeInserted(first, last);
    m_entries.reserve(m_entries.size() + fresh.size());
    for (auto& e : fresh) {
        if (e.serial == 0) e.serial = m_nextSerial++;
        m_totalBytes += e.summary.fileBytes;
        m_totalWeightBytes += e.summary.weightBytes;
        m_entries.push_back(std::move(e));
    }
    emit rowsInserted(first, last);
    emit fleetChanged();
    return {int(fresh.size()), duplicates};
}

void FleetStore::removeRows(QList<int> rows) {
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    rows.erase(std::remove_if(rows.begin(), rows.end(), [this](int r) { return r < 0 || r >= size(); }),
               rows.end());
    if (rows.isEmpty()) return;
    // Contiguous runs [first, last], back to front so earlier row numbers stay valid.
    std::vector<std::pair<int, int>> runs;
    for (int i = int(rows.size()) - 1; i >= 0; --i) {
        const int last = rows[i];
        while (i > 0 && rows[i - 1] == rows[i] - 1)
            --i;
        runs.emplace_back(rows[i], last);
    }
    QStringList dirs;
    dirs.reserve(rows.size());
    auto erase = [this, &dirs](int first, int last) {
        for (int r = first; r <= last; ++r) {
            const AdapterSummary& s = m_entries[std::size_t(r)].summary;
            dirs << s.dir;
            m_keys.erase(s.key.toStdString());
            m_totalBytes -= s.fileBytes;
            m_totalWeightBytes -= s.weightBytes;
        }
        m_entries.erase(m_entries.begin() + first, m_entries.begin() + last + 1);
    };
    if (runs.size() > kMaxRemovalRuns) {
        emit aboutToReset();
        for (const auto& [first, last] : runs)
            erase(first, last);
        emit resetDone();
    } else {
        for (const auto& [first, last] : runs) {
            emit rowsAboutToBeRemoved(first, last);
            erase(first, last);
            emit rowsRemoved(first, last);
        }
    }
    emit adaptersRemoved(dirs);
    emit fleetChanged();
}

int FleetStore::restore(std::vector<std::pair<int, FleetEntry>> rows) {
    std::vector<std::pair<int, FleetEntry>> fresh;
    fresh.reserve(rows.size());
    for (auto& [row, e] : rows) {
        if (!e.adapter || !m_keys.insert(e.summary.key.toStdString()).second) continue;
        fresh.emplace_back(row, std::move(e));
    }
    if (fresh.empty()) return 0;
    std::stable_sort(fresh.begin(), fresh.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    // Contiguous runs [first, last] of target rows, inserted front to back.
    std::vector<std::pair<std::size_t, std::size_t>> runs; // index range in `fresh`
    for (std::size_t i = 0; i < fresh.size();) {
        std::size_t j = i + 1;
        while (j < fresh.size() && fresh[j].first == fresh[j - 1].first + 1)
            ++j;
        runs.emplace_back(i, j);
        i = j;
    }
    auto insert = [this, &fresh](std::size_t from, std::size_t to) {
        const int first = std::min(fresh[from].first, size());
        std::vector<FleetEntry> batch;
        for (std::size_t k = from; k < to; ++k) {
            m_totalBytes += fresh[k].second.summary.fileBytes;
            m_totalWeightBytes += fresh[k].second.summary.weightBytes;
            batch.push_back(std::move(fresh[k].second));
        }
        m_entries.insert(m_entries.begin() + first, std::make_move_iterator(batch.begin()),
                         std::make_move_iterator(batch.end()));
        return first;
    };
    if (runs.size() > kMaxRemovalRuns) {
        emit aboutToReset();
        for (const auto& [from, to] : runs)
            insert(from, to);
        emit resetDone();
    } else {
        for (const auto& [from, to] : runs) {
            const int first = std::min(fresh[from].first, size());
            const int last = first + int(to - from) - 1;
            emit rowsAboutToBeInserted(first, last);
            insert(from, to);
            emit rowsInserted(first, last);
        }
    }
    emit fleetChanged();
    return int(fresh.size());
}

void FleetStore::relocate(const QHash<QString, std::pair<QString, QString>>& newDirs) {
    if (newDirs.isEmpty()) return;
    int first = -1;
    int last = -1;
    for (std::size_t i = 0; i < m_entries.size(); ++i) {
        AdapterSummary& s = m_entries[i].summary;
        const auto it = newDirs.constFind(s.dir);
        if (it == newDirs.constEnd()) continue;
        m_keys.erase(s.key.toStdString());
        s.dir = it->first;
        s.key = it->second;
        m_keys.insert(s.key.toStdString());
        if (first < 0) first = int(i);
        last = int(i);
    }
    if (first >= 0) emit resultsChanged(first, last);
}

void FleetStore::clear() {
    emit aboutToReset();
    m_entries.clear();
    m_keys.clear();
    m_totalBytes = 0;
    m_totalWeightBytes = 0;
    emit resetDone();
    emit fleetChanged();
    clearProblems();
}

void FleetStore::setResults(std::span<const AdapterResult> results) {
    if (results.empty() || m_entries.empty()) return;
    std::unordered_map<const io::peft_adapter*, const AdapterResult*> byAdapter;
    byAdapter.reserve(results.size());
    for (const auto& r : results)
        if (r.adapter) byAdapter[r.adapter] = &r;
    int first = -1;
    int last = -1;
    for (std::size_t i = 0; i < m_entries.size(); ++i) {
        const auto it = byAdapter.find(m_entries[i].adapter.get());
        if (it == byAdapter.end()) continue;
        if (it->second->cluster) m_entries[i].cluster = std::max(-1, *it->second->cluster);
        if (it->second->error) m_entries[i].error = *it->second->error;
        if (first < 0) first = int(i);
        last = int(i);
    }
    if (first >= 0) emit resultsChanged(first, last);
}

void FleetStore::clearResults() {
    if (m_entries.empty()) return;
    for (auto& e : m_entries) {
        e.cluster = -1;
        e.error = std::numeric_limits<double>::quiet_NaN();
    }
    emit resultsChanged(0, size() - 1);
}

void FleetStore::addProblems(const QList<ImportProblem>& problems) {
    if (problems.isEmpty()) return;
    emit problemsAboutToChange();
    // A folder is listed once, with its latest reason (re-importing a broken folder does not repeat it).
    for (const ImportProblem& p : problems) {
        m_problems.removeIf([&p](const ImportProblem& q) { return q.path == p.path; });
        m_problems.append(p);
    }
    emit problemsChanged();
}

void FleetStore::clearProblems() {
    if (m_problems.isEmpty()) return;
    emit problemsAboutToChange();
    m_problems.clear();
    emit problemsChanged();
}

} // namespace lorafleet::ui
