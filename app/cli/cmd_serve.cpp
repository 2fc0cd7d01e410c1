// `lorafleet-cli serve`: the OpenAI-compatible HTTP server over the continuous-batching engine, routing
// requests to a compressed bank's adapters or to raw PEFT adapters (engine/server/http_server.hpp).
// Prints "listening on http://HOST:PORT" on stderr once the socket is bound (with --port 0 the port is
// the one the system picked). SIGINT / SIGTERM: new requests get 503, in-flight ones (streams included)
// finish, then the process exits 0. Threads: the signal handler only writes to a pipe; one waiter thread
// reads it and stops the server.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/adapter_providers.hpp"
#include "engine/serve/model_weights.hpp"
#include "engine/serve/serving_engine.hpp"
#include "engine/serve/tokenizer.hpp"
#include "engine/server/chat_template.hpp"
#include "engine/server/http_server.hpp"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <poll.h>
#include <thread>
#include <unistd.h>

namespace lorafleet::cli {
namespace {

const char* usage_text =
    "usage: lorafleet-cli serve --model DIR [--bank BANK | --adapters DIR[,DIR...]...] [--host ADDR]\n"
    "                           [--port N] [--api-key KEY] [--kv-cache-mb M] [--adapter-cache-mb M]\n"
    "                           [--max-request-bytes B] [--max-tokens-cap N] [--served-name NAME]\n"
    "                           [--threads N] [--http-threads N] [--device cpu|cuda|auto]\n"
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
    "  --host ADDR             address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)\n"
    "  --port N                port (default 8000; 0 picks a free one, printed on stderr)\n"
    "  --api-key KEY           require 'Authorization: Bearer KEY' on every route but /health\n"
    "                          (default: the LORAFLEET_API_KEY environment variable, else no key)\n"
    "  --kv-cache-mb M         KV cache budget in MiB (default 256)\n"
    "  --adapter-cache-mb M    raw mode: MiB of adapter weights kept resident (default 1024)\n"
    "  --max-request-bytes B   larger request bodies get 413 (default 1048576)\n"
    "  --max-tokens-cap N      most completion tokens one request may ask for (default 4096)\n"
    "  --served-name NAME      the base model's name in requests and /v1/models\n"
    "  --threads N             transformer threads (default: one per hardware thread)\n"
    "  --http-threads N        connections served at once (default 32)\n"
    "  --device D              where the forward pass runs: cpu (default), cuda, or auto (cuda when a\n"
    "                          device is usable, else cpu). On cuda, POST/DELETE /v1/adapters are refused\n";

int g_stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
    const char c = static_cast<char>(sig);
    [[maybe_unused]] const auto n = write(g_stop_pipe[1], &c, 1); // async-signal-safe
}

int run_serve(const std::vector<std::string>& args) {
    arg_parser p({"model", "bank", "adapters", "host", "port", "api-key", "kv-cache-mb", "adapter-cache-mb",
                  "max-request-bytes", "max-tokens-cap", "served-name", "threads", "http-threads", "device"},
                 {});
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

    server::server_options so;
    so.host = p.get_or("host", "127.0.0.1");
    so.port = static_cast<int>(p.get_int("port", 8000, 0, 65535));
    if (p.has("api-key")) {
        so.api_key = *p.get("api-key");
        if (so.api_key.empty()) throw usage_error("serve", "--api-key must not be empty");
    } else if (const char* env = std::getenv("LORAFLEET_API_KEY")) {
        so.api_key = env;
    }
    so.max_request_bytes = static_cast<std::size_t>(p.get_int("max-request-bytes", 1 << 20, 256, 1ll << 30));
    so.limits.max_tokens_cap = static_cast<int>(p.get_int("max-tokens-cap", 4096, 1, 1 << 24));
    so.base_name = p.get_or("served-name", "");
    so.http_threads = static_cast<int>(p.get_int("http-threads", 32, 2, 4096));
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

    auto weights = serve::model_weights::load(model_dir);
    std::shared_ptr<const serve::Tokenizer> tokenizer = serve::load_tokenizer(model_dir);
    std::unique_ptr<serve::AdapterProvider> provider;
    if (p.has("bank"))
        provider = serve::open_bank_provider(*p.get("bank"), weights->geometry());
    else if (!adapter_dirs.empty())
        provider = serve::open_raw_provider(adapter_dirs, weights->geometry(), adapter_cache);
    serve::serving_engine engine(weights, tokenizer, std::move(provider), eo);

    const auto chat = server::chat_template::from_model_dir(model_dir);
    if (chat.had_template() && !chat.recognised())
        std::fprintf(stderr, "serve: the model's chat_template is not one of the supported families; "
                             "/v1/chat/completions uses the plain <|role|> fallback format\n");
    server::http_server http(engine, chat, so);
    const int port = http.bind();
    std::fprintf(stderr, "serve: %s, %zu adapters (%s mode), chat format %s\n", http.base_name().c_str(),
                 engine.adapters().size(), std::string(engine.adapter_mode()).c_str(),
                 std::string(server::chat_format_name(chat.format())).c_str());
    std::fprintf(stderr, "serve: device %s\n", engine.device_note().c_str());
    std::fprintf(stderr, "listening on http://%s:%d\n", so.host.c_str(), port);
    std::fflush(stderr);

    std::atomic<bool> finished{false};
    std::thread waiter([&] {
        while (!finished) {
            pollfd fd{g_stop_pipe[0], POLLIN, 0};
            if (poll(&fd, 1, 200) != 1) continue;
            char sig = 0;
            if (read(g_stop_pipe[0], &sig, 1) != 1) continue;
            std::fprintf(stderr, "serve: %s, finishing in-flight requests\n",
                         sig == SIGINT ? "SIGINT" : "SIGTERM");
            http.stop();
            return;
        }
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
