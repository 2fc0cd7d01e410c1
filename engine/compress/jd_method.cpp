// jd_method's names (see jd_method.hpp).
#include "engine/compress/jd_method.hpp"

#include "engine/core/error.hpp"

#include <string>

namespace lorafleet::compress {

const char* to_string(jd_method m) {
    return m == jd_method::full ? "jd-full" : "jd-diag";
}

jd_method parse_jd_method(std::string_view name) {
    if (name == "jd-full") return jd_method::full;
    if (name == "jd-diag") return jd_method::diag;
    throw usage_error("", "unknown method '" + std::string(name) + "' (jd-full or jd-diag)");
}

} // namespace lorafleet::compress
