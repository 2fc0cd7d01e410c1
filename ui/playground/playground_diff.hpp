// Where two generations part: the Playground highlights the compressed output from the first place it
// differs from the raw adapter's output (both greedy, so any difference is the compression's).
// Pure functions, any thread.
#pragma once

#include <QStringView>

#include <span>

namespace lorafleet::ui {

// Index of the first character where `a` and `b` differ; when one is a prefix of the other, the shorter
// one's length; -1 when they are equal.
qsizetype firstDifference(QStringView a, QStringView b);

// Index of the first token where `a` and `b` differ, with the same prefix rule; -1 when equal.
qsizetype firstDifferentToken(std::span<const int> a, std::span<const int> b);

} // namespace lorafleet::ui
