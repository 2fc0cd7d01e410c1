// Reading the small JSON documents of model and adapter folders (config.json, adapter_config.json):
// parsing into an object with a format_error that names the file and drops nlohmann's exception prefix,
// and key lookup that treats an explicit null like an absent key. Templates over nlohmann::json and
// nlohmann::ordered_json (the adapter config keeps its key order).
#pragma once

#include "engine/core/error.hpp"

#include <string>
#include <string_view>

namespace lorafleet::io {

// Parses `text` and requires an object; format_error(where, ...) otherwise. `object_name` completes
// "... must hold a JSON object", e.g. "a config.json".
template <class Json>
Json parse_json_object(std::string_view text, const std::string& where, std::string_view object_name) {
    Json j;
    try {
        j = Json::parse(text);
    } catch (const typename Json::parse_error& e) {
        std::string what = e.what();
        if (auto p = what.find("] "); p != std::string::npos)
            what = what.substr(p + 2); // drop "[json.exception..."
        throw format_error(where, "not valid JSON: " + what);
    }
    if (!j.is_object()) throw format_error(where, std::string(object_name) + " must hold a JSON object");
    return j;
}

// The value of `key`, or nullptr when it is absent or null.
template <class Json> const Json* find_non_null(const Json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
}

} // namespace lorafleet::io
