// Chat template families and their rendering (see chat_template.hpp for what is supported).
#include "engine/api/chat_template.hpp"

#include "engine/core/error.hpp"
#include "engine/io/regular_file.hpp"

#include <nlohmann/json.hpp>

#include <optional>

namespace lorafleet::api {

namespace {

bool contains(std::string_view s, std::string_view what) {
    return s.find(what) != std::string_view::npos;
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// An optional model file: absent is fine; present, it must be a regular file of a sane size.
std::optional<std::string> read_text(const std::filesystem::path& p) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) return std::nullopt;
    return io::read_text_file(p, io::max_json_file_bytes, p.filename().string());
}

// tokenizer_config's bos_token / eos_token: a string or an AddedToken object {"content": ...}.
std::string token_string(const nlohmann::json& cfg, const char* key) {
    auto it = cfg.find(key);
    if (it == cfg.end()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
    return {};
}

// "chat_template" is a string, or a list of {"name", "template"} of which "default" is the chat one.
std::string template_of(const nlohmann::json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_array()) {
        for (const auto& t : v)
            if (t.is_object() && t.value("name", "") == "default" && t.contains("template") &&
                t["template"].is_string())
                return t["template"].get<std::string>();
    }
    return {};
}

} // namespace

std::string_view chat_format_name(chat_format f) {
    switch (f) {
    case chat_format::fallback:
        return "fallback";
    case chat_format::chatml:
        return "chatml";
    case chat_format::llama3:
        return "llama3";
    case chat_format::zephyr:
        return "zephyr";
    case chat_format::llama2:
        return "llama2";
    case chat_format::mistral:
        return "mistral";
    }
    return "fallback";
}

chat_template::chat_template(chat_format format, std::string bos_text, std::string eos_text)
    : m_format(format), m_bos(std::move(bos_text)), m_eos(std::move(eos_text)), m_had_template(true) {}

chat_template chat_template::detect(std::string_view jinja, std::string bos_text, std::string eos_text) {
    chat_format f = chat_format::fallback;
    if (contains(jinja, "<|im_start|>") && contains(jinja, "<|im_end|>"))
        f = chat_format::chatml;
    else if (contains(jinja, "<|start_header_id|>") && contains(jinja, "<|eot_id|>"))
        f = chat_format::llama3;
    else if (contains(jinja, "<|user|>") && contains(jinja, "<|assistant|>"))
        f = chat_format::zephyr;
    else if (contains(jinja, "[INST]") && contains(jinja, "<<SYS>>"))
        f = chat_format::llama2;
    else if (contains(jinja, "[INST]") && contains(jinja, "[/INST]"))
        f = chat_format::mistral;
    chat_template t(f, std::move(bos_text), std::move(eos_text));
    t.m_had_template = !jinja.empty();
    // The eos-terminated families cannot be rendered without knowing the EOS text.
    if ((f == chat_format::zephyr || f == chat_format::llama2 || f == chat_format::mistral) &&
        t.m_eos.empty())
        t.m_format = chat_format::fallback;
    return t;
}

chat_template chat_template::from_model_dir(const std::filesystem::path& model_dir) {
    std::string jinja, bos, eos;
    if (auto text = read_text(model_dir / "tokenizer_config.json")) {
        nlohmann::json cfg;
        try {
            cfg = nlohmann::json::parse(*text);
        } catch (const nlohmann::json::parse_error& e) { // never quote the file: the position only
            throw format_error(path_string(model_dir / "tokenizer_config.json"),
                               "not valid JSON at byte " + std::to_string(e.byte));
        } catch (const nlohmann::json::exception&) { // out_of_range: a number beyond what a double holds
            throw format_error(path_string(model_dir / "tokenizer_config.json"),
                               "holds a number out of range (not a finite value)");
        }
        if (cfg.is_object()) {
            bos = token_string(cfg, "bos_token");
            eos = token_string(cfg, "eos_token");
            if (cfg.contains("chat_template")) jinja = template_of(cfg["chat_template"]);
        }
    }
    if (jinja.empty()) {
        if (auto text = read_text(model_dir / "chat_template.json")) {
            auto j = nlohmann::json::parse(*text, nullptr, false);
            if (j.is_object() && j.contains("chat_template")) jinja = template_of(j["chat_template"]);
        }
    }
    if (jinja.empty()) {
        if (auto text = read_text(model_dir / "chat_template.jinja")) jinja = *text;
    }
    return detect(jinja, bos, eos);
}

std::string chat_template::render(const std::vector<chat_message>& messages) const {
    std::string out;
    switch (m_format) {
    case chat_format::chatml:
        for (const auto& m : messages)
            out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
        out += "<|im_start|>assistant\n";
        break;
    case chat_format::llama3:
        for (const auto& m : messages)
            out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
        out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
        break;
    case chat_format::zephyr:
        for (const auto& m : messages)
            out += "<|" + m.role + "|>\n" + m.content + m_eos + "\n";
        out += "<|assistant|>\n";
        break;
    case chat_format::llama2:
    case chat_format::mistral: {
        // System messages are folded into the next user turn; turns after an assistant reply start with BOS
        // (llama2) or directly (mistral).
        std::string system;
        bool after_assistant = false;
        for (const auto& m : messages) {
            if (m.role == "system") {
                if (!system.empty()) system += '\n';
                system += trim(m.content);
            } else if (m.role == "user") {
                std::string user = trim(m.content);
                if (!system.empty()) {
                    user = m_format == chat_format::llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + user
                                                           : system + "\n\n" + user;
                    system.clear();
                }
                if (after_assistant && m_format == chat_format::llama2) out += m_bos;
                out += "[INST] " + user + " [/INST]";
            } else { // assistant
                if (m_format == chat_format::llama2) out += ' ';
                out += trim(m.content);
                if (m_format == chat_format::llama2) out += ' ';
                out += m_eos;
                after_assistant = true;
            }
        }
        if (!system.empty()) out += "[INST] " + system + " [/INST]"; // a system message with no user turn
        break;
    }
    case chat_format::fallback:
        for (const auto& m : messages)
            out += "<|" + m.role + "|>\n" + m.content + "\n";
        out += "<|assistant|>\n";
        break;
    }
    return out;
}

} // namespace lorafleet::api
