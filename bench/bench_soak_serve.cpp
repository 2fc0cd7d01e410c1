// Soak benchmark of the real server: starts `lorafleet-cli serve` as a child process and drives it with
// a mixed load, then SIGTERMs it and checks that it exits 0 in time.
//
//   - N client threads (--clients, default 32), each with its own seeded RNG, loop over: plain
//     completions (greedy and sampled), chat completions, streamed completions / chats read to
//     "data: [DONE]", streamed completions the client walks away from after the first event, and bad
//     requests (malformed JSON, unknown model, huge max_tokens, wrong method), spread over the bank's
//     adapters, the base model and adapters added at run time;
//   - one thread adds and removes adapters (POST / DELETE /v1/adapters), now and then a bad add;
//   - a few slow-header connections (a header line every 2-3 s) and idle connections held open;
//   - one thread polls GET /health every 100 ms (latency, failures) and samples the server's VmRSS.
//
// Every request is classified: answered 200 (201 for adds), answered with a clear error (4xx/5xx with a
// JSON body carrying error.message, or 429/503 with Retry-After), client-aborted (a stream the client
// dropped on purpose), lost (no answer before the client timeout, the connection closed or reset before
// a complete response, or a response that is not well-formed), or unclear (an error status without a
// clear body, or a 200 to a bad request). Exit code 1 if anything was lost or unclear, the server
// crashed, or it did not exit 0 within --shutdown-timeout after SIGTERM; 2 for a bad command line.
// RSS: "start" is sampled after warm-up (10% of the requests or of the duration), "end" after the last
// client request, "max" over the run. When no request finishes for 10 s the server's thread stacks go to
// WORK/stall-stacks.txt (if gdb is installed). The server's output is in WORK/serve.log.
//
// usage: bench_soak_serve --cli PATH --model DIR [--duration S | --requests N] [--clients 32] [--port 0]
//                         [--work DIR] [--bank BANK | --adapters DIR] [--slow-connections 3]
//                         [--idle-connections 3] [--timeout-s 30] [--shutdown-timeout 60] [--seed S]
//                         [--serve-arg ARG]... [--json]
#include "bench/soak/child_process.hpp"
#include "bench/soak/http_exchange.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <poll.h>
#include <random>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;
using soak::clock_type;
using soak::http_result;
using soak::transport;

namespace {

// ---- options ---------------------------------------------------------------------------------------
struct options {
    fs::path cli, model, work, bank, adapters;
    double duration_s = 0;
    long long requests = 0;
    int clients = 32;
    int port = 0;
    int slow_connections = 3;
    int idle_connections = 3;
    int timeout_s = 30;
    int shutdown_timeout_s = 60;
    unsigned long long seed = 1;
    std::vector<std::string> serve_args;
    bool json_out = false;
};

const char* usage_text =
    "usage: bench_soak_serve --cli PATH --model DIR [--duration S | --requests N] [--clients 32]\n"
    "                        [--port 0] [--work DIR] [--bank BANK | --adapters DIR]\n"
    "                        [--slow-connections 3] [--idle-connections 3] [--timeout-s 30]\n"
    "                        [--shutdown-timeout 60] [--seed S] [--serve-arg ARG]... [--json]\n";

// A wrong command line: one line saying why, the usage, exit code 2.
[[noreturn]] void usage(const std::string& why) {
    std::fprintf(stderr, "bench_soak_serve: %s\n%s", why.c_str(), usage_text);
    std::exit(2);
}

long long parse_int(const std::string& flag, const std::string& v, long long lo, long long hi) {
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > hi)
        usage(flag + " needs an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
              v + "'");
    return x;
}

options parse_options(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(a + " needs a value");
            return argv[++i];
        };
        if (a == "--cli")
            o.cli = value();
        else if (a == "--model")
            o.model = value();
        else if (a == "--work")
            o.work = value();
        else if (a == "--bank")
            o.bank = value();
        else if (a == "--adapters")
            o.adapters = value();
        else if (a == "--duration")
            o.duration_s = static_cast<double>(parse_int(a, value(), 1, 7 * 86400));
        else if (a == "--requests")
            o.requests = parse_int(a, value(), 1, 1ll << 40);
        else if (a == "--clients")
            o.clients = static_cast<int>(parse_int(a, value(), 1, 1024));
        else if (a == "--port")
            o.port = static_cast<int>(parse_int(a, value(), 0, 65535));
        else if (a == "--slow-connections")
            o.slow_connections = static_cast<int>(parse_int(a, value(), 0, 64));
        else if (a == "--idle-connections")
            o.idle_connections = static_cast<int>(parse_int(a, value(), 0, 64));
        else if (a == "--timeout-s")
            o.timeout_s = static_cast<int>(parse_int(a, value(), 1, 3600));
        else if (a == "--shutdown-timeout")
            o.shutdown_timeout_s = static_cast<int>(parse_int(a, value(), 1, 3600));
        else if (a == "--seed")
            o.seed = static_cast<unsigned long long>(parse_int(a, value(), 0, 1ll << 62));
        else if (a == "--serve-arg")
            o.serve_args.push_back(value());
        else if (a == "--json")
            o.json_out = true;
        else if (a == "--help" || a == "-h") {
            std::fputs(usage_text, stdout);
            std::exit(0);
        } else
            usage("unknown option '" + a + "'");
    }
    if (o.cli.empty()) usage("--cli PATH (lorafleet-cli) is required");
    if (o.model.empty()) usage("--model DIR is required");
    if ((o.duration_s > 0) == (o.requests > 0)) usage("give exactly one of --duration S and --requests N");
    if (!o.bank.empty() && !o.adapters.empty()) usage("give --bank or --adapters, not both");
    return o;
}

// ---- request kinds and their tallies -----------------------------------------------------------------
enum kind : int {
    k_completion,
    k_completion_sampled,
    k_chat,
    k_stream,
    k_stream_chat,
    k_stream_abort,
    k_bad_json,
    k_bad_model,
    k_bad_max_tokens,
    k_bad_method,
    k_adapter_add,
    k_adapter_remove,
    k_adapter_bad_add,
    k_count
};
const char* kind_names[k_count] = {"completion",     "completion_sampled", "chat",        "stream",
                                   "stream_chat",    "stream_abort",       "bad_json",    "bad_model",
                                   "bad_max_tokens", "bad_method",         "adapter_add", "adapter_remove",
                                   "adapter_bad_add"};
bool is_bad_kind(int k) {
    return k == k_bad_json || k == k_bad_model || k == k_bad_max_tokens || k == k_bad_method ||
           k == k_adapter_bad_add;
}

enum class verdict { ok, clear_error, aborted, lost, unclear };

struct tally {
    long long sent = 0, ok = 0, clear_error = 0, aborted = 0, lost = 0, unclear = 0;
    std::vector<double> ok_ms; // latency of the 200s (whole response; streams to [DONE])
    void add(const tally& o) {
        sent += o.sent, ok += o.ok, clear_error += o.clear_error, aborted += o.aborted, lost += o.lost;
        unclear += o.unclear;
        ok_ms.insert(ok_ms.end(), o.ok_ms.begin(), o.ok_ms.end());
    }
};

// A JSON body {"error": {"message": "..."}}.
bool has_error_message(const std::string& body) {
    const json j = json::parse(body, nullptr, false);
    return !j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object() &&
           j["error"].contains("message") && j["error"]["message"].is_string() &&
           !j["error"]["message"].get<std::string>().empty();
}

bool is_clear_error(const http_result& r) {
    if (r.status < 400) return false;
    if ((r.status == 429 || r.status == 503) && r.header("retry-after") != nullptr) return true;
    return has_error_message(r.body);
}

// An SSE body: "data: {json}" events separated by blank lines, ": comments", ending with "data: [DONE]".
// Returns "" when well-formed (done / error_event set), else what is wrong.
std::string check_sse(const std::string& body, bool& done, bool& error_event) {
    done = false;
    error_event = false;
    std::size_t pos = 0;
    while (pos < body.size()) {
        std::size_t end = body.find("\n\n", pos);
        if (end == std::string::npos) return "an event not ended by a blank line";
        const std::string event = body.substr(pos, end - pos);
        pos = end + 2;
        if (event.empty() || event[0] == ':') continue;
        if (done) return "data after [DONE]";
        if (event.rfind("data: ", 0) != 0) return "an event that is not 'data: '";
        const std::string payload = event.substr(6);
        if (payload == "[DONE]") {
            done = true;
            continue;
        }
        const json j = json::parse(payload, nullptr, false);
        if (j.is_discarded() || !j.is_object()) return "an event whose data is not a JSON object";
        if (j.contains("error")) {
            if (!has_error_message(payload)) return "an error event without error.message";
            error_event = true;
        }
    }
    if (!done) return "no data: [DONE]";
    return {};
}

// Classifies one exchange. expect_ok: the status a good answer has (200 or 201); stream: an SSE answer.
verdict classify(const http_result& r, int k, std::string& why) {
    if (r.how == transport::aborted) return verdict::aborted;
    if (r.how != transport::complete) {
        why = std::string(soak::transport_name(r.how)) + ": " + r.detail;
        return verdict::lost;
    }
    const bool bad = is_bad_kind(k);
    if (r.status == 200 || r.status == 201) {
        if (bad) {
            why = "a bad request answered " + std::to_string(r.status);
            return verdict::unclear;
        }
        if (k == k_stream || k == k_stream_chat || k == k_stream_abort) {
            bool done = false, error_event = false;
            why = check_sse(r.body, done, error_event);
            if (!why.empty()) {
                why = "stream: " + why;
                return verdict::lost;
            }
            return error_event ? verdict::clear_error : verdict::ok;
        }
        const json j = json::parse(r.body, nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            why = "a 200 whose body is not a JSON object";
            return verdict::lost;
        }
        if ((k == k_completion || k == k_completion_sampled || k == k_chat) &&
            !(j.contains("choices") && j["choices"].is_array() && !j["choices"].empty())) {
            why = "a completion without choices";
            return verdict::unclear;
        }
        return verdict::ok;
    }
    if (is_clear_error(r)) return verdict::clear_error;
    why = "status " + std::to_string(r.status) + " without a clear error body";
    return verdict::unclear;
}

// ---- shared run state --------------------------------------------------------------------------------
struct run_state {
    options opt;
    int port = 0;
    std::string base_name;
    std::vector<std::string> bank_adapters;             // served from the start
    std::vector<std::pair<std::string, fs::path>> live; // name, folder: added / removed at run time
    bool adapter_root = false;

    std::atomic<bool> stop{false};
    std::atomic<long long> tickets{0};  // --requests: tickets handed out
    std::atomic<long long> finished{0}; // requests classified (all threads)
    clock_type::time_point start;

    std::mutex mutex; // guards what follows
    std::condition_variable cv;
    tally kinds[k_count];
    std::vector<std::string> problems; // the first lost / unclear ones, for the report
    long long problem_count = 0;

    void record(int k, const http_result& r) {
        std::string why;
        const verdict v = classify(r, k, why);
        std::lock_guard lock(mutex);
        tally& t = kinds[k];
        ++t.sent;
        switch (v) {
        case verdict::ok:
            ++t.ok;
            t.ok_ms.push_back(r.ms);
            break;
        case verdict::clear_error:
            ++t.clear_error;
            break;
        case verdict::aborted:
            ++t.aborted;
            break;
        case verdict::lost:
            ++t.lost;
            break;
        case verdict::unclear:
            ++t.unclear;
            break;
        }
        if (v == verdict::lost || v == verdict::unclear) {
            ++problem_count;
            if (problems.size() < 20) {
                char at[32];
                std::snprintf(at, sizeof at, "%.1f",
                              std::chrono::duration<double>(clock_type::now() - start).count());
                problems.push_back(std::string(kind_names[k]) + " at " + at + " s after " +
                                   std::to_string(static_cast<long long>(r.ms)) +
                                   " ms: " + (v == verdict::lost ? "LOST " : "UNCLEAR ") + why + " (status " +
                                   std::to_string(r.status) + ", " + std::to_string(r.body.size()) +
                                   " body bytes)");
            }
        }
        finished.fetch_add(1);
    }

    double elapsed_s() const { return std::chrono::duration<double>(clock_type::now() - start).count(); }

    // A client may start one more request.
    bool take_ticket() {
        if (stop) return false;
        if (opt.requests > 0) return tickets.fetch_add(1) < opt.requests;
        return elapsed_s() < opt.duration_s;
    }

    // Sleeps up to d, waking early when the run stops.
    void nap(std::chrono::milliseconds d) {
        std::unique_lock lock(mutex);
        cv.wait_for(lock, d, [&] { return stop.load(); });
    }

    std::chrono::milliseconds timeout() const { return std::chrono::seconds(opt.timeout_s); }
};

const char* prompts[] = {"Once upon a time",
                         "The little dog",
                         "Lily wanted to",
                         "One day, a boy named Tim",
                         "The sun was shining and",
                         "In a small house there lived",
                         "Mom said",
                         "The cat jumped"};

std::string pick_model(run_state& s, std::mt19937_64& rng) {
    const int r = static_cast<int>(rng() % 100);
    if (r < 10 || (s.bank_adapters.empty() && r < 90)) return s.base_name;
    if (r < 90) return s.bank_adapters[rng() % s.bank_adapters.size()];
    return s.live[rng() % s.live.size()].first; // may be absent right now: 404 is the right answer
}

// ---- the client mix ----------------------------------------------------------------------------------
void client_loop(run_state& s, int index) {
    std::mt19937_64 rng(s.opt.seed * 1000003ull + static_cast<unsigned long long>(index));
    while (s.take_ticket()) {
        const int r = static_cast<int>(rng() % 100);
        const std::string prompt = prompts[rng() % std::size(prompts)];
        const std::string model = pick_model(s, rng);
        const int max_tokens = 4 + static_cast<int>(rng() % 5);
        json body = {{"model", model}, {"prompt", prompt}, {"max_tokens", max_tokens}};
        std::string method = "POST", path = "/v1/completions";
        int k;
        if (r < 18) {
            k = k_completion;
            body["temperature"] = 0;
        } else if (r < 32) {
            k = k_completion_sampled;
            body["temperature"] = 0.7;
            body["seed"] = static_cast<int>(rng() % 100000);
        } else if (r < 46) {
            k = k_chat;
            path = "/v1/chat/completions";
            body.erase("prompt");
            body["messages"] = json::array({{{"role", "user"}, {"content", prompt}}});
        } else if (r < 60) {
            k = k_stream;
            body["stream"] = true;
        } else if (r < 66) {
            k = k_stream_chat;
            path = "/v1/chat/completions";
            body.erase("prompt");
            body["messages"] = json::array({{{"role", "user"}, {"content", prompt}}});
            body["stream"] = true;
        } else if (r < 78) {
            k = k_stream_abort;
            body["stream"] = true;
            body["max_tokens"] = 24 + static_cast<int>(rng() % 16);
        } else if (r < 84) {
            k = k_bad_json;
        } else if (r < 89) {
            k = k_bad_model;
            body["model"] = "no-such-model-" + std::to_string(rng() % 1000);
        } else if (r < 94) {
            k = k_bad_max_tokens;
            body["max_tokens"] = 100000000;
        } else {
            k = k_bad_method;
            method = (rng() % 2) ? "GET" : "PUT";
            if (rng() % 2) path = "/v1/chat/completions";
        }
        std::string text = body.dump();
        if (k == k_bad_json) {
            text.resize(text.size() / 2); // cut mid-document
            if (rng() % 2) text += "}}";
        }
        const std::string req =
            method == "GET" ? soak::make_request(method, path) : soak::make_request(method, path, text);
        soak::body_watch watch;
        if (k == k_stream_abort) // walk away once the first event has arrived
            watch = [](const std::string& b) { return b.find("data: ") == std::string::npos; };
        const http_result res = soak::exchange(s.port, req, s.timeout(), watch);
        s.record(k, res);
        // A polite client backs off a little when told the server is busy.
        if (res.how == transport::complete && res.status == 429) s.nap(std::chrono::milliseconds(50));
    }
}

// Adds and removes the live adapters in a loop; now and then an add that must be refused.
void adapter_loop(run_state& s) {
    std::mt19937_64 rng(s.opt.seed * 7919ull + 17);
    std::vector<bool> added(s.live.size(), false);
    while (!s.stop) {
        const std::size_t i = rng() % s.live.size();
        const int r = static_cast<int>(rng() % 100);
        if (r < 10) { // a folder that does not exist / outside the adapter root
            const json body = {{"name", "bad-" + std::to_string(rng() % 1000)},
                               {"path", (r < 5 ? fs::path("/nonexistent/adapter") : s.opt.model).string()}};
            s.record(
                k_adapter_bad_add,
                soak::exchange(s.port, soak::make_request("POST", "/v1/adapters", body.dump()), s.timeout()));
        } else if (!added[i]) {
            const json body = {{"name", s.live[i].first}, {"path", s.live[i].second.string()}};
            const auto res =
                soak::exchange(s.port, soak::make_request("POST", "/v1/adapters", body.dump()), s.timeout());
            s.record(k_adapter_add, res);
            if (res.how == transport::complete && (res.status == 201 || res.status == 409)) added[i] = true;
        } else {
            const auto res = soak::exchange(
                s.port, soak::make_request("DELETE", "/v1/adapters/" + s.live[i].first), s.timeout());
            s.record(k_adapter_remove, res);
            if (res.how == transport::complete && (res.status == 200 || res.status == 404)) added[i] = false;
        }
        s.nap(std::chrono::milliseconds(20 + rng() % 30));
    }
}

// ---- hostile connections -----------------------------------------------------------------------------
struct hostile_tally {
    long long connections = 0, answered = 0, cut_off = 0, held = 0, failed = 0;
    double cut_after_s_max = 0;
};

// A GET /health whose header lines trickle in, one every 2-3 s. The server may answer, or cut the
// connection (both fine: counted, never "lost").
void slow_header_loop(run_state& s, int index, hostile_tally& t) {
    std::mt19937_64 rng(s.opt.seed * 31ull + static_cast<unsigned long long>(index));
    while (!s.stop) {
        std::string why;
        const int fd = soak::connect_loopback(s.port, clock_type::now() + s.timeout(), why);
        {
            std::lock_guard lock(s.mutex);
            ++t.connections;
        }
        if (fd < 0) {
            {
                std::lock_guard lock(s.mutex);
                ++t.failed;
            }
            s.nap(std::chrono::milliseconds(500));
            continue;
        }
        const auto opened = clock_type::now();
        bool ok = soak::send_all(fd, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                                 clock_type::now() + s.timeout(), why);
        for (int line = 0; ok && line < 5 && !s.stop; ++line) {
            s.nap(std::chrono::milliseconds(2000 + rng() % 1000));
            ok = soak::send_all(fd, "X-Slow-" + std::to_string(line) + ": yes\r\n",
                                clock_type::now() + s.timeout(), why);
        }
        if (ok) ok = soak::send_all(fd, "Connection: close\r\n\r\n", clock_type::now() + s.timeout(), why);
        const http_result r = soak::read_response(fd, clock_type::now() + s.timeout());
        ::close(fd);
        std::lock_guard lock(s.mutex);
        if (ok && r.how == transport::complete) {
            ++t.answered;
        } else {
            ++t.cut_off;
            t.cut_after_s_max = std::max(t.cut_after_s_max,
                                         std::chrono::duration<double>(clock_type::now() - opened).count());
        }
    }
}

// A connection that sends nothing, held up to 20 s; counts whether the server closed it first.
void idle_loop(run_state& s, hostile_tally& t) {
    while (!s.stop) {
        std::string why;
        const int fd = soak::connect_loopback(s.port, clock_type::now() + s.timeout(), why);
        {
            std::lock_guard lock(s.mutex);
            ++t.connections;
        }
        if (fd < 0) {
            {
                std::lock_guard lock(s.mutex);
                ++t.failed;
            }
            s.nap(std::chrono::milliseconds(500));
            continue;
        }
        const auto opened = clock_type::now();
        bool closed_by_server = false;
        while (!s.stop && clock_type::now() - opened < std::chrono::seconds(20)) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 100) > 0) {
                char c;
                if (::recv(fd, &c, 1, MSG_DONTWAIT) <= 0) {
                    closed_by_server = true;
                    break;
                }
            }
        }
        ::close(fd);
        std::lock_guard lock(s.mutex);
        if (closed_by_server) {
            ++t.cut_off;
            t.cut_after_s_max = std::max(t.cut_after_s_max,
                                         std::chrono::duration<double>(clock_type::now() - opened).count());
        } else {
            ++t.held;
        }
    }
}

// ---- /health poller and memory sampler ---------------------------------------------------------------
struct health_tally {
    long long polls = 0, ok = 0, answered_other = 0, failed = 0, over_1s = 0;
    double worst_ms = 0;
    std::vector<std::string> failures; // the first few
    long rss_start = -1, rss_end = -1, rss_max = -1;
};

void health_loop(run_state& s, soak::server_process& server, health_tally& h, long long warmup_requests,
                 double warmup_s) {
    auto next = clock_type::now();
    const std::string req = soak::make_request("GET", "/health");
    while (!s.stop) {
        const http_result r = soak::exchange(s.port, req, std::chrono::seconds(5));
        const long rss = server.rss_kib();
        std::unique_lock lock(s.mutex);
        ++h.polls;
        h.worst_ms = std::max(h.worst_ms, r.ms);
        if (r.ms > 1000) ++h.over_1s;
        if (r.how == transport::complete && r.status == 200) {
            ++h.ok;
        } else if (r.how == transport::complete) {
            ++h.answered_other;
            if (h.failures.size() < 10)
                h.failures.push_back("status " + std::to_string(r.status) + " at " +
                                     std::to_string(static_cast<int>(s.elapsed_s())) + " s");
        } else {
            ++h.failed;
            if (h.failures.size() < 10)
                h.failures.push_back(std::string(soak::transport_name(r.how)) + " at " +
                                     std::to_string(static_cast<int>(s.elapsed_s())) + " s: " + r.detail);
        }
        if (rss > 0) {
            h.rss_max = std::max(h.rss_max, rss);
            const bool warmed =
                warmup_requests > 0 ? s.finished.load() >= warmup_requests : s.elapsed_s() >= warmup_s;
            if (h.rss_start < 0 && warmed) h.rss_start = rss;
        }
        next += std::chrono::milliseconds(100);
        if (next < clock_type::now()) next = clock_type::now();
        s.cv.wait_until(lock, next, [&] { return s.stop.load(); });
    }
}

double percentile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    const std::size_t i =
        std::min(v.size() - 1, static_cast<std::size_t>(std::ceil(q * v.size())) - (q > 0 ? 1 : 0));
    return v[i];
}

// ---- setup: adapters, the server --------------------------------------------------------------------
struct setup_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

void run_tool(const options& o, const std::vector<std::string>& args, const fs::path& log) {
    if (!o.json_out) std::fprintf(stderr, "soak: lorafleet-cli %s ...\n", args[0].c_str());
    const int code = soak::run_to_completion(o.cli, args, log, std::chrono::seconds(600));
    if (code != 0)
        throw setup_error("lorafleet-cli " + args[0] + " failed (exit " + std::to_string(code) + "); see " +
                          log.string());
}

// Reads GET /v1/models: the base model (parent null) and the adapters served from the start.
void read_models(run_state& s) {
    const auto r = soak::exchange(s.port, soak::make_request("GET", "/v1/models"), std::chrono::seconds(30));
    const json j = r.how == transport::complete ? json::parse(r.body, nullptr, false) : json();
    if (r.status != 200 || !j.is_object() || !j.contains("data") || !j["data"].is_array())
        throw setup_error("GET /v1/models did not answer a model list");
    for (const auto& m : j["data"]) {
        const std::string id = m.value("id", "");
        if (m.contains("parent") && m["parent"].is_null())
            s.base_name = id;
        else
            s.bank_adapters.push_back(id);
    }
    if (s.base_name.empty()) throw setup_error("GET /v1/models lists no base model");
}

tally total_of(const run_state& s, bool include_adapter_ops) {
    tally t;
    for (int k = 0; k < k_count; ++k)
        if (include_adapter_ops || k < k_adapter_add) t.add(s.kinds[k]);
    return t;
}

json tally_json(const tally& t) {
    return {{"sent", t.sent},
            {"ok", t.ok},
            {"clear_error", t.clear_error},
            {"client_aborted", t.aborted},
            {"lost", t.lost},
            {"unclear", t.unclear},
            {"p50_ms", percentile(t.ok_ms, 0.5)},
            {"p99_ms", percentile(t.ok_ms, 0.99)}};
}

json hostile_json(const hostile_tally& t) {
    return {{"connections", t.connections}, {"answered", t.answered},
            {"cut_off", t.cut_off},         {"held", t.held},
            {"connect_failed", t.failed},   {"cut_after_s_max", t.cut_after_s_max}};
}

} // namespace

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    run_state s;
    s.opt = parse_options(argc, argv);
    const options& o = s.opt;
    std::error_code ec;
    if (!fs::is_regular_file(o.cli, ec)) usage("--cli: no such file " + o.cli.string());
    if (!fs::is_directory(o.model, ec)) usage("--model: no such folder " + o.model.string());

    // The work folder: given, or a fresh temporary one removed after a clean run.
    fs::path work = o.work;
    bool own_work = false;
    if (work.empty()) {
        std::string tmpl = (fs::temp_directory_path() / "lorafleet-soak-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) {
            std::fprintf(stderr, "bench_soak_serve: cannot create a temporary folder\n");
            return 1;
        }
        work = tmpl;
        own_work = true;
    } else {
        fs::create_directories(work, ec);
    }
    work = fs::absolute(work);
    const fs::path tool_log = work / "tools.log";
    const fs::path serve_log = work / "serve.log";

    json report;
    soak::server_process server;
    health_tally health;
    hostile_tally slow, idle;
    soak::exit_info exit{};
    bool crashed = false;
    double run_s = 0;
    try {
        // Adapters: a synthetic fleet on the model's geometry, compressed into a bank (unless given), and
        // a few more folders that the adapter thread adds and removes while serving.
        const std::string geometry = (o.model / "config.json").string();
        std::vector<std::string> serve_args = {"serve", "--model", o.model.string(), "--port",
                                               std::to_string(o.port)};
        if (!o.adapters.empty()) {
            serve_args.insert(serve_args.end(), {"--adapters", o.adapters.string()});
        } else {
            fs::path bank = o.bank;
            if (bank.empty()) {
                bank = work / "bank";
                if (!fs::exists(bank / "manifest.json") && !fs::exists(bank)) {
                    fs::remove_all(work / "fleet", ec);
                    run_tool(o,
                             {"synth", "--out", (work / "fleet").string(), "--adapters", "64", "--geometry",
                              geometry, "--clusters", "4", "--rank", "8", "--seed", "3"},
                             tool_log);
                    run_tool(o,
                             {"compress", (work / "fleet").string(), "--out", bank.string(), "--rank", "8",
                              "--clusters", "4", "--device", "cpu", "--overwrite"},
                             tool_log);
                }
            }
            serve_args.insert(serve_args.end(), {"--bank", bank.string()});
        }
        const fs::path live_root = work / "live";
        if (!fs::exists(live_root / "adapter-0007")) {
            fs::remove_all(live_root, ec);
            run_tool(o,
                     {"synth", "--out", live_root.string(), "--adapters", "8", "--geometry", geometry,
                      "--rank", "8", "--seed", "7"},
                     tool_log);
        }
        for (int i = 0; i < 8; ++i) {
            char folder[32];
            std::snprintf(folder, sizeof folder, "adapter-%04d", i);
            s.live.emplace_back("live-" + std::to_string(i), live_root / folder);
        }
        // The rewritten server refuses live adds outside --adapter-root (a required flag there).
        s.adapter_root =
            soak::capture_output(o.cli, {"serve", "--help"}).find("--adapter-root") != std::string::npos;
        if (s.adapter_root) serve_args.insert(serve_args.end(), {"--adapter-root", live_root.string()});
        serve_args.insert(serve_args.end(), o.serve_args.begin(), o.serve_args.end());

        server.start(o.cli, serve_args, serve_log, std::chrono::seconds(180));
        s.port = server.port();
        const auto ready_by = clock_type::now() + std::chrono::seconds(60);
        for (;;) {
            const auto r =
                soak::exchange(s.port, soak::make_request("GET", "/health"), std::chrono::seconds(5));
            if (r.how == transport::complete && r.status == 200) break;
            if (clock_type::now() > ready_by) throw setup_error("GET /health did not answer 200 within 60 s");
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        read_models(s);
        if (!o.json_out)
            std::fprintf(stderr,
                         "soak: server pid %d on port %d, %zu adapters, --adapter-root %s; %d clients\n",
                         static_cast<int>(server.pid()), s.port, s.bank_adapters.size(),
                         s.adapter_root ? "passed" : "not supported", o.clients);

        // The run.
        s.start = clock_type::now();
        const long long warmup_requests = o.requests > 0 ? std::max(1ll, o.requests / 10) : 0;
        std::vector<std::thread> others, clients;
        others.emplace_back([&] { health_loop(s, server, health, warmup_requests, o.duration_s / 10); });
        others.emplace_back([&] { adapter_loop(s); });
        for (int i = 0; i < o.slow_connections; ++i)
            others.emplace_back([&, i] { slow_header_loop(s, i, slow); });
        for (int i = 0; i < o.idle_connections; ++i)
            others.emplace_back([&] { idle_loop(s, idle); });
        std::atomic<int> clients_running{o.clients};
        for (int i = 0; i < o.clients; ++i)
            clients.emplace_back([&, i] {
                client_loop(s, i);
                clients_running.fetch_sub(1);
            });
        auto last_progress = clock_type::now();
        auto last_change = clock_type::now();
        long long last_finished = 0;
        bool stall_reported = false;
        while (clients_running.load() > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            // Nothing answered for 10 s while clients wait: say so when it happens (the requests will be
            // counted lost at their timeout).
            if (s.finished.load() != last_finished) {
                last_finished = s.finished.load();
                last_change = clock_type::now();
                stall_reported = false;
            } else if (!stall_reported && clock_type::now() - last_change > std::chrono::seconds(10)) {
                stall_reported = true;
                std::fprintf(stderr,
                             "soak: %5.0f s  no request has finished for 10 s (server pid %d stalled?)\n",
                             s.elapsed_s(), static_cast<int>(server.pid()));
                // The server's thread stacks, for whoever fixes it (when gdb is installed).
                const fs::path gdb = "/usr/bin/gdb";
                if (fs::exists(gdb, ec)) {
                    const fs::path stacks = work / "stall-stacks.txt";
                    soak::run_to_completion(
                        gdb, {"-p", std::to_string(server.pid()), "-batch", "-ex", "thread apply all bt 30"},
                        stacks, std::chrono::seconds(60));
                    std::fprintf(stderr, "soak: the server's thread stacks are in %s\n", stacks.c_str());
                }
            }
            soak::exit_info e;
            if (!crashed && server.has_exited(e)) {
                crashed = true;
                exit = e;
                std::fprintf(stderr,
                             "soak: the server died during the run (exit code %d, signal %d); see %s\n",
                             e.code, e.signal, serve_log.c_str());
                std::lock_guard lock(s.mutex);
                s.stop = true;
                s.cv.notify_all();
            }
            if (clock_type::now() - last_progress > std::chrono::seconds(15)) {
                last_progress = clock_type::now();
                std::lock_guard lock(s.mutex);
                const tally t = total_of(s, true);
                std::fprintf(
                    stderr,
                    "soak: %5.0f s  %lld requests (200: %lld, clear error: %lld, aborted: %lld, lost: %lld, "
                    "unclear: %lld)  /health worst %.0f ms  RSS %.1f MiB\n",
                    s.elapsed_s(), t.sent, t.ok, t.clear_error, t.aborted, t.lost, t.unclear, health.worst_ms,
                    static_cast<double>(server.rss_kib()) / 1024.0);
            }
        }
        for (auto& t : clients)
            t.join();
        run_s = s.elapsed_s();
        {
            std::lock_guard lock(s.mutex);
            health.rss_end = server.rss_kib();
            if (health.rss_start < 0) health.rss_start = health.rss_end;
            s.stop = true;
            s.cv.notify_all();
        }
        for (auto& t : others)
            t.join();
        if (!crashed) exit = server.terminate(std::chrono::seconds(o.shutdown_timeout_s));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_soak_serve: %s (work folder kept: %s)\n", e.what(), work.c_str());
        return 1;
    }

    // ---- report -------------------------------------------------------------------------------------
    const tally all = total_of(s, true);
    const tally mix = total_of(s, false);
    const bool exit_ok = !crashed && exit.exited && exit.code == 0 && !exit.timed_out;
    const double rss_growth = health.rss_start > 0
                                  ? static_cast<double>(health.rss_end - health.rss_start) / health.rss_start
                                  : 0.0;
    const bool passed = all.lost == 0 && all.unclear == 0 && exit_ok;

    report["duration_s"] = run_s;
    report["requests_per_s"] = run_s > 0 ? static_cast<double>(all.sent) / run_s : 0.0;
    report["clients"] = o.clients;
    report["adapter_root"] = s.adapter_root;
    report["adapters"] = s.bank_adapters.size();
    report["requests"] = tally_json(all);
    report["client_requests"] = tally_json(mix);
    for (int k = 0; k < k_count; ++k)
        report["kinds"][kind_names[k]] = tally_json(s.kinds[k]);
    report["health"] = {
        {"polls", health.polls},       {"ok", health.ok},           {"answered_other", health.answered_other},
        {"unanswered", health.failed}, {"over_1s", health.over_1s}, {"worst_ms", health.worst_ms},
        {"failures", health.failures}};
    report["rss_kib"] = {{"start", health.rss_start}, {"end", health.rss_end}, {"max", health.rss_max}};
    report["rss_growth"] = rss_growth;
    report["slow_header"] = hostile_json(slow);
    report["idle"] = hostile_json(idle);
    report["server"] = {{"crashed", crashed},
                        {"exited", exit.exited},
                        {"exit_code", exit.code},
                        {"signal", exit.signal},
                        {"shutdown_timed_out", exit.timed_out},
                        {"shutdown_s", exit.seconds}};
    report["problems"] = s.problems;
    report["problem_count"] = s.problem_count;
    report["passed"] = passed;
    report["work"] = work.string();

    if (o.json_out) {
        std::printf("%s\n", report.dump(2).c_str());
    } else {
        std::printf(
            "soak: %.0f s (%.0f requests/s), %d clients, %zu bank adapters + 8 live, --adapter-root %s\n\n",
            run_s, run_s > 0 ? static_cast<double>(all.sent) / run_s : 0.0, o.clients, s.bank_adapters.size(),
            s.adapter_root ? "yes" : "no");
        std::printf("%-20s %9s %9s %11s %9s %6s %8s %9s %9s\n", "kind", "sent", "200", "clear err", "aborted",
                    "lost", "unclear", "p50 ms", "p99 ms");
        auto row = [](const char* name, const tally& t) {
            std::printf("%-20s %9lld %9lld %11lld %9lld %6lld %8lld %9.1f %9.1f\n", name, t.sent, t.ok,
                        t.clear_error, t.aborted, t.lost, t.unclear, percentile(t.ok_ms, 0.5),
                        percentile(t.ok_ms, 0.99));
        };
        for (int k = 0; k < k_count; ++k)
            row(kind_names[k], s.kinds[k]);
        row("total", all);
        std::printf(
            "\n/health: %lld polls, %lld answered 200, %lld answered other, %lld unanswered, %lld over 1 s, "
            "worst %.0f ms\n",
            health.polls, health.ok, health.answered_other, health.failed, health.over_1s, health.worst_ms);
        std::printf("RSS: start %.1f MiB (after warm-up), end %.1f MiB, max %.1f MiB, growth %+.1f%%\n",
                    health.rss_start / 1024.0, health.rss_end / 1024.0, health.rss_max / 1024.0,
                    100 * rss_growth);
        std::printf("slow-header connections: %lld (answered %lld, cut off by the server %lld)\n",
                    slow.connections, slow.answered, slow.cut_off);
        std::printf(
            "idle connections: %lld (held 20 s %lld, closed by the server %lld, latest after %.1f s)\n",
            idle.connections, idle.held, idle.cut_off, idle.cut_after_s_max);
        if (crashed)
            std::printf("server: CRASHED during the run (exit code %d, signal %d)\n", exit.code, exit.signal);
        else
            std::printf("server: SIGTERM -> %s in %.1f s\n",
                        exit.timed_out ? "did NOT exit (killed)"
                        : exit.exited  ? ("exit " + std::to_string(exit.code)).c_str()
                                       : ("signal " + std::to_string(exit.signal)).c_str(),
                        exit.seconds);
        for (const auto& p : s.problems)
            std::printf("  %s\n", p.c_str());
        if (s.problem_count > static_cast<long long>(s.problems.size()))
            std::printf("  ... %lld more\n", s.problem_count - static_cast<long long>(s.problems.size()));
        for (const auto& f : health.failures)
            std::printf("  /health: %s\n", f.c_str());
        std::printf("bar: lost 0 %s, worst /health < 1 s %s, RSS growth < 10%% %s, >= 100000 requests %s\n",
                    all.lost == 0 ? "met" : "NOT met", health.worst_ms < 1000 ? "met" : "NOT met",
                    rss_growth < 0.10 ? "met" : "NOT met", all.sent >= 100000 ? "met" : "NOT met");
        std::printf("%s\n", passed ? "PASS" : "FAIL");
    }
    if (passed && own_work)
        fs::remove_all(work, ec);
    else if (!passed)
        std::fprintf(stderr, "soak: server log kept in %s\n", serve_log.c_str());
    return passed ? 0 : 1;
}
