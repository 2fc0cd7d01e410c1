// residentSetBytes: the second field of /proc/self/statm (resident pages) times the page size.
#include "ui/common/process_memory.hpp"

#include <fstream>

#include <unistd.h>

namespace lorafleet::ui {

std::optional<unsigned long long> residentSetBytes() {
    std::ifstream statm("/proc/self/statm");
    unsigned long long sizePages = 0;
    unsigned long long residentPages = 0;
    if (!(statm >> sizePages >> residentPages)) return std::nullopt;
    const long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return std::nullopt;
    return residentPages * static_cast<unsigned long long>(page);
}

} // namespace lorafleet::ui
