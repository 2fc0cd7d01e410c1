// CachedLoraDelta: see the header. Eviction picks, among resident adapters the current step has not
// claimed yet, the one whose last prepare() is oldest; an adapter that cannot be made resident ends the
// returned prefix and is counted neither as a hit nor as a miss.
#include "engine/serve/adapters/cached_lora_delta.hpp"

#include "engine/backend/device_twin_factories.hpp"
#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"

#include <algorithm>
#include <cstdio>

namespace lorafleet::serve {

namespace {

std::string mib(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f MiB", double(bytes) / (1024.0 * 1024.0));
    return buf;
}

} // namespace

CachedLoraDelta::CachedLoraDelta(io::model_geometry base, std::uint64_t cache_bytes)
    : m_base(std::move(base)), m_capacity(cache_bytes), m_resident(m_base) {}

CachedLoraDelta::~CachedLoraDelta() = default;

backend::device_adapters* CachedLoraDelta::device_twin() {
    if (!m_device) {
        io::fleet adapters;
        for (const entry& e : m_slots)
            adapters.push_back(e.adapter); // null for a removed slot: the twin refuses it like live() does
        m_device = backend::make_device_lora_cache(m_base, std::move(adapters), m_capacity);
    }
    return m_device.get();
}

namespace {
const char* const no_device_changes =
    "adapters cannot be added or removed while they are served on a CUDA device (the device cache does not "
    "mirror changes yet); serve with --device cpu to change adapters at runtime";
}

std::uint64_t CachedLoraDelta::resident_bytes_of(const io::peft_adapter& a) {
    std::uint64_t floats = 0;
    for (const auto& m : a.modules)
        floats += std::uint64_t(m.rank) * std::uint64_t(m.d_in + m.d_out);
    return floats * sizeof(float);
}

int CachedLoraDelta::find(std::string_view name) const {
    const auto it = m_by_name.find(name);
    return it == m_by_name.end() ? -1 : it->second;
}

std::vector<adapter_info> CachedLoraDelta::list() const {
    std::vector<adapter_info> out;
    for (const auto& [name, slot] : m_by_name) {
        const entry& e = m_slots[std::size_t(slot)];
        adapter_info info;
        info.name = name;
        info.slot = slot;
        info.source = e.adapter->dir.string();
        info.bytes = e.bytes;
        out.push_back(std::move(info));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.slot < b.slot; });
    return out;
}

const CachedLoraDelta::entry& CachedLoraDelta::live(int slot, const char* what) const {
    if (slot < 0 || std::size_t(slot) >= m_slots.size() || !m_slots[std::size_t(slot)].adapter)
        throw usage_error(what, "adapter slot " + std::to_string(slot) + " is not registered");
    return m_slots[std::size_t(slot)];
}

void CachedLoraDelta::load(int slot) {
    entry& e = m_slots[std::size_t(slot)];
    try {
        load_modules(slot, *e.adapter);
    } catch (...) {
        m_resident.erase_slot(slot); // no half-resident adapter
        throw;
    }
    e.resident = true;
    m_resident_bytes += e.bytes;
}

void CachedLoraDelta::load_modules(int slot, const io::peft_adapter& adapter) {
    for (const auto& mod : adapter.modules) {
        const auto kind = parse_module_kind(mod.short_name);
        if (!kind) // the loader checked every module against the base geometry; keep the invariant explicit
            throw shape_mismatch(adapter.dir.string(), "module " + mod.path + " is not a decoder linear");
        auto f = mod.factors_f32();
        lora_module_weights w;
        w.rank = f.rank;
        w.scale = 1.0f; // folded into b by factors_f32
        w.a = std::move(f.a);
        w.b = std::move(f.b);
        m_resident.set_module(slot, mod.layer, *kind, std::move(w));
    }
}

void CachedLoraDelta::evict(int slot) {
    entry& e = m_slots[std::size_t(slot)];
    if (!e.resident) return;
    m_resident.erase_slot(slot);
    e.resident = false;
    m_resident_bytes -= e.bytes;
}

std::size_t CachedLoraDelta::prepare(std::span<const int> slots) {
    for (const int s : slots)
        live(s, "prepare");
    if (m_device) return m_device->prepare(slots);
    const std::uint64_t tick = ++m_tick;
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const int slot = slots[i];
        entry& e = m_slots[std::size_t(slot)];
        if (e.resident) {
            ++m_hits;
            e.last_use = tick;
            continue;
        }
        // Evict, oldest first, adapters this step has not claimed (slots[0..i)) until the miss fits.
        const auto claimed = slots.first(i);
        while (m_resident_bytes + e.bytes > m_capacity) {
            int victim = -1;
            for (std::size_t s = 0; s < m_slots.size(); ++s) {
                const entry& r = m_slots[s];
                if (!r.resident || std::find(claimed.begin(), claimed.end(), int(s)) != claimed.end())
                    continue;
                if (victim < 0 || r.last_use < m_slots[std::size_t(victim)].last_use) victim = int(s);
            }
            if (victim < 0) return i; // the claimed prefix fills the cache
            evict(victim);
            ++m_evictions;
        }
        load(slot);
        ++m_misses;
        e.last_use = tick;
    }
    return slots.size();
}

namespace {
// What CachedLoraDelta::prepare_add hands to install: the mapped, validated adapter and its cache size.
struct raw_prepared final : prepared_adapter {
    std::shared_ptr<const io::peft_adapter> adapter;
    std::uint64_t bytes = 0;
};
} // namespace

std::unique_ptr<prepared_adapter> CachedLoraDelta::prepare_add(const std::filesystem::path& peft_dir,
                                                               const std::string& name) const {
    if (name.empty()) throw usage_error(peft_dir.string(), "an adapter needs a non-empty name");
    io::peft_load_options options;
    options.base = &m_base;
    auto adapter = std::make_shared<const io::peft_adapter>(io::load_peft_adapter(peft_dir, options));
    const std::uint64_t bytes = resident_bytes_of(*adapter);
    if (bytes > m_capacity)
        throw validation_error(peft_dir.string(),
                               "adapter '" + name + "' needs " + mib(bytes) +
                                   " of float32 factors, more than the whole adapter cache (" +
                                   mib(m_capacity) + ")");
    auto out = std::make_unique<raw_prepared>();
    out->adapter = std::move(adapter);
    out->bytes = bytes;
    out->name = name;
    out->source = peft_dir.string();
    return out;
}

adapter_info CachedLoraDelta::install(std::unique_ptr<prepared_adapter> prepared) {
    auto* p = dynamic_cast<raw_prepared*>(prepared.get());
    if (!p) throw usage_error("adapter cache", "install() got an adapter prepared by another provider");
    if (m_by_name.count(p->name))
        throw usage_error(p->source, "an adapter named '" + p->name + "' is already registered");
    if (m_device) throw unsupported_error(p->source, no_device_changes);
    int slot = int(m_slots.size());
    entry e{p->name, std::move(p->adapter), p->bytes, false, 0};
    if (!m_free.empty()) {
        const auto lowest = std::min_element(m_free.begin(), m_free.end());
        slot = *lowest;
        m_free.erase(lowest);
        m_slots[std::size_t(slot)] = std::move(e);
    } else {
        m_slots.push_back(std::move(e));
    }
    m_by_name.emplace(p->name, slot);
    adapter_info info;
    info.name = p->name;
    info.slot = slot;
    info.source = p->source;
    info.bytes = p->bytes;
    return info;
}

bool CachedLoraDelta::remove(std::string_view name) {
    const auto it = m_by_name.find(name);
    if (it == m_by_name.end()) return false;
    if (m_device) throw unsupported_error(std::string(name), no_device_changes);
    const int slot = it->second;
    evict(slot);
    m_slots[std::size_t(slot)].adapter.reset(); // unmaps the file once nothing else holds it
    m_by_name.erase(it);
    m_free.push_back(slot);
    return true;
}

adapter_memory_stats CachedLoraDelta::memory() const {
    adapter_memory_stats s;
    s.resident_bytes = m_resident_bytes;
    s.capacity_bytes = m_capacity;
    s.hits = m_hits;
    s.misses = m_misses;
    s.evictions = m_evictions;
    for (const auto& e : m_slots)
        s.resident_adapters += e.resident ? 1 : 0;
    if (m_device) { // the device cache serves: its capacity and counters
        const backend::device_adapter_counters c = m_device->counters();
        s.capacity_bytes = c.capacity_bytes;
        s.hits = c.hits;
        s.misses = c.misses;
    }
    return s;
}

bool CachedLoraDelta::is_resident(int slot) const {
    return slot >= 0 && std::size_t(slot) < m_slots.size() && m_slots[std::size_t(slot)].resident;
}

void CachedLoraDelta::apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
                            std::span<const int> token_adapter, worker_pool* pool) {
    int checked = -1; // token_adapter is mostly runs of one slot: check each run once
    for (int t = 0; t < n_tokens; ++t) {
        const int slot = token_adapter[std::size_t(t)];
        if (slot < 0 || slot == checked) continue;
        if (!is_resident(slot))
            throw usage_error("adapter cache", "adapter slot " + std::to_string(slot) +
                                                   " is not resident (prepare() was not called for it)");
        checked = slot;
    }
    m_resident.apply(layer, m, x, y, n_tokens, token_adapter, pool);
}

} // namespace lorafleet::serve
