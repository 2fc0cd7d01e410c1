// A paged key/value cache for many sequences under one byte budget, laid out for a continuous-batching
// scheduler: memory is a pool of fixed-size blocks (block_size tokens, all layers), and each sequence owns
// a block table mapping its positions to blocks, so sequences grow and are freed without fragmentation.
// Invariants: a block belongs to at most one sequence; a sequence of length n owns exactly
// ceil(n / block_size) blocks after trim, and at least that many while space is reserved ahead of a
// step; positions 0..length-1 hold valid keys and values (RoPE already applied to keys).
// Layout of one block in one layer: keys and values each [kv_heads, block_size, head_dim], so attention
// for one KV head walks contiguous head_dim vectors.
#pragma once

#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

namespace lorafleet::serve {

// The cache cannot hold what was asked: either never (more than the whole budget; `permanent()`) or
// not now (other sequences hold the blocks; a scheduler may wait or preempt).
class kv_capacity_error : public lorafleet::error {
public:
    kv_capacity_error(const std::string& what, bool permanent)
        : error("kv cache", what), m_permanent(permanent) {}
    bool permanent() const noexcept { return m_permanent; }

private:
    bool m_permanent;
};

class kv_cache {
public:
    // Holds as many blocks as fit in `budget_bytes`; throws kv_capacity_error when not even one does.
    kv_cache(const io::model_geometry& geometry, std::uint64_t budget_bytes, int block_size = 16);

    int block_size() const { return m_block_size; }
    int total_blocks() const { return m_total_blocks; }
    int free_blocks() const { return static_cast<int>(m_free.size()); }
    std::uint64_t bytes_per_block() const {
        return block_bytes(m_layers, m_kv_heads, m_head_dim, m_block_size);
    }
    // Bytes of one block (keys + values, all layers) for a model, to size a budget before building a cache.
    static std::uint64_t block_bytes(const io::model_geometry& g, int block_size = 16) {
        return block_bytes(g.num_layers, g.num_kv_heads, g.head_dim, block_size);
    }
    int blocks_for(int tokens) const { return (tokens + m_block_size - 1) / m_block_size; }
    int max_tokens() const { return m_total_blocks * m_block_size; } // longest sequence that could ever fit

    // ---- sequences ----
    void add_sequence(int seq_id); // usage_error when the id is in use
    bool has_sequence(int seq_id) const { return m_seqs.count(seq_id) != 0; }
    void free_sequence(int seq_id); // returns its blocks to the pool; unknown ids are ignored
    int length(int seq_id) const;   // tokens cached
    std::vector<int> sequences() const;

    // Makes room for `tokens` tokens in total (existing ones included). Returns false, changing nothing,
    // when the free blocks do not suffice now; throws kv_capacity_error (permanent) when even an empty
    // cache could not hold them.
    bool try_reserve(int seq_id, int tokens);
    void reserve(int seq_id, int tokens); // like try_reserve but throws kv_capacity_error (not permanent)
    // Forgets positions >= tokens and returns the blocks no longer needed.
    void truncate(int seq_id, int tokens);
    // Records that positions < tokens now hold valid data (they must have been reserved).
    void set_length(int seq_id, int tokens);
    std::span<const int> block_table(int seq_id) const;

    // ---- storage ----
    float* keys(int layer, int block) {
        return m_keys.get() + block_offset(layer, block);
    } // [kv_heads, block_size, head_dim]
    float* values(int layer, int block) {
        return m_values.get() + block_offset(layer, block);
    } // [kv_heads, block_size, head_dim]
    const float* keys(int layer, int block) const { return m_keys.get() + block_offset(layer, block); }
    const float* values(int layer, int block) const { return m_values.get() + block_offset(layer, block); }
    int kv_heads() const { return m_kv_heads; }
    int head_dim() const { return m_head_dim; }
    int layers() const { return m_layers; }

private:
    static std::uint64_t block_bytes(int layers, int kv_heads, int head_dim, int block_size) {
        return 2ull * std::uint64_t(layers) * std::uint64_t(kv_heads) * std::uint64_t(block_size) *
               std::uint64_t(head_dim) * sizeof(float);
    }
    struct sequence {
        int length = 0;
        std::vector<int> blocks; // block table: position p lives in blocks[p / block_size]
    };
    sequence& at(int seq_id);
    const sequence& at(int seq_id) const;
    std::size_t block_floats() const { return std::size_t(m_kv_heads) * m_block_size * m_head_dim; }
    std::size_t block_offset(int layer, int block) const {
        return (std::size_t(layer) * m_total_blocks + std::size_t(block)) * block_floats();
    }

    int m_layers = 0;
    int m_kv_heads = 0;
    int m_head_dim = 0;
    int m_block_size = 16;
    int m_total_blocks = 0;
    // Left uninitialized (pages are touched only when a block is first written).
    std::unique_ptr<float[]> m_keys;   // [layers, total_blocks, kv_heads, block_size, head_dim]
    std::unique_ptr<float[]> m_values; // [layers, total_blocks, kv_heads, block_size, head_dim]
    std::vector<int> m_free;           // free block ids (a stack: recently freed blocks are reused first)
    std::unordered_map<int, sequence> m_seqs;
};

} // namespace lorafleet::serve
