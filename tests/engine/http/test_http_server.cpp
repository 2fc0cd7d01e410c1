// HTTP server, live: the real server in-process on a free loopback port over the fixture model and three
// crafted raw adapters, spoken to with the test client over sockets (tests/support/http_client.hpp). Greedy
// completions for several adapters at once equal what the same engine returns when called directly; streamed
// chunks concatenate to the plain text; listings follow adapters added and removed at run time; every error
// case gets the OpenAI error body and the server keeps serving; the API key is enforced; a client that
// disconnects mid-stream cancels its request (the engine's cancelled counter moves and its batch empties);
// and a soak of 2,000 distinct requests from 16 client threads gets exactly one, matching answer per request.
#include "engine/api/http_server.hpp"
#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <atomic>
#include <future>
#include <map>
#include <set>
#include <thread>

using namespace lorafleet;
using namespace lorafleet::serve;
using nlohmann::json;

namespace {

const std::string api_key = "test-key-123";

struct direct_result {
    std::string text;
    int prompt_tokens = 0;
    int completion_tokens = 0;
    finish_reason reason = finish_reason::max_tokens;
};

struct http_reply {
    int status = 0;
    std::string body;
    std::string content_type;
};

// Every SSE "data:" payload of a stream body, in order.
std::vector<std::string> sse_payloads(const std::string& body) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < body.size()) {
        const auto end = body.find("\n\n", pos);
        if (end == std::string::npos) break;
        const std::string event = body.substr(pos, end - pos);
        pos = end + 2;
        if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    }
    return out;
}

} // namespace

class TestHttpServer : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    std::filesystem::path m_model, m_late, m_foreign;
    std::shared_ptr<const model_weights> m_weights;
    std::shared_ptr<const Tokenizer> m_tokenizer;
    std::unique_ptr<serving_engine> m_engine;
    std::unique_ptr<api::http_server> m_server;
    std::thread m_server_thread;
    int m_port = 0;
    std::string m_base;
    const std::vector<std::string> m_adapters = {"ad-a", "ad-b", "ad-c"};

    std::unique_ptr<test::http_client> client() const { return std::make_unique<test::http_client>(m_port); }
    static test::header_pairs auth(const std::string& key = api_key) {
        return {{"Authorization", "Bearer " + key}};
    }
    static http_reply reply_of(const test::http_reply& r) {
        return {r.status, r.body, r.header("content-type")};
    }

    http_reply post(test::http_client& c, const std::string& path, const std::string& body,
                    const test::header_pairs& headers = auth()) const {
        return reply_of(c.post(path, body, headers));
    }
    http_reply get(test::http_client& c, const std::string& path,
                   const test::header_pairs& headers = auth()) const {
        return reply_of(c.get(path, headers));
    }
    http_reply del(test::http_client& c, const std::string& path) const {
        return reply_of(c.del(path, auth()));
    }

    // The engine's own answer for a prompt text (greedy), bypassing HTTP.
    direct_result direct(const std::string& adapter, const std::string& text, int max_tokens,
                         bool stop_at_eos = true) {
        completion_request r;
        r.adapter = adapter == m_base ? "" : adapter;
        r.prompt = m_tokenizer->encode(text, true);
        r.params.max_tokens = max_tokens;
        r.params.stop_at_eos = stop_at_eos;
        auto promise = std::make_shared<std::promise<completion_result>>();
        auto future = promise->get_future();
        r.on_done = [promise](const completion_result& res) { promise->set_value(res); };
        m_engine->submit(std::move(r));
        const auto res = future.get();
        if (res.status != completion_status::finished)
            throw std::runtime_error("direct request failed: " + res.error);
        return {res.text, res.prompt_tokens, static_cast<int>(res.tokens.size()), res.reason};
    }

    // Asserts the status and the OpenAI error shape; returns the error object.
    json expect_error(const http_reply& r, int status, const std::string& code = {}) {
        if (r.status != status) qWarning("body: %s", r.body.c_str());
        [&] { QCOMPARE(r.status, status); }();
        const json j = json::parse(r.body, nullptr, false);
        [&] {
            QVERIFY2(j.is_object() && j.contains("error"), r.body.c_str());
            const json& e = j["error"];
            QVERIFY(e["message"].is_string() && !e["message"].get<std::string>().empty());
            QVERIFY(e["type"].is_string());
            QVERIFY(e.contains("param") && e.contains("code"));
            if (!code.empty()) QCOMPARE(e["code"], json(code));
        }();
        return j.value("error", json::object());
    }

    double metric(const std::string& name) {
        auto c = client();
        const auto r = get(*c, "/metrics");
        std::istringstream in(r.body);
        std::string line;
        while (std::getline(in, line))
            if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
        return -1;
    }

private slots:
    void initTestCase() {
        LORAFLEET_REQUIRE_FIXTURES();
        QVERIFY(m_tmp.isValid());
        m_model = test::fixtures_dir() / "models/tinystories-656k";
        const std::filesystem::path root = m_tmp.path().toStdString();
        const auto geometry = io::read_hf_config(m_model / "config.json");
        // Three adapters of different ranks and scales (so different weights), one more to add at run time.
        const int ranks[] = {2, 4, 8, 3};
        const double alphas[] = {4, 16, 8, 9};
        const std::string names[] = {"ad-a", "ad-b", "ad-c", "late"};
        for (int i = 0; i < 4; ++i) {
            const auto dir = (i < 3 ? root / "fleet" : root) / names[i];
            test::write_crafted_adapter(
                dir, test::crafted_llama_adapter(geometry, {"q_proj", "v_proj"}, ranks[i], alphas[i]));
        }
        m_late = root / "late";
        m_foreign = test::fixtures_dir() / "adapters/tinyllama-1.1b-chat-arona-ckpt75"; // another base model
        m_weights = model_weights::load(m_model);
        m_tokenizer = load_tokenizer(m_model);
        auto provider = open_raw_provider({root / "fleet"}, m_weights->geometry(), 64ull << 20);
        engine_options eo;
        eo.kv_cache_bytes = 64ull << 20;
        eo.threads = 2;
        m_engine = std::make_unique<serving_engine>(m_weights, m_tokenizer, std::move(provider), eo);
        QCOMPARE(m_engine->adapters().size(), std::size_t(3));

        api::server_options so;
        so.port = 0;
        so.api_key = api_key;
        so.max_request_bytes = 64 * 1024;
        so.http_threads = 24;
        so.adapter_roots = {root, m_foreign.parent_path()};
        m_server =
            std::make_unique<api::http_server>(*m_engine, api::chat_template::from_model_dir(m_model), so);
        m_port = m_server->bind();
        QVERIFY(m_port > 0);
        m_base = m_server->base_name();
        QCOMPARE(m_base, std::string("tinystories-656k"));
        m_server_thread = std::thread([this] { m_server->run(); });
    }

    void cleanupTestCase() {
        if (m_server) m_server->stop();
        if (m_server_thread.joinable()) m_server_thread.join();
        if (m_engine) m_engine->shutdown(false);
    }

    void health_needs_no_key() {
        auto c = client();
        const auto r = get(*c, "/health", {});
        QCOMPARE(r.status, 200);
        const auto j = json::parse(r.body);
        QCOMPARE(j["status"].get<std::string>(), std::string("ok"));
        QCOMPARE(j["adapters"].get<int>(), 3);
    }

    void completions_for_several_adapters_at_once_equal_the_engine() {
        const std::vector<std::string> prompts = {"Once upon a time", "The little dog"};
        std::vector<std::string> models = m_adapters;
        models.push_back(m_base);
        struct job {
            std::string model, prompt;
            direct_result expected;
            http_reply reply;
        };
        std::vector<job> jobs;
        for (const auto& m : models)
            for (const auto& p : prompts)
                jobs.push_back({m, p, direct(m, p, 24), {}});
        // Routing matters: the adapters change the greedy text for at least one prompt.
        std::set<std::string> distinct;
        for (const auto& j : jobs)
            distinct.insert(j.expected.text);
        QVERIFY2(distinct.size() >= 4, "the crafted adapters do not change the output; routing is untested");

        std::vector<std::thread> threads;
        for (auto& j : jobs)
            threads.emplace_back([&, this] {
                auto c = client();
                j.reply = post(
                    *c, "/v1/completions",
                    json{{"model", j.model}, {"prompt", j.prompt}, {"max_tokens", 24}, {"temperature", 0}}
                        .dump());
            });
        for (auto& t : threads)
            t.join();
        std::set<std::string> ids;
        for (const auto& j : jobs) {
            QVERIFY2(j.reply.status == 200, j.reply.body.c_str());
            QVERIFY(j.reply.content_type.find("application/json") != std::string::npos);
            const auto body = json::parse(j.reply.body);
            QCOMPARE(body["object"].get<std::string>(), std::string("text_completion"));
            QCOMPARE(body["model"].get<std::string>(), j.model);
            QCOMPARE(body["choices"][0]["text"].get<std::string>(), j.expected.text);
            QCOMPARE(body["usage"]["prompt_tokens"].get<int>(), j.expected.prompt_tokens);
            QCOMPARE(body["usage"]["completion_tokens"].get<int>(), j.expected.completion_tokens);
            QCOMPARE(body["choices"][0]["finish_reason"].get<std::string>(),
                     std::string(api::openai_finish_reason(j.expected.reason)));
            ids.insert(body["id"].get<std::string>());
        }
        QCOMPARE(ids.size(), jobs.size());
    }

    void chat_completion_uses_the_template() {
        // The fixture has no chat_template: the documented fallback format is the prompt.
        const std::string prompt = "<|system|>\nTell a story.\n<|user|>\nA cat\n<|assistant|>\n";
        const auto expected = direct("ad-b", prompt, 16);
        auto c = client();
        const auto r =
            post(*c, "/v1/chat/completions",
                 R"({"model":"ad-b","max_tokens":16,"messages":[{"role":"system","content":"Tell a story."},
                                {"role":"user","content":"A cat"}]})");
        QVERIFY2(r.status == 200, r.body.c_str());
        const auto body = json::parse(r.body);
        QCOMPARE(body["object"].get<std::string>(), std::string("chat.completion"));
        QCOMPARE(body["choices"][0]["message"]["content"].get<std::string>(), expected.text);
        QCOMPARE(body["usage"]["prompt_tokens"].get<int>(), expected.prompt_tokens);
    }

    void streamed_chunks_concatenate_to_the_plain_text() {
        for (const bool chat : {false, true}) {
            json req = {{"model", "ad-c"}, {"max_tokens", 40}};
            if (chat)
                req["messages"] = json::array({json{{"role", "user"}, {"content", "Once upon a time"}}});
            else
                req["prompt"] = "Once upon a time";
            auto c = client();
            const auto plain = post(*c, chat ? "/v1/chat/completions" : "/v1/completions", req.dump());
            QVERIFY2(plain.status == 200, plain.body.c_str());
            const auto plain_body = json::parse(plain.body);
            req["stream"] = true;
            req["stream_options"] = {{"include_usage", true}};
            const auto streamed = post(*c, chat ? "/v1/chat/completions" : "/v1/completions", req.dump());
            QCOMPARE(streamed.status, 200);
            QVERIFY(streamed.content_type.find("text/event-stream") != std::string::npos);
            const auto events = sse_payloads(streamed.body);
            QVERIFY(events.size() >= 3);
            QCOMPARE(events.back(), std::string("[DONE]"));
            std::string text, finish;
            int text_chunks = 0;
            json usage;
            std::set<std::string> ids;
            for (std::size_t i = 0; i + 1 < events.size(); ++i) {
                const auto e = json::parse(events[i]);
                ids.insert(e["id"].get<std::string>());
                if (e.contains("usage") && !e["usage"].is_null()) {
                    usage = e["usage"];
                    continue;
                }
                const auto& choice = e["choices"][0];
                if (chat) {
                    QCOMPARE(e["object"].get<std::string>(), std::string("chat.completion.chunk"));
                    if (i == 0)
                        QCOMPARE(choice["delta"]["role"].get<std::string>(), std::string("assistant"));
                    if (choice["delta"].contains("content") && i > 0) {
                        text += choice["delta"]["content"].get<std::string>();
                        ++text_chunks;
                    }
                } else {
                    text += choice["text"].get<std::string>();
                    ++text_chunks;
                }
                if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"].get<std::string>();
            }
            QCOMPARE(ids.size(), std::size_t(1)); // one id for the whole stream
            QVERIFY(text_chunks >= 2);            // really streamed in pieces
            const std::string expected =
                chat ? plain_body["choices"][0]["message"]["content"].get<std::string>()
                     : plain_body["choices"][0]["text"].get<std::string>();
            QCOMPARE(text, expected);
            QCOMPARE(finish, plain_body["choices"][0]["finish_reason"].get<std::string>());
            QCOMPARE(usage["completion_tokens"].get<int>(),
                     plain_body["usage"]["completion_tokens"].get<int>());
            QCOMPARE(usage["prompt_tokens"].get<int>(), plain_body["usage"]["prompt_tokens"].get<int>());
        }
    }

    void models_listing_and_adapters_added_and_removed_at_run_time() {
        auto c = client();
        auto ids_of = [&] {
            const auto r = get(*c, "/v1/models");
            std::map<std::string, json> out;
            if (r.status != 200) return out;
            const auto j = json::parse(r.body);
            for (const auto& m : j["data"])
                out[m["id"].get<std::string>()] = m;
            return out;
        };
        auto listed = ids_of();
        QCOMPARE(listed.size(), std::size_t(4));
        QVERIFY(listed.at(m_base)["parent"].is_null());
        for (const auto& a : m_adapters)
            QCOMPARE(listed.at(a)["parent"].get<std::string>(), m_base);

        const auto added = post(*c, "/v1/adapters", json{{"name", "late"}, {"path", m_late.string()}}.dump());
        QVERIFY2(added.status == 201, added.body.c_str());
        QCOMPARE(json::parse(added.body)["id"].get<std::string>(), std::string("late"));
        listed = ids_of();
        QCOMPARE(listed.size(), std::size_t(5));
        QCOMPARE(listed.at("late")["parent"].get<std::string>(), m_base);
        const auto expected = direct("late", "One day", 12);
        const auto r = post(*c, "/v1/completions", R"({"model":"late","prompt":"One day","max_tokens":12})");
        QVERIFY2(r.status == 200, r.body.c_str());
        QCOMPARE(json::parse(r.body)["choices"][0]["text"].get<std::string>(), expected.text);

        expect_error(post(*c, "/v1/adapters", json{{"name", "late"}, {"path", m_late.string()}}.dump()), 409,
                     "name_taken");
        expect_error(post(*c, "/v1/adapters", json{{"name", m_base}, {"path", m_late.string()}}.dump()), 409,
                     "name_taken");
        expect_error(post(*c, "/v1/adapters", json{{"name", "foreign"}, {"path", m_foreign.string()}}.dump()),
                     400, "invalid_adapter");
        expect_error(
            post(*c, "/v1/adapters",
                 json{{"name", "ghost"}, {"path", (m_late.parent_path() / "nothing").string()}}.dump()),
            400, "adapter_not_found");
        expect_error(
            post(*c, "/v1/adapters", json{{"name", "ghost"}, {"path", "/nonexistent/adapter"}}.dump()), 403,
            "path_not_allowed");
        expect_error(post(*c, "/v1/adapters", json{{"name", "../x"}, {"path", m_late.string()}}.dump()), 400);
        expect_error(post(*c, "/v1/adapters", R"({"name":"x"})"), 400);
        QCOMPARE(ids_of().size(), std::size_t(5)); // the failed adds left nothing behind

        const auto one = get(*c, "/v1/models/late");
        QVERIFY2(one.status == 200, one.body.c_str());
        QCOMPARE(json::parse(one.body)["parent"].get<std::string>(), m_base);

        const auto removed = del(*c, "/v1/adapters/late");
        QVERIFY2(removed.status == 200, removed.body.c_str());
        QVERIFY(json::parse(removed.body)["deleted"].get<bool>());
        QVERIFY(!ids_of().count("late"));
        expect_error(post(*c, "/v1/completions", R"({"model":"late","prompt":"One day"})"), 404,
                     "model_not_found");
        expect_error(del(*c, "/v1/adapters/late"), 404, "model_not_found");
        expect_error(get(*c, "/v1/models/late"), 404, "model_not_found");
    }

    void every_error_gets_the_error_body_and_the_server_keeps_serving() {
        auto c = client();
        expect_error(post(*c, "/v1/completions", "{\"model\": \"ad-a\", \"prompt\": "), 400, "invalid_json");
        expect_error(post(*c, "/v1/completions", R"({"model":"nobody","prompt":"x"})"), 404,
                     "model_not_found");
        expect_error(post(*c, "/v1/completions", R"({"model":"ad-a","prompt":"x","max_tokens":"many"})"),
                     400);
        expect_error(post(*c, "/v1/completions", R"({"model":"ad-a","prompt":42})"), 400);
        expect_error(post(*c, "/v1/chat/completions", R"({"model":"ad-a","messages":"hi"})"), 400);
        expect_error(post(*c, "/v1/completions", R"({"model":"ad-a","prompt":"x","temperature":-1})"), 400);
        // Too many tokens for the 512-token context.
        const auto e = expect_error(
            post(*c, "/v1/completions", R"({"model":"ad-a","prompt":"Once upon a time","max_tokens":510})"),
            400, "context_length_exceeded");
        QVERIFY(e["message"].get<std::string>().find("512") != std::string::npos);
        // A body over --max-request-bytes (64 KiB here).
        const std::string huge = json{{"model", "ad-a"}, {"prompt", std::string(70 * 1024, 'a')}}.dump();
        auto big = client();
        expect_error(post(*big, "/v1/completions", huge), 413, "request_too_large");
        expect_error(get(*c, "/v1/nothing-here"), 404, "not_found");
        // Still serving, and still right.
        const auto expected = direct("ad-a", "Once upon a time", 8);
        auto fresh = client();
        const auto r =
            post(*fresh, "/v1/completions", R"({"model":"ad-a","prompt":"Once upon a time","max_tokens":8})");
        QVERIFY2(r.status == 200, r.body.c_str());
        QCOMPARE(json::parse(r.body)["choices"][0]["text"].get<std::string>(), expected.text);
    }

    void api_key_is_enforced() {
        auto c = client();
        const std::string body = R"({"model":"ad-a","prompt":"x","max_tokens":2})";
        expect_error(post(*c, "/v1/completions", body, {}), 401, "missing_api_key");
        expect_error(post(*c, "/v1/completions", body, auth("wrong-key-123")), 401, "invalid_api_key");
        expect_error(post(*c, "/v1/completions", body, auth(api_key + "x")), 401, "invalid_api_key");
        expect_error(get(*c, "/v1/models", {}), 401);
        expect_error(get(*c, "/metrics", {}), 401);
        QCOMPARE(post(*c, "/v1/completions", body).status, 200);
    }

    void metrics_endpoint_reports_the_engine() {
        auto c = client();
        const auto r = get(*c, "/metrics");
        QCOMPARE(r.status, 200);
        QVERIFY(r.content_type.find("text/plain") != std::string::npos);
        const auto snapshot = m_engine->metrics();
        const double completed = metric("lorafleet_requests_completed_total");
        QVERIFY(completed >= 10); // the tests above completed more than that
        QVERIFY(completed <= double(m_engine->metrics().requests_completed));
        QVERIFY(completed >= double(snapshot.requests_completed));
        QVERIFY(r.body.find("lorafleet_adapter_requests_total{adapter=\"ad-a\"}") != std::string::npos);
    }

    void a_client_that_disconnects_mid_stream_cancels_its_request() {
        const double cancelled_before = metric("lorafleet_requests_cancelled_total");
        QVERIFY(cancelled_before >= 0);
        auto c = client();
        const std::string body = json{
            {"model", "ad-b"},
            {"prompt", "Once"},
            {"max_tokens", 480},
            {"ignore_eos", true},
            {"stream", true}}.dump();
        std::string received;
        const auto res = c->request("POST", "/v1/completions", body, auth(), [&](std::string_view piece) {
            received.append(piece);
            return received.find("\"text\"") == std::string::npos; // hang up after the first text chunk
        });
        QCOMPARE(res.status, -2); // we hung up
        QVERIFY(received.find("[DONE]") == std::string::npos);
        c.reset();
        // The server notices at its next write, cancels the request, and the engine frees its sequence.
        QElapsedTimer t;
        t.start();
        while (t.elapsed() < 20000 && metric("lorafleet_requests_cancelled_total") < cancelled_before + 1)
            QThread::msleep(20);
        QCOMPARE(metric("lorafleet_requests_cancelled_total"), cancelled_before + 1);
        while (t.elapsed() < 20000 && m_engine->metrics().running != 0)
            QThread::msleep(20);
        QCOMPARE(m_engine->metrics().running, 0);
    }

    void soak_2000_requests_from_16_threads() {
        constexpr int total = 2000, threads = 16;
        std::vector<std::string> models = m_adapters;
        models.push_back(m_base);
        struct item {
            std::string model, prompt;
            int max_tokens = 1;
            direct_result expected;
        };
        std::vector<item> items(total);
        // Expected answers straight from the engine, submitted all at once (it batches them).
        QElapsedTimer direct_timer;
        direct_timer.start();
        std::vector<std::future<completion_result>> futures;
        for (int i = 0; i < total; ++i) {
            auto& it = items[static_cast<std::size_t>(i)];
            it.model = models[static_cast<std::size_t>(i) % models.size()];
            it.prompt = "Story " + std::to_string(i) + ": a";
            it.max_tokens = 1 + i % 4;
            completion_request r;
            r.adapter = it.model == m_base ? "" : it.model;
            r.prompt = m_tokenizer->encode(it.prompt, true);
            r.params.max_tokens = it.max_tokens;
            auto promise = std::make_shared<std::promise<completion_result>>();
            futures.push_back(promise->get_future());
            r.on_done = [promise](const completion_result& res) { promise->set_value(res); };
            m_engine->submit(std::move(r));
        }
        for (int i = 0; i < total; ++i) {
            const auto res = futures[static_cast<std::size_t>(i)].get();
            QCOMPARE(res.status, completion_status::finished);
            items[static_cast<std::size_t>(i)].expected = {res.text, res.prompt_tokens,
                                                           static_cast<int>(res.tokens.size()), res.reason};
        }

        const double direct_seconds = direct_timer.elapsed() / 1000.0;
        std::atomic<int> next{0};
        std::vector<http_reply> replies(total);
        std::vector<int> answered(total, 0);
        std::mutex answered_mutex;
        QElapsedTimer timer;
        timer.start();
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t)
            pool.emplace_back([&, this] {
                auto c = client();
                for (int i = next++; i < total; i = next++) {
                    const auto& it = items[static_cast<std::size_t>(i)];
                    auto reply =
                        post(*c, "/v1/completions",
                             json{{"model", it.model}, {"prompt", it.prompt}, {"max_tokens", it.max_tokens}}
                                 .dump());
                    std::lock_guard lock(answered_mutex);
                    ++answered[static_cast<std::size_t>(i)];
                    replies[static_cast<std::size_t>(i)] = std::move(reply);
                }
            });
        for (auto& t : pool)
            t.join();
        const double seconds = timer.elapsed() / 1000.0;
        std::set<std::string> ids;
        int ok = 0;
        for (int i = 0; i < total; ++i) {
            const auto& it = items[static_cast<std::size_t>(i)];
            const auto& r = replies[static_cast<std::size_t>(i)];
            QCOMPARE(answered[static_cast<std::size_t>(i)], 1);
            QVERIFY2(r.status == 200, (std::to_string(i) + ": " + r.body).c_str());
            const auto body = json::parse(r.body);
            QCOMPARE(body["model"].get<std::string>(), it.model);
            QCOMPARE(body["choices"][0]["text"].get<std::string>(), it.expected.text);
            QCOMPARE(body["usage"]["prompt_tokens"].get<int>(), it.expected.prompt_tokens);
            QCOMPARE(body["usage"]["completion_tokens"].get<int>(), it.expected.completion_tokens);
            ids.insert(body["id"].get<std::string>());
            ++ok;
        }
        QCOMPARE(ok, total);
        QCOMPARE(ids.size(), std::size_t(total)); // no duplicated responses
        qInfo(
            "soak: %d requests from %d threads in %.2f s over HTTP (%.0f requests/s); the same %d submitted "
            "directly to the engine at once: %.2f s",
            total, threads, seconds, total / seconds, total, direct_seconds);
    }
};

QTEST_GUILESS_MAIN(TestHttpServer)
#include "test_http_server.moc"
