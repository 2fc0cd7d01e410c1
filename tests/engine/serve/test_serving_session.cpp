// The serving-session facade (engine/serve/session/serving_session.hpp) on the demo model:
//  - raw folders with broken adapters among good ones (bad JSON, a NaN weight, an adapter of another
//    geometry, a path that does not exist, a second folder of a name already taken): the session starts,
//    serves exactly the good adapters (a completion through one of them finishes), and lists each broken one
//    with its name, folder and a reason naming what is wrong;
//  - nothing usable: validation_error naming the adapters; skip_unusable false: the first error as it is;
//  - a bank in memory and the base model alone: the modes and names the engine reports;
//  - on_stage sees the three stages in order, and a throw from it abandons the setup;
//  - has_adapter over 3,000 adapters answers like the adapter list (and for a removed one), without a copy.
#include "engine/core/error.hpp"
#include "engine/serve/session/serving_session.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/support/watchdog.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <chrono>
#include <future>
#include <set>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

completion_result complete(serving_engine& engine, const std::string& adapter) {
    std::promise<completion_result> done;
    auto future = done.get_future();
    completion_request req;
    req.adapter = adapter;
    req.prompt = engine.tokenizer().encode("Once upon a time", true);
    req.params.max_tokens = 4;
    req.on_done = [&done](const completion_result& r) { done.set_value(r); };
    engine.submit(std::move(req));
    return future.get();
}

std::set<std::string> names_of(const serving_engine& engine) {
    std::set<std::string> out;
    for (const auto& a : engine.adapters())
        out.insert(a.name);
    return out;
}

} // namespace

class TestServingSession : public QObject {
    Q_OBJECT
    QTemporaryDir m_tmp;
    served_model m_model;
    fs::path tmp() const { return fs::path(m_tmp.path().toStdString()); }
    const io::model_geometry& geometry() const { return m_model.weights->geometry(); }
    void write_good(const fs::path& dir, int layers = -1) {
        test::write_crafted_adapter(
            dir, test::crafted_llama_adapter(geometry(), {"q_proj", "v_proj"}, 2, 4.0, layers));
    }
    session_options raw_options(std::vector<fs::path> paths) const {
        session_options o;
        o.model_dir = test::demo_model_dir();
        o.adapters.source = adapter_source::raw_folders;
        o.adapters.raw_paths = std::move(paths);
        o.adapters.raw_cache_bytes = 16u << 20;
        o.engine.threads = 1;
        o.engine.kv_cache_bytes = 4u << 20;
        return o;
    }

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        m_model = load_served_model(test::demo_model_dir());
        QCOMPARE(m_model.name, std::string("tinystories-656k"));
        // A fleet folder: two good adapters and three broken ones beside them.
        const fs::path fleet = tmp() / "fleet";
        write_good(fleet / "good-a");
        write_good(fleet / "good-b", 1);
        auto bad_json = test::crafted_llama_adapter(geometry(), {"q_proj"}, 2, 4.0);
        bad_json.config_text = "{ this is not json";
        test::write_crafted_adapter(fleet / "bad-json", bad_json);
        auto nan = test::crafted_llama_adapter(geometry(), {"q_proj"}, 2, 4.0);
        nan.modules.front().poison_a = std::numeric_limits<float>::quiet_NaN();
        test::write_crafted_adapter(fleet / "bad-nan", nan);
        io::model_geometry other = geometry();
        other.hidden_size *= 2; // an adapter trained on a wider model
        test::write_crafted_adapter(fleet / "foreign",
                                    test::crafted_llama_adapter(other, {"q_proj"}, 2, 4.0));
        // Another folder holding a second "good-a" (the name is taken: skipped).
        write_good(tmp() / "other" / "good-a");
    }

    void brokenRawAdaptersAreSkippedWithReasons() {
        const fs::path missing = tmp() / "no-such-folder";
        serving_session s = open_serving_session(raw_options({tmp() / "fleet", missing, tmp() / "other"}));
        QVERIFY(s.engine);
        QCOMPARE(std::string(s.engine->adapter_mode()), std::string("raw"));
        QCOMPARE(names_of(*s.engine), (std::set<std::string>{"good-a", "good-b"}));
        std::map<std::string, skipped_adapter> by_name;
        for (const auto& k : s.skipped) {
            QVERIFY2(!k.reason.empty(), k.name.c_str());
            QVERIFY2(describe(k).find(k.reason) != std::string::npos, describe(k).c_str());
            by_name[k.name.empty() ? k.folder.string()
                                   : k.name + "@" + k.folder.parent_path().filename().string()] = k;
        }
        QCOMPARE(s.skipped.size(), std::size_t(5));
        QVERIFY(by_name.count("bad-json@fleet"));
        QVERIFY(by_name.count("bad-nan@fleet"));
        QVERIFY(by_name.count("foreign@fleet"));
        QVERIFY(by_name.count(missing.string()));
        QVERIFY(by_name.count("good-a@other"));
        QCOMPARE(by_name["bad-json@fleet"].folder, tmp() / "fleet" / "bad-json");
        QVERIFY2(by_name["bad-json@fleet"].reason.find("adapter_config.json") != std::string::npos,
                 by_name["bad-json@fleet"].reason.c_str());
        QVERIFY2(by_name["good-a@other"].reason.find("also used by") != std::string::npos,
                 by_name["good-a@other"].reason.c_str());
        const auto r = complete(*s.engine, "good-b");
        QCOMPARE(int(r.status), int(completion_status::finished));
        QCOMPARE(r.tokens.size(), std::size_t(4));
    }

    void nothingUsableFailsAndStrictModeThrows() {
        const fs::path bad = tmp() / "fleet" / "bad-json";
        try {
            open_serving_session(raw_options({bad}));
            QFAIL("a session with no usable adapter started");
        } catch (const validation_error& e) {
            const std::string what = e.what();
            QVERIFY2(what.find("none of the adapters") != std::string::npos, e.what());
            QVERIFY2(what.find("bad-json") != std::string::npos, e.what());
        }
        auto strict = raw_options({tmp() / "fleet"});
        strict.adapters.skip_unusable = false;
        QVERIFY_THROWS_EXCEPTION(lorafleet::error, open_serving_session(strict));
        // Strict with only good adapters starts as before.
        strict.adapters.raw_paths = {tmp() / "fleet" / "good-a", tmp() / "fleet" / "good-b"};
        QCOMPARE(names_of(*open_serving_session(strict).engine), (std::set<std::string>{"good-a", "good-b"}));
    }

    void bankInMemoryAndBaseOnly() {
        test::model_bank_spec spec;
        spec.modules = {"q_proj", "o_proj"};
        spec.adapters = 5;
        auto bank = std::make_shared<const bank::compressed_bank>(test::make_model_bank(geometry(), spec));
        session_options o;
        o.model_dir = test::demo_model_dir();
        o.adapters.source = adapter_source::bank_in_memory;
        o.adapters.bank = bank;
        o.engine.threads = 1;
        o.engine.kv_cache_bytes = 4u << 20;
        serving_session s = open_serving_session(o);
        QCOMPARE(std::string(s.engine->adapter_mode()), std::string("compressed"));
        QCOMPARE(names_of(*s.engine), (std::set<std::string>{"a0", "a1", "a2", "a3", "a4"}));
        QVERIFY(s.skipped.empty());
        QCOMPARE(bank->adapters.size(), std::size_t(5)); // the caller's bank is copied, not moved from
        QCOMPARE(int(complete(*s.engine, "a3").status), int(completion_status::finished));

        o.adapters.bank.reset();
        QVERIFY_THROWS_EXCEPTION(usage_error, open_serving_session(o));
        o.adapters.source = adapter_source::base_only;
        serving_session base = open_serving_session(o);
        QCOMPARE(std::string(base.engine->adapter_mode()), std::string("base"));
        QVERIFY(base.engine->adapters().empty());
        QCOMPARE(int(complete(*base.engine, "").status), int(completion_status::finished));
    }

    void stagesAreAnnouncedAndCanAbandon() {
        auto o = raw_options({tmp() / "fleet" / "good-a"});
        std::vector<std::string> seen;
        o.on_stage = [&](std::string_view s) { seen.emplace_back(s); };
        QVERIFY(open_serving_session(o).engine);
        QCOMPARE(seen, (std::vector<std::string>{"Loading the model", "Loading the adapters",
                                                 "Starting the engine"}));
        seen.clear();
        o.on_stage = [&](std::string_view s) {
            seen.emplace_back(s);
            if (s == "Starting the engine") throw cancelled_error("serve", "cancelled");
        };
        QVERIFY_THROWS_EXCEPTION(cancelled_error, open_serving_session(o));
        QCOMPARE(seen.size(), std::size_t(3));
    }

    // resolve_model's lookup (http_server.cpp): has_adapter agrees with the list for every name.
    void hasAdapterOverManyAdapters() {
        test::model_bank_spec spec;
        spec.modules = {"q_proj"};
        spec.adapters = 3000;
        spec.clusters = 4;
        spec.rank = 2;
        session_options o;
        o.model_dir = test::demo_model_dir();
        o.adapters.source = adapter_source::bank_in_memory;
        o.adapters.bank =
            std::make_shared<const bank::compressed_bank>(test::make_model_bank(geometry(), spec));
        o.engine.threads = 1;
        o.engine.kv_cache_bytes = 4u << 20;
        serving_session s = open_serving_session(o);
        const auto list = s.engine->adapters();
        QCOMPARE(list.size(), std::size_t(3000));
        const auto t0 = std::chrono::steady_clock::now();
        for (const auto& a : list)
            QVERIFY(s.engine->has_adapter(a.name));
        const double us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 3000;
        // What resolve_model did before: copy the whole list and scan it, per request (100 of them here).
        const auto t1 = std::chrono::steady_clock::now();
        int found = 0;
        for (int i = 0; i < 100; ++i) {
            const std::string wanted = "a" + std::to_string(i * 29);
            for (const auto& a : s.engine->adapters())
                if (a.name == wanted) {
                    ++found;
                    break;
                }
        }
        const double copy_us =
            std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t1).count() / 100;
        QCOMPARE(found, 100);
        qInfo("over 3000 adapters: has_adapter %.2f us per lookup; copy-and-scan %.0f us per lookup", us,
              copy_us);
        QVERIFY(!s.engine->has_adapter("a3000"));
        QVERIFY(!s.engine->has_adapter(""));
        QVERIFY(!s.engine->has_adapter("tinystories-656k"));
        QVERIFY(s.engine->remove_adapter("a17").get());
        QVERIFY(!s.engine->has_adapter("a17"));
        QVERIFY(s.engine->has_adapter("a18"));
    }
};

QTEST_GUILESS_MAIN(TestServingSession)
#include "test_serving_session.moc"
