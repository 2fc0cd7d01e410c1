// The HTTP routes over the serving engine (see http_server.hpp). Sections: helpers, request bookkeeping
// (in-flight work, drain), routing (on the event loop: no blocking), completions (plain and streamed),
// models and adapters, health and metrics, setup.
#include "engine/api/http_server.hpp"

#include "engine/api/prometheus.hpp"
#include "engine/core/error.hpp"
#include "engine/http/connection_loop.hpp"

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

namespace lorafleet::api {

using nlohmann::json;
namespace fs = std::filesystem;

health_verdict judge_health(const serve::engine_health& h, bool draining, double stall_threshold_s) {
    if (draining) return health_verdict::draining;
    if (h.stopped || (h.pending > 0 && h.since_progress_s > stall_threshold_s))
        return health_verdict::engine_stalled;
    return health_verdict::ok;
}

namespace {

constexpr const char* json_type = "application/json";

http::response json_response(int status, const json& body) {
    http::response r;
    r.status = status;
    r.content_type = json_type;
    r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
    return r;
}

http::response error_response(const api_error_info& e) {
    http::response r;
    r.status = e.status;
    r.content_type = json_type;
    r.body = error_body(e);
    return r;
}

// The OpenAI-shaped body of an error the HTTP layer produces itself.
http::response protocol_error(int status, const std::string& message) {
    std::string code;
    switch (status) {
    case 400:
        code = "bad_request";
        break;
    case 404:
        code = "not_found";
        break;
    case 405:
        code = "method_not_allowed";
        break;
    case 408:
        code = "request_timeout";
        break;
    case 411:
        code = "length_required";
        break;
    case 413:
        code = "request_too_large";
        break;
    case 414:
        code = "uri_too_long";
        break;
    case 415:
        code = "unsupported_content_encoding";
        break;
    case 417:
        code = "expectation_failed";
        break;
    case 429:
        code = "too_many_requests";
        break;
    case 431:
        code = "headers_too_large";
        break;
    case 501:
        code = "not_implemented";
        break;
    case 503:
        code = "server_busy";
        break;
    case 505:
        code = "http_version_not_supported";
        break;
    default:
        break;
    }
    const std::string type = status == 404   ? "not_found_error"
                             : status >= 500 ? "server_error"
                                             : "invalid_request_error";
    return error_response({status, type, message, "", code});
}

// Compares without an early exit, so the time taken does not reveal how much of the key matched.
bool same_secret(std::string_view given, const std::string& key) {
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

// Whether canonical path `p` is `root` or inside it (both canonical).
bool inside(const fs::path& p, const fs::path& root) {
    const fs::path rel = p.lexically_relative(root);
    return !rel.empty() && rel.is_relative() && *rel.begin() != "..";
}

// What a streamed request shares between the engine thread (on_text / on_done) and the handler thread
// that writes the chunks.
struct stream_state {
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<std::string> pieces;
    std::optional<serve::completion_result> done;
};

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

} // namespace

struct http_server::impl {
    serve::serving_engine& engine;
    chat_template chat;
    server_options options;
    std::vector<fs::path> roots; // canonical adapter roots
    std::int64_t started = 0;
    std::string id_prefix;
    std::atomic<std::uint64_t> next_id{1};
    int bound_port = -1;

    // Work (completions, adapter changes) in flight; stop() waits for it to reach 0.
    mutable std::mutex work_mutex;
    std::condition_variable work_cv;
    int in_flight = 0;
    std::atomic<bool> draining{false};
    std::mutex stop_mutex; // serialises stop()
    bool stopped = false;

    // Declared before the pools: the pools (and the exchanges their jobs hold) go first.
    std::unique_ptr<http::connection_loop> loop;
    http::handler_pool control;
    http::handler_pool work;

    impl(serve::serving_engine& e, chat_template c, server_options o)
        : engine(e), chat(std::move(c)), options(std::move(o)),
          control(static_cast<std::size_t>(std::max(2, options.http_threads))),
          work(static_cast<std::size_t>(std::max(1, options.max_in_flight))) {
        if (options.base_name.empty()) options.base_name = engine.weights().folder().filename().string();
        if (options.base_name.empty()) options.base_name = "base";
        for (const auto& r : options.adapter_roots) {
            std::error_code ec;
            const fs::path c = fs::canonical(r, ec);
            if (ec || !fs::is_directory(c, ec))
                throw io_error(r.string(), "an adapter root must be an existing folder");
            roots.push_back(c);
        }
        started = unix_now();
        std::random_device rd;
        char buf[17];
        std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
        id_prefix = buf;

        http::loop_options lo;
        lo.host = options.host;
        lo.port = options.port;
        lo.limits.max_head_bytes = options.max_header_bytes;
        lo.limits.max_target_bytes = std::min<std::size_t>(8192, options.max_header_bytes);
        lo.limits.max_body_bytes = options.max_request_bytes;
        lo.header_timeout_ms = options.header_timeout_ms;
        lo.body_timeout_ms = options.body_timeout_ms;
        lo.idle_timeout_ms = options.idle_timeout_ms;
        lo.send_timeout_ms = options.send_timeout_ms;
        lo.max_connections = options.max_connections;
        http::loop_hooks hooks;
        hooks.on_head = [this](const http::request_head& h) { return check_key(h); };
        hooks.on_request = [this](http::request& r) { return route(r); };
        hooks.error = [](int status, const std::string& message) { return protocol_error(status, message); };
        loop = std::make_unique<http::connection_loop>(lo, std::move(hooks));
    }

    // ---- request bookkeeping -----------------------------------------------------------------------
    // A unit of admitted work: decrements in_flight when the handler is done with it (or never ran).
    struct work_token {
        impl* s;
        ~work_token() {
            std::lock_guard lock(s->work_mutex);
            --s->in_flight;
            s->work_cv.notify_all();
        }
    };

    // 0: admitted; else the status to refuse with (503 draining, 429 full).
    int try_begin_work() {
        std::lock_guard lock(work_mutex);
        if (draining) return 503;
        if (in_flight >= options.max_in_flight) return 429;
        ++in_flight;
        return 0;
    }

    std::string new_id(api_kind kind) {
        char buf[24];
        std::snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(next_id.fetch_add(1)));
        return std::string(kind == api_kind::chat ? "chatcmpl-" : "cmpl-") + id_prefix + buf;
    }

    // ---- routing (event-loop thread: must not block) -------------------------------------------------
    std::optional<http::response> check_key(const http::request_head& h) const {
        if (h.path == "/health" || options.api_key.empty()) return std::nullopt;
        const std::string_view auth = h.header("authorization");
        constexpr std::string_view prefix = "Bearer ";
        std::optional<http::response> r;
        if (auth.substr(0, prefix.size()) != prefix)
            r = error_response({401, "authentication_error",
                                "You didn't provide an API key: send it as 'Authorization: Bearer KEY'", "",
                                "missing_api_key"});
        else if (!same_secret(auth.substr(prefix.size()), options.api_key))
            r = error_response(
                {401, "authentication_error", "Incorrect API key provided", "", "invalid_api_key"});
        if (r) r->headers.emplace_back("WWW-Authenticate", "Bearer");
        return r;
    }

    http::route_decision on_control(void (impl::*f)(http::exchange&)) {
        http::route_decision d;
        d.pool = &control;
        d.handler = [this, f](http::exchange& ex) { guarded(ex, [&] { (this->*f)(ex); }); };
        return d;
    }

    http::route_decision on_work(std::function<void(http::exchange&)> f) {
        http::route_decision d;
        if (const int refused = try_begin_work()) {
            http::response r =
                refused == 429 ? error_response({429, "rate_limit_error",
                                                 "the server has " + std::to_string(options.max_in_flight) +
                                                     " requests in flight, its limit; retry shortly",
                                                 "", "too_many_requests"})
                               : error_response({503, "server_error", "the server is shutting down", "",
                                                 "shutting_down"});
            r.headers.emplace_back("Retry-After", "1");
            if (refused == 503) r.close = true;
            d.answer = std::move(r);
            return d;
        }
        std::shared_ptr<work_token> token(new work_token{this});
        d.pool = &work;
        d.handler = [this, f = std::move(f), token](http::exchange& ex) { guarded(ex, [&] { f(ex); }); };
        return d;
    }

    static http::route_decision answer(http::response r) {
        http::route_decision d;
        d.answer = std::move(r);
        return d;
    }

    http::route_decision route(http::request& req) {
        const std::string& p = req.path;
        const std::string& m = req.method;
        auto wrong_method = [&](const char* allowed) {
            http::response r = protocol_error(405, "use " + std::string(allowed) + " for " + p);
            r.headers.emplace_back("Allow", allowed);
            return answer(std::move(r));
        };
        if (p == "/health") return m == "GET" ? on_control(&impl::health) : wrong_method("GET");
        if (draining) {
            http::response r =
                error_response({503, "server_error", "the server is shutting down", "", "shutting_down"});
            r.close = true;
            return answer(std::move(r));
        }
        if (p == "/metrics") return m == "GET" ? on_control(&impl::metrics) : wrong_method("GET");
        if (p == "/v1/models") return m == "GET" ? on_control(&impl::list_models) : wrong_method("GET");
        if (p.rfind("/v1/models/", 0) == 0 && p.size() > 11 && p.find('/', 11) == std::string::npos)
            return m == "GET" ? on_control(&impl::one_model) : wrong_method("GET");
        if (p == "/v1/completions" || p == "/v1/chat/completions") {
            if (m != "POST") return wrong_method("POST");
            const api_kind kind = p == "/v1/completions" ? api_kind::completion : api_kind::chat;
            return on_work([this, kind](http::exchange& ex) { completions(ex, kind); });
        }
        if (p == "/v1/adapters")
            return m == "POST" ? on_work([this](http::exchange& ex) { add_adapter(ex); })
                               : wrong_method("POST");
        if (p.rfind("/v1/adapters/", 0) == 0 && p.size() > 13 && p.find('/', 13) == std::string::npos)
            return m == "DELETE" ? on_work([this](http::exchange& ex) { remove_adapter(ex); })
                                 : wrong_method("DELETE");
        return answer(protocol_error(404, "no route " + m + " " + p));
    }

    // Runs a handler, turning every exception into an error response: the server keeps serving.
    template <class F> void guarded(http::exchange& ex, F f) {
        std::optional<api_error_info> e;
        try {
            f();
        } catch (const api_error& x) {
            e = x.info();
        } catch (const usage_error& x) {
            e = api_error_info{400, "invalid_request_error", x.what(), "", ""};
        } catch (const std::bad_alloc&) {
            e = api_error_info{500, "server_error", "out of memory", "", ""};
        } catch (const std::exception& x) {
            e = api_error_info{500, "server_error", x.what(), "", ""};
        }
        if (e && !ex.answered()) ex.respond(error_response(*e));
    }

    // ---- completions -------------------------------------------------------------------------------
    // The adapter name a request's "model" (OpenAI's word) means: "" for the base model, else the
    // adapter's name as the engine knows it; 404 for anything else.
    std::string adapter_name_of(const std::string& model) const {
        if (model == options.base_name) return {};
        if (engine.has_adapter(model)) return model; // O(1), no copy of the adapter list
        throw api_error(404,
                        "The model '" + model +
                            "' does not exist (GET /v1/models lists the base model and its adapters)",
                        "model", "model_not_found", "not_found_error");
    }

    void completions(http::exchange& ex, api_kind kind) {
        const std::string& body = ex.req().body;
        const openai_request r = kind == api_kind::chat ? parse_chat_request(body, options.limits)
                                                        : parse_completion_request(body, options.limits);
        serve::completion_request cr;
        cr.adapter = adapter_name_of(r.model);
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

        response_header h{kind, new_id(kind), unix_now(), r.model};
        if (r.stream)
            stream_completion(ex, std::move(cr), h, r.include_usage);
        else
            plain_completion(ex, std::move(cr), h);
    }

    std::uint64_t submit(serve::completion_request cr) {
        try {
            return engine.submit(std::move(cr));
        } catch (const usage_error& e) {
            // Races with a removed adapter, a KV budget the request can never fit, invalid sampling,
            // an engine shut down.
            throw api_error(400, e.what(), "", "request_refused");
        }
    }

    static api_error_info result_error(const serve::completion_result& r) {
        if (r.status == serve::completion_status::cancelled)
            return {503, "server_error", "the request was cancelled: " + r.error, "", "request_cancelled"};
        return {500, "server_error", "the request failed: " + r.error, "", "generation_failed"};
    }

    void plain_completion(http::exchange& ex, serve::completion_request cr, const response_header& h) {
        auto promise = std::make_shared<std::promise<serve::completion_result>>();
        auto future = promise->get_future();
        cr.on_done = [promise](const serve::completion_result& r) { promise->set_value(r); };
        const std::uint64_t id = submit(std::move(cr));
        // Wake up now and then to notice a client that went away: its request is cancelled.
        while (future.wait_for(std::chrono::milliseconds(500)) != std::future_status::ready) {
            if (ex.client_gone()) {
                engine.cancel(id);
                return; // nobody to answer; on_done still lands in the promise
            }
        }
        const serve::completion_result r = future.get();
        if (r.status != serve::completion_status::finished) {
            ex.respond(error_response(result_error(r)));
            return;
        }
        ex.respond(json_response(
            200, completion_body(h, r.text, r.reason, {r.prompt_tokens, static_cast<int>(r.tokens.size())})));
    }

    void stream_completion(http::exchange& ex, serve::completion_request cr, const response_header& h,
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
        const std::uint64_t id = submit(std::move(cr)); // errors here still get a plain 4xx response
        bool ok = ex.begin_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
        if (ok && h.kind == api_kind::chat) ok = ex.write(sse_event(role_chunk(h)));
        auto last_write = std::chrono::steady_clock::now();
        while (ok) {
            std::string out;
            std::optional<serve::completion_result> done;
            {
                std::unique_lock lock(state->mutex);
                state->cv.wait_for(lock, std::chrono::milliseconds(500),
                                   [&] { return !state->pieces.empty() || state->done; });
                for (auto& p : state->pieces)
                    out += sse_event(text_chunk(h, p));
                state->pieces.clear();
                done = state->done;
            }
            if (done) {
                if (done->status == serve::completion_status::finished) {
                    out += sse_event(text_chunk(h, "", done->reason));
                    if (include_usage)
                        out += sse_event(
                            usage_chunk(h, {done->prompt_tokens, static_cast<int>(done->tokens.size())}));
                } else {
                    out += sse_event(json::parse(error_body(result_error(*done))));
                }
                out += sse_done();
                if (ex.write(out)) ex.end_stream();
                return;
            }
            const auto now = std::chrono::steady_clock::now();
            if (out.empty()) {
                if (ex.client_gone()) break;
                // A comment now and then: how a peer that vanished without closing is noticed.
                if (now - last_write > std::chrono::seconds(5)) out = ": waiting\n\n";
            }
            if (!out.empty()) {
                ok = ex.write(out);
                last_write = now;
            }
        }
        engine.cancel(id); // the client went away: free its KV blocks at the next step
    }

    // ---- models and adapters -----------------------------------------------------------------------
    // `serving`: the path that serves an adapter ("compressed" or "raw"; hybrid banks mix them), as
    // "lorafleet_serving"; empty for the base model.
    json model_entry(const std::string& id, bool is_base, const std::string& serving = {}) const {
        json m = {{"id", id}, {"object", "model"}, {"created", started}, {"owned_by", "lorafleet"}};
        m["root"] = id;
        m["parent"] = is_base ? json(nullptr) : json(options.base_name);
        if (!serving.empty()) m["lorafleet_serving"] = serving;
        return m;
    }
    std::string serving_path(const serve::adapter_info& a) const {
        return a.serving.empty() ? std::string(engine.adapter_mode()) : a.serving;
    }

    void list_models(http::exchange& ex) {
        json data = json::array({model_entry(options.base_name, true)});
        for (const auto& a : engine.adapters())
            data.push_back(model_entry(a.name, false, serving_path(a)));
        ex.respond(json_response(200, {{"object", "list"}, {"data", data}}));
    }

    void one_model(http::exchange& ex) {
        const std::string id = ex.req().path.substr(11);
        const std::string adapter = adapter_name_of(id);
        std::string serving;
        if (!adapter.empty())
            for (const auto& a : engine.adapters())
                if (a.name == adapter) serving = serving_path(a);
        ex.respond(json_response(200, model_entry(id, adapter.empty(), serving)));
    }

    // The adapter folder a request names, canonical and inside an allowed root (symbolic links
    // included); api_error otherwise.
    fs::path allowed_adapter_path(const std::string& given) const {
        if (roots.empty())
            throw api_error(403,
                            "adding adapters over HTTP is disabled: start serve with --adapter-root DIR to "
                            "allow adapter folders under DIR",
                            "path", "adapter_roots_not_set", "permission_error");
        const fs::path p(given);
        if (given.empty() || !p.is_absolute())
            throw api_error(400, "'path' must be an absolute path", "path");
        std::error_code ec;
        const fs::path c = fs::weakly_canonical(p, ec);
        if (ec) throw api_error(400, "'path' cannot be resolved on the server", "path", "adapter_not_found");
        auto allowed = [&](const fs::path& x) {
            for (const auto& r : roots)
                if (inside(x, r)) return true;
            return false;
        };
        if (!allowed(c))
            throw api_error(403,
                            "'path' is outside the folders this server allows adapters from (--adapter-root)",
                            "path", "path_not_allowed", "permission_error");
        if (!fs::is_directory(c, ec))
            throw api_error(400, "'" + given + "' is not a folder on the server", "path",
                            "adapter_not_found");
        // The files inside must not lead out either.
        std::size_t seen = 0;
        for (fs::directory_iterator it(c, ec), end; !ec && it != end; it.increment(ec)) {
            if (++seen > 10000) throw api_error(400, "the adapter folder has too many entries", "path");
            if (!it->is_symlink(ec)) continue;
            const fs::path t = fs::weakly_canonical(it->path(), ec);
            if (ec || !allowed(t))
                throw api_error(
                    403, "the adapter folder holds a symbolic link that leads outside the allowed folders",
                    "path", "path_not_allowed", "permission_error");
        }
        if (ec) throw api_error(400, "the adapter folder cannot be listed", "path", "adapter_unreadable");
        return c;
    }

    void add_adapter(http::exchange& ex) {
        json body = json::parse(ex.req().body, nullptr, false);
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
        const fs::path folder = allowed_adapter_path(path);
        serve::adapter_info info;
        try {
            info = engine.add_adapter(folder, name).get();
        } catch (const usage_error& e) {
            throw api_error(409, e.what(), "name", "name_taken");
        } catch (const io_error& e) {
            throw api_error(400, e.what(), "path", "adapter_unreadable");
        } catch (const unsupported_error& e) {
            if (engine.device() == "cuda") // the device bank cannot change live
                throw api_error(501, e.what(), "", "unsupported_while_serving", "server_error");
            throw api_error(400, e.what(), "path", "unsupported_adapter"); // e.g. a peft_type other than LORA
        } catch (const lorafleet::error& e) {
            throw api_error(400, e.what(), "path", "invalid_adapter");
        }
        json m = model_entry(info.name, false);
        m["lorafleet"] = {{"slot", info.slot}, {"cluster", info.cluster}, {"bytes", info.bytes}};
        if (info.error == info.error)
            m["lorafleet"]["relative_error"] = info.error; // NaN in raw mode: left out
        ex.respond(json_response(201, m));
    }

    void remove_adapter(http::exchange& ex) {
        const std::string name = ex.req().path.substr(13);
        bool removed = false;
        try {
            removed = engine.remove_adapter(name).get();
        } catch (const unsupported_error& e) {
            throw api_error(501, e.what(), "", "unsupported_while_serving", "server_error");
        }
        if (!removed)
            throw api_error(404, "no adapter named '" + name + "'", "name", "model_not_found",
                            "not_found_error");
        ex.respond(json_response(200, {{"id", name}, {"object", "model"}, {"deleted", true}}));
    }

    // ---- health and metrics ------------------------------------------------------------------------
    void health(http::exchange& ex) {
        const serve::engine_health h = engine.health();
        const health_verdict v = judge_health(h, draining, options.stall_threshold_s);
        json body = {{"model", options.base_name}, {"pending", h.pending}};
        if (v == health_verdict::ok) {
            body["status"] = "ok";
            body["adapter_mode"] = std::string(engine.adapter_mode());
            body["adapters"] = engine.adapters().size();
        } else if (v == health_verdict::draining) {
            body["status"] = "draining";
        } else {
            body["status"] = "engine_stalled";
            body["since_progress_s"] = h.since_progress_s;
        }
        ex.respond(json_response(v == health_verdict::ok ? 200 : 503, body));
    }

    void metrics(http::exchange& ex) {
        prometheus_options po;
        po.top_adapters = options.metrics_top_adapters;
        po.base_name = options.base_name;
        po.adapter_mode = std::string(engine.adapter_mode());
        std::map<std::string, std::size_t> by_path;
        for (const auto& a : engine.adapters()) {
            const std::string path = a.serving.empty() ? po.adapter_mode : a.serving;
            ++by_path[path];
            if (path == "raw" && po.adapter_mode == "hybrid") po.raw_adapters.push_back(a.name);
        }
        po.adapters_by_path.assign(by_path.begin(), by_path.end());
        http::response r;
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        r.body = render_prometheus(engine.metrics(), po);
        ex.respond(r);
    }
};

http_server::http_server(serve::serving_engine& engine, chat_template chat, server_options options)
    : m_impl(std::make_unique<impl>(engine, std::move(chat), std::move(options))) {}

http_server::~http_server() {
    stop();
}

int http_server::bind() {
    m_impl->bound_port = m_impl->loop->bind();
    return m_impl->bound_port;
}

bool http_server::run() {
    m_impl->loop->run();
    return true;
}

void http_server::begin_stop() {
    auto& s = *m_impl;
    {
        std::lock_guard lock(s.work_mutex);
        s.draining = true;
    }
    s.loop->stop_accepting();
}

bool http_server::wait_drained(std::chrono::milliseconds timeout) {
    auto& s = *m_impl;
    std::unique_lock lock(s.work_mutex);
    return s.work_cv.wait_for(lock, timeout, [&] { return s.in_flight == 0; });
}

int http_server::in_flight() const {
    std::lock_guard lock(m_impl->work_mutex);
    return m_impl->in_flight;
}

void http_server::abort_connections() {
    m_impl->loop->abort_dispatched();
}

void http_server::stop() {
    auto& s = *m_impl;
    std::lock_guard stop_lock(s.stop_mutex);
    if (s.stopped) return;
    begin_stop();
    {
        std::unique_lock lock(s.work_mutex);
        s.work_cv.wait(lock, [&] { return s.in_flight == 0; });
    }
    // No work is left; what remains are control responses and keep-alive hand-backs. Writes to clients
    // that do not read are cut short.
    s.loop->stop();
    s.loop->abort_dispatched();
    s.control.stop();
    s.work.stop();
    s.loop->wait_dispatched(std::chrono::seconds(30));
    s.stopped = true;
}

int http_server::port() const {
    return m_impl->bound_port;
}

const std::string& http_server::base_name() const {
    return m_impl->options.base_name;
}

} // namespace lorafleet::api
