#include "tests/support/random_bank.hpp"

#include "engine/core/random.hpp"

#include <cmath>
#include <random>

namespace lorafleet::test {

bank::compressed_bank make_random_bank(compress::jd_method kind, unsigned seed) {
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal;
    bank::compressed_bank b;
    b.kind = kind;
    b.rank = 4;
    b.clusters = 3;
    b.parameters = {{"seed", seed}};
    b.modules = {{"model.layers.0.self_attn.q_proj", 0, "q_proj", 16, 16},
                 {"model.layers.0.self_attn.k_proj", 0, "k_proj", 8, 16},
                 {"model.layers.1.self_attn.q_proj", 1, "q_proj", 16, 16}};
    const int clusters[] = {0, 1, 0, 1, 1, 2};
    for (int i = 0; i < 6; ++i) {
        bank::bank_adapter a;
        a.name = "adapter-" + std::to_string(i);
        a.source = "/fleet/" + a.name;
        a.base_model = "test/base";
        a.cluster = clusters[i];
        a.source_rank = 8;
        a.errors = {0.01 * i, 0.02, i == 5 ? std::nan("") : 0.5};
        b.adapters.push_back(a);
    }
    b.bases.resize(3);
    b.cores.resize(3);
    for (std::size_t m = 0; m < 3; ++m) {
        for (int c = 0; c < 3; ++c) {
            bank::cluster_basis basis;
            if (!(m == 2 && c == 2)) {
                basis.u.resize(std::size_t(b.modules[m].d_out * b.rank));
                basis.vt.resize(std::size_t(b.rank * b.modules[m].d_in));
                for (auto& x : basis.u)
                    x = normal(gen);
                for (auto& x : basis.vt)
                    x = normal(gen);
            }
            b.bases[m].push_back(basis);
        }
        b.cores[m].resize(b.adapters.size() * std::size_t(b.core_size()));
        for (std::size_t i = 0; i < b.adapters.size(); ++i)
            if (b.adapters[i].has_module(m))
                for (std::int64_t k = 0; k < b.core_size(); ++k)
                    b.core(m, i)[k] = normal(gen);
    }
    return b;
}

bank::compressed_bank make_model_bank(const io::model_geometry& g, const model_bank_spec& spec) {
    random_stream rng(spec.seed);
    bank::compressed_bank b;
    b.kind = spec.kind;
    b.rank = spec.rank;
    b.clusters = spec.clusters;
    for (int i = 0; i < spec.adapters; ++i) {
        bank::bank_adapter a;
        a.name = "a" + std::to_string(i);
        a.cluster = i % spec.clusters;
        b.adapters.push_back(a);
    }
    for (int l = 0; l < g.num_layers; ++l)
        for (const auto& name : spec.modules) {
            const auto shape = *g.linear_shape(name);
            b.modules.push_back(
                {"model.layers." + std::to_string(l) + "." + name, l, name, shape.d_out, shape.d_in});
        }
    b.bases.resize(b.modules.size());
    b.cores.resize(b.modules.size());
    for (std::size_t m = 0; m < b.modules.size(); ++m) {
        for (int c = 0; c < b.clusters; ++c) {
            bank::cluster_basis basis;
            basis.u.resize(std::size_t(b.modules[m].d_out * b.rank));
            basis.vt.resize(std::size_t(b.rank * b.modules[m].d_in));
            for (auto& x : basis.u)
                x = float(rng.normal() * spec.basis_scale);
            for (auto& x : basis.vt)
                x = float(rng.normal() * spec.basis_scale);
            b.bases[m].push_back(basis);
        }
        b.cores[m].resize(b.adapters.size() * std::size_t(b.core_size()));
        for (auto& x : b.cores[m])
            x = float(rng.normal());
        for (auto& a : b.adapters)
            a.errors.push_back(0.1);
    }
    return b;
}

} // namespace lorafleet::test
