// The OpenAI-compatible HTTP front of a serving_engine (cpp-httplib underneath):
//   POST /v1/completions, POST /v1/chat/completions   (JSON, or SSE with "stream": true, ending data: [DONE])
//   GET /v1/models                                    (the base model and every adapter, "parent": base)
//   POST /v1/adapters {"name","path"}, DELETE /v1/adapters/{name}   (change the adapter set while serving)
//   GET /health (never needs the API key), GET /metrics (Prometheus text)
// Every error is an HTTP 4xx/5xx with the OpenAI error body (openai_protocol.hpp); a bad request never
// stops the server. A streaming client that disconnects cancels its request, which frees its KV blocks
// at the engine's next step. A non-streamed request runs to completion even if its client has gone
// (HTTP gives no signal until the response is written); max_tokens bounds it.
// Threading: run() serves on the calling thread with a pool of `http_threads` handler threads; stop()
// may be called from any thread (a signal-handling thread): it refuses new work with 503, waits for
// in-flight requests (streams included) to finish, then closes the listening socket and makes run()
// return. The engine must outlive the server.
#pragma once

#include "engine/serve/serving_engine.hpp"
#include "engine/server/chat_template.hpp"
#include "engine/server/openai_protocol.hpp"

#include <cstddef>
#include <memory>
#include <string>

namespace lorafleet::server {

struct server_options {
    std::string host = "127.0.0.1";
    int port = 8000;     // 0: any free port (see bind())
    std::string api_key; // non-empty: every route but /health needs "Authorization: Bearer KEY"
    std::size_t max_request_bytes = 1 << 20; // larger bodies get 413
    int http_threads = 32;                   // concurrent connections served (each stream holds one)
    std::string base_name; // "model" value meaning the base model; "" = the model folder's name
    protocol_limits limits;
    std::size_t metrics_top_adapters = 20;
};

class http_server {
public:
    http_server(serve::serving_engine& engine, chat_template chat, server_options options);
    ~http_server(); // stop()
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    // Binds the listening socket; returns the port (the chosen one when options.port is 0). io_error when
    // the address cannot be bound.
    int bind();
    // Serves until stop(); bind() first. Returns false when the listener failed.
    bool run();
    // See the header comment. Idempotent; safe before run() (run() then returns at once).
    void stop();

    int port() const;
    const std::string& base_name() const;

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

} // namespace lorafleet::server
