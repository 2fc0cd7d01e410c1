// HybridDelta: see the header.
#include "engine/serve/adapters/hybrid_delta.hpp"

#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"

#include <algorithm>

namespace lorafleet::serve {

HybridDelta::HybridDelta(std::unique_ptr<AdapterProvider> compressed, std::unique_ptr<AdapterProvider> raw)
    : m_compressed(std::move(compressed)), m_raw(std::move(raw)) {
    if (!m_compressed || !m_raw) throw usage_error("hybrid serving", "needs a bank and a raw provider");
    for (const auto& a : m_raw->list())
        if (m_compressed->find(a.name) < 0) throw usage_error(a.name, "served raw but not in the bank");
    for (const auto& a : m_compressed->list())
        route(a.slot, a.name);
}

void HybridDelta::route(int slot, std::string_view name) {
    if (slot < 0) return;
    if (m_raw_slot.size() <= std::size_t(slot)) m_raw_slot.resize(std::size_t(slot) + 1, -1);
    m_raw_slot[std::size_t(slot)] = m_raw->find(name);
}

int HybridDelta::raw_adapters() const {
    return int(std::count_if(m_raw_slot.begin(), m_raw_slot.end(), [](int s) { return s >= 0; }));
}

std::vector<adapter_info> HybridDelta::list() const {
    std::vector<adapter_info> out = m_compressed->list();
    const auto raw = m_raw->list();
    for (auto& a : out) {
        a.serving = is_raw(a.slot) ? "raw" : "compressed";
        if (!is_raw(a.slot)) continue;
        for (const auto& r : raw)
            if (r.name == a.name) {
                a.bytes = r.bytes;
                a.source = r.source;
            }
    }
    return out;
}

std::size_t HybridDelta::prepare(std::span<const int> slots) {
    // The bank's adapters are always resident; the raw ones in priority order, as far as the cache holds
    // them together. The prefix ends at the first raw-served slot that did not fit.
    m_prep_raw.clear();
    for (const int s : slots)
        if (is_raw(s)) m_prep_raw.push_back(m_raw_slot[std::size_t(s)]);
    m_compressed->prepare(slots);
    const std::size_t fit = m_prep_raw.empty() ? 0 : m_raw->prepare(m_prep_raw);
    std::size_t raw_seen = 0;
    for (std::size_t i = 0; i < slots.size(); ++i)
        if (is_raw(slots[i]) && raw_seen++ == fit) return i;
    return slots.size();
}

adapter_info HybridDelta::install(std::unique_ptr<prepared_adapter> prepared) {
    adapter_info info = m_compressed->install(std::move(prepared));
    route(info.slot, info.name);
    info.serving = is_raw(info.slot) ? "raw" : "compressed";
    return info;
}

bool HybridDelta::remove(std::string_view name) {
    const int slot = m_compressed->find(name);
    if (slot < 0) return false;
    if (is_raw(slot)) m_raw->remove(name);
    m_compressed->remove(name);
    m_raw_slot[std::size_t(slot)] = -1;
    return true;
}

adapter_memory_stats HybridDelta::memory() const {
    const auto c = m_compressed->memory();
    const auto r = m_raw->memory();
    adapter_memory_stats out;
    out.resident_bytes = c.resident_bytes + r.resident_bytes;
    out.capacity_bytes = c.capacity_bytes + r.capacity_bytes;
    out.hits = r.hits;
    out.misses = r.misses;
    out.evictions = r.evictions;
    out.resident_adapters = c.resident_adapters + r.resident_adapters;
    return out;
}

bool HybridDelta::split(std::span<const int> token_adapter) {
    const std::size_t n = token_adapter.size();
    m_tok_bank.resize(n);
    m_tok_raw.resize(n);
    bool any_raw = false;
    for (std::size_t t = 0; t < n; ++t) {
        const int s = token_adapter[t];
        const bool raw = is_raw(s);
        any_raw = any_raw || raw;
        m_tok_bank[t] = raw ? -1 : s;
        m_tok_raw[t] = raw ? m_raw_slot[std::size_t(s)] : -1;
    }
    return any_raw;
}

void HybridDelta::apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
                        std::span<const int> token_adapter, worker_pool* pool) {
    const bool any_raw = split(token_adapter.first(std::size_t(n_tokens)));
    if (std::any_of(m_tok_bank.begin(), m_tok_bank.end(), [](int s) { return s >= 0; }))
        m_compressed->apply(layer, m, x, y, n_tokens, m_tok_bank, pool);
    if (any_raw) m_raw->apply(layer, m, x, y, n_tokens, m_tok_raw, pool);
}

bool HybridDelta::fuse(int layer, module_kind m, const float* x, float* y, int n_tokens,
                       std::span<const int> token_adapter, int workers, fused_delta& out) {
    // Fused only when every adapter token of the step is the bank's: the raw update runs after the whole
    // base product, as in raw serving.
    if (split(token_adapter.first(std::size_t(n_tokens)))) return false;
    return m_compressed->fuse(layer, m, x, y, n_tokens, m_tok_bank, workers, out);
}

std::unique_ptr<AdapterProvider> open_hybrid_bank(bank::compressed_bank bank, const io::model_geometry& base,
                                                  const std::string& where,
                                                  const std::filesystem::path& bank_dir,
                                                  std::uint64_t raw_cache_bytes) {
    namespace fs = std::filesystem;
    std::vector<std::pair<std::string, fs::path>> raw;
    for (const auto& name : bank.raw_adapters) {
        const auto index = bank.find_adapter(name);
        if (!index) throw validation_error(where, "raw adapter '" + name + "' is not in the bank");
        const std::string& source = bank.adapters[*index].source;
        std::error_code ec;
        fs::path dir(source);
        if (!source.empty() && !fs::is_directory(dir, ec) && dir.is_relative() && !bank_dir.empty()) {
            const fs::path beside = fs::absolute(bank_dir, ec).lexically_normal().parent_path() / dir;
            if (fs::is_directory(beside, ec)) dir = beside;
        }
        if (source.empty() || !fs::is_directory(dir, ec))
            throw io_error(name, "served raw, but its source folder '" + source + "' is gone");
        raw.emplace_back(name, dir);
    }
    const bool hybrid = !raw.empty();
    auto compressed = std::make_unique<BankDelta>(std::move(bank), base, where);
    if (!hybrid) return compressed;
    std::uint64_t capacity = raw_cache_bytes;
    if (capacity == 0) {
        for (const auto& [name, dir] : raw)
            capacity += CachedLoraDelta::resident_bytes_of(io::load_peft_adapter(dir));
    }
    auto cache = std::make_unique<CachedLoraDelta>(base, capacity);
    for (const auto& [name, dir] : raw)
        cache->add(dir, name);
    return std::make_unique<HybridDelta>(std::move(compressed), std::move(cache));
}

} // namespace lorafleet::serve
