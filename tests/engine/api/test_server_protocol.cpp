// server protocol (no sockets, no engine): OpenAI request parsing and validation (every refusal is a 400
// naming the field), the error body, response and chunk shapes, SSE framing, chat template detection
// and rendering against the formats HuggingFace documents for each family, and the Prometheus text
// checked by an independent line parser (top-N adapters plus an __other__ bucket whose sums add up).
#include "engine/api/chat_template.hpp"
#include "engine/api/openai_protocol.hpp"
#include "engine/api/prometheus.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <fstream>
#include <map>
#include <regex>
#include <set>

using namespace lorafleet;
using namespace lorafleet::api;
using nlohmann::json;

namespace {

// The api_error a body produces, or a failed test when it parses.
api_error_info refusal(const std::string& body, api_kind kind = api_kind::completion) {
    try {
        if (kind == api_kind::chat)
            parse_chat_request(body);
        else
            parse_completion_request(body);
    } catch (const api_error& e) {
        return e.info();
    }
    return {0, "", "parsed without error: " + body, "", ""};
}

struct sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
};

// A small independent reader of the text exposition format: HELP/TYPE comments and samples.
struct exposition {
    std::vector<sample> samples;
    std::map<std::string, int> help_count, type_count;
    std::set<std::string> declared; // families declared before their first sample
    bool sample_before_declaration = false;

    explicit exposition(const std::string& text) {
        static const std::regex sample_re(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
        static const std::regex label_re("([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\]|\\\\.)*)\"");
        std::istringstream in(text);
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("# HELP ", 0) == 0) {
                ++help_count[line.substr(7, line.find(' ', 7) - 7)];
                continue;
            }
            if (line.rfind("# TYPE ", 0) == 0) {
                const std::string name = line.substr(7, line.find(' ', 7) - 7);
                ++type_count[name];
                declared.insert(name);
                continue;
            }
            std::smatch m;
            if (!std::regex_match(line, m, sample_re)) {
                samples.push_back({"<unparsable: " + line + ">", {}, 0});
                continue;
            }
            sample s;
            s.name = m[1];
            if (!declared.count(s.name)) sample_before_declaration = true;
            const std::string labels = m[3];
            for (auto it = std::sregex_iterator(labels.begin(), labels.end(), label_re);
                 it != std::sregex_iterator(); ++it) {
                std::string v, raw = (*it)[2];
                for (std::size_t i = 0; i < raw.size(); ++i) {
                    if (raw[i] == '\\' && i + 1 < raw.size()) {
                        ++i;
                        v += raw[i] == 'n' ? '\n' : raw[i];
                    } else {
                        v += raw[i];
                    }
                }
                s.labels[(*it)[1]] = v;
            }
            s.value = std::stod(m[4]);
            samples.push_back(s);
        }
    }
    std::vector<sample> named(const std::string& name) const {
        std::vector<sample> out;
        for (const auto& s : samples)
            if (s.name == name) out.push_back(s);
        return out;
    }
};

} // namespace

class TestServerProtocol : public QObject {
    Q_OBJECT

private slots:
    void parses_a_full_completion_request() {
        const auto r = parse_completion_request(R"({"model":"ad-1","prompt":"Once upon","max_tokens":7,
            "temperature":0.5,"top_p":0.9,"top_k":40,"seed":-3,"stop":["\n","", "END"],"stream":true,
            "stream_options":{"include_usage":true},"user":"someone","n":1,"presence_penalty":0,"logprobs":null})");
        QCOMPARE(r.kind, api_kind::completion);
        QCOMPARE(r.model, std::string("ad-1"));
        QCOMPARE(r.prompt, std::string("Once upon"));
        QCOMPARE(*r.max_tokens, 7);
        QCOMPARE(r.sampling.temperature, 0.5f);
        QCOMPARE(r.sampling.top_p, 0.9f);
        QCOMPARE(r.sampling.top_k, 40);
        QCOMPARE(r.sampling.seed, static_cast<std::uint64_t>(-3)); // any int64 is a seed
        QCOMPARE(r.stop, (std::vector<std::string>{"\n", "END"})); // empty stop strings dropped
        QVERIFY(r.stream);
        QVERIFY(r.include_usage);
        QVERIFY(!r.ignore_eos);
    }

    void applies_defaults() {
        const auto r = parse_completion_request(R"({"model":"m","prompt":["only one"]})");
        QCOMPARE(r.prompt, std::string("only one"));
        QVERIFY(!r.max_tokens.has_value()); // the server applies the endpoint default
        QCOMPARE(r.sampling.temperature, 0.0f);
        QCOMPARE(r.sampling.top_p, 1.0f);
        QVERIFY(!r.stream);
        const auto c = parse_chat_request(R"({"model":"m","max_completion_tokens":9,"max_tokens":3,
            "messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
            {"role":"assistant","content":null}]})");
        QCOMPARE(*c.max_tokens, 9); // max_completion_tokens wins
        QCOMPARE(c.messages.size(), std::size_t(3));
        QCOMPARE(c.messages[0].role, std::string("system"));
        QCOMPARE(c.messages[1].content, std::string("ab"));
        QCOMPARE(c.messages[2].content, std::string(""));
    }

    void refuses_bad_requests_with_the_field_named_data() {
        QTest::addColumn<QString>("body");
        QTest::addColumn<bool>("chat");
        QTest::addColumn<QString>("param");
        QTest::addColumn<QString>("code");
        auto row = [](const char* name, const char* body, bool chat, const char* param,
                      const char* code = "") {
            QTest::newRow(name) << QString(body) << chat << QString(param) << QString(code);
        };
        row("not json", "{\"model\": ", false, "", "invalid_json");
        row("not an object", "[1,2]", false, "", "invalid_json");
        row("no model", R"({"prompt":"x"})", false, "model");
        row("model not a string", R"({"model":3,"prompt":"x"})", false, "model");
        row("empty model", R"({"model":"","prompt":"x"})", false, "model");
        row("no prompt", R"({"model":"m"})", false, "prompt");
        row("token prompt", R"({"model":"m","prompt":[1,2,3]})", false, "prompt");
        row("batched prompts", R"({"model":"m","prompt":["a","b"]})", false, "prompt",
            "unsupported_parameter");
        row("max_tokens zero", R"({"model":"m","prompt":"x","max_tokens":0})", false, "max_tokens");
        row("max_tokens negative", R"({"model":"m","prompt":"x","max_tokens":-5})", false, "max_tokens");
        row("max_tokens float", R"({"model":"m","prompt":"x","max_tokens":1.5})", false, "max_tokens");
        row("max_tokens string", R"({"model":"m","prompt":"x","max_tokens":"10"})", false, "max_tokens");
        row("max_tokens huge", R"({"model":"m","prompt":"x","max_tokens":18446744073709551615})", false,
            "max_tokens", "max_tokens_too_large");
        row("max_tokens 1e400", R"({"model":"m","prompt":"x","max_tokens":1e400})", false, "max_tokens",
            "number_out_of_range");
        row("max_tokens -1e400", R"({"model":"m","prompt":"x","max_tokens":-1e400})", false, "max_tokens",
            "number_out_of_range");
        row("max_tokens 1e20", R"({"model":"m","prompt":"x","max_tokens":1e20})", false, "max_tokens");
        row("max_tokens over int", R"({"model":"m","prompt":"x","max_tokens":4294967297})", false,
            "max_tokens", "max_tokens_too_large");
        row("temperature 1e400", R"({"model":"m","prompt":"x","temperature":1e400})", false, "temperature",
            "number_out_of_range");
        row("top_k over int", R"({"model":"m","prompt":"x","top_k":2147483648})", false, "top_k");
        row("nested 1e400", R"({"model":"m","prompt":"x","stream_options":{"include_usage":1e999}})", false,
            "include_usage", "number_out_of_range");
        row("temperature high", R"({"model":"m","prompt":"x","temperature":2.5})", false, "temperature");
        row("temperature string", R"({"model":"m","prompt":"x","temperature":"hot"})", false, "temperature");
        row("top_p zero", R"({"model":"m","prompt":"x","top_p":0})", false, "top_p");
        row("top_k below -1", R"({"model":"m","prompt":"x","top_k":-2})", false, "top_k");
        row("seed float", R"({"model":"m","prompt":"x","seed":0.5})", false, "seed");
        row("five stops", R"({"model":"m","prompt":"x","stop":["a","b","c","d","e"]})", false, "stop");
        row("stop number", R"({"model":"m","prompt":"x","stop":7})", false, "stop");
        row("stream string", R"({"model":"m","prompt":"x","stream":"yes"})", false, "stream");
        row("stream_options without stream", R"({"model":"m","prompt":"x","stream_options":{}})", false,
            "stream_options");
        row("n two", R"({"model":"m","prompt":"x","n":2})", false, "n", "unsupported_parameter");
        row("logprobs", R"({"model":"m","prompt":"x","logprobs":3})", false, "logprobs",
            "unsupported_parameter");
        row("echo", R"({"model":"m","prompt":"x","echo":true})", false, "echo", "unsupported_parameter");
        row("penalty", R"({"model":"m","prompt":"x","frequency_penalty":0.5})", false, "frequency_penalty",
            "unsupported_parameter");
        row("logit_bias", R"({"model":"m","prompt":"x","logit_bias":{"5":10}})", false, "logit_bias",
            "unsupported_parameter");
        row("no messages", R"({"model":"m"})", true, "messages");
        row("empty messages", R"({"model":"m","messages":[]})", true, "messages");
        row("messages object", R"({"model":"m","messages":{}})", true, "messages");
        row("message no role", R"({"model":"m","messages":[{"content":"x"}]})", true, "messages[0].role");
        row("unknown role", R"({"model":"m","messages":[{"role":"robot","content":"x"}]})", true,
            "messages[0].role");
        row("tool role", R"({"model":"m","messages":[{"role":"tool","content":"x"}]})", true,
            "messages[0].role", "unsupported_parameter");
        row("user without content", R"({"model":"m","messages":[{"role":"user"}]})", true,
            "messages[0].content");
        row("image part", R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
            true, "messages[0].content", "unsupported_parameter");
        row("tools",
            R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function"}]})", true,
            "tools", "unsupported_parameter");
        row("json mode",
            R"({"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})",
            true, "response_format", "unsupported_parameter");
    }
    void refuses_bad_requests_with_the_field_named() {
        QFETCH(QString, body);
        QFETCH(bool, chat);
        QFETCH(QString, param);
        QFETCH(QString, code);
        const auto e = refusal(body.toStdString(), chat ? api_kind::chat : api_kind::completion);
        QVERIFY2(e.status == 400, e.message.c_str());
        QCOMPARE(e.type, std::string("invalid_request_error"));
        QCOMPARE(QString::fromStdString(e.param), param);
        if (!code.isEmpty()) QCOMPARE(QString::fromStdString(e.code), code);
        QVERIFY(!e.message.empty());
    }

    void error_body_has_the_openai_shape() {
        const auto j =
            json::parse(error_body({404, "not_found_error", "no \"x\"", "model", "model_not_found"}));
        QCOMPARE(j.size(), std::size_t(1));
        const auto& e = j.at("error");
        QCOMPARE(e.at("message").get<std::string>(), std::string("no \"x\""));
        QCOMPARE(e.at("type").get<std::string>(), std::string("not_found_error"));
        QCOMPARE(e.at("param").get<std::string>(), std::string("model"));
        QCOMPARE(e.at("code").get<std::string>(), std::string("model_not_found"));
        const auto n = json::parse(error_body({400, "invalid_request_error", "bad", "", ""}))["error"];
        QVERIFY(n.at("param").is_null());
        QVERIFY(n.at("code").is_null());
    }

    void response_bodies_and_chunks() {
        using serve::finish_reason;
        QCOMPARE(openai_finish_reason(finish_reason::eos), std::string_view("stop"));
        QCOMPARE(openai_finish_reason(finish_reason::stop_string), std::string_view("stop"));
        QCOMPARE(openai_finish_reason(finish_reason::max_tokens), std::string_view("length"));
        QCOMPARE(openai_finish_reason(finish_reason::context_full), std::string_view("length"));

        const response_header c{api_kind::completion, "cmpl-1", 1700000000, "ad-1"};
        const auto body = completion_body(c, "hello", finish_reason::max_tokens, {5, 3});
        QCOMPARE(body["object"].get<std::string>(), std::string("text_completion"));
        QCOMPARE(body["id"].get<std::string>(), std::string("cmpl-1"));
        QCOMPARE(body["model"].get<std::string>(), std::string("ad-1"));
        QCOMPARE(body["created"].get<std::int64_t>(), std::int64_t(1700000000));
        QCOMPARE(body["choices"][0]["text"].get<std::string>(), std::string("hello"));
        QCOMPARE(body["choices"][0]["finish_reason"].get<std::string>(), std::string("length"));
        QCOMPARE(body["usage"]["total_tokens"].get<int>(), 8);

        const response_header h{api_kind::chat, "chatcmpl-1", 1, "base"};
        const auto chat = completion_body(h, "hi", finish_reason::eos, {2, 1});
        QCOMPARE(chat["object"].get<std::string>(), std::string("chat.completion"));
        QCOMPARE(chat["choices"][0]["message"]["role"].get<std::string>(), std::string("assistant"));
        QCOMPARE(chat["choices"][0]["message"]["content"].get<std::string>(), std::string("hi"));
        const auto piece = text_chunk(h, "wor");
        QCOMPARE(piece["object"].get<std::string>(), std::string("chat.completion.chunk"));
        QCOMPARE(piece["choices"][0]["delta"]["content"].get<std::string>(), std::string("wor"));
        QVERIFY(piece["choices"][0]["finish_reason"].is_null());
        const auto last = text_chunk(h, "", finish_reason::stop_string);
        QVERIFY(last["choices"][0]["delta"].empty());
        QCOMPARE(last["choices"][0]["finish_reason"].get<std::string>(), std::string("stop"));
        QCOMPARE(role_chunk(h)["choices"][0]["delta"]["role"].get<std::string>(), std::string("assistant"));
        const auto usage = usage_chunk(h, {4, 6});
        QVERIFY(usage["choices"].empty());
        QCOMPARE(usage["usage"]["completion_tokens"].get<int>(), 6);
    }

    void sse_framing() {
        const std::string text = "line one\nline \"two\"\r\n\xE2\x82\xAC"; // newlines and a euro sign
        const auto chunk = text_chunk({api_kind::completion, "cmpl-9", 0, "m"}, text);
        const std::string event = sse_event(chunk);
        QVERIFY(event.rfind("data: ", 0) == 0);
        QVERIFY(event.size() > 8 && event.substr(event.size() - 2) == "\n\n");
        // exactly one line: the payload's newlines are escaped inside the JSON string
        QCOMPARE(std::count(event.begin(), event.end(), '\n'), 2L);
        const auto back = json::parse(event.substr(6, event.size() - 8));
        QCOMPARE(back["choices"][0]["text"].get<std::string>(), text);
        QCOMPARE(sse_done(), std::string("data: [DONE]\n\n"));
        // invalid UTF-8 never throws; it is replaced
        const std::string bad = sse_event(json{{"x", std::string("\xff")}});
        QVERIFY(bad.find("\xEF\xBF\xBD") != std::string::npos);
    }

    void chat_templates_render_the_documented_formats() {
        const std::vector<chat_message> pirate = {
            {"system", "You are a friendly chatbot who always responds in the style of a pirate"},
            {"user", "How many helicopters can a human eat in one sitting?"}};
        // TinyLlama-Chat / Zephyr (template text as shipped, abridged to its markers)
        const std::string zephyr_jinja =
            "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
            "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
            "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
            "'<|assistant|>\n'  + "
            "message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt "
            "%}\n{{ "
            "'<|assistant|>' }}\n{% endif %}\n{% endfor %}";
        const auto z = chat_template::detect(zephyr_jinja, "<s>", "</s>");
        QCOMPARE(z.format(), chat_format::zephyr);
        QCOMPARE(z.render(pirate),
                 std::string("<|system|>\nYou are a friendly chatbot who always responds in the "
                             "style of a pirate</s>\n<|user|>\nHow many helicopters can a human "
                             "eat in one sitting?</s>\n<|assistant|>\n"));
        // Llama 2 (the leading <s> is the tokenizer's BOS, left to the tokenizer)
        const auto l2 = chat_template::detect("{% if messages[0]['role'] == 'system' %}...<<SYS>>\\n' + "
                                              "system_message + '\\n<</SYS>>...[INST] ... [/INST]",
                                              "<s>", "</s>");
        QCOMPARE(l2.format(), chat_format::llama2);
        QCOMPARE(l2.render(pirate),
                 std::string("[INST] <<SYS>>\nYou are a friendly chatbot who always responds in "
                             "the style of a pirate\n<</SYS>>\n\nHow many helicopters can a human "
                             "eat in one sitting? [/INST]"));
        QCOMPARE(l2.render({{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}}),
                 std::string("[INST] Hi [/INST] Hello! </s><s>[INST] Bye [/INST]"));
        // Llama 3
        const auto l3 =
            chat_template::detect("...<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ "
                                  "message['content'] | trim + '<|eot_id|>'...",
                                  "<|begin_of_text|>", "<|eot_id|>");
        QCOMPARE(l3.format(), chat_format::llama3);
        QCOMPARE(
            l3.render({{"system", "You are a helpful assistant"}, {"user", " Hi \n"}}),
            std::string("<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n"));
        // ChatML (Qwen2, ...)
        const auto cm =
            chat_template::detect("{% for message in messages %}{{'<|im_start|>' + message['role'] + "
                                  "'\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}",
                                  "", "<|im_end|>");
        QCOMPARE(cm.format(), chat_format::chatml);
        QCOMPARE(
            cm.render({{"system", "S"}, {"user", "U"}}),
            std::string(
                "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"));
        // Mistral: [INST] without <<SYS>>
        const auto mi = chat_template::detect(
            "{{ bos_token }}...'[INST] ' + message['content'] + ' [/INST]'...", "<s>", "</s>");
        QCOMPARE(mi.format(), chat_format::mistral);
        QCOMPARE(mi.render({{"system", "Be terse."}, {"user", "Hi"}, {"assistant", "Yo"}, {"user", "Bye"}}),
                 std::string("[INST] Be terse.\n\nHi [/INST]Yo</s>[INST] Bye [/INST]"));
        // An unknown template and none at all both use the documented fallback.
        const auto unknown = chat_template::detect("{{ messages | tojson }}", "<s>", "</s>");
        QCOMPARE(unknown.format(), chat_format::fallback);
        QVERIFY(unknown.had_template());
        const chat_template none;
        QVERIFY(!none.had_template());
        QCOMPARE(none.render({{"system", "S"}, {"user", "U"}}),
                 std::string("<|system|>\nS\n<|user|>\nU\n<|assistant|>\n"));
        // The eos-terminated families need the EOS text.
        QCOMPARE(chat_template::detect(zephyr_jinja, "", "").format(), chat_format::fallback);
    }

    void chat_template_from_model_folders() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto fixture = chat_template::from_model_dir(test::fixtures_dir() / "models/tinystories-656k");
        QCOMPARE(fixture.format(), chat_format::fallback); // a story model: no chat_template
        QVERIFY(!fixture.had_template());

        QTemporaryDir tmp;
        const std::filesystem::path dir = tmp.path().toStdString();
        {
            std::ofstream(dir / "tokenizer_config.json")
                << R"({"bos_token":{"content":"<s>","special":true},"eos_token":{"content":"</s>"},
                      "chat_template":[{"name":"tool_use","template":"<|im_start|><|im_end|>"},
                                       {"name":"default","template":"<|user|> ... <|assistant|>"}]})";
        }
        const auto t = chat_template::from_model_dir(dir);
        QCOMPARE(t.format(), chat_format::zephyr); // the "default" entry, not the tool one
        QCOMPARE(t.render({{"user", "x"}}), std::string("<|user|>\nx</s>\n<|assistant|>\n"));
        { std::ofstream(dir / "tokenizer_config.json") << "{ not json"; }
        QVERIFY_THROWS_EXCEPTION(format_error, chat_template::from_model_dir(dir));
    }

    void prometheus_exposition() {
        serve::metrics_snapshot m;
        m.uptime_s = 12.5;
        m.window_seconds = 10;
        m.decode_tokens_per_s = 1234.25;
        m.queue_depth = 3;
        m.running = 7;
        m.requests_submitted = 1000;
        m.requests_completed = 990;
        m.requests_cancelled = 4;
        m.completion_tokens = 123456789012ull;
        m.ttft = {0.01, 0.02, 0.05, 0.015, 42};
        m.memory.weights = 1 << 20;
        m.memory.kv_cache_used = 4096;
        m.memory.rss = 5ull << 30;
        m.peak_running = 17;
        m.active_adapters = 12;
        m.adapters_loaded = 31;
        // 30 adapters with distinct request counts plus the base model, in scrambled order.
        std::uint64_t total_requests = 0, total_prompt = 0;
        for (int i = 0; i < 30; ++i) {
            serve::adapter_traffic a;
            a.name = "ad-" + std::to_string((i * 7) % 30);
            a.requests = 10 + static_cast<std::uint64_t>((i * 7) % 30);
            a.prompt_tokens = a.requests * 3;
            a.completion_tokens = a.requests * 5;
            a.p50_s = 0.1;
            total_requests += a.requests;
            total_prompt += a.prompt_tokens;
            m.per_adapter.push_back(a);
        }
        serve::adapter_traffic base;
        base.requests = 100; // the busiest: labelled with the base model's name
        base.prompt_tokens = 1;
        m.per_adapter.push_back(base);
        total_requests += 100;
        total_prompt += 1;
        serve::adapter_traffic odd;
        odd.name = "we\"ird\\name\nx";
        odd.requests = 99;
        m.per_adapter.push_back(odd);
        total_requests += 99;

        prometheus_options o;
        o.top_adapters = 5;
        o.base_name = "tiny";
        o.adapter_mode = "raw";
        const std::string text = render_prometheus(m, o);
        const exposition e(text);
        for (const auto& s : e.samples)
            QVERIFY2(s.name.rfind("<unparsable", 0) != 0, s.name.c_str());
        QVERIFY(!e.sample_before_declaration);
        for (const auto& [name, n] : e.type_count) {
            QCOMPARE(n, 1);
            QCOMPARE(e.help_count.at(name), 1);
        }
        QCOMPARE(e.named("lorafleet_uptime_seconds").at(0).value, 12.5);
        QCOMPARE(e.named("lorafleet_decode_tokens_per_second").at(0).value, 1234.25);
        QCOMPARE(e.named("lorafleet_queue_depth").at(0).value, 3.0);
        QCOMPARE(e.named("lorafleet_running_sequences").at(0).value, 7.0);
        QCOMPARE(e.named("lorafleet_requests_cancelled_total").at(0).value, 4.0);
        QCOMPARE(e.named("lorafleet_completion_tokens_total").at(0).value, 123456789012.0);
        QCOMPARE(e.named("lorafleet_info").at(0).labels.at("adapter_mode"), std::string("raw"));
        bool saw_p99 = false;
        for (const auto& s : e.named("lorafleet_time_to_first_token_seconds"))
            if (s.labels.at("quantile") == "0.99") saw_p99 = (s.value == 0.05);
        QVERIFY(saw_p99);
        std::map<std::string, double> memory;
        for (const auto& s : e.named("lorafleet_memory_bytes"))
            memory[s.labels.at("kind")] = s.value;
        QCOMPARE(memory.at("weights"), double(1 << 20));
        QCOMPARE(memory.at("kv_cache_used"), 4096.0);
        QCOMPARE(e.named("lorafleet_process_resident_bytes").at(0).value, double(5ull << 30));
        QCOMPARE(e.named("lorafleet_peak_running_sequences").at(0).value, 17.0);
        QCOMPARE(e.named("lorafleet_active_adapters").at(0).value, 12.0);

        // Per adapter: the 5 busiest by requests (base 100, the odd name 99, ad-29 39, ad-28 38, ad-27 37),
        // then __other__ with the rest; the sums over the series equal the snapshot's.
        const auto req = e.named("lorafleet_adapter_requests_total");
        QCOMPARE(req.size(), std::size_t(6));
        std::vector<std::string> names;
        double sum = 0;
        for (const auto& s : req) {
            names.push_back(s.labels.at("adapter"));
            sum += s.value;
        }
        QCOMPARE(names, (std::vector<std::string>{"tiny", "we\"ird\\name\nx", "ad-29", "ad-28", "ad-27",
                                                  "__other__"}));
        QCOMPARE(sum, double(total_requests));
        QCOMPARE(req.back().value, double(total_requests - 100 - 99 - 39 - 38 - 37));
        double prompt_sum = 0;
        for (const auto& s : e.named("lorafleet_adapter_prompt_tokens_total"))
            prompt_sum += s.value;
        QCOMPARE(prompt_sum, double(total_prompt));
        QCOMPARE(e.named("lorafleet_adapter_latency_seconds").size(),
                 std::size_t(10)); // p50 + p99, top 5 only

        // Fewer adapters than N: no __other__ series.
        m.per_adapter.resize(3);
        o.top_adapters = 20;
        const exposition few(render_prometheus(m, o));
        for (const auto& s : few.named("lorafleet_adapter_requests_total"))
            QVERIFY(s.labels.at("adapter") != "__other__");
        QCOMPARE(few.named("lorafleet_adapter_requests_total").size(), std::size_t(3));
    }
};

QTEST_GUILESS_MAIN(TestServerProtocol)
#include "test_server_protocol.moc"
