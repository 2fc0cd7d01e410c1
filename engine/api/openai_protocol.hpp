// The OpenAI-compatible wire format of the HTTP server: parsing and validating the bodies of
// POST /v1/completions and POST /v1/chat/completions into a typed request, and building the response
// bodies, the streamed (SSE) chunks and the OpenAI-style error body {"error": {message, type, param, code}}.
// Pure functions over strings and JSON: no sockets, no engine, so every rule here is unit-tested alone.
// Invariants: a parsed request has every field in range (max_tokens >= 1, temperature in [0, 2], top_p in
// (0, 1], at most 4 non-empty stop strings, n == 1); anything else is an api_error with HTTP status 400 (or
// the status named below) that names the offending field in `param`. Fields we do not implement but that
// would change the output when set (logprobs, echo, n > 1, penalties != 0, tools, ...) are refused, not
// ignored; purely informational fields (user, metadata, ...) are ignored. Thread-safe (no state).
#pragma once

#include "engine/serve/scheduling/generate.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::api {

// An error as the client sees it: HTTP status plus the OpenAI error object.
struct api_error_info {
    int status = 400;
    std::string type = "invalid_request_error"; // invalid_request_error, authentication_error,
                                                // not_found_error, server_error, ...
    std::string message;
    std::string param; // the request field concerned ("" -> null)
    std::string code;  // machine-readable reason ("" -> null), e.g. model_not_found, context_length_exceeded
};

// Thrown by the parsers and the server's handlers; the server turns it into the error response.
class api_error : public std::runtime_error {
public:
    explicit api_error(api_error_info info) : std::runtime_error(info.message), m_info(std::move(info)) {}
    api_error(int status, std::string message, std::string param = {}, std::string code = {},
              std::string type = "invalid_request_error")
        : api_error(api_error_info{status, std::move(type), std::move(message), std::move(param),
                                   std::move(code)}) {}
    const api_error_info& info() const noexcept { return m_info; }

private:
    api_error_info m_info;
};

// {"error":{"message":...,"type":...,"param":...|null,"code":...|null}}
std::string error_body(const api_error_info& e);

enum class api_kind { completion, chat };

struct chat_message {
    std::string role; // system, user or assistant ("developer" is read as system)
    std::string content;
};

// Server-side bounds a request is checked against.
struct protocol_limits {
    int max_tokens_cap = 4096;          // a request may not ask for more completion tokens than this
    int default_completion_tokens = 16; // /v1/completions without max_tokens (OpenAI's default)
    int default_chat_tokens = 256;      // /v1/chat/completions without max_tokens (capped by the context)
    std::size_t max_prompt_chars = 1 << 20;
    std::size_t max_messages = 1024;
};

struct openai_request {
    api_kind kind = api_kind::completion;
    std::string model;                  // an adapter's name or the base model's name
    std::string prompt;                 // completions
    std::vector<chat_message> messages; // chat
    std::optional<int> max_tokens;      // nullopt: the endpoint's default (see protocol_limits)
    serve::sampling_params sampling;    // temperature, top_p, top_k (extension), seed
    std::vector<std::string> stop;
    bool ignore_eos = false; // extension (as in vLLM): keep generating after EOS
    bool stream = false;
    bool include_usage = false; // stream_options.include_usage: a last chunk with the usage
};

// Parse and validate a body. Throws api_error (400) for bad JSON, a missing or mistyped field, a value
// out of range, or an unsupported option.
openai_request parse_completion_request(std::string_view body, const protocol_limits& limits = {});
openai_request parse_chat_request(std::string_view body, const protocol_limits& limits = {});

// "stop" / "length" as OpenAI reports them (a stop string and EOS are both "stop"; running out of
// max_tokens or of the model's context is "length").
std::string_view openai_finish_reason(serve::finish_reason r);

struct usage_counts {
    int prompt_tokens = 0;
    int completion_tokens = 0;
};
nlohmann::json usage_json(const usage_counts& u); // {"prompt_tokens","completion_tokens","total_tokens"}

// What every response and chunk of one request shares.
struct response_header {
    api_kind kind = api_kind::completion;
    std::string id;           // "cmpl-..." or "chatcmpl-..."
    std::int64_t created = 0; // unix seconds
    std::string model;        // echoed from the request
};

// The non-streamed response body ("text_completion" or "chat.completion").
nlohmann::json completion_body(const response_header& h, const std::string& text, serve::finish_reason reason,
                               const usage_counts& usage);

// One streamed chunk: a piece of text (finish_reason null), or the final chunk with an empty piece and the
// finish reason. Chat streams start with a chunk carrying {"role":"assistant"} (role_chunk).
nlohmann::json text_chunk(const response_header& h, std::string_view text,
                          std::optional<serve::finish_reason> finish = std::nullopt);
nlohmann::json role_chunk(const response_header& h);
nlohmann::json usage_chunk(const response_header& h, const usage_counts& usage); // "choices": []

// Server-sent events framing: "data: <one-line JSON>\n\n", and the terminator "data: [DONE]\n\n".
std::string sse_event(const nlohmann::json& payload);
std::string sse_done();

} // namespace lorafleet::api
