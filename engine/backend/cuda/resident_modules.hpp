// The host side of the CUDA ops' multi-module resident cache (issue 15 item 2): which uploaded modules
// stay on the device across passes. Plain C++ (no CUDA), tested on the CPU.
//  - resident_key: a module's identity that does NOT depend on host pointers (the module source re-reads
//    a module on every pass, so its spans move): name, shapes, adapter ranks and a 64-bit fingerprint of
//    every factor value (a changed value changes the key; a re-read with equal content keeps it). While
//    hashing, the values are also tested for the narrowest storage that holds EVERY one of them exactly
//    (bf16, else fp16, else fp32; all_exact over kernels/half_elements.hpp's bit tests), carried in the
//    key as a non-identity field: a module of bf16 / fp16 PEFT factors can be cached in 16 bits with no
//    rounding at all (the GPU then still computes on the very values the CPU does).
//  - resident_lru<V>: entries V (a module's device buffers) by key under a byte budget, least recently
//    used evicted first. put() never caches an entry larger than the budget (the caller frees it: that
//    module is streamed, uploaded on every use); take() moves an entry out (the selected module lives
//    outside the cache while in use and is put back when another module is selected).
// Not thread-safe: the owner serializes calls.
#pragma once

#include "engine/compress/module_batch.hpp"
#include "kernels/half_elements.hpp"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace lorafleet::backend {

// 64-bit streaming hash over bytes: four independent multiply-rotate lanes over 8-byte words (fast
// enough to fingerprint a module's factors at memory speed), folded with the length. Not cryptographic.
class content_hash {
public:
    void add(const void* data, std::size_t bytes) {
        const auto* p = static_cast<const unsigned char*>(data);
        std::size_t i = 0;
        for (; i + 32 <= bytes; i += 32)
            for (int l = 0; l < 4; ++l)
                m_lane[l] = round(m_lane[l], word(p + i + 8 * static_cast<std::size_t>(l)));
        for (; i + 8 <= bytes; i += 8)
            m_lane[0] = round(m_lane[0], word(p + i));
        std::uint64_t tail = 0;
        if (i < bytes) {
            std::memcpy(&tail, p + i, bytes - i);
            m_lane[1] = round(m_lane[1], tail ^ (bytes - i));
        }
        m_length += bytes;
    }
    void add_int(std::int64_t v) { add(&v, sizeof v); }
    std::uint64_t value() const {
        std::uint64_t h = m_length * prime5;
        for (auto l : m_lane)
            h = (h ^ round(0, l)) * prime1 + prime4;
        h ^= h >> 33;
        h *= prime2;
        h ^= h >> 29;
        h *= prime3;
        return h ^ (h >> 32);
    }

private:
    static constexpr std::uint64_t prime1 = 0x9E3779B185EBCA87ull, prime2 = 0xC2B2AE3D27D4EB4Full,
                                   prime3 = 0x165667B19E3779F9ull, prime4 = 0x85EBCA77C2B2AE63ull,
                                   prime5 = 0x27D4EB2F165667C5ull;
    static std::uint64_t word(const unsigned char* p) {
        std::uint64_t w;
        std::memcpy(&w, p, sizeof w);
        return w;
    }
    static std::uint64_t round(std::uint64_t acc, std::uint64_t w) {
        acc += w * prime2;
        acc = (acc << 31) | (acc >> 33);
        return acc * prime1;
    }
    std::uint64_t m_lane[4] = {prime1 + prime2, prime2, 0, 0 - prime1};
    std::uint64_t m_length = 0;
};

// Whether every one of n floats is exact in storage E (kernels::bf16_bits or kernels::fp16_bits): the
// bit tests of kernels/half_elements.hpp over blocks of 4096 values (branch-free inside a block, so the
// compiler vectorizes it), stopping after the first block with a value that is not.
template <class E> bool exact_element(float x) {
    if constexpr (std::is_same_v<E, kernels::bf16_bits>)
        return kernels::bf16_exact(x);
    else
        return kernels::fp16_exact(x);
}

template <class E> bool all_exact(const float* p, std::size_t n) {
    constexpr std::size_t block = 4096;
    std::size_t i = 0;
    for (; i + block <= n; i += block) {
        const float* q = p + i;
        unsigned bad = 0;
        for (std::size_t j = 0; j < block; ++j) // a fixed trip count: vectorized at -O2
            bad |= unsigned(!exact_element<E>(q[j]));
        if (bad != 0) return false;
    }
    unsigned bad = 0;
    for (; i < n; ++i)
        bad |= unsigned(!exact_element<E>(p[i]));
    return bad == 0;
}

template <class E> bool all_exact(const compress::adapter_factors& f) {
    return all_exact<E>(f.a.data(), f.a.size()) && all_exact<E>(f.b.data(), f.b.size());
}

// Runs fn(from, to) over [0, n) split into `threads` contiguous ranges (the calling thread takes the
// first). Fork-join.
template <class Fn> void for_ranges(std::size_t n, unsigned threads, Fn&& fn) {
    if (threads <= 1) {
        fn(std::size_t(0), n);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(threads - 1);
    const auto cut = [&](unsigned t) { return n * t / threads; };
    for (unsigned t = 1; t < threads; ++t)
        pool.emplace_back([&fn, from = cut(t), to = cut(t + 1)] { fn(from, to); });
    fn(0, cut(1));
    for (auto& th : pool)
        th.join();
}

struct resident_key {
    std::string name;
    std::int64_t d_out = -1, d_in = -1;
    std::vector<std::int64_t> ranks;
    std::uint64_t fingerprint = 0;
    // Not part of the identity (a function of the hashed values): the narrowest storage that represents
    // every factor value of the module exactly.
    kernels::device_precision exact_storage = kernels::device_precision::fp32;

    bool operator==(const resident_key& o) const {
        return std::tie(fingerprint, d_out, d_in, name, ranks) ==
               std::tie(o.fingerprint, o.d_out, o.d_in, o.name, o.ranks);
    }
};

// The key of a batch: every value of every adapter's lora_A and lora_B is hashed (one hash per adapter,
// then the module's hash over the name, shapes, ranks and those in batch order, so the key does not
// depend on `threads`). threads = 0: up to 8 hardware threads for a module of 16 MB or more (one thread
// hashes ~6 GB/s: a 1000-adapter Mistral q module, 0.5 GB, ~85 ms alone), else 1. Fork-join only.
// exact_storage, in two phases: each adapter's bf16 test runs beside its hash (one cheap bit test per value,
// on the values the hash is reading); only when some adapter is not all bf16 does a second pass test fp16
// (over the same thread split, every range stopping once any value failed). The answer is a function of
// the values alone: the same for any `threads`.
inline resident_key resident_key_of(const compress::module_batch& batch, unsigned threads = 0) {
    resident_key k{batch.name, batch.d_out, batch.d_in, {}, 0, kernels::device_precision::fp32};
    const std::size_t n = batch.size();
    std::size_t bytes = 0;
    for (const auto& f : batch.adapters)
        bytes += f.a.size_bytes() + f.b.size_bytes();
    if (threads == 0)
        threads =
            bytes < (std::size_t(16) << 20) ? 1u : std::clamp(std::thread::hardware_concurrency(), 1u, 8u);
    threads = static_cast<unsigned>(std::min<std::size_t>(threads, std::max<std::size_t>(n, 1)));
    std::vector<std::uint64_t> per_adapter(n);
    std::vector<unsigned char> bf16(n, 0);
    for_ranges(n, threads, [&](std::size_t from, std::size_t to) {
        for (std::size_t p = from; p < to; ++p) {
            const auto& f = batch.adapters[p];
            content_hash h;
            h.add(f.a.data(), f.a.size_bytes());
            h.add(f.b.data(), f.b.size_bytes());
            per_adapter[p] = h.value();
            bf16[p] = all_exact<kernels::bf16_bits>(f) ? 1 : 0;
        }
    });
    content_hash h;
    h.add(batch.name.data(), batch.name.size());
    h.add_int(batch.d_out);
    h.add_int(batch.d_in);
    k.ranks.reserve(n);
    for (std::size_t p = 0; p < n; ++p) {
        k.ranks.push_back(batch.adapters[p].rank);
        h.add_int(batch.adapters[p].rank);
        h.add(&per_adapter[p], sizeof per_adapter[p]);
    }
    k.fingerprint = h.value();
    if (std::all_of(bf16.begin(), bf16.end(), [](unsigned char b) { return b != 0; })) {
        k.exact_storage = kernels::device_precision::bf16;
    } else {
        std::atomic<bool> fp16{true};
        for_ranges(n, threads, [&](std::size_t from, std::size_t to) {
            for (std::size_t p = from; p < to && fp16.load(std::memory_order_relaxed); ++p)
                if (!all_exact<kernels::fp16_bits>(batch.adapters[p])) fp16 = false;
        });
        if (fp16) k.exact_storage = kernels::device_precision::fp16;
    }
    return k;
}

// Device bytes of a batch's resident copy: T_u and T_v stored in `storage` (fp32: as computed on; bf16 /
// fp16: half that, for a cached module whose key says the format is exact).
inline std::size_t resident_bytes_of(const compress::module_batch& batch,
                                     kernels::device_precision storage = kernels::device_precision::fp32) {
    std::int64_t total = 0;
    for (const auto& f : batch.adapters)
        total += f.rank;
    return static_cast<std::size_t>((batch.d_out + batch.d_in) * total) *
           static_cast<std::size_t>(kernels::element_bytes(storage));
}

template <class V> class resident_lru {
public:
    explicit resident_lru(std::size_t budget_bytes = 0) : m_budget(budget_bytes) {}

    std::size_t budget_bytes() const { return m_budget; }
    std::size_t used_bytes() const { return m_used; }
    std::size_t size() const { return m_entries.size(); }
    std::size_t hits() const { return m_hits; }
    std::size_t misses() const { return m_misses; }
    std::size_t evictions() const { return m_evictions; }
    // Whether an entry of `bytes` could be cached at all.
    bool cacheable(std::size_t bytes) const { return bytes <= m_budget; }
    bool contains(const resident_key& k) const { return find(k) != m_entries.end(); }
    // Keys from most to least recently used (tests, logs).
    std::vector<resident_key> order() const {
        std::vector<resident_key> keys;
        for (const auto& e : m_entries)
            keys.push_back(e.key);
        return keys;
    }
    // fn(key, bytes, value) for every entry, most recently used first (counters).
    template <class Fn> void for_each(Fn&& fn) const {
        for (const auto& e : m_entries)
            fn(e.key, e.bytes, e.value);
    }

    // Moves the entry with key `k` out of the cache (a hit) or returns nullopt (a miss).
    std::optional<V> take(const resident_key& k) {
        auto it = find(k);
        if (it == m_entries.end()) {
            ++m_misses;
            return std::nullopt;
        }
        ++m_hits;
        V v = std::move(it->value);
        m_used -= it->bytes;
        m_entries.erase(it);
        return v;
    }

    // Caches `v` as the most recently used entry, evicting least recently used ones until it fits.
    // Returns the evicted values (and `v` itself when it is larger than the whole budget) for the caller
    // to free in its own order; an entry already cached under `k` is replaced (returned too).
    std::vector<V> put(resident_key k, std::size_t bytes, V v) {
        std::vector<V> out;
        if (auto it = find(k); it != m_entries.end()) {
            m_used -= it->bytes;
            out.push_back(std::move(it->value));
            m_entries.erase(it);
        }
        if (!cacheable(bytes)) {
            out.push_back(std::move(v));
            return out;
        }
        while (m_used + bytes > m_budget && !m_entries.empty())
            out.push_back(*evict_one_value());
        m_entries.push_front({std::move(k), bytes, std::move(v)});
        m_used += bytes;
        return out;
    }

    // A new budget; least recently used entries beyond it are evicted and returned.
    std::vector<V> set_budget(std::size_t budget_bytes) {
        m_budget = budget_bytes;
        std::vector<V> out;
        while (m_used > m_budget)
            out.push_back(*evict_one_value());
        return out;
    }

    // Evicts the least recently used entry (device memory pressure); nullopt when empty.
    std::optional<V> evict_one() {
        if (m_entries.empty()) return std::nullopt;
        return evict_one_value();
    }

    void clear() {
        m_entries.clear();
        m_used = 0;
    }

private:
    struct entry {
        resident_key key;
        std::size_t bytes = 0;
        V value;
    };
    std::optional<V> evict_one_value() {
        auto last = std::prev(m_entries.end());
        V v = std::move(last->value);
        m_used -= last->bytes;
        m_entries.erase(last);
        ++m_evictions;
        return v;
    }
    typename std::list<entry>::const_iterator find(const resident_key& k) const {
        for (auto it = m_entries.begin(); it != m_entries.end(); ++it)
            if (it->key == k) return it;
        return m_entries.end();
    }
    typename std::list<entry>::iterator find(const resident_key& k) {
        for (auto it = m_entries.begin(); it != m_entries.end(); ++it)
            if (it->key == k) return it;
        return m_entries.end();
    }

    std::size_t m_budget = 0;
    std::size_t m_used = 0;
    std::size_t m_hits = 0, m_misses = 0, m_evictions = 0;
    std::list<entry> m_entries; // front: most recently used
};

} // namespace lorafleet::backend
