// Paged KV cache bookkeeping (see kv_cache.hpp). All operations are O(blocks touched); nothing here
// moves cached data, so a sequence's keys stay where the forward pass wrote them until it is freed.
#include "engine/serve/model/kv_cache.hpp"

#include <algorithm>

namespace lorafleet::serve {

kv_cache::kv_cache(const io::model_geometry& g, std::uint64_t budget_bytes, int block_size)
    : m_layers(g.num_layers), m_kv_heads(g.num_kv_heads), m_head_dim(g.head_dim), m_block_size(block_size) {
    if (block_size < 1 || block_size > 4096)
        throw usage_error("kv cache",
                          "block size must be between 1 and 4096, got " + std::to_string(block_size));
    const std::uint64_t per_block = bytes_per_block();
    const std::uint64_t blocks = budget_bytes / per_block;
    if (blocks == 0)
        throw kv_capacity_error("a budget of " + std::to_string(budget_bytes) + " bytes holds no block of " +
                                    std::to_string(per_block) + " bytes (" + std::to_string(block_size) +
                                    " tokens)",
                                true);
    m_total_blocks = static_cast<int>(std::min<std::uint64_t>(blocks, 1u << 30));
    const std::size_t floats = std::size_t(m_layers) * std::size_t(m_total_blocks) * block_floats();
    m_keys.reset(new float[floats]);
    m_values.reset(new float[floats]);
    m_free.reserve(std::size_t(m_total_blocks));
    for (int b = m_total_blocks - 1; b >= 0; --b)
        m_free.push_back(b); // block 0 is handed out first
}

// ---- sequences
// ---------------------------------------------------------------------------------------------
kv_cache::sequence& kv_cache::at(int seq_id) {
    auto it = m_seqs.find(seq_id);
    if (it == m_seqs.end()) throw usage_error("kv cache", "no sequence " + std::to_string(seq_id));
    return it->second;
}
const kv_cache::sequence& kv_cache::at(int seq_id) const {
    auto it = m_seqs.find(seq_id);
    if (it == m_seqs.end()) throw usage_error("kv cache", "no sequence " + std::to_string(seq_id));
    return it->second;
}

void kv_cache::add_sequence(int seq_id) {
    if (!m_seqs.emplace(seq_id, sequence{}).second)
        throw usage_error("kv cache", "sequence " + std::to_string(seq_id) + " already exists");
}

void kv_cache::free_sequence(int seq_id) {
    auto it = m_seqs.find(seq_id);
    if (it == m_seqs.end()) return;
    for (auto b = it->second.blocks.rbegin(); b != it->second.blocks.rend(); ++b)
        m_free.push_back(*b);
    m_seqs.erase(it);
}

int kv_cache::length(int seq_id) const {
    return at(seq_id).length;
}

std::vector<int> kv_cache::sequences() const {
    std::vector<int> ids;
    for (const auto& [id, s] : m_seqs)
        ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    return ids;
}

bool kv_cache::try_reserve(int seq_id, int tokens) {
    sequence& s = at(seq_id);
    if (tokens < 0) throw usage_error("kv cache", "negative token count");
    if (tokens > max_tokens())
        throw kv_capacity_error("sequence " + std::to_string(seq_id) + " needs " + std::to_string(tokens) +
                                    " tokens, but the whole cache holds " + std::to_string(max_tokens()) +
                                    " (" + std::to_string(m_total_blocks) + " blocks of " +
                                    std::to_string(m_block_size) + ")",
                                true);
    const int need = blocks_for(tokens) - static_cast<int>(s.blocks.size());
    if (need <= 0) return true;
    if (need > free_blocks()) return false;
    for (int i = 0; i < need; ++i) {
        s.blocks.push_back(m_free.back());
        m_free.pop_back();
    }
    return true;
}

void kv_cache::reserve(int seq_id, int tokens) {
    if (!try_reserve(seq_id, tokens))
        throw kv_capacity_error("sequence " + std::to_string(seq_id) + " needs " +
                                    std::to_string(blocks_for(tokens) - int(at(seq_id).blocks.size())) +
                                    " more blocks, only " + std::to_string(free_blocks()) + " are free",
                                false);
}

void kv_cache::truncate(int seq_id, int tokens) {
    sequence& s = at(seq_id);
    if (tokens < 0) throw usage_error("kv cache", "negative token count");
    s.length = std::min(s.length, tokens);
    const std::size_t keep = std::size_t(blocks_for(tokens));
    while (s.blocks.size() > keep) {
        m_free.push_back(s.blocks.back());
        s.blocks.pop_back();
    }
}

void kv_cache::set_length(int seq_id, int tokens) {
    sequence& s = at(seq_id);
    if (tokens < 0 || blocks_for(tokens) > static_cast<int>(s.blocks.size()))
        throw usage_error("kv cache", "sequence " + std::to_string(seq_id) + ": length " +
                                          std::to_string(tokens) + " was not reserved");
    s.length = tokens;
}

std::span<const int> kv_cache::block_table(int seq_id) const {
    return at(seq_id).blocks;
}

} // namespace lorafleet::serve
