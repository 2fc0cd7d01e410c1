// The CUDA ops' resident-module cache policy (engine/backend/cuda/resident_modules.hpp), on the CPU: LRU
// order under a byte budget (the least recently used goes first, a take + put refreshes), a module
// re-read into new memory with equal content has the same key (a hit), any changed value, rank split or
// name gives another key (a miss), a module larger than the budget is never cached and evicts nothing,
// and the byte accounting matches the modules' fp32 sizes.
#include "engine/backend/cuda/resident_modules.hpp"
#include "engine/compress/module_batch.hpp"
#include "tests/support/watchdog.hpp"

#include <QTest>

#include <chrono>
#include <cmath>
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
    }
};

QTEST_GUILESS_MAIN(TestResidentModules)
#include "test_resident_modules.moc"
