// The Tokenizer base (decode, special ids) and model-folder loading: which file to use and where the
// BOS/EOS settings come from (tokenizer_config.json names tokens by text; config.json and
// generation_config.json give ids; generation_config's eos list is what generation stops at).
#include "engine/serve/tokenizer/tokenizer.hpp"

#include "engine/core/error.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/serve/tokenizer/utf8.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace lorafleet::serve {

std::string Tokenizer::decode(std::span<const int> ids, bool skip_special) const {
    return sanitize_utf8(decode_bytes(ids, true, skip_special));
}

bool Tokenizer::is_eos(int id) const {
    return std::find(m_special.eos.begin(), m_special.eos.end(), id) != m_special.eos.end();
}

void Tokenizer::set_special(special_tokens s, int own_bos, int own_eos) {
    if (s.bos_text)
        if (auto id = token_id(*s.bos_text)) s.bos = *id;
    if (s.bos < 0) s.bos = own_bos;
    if (s.eos_text)
        if (auto id = token_id(*s.eos_text); id && !std::count(s.eos.begin(), s.eos.end(), *id))
            s.eos.insert(s.eos.begin(), *id);
    if (s.eos.empty() && own_eos >= 0) s.eos.push_back(own_eos);
    // Ids outside this vocabulary (a config for another tokenizer) would only fail later, obscurely.
    const int n = vocab_size();
    if (s.bos >= n) s.bos = -1;
    std::erase_if(s.eos, [n](int id) { return id < 0 || id >= n; });
    m_special = std::move(s);
}

// ---- Reading the settings ---------------------------------------------------------------------------------
namespace {

using json = nlohmann::json;

std::optional<json> read_json(const std::filesystem::path& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return std::nullopt;
    json j = json::parse(io::read_text_file(path, io::max_json_file_bytes, "JSON file"), nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw format_error(path_string(path), "not a JSON object");
    return j;
}

// A token named as "text" or {"content": "text", ...}.
std::optional<std::string> token_text_of(const json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
        return (*it)["content"].get<std::string>();
    return std::nullopt;
}

// An id or a list of ids (Llama 3 lists several EOS ids).
std::vector<int> ids_of(const json& j, const char* key) {
    std::vector<int> out;
    auto it = j.find(key);
    if (it == j.end()) return out;
    auto add = [&](const json& v) {
        if (v.is_number_integer() && v.get<std::int64_t>() >= 0 && v.get<std::int64_t>() < (1 << 30))
            out.push_back(v.get<int>());
    };
    if (it->is_array())
        for (const auto& v : *it)
            add(v);
    else
        add(*it);
    return out;
}

} // namespace

special_tokens read_special_tokens(const std::filesystem::path& dir) {
    special_tokens s;
    const auto generation = read_json(dir / "generation_config.json");
    const auto config = read_json(dir / "config.json");
    for (const auto* j : {&generation, &config}) {
        if (!*j) continue;
        if (s.bos < 0)
            if (auto b = ids_of(**j, "bos_token_id"); !b.empty()) s.bos = b[0];
        for (int id : ids_of(**j, "eos_token_id"))
            if (!std::count(s.eos.begin(), s.eos.end(), id)) s.eos.push_back(id);
    }
    if (const auto tc = read_json(dir / "tokenizer_config.json")) {
        s.bos_text = token_text_of(*tc, "bos_token");
        s.eos_text = token_text_of(*tc, "eos_token");
        if (auto it = tc->find("add_bos_token"); it != tc->end() && it->is_boolean())
            s.add_bos = it->get<bool>();
        if (auto it = tc->find("add_eos_token"); it != tc->end() && it->is_boolean())
            s.add_eos = it->get<bool>();
    }
    return s;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& dir) {
    const special_tokens special = read_special_tokens(dir);
    std::error_code ec;
    const auto hf = dir / "tokenizer.json", sp = dir / "tokenizer.model";
    const bool has_sp = std::filesystem::is_regular_file(sp, ec);
    if (std::filesystem::is_regular_file(hf, ec)) {
        try {
            return load_hf_tokenizer(hf, special);
        } catch (const unsupported_error&) {
            if (!has_sp) throw; // a tokenizer.json we cannot run, and nothing else to fall back on
        }
    }
    if (has_sp) return load_sentencepiece_tokenizer(sp, special);
    throw io_error(path_string(dir), "no tokenizer.json or tokenizer.model");
}

} // namespace lorafleet::serve
