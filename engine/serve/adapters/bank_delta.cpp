// BankDelta: see the header. The bank's adapters and cores are moved out of the compressed_bank into
// per-slot storage at construction, so that remove() frees an adapter's cores and the compressed_bank
// left behind (modules and bases only) is exactly what bank_add's project_onto_bank projects onto.
#include "engine/serve/adapters/bank_delta.hpp"

#include "engine/backend/compress_backends.hpp"
#include "engine/backend/device_twin_factories.hpp"
#include "engine/bank/bank_add.hpp"
#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/adapters/factored_delta.hpp"
#include "engine/serve/scheduling/worker_pool.hpp"

#include <algorithm>

namespace lorafleet::serve {

namespace {

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

BankDelta::BankDelta(bank::compressed_bank bank, io::model_geometry base, const std::string& where)
    : m_bank(std::move(bank)), m_base(std::move(base)) {
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
    m_core_ptr.assign(m_bank.modules.size(), {});
    for (std::size_t i = 0; i < adapters.size(); ++i) {
        auto cores = kernel_cores(m_bank, adapters[i], i);
        take_slot(std::move(adapters[i]), std::move(cores));
    }
    for (auto& c : m_bank.cores) {
        c.clear();
        c.shrink_to_fit();
    }
    const int r = m_bank.rank;
    m_kernel.resize(m_bank.modules.size());
    m_half.assign(m_bank.modules.size(), 0);
    for (std::size_t m = 0; m < m_bank.modules.size(); ++m) {
        const std::size_t d_out = std::size_t(m_bank.modules[m].d_out);
        const auto& bases = m_bank.bases[m];
        const auto exact_half = [](const std::vector<float>& v) {
            return std::all_of(v.begin(), v.end(), [](float f) { return f16_to_f32(f32_to_f16(f)) == f; });
        };
        bool half = true;
        for (const auto& b : bases)
            half = half && exact_half(b.u) && exact_half(b.vt);
        m_half[m] = half;
        m_kernel[m].resize(bases.size());
        for (std::size_t c = 0; c < bases.size(); ++c) {
            const auto& basis = bases[c];
            if (basis.empty()) continue;
            auto& k = m_kernel[m][c];
            std::vector<float> ut(d_out * std::size_t(r));
            for (std::size_t o = 0; o < d_out; ++o)
                for (int p = 0; p < r; ++p)
                    ut[std::size_t(p) * d_out + o] = basis.u[o * std::size_t(r) + std::size_t(p)];
            if (half) {
                k.ut16.resize(ut.size());
                std::transform(ut.begin(), ut.end(), k.ut16.begin(), [](float f) { return f32_to_f16(f); });
                k.vt16.resize(basis.vt.size());
                std::transform(basis.vt.begin(), basis.vt.end(), k.vt16.begin(),
                               [](float f) { return f32_to_f16(f); });
            } else {
                k.ut = std::move(ut);
            }
        }
    }
}

BankDelta::~BankDelta() = default;

namespace {
const char* const no_device_changes =
    "adapters cannot be added to or removed from a bank served on a CUDA device (the device bank has no "
    "per-slot upload yet); serve with --device cpu to change adapters at runtime";
}

backend::device_adapters* BankDelta::device_twin() {
    if (!m_device) {
        // Per module, every slot's core back in the bank's layout (Σ, not the kernel's Σᵀ; zeros where
        // the slot lacks the module or was removed).
        const std::size_t cs = std::size_t(m_bank.core_size()), slots = m_slots.size();
        const int r = m_bank.rank;
        std::vector<std::vector<float>> cores(m_bank.modules.size());
        std::vector<int> slot_cluster;
        for (const slot_entry& e : m_slots)
            slot_cluster.push_back(e.adapter.cluster);
        for (std::size_t m = 0; m < m_bank.modules.size(); ++m) {
            cores[m].assign(slots * cs, 0.0f);
            for (std::size_t i = 0; i < slots; ++i) {
                const slot_entry& e = m_slots[i];
                if (!e.alive || e.cores[m].empty()) continue;
                const float* src = e.cores[m].data();
                float* dst = cores[m].data() + i * cs;
                if (m_bank.kind == compress::jd_method::full) {
                    for (int p = 0; p < r; ++p)
                        for (int q = 0; q < r; ++q)
                            dst[std::size_t(p) * r + q] = src[std::size_t(q) * r + p];
                } else {
                    std::copy(src, src + cs, dst);
                }
            }
        }
        m_device = backend::upload_bank_adapters(m_bank, cores, slot_cluster, m_base, "bank device twin");
    }
    return m_device.get();
}

std::vector<std::vector<float>> BankDelta::kernel_cores(const bank::compressed_bank& bank,
                                                        const bank::bank_adapter& adapter,
                                                        std::size_t index) {
    std::vector<std::vector<float>> cores(bank.modules.size());
    const auto cs = std::size_t(bank.core_size());
    for (std::size_t m = 0; m < bank.modules.size(); ++m)
        if (adapter.has_module(m)) {
            const float* core = bank.core(m, index);
            cores[m].assign(core, core + cs);
            if (bank.kind == compress::jd_method::full) { // kept transposed: the kernel reads Σᵀ (header)
                const int r = bank.rank;
                for (int p = 0; p < r; ++p)
                    for (int q = 0; q < r; ++q)
                        cores[m][std::size_t(q) * r + p] = core[std::size_t(p) * r + q];
            }
        }
    return cores;
}

int BankDelta::take_slot(bank::bank_adapter adapter, std::vector<std::vector<float>> cores) {
    if (m_by_name.count(adapter.name))
        throw format_error(adapter.source, "adapter name '" + adapter.name + "' appears twice");
    if (cores.size() != m_bank.modules.size())
        throw std::logic_error("BankDelta::take_slot: cores for another bank");
    slot_entry e;
    e.cores = std::move(cores);
    e.adapter = std::move(adapter);
    const std::string name = e.adapter.name;
    const std::uint64_t bytes = e.bytes();
    int slot = int(m_slots.size());
    if (!m_free.empty()) {
        const auto lowest = std::min_element(m_free.begin(), m_free.end());
        slot = *lowest;
        m_free.erase(lowest);
        m_slots[std::size_t(slot)] = std::move(e);
    } else {
        m_slots.push_back(std::move(e));
        for (auto& ptrs : m_core_ptr)
            ptrs.push_back(nullptr);
        m_slot_cluster.push_back(-1);
    }
    m_by_name.emplace(name, slot);
    const slot_entry& kept = m_slots[std::size_t(slot)]; // moving the entry kept every core's buffer
    for (std::size_t m = 0; m < m_core_ptr.size(); ++m)
        m_core_ptr[m][std::size_t(slot)] = kept.cores[m].empty() ? nullptr : kept.cores[m].data();
    m_slot_cluster[std::size_t(slot)] = kept.adapter.cluster;
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

namespace {
// What BankDelta::prepare_add hands to install: the projected adapter and its cores in kernel layout.
struct bank_prepared final : prepared_adapter {
    bank::bank_adapter adapter;
    std::vector<std::vector<float>> cores;
};
} // namespace

std::unique_ptr<prepared_adapter> BankDelta::prepare_add(const std::filesystem::path& peft_dir,
                                                         const std::string& name) const {
    if (name.empty()) throw usage_error(peft_dir.string(), "an adapter needs a non-empty name");
    io::peft_load_options options;
    options.base = &m_base;
    auto adapter = std::make_shared<const io::peft_adapter>(io::load_peft_adapter(peft_dir, options));
    // The projection of `lorafleet-cli add` (bank_add.hpp), on the CPU, with a backend of this call's own:
    // nothing is shared with another add running at the same time, and the bank is only read.
    const auto backend = lorafleet::backend::make_compress_backend("cpu", 1);
    bank::projected_adapter projected = bank::project_onto_bank(m_bank, std::move(adapter), *backend, name);
    auto out = std::make_unique<bank_prepared>();
    out->adapter = std::move(projected.adapter);
    out->cores = std::move(projected.cores);
    if (m_bank.kind == compress::jd_method::full) { // the kernel reads Σᵀ (kernel_cores)
        const int r = m_bank.rank;
        for (auto& core : out->cores) {
            if (core.empty()) continue;
            for (int p = 0; p < r; ++p)
                for (int q = p + 1; q < r; ++q)
                    std::swap(core[std::size_t(p) * r + q], core[std::size_t(q) * r + p]);
        }
    }
    out->name = name;
    out->source = peft_dir.string();
    return out;
}

adapter_info BankDelta::install(std::unique_ptr<prepared_adapter> prepared) {
    auto* p = dynamic_cast<bank_prepared*>(prepared.get());
    if (!p) throw usage_error("bank", "install() got an adapter prepared by another provider");
    if (find(p->name) >= 0)
        throw usage_error(p->source, "an adapter named '" + p->name + "' is already in the bank");
    if (m_device) throw unsupported_error(p->source, no_device_changes);
    return info_of(take_slot(std::move(p->adapter), std::move(p->cores)));
}

bool BankDelta::remove(std::string_view name) {
    const int slot = find(name);
    if (slot < 0) return false;
    if (m_device) throw unsupported_error(std::string(name), no_device_changes);
    slot_entry& e = m_slots[std::size_t(slot)];
    e.alive = false;
    m_slot_cluster[std::size_t(slot)] = -1;
    for (auto& ptrs : m_core_ptr)
        ptrs[std::size_t(slot)] = nullptr;
    m_by_name.erase(e.adapter.name);
    m_live_core_bytes -= e.bytes();
    --m_live_count;
    e.cores.clear();
    e.cores.shrink_to_fit();
    m_free.push_back(slot);
    return true;
}

adapter_memory_stats BankDelta::memory() const {
    adapter_memory_stats s;
    std::uint64_t bytes = 0;
    for (const auto& per_module : m_bank.bases)
        for (const auto& b : per_module)
            bytes += (b.u.size() + b.vt.size()) * sizeof(float);
    for (const auto& per_module : m_kernel)
        for (const auto& k : per_module)
            bytes += k.bytes();
    bytes += m_live_core_bytes;
    s.resident_adapters = int(m_live_count);
    s.resident_bytes = bytes;
    s.capacity_bytes = bytes;
    return s;
}

int BankDelta::collect(int layer, module_kind m, const float* x, float* y, int n_tokens,
                       std::span<const int> token_adapter) {
    if (layer < 0 || std::size_t(layer) >= m_module_index.size()) return -1;
    const int mi = m_module_index[std::size_t(layer)][std::size_t(m)];
    if (mi < 0) return -1;

    // Tokens in cluster order, so each cluster's bases stay in cache while its tokens stream through.
    m_members.resize(std::size_t(m_bank.clusters));
    for (auto& members : m_members)
        members.clear();
    const auto& bases = m_bank.bases[std::size_t(mi)];
    const auto& core_ptr = m_core_ptr[std::size_t(mi)];
    const std::size_t core_bytes = std::size_t(m_bank.core_size()) * sizeof(float);
    for (int t = 0; t < n_tokens; ++t) {
        const int slot = token_adapter[std::size_t(t)];
        if (slot < 0) continue;
        if (std::size_t(slot) >= m_slot_cluster.size() || m_slot_cluster[std::size_t(slot)] < 0)
            live(slot, "bank adapter"); // throws
        const float* core = core_ptr[std::size_t(slot)];
        if (!core) continue; // the adapter lacks this module
        const int cluster = m_slot_cluster[std::size_t(slot)];
        if (bases[std::size_t(cluster)].empty()) continue;
        // The cores of a step's adapters are scattered over the bank and rarely still cached: ask for
        // them now, so they arrive while the tokens before them are being shrunk.
        for (std::size_t b = 0; b < core_bytes; b += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(core) + b);
        m_members[std::size_t(cluster)].push_back(t);
    }
    m_tokens.clear();
    m_runs.clear();
    // Runs of at most 16 tokens of one cluster: enough to share the basis reads, small enough to balance.
    constexpr std::size_t run_tokens = 16;
    const std::size_t d_in = std::size_t(m_bank.modules[std::size_t(mi)].d_in);
    const std::size_t d_out = std::size_t(m_bank.modules[std::size_t(mi)].d_out);
    for (int c = 0; c < m_bank.clusters; ++c) {
        const auto& members = m_members[std::size_t(c)];
        for (std::size_t i = 0; i < members.size(); i += run_tokens)
            m_runs.push_back(
                {c, m_tokens.size() + i, m_tokens.size() + std::min(members.size(), i + run_tokens)});
        for (const int t : members)
            m_tokens.push_back({x + std::size_t(t) * d_in, y + std::size_t(t) * d_out,
                                core_ptr[std::size_t(token_adapter[std::size_t(t)])]});
    }
    return m_tokens.empty() ? -1 : mi;
}

factored_basis<std::uint16_t> BankDelta::half_basis(int mi, int cluster) const {
    const auto& mod = m_bank.modules[std::size_t(mi)];
    const auto& k = m_kernel[std::size_t(mi)][std::size_t(cluster)];
    return {k.vt16.data(), k.ut16.data(), m_bank.rank, int(mod.d_in), int(mod.d_out)};
}

factored_basis<float> BankDelta::float_basis(int mi, int cluster) const {
    const auto& mod = m_bank.modules[std::size_t(mi)];
    return {m_bank.bases[std::size_t(mi)][std::size_t(cluster)].vt.data(),
            m_kernel[std::size_t(mi)][std::size_t(cluster)].ut.data(), m_bank.rank, int(mod.d_in),
            int(mod.d_out)};
}

double BankDelta::size_scratch(int mi, int workers) {
    const std::size_t r = std::size_t(m_bank.rank);
    m_scratch.resize(std::size_t(std::max(workers, 1)));
    for (auto& s : m_scratch)
        s.resize(8 * r);
    // A token costs r·(d_in + d_out + r) multiply-adds.
    const auto& mod = m_bank.modules[std::size_t(mi)];
    return double(m_tokens.size()) * double(r) * double(std::size_t(mod.d_in + mod.d_out) + r);
}

void BankDelta::apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
                      std::span<const int> token_adapter, worker_pool* pool) {
    m_fused_module = -1;
    const int mi = collect(layer, m, x, y, n_tokens, token_adapter);
    if (mi < 0) return;
    const bool full = m_bank.kind == compress::jd_method::full;
    const bool half = m_half[std::size_t(mi)];
    auto run = [&](const token_run& run, float* scratch) {
        const std::span<const factored_token> tokens(m_tokens.data() + run.begin, run.end - run.begin);
        if (half)
            add_factored_delta(half_basis(mi, run.cluster), full, tokens, scratch);
        else
            add_factored_delta(float_basis(mi, run.cluster), full, tokens, scratch);
    };
    const int workers = pool ? pool->size() : 1;
    // Below ~10⁵ multiply-adds in all (a few decode tokens), waking the caller's idle workers costs more
    // than it saves. A worker that wakes late takes no run (worker_pool).
    const double work = size_scratch(mi, workers);
    if (workers == 1 || m_runs.size() == 1 || work < 1.0e5) {
        for (const auto& rr : m_runs)
            run(rr, m_scratch.front().data());
        return;
    }
    pool->run(m_runs.size(), [&](std::size_t item, int worker) {
        run(m_runs[item], m_scratch[std::size_t(worker)].data());
    });
}

bool BankDelta::fuse(int layer, module_kind m, const float* x, float* y, int n_tokens,
                     std::span<const int> token_adapter, int workers, fused_delta& out) {
    m_fused_module = collect(layer, m, x, y, n_tokens, token_adapter);
    out = fused_delta{};
    if (m_fused_module < 0) return true; // nothing to add: the product alone
    out.work = size_scratch(m_fused_module, workers);
    m_w.resize(m_tokens.size() * std::size_t(m_bank.rank));
    out.pre_items = m_runs.size();
    return true;
}

void BankDelta::fused_pre(std::size_t item, int worker) {
    const int mi = m_fused_module, r = m_bank.rank;
    const bool full = m_bank.kind == compress::jd_method::full;
    const token_run& run = m_runs[item];
    const std::span<const factored_token> tokens(m_tokens.data() + run.begin, run.end - run.begin);
    float* w = m_w.data() + run.begin * std::size_t(r);
    float* scratch = m_scratch[std::size_t(worker)].data();
    if (m_half[std::size_t(mi)])
        factored_shrink(half_basis(mi, run.cluster), full, tokens, w, scratch);
    else
        factored_shrink(float_basis(mi, run.cluster), full, tokens, w, scratch);
}

void BankDelta::fused_post(int j0, int j1, int) {
    const int mi = m_fused_module, r = m_bank.rank;
    if (mi < 0) return;
    const bool half = m_half[std::size_t(mi)];
    for (const token_run& run : m_runs) {
        const std::span<const factored_token> tokens(m_tokens.data() + run.begin, run.end - run.begin);
        const float* w = m_w.data() + run.begin * std::size_t(r);
        if (half)
            factored_expand(half_basis(mi, run.cluster), tokens, w, j0, j1);
        else
            factored_expand(float_basis(mi, run.cluster), tokens, w, j0, j1);
    }
}

} // namespace lorafleet::serve
