// BankDelta: see the header. The bank's adapters and cores are moved out of the compressed_bank into
// per-slot storage at construction, so that remove() frees an adapter's cores and the compressed_bank
// left behind (modules and bases only) is exactly what bank_builder's add_adapters projects onto.
#include "engine/serve/bank_delta.hpp"

#include "engine/bank/bank_builder.hpp"
#include "engine/compress/backend_registry.hpp"
#include "engine/compress/peft_module_source.hpp"
#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/gemm.hpp"

#include <algorithm>
#include <immintrin.h>

namespace lorafleet::serve {

namespace {

// y[o] += a * x[o] for o < n. The default build is -O2, where GCC does not vectorize this loop (it
// cannot rule out aliasing cheaply), and it is the hot loop of the expand product: 8-wide AVX where the
// CPU has it. Multiply then add, like the scalar loop (no FMA), so both paths give the same bits.
[[gnu::target("avx")]] void axpy_avx(int n, float a, const float* __restrict x, float* __restrict y) {
    const __m256 va = _mm256_set1_ps(a);
    int o = 0;
    for (; o + 8 <= n; o += 8)
        _mm256_storeu_ps(y + o,
                         _mm256_add_ps(_mm256_loadu_ps(y + o), _mm256_mul_ps(va, _mm256_loadu_ps(x + o))));
    for (; o < n; ++o)
        y[o] += a * x[o];
}

void axpy_portable(int n, float a, const float* __restrict x, float* __restrict y) {
    for (int o = 0; o < n; ++o)
        y[o] += a * x[o];
}

using axpy_fn = void (*)(int, float, const float* __restrict, float* __restrict);

axpy_fn axpy_kernel() {
    static const axpy_fn fn = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx") ? axpy_avx : axpy_portable;
    }();
    return fn;
}

std::string shape_text(std::int64_t d_out, std::int64_t d_in) {
    return "[" + std::to_string(d_out) + ", " + std::to_string(d_in) + "]";
}

} // namespace

std::uint64_t BankDelta::slot_entry::bytes() const {
    std::uint64_t n = 0;
    for (const auto& c : cores)
        n += c.size() * sizeof(float);
    return n;
}

BankDelta::BankDelta(bank::compressed_bank bank, io::model_geometry base, const std::string& where,
                     int threads)
    : m_bank(std::move(bank)), m_base(std::move(base)), m_pool(std::make_unique<worker_pool>(threads)) {
    m_bank.validate(where);
    m_module_index.assign(std::size_t(std::max(m_base.num_layers, 0)), {});
    for (auto& row : m_module_index)
        row.fill(-1);
    for (std::size_t m = 0; m < m_bank.modules.size(); ++m) {
        const auto& mod = m_bank.modules[m];
        const auto kind = parse_module_kind(mod.short_name);
        if (!kind)
            throw shape_mismatch(where,
                                 "bank module " + mod.path + " is not a decoder linear of " + m_base.name);
        if (mod.layer < 0 || mod.layer >= m_base.num_layers)
            throw shape_mismatch(where, "bank module " + mod.path + " is in layer " +
                                            std::to_string(mod.layer) + " but the base model " + m_base.name +
                                            " has " + std::to_string(m_base.num_layers) + " layers");
        const auto shape = m_base.linear_shape(mod.short_name);
        if (!shape || shape->d_out != mod.d_out || shape->d_in != mod.d_in)
            throw shape_mismatch(where, "bank module " + mod.path + " is " + shape_text(mod.d_out, mod.d_in) +
                                            " but " +
                                            (shape ? shape_text(shape->d_out, shape->d_in) : "absent") +
                                            " in the base model " + m_base.name);
        int& index = m_module_index[std::size_t(mod.layer)][std::size_t(*kind)];
        if (index >= 0) throw format_error(where, "bank module " + mod.path + " appears twice");
        index = int(m);
    }
    auto adapters = std::move(m_bank.adapters);
    m_bank.adapters.clear();
    for (std::size_t i = 0; i < adapters.size(); ++i)
        take_slot(std::move(adapters[i]), i);
    for (auto& c : m_bank.cores) {
        c.clear();
        c.shrink_to_fit();
    }
    const int r = m_bank.rank;
    m_ut.resize(m_bank.modules.size());
    for (std::size_t m = 0; m < m_bank.modules.size(); ++m) {
        const std::size_t d_out = std::size_t(m_bank.modules[m].d_out);
        m_ut[m].resize(m_bank.bases[m].size());
        for (std::size_t c = 0; c < m_bank.bases[m].size(); ++c) {
            const auto& basis = m_bank.bases[m][c];
            if (basis.empty()) continue;
            auto& ut = m_ut[m][c];
            ut.resize(d_out * std::size_t(r));
            for (std::size_t o = 0; o < d_out; ++o)
                for (int p = 0; p < r; ++p)
                    ut[std::size_t(p) * d_out + o] = basis.u[o * std::size_t(r) + std::size_t(p)];
        }
    }
}

BankDelta::~BankDelta() = default;

int BankDelta::take_slot(bank::bank_adapter adapter, std::size_t bank_index) {
    slot_entry e;
    e.cores.resize(m_bank.modules.size());
    const auto cs = std::size_t(m_bank.core_size());
    for (std::size_t m = 0; m < m_bank.modules.size(); ++m)
        if (adapter.has_module(m)) {
            const float* core = m_bank.core(m, bank_index);
            e.cores[m].assign(core, core + cs);
        }
    e.adapter = std::move(adapter);
    const int slot = int(m_slots.size());
    if (m_by_name.count(e.adapter.name))
        throw format_error(e.adapter.source, "adapter name '" + e.adapter.name + "' appears twice");
    const std::string name = e.adapter.name;
    const std::uint64_t bytes = e.bytes();
    m_slots.push_back(std::move(e));
    m_by_name.emplace(name, slot);
    m_live_core_bytes += bytes;
    ++m_live_count;
    return slot;
}

const BankDelta::slot_entry& BankDelta::live(int slot, const char* what) const {
    if (slot < 0 || std::size_t(slot) >= m_slots.size() || !m_slots[std::size_t(slot)].alive)
        throw usage_error(what, "adapter slot " + std::to_string(slot) + " is not in the bank");
    return m_slots[std::size_t(slot)];
}

int BankDelta::find(std::string_view name) const {
    const auto it = m_by_name.find(name);
    return it == m_by_name.end() ? -1 : it->second;
}

adapter_info BankDelta::info_of(int slot) const {
    const slot_entry& e = m_slots[std::size_t(slot)];
    adapter_info info;
    info.name = e.adapter.name;
    info.slot = slot;
    info.source = e.adapter.source;
    info.cluster = e.adapter.cluster;
    info.error = e.adapter.mean_error();
    info.bytes = e.bytes();
    return info;
}

std::vector<adapter_info> BankDelta::list() const {
    std::vector<adapter_info> out;
    for (std::size_t s = 0; s < m_slots.size(); ++s)
        if (m_slots[s].alive) out.push_back(info_of(int(s)));
    return out;
}

std::size_t BankDelta::prepare(std::span<const int> slots) {
    for (const int s : slots)
        live(s, "prepare");
    return slots.size(); // everything is resident
}

adapter_info BankDelta::add(const std::filesystem::path& peft_dir, const std::string& name) {
    if (name.empty()) throw usage_error(peft_dir.string(), "an adapter needs a non-empty name");
    if (find(name) >= 0)
        throw usage_error(peft_dir.string(), "an adapter named '" + name + "' is already in the bank");
    io::peft_load_options options;
    options.base = &m_base;
    auto adapter = std::make_shared<const io::peft_adapter>(io::load_peft_adapter(peft_dir, options));
    compress::PeftModuleSource source({adapter}, 1);
    if (!m_backend) m_backend = compress::make_compress_backend("cpu", 1);
    // m_bank holds no adapters, so the projection lands at index 0; take it out again at once.
    bank::add_adapters(m_bank, source, *m_backend);
    bank::bank_adapter added = std::move(m_bank.adapters.front());
    added.name = name;
    int slot = -1;
    try {
        slot = take_slot(std::move(added), 0);
    } catch (...) {
        m_bank.adapters.clear();
        for (auto& c : m_bank.cores)
            c.clear();
        throw;
    }
    m_bank.adapters.clear();
    for (auto& c : m_bank.cores)
        c.clear();
    return info_of(slot);
}

bool BankDelta::remove(std::string_view name) {
    const int slot = find(name);
    if (slot < 0) return false;
    slot_entry& e = m_slots[std::size_t(slot)];
    e.alive = false;
    m_by_name.erase(e.adapter.name);
    m_live_core_bytes -= e.bytes();
    --m_live_count;
    e.cores.clear();
    e.cores.shrink_to_fit();
    return true;
}

adapter_memory_stats BankDelta::memory() const {
    adapter_memory_stats s;
    std::uint64_t bytes = 0;
    for (const auto& per_module : m_bank.bases)
        for (const auto& b : per_module)
            bytes += (b.u.size() + b.vt.size()) * sizeof(float);
    for (const auto& per_module : m_ut)
        for (const auto& ut : per_module)
            bytes += ut.size() * sizeof(float);
    bytes += m_live_core_bytes;
    s.resident_adapters = int(m_live_count);
    s.resident_bytes = bytes;
    s.capacity_bytes = bytes;
    return s;
}

void BankDelta::apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
                      std::span<const int> token_adapter) {
    if (layer < 0 || std::size_t(layer) >= m_module_index.size()) return;
    const int mi = m_module_index[std::size_t(layer)][std::size_t(m)];
    if (mi < 0) return;

    m_members.resize(std::size_t(m_bank.clusters));
    for (auto& members : m_members)
        members.clear();
    for (int t = 0; t < n_tokens; ++t) {
        const int slot = token_adapter[std::size_t(t)];
        if (slot < 0) continue;
        const slot_entry& e = live(slot, "bank adapter");
        if (e.cores[std::size_t(mi)].empty()) continue; // the adapter lacks this module
        m_members[std::size_t(e.adapter.cluster)].push_back(t);
    }
    m_active.clear();
    for (int c = 0; c < m_bank.clusters; ++c)
        if (!m_members[std::size_t(c)].empty() && !m_bank.bases[std::size_t(mi)][std::size_t(c)].empty())
            m_active.push_back(c);
    if (m_active.empty()) return;
    m_scratch.resize(std::size_t(m_pool->size()));
    if (m_active.size() == 1) {
        apply_cluster(mi, m_active.front(), x, y, token_adapter, m_scratch.front());
        return;
    }
    // Clusters own disjoint token rows of y, so they can run on any thread in any order.
    m_pool->run(m_active.size(), [&](std::size_t item, int worker) {
        apply_cluster(mi, m_active[item], x, y, token_adapter, m_scratch[std::size_t(worker)]);
    });
}

void BankDelta::apply_cluster(int mi, int c, const float* x, float* y, std::span<const int> token_adapter,
                              cluster_scratch& s) {
    const auto& mod = m_bank.modules[std::size_t(mi)];
    const int d_in = int(mod.d_in), d_out = int(mod.d_out), r = m_bank.rank;
    const bool full = m_bank.kind == bank::method::jd_full;
    const auto& rows = m_members[std::size_t(c)];
    const auto& basis = m_bank.bases[std::size_t(mi)][std::size_t(c)];
    const int nc = int(rows.size());
    s.xc.resize(std::size_t(nc) * d_in);
    s.z.resize(std::size_t(nc) * r);
    s.w.resize(std::size_t(nc) * r);
    s.yc.resize(std::size_t(d_out));
    for (int j = 0; j < nc; ++j)
        std::copy_n(x + std::size_t(rows[std::size_t(j)]) * d_in, d_in, s.xc.data() + std::size_t(j) * d_in);
    // Z = X_c · V_c: Vᵀ is [r, d_in] row-major, the "w" layout of gemm_nt.
    gemm_nt(nc, r, d_in, 1.0f, s.xc.data(), d_in, basis.vt.data(), d_in, s.z.data(), r, false);
    for (int j = 0; j < nc; ++j) {
        const int slot = token_adapter[std::size_t(rows[std::size_t(j)])];
        const float* core = m_slots[std::size_t(slot)].cores[std::size_t(mi)].data();
        const float* z = s.z.data() + std::size_t(j) * r;
        float* w = s.w.data() + std::size_t(j) * r;
        if (full) {
            for (int p = 0; p < r; ++p) {
                float acc = 0.0f;
                for (int q = 0; q < r; ++q)
                    acc += core[std::size_t(p) * r + q] * z[q];
                w[p] = acc;
            }
        } else {
            for (int p = 0; p < r; ++p)
                w[p] = core[p] * z[p];
        }
    }
    // ΔY = W · U_cᵀ, per token: Σ_p w_p · (row p of U_cᵀ), vectorized over d_out, summed in order of p.
    const float* ut = m_ut[std::size_t(mi)][std::size_t(c)].data();
    float* dy = s.yc.data();
    const axpy_fn axpy = axpy_kernel();
    for (int j = 0; j < nc; ++j) {
        const float* w = s.w.data() + std::size_t(j) * r;
        std::fill_n(dy, d_out, 0.0f);
        for (int p = 0; p < r; ++p)
            axpy(d_out, w[p], ut + std::size_t(p) * d_out, dy);
        axpy(d_out, 1.0f, dy, y + std::size_t(rows[std::size_t(j)]) * d_out);
    }
}

} // namespace lorafleet::serve
