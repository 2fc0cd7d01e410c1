// The OpenAI request parsers and response builders (see openai_protocol.hpp).
#include "engine/api/openai_protocol.hpp"

#include <cmath>
#include <limits>

namespace lorafleet::api {

using nlohmann::json;

namespace {

// Every JSON we send goes through here: invalid UTF-8 (which the engine never produces, but an echoed
// field could in theory carry) becomes U+FFFD instead of an exception.
std::string dump(const json& j) {
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

json null_or(const std::string& s) {
    return s.empty() ? json(nullptr) : json(s);
}

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = {}) {
    throw api_error(400, message, param, code);
}

const char* type_name(const json& v) {
    return v.type_name();
}

json parse_object(std::string_view body) {
    json j;
    // The last object key read: the field a number too large for a double (1e400) belongs to.
    std::string last_key;
    const json::parser_callback_t track = [&](int, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::key && parsed.is_string()) last_key = parsed.get<std::string>();
        return true;
    };
    try {
        j = json::parse(body.begin(), body.end(), track);
    } catch (const json::parse_error& e) {
        throw api_error(400, std::string("the request body is not valid JSON: ") + e.what(), "",
                        "invalid_json");
    } catch (const json::exception&) { // out_of_range: a number beyond what a double holds
        const std::string field = last_key.size() > 64 ? last_key.substr(0, 64) : last_key;
        throw api_error(400,
                        field.empty() ? "a number in the request body is out of range"
                                      : "'" + field + "' holds a number out of range (not a finite value)",
                        field, "number_out_of_range");
    }
    if (!j.is_object())
        throw api_error(400, std::string("the request body must be a JSON object, not ") + type_name(j), "",
                        "invalid_json");
    return j;
}

bool present(const json& j, const char* key) {
    auto it = j.find(key);
    return it != j.end() && !it->is_null();
}

std::string get_string(const json& j, const char* key, bool required) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) bad(key, std::string("'") + key + "' is required");
        return {};
    }
    if (!it->is_string()) bad(key, std::string("'") + key + "' must be a string, not " + type_name(*it));
    return it->get<std::string>();
}

std::optional<double> get_number(const json& j, const char* key, double lo, double hi, bool lo_open = false) {
    if (!present(j, key)) return std::nullopt;
    const json& v = j.at(key);
    if (!v.is_number()) bad(key, std::string("'") + key + "' must be a number, not " + type_name(v));
    const double x = v.get<double>();
    if (!std::isfinite(x) || x > hi || x < lo || (lo_open && x == lo)) {
        bad(key, std::string("'") + key + "' must be in " + (lo_open ? "(" : "[") + json(lo).dump() + ", " +
                     json(hi).dump() + "], got " + v.dump());
    }
    return x;
}

std::optional<long long> get_integer(const json& j, const char* key, long long lo, long long hi) {
    if (!present(j, key)) return std::nullopt;
    const json& v = j.at(key);
    if (!v.is_number_integer()) bad(key, std::string("'") + key + "' must be an integer, not " + v.dump());
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
        bad(key, std::string("'") + key + "' must be at most " + std::to_string(hi) + ", got " + v.dump());
    const long long x = v.get<long long>();
    if (x < lo || x > hi)
        bad(key, std::string("'") + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                     "], got " + v.dump());
    return x;
}

std::optional<bool> get_bool(const json& j, const char* key) {
    if (!present(j, key)) return std::nullopt;
    const json& v = j.at(key);
    if (!v.is_boolean()) bad(key, std::string("'") + key + "' must be a boolean, not " + type_name(v));
    return v.get<bool>();
}

[[noreturn]] void unsupported(const std::string& param, const std::string& what) {
    throw api_error(400, what + " is not supported by this server", param, "unsupported_parameter");
}

// Options that would change the output if we silently ignored them.
void refuse_unsupported(const json& j, api_kind kind) {
    if (auto n = get_integer(j, "n", 1, 128); n && *n != 1) unsupported("n", "n > 1 (several choices)");
    if (auto b = get_integer(j, "best_of", 1, 128); b && *b != 1) unsupported("best_of", "best_of > 1");
    if (auto p = get_number(j, "presence_penalty", -2, 2); p && *p != 0)
        unsupported("presence_penalty", "a non-zero presence_penalty");
    if (auto p = get_number(j, "frequency_penalty", -2, 2); p && *p != 0)
        unsupported("frequency_penalty", "a non-zero frequency_penalty");
    if (present(j, "logit_bias") && !(j["logit_bias"].is_object() && j["logit_bias"].empty()))
        unsupported("logit_bias", "logit_bias");
    if (kind == api_kind::completion) {
        if (present(j, "logprobs")) {
            const json& v = j["logprobs"];
            if (!(v.is_number_integer() && v.get<long long>() == 0)) unsupported("logprobs", "logprobs");
        }
        if (auto e = get_bool(j, "echo"); e && *e) unsupported("echo", "echo");
        if (present(j, "suffix")) unsupported("suffix", "suffix (insertion)");
    } else {
        if (auto l = get_bool(j, "logprobs"); l && *l) unsupported("logprobs", "logprobs");
        if (present(j, "top_logprobs")) unsupported("top_logprobs", "top_logprobs");
        for (const char* key : {"tools", "functions"})
            if (present(j, key) && !(j[key].is_array() && j[key].empty())) unsupported(key, key);
        if (present(j, "tool_choice") && j["tool_choice"] != "none")
            unsupported("tool_choice", "tool_choice");
        if (present(j, "function_call") && j["function_call"] != "none")
            unsupported("function_call", "function_call");
        if (present(j, "response_format")) {
            const json& f = j["response_format"];
            if (!(f.is_object() && f.value("type", "") == "text"))
                unsupported("response_format", "a response_format other than {\"type\": \"text\"}");
        }
    }
}

// The fields both endpoints share.
void parse_common(const json& j, openai_request& r, const protocol_limits& limits) {
    r.model = get_string(j, "model", true);
    if (r.model.empty()) bad("model", "'model' must not be empty");
    refuse_unsupported(j, r.kind);

    const char* max_key = "max_tokens";
    if (r.kind == api_kind::chat && present(j, "max_completion_tokens")) max_key = "max_completion_tokens";
    if (present(j, max_key)) {
        const json& v = j.at(max_key);
        if (!v.is_number_integer())
            bad(max_key, std::string("'") + max_key + "' must be an integer, not " + v.dump());
        if (!v.is_number_unsigned() || v.get<std::uint64_t>() < 1)
            bad(max_key, std::string("'") + max_key + "' must be at least 1, got " + v.dump());
        if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(limits.max_tokens_cap))
            bad(max_key,
                std::string("'") + max_key + "' is " + v.dump() +
                    ", more than this server allows per request (" + std::to_string(limits.max_tokens_cap) +
                    ")",
                "max_tokens_too_large");
        r.max_tokens = static_cast<int>(v.get<long long>());
    }

    if (auto t = get_number(j, "temperature", 0, 2)) r.sampling.temperature = static_cast<float>(*t);
    if (auto p = get_number(j, "top_p", 0, 1, true)) r.sampling.top_p = static_cast<float>(*p);
    if (auto k = get_integer(j, "top_k", -1, std::numeric_limits<int>::max()))
        r.sampling.top_k = *k < 0 ? 0 : static_cast<int>(*k); // -1 means "no limit" in vLLM
    if (present(j, "seed")) {
        const json& v = j["seed"];
        if (!v.is_number_integer()) bad("seed", "'seed' must be an integer, not " + v.dump());
        r.sampling.seed = v.is_number_unsigned() ? v.get<std::uint64_t>()
                                                 : static_cast<std::uint64_t>(v.get<std::int64_t>());
    }

    if (present(j, "stop")) {
        const json& v = j["stop"];
        std::vector<std::string> stops;
        if (v.is_string()) {
            stops.push_back(v.get<std::string>());
        } else if (v.is_array()) {
            if (v.size() > 4)
                bad("stop", "'stop' may hold at most 4 strings, got " + std::to_string(v.size()));
            for (const json& s : v) {
                if (!s.is_string()) bad("stop", "'stop' must be a string or an array of strings");
                stops.push_back(s.get<std::string>());
            }
        } else {
            bad("stop", std::string("'stop' must be a string or an array of strings, not ") + type_name(v));
        }
        for (auto& s : stops)
            if (!s.empty()) r.stop.push_back(std::move(s));
    }
    if (auto e = get_bool(j, "ignore_eos")) r.ignore_eos = *e;
    if (auto s = get_bool(j, "stream")) r.stream = *s;
    if (present(j, "stream_options")) {
        const json& o = j["stream_options"];
        if (!o.is_object()) bad("stream_options", "'stream_options' must be an object");
        if (!r.stream) bad("stream_options", "'stream_options' is only allowed with \"stream\": true");
        if (auto u = get_bool(o, "include_usage")) r.include_usage = *u;
    }
}

std::string message_content(const json& m, std::size_t index, const std::string& role) {
    const std::string param = "messages[" + std::to_string(index) + "].content";
    auto it = m.find("content");
    if (it == m.end() || it->is_null()) {
        if (role == "assistant") return {};
        bad(param, "'content' is required for a " + role + " message");
    }
    if (it->is_string()) return it->get<std::string>();
    if (!it->is_array())
        bad(param,
            std::string("'content' must be a string or an array of text parts, not ") + type_name(*it));
    std::string text;
    for (const json& part : *it) {
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
            bad(param, "each content part must be an object with a 'type'");
        if (part["type"] != "text")
            unsupported(param, "a content part of type '" + part["type"].get<std::string>() + "'");
        if (!part.contains("text") || !part["text"].is_string())
            bad(param, "a text part needs a string 'text'");
        text += part["text"].get<std::string>();
    }
    return text;
}

} // namespace

std::string error_body(const api_error_info& e) {
    json err = {
        {"message", e.message}, {"type", e.type}, {"param", null_or(e.param)}, {"code", null_or(e.code)}};
    return dump(json{{"error", err}});
}

openai_request parse_completion_request(std::string_view body, const protocol_limits& limits) {
    const json j = parse_object(body);
    openai_request r;
    r.kind = api_kind::completion;
    parse_common(j, r, limits);
    auto it = j.find("prompt");
    if (it == j.end() || it->is_null()) bad("prompt", "'prompt' is required");
    if (it->is_string()) {
        r.prompt = it->get<std::string>();
    } else if (it->is_array() && it->size() == 1 && (*it)[0].is_string()) {
        r.prompt = (*it)[0].get<std::string>();
    } else if (it->is_array() && it->size() > 1 && (*it)[0].is_string()) {
        unsupported("prompt",
                    "an array of several prompts (batched completions); send one request per prompt,");
    } else {
        bad("prompt", std::string("'prompt' must be a string (token-id prompts are not supported), not ") +
                          type_name(*it));
    }
    if (r.prompt.size() > limits.max_prompt_chars)
        bad("prompt", "'prompt' is longer than " + std::to_string(limits.max_prompt_chars) + " bytes");
    return r;
}

openai_request parse_chat_request(std::string_view body, const protocol_limits& limits) {
    const json j = parse_object(body);
    openai_request r;
    r.kind = api_kind::chat;
    parse_common(j, r, limits);
    auto it = j.find("messages");
    if (it == j.end() || it->is_null()) bad("messages", "'messages' is required");
    if (!it->is_array()) bad("messages", std::string("'messages' must be an array, not ") + type_name(*it));
    if (it->empty()) bad("messages", "'messages' must not be empty");
    if (it->size() > limits.max_messages)
        bad("messages", "'messages' holds more than " + std::to_string(limits.max_messages) + " messages");
    std::size_t total = 0;
    for (std::size_t i = 0; i < it->size(); ++i) {
        const json& m = (*it)[i];
        const std::string param = "messages[" + std::to_string(i) + "]";
        if (!m.is_object()) bad(param, "each message must be an object");
        if (!m.contains("role") || !m["role"].is_string())
            bad(param + ".role", "each message needs a string 'role'");
        std::string role = m["role"].get<std::string>();
        if (role == "developer") role = "system";
        if (role == "tool" || role == "function") unsupported(param + ".role", "the '" + role + "' role");
        if (role != "system" && role != "user" && role != "assistant")
            bad(param + ".role", "unknown role '" + role + "' (expected system, user or assistant)");
        chat_message msg{role, message_content(m, i, role)};
        total += msg.content.size();
        r.messages.push_back(std::move(msg));
    }
    if (total > limits.max_prompt_chars)
        bad("messages",
            "the messages hold more than " + std::to_string(limits.max_prompt_chars) + " bytes of text");
    return r;
}

std::string_view openai_finish_reason(serve::finish_reason r) {
    switch (r) {
    case serve::finish_reason::eos:
    case serve::finish_reason::stop_string:
        return "stop";
    case serve::finish_reason::max_tokens:
    case serve::finish_reason::context_full:
        return "length";
    }
    return "stop";
}

json usage_json(const usage_counts& u) {
    return {{"prompt_tokens", u.prompt_tokens},
            {"completion_tokens", u.completion_tokens},
            {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

namespace {
json envelope(const response_header& h, bool chunk) {
    const char* object =
        h.kind == api_kind::chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}
} // namespace

json completion_body(const response_header& h, const std::string& text, serve::finish_reason reason,
                     const usage_counts& usage) {
    json body = envelope(h, false);
    json choice = {{"index", 0}, {"finish_reason", std::string(openai_finish_reason(reason))}};
    if (h.kind == api_kind::chat) {
        choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
        choice["text"] = text;
        choice["logprobs"] = nullptr;
    }
    body["choices"] = json::array({choice});
    body["usage"] = usage_json(usage);
    return body;
}

json text_chunk(const response_header& h, std::string_view text, std::optional<serve::finish_reason> finish) {
    json body = envelope(h, true);
    json choice = {{"index", 0}};
    choice["finish_reason"] = finish ? json(std::string(openai_finish_reason(*finish))) : json(nullptr);
    if (h.kind == api_kind::chat) {
        choice["delta"] = finish && text.empty() ? json::object() : json{{"content", std::string(text)}};
    } else {
        choice["text"] = std::string(text);
        choice["logprobs"] = nullptr;
    }
    body["choices"] = json::array({choice});
    return body;
}

json role_chunk(const response_header& h) {
    json body = envelope(h, true);
    body["choices"] = json::array({json{
        {"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"finish_reason", nullptr}}});
    return body;
}

json usage_chunk(const response_header& h, const usage_counts& usage) {
    json body = envelope(h, true);
    body["choices"] = json::array();
    body["usage"] = usage_json(usage);
    return body;
}

std::string sse_event(const json& payload) {
    // dump() without indentation never emits a raw newline (newlines in strings are escaped), so one
    // "data:" line carries the whole event.
    return "data: " + dump(payload) + "\n\n";
}

std::string sse_done() {
    return "data: [DONE]\n\n";
}

} // namespace lorafleet::api
