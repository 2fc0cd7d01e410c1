// HTTP server limits, live: the real server in-process on a free loopback port over the fixture model,
// spoken to with raw sockets (tests/support/http_client.hpp). Each limit is answered at once (timed with
// generous bounds): 431 / 414 for oversized heads, 411 for a POST without a length, 400 and a closed
// connection for every smuggling shape (the smuggled request is never answered), 413 for a gzip bomb with
// the process's peak memory bounded, 415 for an unknown encoding, 401 before a compressed body is read;
// pipelined requests get their answers in order; 40 trickling and 200 idle connections do not slow
// /health (< 1 s) and are cut off (408 / closed); the excess over max_connections gets 503; with the
// engine stuck, /health, /metrics and /v1/models still answer under 1 s, /health turns engine_stalled,
// completions beyond max_in_flight get 429 + Retry-After, and a client that hangs up cancels its request;
// POST /v1/adapters only takes folders under --adapter-root (no roots: 403; '..', a symlinked folder or
// a symlinked file leading out: 403), an unsupported peft_type is a 400. Every wait has a timeout.
#include "engine/api/http_server.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <zlib.h>

#include <atomic>
#include <fstream>
#include <future>
#include <thread>

using namespace lorafleet;
using namespace lorafleet::serve;
using nlohmann::json;
using test::http_connection;
using test::http_reply;

namespace {

// A running server over the shared engine, stopped and joined on destruction.
struct live_server {
    std::unique_ptr<api::http_server> server;
    std::thread thread;
    int port = 0;
    live_server(serving_engine& engine, const std::filesystem::path& model, api::server_options so) {
        so.port = 0;
        server = std::make_unique<api::http_server>(engine, api::chat_template::from_model_dir(model), so);
        port = server->bind();
        thread = std::thread([this] { server->run(); });
    }
    ~live_server() {
        server->stop();
        thread.join();
    }
};

std::string error_code(const http_reply& r) {
    const json j = json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("error") || !j["error"]["code"].is_string()) return "<no error body>";
    return j["error"]["code"].get<std::string>();
}

// gzip of `zeros` zero bytes, made in 1 MiB pieces so the test itself stays small in memory.
std::string gzip_zeros(std::size_t zeros) {
    z_stream zs{};
    deflateInit2(&zs, 9, Z_DEFLATED, 16 + 15, 9, Z_DEFAULT_STRATEGY);
    const std::string block(1 << 20, '\0');
    std::string out;
    char buf[1 << 16];
    std::size_t left = zeros;
    do {
        const std::size_t n = std::min(left, block.size());
        left -= n;
        zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(block.data()));
        zs.avail_in = static_cast<uInt>(n);
        const int flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
        do {
            zs.next_out = reinterpret_cast<Bytef*>(buf);
            zs.avail_out = sizeof buf;
            deflate(&zs, flush);
            out.append(buf, sizeof buf - zs.avail_out);
        } while (zs.avail_out == 0);
    } while (left > 0);
    deflateEnd(&zs);
    return out;
}

std::string gzip_text(const std::string& text) {
    z_stream zs{};
    deflateInit2(&zs, 6, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
    std::string out(deflateBound(&zs, text.size()) + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
    zs.avail_in = static_cast<uInt>(text.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

// Peak resident memory of this process in KiB (VmHWM).
long peak_rss_kib() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
    return -1;
}

double seconds_since(const QElapsedTimer& t) {
    return t.nsecsElapsed() / 1e9;
}

} // namespace

class TestHttpLimits : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    std::filesystem::path m_model, m_root, m_outside;
    std::shared_ptr<const model_weights> m_weights;
    std::shared_ptr<const Tokenizer> m_tokenizer;
    std::unique_ptr<serving_engine> m_engine;

    api::server_options quick() const {
        api::server_options so;
        so.max_request_bytes = 1 << 20;
        so.header_timeout_ms = 4000;
        so.idle_timeout_ms = 3000;
        so.body_timeout_ms = 4000;
        return so;
    }

    // Sends raw bytes on a fresh connection and reads one response; `seconds` is how long that took.
    http_reply exchange_raw(int port, const std::string& bytes, double* seconds = nullptr,
                            bool* closed_after = nullptr) {
        http_connection c(port, 10000);
        QElapsedTimer t;
        t.start();
        c.send(bytes);
        http_reply r = c.read_response();
        if (seconds) *seconds = seconds_since(t);
        if (closed_after) *closed_after = c.closed_by_server(3000);
        return r;
    }

    std::string completion_post(const std::string& body, const std::string& extra_headers = {}) {
        return "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n" +
               extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    }

private slots:
    void initTestCase() {
        LORAFLEET_REQUIRE_FIXTURES();
        QVERIFY(m_tmp.isValid());
        m_model = test::fixtures_dir() / "models/tinystories-656k";
        const std::filesystem::path tmp = m_tmp.path().toStdString();
        m_root = tmp / "root";
        m_outside = tmp / "outside";
        const auto geometry = io::read_hf_config(m_model / "config.json");
        const auto spec = test::crafted_llama_adapter(geometry, {"q_proj", "v_proj"}, 4, 8);
        test::write_crafted_adapter(tmp / "fleet" / "ad-a", spec);
        test::write_crafted_adapter(m_root / "good", spec);
        test::write_crafted_adapter(m_root / "ia3", spec);
        test::write_crafted_adapter(m_outside / "secret", spec);
        {
            // The same adapter, but declared as another PEFT type.
            const auto cfg = m_root / "ia3" / "adapter_config.json";
            std::ifstream in(cfg);
            json j = json::parse(in);
            in.close();
            j["peft_type"] = "IA3";
            std::ofstream(cfg) << j.dump();
        }
        std::filesystem::create_directory_symlink(m_outside / "secret", m_root / "escape");
        std::filesystem::create_directories(m_root / "mixed");
        for (const auto& e : std::filesystem::directory_iterator(m_outside / "secret"))
            std::filesystem::create_symlink(e.path(), m_root / "mixed" / e.path().filename());

        m_weights = model_weights::load(m_model);
        m_tokenizer = load_tokenizer(m_model);
        auto provider = open_raw_provider({tmp / "fleet"}, m_weights->geometry(), 64ull << 20);
        engine_options eo;
        eo.kv_cache_bytes = 64ull << 20;
        eo.threads = 1;
        m_engine = std::make_unique<serving_engine>(m_weights, m_tokenizer, std::move(provider), eo);
    }

    void cleanupTestCase() {
        if (m_engine) m_engine->shutdown(false);
    }

    void oversized_heads_get_431_or_414_at_once() {
        live_server s(*m_engine, m_model, quick());
        double took = 0;
        bool closed = false;
        const std::string huge =
            "GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(300 << 10, 'a') + "\r\n\r\n";
        const auto r = exchange_raw(s.port, huge, &took, &closed);
        QCOMPARE(r.status, 431);
        QCOMPARE(error_code(r), std::string("headers_too_large"));
        QVERIFY2(took < 2.0, std::to_string(took).c_str());
        QVERIFY(closed);
        std::string many = "GET /health HTTP/1.1\r\nHost: a\r\n";
        for (int i = 0; i < 500; ++i)
            many += "X-" + std::to_string(i) + ": v\r\n";
        QCOMPARE(exchange_raw(s.port, many + "\r\n").status, 431);
        const auto uri =
            exchange_raw(s.port, "GET /" + std::string(20000, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n", &took);
        QCOMPARE(uri.status, 414);
        QVERIFY(took < 2.0);
        const auto garbage = exchange_raw(s.port, "\x16\x03\x01 hello\r\n\r\n", &took, &closed);
        QCOMPARE(garbage.status, 400);
        QVERIFY(took < 2.0 && closed);
        // And the server is fine.
        test::http_client c(s.port);
        QCOMPARE(c.get("/health").status, 200);
    }

    void a_post_without_length_gets_411_at_once() {
        live_server s(*m_engine, m_model, quick());
        double took = 0;
        const auto r = exchange_raw(s.port, "POST /v1/completions HTTP/1.1\r\nHost: a\r\n\r\n", &took);
        QCOMPARE(r.status, 411);
        QCOMPARE(error_code(r), std::string("length_required"));
        QVERIFY2(took < 1.0, std::to_string(took).c_str());
    }

    void smuggling_shapes_get_400_and_the_connection_closes() {
        live_server s(*m_engine, m_model, quick());
        const std::string next = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
        const std::vector<std::string> shapes = {
            "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
            "chunked\r\n\r\n"
            "0\r\n\r\n",
            "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
            "POST /v1/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
            "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "POST /v1/completions HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
            "chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
            "GET /health HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello",
        };
        for (const auto& shape : shapes) {
            http_connection c(s.port, 10000);
            QElapsedTimer t;
            t.start();
            QVERIFY(c.send(shape + next));
            const auto r = c.read_response();
            QCOMPARE(r.status, 400);
            QVERIFY(seconds_since(t) < 2.0);
            QCOMPARE(r.header("connection"), std::string("close"));
            // The request after the ambiguous one is never answered: the connection is gone.
            QVERIFY(c.closed_by_server(3000));
        }
    }

    void compressed_bodies_inflate_and_a_bomb_gets_413_in_bounded_memory() {
        live_server s(*m_engine, m_model, quick());
        const std::string plain =
            R"({"model":"tinystories-656k","prompt":"Once upon a time","max_tokens":6})";
        test::http_client c(s.port);
        const auto expected = c.post("/v1/completions", plain);
        QCOMPARE(expected.status, 200);
        const auto zipped =
            exchange_raw(s.port, completion_post(gzip_text(plain), "Content-Encoding: gzip\r\n"));
        QCOMPARE(zipped.status, 200);
        QCOMPARE(json::parse(zipped.body)["choices"][0]["text"],
                 json::parse(expected.body)["choices"][0]["text"]);
        QCOMPARE(exchange_raw(s.port, completion_post(plain, "Content-Encoding: br\r\n")).status, 415);

        // 512 MiB of zeros in ~500 KiB: inflating it all would add 512 MiB to the peak.
        const std::string bomb = gzip_zeros(512u << 20);
        QVERIFY(bomb.size() < (1u << 20));
        { std::ofstream("/proc/self/clear_refs") << "5"; } // reset VmHWM where the kernel allows it
        const long before = peak_rss_kib();
        double took = 0;
        const auto r = exchange_raw(s.port, completion_post(bomb, "Content-Encoding: gzip\r\n"), &took);
        const long after = peak_rss_kib();
        qInfo("gzip bomb (%zu bytes inflating to 512 MiB): HTTP %d in %.3f s, peak RSS %ld -> %ld KiB",
              bomb.size(), r.status, took, before, after);
        QCOMPARE(r.status, 413);
        QCOMPARE(error_code(r), std::string("request_too_large"));
        QVERIFY2(after - before < 64 * 1024,
                 (std::to_string(before) + " -> " + std::to_string(after)).c_str());
        QVERIFY(took < 5.0);
    }

    void the_key_is_checked_before_a_body_is_read() {
        auto so = quick();
        so.api_key = "k-123";
        live_server s(*m_engine, m_model, so);
        // Headers only: a gzip body of 500000 bytes is announced but never sent.
        const std::string head = "POST /v1/completions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer wrong\r\n"
                                 "Content-Encoding: gzip\r\nContent-Length: 500000\r\n\r\n";
        double took = 0;
        bool closed = false;
        const auto r = exchange_raw(s.port, head, &took, &closed);
        QCOMPARE(r.status, 401);
        QCOMPARE(error_code(r), std::string("invalid_api_key"));
        QVERIFY(took < 1.0);
        QVERIFY(closed); // the body was not consumed: the connection cannot carry another request
        // With the right key the server waits for that body instead of answering.
        http_connection ok(s.port, 1500);
        ok.send("POST /v1/completions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k-123\r\n"
                "Content-Encoding: gzip\r\nContent-Length: 500000\r\n\r\n");
        QCOMPARE(ok.read_response().status, -1); // timed out waiting
        // /health needs no key.
        QCOMPARE(exchange_raw(s.port, "GET /health HTTP/1.1\r\nHost: a\r\n\r\n").status, 200);
    }

    void pipelined_requests_are_answered_in_order() {
        live_server s(*m_engine, m_model, quick());
        const std::string body = R"({"model":"tinystories-656k","prompt":"Once","max_tokens":3})";
        http_connection c(s.port, 20000);
        QVERIFY(c.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n" + completion_post(body) +
                       "GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n" +
                       "GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"));
        const auto a = c.read_response();
        const auto b = c.read_response();
        const auto d = c.read_response();
        const auto e = c.read_response();
        QCOMPARE(a.status, 200);
        QCOMPARE(json::parse(a.body)["status"], json("ok"));
        QCOMPARE(b.status, 200);
        QCOMPARE(json::parse(b.body)["object"], json("text_completion"));
        QCOMPARE(d.status, 200);
        QCOMPARE(json::parse(d.body)["object"], json("list"));
        QCOMPARE(e.status, 404);
    }

    void http_1_0_and_expect_100_continue() {
        live_server s(*m_engine, m_model, quick());
        // HTTP/1.0: no Host needed, the answer is 1.0 and the connection closes after it; a stream runs
        // until the close (no chunked coding in 1.0).
        http_connection old(s.port, 20000);
        QVERIFY(old.send("GET /health HTTP/1.0\r\n\r\n"));
        const auto h = old.read_response();
        QCOMPARE(h.status, 200);
        QVERIFY(old.closed_by_server(3000));
        const std::string body =
            R"({"model":"tinystories-656k","prompt":"Once","max_tokens":5,"stream":true})";
        http_connection streamed(s.port, 20000);
        QVERIFY(streamed.send("POST /v1/completions HTTP/1.0\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body));
        const auto st = streamed.read_response();
        QCOMPARE(st.status, 200);
        QVERIFY(st.header("transfer-encoding").empty());
        QVERIFY(st.body.size() > 14 && st.body.substr(st.body.size() - 14) == "data: [DONE]\n\n");
        // Expect: 100-continue gets "100 Continue" before the body is sent, then the answer.
        http_connection wait(s.port, 20000);
        const std::string plain = R"({"model":"tinystories-656k","prompt":"Once","max_tokens":2})";
        QVERIFY(wait.send("POST /v1/completions HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                          "Content-Length: " +
                          std::to_string(plain.size()) + "\r\n\r\n"));
        QVERIFY(!wait.closed_by_server(300)); // reads what arrived: the interim response
        QCOMPARE(wait.buffered(), std::string("HTTP/1.1 100 Continue\r\n\r\n"));
        QVERIFY(wait.send(plain));
        const auto r = wait.read_response(); // skips the 100
        QCOMPARE(r.status, 200);
    }

    void slow_and_idle_connections_do_not_starve_others() {
        live_server s(*m_engine, m_model, quick()); // header section: 4 s, idle: 3 s
        std::vector<std::unique_ptr<http_connection>> tricklers, idle;
        for (int i = 0; i < 40; ++i) {
            tricklers.push_back(std::make_unique<http_connection>(s.port, 10000));
            QVERIFY(tricklers.back()->send("GET /health HTTP/1.1\r\n"));
        }
        for (int i = 0; i < 200; ++i) {
            idle.push_back(std::make_unique<http_connection>(s.port, 10000));
            QVERIFY(idle.back()->connected());
        }
        std::atomic<bool> done{false};
        std::thread trickle([&] {
            for (int round = 0; round < 5 && !done; ++round) {
                for (auto& t : tricklers)
                    t->send("X-Slow-" + std::to_string(round) + ": v\r\n");
                for (int k = 0; k < 20 && !done; ++k)
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
        });
        double worst = 0;
        QElapsedTimer total;
        total.start();
        while (total.elapsed() < 5000) {
            test::http_client c(s.port, 10000);
            QElapsedTimer t;
            t.start();
            const auto r = c.get("/health");
            worst = std::max(worst, seconds_since(t));
            QCOMPARE(r.status, 200);
            QThread::msleep(100);
        }
        test::http_client c(s.port, 30000);
        const auto r =
            c.post("/v1/completions", R"({"model":"tinystories-656k","prompt":"Once","max_tokens":4})");
        QCOMPARE(r.status, 200);
        done = true;
        trickle.join();
        qInfo("worst /health latency with 40 trickling + 200 idle connections: %.3f s", worst);
        QVERIFY2(worst < 1.0, std::to_string(worst).c_str());
        // The tricklers were cut off with 408 (header section over 4 s); the idle ones closed.
        for (auto& t : tricklers) {
            const auto tr = t->read_response();
            QCOMPARE(tr.status, 408);
        }
        int closed = 0;
        for (auto& i : idle)
            closed += i->closed_by_server(2000) ? 1 : 0;
        QCOMPARE(closed, 200);
    }

    void the_excess_over_max_connections_gets_503() {
        auto so = quick();
        so.max_connections = 4;
        live_server s(*m_engine, m_model, so);
        std::vector<std::unique_ptr<http_connection>> held;
        for (int i = 0; i < 4; ++i) {
            held.push_back(std::make_unique<http_connection>(s.port, 5000));
            QVERIFY(held.back()->send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n"));
            QCOMPARE(held.back()->read_response().status, 200); // accepted and kept alive
        }
        http_connection extra(s.port, 5000);
        QElapsedTimer t;
        t.start();
        const auto r = extra.read_response();
        QVERIFY2(r.status == 503, r.body.c_str());
        QVERIFY(seconds_since(t) < 1.0);
        QVERIFY(extra.closed_by_server(2000));
        held.clear();
        // Room again once they are gone.
        QElapsedTimer w;
        w.start();
        int status = 0;
        while (w.elapsed() < 5000 && status != 200) {
            status = test::http_client(s.port, 5000).get("/health").status;
            if (status != 200) QThread::msleep(50);
        }
        QCOMPARE(status, 200);
    }

    void a_stuck_engine_leaves_control_routes_fast_and_fills_in_flight() {
        auto so = quick();
        so.max_in_flight = 2;
        so.stall_threshold_s = 1;
        so.send_timeout_ms = 10000;
        live_server s(*m_engine, m_model, so);
        // A request whose on_text blocks holds the engine thread: the engine is stuck.
        std::promise<void> release;
        auto gate = release.get_future().share();
        std::atomic<bool> entered{false};
        completion_request blocker;
        blocker.prompt = m_tokenizer->encode("Once", true);
        blocker.params.max_tokens = 2;
        blocker.on_text = [&, gate](std::string_view) {
            if (!entered.exchange(true)) gate.wait_for(std::chrono::seconds(60));
        };
        std::promise<completion_result> blocker_done;
        blocker.on_done = [&](const completion_result& r) { blocker_done.set_value(r); };
        m_engine->submit(std::move(blocker));
        QElapsedTimer t;
        t.start();
        while (!entered && t.elapsed() < 20000)
            QThread::msleep(5);
        QVERIFY(entered);

        const std::string body = R"({"model":"tinystories-656k","prompt":"Once upon","max_tokens":4})";
        std::vector<std::unique_ptr<http_connection>> waiting;
        for (int i = 0; i < 2; ++i) {
            waiting.push_back(std::make_unique<http_connection>(s.port, 60000));
            QVERIFY(waiting.back()->send(completion_post(body)));
        }
        t.restart();
        while (s.server->in_flight() < 2 && t.elapsed() < 10000)
            QThread::msleep(5);
        QCOMPARE(s.server->in_flight(), 2);

        double took = 0;
        const auto refused = exchange_raw(s.port, completion_post(body), &took);
        QCOMPARE(refused.status, 429);
        QCOMPARE(refused.header("retry-after"), std::string("1"));
        QCOMPARE(error_code(refused), std::string("too_many_requests"));
        QVERIFY(took < 1.0);

        test::http_client c(s.port, 10000);
        for (const char* path : {"/health", "/metrics", "/v1/models"}) {
            QElapsedTimer one;
            one.start();
            const auto r = c.get(path);
            QVERIFY2(seconds_since(one) < 1.0, path);
            QVERIFY2(r.status == 200 || (std::string(path) == "/health" && r.status == 503), path);
        }
        // Past the 1 s threshold with requests pending and no progress: engine_stalled.
        QThread::msleep(1200);
        QElapsedTimer h;
        h.start();
        const auto stalled = c.get("/health");
        QVERIFY(seconds_since(h) < 1.0);
        QCOMPARE(stalled.status, 503);
        QCOMPARE(json::parse(stalled.body)["status"], json("engine_stalled"));

        // One waiting client hangs up: its request is cancelled (at the engine's next step).
        const auto cancelled_before = m_engine->metrics().requests_cancelled;
        waiting[1]->close();
        QThread::msleep(1200); // the handler looks every 0.5 s
        release.set_value();
        QCOMPARE(blocker_done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
        const auto ok = waiting[0]->read_response();
        QCOMPARE(ok.status, 200);
        t.restart();
        while (m_engine->metrics().requests_cancelled < cancelled_before + 1 && t.elapsed() < 20000)
            QThread::msleep(20);
        QCOMPARE(m_engine->metrics().requests_cancelled, cancelled_before + 1);
        t.restart();
        while (s.server->in_flight() > 0 && t.elapsed() < 10000)
            QThread::msleep(5);
        QCOMPARE(s.server->in_flight(), 0);
        const auto healthy = c.get("/health");
        QCOMPARE(healthy.status, 200);
        QCOMPARE(json::parse(healthy.body)["status"], json("ok"));
    }

    void adapters_only_from_the_allowed_roots() {
        {
            live_server none(*m_engine, m_model, quick());
            test::http_client c(none.port);
            const auto r =
                c.post("/v1/adapters", json{{"name", "good"}, {"path", (m_root / "good").string()}}.dump());
            QCOMPARE(r.status, 403);
            QCOMPARE(error_code(r), std::string("adapter_roots_not_set"));
            QVERIFY(r.body.find("--adapter-root") != std::string::npos);
        }
        auto so = quick();
        so.adapter_roots = {m_root};
        live_server s(*m_engine, m_model, so);
        test::http_client c(s.port);
        auto add = [&](const std::string& name, const std::filesystem::path& p) {
            return c.post("/v1/adapters", json{{"name", name}, {"path", p.string()}}.dump());
        };
        const auto outside = add("secret", m_outside / "secret");
        QCOMPARE(outside.status, 403);
        QCOMPARE(error_code(outside), std::string("path_not_allowed"));
        QCOMPARE(add("dots", m_root / ".." / "outside" / "secret").status, 403);
        const auto link = add("escape", m_root / "escape"); // a symlinked folder leading out
        QCOMPARE(link.status, 403);
        QCOMPARE(error_code(link), std::string("path_not_allowed"));
        const auto files = add("mixed", m_root / "mixed"); // files symlinked from outside
        QCOMPARE(files.status, 403);
        QCOMPARE(add("relative", "root/good").status, 400);
        QCOMPARE(add("missing", m_root / "missing").status, 400);
        const auto ia3 = add("ia3", m_root / "ia3");
        QCOMPARE(ia3.status, 400);
        QCOMPARE(error_code(ia3), std::string("unsupported_adapter"));
        QVERIFY(ia3.body.find("IA3") != std::string::npos);
        const auto good = add("good", m_root / "good");
        QVERIFY2(good.status == 201, good.body.c_str());
        QCOMPARE(c.del("/v1/adapters/good").status, 200);
        // Nothing of the refused ones was added.
        const auto models = json::parse(c.get("/v1/models").body);
        QCOMPARE(models["data"].size(), std::size_t(2)); // the base model and ad-a
    }

    // Stop while 16 clients hammer the server with keep-alive, pipelined and streamed requests: every
    // wait in the layer (hand-backs, pools, drain) ends; a watchdog bounds it.
    void stop_under_load_returns() {
        for (int round = 0; round < 3; ++round) {
            auto s = std::make_unique<live_server>(*m_engine, m_model, quick());
            const int port = s->port;
            std::atomic<bool> done{false};
            std::atomic<int> answered{0};
            std::vector<std::thread> clients;
            for (int i = 0; i < 16; ++i)
                clients.emplace_back([&, i] {
                    test::http_client c(port, 10000);
                    while (!done) {
                        const bool stream = i % 4 == 0;
                        const auto r = i % 2 ? c.get("/health")
                                             : c.post("/v1/completions", json{{"model", "tinystories-656k"},
                                                                              {"prompt", "Once"},
                                                                              {"max_tokens", 8},
                                                                              {"stream", stream}}
                                                                             .dump());
                        if (r.status == 200) ++answered;
                    }
                });
            QThread::msleep(300 + 200 * round);
            auto stopped = std::async(std::launch::async, [&] { s.reset(); });
            const bool in_time = stopped.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
            done = true;
            for (auto& t : clients)
                t.join();
            QVERIFY(in_time);
            QVERIFY(answered > 0);
        }
    }

    void begin_stop_refuses_new_connections_and_drains() {
        auto so = quick();
        auto s = std::make_unique<live_server>(*m_engine, m_model, so);
        const int port = s->port;
        test::http_client c(port);
        QCOMPARE(c.get("/health").status, 200);
        s->server->begin_stop();
        QVERIFY(s->server->wait_drained(std::chrono::seconds(5)));
        QElapsedTimer t;
        t.start();
        int status = 0;
        while (t.elapsed() < 5000) {
            status = test::http_client(port, 2000).get("/health").status;
            if (status == -1) break;
            QThread::msleep(20);
        }
        QCOMPARE(status, -1); // nobody listens any more
        s.reset();
    }
};

QTEST_GUILESS_MAIN(TestHttpLimits)
#include "test_http_limits.moc"
