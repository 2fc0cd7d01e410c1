// The device forward pass (engine/serve/cuda_transformer + kernels/serve_device_model) against the CPU
// transformer on the TinyStories-656K fixture (GQA, tied embeddings): a whole-prompt prefill with every
// row's logits, token-by-token decoding through the paged cache, a continuous-batching step mixing
// sequences at different positions with a rewind, the compressed bank (device_bank vs BankDelta, JD-Full
// and JD-Diag, base tokens in the same step) and raw LoRA behind the device LRU cache (device_lora_cache
// vs RawLoraDelta, with evictions), all in the device's fp32 mode; then greedy generation in fp32 (every
// token the CPU's) and bf16 (>= 95% of positions), decode steps replayed from CUDA graphs against the same
// steps run eagerly, with their launch counts. Exit code 77 (CTest: skipped) when no CUDA device is usable.
#include "engine/backend/cuda/cuda_bank.hpp"
#include "engine/backend/cuda/cuda_lora_cache.hpp"
#include "engine/backend/cuda/cuda_transformer.hpp"
#include "engine/bank/compressed_bank.hpp"
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/io/fleet.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/adapters/raw_lora_delta.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/sampler.hpp"
#include "kernels/device_probe.hpp"
#include "tests/kernels_host/device_fixture_bank.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>

#include <QtTest/QtTest>

#include <cmath>
#include <cstdio>

using namespace lorafleet;
using namespace lorafleet::serve;

namespace {

// The logit comparisons run the device in its exactness mode (fp32 storage, SGEMM); the greedy tests below
// run bf16 too.
constexpr auto fp32 = kernels::device_precision::fp32;
constexpr auto bf16 = kernels::device_precision::bf16;

std::shared_ptr<const model_weights> fixture_model() {
    static const auto w = model_weights::load(test::fixtures_dir() / "models/tinystories-656k");
    return w;
}

// Logits agree to float rounding: max |a - b| small against the row's scale, and the same argmax.
void compare_logits(std::span<const float> got, std::span<const float> want, const QString& what) {
    QCOMPARE(got.size(), want.size());
    float scale = 1.0f, worst = 0.0f;
    for (std::size_t i = 0; i < want.size(); ++i) {
        scale = std::max(scale, std::abs(want[i]));
        worst = std::max(worst, std::abs(got[i] - want[i]));
    }
    QVERIFY2(worst <= 2e-4f * scale,
             qPrintable(what + QString(": max diff %1 at scale %2").arg(worst).arg(scale)));
    // The same choice, unless the reference's top two are closer than the tolerance (a near tie).
    const int a = greedy_token(got), b = greedy_token(want);
    QVERIFY2(a == b || want[std::size_t(b)] - want[std::size_t(a)] <= 2e-4f * scale,
             qPrintable(what + QString(": argmax %1 vs %2").arg(a).arg(b)));
}

std::vector<int> prompt(int n, std::uint64_t seed, int vocab) {
    random_stream rng(seed);
    std::vector<int> t(static_cast<std::size_t>(n));
    for (auto& x : t)
        x = int(rng.next_u64() % std::uint64_t(vocab));
    t[0] = 1; // BOS
    return t;
}

} // namespace

class TestServeDeviceForward : public QObject {
    Q_OBJECT
private slots:
    void init() { LORAFLEET_REQUIRE_FIXTURES(); }

    void prefillAndDecodeMatchTheCpu() {
        const auto w = fixture_model();
        transformer cpu(w, 1);
        cuda_transformer gpu(w, fp32);
        const int vocab = w->geometry().vocab_size;
        const auto tokens = prompt(37, 3, vocab);
        kv_cache cc = cpu.make_cache(8u << 20), gc = gpu.make_cache(8u << 20);
        cc.add_sequence(0);
        gc.add_sequence(0);
        // Prefill 21 tokens (crosses a 16-token block), every row's logits.
        const std::span<const int> head(tokens.data(), 21);
        const sequence_step s{0, head, {}, -1, true};
        const auto want = cpu.forward(cc, std::span(&s, 1));
        const auto got = gpu.forward(gc, std::span(&s, 1));
        QCOMPARE(got.rows(), 21);
        QCOMPARE(got.first_row, want.first_row);
        for (int r = 0; r < 21; ++r)
            compare_logits(got.row(r), want.row(r), QString("prefill row %1").arg(r));
        QCOMPARE(gc.length(0), 21);
        // Then one token per step.
        for (int t = 21; t < 37; ++t) {
            const sequence_step d{0, std::span<const int>(tokens.data() + t, 1), {}, -1, false};
            compare_logits(gpu.forward(gc, std::span(&d, 1)).last(0),
                           cpu.forward(cc, std::span(&d, 1)).last(0), QString("decode position %1").arg(t));
        }
        QCOMPARE(gc.length(0), 37);
        QCOMPARE(gc.block_table(0).size(), std::size_t(3));
    }

    void continuousBatchMatchesEachSequenceAlone() {
        const auto w = fixture_model();
        transformer cpu(w, 1);
        cuda_transformer gpu(w, fp32);
        const int vocab = w->geometry().vocab_size;
        kv_cache cc = cpu.make_cache(8u << 20), gc = gpu.make_cache(8u << 20);
        std::vector<std::vector<int>> p;
        for (int s = 0; s < 3; ++s) {
            p.push_back(prompt(30, 20 + s, vocab));
            cc.add_sequence(s);
            gc.add_sequence(s);
            const sequence_step pre{
                s, std::span<const int>(p.back().data(), std::size_t(5 + 9 * s)), {}, -1, false};
            cpu.forward(cc, std::span(&pre, 1));
            gpu.forward(gc, std::span(&pre, 1));
        }
        // One step: seq 0 prefills 7 more, seq 1 decodes one, seq 2 rewinds to position 10 and redoes 3.
        const std::vector<int> pos2 = {10, 11, 12};
        const std::vector<sequence_step> step = {
            {0, std::span<const int>(p[0].data() + 5, 7), {}, -1, true},
            {1, std::span<const int>(p[1].data() + 14, 1), {}, -1, false},
            {2, std::span<const int>(p[2].data() + 10, 3), pos2, -1, false}};
        const auto want = cpu.forward(cc, step);
        const auto got = gpu.forward(gc, step);
        QCOMPARE(got.first_row, want.first_row);
        for (int r = 0; r < want.rows(); ++r)
            compare_logits(got.row(r), want.row(r), QString("batch row %1").arg(r));
        QCOMPARE(gc.length(2), 13);
    }

    void bankAdaptersMatchBankDelta_data() {
        QTest::addColumn<int>("kind");
        QTest::newRow("jd-full") << int(compress::jd_method::full);
        QTest::newRow("jd-diag") << int(compress::jd_method::diag);
    }
    void bankAdaptersMatchBankDelta() {
        QFETCH(int, kind);
        const auto w = fixture_model();
        const auto& g = w->geometry();
        const auto bank = test::device_fixture_bank(g, compress::jd_method(kind));
        BankDelta cpu_bank(bank, g, "bank");
        const auto dev_bank = upload_bank(bank, g, "bank", fp32);
        transformer cpu(w, 1);
        cuda_transformer gpu(w, fp32);
        kv_cache cc = cpu.make_cache(8u << 20), gc = gpu.make_cache(8u << 20);
        const int slot_of_seq[] = {-1, 0, 1, 2, 3, 4};
        std::vector<std::vector<int>> p;
        std::vector<sequence_step> step;
        for (int s = 0; s < 6; ++s) {
            p.push_back(prompt(12, 40 + s, g.vocab_size));
            cc.add_sequence(s);
            gc.add_sequence(s);
        }
        for (int s = 0; s < 6; ++s)
            step.push_back({s, p[std::size_t(s)], {}, slot_of_seq[s], false});
        const auto want = cpu.forward(cc, step, &cpu_bank);
        const auto got = gpu.forward(gc, step, dev_bank.get());
        // The adapters matter: each adapted sequence differs from the base model's logits.
        kv_cache bc = cpu.make_cache(8u << 20);
        bc.add_sequence(0);
        const sequence_step base{0, p[1], {}, -1, false};
        const auto base_logits = cpu.forward(bc, std::span(&base, 1));
        float moved = 0;
        for (int i = 0; i < g.vocab_size; ++i)
            moved =
                std::max(moved, std::abs(base_logits.last(0)[std::size_t(i)] - want.last(1)[std::size_t(i)]));
        QVERIFY(moved > 0.05f);
        for (int s = 0; s < 6; ++s)
            compare_logits(got.last(s), want.last(s),
                           QString("sequence %1 (slot %2)").arg(s).arg(slot_of_seq[s]));
        // A decode step on top.
        std::vector<sequence_step> next;
        const int t = 7;
        for (int s = 0; s < 6; ++s)
            next.push_back({s, std::span<const int>(&t, 1), {}, slot_of_seq[s], false});
        const auto want2 = cpu.forward(cc, next, &cpu_bank);
        const auto got2 = gpu.forward(gc, next, dev_bank.get());
        for (int s = 0; s < 6; ++s)
            compare_logits(got2.last(s), want2.last(s), QString("decode sequence %1").arg(s));
    }

    // Three adapters through a two-page device cache: every step must evict, and results still match.
    void rawLoraCacheMatchesRawLoraDelta() {
        const auto w = fixture_model();
        const auto& g = w->geometry();
        RawLoraDelta cpu_lora(g);
        std::vector<std::vector<std::pair<int, lora_module_weights>>> adapters(
            3); // per slot: (layer*7+kind, w)
        random_stream rng(77);
        std::size_t largest = 0;
        for (int s = 0; s < 3; ++s) {
            std::size_t bytes = 0;
            for (int l = 0; l < g.num_layers; ++l)
                for (module_kind m : {module_kind::q_proj, module_kind::v_proj, module_kind::down_proj}) {
                    const auto shape = *g.linear_shape(module_name(m));
                    lora_module_weights lw;
                    lw.rank = 2 + 3 * s;
                    lw.scale = 0.5f;
                    lw.a.resize(std::size_t(lw.rank * shape.d_in));
                    lw.b.resize(std::size_t(shape.d_out * lw.rank));
                    for (auto& x : lw.a)
                        x = float(rng.normal() * 0.2);
                    for (auto& x : lw.b)
                        x = float(rng.normal() * 0.2);
                    bytes += (lw.a.size() + lw.b.size()) * sizeof(float);
                    cpu_lora.set_module(s, l, m, lw);
                    adapters[std::size_t(s)].push_back({l * 7 + int(m), lw});
                }
            largest = std::max(largest, bytes);
        }
        int loads = 0;
        kernels::device_lora_cache::loader load = [&](int slot,
                                                      std::vector<kernels::lora_module_source>& out) {
            ++loads;
            for (const auto& [key, lw] : adapters[std::size_t(slot)])
                out.push_back({key / 7, key % 7, lw.rank, lw.scale, lw.a.data(), lw.b.data()});
            return kernels::serve_status{};
        };
        std::unique_ptr<kernels::device_lora_cache> cache;
        throw_if_failed(kernels::device_lora_cache::create(device_geometry(g), largest, 2, load, cache, fp32),
                        "cache");
        transformer cpu(w, 1);
        cuda_transformer gpu(w, fp32);
        for (const auto& pair : {std::vector<int>{0, 1}, std::vector<int>{2, 0}, std::vector<int>{1, 2}}) {
            int resident = 0;
            throw_if_failed(cache->prepare(pair.data(), 2, &resident, nullptr), "prepare");
            QCOMPARE(resident, 2);
            kv_cache cc = cpu.make_cache(8u << 20), gc = gpu.make_cache(8u << 20);
            std::vector<std::vector<int>> p;
            std::vector<sequence_step> step;
            for (int s = 0; s < 3; ++s) {
                p.push_back(prompt(9, 60 + s, g.vocab_size));
                cc.add_sequence(s);
                gc.add_sequence(s);
            }
            const int slot_of[] = {pair[0], -1, pair[1]};
            for (int s = 0; s < 3; ++s)
                step.push_back({s, p[std::size_t(s)], {}, slot_of[s], false});
            const auto want = cpu.forward(cc, step, &cpu_lora);
            const auto got = gpu.forward(gc, step, cache.get());
            for (int s = 0; s < 3; ++s)
                compare_logits(got.last(s), want.last(s), QString("slot %1").arg(slot_of[s]));
        }
        QCOMPARE(loads, 4); // {0,1} miss miss; {2,0}: 2 evicts 1; {1,2}: 1 evicts 0
        QCOMPARE(cache->misses(), std::uint64_t(4));
        QCOMPARE(cache->hits(), std::uint64_t(2));
    }

    // forward_sample picks on the device (launch_sample_rows); given the same uniforms it must pick what
    // the engine's sampler picks from the logits forward() returns for the same step (rerun at the same
    // positions: the KV writes repeat): greedy rows, and sampled rows with top-k / top-p (sorted on the
    // device), over the whole vocabulary and over a shorter limit.
    void deviceSamplingPicksWhatTheSamplerPicks() {
        const auto w = fixture_model();
        const auto& g = w->geometry();
        std::unique_ptr<kernels::device_transformer> dev;
        throw_if_failed(kernels::device_transformer::create(device_geometry(g), fp32, dev), "create");
        throw_if_failed(dev->upload(device_source(*w)), "upload");
        throw_if_failed(dev->allocate_kv(8, 16), "kv");
        const auto tokens = prompt(19, 90, g.vocab_size);
        std::vector<int> positions(tokens.size()), offsets(tokens.size(), 0), out_rows(tokens.size());
        for (std::size_t i = 0; i < tokens.size(); ++i)
            positions[i] = out_rows[i] = int(i);
        const std::vector<int> table = {3, 6};
        kernels::device_step st;
        st.n = int(tokens.size());
        st.tokens = tokens.data();
        st.positions = positions.data();
        st.table_offset = offsets.data();
        st.tables = table.data();
        st.tables_len = 2;
        st.out_rows = out_rows.data();
        st.rows = st.n;
        std::vector<float> logits(tokens.size() * std::size_t(g.vocab_size));
        throw_if_failed(dev->forward(st, nullptr, logits.data()), "forward");
        random_stream uniforms(5);
        int sampled_rows = 0;
        for (const int limit : {g.vocab_size, g.vocab_size - 7})
            for (int pass = 0; pass < 2; ++pass) { // greedy everywhere, then mixed
                std::vector<kernels::sampling_row_params> params(tokens.size());
                std::vector<double> u(tokens.size(), 0.0);
                for (std::size_t r = 0; r < tokens.size(); ++r)
                    if (pass == 1 && r % 4 != 0) {
                        params[r] = {0.6f + 0.2f * float(r % 3), int(r % 3) * 25, r % 2 ? 0.9f : 1.0f};
                        u[r] = uniforms.uniform();
                        ++sampled_rows;
                    }
                std::vector<int> picked(tokens.size(), -2);
                throw_if_failed(
                    dev->forward_sample(st, nullptr, params.data(), u.data(), limit, picked.data()),
                    "forward_sample");
                std::vector<int> ids;
                std::vector<double> prob;
                for (std::size_t r = 0; r < tokens.size(); ++r) {
                    sampling_params sp;
                    sp.temperature = params[r].temperature;
                    sp.top_k = params[r].top_k;
                    sp.top_p = params[r].top_p;
                    const std::span<const float> row(logits.data() + r * std::size_t(g.vocab_size),
                                                     std::size_t(limit));
                    QCOMPARE(picked[r], choose_token(sp, row, u[r], ids, prob));
                }
            }
        QVERIFY(sampled_rows > 20);
        // A block id outside the pools is refused before anything runs.
        const std::vector<int> bad_table = {3, 8};
        st.tables = bad_table.data();
        QCOMPARE(dev->forward(st, nullptr, logits.data()).code, kernels::serve_bad_argument_code);
    }

    // One page for two adapters: prepare() makes only the first resident and says so.
    void loraCacheReportsWhatFits() {
        const auto w = fixture_model();
        const auto& g = w->geometry();
        std::vector<float> a(std::size_t(2 * g.hidden_size), 0.01f),
            b(std::size_t(g.num_heads * g.head_dim * 2), 0.01f);
        kernels::device_lora_cache::loader load = [&](int, std::vector<kernels::lora_module_source>& out) {
            out.push_back({0, 0, 2, 1.0f, a.data(), b.data()});
            return kernels::serve_status{};
        };
        std::unique_ptr<kernels::device_lora_cache> cache;
        throw_if_failed(
            kernels::device_lora_cache::create(device_geometry(g), (a.size() + b.size()) * 4, 1, load, cache),
            "cache");
        const int want[] = {4, 9};
        int resident = -1;
        throw_if_failed(cache->prepare(want, 2, &resident, nullptr), "prepare");
        QCOMPARE(resident, 1);
        const int tokens_slots[] = {4, 9};
        QCOMPARE(cache->begin_step(tokens_slots, 2, nullptr).code,
                 kernels::serve_bad_argument_code); // 9 not resident
    }

    // Real PEFT folders on both sides: CachedLoraDelta on the CPU, cuda_lora_cache (two pages for three
    // adapters) on the device, the same step mixing two adapters and the base model.
    void peftAdaptersMatchCachedLoraDelta() {
        const auto w = fixture_model();
        const auto& g = w->geometry();
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        CachedLoraDelta cpu_lora(g, 64u << 20);
        io::fleet peft;
        io::peft_load_options options;
        options.base = &g;
        for (int i = 0; i < 3; ++i) {
            const auto dir =
                std::filesystem::path(tmp.path().toStdString()) / ("adapter-" + std::to_string(i));
            test::write_crafted_adapter(
                dir, test::crafted_llama_adapter(g, {"q_proj", "v_proj", "o_proj"}, 2 + 2 * i, 4.0 + 4 * i));
            QCOMPARE(cpu_lora.add(dir, dir.filename().string()).slot, i);
            peft.push_back(std::make_shared<const io::peft_adapter>(io::load_peft_adapter(dir, options)));
        }
        cuda_lora_cache gpu_lora(g, peft, 2 * CachedLoraDelta::resident_bytes_of(*peft[2]), fp32);
        QCOMPARE(gpu_lora.pages(), 2);
        transformer cpu(w, 1);
        cuda_transformer gpu(w, fp32);
        for (const auto& pair : {std::vector<int>{2, 0}, std::vector<int>{1, 2}}) {
            QCOMPARE(cpu_lora.prepare(pair), std::size_t(2));
            QCOMPARE(gpu_lora.prepare(pair), std::size_t(2));
            kv_cache cc = cpu.make_cache(8u << 20), gc = gpu.make_cache(8u << 20);
            std::vector<std::vector<int>> p;
            std::vector<sequence_step> step;
            const int slot_of[] = {pair[0], -1, pair[1]};
            for (int s = 0; s < 3; ++s) {
                p.push_back(prompt(11, 80 + s, g.vocab_size));
                cc.add_sequence(s);
                gc.add_sequence(s);
            }
            for (int s = 0; s < 3; ++s)
                step.push_back({s, p[std::size_t(s)], {}, slot_of[s], false});
            const auto want = cpu.forward(cc, step, &cpu_lora);
            const auto got = gpu.forward(gc, step, gpu_lora.device());
            for (int s = 0; s < 3; ++s)
                compare_logits(got.last(s), want.last(s), QString("peft slot %1").arg(slot_of[s]));
        }
        QCOMPARE(gpu_lora.misses(), std::uint64_t(3));
    }

    // Greedy generation of 4 sequences x 40 tokens, each step one token per sequence (decode steps: the
    // device replays its graphs), fed back from the CPU's own choice so positions stay comparable. fp32:
    // every device token equals the CPU's; bf16 (weights exact in bf16 on this fixture, activations and
    // the KV cache rounded to 8 bits): at least 95% of positions.
    void greedyTokensMatchTheCpu_data() {
        QTest::addColumn<int>("precision");
        QTest::addColumn<double>("required");
        QTest::newRow("fp32") << int(fp32) << 1.0;
        QTest::newRow("bf16") << int(bf16) << 0.95;
    }
    void greedyTokensMatchTheCpu() {
        QFETCH(int, precision);
        QFETCH(double, required);
        const auto w = fixture_model();
        const int vocab = w->geometry().vocab_size;
        transformer cpu(w, 1);
        cuda_transformer gpu(w, kernels::device_precision(precision));
        gpu.set_graphs(true); // whatever LORAFLEET_CUDA_GRAPHS says
        QCOMPARE(int(gpu.precision()), precision);
        kv_cache cc = cpu.make_cache(8u << 20), gc = gpu.make_cache(8u << 20);
        const int seqs = 4, steps = 40;
        std::vector<std::vector<int>> p;
        for (int s = 0; s < seqs; ++s) {
            p.push_back(prompt(6 + s, 100 + s, vocab));
            cc.add_sequence(s);
            gc.add_sequence(s);
            const sequence_step pre{s, p.back(), {}, -1, false};
            cpu.forward(cc, std::span(&pre, 1));
            gpu.forward(gc, std::span(&pre, 1));
        }
        std::vector<int> next(seqs, 1);
        int same = 0, total = 0;
        for (int t = 0; t < steps; ++t) {
            std::vector<sequence_step> step;
            for (int s = 0; s < seqs; ++s)
                step.push_back({s, std::span<const int>(&next[std::size_t(s)], 1), {}, -1, false});
            const auto want = cpu.forward(cc, step);
            const auto got = gpu.forward(gc, step);
            for (int s = 0; s < seqs; ++s) {
                const int a = greedy_token(want.last(s)), b = greedy_token(got.last(s));
                same += a == b;
                ++total;
                next[std::size_t(s)] = a;
            }
        }
        const double share = double(same) / double(total);
        std::printf("greedy agreement (%s): %d / %d\n", kernels::precision_name(gpu.precision()), same,
                    total);
        QVERIFY2(share >= required, qPrintable(QString("%1 of positions agree").arg(share)));
        QVERIFY(gpu.step_stats().graph_steps >= std::uint64_t(steps)); // the decode steps were replays
    }

    // The same decode steps with graphs on and off: the same logits (fp32), and a replayed step issues a
    // handful of launches where the eager one issues hundreds; padding (3 sequences -> bucket 4) and a
    // bank adapter in the step change nothing.
    void graphReplayMatchesEagerSteps() {
        const auto w = fixture_model();
        const auto& g = w->geometry();
        const auto bank = test::device_fixture_bank(g, compress::jd_method::full);
        const auto dev_bank = upload_bank(bank, g, "bank", fp32);
        cuda_transformer eager(w, fp32), graphed(w, fp32);
        eager.set_graphs(false);
        graphed.set_graphs(true);
        kv_cache ec = eager.make_cache(8u << 20), gc = graphed.make_cache(8u << 20);
        const int slot_of_seq[] = {-1, 2, 4};
        std::vector<std::vector<int>> p;
        for (int s = 0; s < 3; ++s) {
            p.push_back(prompt(9 + 2 * s, 140 + s, g.vocab_size));
            ec.add_sequence(s);
            gc.add_sequence(s);
            const sequence_step pre{s, p.back(), {}, slot_of_seq[s], false};
            eager.forward(ec, std::span(&pre, 1), dev_bank.get());
            graphed.forward(gc, std::span(&pre, 1), dev_bank.get());
        }
        const auto before_e = eager.step_stats(), before_g = graphed.step_stats();
        for (int t = 0; t < 5; ++t) {
            std::vector<sequence_step> step;
            std::vector<int> tok = {3 + t, 40 + t, 90 + t};
            for (int s = 0; s < 3; ++s)
                step.push_back({s, std::span<const int>(&tok[std::size_t(s)], 1), {}, slot_of_seq[s], false});
            const auto want = eager.forward(ec, step, dev_bank.get());
            const auto got = graphed.forward(gc, step, dev_bank.get());
            for (int s = 0; s < 3; ++s)
                compare_logits(got.last(s), want.last(s), QString("graph step %1 seq %2").arg(t).arg(s));
        }
        const auto& e = eager.step_stats();
        const auto& gr = graphed.step_stats();
        QCOMPARE(e.graph_steps, before_e.graph_steps);
        QCOMPARE(gr.graph_steps - before_g.graph_steps, std::uint64_t(5));
        QCOMPARE(gr.captures, std::uint64_t(1)); // bucket 4, captured once, replayed 5 times
        const double eager_launches = double(e.launches - before_e.launches) / 5;
        const double graph_launches = double(gr.launches - before_g.launches) / 5;
        std::printf("launches/step: eager %.1f, graph %.1f (device ran %.1f)\n", eager_launches,
                    graph_launches, double(gr.device_launches - before_g.device_launches) / 5);
        QCOMPARE(graph_launches, 1.0);
        QVERIFY(eager_launches > 20 * g.num_layers);
    }

    void errorsLeaveTheCacheUsable() {
        const auto w = fixture_model();
        cuda_transformer gpu(w, fp32);
        kv_cache gc = gpu.make_cache(8u << 20);
        gc.add_sequence(0);
        const int bad = w->geometry().vocab_size;
        const sequence_step s{0, std::span<const int>(&bad, 1), {}, -1, false};
        QVERIFY_THROWS_EXCEPTION(usage_error, gpu.forward(gc, std::span(&s, 1)));
        QCOMPARE(gc.length(0), 0);
        QCOMPARE(gc.free_blocks(), gc.total_blocks());
    }
};

int main(int argc, char** argv) {
    const auto probe = kernels::probe_cuda_devices();
    if (!probe.available) {
        std::printf("SKIP: no usable CUDA device (%s)\n", probe.reason.c_str());
        return 77; // CTest SKIP_RETURN_CODE: reported as skipped, not passed or failed
    }
    TestServeDeviceForward test;
    return QTest::qExec(&test, argc, argv);
}

#include "test_serve_device_forward.moc"
