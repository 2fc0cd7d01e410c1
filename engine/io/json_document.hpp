// Reading the small JSON documents of model and adapter folders (config.json, adapter_config.json):
// parsing into an object with a format_error that names the file and the byte where the JSON breaks
// (never the parser's context, which quotes the file), key lookup that treats an explicit null like an
// absent key, and the JSON type name a wrong-type message shows instead of the value. Templates over
// nlohmann::json and nlohmann::ordered_json (the adapter config keeps its key order).
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
        throw format_error(where, "not valid JSON at byte " + std::to_string(e.byte));
    } catch (const typename Json::exception&) { // out_of_range: a number beyond what a double holds
        throw format_error(where,
                           std::string(object_name) + " holds a number out of range (not a finite value)");
    }
    if (!j.is_object()) throw format_error(where, std::string(object_name) + " must hold a JSON object");
    return j;
}

// "a string", "a number", ...: what a wrong-type message says it got.
template <class Json> const char* json_type_name(const Json& v) {
    if (v.is_null()) return "null";
    if (v.is_boolean()) return "a boolean";
    if (v.is_number()) return "a number";
    if (v.is_string()) return "a string";
    if (v.is_array()) return "a list";
    if (v.is_object()) return "an object";
    return "a binary value";
}

// The value of `key`, or nullptr when it is absent or null.
template <class Json> const Json* find_non_null(const Json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return nullptr;
    return &*it;
}

} // namespace lorafleet::io
