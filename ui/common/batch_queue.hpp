// BatchQueue<T>: the hand-over point between a worker that produces results one by one and the GUI
// thread that takes them in batches (on EngineJob::tick), so a model receives one beginInsertRows per
// batch instead of one per item. Thread-safe: push() from any thread, takeAll() usually on the GUI thread.
#pragma once

#include <QMutex>
#include <QMutexLocker>

#include <vector>

namespace lorafleet::ui {

template <typename T> class BatchQueue {
public:
    void push(T item) {
        QMutexLocker lock(&m_mutex);
        m_items.push_back(std::move(item));
    }
    // Everything pushed so far, in push order; the queue is empty afterwards.
    std::vector<T> takeAll() {
        std::vector<T> out;
        QMutexLocker lock(&m_mutex);
        out.swap(m_items);
        return out;
    }

private:
    QMutex m_mutex;
    std::vector<T> m_items;
};

} // namespace lorafleet::ui
