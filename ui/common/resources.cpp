// initResources (see resources.hpp). Q_INIT_RESOURCE must be expanded outside any namespace.
#include "ui/common/resources.hpp"

#include <QtCore/qglobal.h>

#include <mutex>

// Global scope and external linkage: the macro declares `extern int qInitResources_lorafleet()` in the
// enclosing scope, which must be the global one.
void lorafleetRegisterResources() {
    Q_INIT_RESOURCE(lorafleet);
}

namespace lorafleet::ui {

void initResources() {
    static std::once_flag once;
    std::call_once(once, lorafleetRegisterResources);
}

} // namespace lorafleet::ui
