// CudaLinalgOps (see cuda_linalg_ops.hpp): the device side of the ops, in the same product order as
// HostLinalgOps. Device matrices are column-major fp32; T (per side) is [d, R] with member k's columns
// at layout().offsets[k].
#include "engine/backend/cuda/cuda_linalg_ops.hpp"

#include "engine/backend/cuda/cuda_status.hpp"
#include "engine/backend/cuda/resident_modules.hpp"
#include "engine/compress/eigen_floor.hpp"
#include "engine/core/error.hpp"
#include "kernels/linalg_device.hpp"
#include "kernels/resident_storage.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <optional>
#include <tuple>

namespace lorafleet::compress {

namespace kd = lorafleet::kernels;

namespace {

constexpr std::size_t F = sizeof(float);

// Runs `f`, turning device errors into backend::device_error("cuda", ...) (cuda_status.hpp).
template <class Fn> auto guarded(Fn&& f) -> decltype(f()) {
    return backend::translate_linalg("cuda", std::forward<Fn>(f));
}

struct adapter_key {
    const float* a = nullptr;
    const float* b = nullptr;
    std::int64_t rank = 0;
    float a0 = 0, a1 = 0, b0 = 0, b1 = 0; // sampled values (first / last)
    bool operator==(const adapter_key& o) const {
        return std::tie(a, b, rank) == std::tie(o.a, o.b, o.rank) &&
               std::memcmp(&a0, &o.a0, 4 * sizeof(float)) == 0;
    }
};

std::vector<adapter_key> keys_of(const module_batch& batch) {
    std::vector<adapter_key> keys;
    keys.reserve(batch.size());
    for (const auto& f : batch.adapters)
        keys.push_back({f.a.data(), f.b.data(), f.rank, f.a.front(), f.a.back(), f.b.front(), f.b.back()});
    return keys;
}

bool is_budget(const kd::linalg_error& e) {
    return e.api() == "budget";
}

// One module's factors on the device: u = T_u [d_out, R_all], v = T_v [d_in, R_all] in batch order,
// stored as `storage`: fp32 while selected or staged; bf16 / fp16 only inside the resident cache (a module
// whose key says that format is exact; widened back to fp32 when taken out).
struct resident_batch {
    std::string name;
    std::int64_t d_out = -1, d_in = -1;
    std::int64_t total = 0;        // R_all
    std::vector<adapter_key> keys; // empty while (re)filling: never matches a batch then
    std::vector<std::int64_t> offsets;
    kd::device_buffer u, v;
    kd::device_precision storage = kd::device_precision::fp32;
    // The pointer-free key (resident_modules.hpp) when the module may enter the resident cache.
    std::optional<backend::resident_key> rkey;

    // Bytes of T_u and T_v in fp32 (what the cache would hold without compaction).
    std::size_t fp32_bytes() const {
        const auto floats = [](std::int64_t n) {
            return static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * F;
        };
        return floats(d_out * total) + floats(d_in * total);
    }

    bool holds(const module_batch& b, const std::vector<adapter_key>& k) const {
        return !keys.empty() && name == b.name && d_out == b.d_out && d_in == b.d_in && keys == k;
    }
};

// Uploads `batch` into `r` through `up`, which provides reserve(buffer, bytes), upload(host, device,
// bytes) and gather(...) (gather_transposed_blocks) on one stream; `raw` and `meta` are its staging
// buffers for lora_B and the gather's column table. Enqueues only: the caller orders the stream.
template <class Up>
void fill(resident_batch& r, const module_batch& batch, std::vector<adapter_key> keys, kd::device_buffer& raw,
          kd::device_buffer& meta_buffer, Up& up) {
    r.keys.clear();
    r.storage = kd::device_precision::fp32;
    r.offsets.assign(batch.size(), 0);
    std::int64_t total = 0;
    for (std::size_t p = 0; p < batch.size(); ++p) {
        r.offsets[p] = total;
        total += batch.adapters[p].rank;
    }
    const auto floats = [](std::int64_t n) {
        return static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) * F;
    };
    up.reserve(r.v, floats(batch.d_in * total));
    up.reserve(r.u, floats(batch.d_out * total));
    up.reserve(raw, floats(batch.d_out * total));
    // lora_A [r, d_in] row-major == A^T column-major: concatenation is T_v as is.
    for (std::size_t p = 0; p < batch.size(); ++p)
        up.upload(batch.adapters[p].a.data(), r.v.f32() + batch.d_in * r.offsets[p],
                  batch.adapters[p].a.size() * F);
    // lora_B [d_out, r] row-major: stage the concatenation in `raw`, gather-transpose into T_u.
    for (std::size_t p = 0; p < batch.size(); ++p)
        up.upload(batch.adapters[p].b.data(), raw.f32() + batch.d_out * r.offsets[p],
                  batch.adapters[p].b.size() * F);
    std::vector<std::int64_t> meta(static_cast<std::size_t>(3 * total));
    for (std::size_t p = 0; p < batch.size(); ++p)
        for (std::int64_t j = 0; j < batch.adapters[p].rank; ++j) {
            const auto c = static_cast<std::size_t>(r.offsets[p] + j);
            meta[c] = batch.d_out * r.offsets[p];
            meta[static_cast<std::size_t>(total) + c] = batch.adapters[p].rank;
            meta[static_cast<std::size_t>(2 * total) + c] = j;
        }
    up.reserve(meta_buffer, std::max<std::size_t>(meta.size(), 1) * sizeof(std::int64_t));
    if (!meta.empty()) up.upload(meta.data(), meta_buffer.data(), meta.size() * sizeof(std::int64_t));
    const auto* mp = static_cast<const std::int64_t*>(meta_buffer.data());
    up.gather(raw.f32(), r.u.f32(), batch.d_out, total, mp, mp + total, mp + 2 * total);
    r.name = batch.name;
    r.d_out = batch.d_out;
    r.d_in = batch.d_in;
    r.total = total;
    r.keys = std::move(keys);
    r.rkey.reset();
}

// The look-ahead upload (stage()): one module filled on the uploader's stream by the staging thread.
// empty -> filling (stage() claims it) -> ready (stage() done) -> empty (select() takes it, or drops it
// when a module that was not staged comes first; reserve() evicts it when the budget runs out).
enum class stage_phase { empty, filling, ready };

struct staging_area {
    std::mutex mutex;
    std::condition_variable cv; // filling -> not filling
    stage_phase phase = stage_phase::empty;
    resident_batch batch;
    kd::device_buffer raw, meta;
    std::unique_ptr<kd::async_uploader> uploader; // created by the first stage()
    std::size_t hits = 0;
};

} // namespace

struct CudaLinalgOps::state {
    kd::linalg_context ctx; // first: outlives every buffer and the uploader
    resident_batch current; // the selected batch's module
    // Working set (points into current when it is the whole batch in order).
    kd::device_buffer work_u, work_v;
    const float* cur_u = nullptr;
    const float* cur_v = nullptr;
    // Scratch.
    kd::device_buffer in, out, p, p2, small, x, gram, evals, meta;
    // fp64 scratch of the eigenproblems (top_small_gram / top_large_gram).
    kd::device_buffer xd, gram_d, evals_d, vec_d, out_d;
    staging_area staged;
    // Modules uploaded earlier and not selected now, kept across passes while they fit (LRU; see
    // resident_modules.hpp). Budget: 60% of the context's, the rest for the selected module, the staged
    // one and the scratch; reserve_bytes() evicts further when an allocation does not fit.
    std::mutex cache_mutex; // the cache: select() / reserve_bytes() on the compute thread, stage() beside
    backend::resident_lru<resident_batch> cache;
    // Cached modules exact in 16 bits are stored narrowed (set_resident_compact; read by stage() too).
    std::atomic<bool> compact_on{compact_from_environment()};
    std::atomic<std::size_t> compactions{0};

    state(std::size_t budget, int device) : ctx(budget, device), cache(ctx.budget_bytes() / 10 * 6) {}

    // LORAFLEET_RESIDENT_COMPACT=0 turns the 16-bit cache storage off (tests, comparisons).
    static bool compact_from_environment() {
        const char* v = std::getenv("LORAFLEET_RESIDENT_COMPACT");
        return v == nullptr || std::strcmp(v, "0") != 0;
    }

    // The batch's pointer-free key when its copy could be cached at all (hashing every value costs a
    // read of the module: skipped for a module that is streamed anyway).
    // The last key computed, with the spans it was computed from: stage(m + 1) and select(m + 1) see the
    // same read of a module, which is hashed once (the same-addresses rule as the residency check).
    std::vector<adapter_key> hashed_spans;
    std::optional<backend::resident_key> hashed_key;
    std::optional<backend::resident_key> cache_key(const module_batch& batch,
                                                   const std::vector<adapter_key>& keys) {
        {
            std::lock_guard lk(cache_mutex);
            // The smallest copy it could be cached as (its exact storage is known only once hashed).
            const auto smallest = compact_on ? kd::device_precision::bf16 : kd::device_precision::fp32;
            if (!cache.cacheable(backend::resident_bytes_of(batch, smallest))) return std::nullopt;
            if (hashed_key && hashed_key->name == batch.name && hashed_spans == keys) return hashed_key;
        }
        auto k = backend::resident_key_of(batch);
        std::lock_guard lk(cache_mutex);
        hashed_spans = keys;
        hashed_key = k;
        return k;
    }
    bool evict_cached() {
        std::optional<resident_batch> gone;
        {
            std::lock_guard lk(cache_mutex);
            gone = cache.evict_one();
        }
        return gone.has_value(); // freed here (cudaFree waits for the work that may still read it)
    }

    // Grows `b`, evicting cached modules (least recently used first) while the budget is exhausted, but
    // never the staged one; false when it does not fit even with the cache empty.
    bool reserve_evicting_cached(kd::device_buffer& b, std::size_t bytes) {
        for (;;) {
            try {
                b.reserve(ctx, bytes);
                return true;
            } catch (const kd::linalg_error& e) {
                if (!is_budget(e)) throw;
                if (!evict_cached()) return false;
            }
        }
    }

    // Narrows r's T_u / T_v to 16 bits when compaction is on and r's key says a 16-bit format holds every
    // value exactly (the lossless case only); the fp32 buffers are freed (after the stream has read them:
    // device_buffer waits for it). r stays fp32 when the 16-bit buffers do not fit (streaming rules apply).
    void compact(resident_batch& r) {
        if (!compact_on || !r.rkey || r.storage != kd::device_precision::fp32) return;
        const auto to = r.rkey->exact_storage;
        if (to == kd::device_precision::fp32) return;
        const auto nu = r.d_out * r.total, nv = r.d_in * r.total;
        const auto bytes = [&](std::int64_t n) {
            return static_cast<std::size_t>(std::max<std::int64_t>(n, 1)) *
                   static_cast<std::size_t>(kd::element_bytes(to));
        };
        kd::device_buffer u16, v16;
        if (!reserve_evicting_cached(u16, bytes(nu)) || !reserve_evicting_cached(v16, bytes(nv))) return;
        kd::narrow_f32(ctx, r.u.f32(), to, u16.data(), nu);
        kd::narrow_f32(ctx, r.v.f32(), to, v16.data(), nv);
        r.u = std::move(u16);
        r.v = std::move(v16);
        r.storage = to;
        ++compactions;
    }

    // Widens a cached 16-bit module back to fp32 (exact) for the working set. On failure r is emptied
    // (never left half converted) and the error propagates.
    void widen(resident_batch& r) {
        if (r.storage == kd::device_precision::fp32) return;
        try {
            const auto nu = r.d_out * r.total, nv = r.d_in * r.total;
            kd::device_buffer u32, v32;
            reserve(u32, nu);
            reserve(v32, nv);
            kd::widen_to_f32(ctx, r.u.data(), r.storage, u32.f32(), nu);
            kd::widen_to_f32(ctx, r.v.data(), r.storage, v32.f32(), nv);
            r.u = std::move(u32);
            r.v = std::move(v32);
            r.storage = kd::device_precision::fp32;
        } catch (...) {
            r = resident_batch{};
            throw;
        }
    }

    const float* t(ops_side s) const { return s == ops_side::u ? cur_u : cur_v; }
    // Grows `b`; when the budget is exhausted, frees the staged module (the look-ahead must never make a
    // compression fail that fits without it) and tries again.
    void reserve_bytes(kd::device_buffer& b, std::size_t bytes) {
        for (;;) { // streaming: least recently used cached modules go first
            try {
                b.reserve(ctx, bytes);
                return;
            } catch (const kd::linalg_error& e) {
                if (!is_budget(e)) throw;
                if (!evict_cached()) break;
            }
        }
        try {
            b.reserve(ctx, bytes);
            return;
        } catch (const kd::linalg_error& e) {
            if (!is_budget(e)) throw;
            std::unique_lock lk(staged.mutex);
            staged.cv.wait(lk, [&] { return staged.phase != stage_phase::filling; });
            if (staged.batch.u.bytes() + staged.batch.v.bytes() + staged.raw.bytes() + staged.meta.bytes() ==
                0)
                throw;
            staged.uploader->synchronize(); // a ready upload may still be in flight on its stream
            staged.batch = resident_batch{};
            staged.raw = kd::device_buffer();
            staged.meta = kd::device_buffer();
            staged.phase = stage_phase::empty;
        }
        b.reserve(ctx, bytes);
    }
    float* reserve(kd::device_buffer& b, std::int64_t floats) {
        reserve_bytes(b, static_cast<std::size_t>(std::max<std::int64_t>(floats, 1)) * F);
        return b.f32();
    }
    double* reserve_f64(kd::device_buffer& b, std::int64_t doubles) {
        reserve_bytes(b, static_cast<std::size_t>(std::max<std::int64_t>(doubles, 1)) * sizeof(double));
        return static_cast<double*>(b.data());
    }
    float* put(kd::device_buffer& b, const float* host, std::int64_t floats) {
        float* d = reserve(b, floats);
        if (floats > 0) kd::upload(ctx, host, d, static_cast<std::size_t>(floats) * F);
        return d;
    }
    matrix get(const float* d, std::int64_t rows, std::int64_t cols) {
        matrix m(rows, cols);
        if (!m.data.empty()) kd::download(ctx, d, m.data.data(), m.data.size() * F);
        return m;
    }
};

namespace {

// fill() through the context's own stream.
struct context_path {
    CudaLinalgOps::state& s;
    void reserve(kd::device_buffer& b, std::size_t bytes) { s.reserve_bytes(b, bytes); }
    void upload(const void* host, void* device, std::size_t bytes) { kd::upload(s.ctx, host, device, bytes); }
    void gather(const float* src, float* dst, std::int64_t d, std::int64_t cols, const std::int64_t* base,
                const std::int64_t* rank, const std::int64_t* local) {
        kd::gather_transposed_blocks(s.ctx, src, dst, d, cols, base, rank, local);
    }
};

// fill() through the uploader's stream (the staging thread).
struct uploader_path {
    kd::async_uploader& up;
    void reserve(kd::device_buffer& b, std::size_t bytes) { up.reserve(b, bytes); }
    void upload(const void* host, void* device, std::size_t bytes) { up.upload(host, device, bytes); }
    void gather(const float* src, float* dst, std::int64_t d, std::int64_t cols, const std::int64_t* base,
                const std::int64_t* rank, const std::int64_t* local) {
        up.gather_transposed_blocks(src, dst, d, cols, base, rank, local);
    }
};

} // namespace

CudaLinalgOps::CudaLinalgOps(std::size_t budget_bytes, int device) {
    guarded([&] { m = std::make_unique<state>(budget_bytes, device); });
}

CudaLinalgOps::~CudaLinalgOps() = default;

std::size_t CudaLinalgOps::budget_bytes() const {
    return m->ctx.budget_bytes();
}
std::size_t CudaLinalgOps::used_bytes() const {
    return m->ctx.used_bytes();
}
std::size_t CudaLinalgOps::stage_hits() const {
    std::lock_guard lk(m->staged.mutex);
    return m->staged.hits;
}
CudaLinalgOps::resident_stats CudaLinalgOps::resident_counters() const {
    std::lock_guard lk(m->cache_mutex);
    const auto& c = m->cache;
    resident_stats out{c.hits(), c.misses(), c.evictions(), c.size(), c.used_bytes(), c.budget_bytes()};
    c.for_each([&](const backend::resident_key&, std::size_t bytes, const resident_batch& r) {
        if (r.storage == kd::device_precision::fp32) return;
        ++out.compact_modules;
        out.compact_saved_bytes += r.fp32_bytes() - std::min(bytes, r.fp32_bytes());
    });
    out.compactions = m->compactions;
    return out;
}
void CudaLinalgOps::set_resident_compact(bool on) {
    m->compact_on = on;
}
bool CudaLinalgOps::resident_compact() const {
    return m->compact_on;
}
void CudaLinalgOps::set_resident_budget(std::size_t bytes) {
    guarded([&] {
        std::vector<resident_batch> evicted;
        {
            std::lock_guard lk(m->cache_mutex);
            evicted = m->cache.set_budget(bytes);
        }
    });
}

void CudaLinalgOps::stage(const module_batch& batch) noexcept {
    auto& st = m->staged;
    try {
        batch.validate();
        auto keys = keys_of(batch);
        auto rkey = m->cache_key(batch, keys);
        if (rkey) {
            std::lock_guard lk(m->cache_mutex);
            if (m->cache.contains(*rkey)) return; // resident from an earlier pass: nothing to upload
        }
        {
            std::lock_guard lk(st.mutex);
            // A ready module not selected yet is kept: the caller is about to take it.
            if (st.phase != stage_phase::empty) return;
            if (!st.uploader) st.uploader = std::make_unique<kd::async_uploader>(m->ctx);
            // The buffers refilled below may still be read by work enqueued before (an earlier module).
            st.uploader->after_context();
            st.phase = stage_phase::filling;
        }
        bool ok = false;
        try {
            uploader_path up{*st.uploader};
            fill(st.batch, batch, std::move(keys), st.raw, st.meta, up);
            st.batch.rkey = std::move(rkey);
            st.uploader->finish();
            ok = true;
        } catch (...) {
            st.batch.keys.clear(); // a partial upload never matches
        }
        {
            std::lock_guard lk(st.mutex);
            st.phase = ok ? stage_phase::ready : stage_phase::empty;
        }
        st.cv.notify_all();
    } catch (...) {
        // A hint: select() uploads the module itself (and reports what went wrong there).
    }
}

void CudaLinalgOps::select(const module_batch& batch, std::span<const std::size_t> members) {
    batch.validate();
    set_layout(batch, members);
    guarded([&] {
        auto& s = *m;
        auto keys = keys_of(batch);
        if (!s.current.holds(batch, keys)) {
            auto rkey = s.cache_key(batch, keys);
            bool taken = false;
            std::vector<resident_batch> evicted; // freed after the lock
            std::optional<resident_batch> hit;
            // The module selected so far stays resident (when cacheable); the new one may be too.
            const bool outgoing = s.current.rkey && !s.current.keys.empty();
            const auto put_current = [&] {
                auto k = *s.current.rkey;
                const auto bytes = s.current.u.bytes() + s.current.v.bytes();
                evicted = s.cache.put(std::move(k), bytes, std::move(s.current));
                s.current = resident_batch{};
            };
            if (outgoing && rkey && *rkey == *s.current.rkey) {
                // The same content re-read at other addresses: straight back out of the cache, as is.
                std::lock_guard lk(s.cache_mutex);
                put_current();
                hit = s.cache.take(*rkey);
            } else {
                if (rkey) {
                    std::lock_guard lk(s.cache_mutex);
                    hit = s.cache.take(*rkey);
                }
                if (outgoing) {
                    // Narrowed first when that is exact (may evict older cached modules for its buffers;
                    // the hit above is out of the cache already).
                    s.compact(s.current);
                    std::lock_guard lk(s.cache_mutex);
                    put_current();
                }
            }
            evicted.clear();
            if (hit) {
                s.current = std::move(*hit);
                s.current.keys = keys; // this read's spans: the fast check of later calls
                s.widen(s.current);    // 16-bit in the cache: fp32 again for the working set
                taken = true;
            }
            {
                std::lock_guard lk(s.staged.mutex);
                if (s.staged.phase == stage_phase::ready) {
                    if (!taken && s.staged.batch.holds(batch, keys)) {
                        std::swap(s.current, s.staged.batch);
                        s.staged.uploader->context_waits();
                        ++s.staged.hits;
                        taken = true;
                    }
                    s.staged.phase = stage_phase::empty; // taken, or stale: another module came first
                }
            }
            if (!taken) {
                context_path up{s};
                fill(s.current, batch, std::move(keys), s.x, s.meta, up);
                s.ctx.synchronize();
            }
            s.current.rkey = std::move(rkey);
        }
        bool whole = members.size() == batch.size();
        for (std::size_t k = 0; whole && k < members.size(); ++k)
            whole = members[k] == k;
        if (whole) {
            s.cur_u = s.current.u.f32();
            s.cur_v = s.current.v.f32();
            return;
        }
        const auto& l = layout();
        float* wu = s.reserve(s.work_u, batch.d_out * l.total);
        float* wv = s.reserve(s.work_v, batch.d_in * l.total);
        for (std::size_t k = 0; k < members.size(); ++k) {
            const auto from = s.current.offsets[members[k]], r = l.ranks[k];
            kd::copy_device(s.ctx, s.current.u.f32() + batch.d_out * from, wu + batch.d_out * l.offsets[k],
                            static_cast<std::size_t>(batch.d_out * r) * F);
            kd::copy_device(s.ctx, s.current.v.f32() + batch.d_in * from, wv + batch.d_in * l.offsets[k],
                            static_cast<std::size_t>(batch.d_in * r) * F);
        }
        s.cur_u = wu;
        s.cur_v = wv;
    });
}

matrix CudaLinalgOps::project(ops_side side, const matrix& x) {
    const auto& l = layout();
    check_shape(x.rows == l.dim(side), "ops.project", "basis rows differ from the module dimension");
    return guarded([&] {
        auto& s = *m;
        const auto d = l.dim(side);
        const float* dx = s.put(s.in, x.data.data(), d * x.cols);
        float* o = s.reserve(s.out, l.total * x.cols);
        kd::gemm(s.ctx, kd::mat_op::t, kd::mat_op::n, l.total, x.cols, d, 1.0f, s.t(side), d, dx, d, 0.0f, o,
                 l.total);
        return s.get(o, l.total, x.cols);
    });
}

matrix CudaLinalgOps::accumulate(ops_side side, const matrix& z) {
    const auto& l = layout();
    check_shape(z.rows == l.total, "ops.accumulate", "rows differ from the working set's total rank");
    return guarded([&] {
        auto& s = *m;
        const auto d = l.dim(side);
        const float* dz = s.put(s.in, z.data.data(), l.total * z.cols);
        float* o = s.reserve(s.out, d * z.cols);
        kd::gemm(s.ctx, kd::mat_op::n, kd::mat_op::n, d, z.cols, l.total, 1.0f, s.t(side), d, dz, l.total,
                 0.0f, o, d);
        return s.get(o, d, z.cols);
    });
}

namespace {

// Maximal runs [first, last) of consecutive members where `same(k - 1, k)` holds and `use(k)`.
template <class Use, class Same, class Fn> void for_runs(std::size_t n, Use use, Same same, Fn fn) {
    std::size_t k = 0;
    while (k < n) {
        if (!use(k)) {
            ++k;
            continue;
        }
        std::size_t e = k + 1;
        while (e < n && use(e) && same(e - 1, e))
            ++e;
        fn(k, e);
        k = e;
    }
}

} // namespace

matrix CudaLinalgOps::apply_blocks(ops_side side, const std::vector<matrix>& c, const matrix& q) {
    const auto& l = layout();
    check_shape(c.size() == l.size(), "ops.apply_blocks", "one block per member expected");
    check_shape(q.rows == l.dim(side), "ops.apply_blocks", "rows differ from the module dimension");
    for (std::size_t k = 0; k < c.size(); ++k)
        check_shape(c[k].empty() || (c[k].rows == l.ranks[k] && c[k].cols == l.ranks[k]), "ops.apply_blocks",
                    "block shape");
    return guarded([&] {
        auto& s = *m;
        const auto d = l.dim(side), cols = q.cols, R = std::max<std::int64_t>(l.total, 1);
        const float* dq = s.put(s.in, q.data.data(), d * cols);
        float* p = s.reserve(s.p, l.total * cols);
        float* p2 = s.reserve(s.p2, l.total * cols);
        kd::gemm(s.ctx, kd::mat_op::t, kd::mat_op::n, l.total, cols, d, 1.0f, s.t(side), d, dq, d, 0.0f, p,
                 R);
        kd::fill_zero(s.ctx, p2, static_cast<std::size_t>(l.total * cols) * F);
        std::vector<std::int64_t> boff(c.size(), 0);
        std::vector<float> packed;
        for (std::size_t k = 0; k < c.size(); ++k) {
            boff[k] = static_cast<std::int64_t>(packed.size());
            packed.insert(packed.end(), c[k].data.begin(), c[k].data.end());
        }
        const float* blocks = s.put(s.small, packed.data(), static_cast<std::int64_t>(packed.size()));
        for_runs(
            c.size(), [&](std::size_t k) { return !c[k].empty(); },
            [&](std::size_t a, std::size_t b) { return l.ranks[a] == l.ranks[b]; },
            [&](std::size_t first, std::size_t last) {
                const auto r = l.ranks[first], o = l.offsets[first];
                kd::gemm_strided_batched(s.ctx, kd::mat_op::n, kd::mat_op::n, r, cols, r, 1.0f,
                                         blocks + boff[first], r, r * r, p + o, R, r, 0.0f, p2 + o, R, r,
                                         static_cast<std::int64_t>(last - first));
            });
        float* o = s.reserve(s.out, d * cols);
        kd::gemm(s.ctx, kd::mat_op::n, kd::mat_op::n, d, cols, l.total, 1.0f, s.t(side), d, p2, R, 0.0f, o,
                 d);
        return s.get(o, d, cols);
    });
}

std::vector<matrix> CudaLinalgOps::block_grams(ops_side side) {
    const auto& l = layout();
    return guarded([&] {
        auto& s = *m;
        const auto d = l.dim(side);
        std::vector<std::int64_t> goff(l.size(), 0);
        std::int64_t total = 0;
        for (std::size_t k = 0; k < l.size(); ++k) {
            goff[k] = total;
            total += l.ranks[k] * l.ranks[k];
        }
        float* g = s.reserve(s.out, total);
        for_runs(
            l.size(), [](std::size_t) { return true; },
            [&](std::size_t a, std::size_t b) { return l.ranks[a] == l.ranks[b]; },
            [&](std::size_t first, std::size_t last) {
                const auto r = l.ranks[first];
                const float* t = s.t(side) + d * l.offsets[first];
                kd::gemm_strided_batched(s.ctx, kd::mat_op::t, kd::mat_op::n, r, r, d, 1.0f, t, d, d * r, t,
                                         d, d * r, 0.0f, g + goff[first], r, r * r,
                                         static_cast<std::int64_t>(last - first));
            });
        const matrix all = s.get(g, total, 1);
        std::vector<matrix> out(l.size());
        for (std::size_t k = 0; k < l.size(); ++k) {
            out[k] = matrix(l.ranks[k], l.ranks[k]);
            std::copy_n(all.data.begin() + goff[k], out[k].data.size(), out[k].data.begin());
        }
        return out;
    });
}

namespace {

// X = [T_k L_k] for members [first, last) into `x` (device, [d, width]); returns the width.
std::int64_t build_x(CudaLinalgOps::state& s, const float* t, std::int64_t d, const ops_layout& l,
                     const std::vector<matrix>& factors, std::size_t first, std::size_t last, float* x) {
    std::vector<float> packed;
    std::vector<std::int64_t> loff(last - first, 0), xoff(last - first, 0);
    std::int64_t width = 0;
    for (std::size_t k = first; k < last; ++k) {
        loff[k - first] = static_cast<std::int64_t>(packed.size());
        xoff[k - first] = width;
        packed.insert(packed.end(), factors[k].data.begin(), factors[k].data.end());
        width += factors[k].cols;
    }
    const float* dl = s.put(s.small, packed.data(), static_cast<std::int64_t>(packed.size()));
    for_runs(
        last - first, [&](std::size_t j) { return factors[first + j].cols > 0; },
        [&](std::size_t a, std::size_t b) {
            return l.ranks[first + a] == l.ranks[first + b] &&
                   factors[first + a].cols == factors[first + b].cols;
        },
        [&](std::size_t a, std::size_t b) {
            const auto r = l.ranks[first + a], w = factors[first + a].cols;
            kd::gemm_strided_batched(s.ctx, kd::mat_op::n, kd::mat_op::n, d, w, r, 1.0f,
                                     t + d * l.offsets[first + a], d, d * r, dl + loff[a], r, r * w, 0.0f,
                                     x + d * xoff[a], d, d * w, static_cast<std::int64_t>(b - a));
        });
    return width;
}

// The top `k` of syevd's ascending eigenvalues `w` (device, n doubles), descending, on the host.
std::vector<double> top_values(CudaLinalgOps::state& s, const double* w, std::int64_t n, std::int64_t k) {
    std::vector<double> all(static_cast<std::size_t>(n));
    if (n > 0) kd::download(s.ctx, w, all.data(), all.size() * sizeof(double));
    return std::vector<double>(all.rbegin(), all.rbegin() + k);
}

} // namespace

// Both eigen paths: X is built in fp32 (the factors' precision), widened to fp64, and the Gram, the
// eigensolver and X E run in double, the same steps as HostLinalgOps (see there), so the two backends
// differ only by the fp32 rounding of X, not by an fp32 Gram (which squares the condition number) or an
// fp32 eigensolver (eigenvector errors eps32 ||G|| / gap).
// Directions past X's numerical rank are fixed ones (eigen_floor.hpp), the same on every backend.
matrix CudaLinalgOps::top_small_gram(ops_side side, const std::vector<matrix>& factors, std::int64_t k) {
    const auto& l = layout();
    check_shape(factors.size() == l.size(), "ops.top_small_gram", "one factor per member expected");
    std::int64_t m_width = 0;
    for (std::size_t i = 0; i < factors.size(); ++i) {
        check_shape(factors[i].cols == 0 || factors[i].rows == l.ranks[i], "ops.top_small_gram",
                    "factor rows");
        m_width += factors[i].cols;
    }
    check_shape(k >= 0 && k <= m_width, "ops.top_small_gram", "k exceeds the width of X");
    const auto d = l.dim(side);
    if (k == 0) return matrix(d, 0);
    return guarded([&] {
        auto& s = *m;
        float* x = s.reserve(s.x, d * m_width);
        build_x(s, s.t(side), d, l, factors, 0, factors.size(), x);
        double* xd = s.reserve_f64(s.xd, d * m_width);
        kd::widen_to_f64(s.ctx, x, xd, d * m_width);
        double* g = s.reserve_f64(s.gram_d, m_width * m_width);
        kd::gemm_f64(s.ctx, kd::mat_op::t, kd::mat_op::n, m_width, m_width, d, 1.0, xd, d, xd, d, 0.0, g,
                     m_width);
        double* w = s.reserve_f64(s.evals_d, m_width);
        kd::syevd_f64(s.ctx, m_width, g, m_width, w);
        double* e = s.reserve_f64(s.vec_d, m_width * k);
        kd::reverse_columns_f64(s.ctx, g + (m_width - k) * m_width, m_width, e, m_width, m_width, k);
        double* yd = s.reserve_f64(s.out_d, d * k);
        kd::gemm_f64(s.ctx, kd::mat_op::n, kd::mat_op::n, d, k, m_width, 1.0, xd, d, e, m_width, 0.0, yd, d);
        float* y = s.reserve(s.out, d * k);
        kd::narrow_to_f32(s.ctx, yd, y, d * k);
        const std::vector<double> values = top_values(s, w, m_width, k);
        matrix out = s.get(y, d, k);
        const auto keep = eigen_rank(values); // columns past X's numerical rank: fixed directions
        if (keep < k && k <= d) {
            dmatrix yw = to_double(out);
            complete_null_columns(yw, keep, values[0] > 0.0 ? std::sqrt(eigen_floor_ratio * values[0]) : 1.0);
            out = to_float(yw.view());
        }
        return out;
    });
}

matrix CudaLinalgOps::top_large_gram(ops_side side, const std::vector<matrix>& factors, std::int64_t r) {
    const auto& l = layout();
    check_shape(factors.size() == l.size(), "ops.top_large_gram", "one factor per member expected");
    const auto d = l.dim(side);
    check_shape(r >= 1 && r <= d, "ops.top_large_gram", "rank outside [1, d]");
    return guarded([&] {
        auto& s = *m;
        double* mm = s.reserve_f64(s.gram_d, d * d);
        kd::fill_zero(s.ctx, mm, static_cast<std::size_t>(d * d) * sizeof(double));
        std::size_t first = 0;
        while (first < factors.size()) {
            std::size_t last = first;
            std::int64_t width = 0;
            while (last < factors.size() &&
                   (width == 0 || width + factors[last].cols <= ops_large_gram_chunk))
                width += factors[last++].cols;
            if (width > 0) {
                float* x = s.reserve(s.x, d * width);
                build_x(s, s.t(side), d, l, factors, first, last, x);
                double* xd = s.reserve_f64(s.xd, d * width);
                kd::widen_to_f64(s.ctx, x, xd, d * width);
                kd::gemm_f64(s.ctx, kd::mat_op::n, kd::mat_op::t, d, d, width, 1.0, xd, d, xd, d, 1.0, mm, d);
            }
            first = last;
        }
        double* w = s.reserve_f64(s.evals_d, d);
        kd::syevd_f64(s.ctx, d, mm, d, w);
        double* ed = s.reserve_f64(s.out_d, d * r);
        kd::reverse_columns_f64(s.ctx, mm + (d - r) * d, d, ed, d, d, r);
        float* out = s.reserve(s.out, d * r);
        kd::narrow_to_f32(s.ctx, ed, out, d * r);
        const std::vector<double> values = top_values(s, w, d, r);
        const auto keep = eigen_rank(values);
        matrix v = s.get(out, d, r);
        if (keep < r) { // past the numerical rank: fixed directions
            dmatrix vw = to_double(v);
            complete_null_columns(vw, keep, 1.0);
            v = to_float(vw.view());
        }
        return v;
    });
}

dmatrix CudaLinalgOps::block_core_norms(const matrix& xu, const matrix& xv,
                                        std::span<const std::int64_t> offsets,
                                        std::span<const std::int64_t> widths) {
    const auto& l = layout();
    check_shape(offsets.size() == widths.size() && xu.cols == xv.cols, "ops.block_core_norms", "block lists");
    check_shape(xu.rows == l.d_out && xv.rows == l.d_in, "ops.block_core_norms",
                "rows differ from the module");
    for (std::size_t j = 0; j < offsets.size(); ++j)
        check_shape(offsets[j] >= 0 && widths[j] >= 0 && offsets[j] + widths[j] <= xu.cols,
                    "ops.block_core_norms", "block outside the columns");
    const auto n = static_cast<std::int64_t>(l.size()), nb = static_cast<std::int64_t>(offsets.size());
    dmatrix out(n, nb);
    if (n == 0 || nb == 0 || xu.cols == 0) return out;
    return guarded([&] {
        auto& s = *m;
        const auto c = xu.cols, R = std::max<std::int64_t>(l.total, 1);
        // Qb = T_u^T Xu, Pa = T_v^T Xv, both [R, c].
        const float* du = s.put(s.in, xu.data.data(), l.d_out * c);
        float* qb = s.reserve(s.p, l.total * c);
        kd::gemm(s.ctx, kd::mat_op::t, kd::mat_op::n, l.total, c, l.d_out, 1.0f, s.cur_u, l.d_out, du,
                 l.d_out, 0.0f, qb, R);
        const float* dv = s.put(s.in, xv.data.data(), l.d_in * c); // stream-ordered after the GEMM above
        float* pa = s.reserve(s.p2, l.total * c);
        kd::gemm(s.ctx, kd::mat_op::t, kd::mat_op::n, l.total, c, l.d_in, 1.0f, s.cur_v, l.d_in, dv, l.d_in,
                 0.0f, pa, R);
        std::int64_t core_floats = 0;
        for (const auto w : widths)
            core_floats = std::max(core_floats, n * w * w);
        float* cores = s.reserve(s.gram, core_floats);
        s.reserve_bytes(s.evals, static_cast<std::size_t>(n * nb) * sizeof(double));
        auto* sums = static_cast<double*>(s.evals.data());
        kd::fill_zero(s.ctx, sums, static_cast<std::size_t>(n * nb) * sizeof(double));
        for (std::int64_t j = 0; j < nb; ++j) {
            const auto w = widths[static_cast<std::size_t>(j)], o = offsets[static_cast<std::size_t>(j)];
            if (w == 0) continue;
            // Core of member k for block j at cores + k w^2: (Qb_kj)^T Pa_kj [w, w].
            for_runs(
                l.size(), [](std::size_t) { return true; },
                [&](std::size_t a, std::size_t b) { return l.ranks[a] == l.ranks[b]; },
                [&](std::size_t first, std::size_t last) {
                    const auto r = l.ranks[first], row = l.offsets[first];
                    kd::gemm_strided_batched(s.ctx, kd::mat_op::t, kd::mat_op::n, w, w, r, 1.0f,
                                             qb + row + o * R, R, r, pa + row + o * R, R, r, 0.0f,
                                             cores + static_cast<std::int64_t>(first) * w * w, w, w * w,
                                             static_cast<std::int64_t>(last - first));
                });
            kd::block_sum_squares(s.ctx, cores, w * w, n, sums + j * n);
        }
        kd::download(s.ctx, sums, out.data.data(), out.data.size() * sizeof(double));
        return out;
    });
}

std::pair<matrix, matrix> CudaLinalgOps::qr(matrix a) {
    check_shape(a.rows >= a.cols, "ops.qr", "needs rows >= cols");
    return guarded([&] {
        auto& s = *m;
        float* da = s.put(s.in, a.data.data(), a.rows * a.cols);
        float* dr = s.reserve(s.p2, a.cols * a.cols);
        kd::qr_thin(s.ctx, a.rows, a.cols, da, a.rows, dr);
        return std::make_pair(s.get(da, a.rows, a.cols), s.get(dr, a.cols, a.cols));
    });
}

void CudaLinalgOps::reserve_evicting(kd::device_buffer& b, std::size_t bytes) {
    m->reserve_bytes(b, bytes);
}

// For cuda_linalg_ops_batched.cpp (the batched operations' file).
CudaLinalgOps::working_view CudaLinalgOps::working_set_view() {
    return {&m->ctx, m->cur_u, m->cur_v};
}

} // namespace lorafleet::compress
