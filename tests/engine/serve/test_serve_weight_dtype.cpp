// Base-model weights in their stored precision (engine/serve/model/model_weights.hpp, weight_dtype.hpp):
// the TinyStories-656K fixture is float32 holding values that are exact in bf16 (its NOTICE), so
//  - a bf16 copy (written with the project's safetensors writer) is held as bf16, in place in the map, and
//    its logits equal the float32 model's BIT FOR BIT (the GEMM widens the rows, then sums in the same
//    order), for a 64-token prefill and for token-by-token decoding; the matrices' bytes halve;
//  - model_load_options: float32 on request widens on load (same logits), bfloat16 on the float32
//    fixture narrows on load (same logits, since the values are bf16-exact);
//  - an fp16 copy: every bf16 value in binary16's normal range is exact in binary16 and the fixture has no
//    weight below it (checked on the tensors), so the derived bound is zero: the fp16 logits equal the
//    float32 ones bit for bit, and equal the same file widened to float32 on load;
//  - tensors misaligned in the file (a 1-byte tensor first shifts every other one) still load, copied in
//    their own dtype, with the same logits;
//  - parameter_bytes() and resident_bytes() against the file's own header (parsed here independently:
//    the 8-byte length, the JSON, each tensor's data_offsets).
#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

fs::path fixture_dir() {
    return test::fixtures_dir() / "models/tinystories-656k";
}

using tensor_map = std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>>;

tensor_map fixture_tensors() {
    tensor_map out;
    auto f = io::safetensors_file::open(fixture_dir() / "model.safetensors");
    for (const auto& t : f->tensors())
        out[t.name()] = {t.shape(), t.to_f32()};
    return out;
}

// The fixture's config and tokenizer files beside a model.safetensors of `type` (plus, when `misalign`, a
// one-byte U8 tensor that sorts first and so shifts every weight to an odd offset).
void write_copy(const fs::path& dir, io::dtype type, bool misalign = false) {
    fs::create_directories(dir);
    fs::copy_file(fixture_dir() / "config.json", dir / "config.json");
    const tensor_map tensors = fixture_tensors();
    std::vector<std::vector<std::byte>> storage;
    std::vector<io::tensor_data> data;
    storage.reserve(tensors.size() + 1);
    for (const auto& [name, t] : tensors) {
        storage.push_back(io::encode_f32(t.second, type));
        data.push_back({name, type, t.first, storage.back()});
    }
    if (misalign) {
        storage.push_back({std::byte{0x5a}});
        data.push_back({"!pad", io::dtype::U8, {1}, storage.back()});
    }
    io::write_safetensors(dir / "model.safetensors", data);
}

// What the file's header says, read without the project's parser.
struct header_sums {
    std::uint64_t matrix_bytes = 0; // 2-D tensors' data_offsets ranges
    std::uint64_t vector_elems = 0; // 1-D tensors (norms) element count
    std::uint64_t data_start = 0;
    std::vector<std::uint64_t> begins; // every tensor's absolute file offset
};
header_sums read_header(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    unsigned char len[8];
    in.read(reinterpret_cast<char*>(len), 8);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i)
        n = (n << 8) | len[i];
    std::string text(n, '\0');
    in.read(text.data(), std::streamsize(n));
    const auto j = nlohmann::json::parse(text);
    header_sums s;
    s.data_start = 8 + n;
    for (const auto& [name, t] : j.items()) {
        if (name == "__metadata__" || t["dtype"] == "U8") continue;
        const auto off = t["data_offsets"].get<std::vector<std::uint64_t>>();
        const auto shape = t["shape"].get<std::vector<std::uint64_t>>();
        s.begins.push_back(s.data_start + off[0]);
        if (shape.size() == 2) s.matrix_bytes += off[1] - off[0];
        if (shape.size() == 1) s.vector_elems += shape[0];
    }
    return s;
}

std::vector<int> tokens64() {
    std::ifstream j(test::fixtures_dir() / "reference/tinystories656k_bos_greedy64.json");
    return nlohmann::json::parse(j)["tokens"].get<std::vector<int>>();
}

// Logits of every token of one prefill, then of 8 more tokens decoded one at a time (m = 1 products).
std::vector<float> run(const std::shared_ptr<const model_weights>& w) {
    transformer model(w, 2);
    const std::vector<int> tokens = tokens64();
    kv_cache cache = model.make_cache(8u << 20);
    cache.add_sequence(0);
    const std::span<const int> first(tokens.data(), 56);
    const sequence_step step{0, first, {}, -1, true};
    std::vector<float> out = model.forward(cache, std::span(&step, 1)).values;
    for (std::size_t t = 56; t < tokens.size(); ++t) {
        const sequence_step one{0, std::span(&tokens[t], 1), {}, -1, false};
        const auto r = model.forward(cache, std::span(&one, 1)).values;
        out.insert(out.end(), r.begin(), r.end());
    }
    return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Every matrix of the model (embed/lm_head once when tied).
std::vector<const weight_tensor*> matrices(const model_weights& w) {
    std::vector<const weight_tensor*> out{&w.lm_head};
    if (w.embed.data != w.lm_head.data) out.push_back(&w.embed);
    for (const auto& L : w.layers)
        for (const auto& lin : L.linear)
            out.push_back(&lin.weight);
    return out;
}

bool all_matrices(const model_weights& w, weight_dtype t) {
    for (const auto* m : matrices(w))
        if (m->dtype != t) return false;
    return true;
}

} // namespace

class TestServeWeightDtype : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    fs::path root() const { return m_tmp.path().toStdString(); }
    std::vector<float> m_f32_logits;

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        write_copy(root() / "bf16", io::dtype::BF16);
        write_copy(root() / "f16", io::dtype::F16);
        write_copy(root() / "bf16_misaligned", io::dtype::BF16, true);
        write_copy(root() / "f32_misaligned", io::dtype::F32, true);
        const auto w = model_weights::load(fixture_dir());
        QVERIFY(w->geometry().tie_word_embeddings);
        QVERIFY(all_matrices(*w, weight_dtype::f32));
        m_f32_logits = run(w);
    }

    void bf16CopyIsHeldAsBf16AndGivesTheSameLogitsBitForBit() {
        const auto w = model_weights::load(root() / "bf16");
        QVERIFY(all_matrices(*w, weight_dtype::bf16));
        QVERIFY(w->embed.data == w->lm_head.data); // tied: one tensor
        QVERIFY(w->final_norm.f32() != nullptr);   // norms widened
        QVERIFY(w->lm_head.f32() == nullptr);
        QVERIFY(same_bits(run(w), m_f32_logits));
    }

    void byteAccountingMatchesTheFileHeader() {
        const header_sums f32 = read_header(fixture_dir() / "model.safetensors");
        const header_sums bf16 = read_header(root() / "bf16" / "model.safetensors");
        QCOMPARE(bf16.matrix_bytes * 2, f32.matrix_bytes); // the stored bytes halve
        QCOMPARE(bf16.vector_elems, f32.vector_elems);
        QVERIFY(f32.vector_elems > 0);
        // parameter_bytes: the matrices as stored (embed/lm_head tied: once) + the norms in float32.
        const auto w32 = model_weights::load(fixture_dir());
        const auto w16 = model_weights::load(root() / "bf16");
        QCOMPARE(w32->parameter_bytes(), f32.matrix_bytes + 4 * f32.vector_elems);
        QCOMPARE(w16->parameter_bytes(), bf16.matrix_bytes + 4 * bf16.vector_elems);
        // resident_bytes: nothing beyond the maps for the aligned float32 file; the widened norms only for
        // the aligned bf16 one (its matrices are used in place).
        QCOMPARE(w32->resident_bytes(), std::uint64_t(0));
        QCOMPARE(w16->resident_bytes(), 4 * bf16.vector_elems);
        // The matrices are the file's bytes, as many as the header says.
        auto file = io::safetensors_file::open(root() / "bf16" / "model.safetensors");
        const auto* head = file->find("lm_head.weight");
        QVERIFY(head);
        QCOMPARE(w16->lm_head.bytes(), std::uint64_t(head->bytes.size()));
    }

    void loadOptionsConvertOnLoad() {
        const header_sums h = read_header(root() / "bf16" / "model.safetensors");
        model_load_options to_f32;
        to_f32.dtype = weight_dtype_choice::f32;
        const auto wide = model_weights::load(root() / "bf16", to_f32);
        QVERIFY(all_matrices(*wide, weight_dtype::f32));
        QCOMPARE(wide->requested_dtype(), weight_dtype_choice::f32);
        QCOMPARE(wide->resident_bytes(), 2 * h.matrix_bytes + 4 * h.vector_elems);
        QCOMPARE(wide->parameter_bytes(), 2 * h.matrix_bytes + 4 * h.vector_elems);
        QVERIFY(same_bits(run(wide), m_f32_logits));

        model_load_options to_bf16;
        to_bf16.dtype = weight_dtype_choice::bf16;
        const auto narrow = model_weights::load(fixture_dir(), to_bf16);
        QVERIFY(all_matrices(*narrow, weight_dtype::bf16));
        QCOMPARE(narrow->parameter_bytes(), h.matrix_bytes + 4 * h.vector_elems);
        QVERIFY(same_bits(run(narrow), m_f32_logits));

        QCOMPARE(parse_weight_dtype_choice("auto"), weight_dtype_choice::keep_stored);
        QCOMPARE(parse_weight_dtype_choice("bfloat16"), weight_dtype_choice::bf16);
        QCOMPARE(parse_weight_dtype_choice("float16"), weight_dtype_choice::f16);
        QCOMPARE(parse_weight_dtype_choice("float32"), weight_dtype_choice::f32);
        QVERIFY_THROWS_EXCEPTION(usage_error, parse_weight_dtype_choice("int8"));
    }

    void f16CopyIsExactForTheseValues() {
        // The bound, derived: bf16 has 8 significant bits and binary16 11, so every bf16 value in binary16's
        // range [2^-14, 65504] (and zero) is exact in binary16; only smaller magnitudes (binary16
        // subnormals) could round. Check the premise on the fixture's values: if none rounds, the fp16 copy
        // holds exactly the float32 model's values and the logits must agree BIT FOR BIT (bound 0).
        std::size_t rounded = 0, total = 0, below_normal = 0;
        for (const auto& [name, t] : fixture_tensors())
            for (const float v : t.second) {
                ++total;
                if (v != 0.0f && std::abs(v) < std::ldexp(1.0f, -14)) ++below_normal;
                if (f16_to_f32(f32_to_f16(v)) != v) ++rounded;
            }
        qInfo("fixture: %zu weights, %zu below 2^-14, %zu change in binary16", total, below_normal, rounded);
        QVERIFY(rounded <= below_normal); // no rounding at or above 2^-14
        QCOMPARE(rounded, std::size_t(0));
        const auto w = model_weights::load(root() / "f16");
        QVERIFY(all_matrices(*w, weight_dtype::f16));
        const auto got = run(w);
        QVERIFY(same_bits(got, m_f32_logits));
        // And exactly the float32 product over the same file widened on load.
        model_load_options to_f32;
        to_f32.dtype = weight_dtype_choice::f32;
        QVERIFY(same_bits(got, run(model_weights::load(root() / "f16", to_f32))));
    }

    void misalignedTensorsAreCopiedInTheirOwnDtype() {
        for (const auto& [folder, type, esize] : {std::tuple{"bf16_misaligned", weight_dtype::bf16, 2u},
                                                  {"f32_misaligned", weight_dtype::f32, 4u}}) {
            const fs::path file = root() / folder / "model.safetensors";
            const header_sums h = read_header(file);
            // The planted shift: every weight starts at an odd file offset.
            for (const std::uint64_t b : h.begins)
                QVERIFY(b % esize != 0);
            const auto w = model_weights::load(root() / folder);
            QVERIFY(all_matrices(*w, type));
            for (const auto* m : matrices(*w))
                QCOMPARE(reinterpret_cast<std::uintptr_t>(m->data) % esize, std::uintptr_t(0));
            // Copied, not widened: the matrices' stored bytes plus the widened norms.
            QCOMPARE(w->resident_bytes(), h.matrix_bytes + 4 * h.vector_elems);
            QVERIFY(same_bits(run(w), m_f32_logits));
        }
    }
};

QTEST_GUILESS_MAIN(TestServeWeightDtype)
#include "test_serve_weight_dtype.moc"
