// The CUDA ops' resident-module cache policy (engine/backend/cuda/resident_modules.hpp), on the CPU: LRU
// order under a byte budget (the least recently used goes first, a take + put refreshes), a module
// re-read into new memory with equal content has the same key (a hit), any changed value, rank split or
// name gives another key (a miss), a module larger than the budget is never cached and evicts nothing,
// and the byte accounting matches the modules' fp32 sizes. The exact-storage detection (the key's
// exact_storage: the narrowest of bf16 / fp16 / fp32 holding every factor value exactly) on planted values:
// bf16 and fp16 fleets, one offending value anywhere (low mantissa bits, fp16 subnormal grid, fp16 range,
// float subnormals, NaN / inf), +-0, the same answer for any thread count; the cache's budget arithmetic
// with 16-bit entries (twice as many fit).
#include "engine/backend/cuda/resident_modules.hpp"
#include "engine/compress/module_batch.hpp"
#include "kernels/half_elements.hpp"
#include "tests/support/watchdog.hpp"

#include <QTest>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

using namespace lorafleet;
using backend::resident_key;
using backend::resident_key_of;
using backend::resident_lru;

namespace {

resident_key key(const std::string& name) {
    return resident_key{name, 4, 4, {1}, 0};
}

// A module of `ranks.size()` adapters with seeded random factors (fresh vectors on every call: a re-read).
compress::module_batch read_module(const std::string& name, std::int64_t d_out, std::int64_t d_in,
                                   const std::vector<std::int64_t>& ranks, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g;
    std::vector<compress::owned_factors> f;
    for (std::size_t i = 0; i < ranks.size(); ++i) {
        compress::owned_factors o{i, ranks[i], std::vector<float>(static_cast<std::size_t>(ranks[i] * d_in)),
                                  std::vector<float>(static_cast<std::size_t>(d_out * ranks[i]))};
        for (auto& x : o.a)
            x = g(rng);
        for (auto& x : o.b)
            x = g(rng);
        f.push_back(std::move(o));
    }
    return compress::make_owned_module_batch(name, d_out, d_in, std::move(f));
}

using kernels::device_precision;

// read_module's values rounded through storage E (what a bf16 / fp16 PEFT file holds, read into fp32).
template <class E>
compress::module_batch read_rounded(const std::string& name, std::int64_t d_out, std::int64_t d_in,
                                    const std::vector<std::int64_t>& ranks, unsigned seed,
                                    float scale = 1.0f) {
    const auto m = read_module(name, d_out, d_in, ranks, seed);
    std::vector<compress::owned_factors> f;
    for (const auto& a : m.adapters) {
        compress::owned_factors o{a.adapter, a.rank, {a.a.begin(), a.a.end()}, {a.b.begin(), a.b.end()}};
        for (auto* side : {&o.a, &o.b})
            for (auto& x : *side)
                x = kernels::round_through<E>(x * scale);
        f.push_back(std::move(o));
    }
    return compress::make_owned_module_batch(name, d_out, d_in, std::move(f));
}

// Writes `value` at index i of adapter p's lora_A (side 0) or lora_B (side 1) of a module it owns.
void plant(compress::module_batch& m, std::size_t p, int side, std::size_t i, float value) {
    auto span = side == 0 ? m.adapters[p].a : m.adapters[p].b;
    *const_cast<float*>(span.data() + i) = value;
}

float from_bits(std::uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

// The storage resident_key_of reports, checked to be the same for 1 and 8 threads.
device_precision storage_of(const compress::module_batch& m) {
    const auto one = resident_key_of(m, 1).exact_storage;
    if (resident_key_of(m, 8).exact_storage != one) return device_precision(-1);
    return one;
}

std::vector<std::string> names(const resident_lru<int>& c) {
    std::vector<std::string> out;
    for (const auto& k : c.order())
        out.push_back(k.name);
    return out;
}

} // namespace

class TestResidentModules : public QObject {
    Q_OBJECT

private slots:
    void lruOrderUnderBudget() {
        resident_lru<int> c(100);
        QVERIFY(c.put(key("a"), 40, 1).empty());
        QVERIFY(c.put(key("b"), 40, 2).empty());
        QCOMPARE(names(c), (std::vector<std::string>{"b", "a"}));
        QCOMPARE(c.used_bytes(), std::size_t(80));
        // c does not fit beside a and b: a, the least recently used, goes.
        auto out = c.put(key("c"), 40, 3);
        QCOMPARE(out, std::vector<int>{1});
        QCOMPARE(names(c), (std::vector<std::string>{"c", "b"}));
        // Using b (take, then put back when another module is selected) makes c the oldest.
        auto b = c.take(key("b"));
        QVERIFY(b.has_value());
        QCOMPARE(*b, 2);
        QCOMPARE(c.used_bytes(), std::size_t(40));
        QVERIFY(c.put(key("b"), 40, *b).empty());
        QCOMPARE(names(c), (std::vector<std::string>{"b", "c"}));
        // 50 bytes need 10 more than are free: one eviction (c) suffices, b stays.
        out = c.put(key("d"), 50, 4);
        QCOMPARE(out, std::vector<int>{3});
        QCOMPARE(names(c), (std::vector<std::string>{"d", "b"}));
        QCOMPARE(c.used_bytes(), std::size_t(90));
        // 100 bytes (the whole budget) evict both, oldest first.
        out = c.put(key("e"), 100, 5);
        QCOMPARE(out, (std::vector<int>{2, 4}));
        QCOMPARE(names(c), std::vector<std::string>{"e"});
        QCOMPARE(c.evictions(), std::size_t(4));
        // Memory pressure: evict_one() takes the least recently used, then reports empty.
        QCOMPARE(c.evict_one(), std::optional<int>(5));
        QVERIFY(!c.evict_one().has_value());
        QCOMPARE(c.used_bytes(), std::size_t(0));
        QVERIFY(!c.take(key("a")).has_value());
        QCOMPARE(c.hits(), std::size_t(1));
        QCOMPARE(c.misses(), std::size_t(1));
    }

    void shrinkingTheBudgetEvictsOldestFirst() {
        resident_lru<int> c(100);
        c.put(key("a"), 30, 1);
        c.put(key("b"), 30, 2);
        c.put(key("c"), 30, 3);
        QCOMPARE(c.set_budget(50), (std::vector<int>{1, 2}));
        QCOMPARE(names(c), std::vector<std::string>{"c"});
        QVERIFY(!c.cacheable(51));
        QCOMPARE(c.set_budget(0), std::vector<int>{3});
        QCOMPARE(c.used_bytes(), std::size_t(0));
    }

    void putUnderAnExistingKeyReplacesIt() {
        resident_lru<int> c(100);
        c.put(key("a"), 30, 1);
        c.put(key("b"), 30, 2);
        auto out = c.put(key("a"), 60, 7);
        QCOMPARE(out, std::vector<int>{1}); // the old copy, not an eviction of b
        QCOMPARE(names(c), (std::vector<std::string>{"a", "b"}));
        QCOMPARE(c.used_bytes(), std::size_t(90));
        QCOMPARE(c.evictions(), std::size_t(0));
    }

    void oversizeModuleIsNeverCached() {
        resident_lru<int> c(100);
        c.put(key("a"), 60, 1);
        QVERIFY(!c.cacheable(101));
        QVERIFY(c.cacheable(100));
        auto out = c.put(key("big"), 101, 9);
        QCOMPARE(out, std::vector<int>{9});                // handed back to be freed: streamed
        QCOMPARE(names(c), std::vector<std::string>{"a"}); // nothing evicted for it
        QCOMPARE(c.used_bytes(), std::size_t(60));
        QVERIFY(!c.take(key("big")).has_value());
        resident_lru<int> none(0); // a zero budget caches nothing
        QCOMPARE(none.put(key("a"), 1, 3), std::vector<int>{3});
        QCOMPARE(none.size(), std::size_t(0));
    }

    void reReadWithEqualContentHits() {
        const auto first = read_module("layers.0.q_proj", 24, 16, {2, 3, 1}, 11);
        const auto again = read_module("layers.0.q_proj", 24, 16, {2, 3, 1}, 11);
        QVERIFY(first.adapters[0].a.data() != again.adapters[0].a.data()); // other memory
        const auto k1 = resident_key_of(first), k2 = resident_key_of(again);
        QVERIFY(k1 == k2);
        QCOMPARE(k1.ranks, (std::vector<std::int64_t>{2, 3, 1}));
        resident_lru<std::string> c(1 << 20);
        c.put(k1, backend::resident_bytes_of(first), "device copy of layers.0.q_proj");
        const auto hit = c.take(k2);
        QVERIFY(hit.has_value());
        QCOMPARE(*hit, std::string("device copy of layers.0.q_proj"));
    }

    void changedContentMisses() {
        const auto base = read_module("layers.0.q_proj", 24, 16, {2, 3, 1}, 11);
        const auto k = resident_key_of(base);
        resident_lru<int> c(1 << 20);
        c.put(k, backend::resident_bytes_of(base), 1);
        // One value changed, anywhere in lora_A or lora_B of any adapter, gives another key.
        for (std::size_t p = 0; p < base.size(); ++p)
            for (int side = 0; side < 2; ++side) {
                const auto n = side == 0 ? base.adapters[p].a.size() : base.adapters[p].b.size();
                for (std::size_t i : {std::size_t(0), n / 2 + 1, n - 1}) {
                    auto copy = read_module("layers.0.q_proj", 24, 16, {2, 3, 1}, 11);
                    auto span = side == 0 ? copy.adapters[p].a : copy.adapters[p].b;
                    auto* x = const_cast<float*>(span.data() + i);
                    *x = std::nextafter(*x, 1e30f); // the smallest possible change
                    const auto changed = resident_key_of(copy);
                    QVERIFY2(!(changed == k),
                             qPrintable(QString("adapter %1 side %2 index %3").arg(p).arg(side).arg(i)));
                    QVERIFY(!c.contains(changed));
                }
            }
        // Another module name or seed: other keys. The same values split into other ranks: another key.
        QVERIFY(!(resident_key_of(read_module("layers.0.k_proj", 24, 16, {2, 3, 1}, 11)) == k));
        QVERIFY(!(resident_key_of(read_module("layers.0.q_proj", 24, 16, {2, 3, 1}, 12)) == k));
        const auto split = read_module("layers.0.q_proj", 24, 16, {3, 2, 1}, 11);
        QVERIFY(!(resident_key_of(split) == k));
        QVERIFY(c.contains(k));
        QVERIFY(c.take(k).has_value());
    }

    // The fork-join hashing: any thread count gives the same key (repeated under a watchdog).
    void keyDoesNotDependOnThreads() {
        test::watchdog dog("resident_key_of with threads", std::chrono::seconds(60));
        const auto m = read_module("layers.3.v_proj", 40, 32, {3, 1, 4, 1, 5, 2, 6}, 8);
        const auto one = resident_key_of(m, 1);
        QVERIFY(one == resident_key_of(m)); // small: hashed on the calling thread
        for (long i = 0; i < test::stress_iterations(200); ++i)
            for (unsigned t : {2u, 3u, 7u, 16u})
                QVERIFY(resident_key_of(m, t) == one);
    }

    void bytesAreTheFp32Factors() {
        const auto m = read_module("m", 24, 16, {2, 3, 1}, 5);
        QCOMPARE(backend::resident_bytes_of(m), std::size_t((24 + 16) * 6 * 4));
        QCOMPARE(backend::resident_bytes_of(m, device_precision::bf16), std::size_t((24 + 16) * 6 * 2));
        QCOMPARE(backend::resident_bytes_of(m, device_precision::fp16), std::size_t((24 + 16) * 6 * 2));
    }

    // Whole modules of planted values: random fp32 factors fit neither format; the same rounded to bf16 are
    // bf16 (also when some are fp16-exact too: bf16 comes first); rounded to fp16 they are fp16 (bf16 holds
    // 8 significant bits, fp16 11: almost every fp16 value has bits bf16 lacks); all zeros (+-0) are bf16.
    void exactStorageOfWholeModules() {
        const std::vector<std::int64_t> ranks = {3, 1, 4, 1, 5, 2, 6};
        QCOMPARE(storage_of(read_module("m", 40, 32, ranks, 3)), device_precision::fp32);
        QCOMPARE(storage_of(read_rounded<kernels::bf16_bits>("m", 40, 32, ranks, 3)), device_precision::bf16);
        QCOMPARE(storage_of(read_rounded<kernels::fp16_bits>("m", 40, 32, ranks, 3)), device_precision::fp16);
        // Typical LoRA magnitudes (~1e-2): bf16 values, many below fp16's normal range, still bf16.
        QCOMPARE(storage_of(read_rounded<kernels::bf16_bits>("m", 40, 32, ranks, 3, 1e-2f)),
                 device_precision::bf16);
        auto zeros = read_rounded<kernels::bf16_bits>("m", 8, 8, {2, 2}, 1, 0.0f);
        plant(zeros, 1, 1, 3, -0.0f);
        QCOMPARE(storage_of(zeros), device_precision::bf16);
        // Small integers are exact in both: bf16 wins.
        auto ints = read_rounded<kernels::bf16_bits>("m", 8, 8, {2, 2}, 1, 0.0f);
        plant(ints, 0, 0, 0, 3.0f);
        plant(ints, 1, 1, 5, -65280.0f); // 0xff00: 8 significant bits (65504 has 11: fp16 only)
        QCOMPARE(storage_of(ints), device_precision::bf16);
        // A module without adapters holds no value: nothing forbids 16 bits (and it has no bytes).
        QCOMPARE(storage_of(compress::make_owned_module_batch("e", 8, 8, {})), device_precision::bf16);
    }

    // One offending value, planted in turn in every adapter, both sides, first / middle / last index
    // (adapter 2 holds more than one 4096-value block, so the blocked test is exercised past its first
    // block): the module falls to what that value allows.
    void oneValueDecidesTheStorage() {
        const std::vector<std::int64_t> ranks = {2, 1, 70, 3};
        struct probe {
            const char* what;
            float value;
            device_precision in_bf16_module, in_fp16_module;
        };
        const float nan = std::numeric_limits<float>::quiet_NaN();
        const float inf = std::numeric_limits<float>::infinity();
        const probe probes[] = {
            {"low mantissa bit", std::nextafter(1.0f, 2.0f), device_precision::fp32, device_precision::fp32},
            {"fp16 only: 1 + 2^-10", 1.0f + 0x1p-10f, device_precision::fp16, device_precision::fp16},
            {"fp16 subnormal 1023 * 2^-24", 1023.0f * 0x1p-24f, device_precision::fp16,
             device_precision::fp16},
            {"smallest fp16 subnormal 2^-24", 0x1p-24f, device_precision::bf16, device_precision::fp16},
            {"2^-25: below fp16's grid", 0x1p-25f, device_precision::bf16, device_precision::fp32},
            {"3 * 2^-25: off fp16's subnormal grid", 3.0f * 0x1p-25f, device_precision::bf16,
             device_precision::fp32},
            {"65504: fp16's largest (11 significant bits)", 65504.0f, device_precision::fp16,
             device_precision::fp16},
            {"65280: exact in both", 65280.0f, device_precision::bf16, device_precision::fp16},
            {"65536: beyond fp16", 65536.0f, device_precision::bf16, device_precision::fp32},
            {"-1e30", -1e30f, device_precision::fp32, device_precision::fp32},
            {"-2^100", -0x1p100f, device_precision::bf16, device_precision::fp32},
            {"float subnormal 2^-130", 0x1p-130f, device_precision::bf16, device_precision::fp32},
            {"float denorm_min", std::numeric_limits<float>::denorm_min(), device_precision::fp32,
             device_precision::fp32},
            {"-0", -0.0f, device_precision::bf16, device_precision::fp16},
            {"NaN", nan, device_precision::fp32, device_precision::fp32},
            {"NaN with zero low bits", from_bits(0x7fc00000u), device_precision::fp32,
             device_precision::fp32},
            {"+inf", inf, device_precision::fp32, device_precision::fp32},
            {"-inf", -inf, device_precision::fp32, device_precision::fp32},
        };
        // The fp16 module must hold values bf16 lacks, or "in_fp16_module" would read bf16 for the probes
        // that are exact in both: check that first. (The bf16 module's values all lie on fp16's grid too,
        // as the fp16-only probes' expectations say.)
        QCOMPARE(storage_of(read_rounded<kernels::fp16_bits>("m", 40, 96, ranks, 9)), device_precision::fp16);
        for (const auto& pr : probes)
            for (int base = 0; base < 2; ++base) {
                const auto want = base == 0 ? pr.in_bf16_module : pr.in_fp16_module;
                for (std::size_t p = 0; p < ranks.size(); ++p)
                    for (int side = 0; side < 2; ++side) {
                        const std::size_t n = static_cast<std::size_t>(ranks[p] * (side == 0 ? 96 : 40));
                        for (std::size_t i : {std::size_t(0), n / 2, n - 1}) {
                            auto m = base == 0 ? read_rounded<kernels::bf16_bits>("m", 40, 96, ranks, 9)
                                               : read_rounded<kernels::fp16_bits>("m", 40, 96, ranks, 9);
                            plant(m, p, side, i, pr.value);
                            QVERIFY2(storage_of(m) == want,
                                     qPrintable(QString("%1 in a %2 module, adapter %3 side %4 index %5")
                                                    .arg(pr.what)
                                                    .arg(base == 0 ? "bf16" : "fp16")
                                                    .arg(p)
                                                    .arg(side)
                                                    .arg(i)));
                        }
                    }
            }
    }

    // all_exact over spans crossing 4096-value block boundaries: the offending value first, last, or alone
    // in a later block.
    void allExactOverBlocks() {
        const auto bf = [](const std::vector<float>& v, std::size_t n) {
            return backend::all_exact<kernels::bf16_bits>(v.data(), n);
        };
        const auto hf = [](const std::vector<float>& v, std::size_t n) {
            return backend::all_exact<kernels::fp16_bits>(v.data(), n);
        };
        std::vector<float> v(3 * 4096 + 5, 0.5f);
        QVERIFY(bf(v, v.size()) && hf(v, v.size()));
        v[4096 * 2 + 7] = 1.0f + 0x1p-10f; // fp16 only, in block 2
        QVERIFY(!bf(v, v.size()) && hf(v, v.size()));
        QVERIFY(bf(v, 4096 * 2 + 7)); // the span that stops just before it
        v[0] = 0x1p-25f;              // bf16 only, first
        QVERIFY(!hf(v, v.size()));
        std::vector<float> w(4096 + 1, 0.25f);
        w.back() = std::nextafter(0.25f, 1.0f); // alone in the second block
        QVERIFY(!bf(w, w.size()) && !hf(w, w.size()));
        QVERIFY(bf(w, 4096) && hf(w, 4096));
        QVERIFY(bf(w, 0) && hf(w, 0));
    }

    // The precision does not take part in the identity: equal content, equal key, whatever it says.
    void exactStorageIsNotIdentity() {
        auto k = resident_key_of(read_rounded<kernels::bf16_bits>("m", 24, 16, {2, 3}, 4));
        auto k2 = k;
        k2.exact_storage = device_precision::fp32;
        QVERIFY(k == k2);
    }

    // Any thread count gives the same storage, with the offending value in any adapter (so in any
    // thread's share), under a watchdog.
    void exactStorageDoesNotDependOnThreads() {
        test::watchdog dog("exact storage with threads", std::chrono::seconds(60));
        const std::vector<std::int64_t> ranks = {3, 1, 4, 1, 5, 2, 6, 2, 3};
        for (std::size_t p = 0; p < ranks.size(); ++p) {
            auto m = read_rounded<kernels::bf16_bits>("m", 40, 32, ranks, 8);
            plant(m, p, 1, 0, 1.0f + 0x1p-10f); // fp16-exact but not bf16: the module is fp32 (others
                                                // are bf16 values outside fp16's grid) or fp16
            const auto want = resident_key_of(m, 1).exact_storage;
            QVERIFY(want != device_precision::bf16);
            for (unsigned t : {2u, 3u, 4u, 8u, 16u})
                QCOMPARE(resident_key_of(m, t).exact_storage, want);
        }
    }

    // A budget that holds two fp32 copies holds four 16-bit ones; the fifth evicts the oldest; mixed
    // entries are charged what each takes.
    void budgetHoldsTwiceAsManyCompactModules() {
        std::vector<compress::module_batch> mods;
        for (unsigned i = 0; i < 5; ++i)
            mods.push_back(read_rounded<kernels::bf16_bits>("layers." + std::to_string(i) + ".q_proj", 24, 16,
                                                            {2, 3, 1}, 20 + i));
        const auto full = backend::resident_bytes_of(mods[0]);
        const auto half = backend::resident_bytes_of(mods[0], resident_key_of(mods[0]).exact_storage);
        QCOMPARE(half * 2, full);
        resident_lru<int> fp32_cache(2 * full), compact_cache(2 * full);
        for (int i = 0; i < 4; ++i) {
            const auto k = resident_key_of(mods[static_cast<std::size_t>(i)]);
            fp32_cache.put(k, backend::resident_bytes_of(mods[static_cast<std::size_t>(i)]), i);
            QVERIFY(
                compact_cache
                    .put(k, backend::resident_bytes_of(mods[static_cast<std::size_t>(i)], k.exact_storage), i)
                    .empty());
        }
        QCOMPARE(fp32_cache.size(), std::size_t(2));
        QCOMPARE(compact_cache.size(), std::size_t(4));
        QCOMPARE(compact_cache.used_bytes(), 4 * half);
        QCOMPARE(compact_cache.evictions(), std::size_t(0));
        const auto k4 = resident_key_of(mods[4]);
        QCOMPARE(compact_cache.put(k4, half, 4), std::vector<int>{0});
        // An fp32 entry (a module that is not exact) next to compact ones takes two of their places.
        const auto odd = read_module("layers.9.q_proj", 24, 16, {2, 3, 1}, 99);
        const auto ko = resident_key_of(odd);
        QCOMPARE(ko.exact_storage, device_precision::fp32);
        QCOMPARE(compact_cache.put(ko, backend::resident_bytes_of(odd, ko.exact_storage), 9),
                 (std::vector<int>{1, 2}));
        QCOMPARE(compact_cache.used_bytes(), full + 2 * half);
        // The cacheable test for the smallest copy: a module whose fp32 copy exceeds the budget may still
        // be cached in 16 bits.
        resident_lru<int> small(full - 1);
        QVERIFY(!small.cacheable(full));
        QVERIFY(small.cacheable(half));
    }
};

QTEST_GUILESS_MAIN(TestResidentModules)
#include "test_resident_modules.moc"
