// `lorafleet-cli serve`: the OpenAI-compatible HTTP server over the continuous-batching engine, routing
// requests to a compressed bank's adapters or to raw PEFT adapters (engine/api/http_server.hpp).
// Prints "listening on http://HOST:PORT" on stderr once the socket is bound (with --port 0 the port is
// the one the system picked). SIGINT / SIGTERM: the listening socket closes and new requests get 503;
// in-flight ones (streams included) may finish for --shutdown-timeout seconds, then the engine cancels
// the rest (their clients get an error) and the process exits 0. A second signal ends the wait at once.
// Raw adapter folders that cannot be loaded are skipped with one line each on stderr
// ("serve: skipped adapter 'NAME' (FOLDER): REASON"); serve refuses to start only when none is usable.
// Threads: the signal handler only writes to a pipe; one waiter thread reads it and stops the server.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/api/chat_template.hpp"
#include "engine/api/http_server.hpp"
#include "engine/core/error.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/serve/session/serving_session.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <malloc.h>
#include <poll.h>
#include <thread>
#include <unistd.h>

namespace lorafleet::cli {
namespace {

const char* usage_text =
    "usage: lorafleet-cli serve --model DIR [--bank BANK | --adapters DIR[,DIR...]...] [--host ADDR]\n"
    "                           [--port N] [--api-key-file FILE | --api-key KEY] [--allow-no-key]\n"
    "                           [--adapter-root DIR]... [--kv-cache-mb M] [--adapter-cache-mb M]\n"
    "                           [--max-request-bytes B] [--max-tokens-cap N] [--max-in-flight N]\n"
    "                           [--max-connections N] [--shutdown-timeout S] [--served-name NAME]\n"
    "                           [--threads N] [--http-threads N] [--device cpu|cuda|auto]\n"
    "                           [--dtype auto|float32|bfloat16|float16]\n"
    "\n"
    "Serves the model and its adapters over an OpenAI-compatible HTTP API: POST /v1/completions,\n"
    "POST /v1/chat/completions (\"stream\": true for server-sent events), GET /v1/models,\n"
    "POST /v1/adapters {\"name\",\"path\"}, DELETE /v1/adapters/NAME, GET /health, GET /metrics.\n"
    "A request's \"model\" is an adapter's folder name, or the base model's name (the model folder's\n"
    "name unless --served-name). Without --bank or --adapters only the base model is served.\n"
    "\n"
    "  --model DIR             the base model folder (HuggingFace format)\n"
    "  --bank BANK             a compressed bank folder (lorafleet-cli compress)\n"
    "  --adapters DIR          raw PEFT adapter folders, or folders of them (repeatable, comma lists)\n"
    "                          (one that cannot be loaded is skipped with a line on stderr)\n"
    "  --host ADDR             address to bind (default 127.0.0.1). Any other address than loopback needs\n"
    "                          an API key, or --allow-no-key\n"
    "  --port N                port (default 8000; 0 picks a free one, printed on stderr)\n"
    "  --api-key-file FILE     require 'Authorization: Bearer KEY' on every route but /health, KEY being\n"
    "                          the file's one line (not visible in ps, unlike --api-key)\n"
    "  --api-key KEY           the same, with the key on the command line\n"
    "                          (default: the LORAFLEET_API_KEY environment variable, else no key;\n"
    "                          an empty key is an error)\n"
    "  --allow-no-key          serve a non-loopback --host without an API key\n"
    "  --adapter-root DIR      POST /v1/adapters may load folders under DIR (repeatable; without it,\n"
    "                          adding adapters over HTTP is refused with 403)\n"
    "  --kv-cache-mb M         KV cache budget in MiB (default 256)\n"
    "  --adapter-cache-mb M    raw mode: MiB of adapter weights kept resident (default 1024)\n"
    "  --max-request-bytes B   larger request bodies (as sent, or once gzip/deflate-inflated) get 413\n"
    "                          (default 1048576)\n"
    "  --max-tokens-cap N      most completion tokens one request may ask for (default 4096)\n"
    "  --max-in-flight N       completions and adapter changes at once; more get 429 (default 256)\n"
    "  --max-connections N     open connections; more get 503 and are closed (default 512)\n"
    "  --shutdown-timeout S    on SIGTERM/SIGINT, seconds in-flight requests may take to finish before\n"
    "                          they are cancelled (default 30; a second signal cancels at once)\n"
    "  --served-name NAME      the base model's name in requests and /v1/models\n"
    "  --threads N             transformer threads (default: one per hardware thread)\n"
    "  --http-threads N        threads for /health, /metrics and /v1/models (default 8)\n"
    "  --device D              where the forward pass runs: cpu (default), cuda, or auto (cuda when a\n"
    "                          device is usable, else cpu). On cuda, POST/DELETE /v1/adapters are refused\n"
    "  --dtype D               weights' precision: auto (the default: as stored in the checkpoint on the\n"
    "                          CPU; on a device float32 checkpoints become bfloat16), float32, bfloat16\n"
    "                          or float16\n"
    "\n"
    "HTTP limits: request line and header fields 16 KiB (431; 414 for the URI), the whole header section\n"
    "within 10 s (408), the body within 30 s (408), idle keep-alive connections closed after 5 s.\n";

// The API key from a file: a small regular file holding one line (a trailing newline is dropped).
std::string read_key_file(const std::string& path) {
    std::string key;
    try {
        key = io::read_text_file(path, 4096, "API key file");
    } catch (const lorafleet::error& e) {
        throw usage_error("serve", std::string("--api-key-file: ") + e.what());
    }
    if (!key.empty() && key.back() == '\n') key.pop_back();
    if (!key.empty() && key.back() == '\r') key.pop_back();
    if (key.empty()) throw usage_error("serve", "--api-key-file: '" + path + "' is empty");
    for (char c : key)
        if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
            throw usage_error("serve", "--api-key-file: the key must be one line without spaces or control "
                                       "characters");
    return key;
}

bool is_loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

int g_stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
    const char c = static_cast<char>(sig);
    [[maybe_unused]] const auto n = write(g_stop_pipe[1], &c, 1); // async-signal-safe
}

// glibc gives each thread that allocates its own malloc arena, up to 8 per core. The server's handler
// threads (one per concurrent request, kept for reuse) then spread small, short-lived allocations (JSON,
// response bodies) over many arenas, and the process's RSS creeps up for a long time before it levels
// off (soak: +14% after warm-up with the default, +8% with 2 arenas, same throughput). Two arenas unless
// the operator chose otherwise with MALLOC_ARENA_MAX.
void limit_malloc_arenas() {
    if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
}

int run_serve(const std::vector<std::string>& args) {
    limit_malloc_arenas();
    arg_parser p({"model",
                  "bank",
                  "adapters",
                  "host",
                  "port",
                  "api-key",
                  "api-key-file",
                  "adapter-root",
                  "kv-cache-mb",
                  "adapter-cache-mb",
                  "max-request-bytes",
                  "max-tokens-cap",
                  "max-in-flight",
                  "max-connections",
                  "shutdown-timeout",
                  "served-name",
                  "threads",
                  "http-threads",
                  "device",
                  "dtype"},
                 {"allow-no-key"});
    p.parse(args);
    if (!p.positionals().empty())
        throw usage_error("serve", "unexpected argument '" + p.positionals()[0] + "'");
    const std::filesystem::path model_dir = p.required("model");
    std::vector<std::filesystem::path> adapter_dirs;
    for (const auto& v : p.all("adapters"))
        for (const auto& d : split_list(v))
            adapter_dirs.emplace_back(d);
    if (p.has("bank") && !adapter_dirs.empty())
        throw usage_error("serve", "give --bank or --adapters, not both");
    if (p.has("adapters") && adapter_dirs.empty()) throw usage_error("serve", "--adapters needs a folder");

    api::server_options so;
    so.host = p.get_or("host", "127.0.0.1");
    so.port = static_cast<int>(p.get_int("port", 8000, 0, 65535));
    if (p.has("api-key") && p.has("api-key-file"))
        throw usage_error("serve", "give --api-key or --api-key-file, not both");
    if (p.has("api-key")) {
        so.api_key = *p.get("api-key");
        if (so.api_key.empty()) throw usage_error("serve", "--api-key must not be empty");
    } else if (p.has("api-key-file")) {
        so.api_key = read_key_file(*p.get("api-key-file"));
    } else if (const char* env = std::getenv("LORAFLEET_API_KEY")) {
        so.api_key = env;
        if (so.api_key.empty())
            throw usage_error("serve",
                              "LORAFLEET_API_KEY is set but empty (unset it to serve without a key)");
    }
    if (so.api_key.empty() && !is_loopback(so.host) && !p.has("allow-no-key"))
        throw usage_error("serve", "--host " + so.host +
                                       " is reachable from other machines: give an API key (--api-key-file, "
                                       "LORAFLEET_API_KEY) or --allow-no-key");
    if (p.has("api-key"))
        std::fprintf(stderr,
                     "serve: note: --api-key is visible to other users (ps); --api-key-file is not\n");
    if (so.api_key.empty() && !is_loopback(so.host))
        std::fprintf(stderr, "serve: warning: serving %s without an API key (--allow-no-key)\n",
                     so.host.c_str());
    for (const auto& r : p.all("adapter-root")) {
        std::error_code ec;
        if (r.empty() || !std::filesystem::is_directory(r, ec))
            throw usage_error("serve", "--adapter-root '" + r + "' is not a folder");
        so.adapter_roots.emplace_back(r);
    }
    so.max_in_flight = static_cast<int>(p.get_int("max-in-flight", 256, 1, 1 << 16));
    so.max_connections = static_cast<std::size_t>(p.get_int("max-connections", 512, 4, 1 << 20));
    const double shutdown_timeout = p.get_double("shutdown-timeout", 30, 0, 24 * 3600);
    so.max_request_bytes = static_cast<std::size_t>(p.get_int("max-request-bytes", 1 << 20, 256, 1ll << 30));
    so.limits.max_tokens_cap = static_cast<int>(p.get_int("max-tokens-cap", 4096, 1, 1 << 24));
    so.base_name = p.get_or("served-name", "");
    so.http_threads = static_cast<int>(p.get_int("http-threads", 8, 2, 4096));
    serve::engine_options eo;
    eo.kv_cache_bytes = static_cast<std::uint64_t>(p.get_int("kv-cache-mb", 256, 1, 1 << 20)) << 20;
    eo.threads = static_cast<int>(p.get_int("threads", 0, 0, 1024));
    eo.device = serve::parse_device_choice(p.get_or("device", "cpu"));
    const std::uint64_t adapter_cache =
        static_cast<std::uint64_t>(p.get_int("adapter-cache-mb", 1024, 1, 1 << 24)) << 20;

    // SIGINT / SIGTERM may land on any thread (libraries start their own before main), so the handler
    // only writes the signal number into a pipe that the waiter thread below reads.
    if (pipe(g_stop_pipe) != 0) throw io_error("serve", "cannot create the signal pipe");
    struct sigaction sa {};
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN); // a vanished client is an error return from send(), not a signal

    serve::session_options session;
    session.model_dir = model_dir;
    session.load.dtype = serve::parse_weight_dtype_choice(p.get_or("dtype", "auto"));
    session.engine = eo;
    if (p.has("bank")) {
        session.adapters.source = serve::adapter_source::bank_folder;
        session.adapters.bank_dir = *p.get("bank");
    } else if (!adapter_dirs.empty()) {
        session.adapters.source = serve::adapter_source::raw_folders;
        session.adapters.raw_paths = adapter_dirs;
        session.adapters.raw_cache_bytes = adapter_cache;
    }
    serve::serving_session opened = serve::open_serving_session(session);
    for (const auto& s : opened.skipped) // unusable raw adapters: listed, and serving goes on without them
        std::fprintf(stderr, "serve: %s\n", serve::describe(s).c_str());
    serve::serving_engine& engine = *opened.engine;

    const auto chat = api::chat_template::from_model_dir(model_dir);
    if (chat.had_template() && !chat.recognised())
        std::fprintf(stderr, "serve: the model's chat_template is not one of the supported families; "
                             "/v1/chat/completions uses the plain <|role|> fallback format\n");
    api::http_server http(engine, chat, so);
    const int port = http.bind();
    std::fprintf(stderr, "serve: %s, %zu adapters (%s mode), chat format %s\n", http.base_name().c_str(),
                 engine.adapters().size(), std::string(engine.adapter_mode()).c_str(),
                 std::string(api::chat_format_name(chat.format())).c_str());
    std::fprintf(stderr, "serve: device %s\n", engine.device_note().c_str());
    std::fprintf(stderr, "listening on http://%s:%d\n", so.host.c_str(), port);
    std::fflush(stderr);

    std::atomic<bool> finished{false};
    std::thread waiter([&] {
        auto next_signal = [&](int timeout_ms) -> int { // the signal number, or 0
            pollfd fd{g_stop_pipe[0], POLLIN, 0};
            if (poll(&fd, 1, timeout_ms) != 1) return 0;
            char sig = 0;
            return read(g_stop_pipe[0], &sig, 1) == 1 ? (sig == 0 ? SIGTERM : sig) : 0;
        };
        int sig = 0;
        while (!finished && (sig = next_signal(200)) == 0) {
        }
        if (finished) return;
        std::fprintf(stderr, "serve: %s, finishing in-flight requests (at most %g s)\n",
                     sig == SIGINT ? "SIGINT" : "SIGTERM", shutdown_timeout);
        http.begin_stop();
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::duration<double>(shutdown_timeout);
        bool drained = false, again = false;
        while (!(drained = http.wait_drained(std::chrono::milliseconds(50)))) {
            if (std::chrono::steady_clock::now() >= deadline) break;
            if (next_signal(0) != 0) {
                again = true;
                break;
            }
        }
        if (!drained) {
            std::fprintf(stderr, "serve: %s; cancelling %d in-flight requests\n",
                         again ? "second signal" : "shutdown timeout", http.in_flight());
            engine.shutdown(false); // their clients get an error
            if (!http.wait_drained(std::chrono::seconds(2))) http.abort_connections(); // clients not reading
        }
        http.stop();
    });
    const bool ok = http.run();
    finished = true;
    waiter.join();
    engine.shutdown(true);
    if (!ok) {
        std::fprintf(stderr, "lorafleet-cli serve: error: the HTTP listener failed\n");
        return 1;
    }
    std::fprintf(stderr, "serve: stopped\n");
    return 0;
}

const command_registrar reg{
    {"serve", "serve adapters over an OpenAI-compatible HTTP API", usage_text, &run_serve}};

} // namespace
} // namespace lorafleet::cli
