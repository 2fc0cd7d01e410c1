// Where two generations part (see playground_diff.hpp).
#include "ui/playground/playground_diff.hpp"

#include <algorithm>

namespace lorafleet::ui {

namespace {

template <typename A, typename B> qsizetype firstMismatch(const A& a, const B& b) {
    const auto n = std::min<qsizetype>(qsizetype(a.size()), qsizetype(b.size()));
    for (qsizetype i = 0; i < n; ++i)
        if (a[i] != b[i]) return i;
    return qsizetype(a.size()) == qsizetype(b.size()) ? -1 : n;
}

} // namespace

qsizetype firstDifference(QStringView a, QStringView b) {
    return firstMismatch(a, b);
}

qsizetype firstDifferentToken(std::span<const int> a, std::span<const int> b) {
    return firstMismatch(a, b);
}

} // namespace lorafleet::ui
