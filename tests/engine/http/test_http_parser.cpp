// HTTP layer without sockets: the strict request parser (request line, header fields, Content-Length and
// chunked bodies, every smuggling shape refused with the documented status, byte-at-a-time feeding equal
// to one-piece feeding, pipelined requests left for the next parse), body decoding (gzip / deflate
// inflated, a bomb stopped at the limit on decoded bytes, corrupt data refused), the /health verdict, the
// response wire format, and the handler pool (every job runs exactly once under concurrent posts, with a
// watchdog).
#include "engine/api/http_server.hpp"
#include "engine/http/body_decoding.hpp"
#include "engine/http/handler_pool.hpp"
#include "engine/http/request_parser.hpp"
#include "engine/http/response.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"

#include <QtTest/QtTest>

#include <zlib.h>

#include <atomic>
#include <future>
#include <thread>

using namespace lorafleet;
using namespace lorafleet::http;

namespace {

struct parsed {
    parse_status status = parse_status::need_more;
    int error = 0;
    std::string message;
    request_head head;
    std::string body;
    std::size_t used = 0;
};

// Feeds `bytes` (in pieces of `step`, 0 = all at once), reading the body after the head.
parsed parse(const std::string& bytes, std::size_t step = 0, parser_limits limits = {}) {
    request_parser p(limits);
    parsed out;
    std::size_t pos = 0;
    while (pos < bytes.size()) {
        const std::size_t n = step == 0 ? bytes.size() - pos : std::min(step, bytes.size() - pos);
        std::string_view piece(bytes.data() + pos, n);
        std::size_t used = p.feed(piece);
        if (p.status() == parse_status::head_done) {
            out.head = p.head();
            p.read_body();
            used += p.feed(piece.substr(used));
        }
        pos += used;
        if (p.status() == parse_status::complete || p.status() == parse_status::failed) break;
        if (used < n && p.status() == parse_status::need_more) break; // cannot happen: all consumed
    }
    if (p.status() == parse_status::head_done) p.read_body();
    out.status = p.status();
    out.error = p.error_status();
    out.message = p.error_message();
    if (out.head.method.empty()) out.head = p.head();
    out.body = p.take_body();
    out.used = pos;
    return out;
}

std::string gzip(const std::string& data, int window_bits = 16 + 15) {
    z_stream zs{};
    deflateInit2(&zs, 9, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY);
    std::string out(deflateBound(&zs, data.size()) + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

} // namespace

class TestHttpParser : public QObject {
    Q_OBJECT

private slots:
    void a_simple_get_parses_at_once_and_byte_by_byte() {
        const std::string req = "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-Thing:  two words \r\n\r\n";
        for (std::size_t step : {std::size_t(0), std::size_t(1), std::size_t(7)}) {
            const auto r = parse(req, step);
            QCOMPARE(int(r.status), int(parse_status::complete));
            QCOMPARE(r.head.method, std::string("GET"));
            QCOMPARE(r.head.path, std::string("/v1/models"));
            QCOMPARE(r.head.query, std::string("x=1"));
            QCOMPARE(std::string(r.head.header("x-thing")), std::string("two words"));
            QCOMPARE(r.used, req.size());
        }
    }

    void content_length_and_chunked_bodies() {
        const auto a = parse("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 3);
        QCOMPARE(int(a.status), int(parse_status::complete));
        QCOMPARE(a.body, std::string("hello"));
        const std::string chunked = "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        for (std::size_t step : {std::size_t(0), std::size_t(1), std::size_t(4)}) {
            const auto b = parse(chunked, step);
            QCOMPARE(int(b.status), int(parse_status::complete));
            QCOMPARE(b.body, std::string("hello, world"));
            QCOMPARE(b.used, chunked.size());
        }
    }

    void pipelined_bytes_are_left_for_the_next_request() {
        const std::string one = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
        const std::string two = "GET /b HTTP/1.1\r\nHost: a\r\n\r\n";
        request_parser p;
        const std::string both = one + two;
        std::size_t used = p.feed(both);
        QCOMPARE(int(p.status()), int(parse_status::head_done));
        p.read_body();
        QCOMPARE(int(p.status()), int(parse_status::complete));
        QCOMPARE(used, one.size());
        QCOMPARE(p.head().path, std::string("/a"));
        p.reset();
        used += p.feed(std::string_view(both).substr(used));
        QCOMPARE(int(p.status()), int(parse_status::head_done));
        QCOMPARE(p.head().path, std::string("/b"));
        QCOMPARE(used, both.size());
    }

    void keep_alive_follows_the_version_and_connection() {
        QVERIFY(parse_keep_alive("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        QVERIFY(!parse_keep_alive("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
        QVERIFY(!parse_keep_alive("GET / HTTP/1.0\r\n\r\n"));
        QVERIFY(parse_keep_alive("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    void every_refused_shape_gets_its_status() {
        struct shape {
            const char* what;
            std::string bytes;
            int status;
        };
        const std::string big_header =
            "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n";
        std::string many = "GET / HTTP/1.1\r\nHost: a\r\n";
        for (int i = 0; i < 101; ++i)
            many += "X-" + std::to_string(i) + ": v\r\n";
        many += "\r\n";
        const std::vector<shape> shapes = {
            {"CL + TE",
             "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
            {"TE + CL",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
            {"two CLs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
            {"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", 400},
            {"CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400},
            {"CL huge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
            {"TE gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
            {"TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
            {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
            {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400},
            {"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n", 400},
            {"bare LF", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400},
            {"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400},
            {"no host", "GET / HTTP/1.1\r\n\r\n", 400},
            {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
            {"garbage", "\x16\x03\x01 junk\r\n\r\n", 400},
            {"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
            {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
            {"no version", "GET /\r\nHost: a\r\n\r\n", 400},
            {"absolute form", "GET http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
            {"control char", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n"), 400},
            {"POST no length", "POST /v1/completions HTTP/1.1\r\nHost: a\r\n\r\n", 411},
            {"body too large", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000000\r\n\r\n", 413},
            {"Expect other", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: magic\r\n\r\n", 417},
            {"long URI", "GET /" + std::string(9000, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
            {"big header", big_header, 431},
            {"many headers", many, 431},
            {"chunk size junk",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n", 400},
            {"chunk no hex",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", 400},
            {"chunk overlong",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400},
            {"chunk huge",
             "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400},
            {"chunk over limit", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n200000\r\n",
             413},
        };
        for (const auto& s : shapes) {
            for (std::size_t step : {std::size_t(0), std::size_t(1)}) {
                const auto r = parse(s.bytes, step);
                if (r.status != parse_status::failed || r.error != s.status)
                    qWarning("%s (step %zu): status %d error %d '%s'", s.what, step, int(r.status), r.error,
                             r.message.c_str());
                QCOMPARE(int(r.status), int(parse_status::failed));
                QCOMPARE(r.error, s.status);
                QVERIFY(!r.message.empty());
            }
        }
    }

    void limits_are_on_bytes_not_reads() {
        // A header section just under the limit passes; one byte over fails, however it is split.
        parser_limits l;
        l.max_head_bytes = 200;
        const std::string start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
        const std::string fits = start + std::string(200 - start.size() - 4, 'v') + "\r\n\r\n";
        QCOMPARE(fits.size(), std::size_t(200));
        QCOMPARE(int(parse(fits, 0, l).status), int(parse_status::complete));
        QCOMPARE(int(parse(fits, 1, l).status), int(parse_status::complete));
        const std::string over = start + std::string(200 - start.size() - 3, 'v') + "\r\n\r\n";
        QCOMPARE(parse(over, 0, l).error, 431);
        QCOMPARE(parse(over, 5, l).error, 431);
    }

    void gzip_and_deflate_bodies_inflate() {
        const std::string text = R"({"model":"m","prompt":"hello hello hello"})";
        for (const auto& [enc, window] : std::vector<std::pair<std::string, int>>{
                 {"gzip", 16 + 15}, {"x-gzip", 16 + 15}, {"deflate", 15}, {"DEFLATE", -15}}) {
            std::string body = gzip(text, window);
            QVERIFY(body != text);
            const auto c = parse_content_encoding(enc);
            const auto r = decode_body(body, c, 1 << 20);
            QCOMPARE(r.status, 0);
            QCOMPARE(body, text);
        }
        QCOMPARE(int(parse_content_encoding("")), int(coding::identity));
        QCOMPARE(int(parse_content_encoding("br")), int(coding::unsupported));
        QCOMPARE(int(parse_content_encoding("gzip, gzip")), int(coding::unsupported));
    }

    void a_gzip_bomb_stops_at_the_decoded_limit() {
        // 64 MiB of zeros compress to ~64 KiB; the limit is 1 MiB of decoded bytes.
        const std::string bomb = gzip(std::string(64u << 20, '\0'));
        QVERIFY(bomb.size() < (200u << 10));
        std::string body = bomb;
        const auto r = decode_body(body, coding::gzip, 1 << 20);
        QCOMPARE(r.status, 413);
        QCOMPARE(body, bomb); // untouched on failure
        // Just at the limit is fine.
        std::string exact = gzip(std::string(1 << 20, 'z'));
        QCOMPARE(decode_body(exact, coding::gzip, 1 << 20).status, 0);
        QCOMPARE(exact.size(), std::size_t(1 << 20));
    }

    void corrupt_or_truncated_compressed_bodies_are_400() {
        std::string good = gzip("some text that is long enough to compress somewhat, some text");
        std::string truncated = good.substr(0, good.size() / 2);
        QCOMPARE(decode_body(truncated, coding::gzip, 1 << 20).status, 400);
        std::string garbage = "this is not gzip at all";
        QCOMPARE(decode_body(garbage, coding::gzip, 1 << 20).status, 400);
        std::string trailing = good + "junk";
        QCOMPARE(decode_body(trailing, coding::gzip, 1 << 20).status, 400);
    }

    void health_verdict() {
        serve::engine_health h;
        QCOMPARE(int(api::judge_health(h, false, 30)), int(api::health_verdict::ok));
        QCOMPARE(int(api::judge_health(h, true, 30)), int(api::health_verdict::draining));
        h.pending = 3;
        h.since_progress_s = 29;
        QCOMPARE(int(api::judge_health(h, false, 30)), int(api::health_verdict::ok));
        h.since_progress_s = 31;
        QCOMPARE(int(api::judge_health(h, false, 30)), int(api::health_verdict::engine_stalled));
        h.pending = 0; // an idle engine makes no progress and is fine
        QCOMPARE(int(api::judge_health(h, false, 30)), int(api::health_verdict::ok));
        h.stopped = true;
        QCOMPARE(int(api::judge_health(h, false, 30)), int(api::health_verdict::engine_stalled));
    }

    void response_wire_format() {
        response r;
        r.status = 429;
        r.content_type = "application/json";
        r.body = "{}";
        r.headers = {{"Retry-After", "1"}};
        const std::string w = serialize(r, true, 1);
        QVERIFY(w.rfind("HTTP/1.1 429 Too Many Requests\r\n", 0) == 0);
        QVERIFY(w.find("\r\nContent-Length: 2\r\n") != std::string::npos);
        QVERIFY(w.find("\r\nRetry-After: 1\r\n") != std::string::npos);
        QVERIFY(w.find("Connection: close") == std::string::npos);
        QVERIFY(w.size() > 4 && w.substr(w.size() - 6) == "\r\n\r\n{}");
        QVERIFY(serialize(r, false, 1).find("\r\nConnection: close\r\n") != std::string::npos);
        const std::string s = serialize_head(200, "text/event-stream", {}, -1, true, 1);
        QVERIFY(s.find("Transfer-Encoding: chunked") != std::string::npos);
        QCOMPARE(chunk("hello"), std::string("5\r\nhello\r\n"));
        QCOMPARE(chunk(std::string(26, 'x')).substr(0, 4), std::string("1a\r\n"));
        QCOMPARE(chunk(""), std::string());
    }

    void handler_pool_runs_every_job_once() {
        // 8 threads post 2000 jobs each into a pool of 4; every job runs exactly once; a watchdog bounds
        // the wait.
        std::vector<std::atomic<int>> runs(16000);
        handler_pool pool(4);
        std::atomic<int> refused{0};
        std::vector<std::thread> posters;
        for (int t = 0; t < 8; ++t)
            posters.emplace_back([&, t] {
                for (int i = 0; i < 2000; ++i)
                    if (!pool.post([&runs, k = t * 2000 + i] { runs[static_cast<std::size_t>(k)]++; }))
                        ++refused;
            });
        for (auto& t : posters)
            t.join();
        QCOMPARE(refused.load(), 0);
        QVERIFY(pool.threads() >= 1 && pool.threads() <= 4);
        auto stopped = std::async(std::launch::async, [&] { pool.stop(); });
        QVERIFY(stopped.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
        for (auto& r : runs)
            QCOMPARE(r.load(), 1);
        QVERIFY(!pool.post([] {})); // stopped
    }

    void handler_pool_grows_only_while_jobs_block() {
        handler_pool pool(3);
        std::promise<void> release;
        auto gate = release.get_future().share();
        std::atomic<int> started{0};
        for (int i = 0; i < 5; ++i)
            pool.post([&, gate] {
                ++started;
                gate.wait();
            });
        QElapsedTimer t;
        t.start();
        while (started < 3 && t.elapsed() < 10000)
            QThread::msleep(5);
        QCOMPARE(started.load(), 3); // three threads, the other two jobs wait
        QThread::msleep(100);
        QCOMPARE(started.load(), 3);
        release.set_value();
        pool.stop();
        QCOMPARE(started.load(), 5);
        QCOMPARE(pool.threads(), std::size_t(0));
    }

private:
    static bool parse_keep_alive(const std::string& bytes) {
        request_parser p;
        p.feed(bytes);
        return p.keep_alive();
    }
};

QTEST_GUILESS_MAIN(TestHttpParser)
#include "test_http_parser.moc"
