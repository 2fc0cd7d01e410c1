// The joint-compression method (method.md §3-§4) and its one spelling: "jd-full" (orthonormal U, V and a
// full r x r core per adapter) or "jd-diag" (free U, V and a diagonal core). Used by the compressor, the
// bank (its manifest's "method"), the CLI (--method) and the console.
#pragma once

#include <string_view>

namespace lorafleet::compress {

enum class jd_method { full, diag };

// "jd-full" / "jd-diag".
const char* to_string(jd_method m);
// The inverse of to_string; throws usage_error naming the accepted values for anything else.
jd_method parse_jd_method(std::string_view name);

} // namespace lorafleet::compress
