// The HTTP routes over the serving engine (see http_server.hpp). Sections: request bookkeeping (drain),
// helpers, completions (plain and streamed), models and adapters, health and metrics, setup.
#include "engine/server/http_server.hpp"

#include "engine/core/error.hpp"
#include "engine/server/prometheus.hpp"

#include <httplib.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

namespace lorafleet::server {

using nlohmann::json;

namespace {

constexpr const char* json_type = "application/json";

void send_error(httplib::Response& res, const api_error_info& e) {
    res.status = e.status;
    res.set_content(error_body(e), json_type);
}

void send_json(httplib::Response& res, int status, const json& body) {
    res.status = status;
    res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), json_type);
}

// Compares without an early exit, so the time taken does not reveal how much of the key matched.
bool same_secret(const std::string& given, const std::string& key) {
    if (key.empty()) return false;
    unsigned diff = given.size() != key.size() ? 1u : 0u;
    for (std::size_t i = 0; i < given.size(); ++i)
        diff |= static_cast<unsigned char>(given[i] ^ key[i % key.size()]);
    return diff == 0;
}

bool valid_adapter_name(const std::string& n) {
    if (n.empty() || n.size() > 128) return false;
    for (char c : n)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
    return n != "." && n != "..";
}

// What a streamed request shares between the engine thread (on_text / on_done) and the HTTP thread that
// writes the chunks.
struct stream_state {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::string> pieces;
    std::optional<serve::completion_result> done;
};

} // namespace

struct http_server::impl {
    serve::serving_engine& engine;
    chat_template chat;
    server_options options;
    httplib::Server http;
    std::int64_t started = 0;
    std::string id_prefix;
    std::atomic<std::uint64_t> next_id{1};
    int bound_port = -1;

    // Draining: requests that hold engine work are counted; stop() waits for the count to reach 0.
    std::mutex work_mutex;
    std::condition_variable work_cv;
    int in_flight = 0;
    bool draining = false;
    std::atomic<bool> running{false};
    std::atomic<bool> stop_requested{false};

    impl(serve::serving_engine& e, chat_template c, server_options o)
        : engine(e), chat(std::move(c)), options(std::move(o)) {
        if (options.base_name.empty()) options.base_name = engine.weights().folder().filename().string();
        if (options.base_name.empty()) options.base_name = "base";
        started = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
        std::random_device rd;
        char buf[17];
        std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
        id_prefix = buf;
    }

    // ---- request bookkeeping -----------------------------------------------------------------------
    bool begin_work() {
        std::lock_guard lock(work_mutex);
        if (draining) return false;
        ++in_flight;
        return true;
    }
    void end_work() {
        std::lock_guard lock(work_mutex);
        --in_flight;
        work_cv.notify_all();
    }
    struct work_guard { // RAII for the non-streamed path
        impl* s;
        ~work_guard() {
            if (s) s->end_work();
        }
    };

    std::string new_id(api_kind kind) {
        char buf[24];
        std::snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(next_id.fetch_add(1)));
        return std::string(kind == api_kind::chat ? "chatcmpl-" : "cmpl-") + id_prefix + buf;
    }

    // The engine adapter for a request's "model": "" for the base model.
    std::string resolve_model(const std::string& model) const {
        if (model == options.base_name) return {};
        for (const auto& a : engine.adapters())
            if (a.name == model) return model;
        throw api_error(404,
                        "The model '" + model +
                            "' does not exist (GET /v1/models lists the base model and its adapters)",
                        "model", "model_not_found", "not_found_error");
    }

    // ---- completions -------------------------------------------------------------------------------
    void completions(const httplib::Request& req, httplib::Response& res, api_kind kind) {
        const openai_request r = kind == api_kind::chat ? parse_chat_request(req.body, options.limits)
                                                        : parse_completion_request(req.body, options.limits);
        serve::completion_request cr;
        cr.adapter = resolve_model(r.model);
        const std::string text = kind == api_kind::chat ? chat.render(r.messages) : r.prompt;
        const auto& tok = engine.tokenizer();
        cr.prompt = tok.encode(text, true);
        if (cr.prompt.empty()) {
            if (tok.bos_id() < 0)
                throw api_error(400, "the prompt is empty and the model has no BOS token to start from",
                                "prompt");
            cr.prompt.push_back(tok.bos_id());
        }
        const int context = engine.weights().max_context();
        const int prompt_tokens = static_cast<int>(cr.prompt.size());
        int max_tokens = 0;
        if (r.max_tokens) {
            max_tokens = *r.max_tokens;
        } else {
            max_tokens = kind == api_kind::chat
                             ? std::min(options.limits.default_chat_tokens, context - prompt_tokens)
                             : options.limits.default_completion_tokens;
            max_tokens = std::max(max_tokens, 1);
        }
        if (static_cast<long long>(prompt_tokens) + max_tokens > context) {
            throw api_error(400,
                            "This model's maximum context length is " + std::to_string(context) +
                                " tokens. However, you requested " +
                                std::to_string(prompt_tokens + max_tokens) + " tokens (" +
                                std::to_string(prompt_tokens) + " in the prompt, " +
                                std::to_string(max_tokens) + " for the completion).",
                            r.max_tokens ? "max_tokens" : (kind == api_kind::chat ? "messages" : "prompt"),
                            "context_length_exceeded");
        }
        cr.params.max_tokens = max_tokens;
        cr.params.sampling = r.sampling;
        cr.params.stop = r.stop;
        cr.params.stop_at_eos = !r.ignore_eos;

        response_header h{kind, new_id(kind),
                          std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count(),
                          r.model};
        if (!begin_work())
            throw api_error(503, "the server is shutting down", "", "shutting_down", "server_error");
        if (r.stream)
            stream_completion(res, std::move(cr), h, r.include_usage);
        else
            plain_completion(res, std::move(cr), h);
    }

    std::uint64_t submit(serve::completion_request cr) {
        try {
            return engine.submit(std::move(cr));
        } catch (const usage_error& e) {
            // Races with a removed adapter, a KV budget the request can never fit, invalid sampling.
            throw api_error(400, e.what(), "", "request_refused");
        }
    }

    static api_error_info result_error(const serve::completion_result& r) {
        if (r.status == serve::completion_status::cancelled)
            return {503, "server_error", "the request was cancelled: " + r.error, "", "request_cancelled"};
        return {500, "server_error", "the request failed: " + r.error, "", "generation_failed"};
    }

    void plain_completion(httplib::Response& res, serve::completion_request cr, const response_header& h) {
        work_guard guard{this};
        auto promise = std::make_shared<std::promise<serve::completion_result>>();
        auto future = promise->get_future();
        cr.on_done = [promise](const serve::completion_result& r) { promise->set_value(r); };
        submit(std::move(cr));
        const serve::completion_result r = future.get();
        if (r.status != serve::completion_status::finished) return send_error(res, result_error(r));
        send_json(res, 200,
                  completion_body(h, r.text, r.reason, {r.prompt_tokens, static_cast<int>(r.tokens.size())}));
    }

    void stream_completion(httplib::Response& res, serve::completion_request cr, const response_header& h,
                           bool include_usage) {
        auto state = std::make_shared<stream_state>();
        cr.on_text = [state](std::string_view piece) {
            std::lock_guard lock(state->mutex);
            state->pieces.emplace_back(piece);
            state->cv.notify_one();
        };
        cr.on_done = [state](const serve::completion_result& r) {
            std::lock_guard lock(state->mutex);
            state->done = r;
            state->cv.notify_one();
        };
        std::uint64_t id = 0;
        try {
            id = submit(std::move(cr)); // errors here still get a plain 4xx response
        } catch (...) {
            end_work();
            throw;
        }
        auto started_stream = std::make_shared<bool>(false);
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [this, state, h, include_usage, started_stream](std::size_t, httplib::DataSink& sink) {
                std::string out;
                if (!*started_stream) {
                    *started_stream = true;
                    if (h.kind == api_kind::chat) out += sse_event(role_chunk(h));
                }
                std::optional<serve::completion_result> done;
                {
                    std::unique_lock lock(state->mutex);
                    // Wake up now and then to send an SSE comment: it is how a vanished client is noticed
                    // while the request waits in the queue.
                    if (out.empty())
                        state->cv.wait_for(lock, std::chrono::seconds(1),
                                           [&] { return !state->pieces.empty() || state->done; });
                    for (auto& p : state->pieces)
                        out += sse_event(text_chunk(h, p));
                    state->pieces.clear();
                    done = state->done;
                }
                if (!done) {
                    if (out.empty()) out = ": waiting\n\n";
                    return sink.write(out.data(), out.size());
                }
                if (done->status == serve::completion_status::finished) {
                    out += sse_event(text_chunk(h, "", done->reason));
                    if (include_usage)
                        out += sse_event(
                            usage_chunk(h, {done->prompt_tokens, static_cast<int>(done->tokens.size())}));
                } else {
                    out += sse_event(json::parse(error_body(result_error(*done))));
                }
                out += sse_done();
                if (!sink.write(out.data(), out.size())) return false;
                sink.done();
                return true;
            },
            [this, state, id](bool /*success*/) {
                // Runs once when the response is over: written, or abandoned because the client went away.
                bool finished;
                {
                    std::lock_guard lock(state->mutex);
                    finished = state->done.has_value();
                }
                if (!finished) engine.cancel(id);
                end_work();
            });
    }

    // ---- models and adapters -----------------------------------------------------------------------
    json model_entry(const std::string& id, bool is_base) const {
        json m = {{"id", id}, {"object", "model"}, {"created", started}, {"owned_by", "lorafleet"}};
        m["root"] = id;
        m["parent"] = is_base ? json(nullptr) : json(options.base_name);
        return m;
    }

    void list_models(httplib::Response& res) {
        json data = json::array({model_entry(options.base_name, true)});
        for (const auto& a : engine.adapters())
            data.push_back(model_entry(a.name, false));
        send_json(res, 200, {{"object", "list"}, {"data", data}});
    }

    void add_adapter(const httplib::Request& req, httplib::Response& res) {
        json body = json::parse(req.body, nullptr, false);
        if (body.is_discarded() || !body.is_object())
            throw api_error(400, "the request body must be a JSON object {\"name\": ..., \"path\": ...}", "",
                            "invalid_json");
        if (!body.contains("name") || !body["name"].is_string())
            throw api_error(400, "'name' is required and must be a string", "name");
        if (!body.contains("path") || !body["path"].is_string())
            throw api_error(400, "'path' is required and must be a string", "path");
        const std::string name = body["name"], path = body["path"];
        if (!valid_adapter_name(name))
            throw api_error(400, "'name' must be 1-128 characters of letters, digits, '-', '_' and '.'",
                            "name");
        if (name == options.base_name)
            throw api_error(409, "'" + name + "' is the base model's name", "name", "name_taken");
        std::error_code ec;
        if (!std::filesystem::is_directory(path, ec))
            throw api_error(400, "'" + path + "' is not a folder on the server", "path", "adapter_not_found");
        if (!begin_work())
            throw api_error(503, "the server is shutting down", "", "shutting_down", "server_error");
        work_guard guard{this};
        serve::adapter_info info;
        try {
            info = engine.add_adapter(path, name).get();
        } catch (const usage_error& e) {
            throw api_error(409, e.what(), "name", "name_taken");
        } catch (const io_error& e) {
            throw api_error(400, e.what(), "path", "adapter_unreadable");
        } catch (const unsupported_error& e) { // e.g. serving on CUDA: the device bank cannot change live
            throw api_error(501, e.what(), "", "unsupported_while_serving", "server_error");
        } catch (const lorafleet::error& e) {
            throw api_error(400, e.what(), "path", "invalid_adapter");
        }
        json m = model_entry(info.name, false);
        m["lorafleet"] = {{"slot", info.slot}, {"cluster", info.cluster}, {"bytes", info.bytes}};
        if (info.error == info.error)
            m["lorafleet"]["relative_error"] = info.error; // NaN in raw mode: left out
        send_json(res, 201, m);
    }

    void remove_adapter(const std::string& name, httplib::Response& res) {
        if (!begin_work())
            throw api_error(503, "the server is shutting down", "", "shutting_down", "server_error");
        work_guard guard{this};
        bool removed = false;
        try {
            removed = engine.remove_adapter(name).get();
        } catch (const unsupported_error& e) {
            throw api_error(501, e.what(), "", "unsupported_while_serving", "server_error");
        }
        if (!removed)
            throw api_error(404, "no adapter named '" + name + "'", "name", "model_not_found",
                            "not_found_error");
        send_json(res, 200, {{"id", name}, {"object", "model"}, {"deleted", true}});
    }

    // ---- setup -------------------------------------------------------------------------------------
    // The API key check. It runs inside the route handlers, after httplib has read the whole body: a
    // request refused before its body is read would leave the body in the connection, to be parsed as
    // the next request of a keep-alive client.
    void check_key(const httplib::Request& req, httplib::Response& res) const {
        if (options.api_key.empty()) return;
        const std::string auth = req.get_header_value("Authorization");
        const std::string prefix = "Bearer ";
        if (auth.rfind(prefix, 0) != 0) {
            res.set_header("WWW-Authenticate", "Bearer");
            throw api_error(401, "You didn't provide an API key: send it as 'Authorization: Bearer KEY'", "",
                            "missing_api_key");
        }
        if (!same_secret(auth.substr(prefix.size()), options.api_key)) {
            res.set_header("WWW-Authenticate", "Bearer");
            throw api_error(401, "Incorrect API key provided", "", "invalid_api_key");
        }
    }

    // Runs a handler (after the key check unless `open`), turning every exception into an error
    // response: the server keeps serving.
    template <class F> auto guarded(F f, bool open = false) {
        return [this, f, open](const httplib::Request& req, httplib::Response& res) {
            try {
                if (!open) check_key(req, res);
                f(req, res);
            } catch (const api_error& e) {
                send_error(res, e.info());
            } catch (const usage_error& e) {
                send_error(res, {400, "invalid_request_error", e.what(), "", ""});
            } catch (const std::bad_alloc&) {
                send_error(res, {500, "server_error", "out of memory", "", ""});
            } catch (const std::exception& e) {
                send_error(res, {500, "server_error", e.what(), "", ""});
            }
        };
    }

    void setup() {
        const int threads = std::max(2, options.http_threads);
        http.new_task_queue = [threads] {
            return new httplib::ThreadPool(static_cast<std::size_t>(threads));
        };
        http.set_payload_max_length(options.max_request_bytes);
        http.set_keep_alive_max_count(1000);
        http.set_tcp_nodelay(true);

        // Fills in a body for the errors httplib produces itself (404 no route, 413 too large, 400 bad
        // HTTP); our own error responses already have one.
        http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return;
            if (res.status == 404)
                send_error(res, {404, "not_found_error", "no route " + req.method + " " + req.path, "",
                                 "not_found"});
            else if (res.status == 413)
                send_error(res, {413, "invalid_request_error",
                                 "the request body is larger than this server accepts (" +
                                     std::to_string(options.max_request_bytes) + " bytes)",
                                 "", "request_too_large"});
            else
                send_error(res, {res.status, res.status >= 500 ? "server_error" : "invalid_request_error",
                                 "the server could not handle this request (HTTP " +
                                     std::to_string(res.status) + ")",
                                 "", ""});
        });

        http.Post("/v1/completions",
                  guarded([this](auto& req, auto& res) { completions(req, res, api_kind::completion); }));
        http.Post("/v1/chat/completions",
                  guarded([this](auto& req, auto& res) { completions(req, res, api_kind::chat); }));
        http.Get("/v1/models", guarded([this](auto&, auto& res) { list_models(res); }));
        http.Get(R"(/v1/models/([^/]+))", guarded([this](auto& req, auto& res) {
                     const std::string id = req.matches[1];
                     const std::string adapter = resolve_model(id);
                     send_json(res, 200, model_entry(id, adapter.empty()));
                 }));
        http.Post("/v1/adapters", guarded([this](auto& req, auto& res) { add_adapter(req, res); }));
        http.Delete(R"(/v1/adapters/([^/]+))",
                    guarded([this](auto& req, auto& res) { remove_adapter(req.matches[1], res); }));
        http.Get("/health", guarded(
                                [this](auto&, auto& res) {
                                    bool is_draining;
                                    {
                                        std::lock_guard lock(work_mutex);
                                        is_draining = draining;
                                    }
                                    send_json(res, is_draining ? 503 : 200,
                                              {{"status", is_draining ? "draining" : "ok"},
                                               {"model", options.base_name},
                                               {"adapter_mode", std::string(engine.adapter_mode())},
                                               {"adapters", engine.adapters().size()}});
                                },
                                true));
        http.Get("/metrics", guarded([this](auto&, auto& res) {
                     prometheus_options po;
                     po.top_adapters = options.metrics_top_adapters;
                     po.base_name = options.base_name;
                     po.adapter_mode = std::string(engine.adapter_mode());
                     res.set_content(render_prometheus(engine.metrics(), po),
                                     "text/plain; version=0.0.4; charset=utf-8");
                 }));
    }
};

http_server::http_server(serve::serving_engine& engine, chat_template chat, server_options options)
    : m_impl(std::make_unique<impl>(engine, std::move(chat), std::move(options))) {
    m_impl->setup();
}

http_server::~http_server() {
    stop();
}

int http_server::bind() {
    auto& s = *m_impl;
    if (s.options.port == 0) {
        s.bound_port = s.http.bind_to_any_port(s.options.host);
        if (s.bound_port <= 0) throw io_error(s.options.host, "cannot bind a free port on this address");
    } else {
        if (!s.http.bind_to_port(s.options.host, s.options.port))
            throw io_error(s.options.host + ":" + std::to_string(s.options.port),
                           "cannot bind (address in use, or not an address of this machine)");
        s.bound_port = s.options.port;
    }
    return s.bound_port;
}

bool http_server::run() {
    auto& s = *m_impl;
    s.running = true;
    bool ok = true;
    if (!s.stop_requested) ok = s.http.listen_after_bind();
    s.running = false;
    return ok;
}

void http_server::stop() {
    auto& s = *m_impl;
    {
        std::unique_lock lock(s.work_mutex);
        s.draining = true;
        s.work_cv.wait(lock, [&] { return s.in_flight == 0; });
    }
    s.stop_requested = true;
    // run() may be between its check and httplib's listen loop: wait until httplib runs, then stop it.
    while (s.running && !s.http.is_running())
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    s.http.stop();
}

int http_server::port() const {
    return m_impl->bound_port;
}

const std::string& http_server::base_name() const {
    return m_impl->options.base_name;
}

} // namespace lorafleet::server
