// The compressed bank the device forward test (tests/kernels/test_serve_device_forward.cpp) serves on the
// TinyStories-656K fixture, shared with its CPU check (test_device_fixture_bank.cpp), which proves on a
// machine without a GPU that the bank passes the one bank validation before the GPU test relies on it.
// Every q/k/v/o module of the model: 3 clusters, rank 4, adapters a0..a4 in clusters {0, 1, 2, 1, 2}.
// In the last module (layer 1 o_proj) cluster 2 has no basis, and so no adapter of cluster 2 (a2, a4)
// may have that module (compressed_bank::validate: a cluster without a basis may only hold adapters that
// lack the module, or that nothing represents, error 1). The earlier fixture gave a2 a core there, which
// the validator rightly refused. Large enough to move the logits visibly.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/core/random.hpp"
#include "engine/io/hf_config.hpp"

#include <cmath>
#include <string>

namespace lorafleet::test {

inline constexpr int device_fixture_clusters[] = {0, 1, 2, 1, 2};
inline constexpr int device_fixture_empty_cluster = 2; // no basis in the last module

inline bank::compressed_bank device_fixture_bank(const io::model_geometry& g, compress::jd_method kind) {
    random_stream rng(11 + int(kind));
    bank::compressed_bank b;
    b.kind = kind;
    b.rank = 4;
    b.clusters = 3;
    for (int i = 0; i < 5; ++i) {
        bank::bank_adapter a;
        a.name = "a" + std::to_string(i);
        a.cluster = device_fixture_clusters[i];
        b.adapters.push_back(a);
    }
    for (int l = 0; l < g.num_layers; ++l)
        for (const char* name : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
            const auto shape = *g.linear_shape(name);
            b.modules.push_back(
                {"model.layers." + std::to_string(l) + "." + name, l, name, shape.d_out, shape.d_in});
        }
    const std::size_t mods = b.modules.size();
    b.bases.resize(mods);
    b.cores.resize(mods);
    for (std::size_t m = 0; m < mods; ++m) {
        const bool last = m + 1 == mods; // layer 1 o_proj
        for (int c = 0; c < 3; ++c) {
            bank::cluster_basis basis;
            if (!(last && c == device_fixture_empty_cluster)) {
                basis.u.resize(std::size_t(b.modules[m].d_out * b.rank));
                basis.vt.resize(std::size_t(b.rank * b.modules[m].d_in));
                for (auto& x : basis.u)
                    x = float(rng.normal() * 0.1);
                for (auto& x : basis.vt)
                    x = float(rng.normal() * 0.1);
            }
            b.bases[m].push_back(basis);
        }
        b.cores[m].assign(b.adapters.size() * std::size_t(b.core_size()), 0.0f);
        for (std::size_t i = 0; i < b.adapters.size(); ++i) {
            const bool has = !(last && b.adapters[i].cluster == device_fixture_empty_cluster);
            b.adapters[i].errors.push_back(has ? 0.1 : std::nan(""));
            if (has)
                for (std::int64_t k = 0; k < b.core_size(); ++k)
                    b.core(m, i)[k] = float(rng.normal());
        }
    }
    return b;
}

} // namespace lorafleet::test
