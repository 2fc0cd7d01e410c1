// The message of the exception of type E that f() throws, for tests that check both the type and the
// wording of an error: "WRONG EXCEPTION TYPE: ..." when another std::exception escapes, "NO EXCEPTION"
// when f() returns (either never contains the words a test looks for).
#pragma once

#include <QString>

#include <exception>

namespace lorafleet::test {

template <class E, class F> QString expect_throw(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NO EXCEPTION");
}

} // namespace lorafleet::test
