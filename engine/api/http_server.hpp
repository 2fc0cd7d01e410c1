// The OpenAI-compatible HTTP front of a serving_engine, over our own strict HTTP/1.1 layer (http/):
//   POST /v1/completions, POST /v1/chat/completions   (JSON, or SSE with "stream": true, ending data: [DONE])
//   GET /v1/models, GET /v1/models/{id}               (the base model and every adapter, "parent": base)
//   POST /v1/adapters {"name","path"}, DELETE /v1/adapters/{name}   (change the adapter set while serving;
//                                                    paths only under options.adapter_roots, else 403)
//   GET /health (never needs the API key), GET /metrics (Prometheus text)
// Every error is an HTTP 4xx/5xx with the OpenAI error body (openai_protocol.hpp); a bad request never
// stops the server. Slow, idle and malformed connections are held and cut off by the event loop
// (http/connection_loop.hpp), never by a handler thread. /health, /metrics and /v1/models run on a
// separate control pool, so they answer while every completion slot is busy or the engine is stuck.
// Completions and adapter changes are "work": at most max_in_flight at once, the excess get 429 with
// Retry-After at once. A client that disconnects while its completion waits or streams cancels its
// request (the engine frees its KV blocks at its next step).
// Threading: run() serves on the calling thread (the event loop); stop() / begin_stop() / wait_drained()
// may be called from any thread (a signal-handling thread). stop(): refuses new work with 503 (and closes
// the listening socket), waits for in-flight work (streams included) to finish, then makes run() return.
// A caller that must not wait forever: begin_stop(), wait_drained(timeout), engine.shutdown(false)
// (cancels the rest: their clients get an error), then stop(). The engine must outlive the server.
#pragma once

#include "engine/api/chat_template.hpp"
#include "engine/api/openai_protocol.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::api {

struct server_options {
    std::string host = "127.0.0.1";
    int port = 8000;     // 0: any free port (see bind())
    std::string api_key; // non-empty: every route but /health needs "Authorization: Bearer KEY"
    std::size_t max_request_bytes = 1 << 20; // larger bodies (as sent, and once inflated) get 413
    int http_threads = 8;                    // control-pool threads: /health, /metrics, /v1/models, errors
    int max_in_flight = 256;           // completions + adapter changes at once; the excess get 429 at once
    std::size_t max_connections = 512; // open sockets; the excess get 503 and are closed
    std::size_t max_header_bytes = 16 << 10; // request line + header fields; more: 431 (414 for the URI)
    int header_timeout_ms = 10'000;          // the whole header section, from its first byte: else 408
    int body_timeout_ms = 30'000;            // the whole body, from the end of the headers: else 408
    int idle_timeout_ms = 5'000;             // an idle keep-alive (or silent new) connection is closed
    int send_timeout_ms = 10'000;            // a response write that makes no progress this long fails
    double stall_threshold_s = 30; // /health: 503 engine_stalled when requests wait and the engine made
                                   // no progress for this long
    std::vector<std::filesystem::path> adapter_roots; // POST /v1/adapters only under these (none: 403)
    std::string base_name; // "model" value meaning the base model; "" = the model folder's name
    protocol_limits limits;
    std::size_t metrics_top_adapters = 20;
};

// What GET /health reports, from the engine's lock-free health and the server's state.
enum class health_verdict { ok, draining, engine_stalled };
health_verdict judge_health(const serve::engine_health& h, bool draining, double stall_threshold_s);

class http_server {
public:
    // Throws io_error when an adapter root is not a readable folder.
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
    // Stops accepting connections and refuses new work (503); returns at once. Idempotent.
    void begin_stop();
    // Waits until no work is in flight; false when `timeout` passed first.
    bool wait_drained(std::chrono::milliseconds timeout);
    int in_flight() const;
    // Shuts down the sockets of requests being answered, so handlers blocked writing to clients that do
    // not read fail at once (their work then ends). For a shutdown that must not wait.
    void abort_connections();

    int port() const;
    const std::string& base_name() const;

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

} // namespace lorafleet::api
