// CompressBackend::fit_clusters (all clusters of a module in lock-step, one grouped ops call per step)
// against the one-by-one loop over fit() on one module: seconds per module for a cold fit (HOSVD init)
// and a warm pass (every cluster warm-started from the cold fit's basis, as the clustering passes do),
// and whether the two give bit-identical results. Planted fleet: adapter i in group i % k, rank-16
// factors in the group's random rank-16 subspaces plus 5% noise; Mistral-7B q_proj (4096 x 4096).
//
// usage: bench_fit_clusters [--adapters 200] [--clusters 4,25] [--methods jd-full,jd-diag] [--rank 16]
//                           [--threads N] [--backend cpu|cuda] [--d-out 4096] [--d-in 4096] [--repeat 1]
#include "engine/backend/compress_backends.hpp"
#include "engine/compress/compress_backend.hpp"
#include "engine/compress/random_matrix.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::compress;

namespace {

std::vector<int> int_list(const char* s) {
    std::vector<int> out;
    std::string t(s);
    std::size_t p = 0;
    while (p <= t.size()) {
        const auto q = t.find(',', p);
        out.push_back(std::stoi(t.substr(p, q == std::string::npos ? std::string::npos : q - p)));
        if (q == std::string::npos) break;
        p = q + 1;
    }
    return out;
}

module_batch planted(std::size_t n, int groups, std::int64_t d_out, std::int64_t d_in, std::int64_t r,
                     std::uint64_t seed) {
    random_stream g(seed);
    std::vector<matrix> us, vs;
    for (int k = 0; k < groups; ++k) {
        us.push_back(random_orthonormal(d_out, r, g));
        vs.push_back(random_orthonormal(d_in, r, g));
    }
    std::vector<owned_factors> f(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto& u = us[i % static_cast<std::size_t>(groups)];
        const auto& v = vs[i % static_cast<std::size_t>(groups)];
        const matrix c = gaussian_matrix(r, r, g), dd = gaussian_matrix(r, r, g);
        const matrix b = gemm(op::n, u, op::n, c);   // [d_out, r]
        const matrix at = gemm(op::n, v, op::t, dd); // A^T [d_in, r]
        f[i].adapter = i;
        f[i].rank = r;
        f[i].b.resize(static_cast<std::size_t>(d_out * r));
        f[i].a.resize(static_cast<std::size_t>(r * d_in));
        for (std::int64_t o = 0; o < d_out; ++o)
            for (std::int64_t j = 0; j < r; ++j)
                f[i].b[static_cast<std::size_t>(o * r + j)] =
                    b(o, j) + static_cast<float>(0.05 * g.normal() / std::sqrt(double(d_out)));
        for (std::int64_t j = 0; j < r; ++j)
            for (std::int64_t x = 0; x < d_in; ++x)
                f[i].a[static_cast<std::size_t>(j * d_in + x)] = at(x, j);
    }
    return make_owned_module_batch("model.layers.0.self_attn.q_proj", d_out, d_in, std::move(f));
}

bool identical(const std::vector<jd_fit>& a, const std::vector<jd_fit>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t c = 0; c < a.size(); ++c) {
        if (a[c].sweeps != b[c].sweeps || a[c].basis.u.data != b[c].basis.u.data ||
            a[c].basis.v.data != b[c].basis.v.data || a[c].cores.size() != b[c].cores.size())
            return false;
        for (std::size_t k = 0; k < a[c].cores.size(); ++k)
            if (a[c].cores[k].data != b[c].cores[k].data) return false;
    }
    return true;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

} // namespace

int main(int argc, char** argv) {
    std::size_t adapters = 200;
    std::vector<int> clusters = {4, 25};
    std::vector<std::string> methods = {"jd-full"};
    std::int64_t rank = 16, d_out = 4096, d_in = 4096;
    int threads = 0, repeat = 1;
    std::string device = "cpu";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i];
        if (k == "--adapters")
            adapters = std::stoul(argv[i + 1]);
        else if (k == "--clusters")
            clusters = int_list(argv[i + 1]);
        else if (k == "--methods") {
            methods.clear();
            std::string t = argv[i + 1];
            for (std::size_t p = 0; p <= t.size();) {
                const auto q = t.find(',', p);
                methods.push_back(t.substr(p, q == std::string::npos ? std::string::npos : q - p));
                if (q == std::string::npos) break;
                p = q + 1;
            }
        } else if (k == "--rank")
            rank = std::stoll(argv[i + 1]);
        else if (k == "--threads")
            threads = std::stoi(argv[i + 1]);
        else if (k == "--backend")
            device = argv[i + 1];
        else if (k == "--d-out")
            d_out = std::stoll(argv[i + 1]);
        else if (k == "--d-in")
            d_in = std::stoll(argv[i + 1]);
        else if (k == "--repeat")
            repeat = std::stoi(argv[i + 1]);
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    auto be = backend::make_compress_backend(device, threads);
    std::printf("backend %s, %zu adapters, module %lldx%lld, rank %lld\n", be->name().c_str(), adapters,
                static_cast<long long>(d_out), static_cast<long long>(d_in), static_cast<long long>(rank));
    std::printf("%-8s %4s | %10s %10s %7s | %10s %10s %7s | %s\n", "method", "k", "loop cold", "batch cold",
                "speedup", "loop warm", "batch warm", "speedup", "identical");
    for (const auto& mname : methods) {
        for (const int k : clusters) {
            const auto batch =
                planted(adapters, k, d_out, d_in, rank, 0xbe7c + static_cast<std::uint64_t>(k));
            std::vector<std::vector<std::size_t>> groups(static_cast<std::size_t>(k));
            for (std::size_t i = 0; i < adapters; ++i)
                groups[i % static_cast<std::size_t>(k)].push_back(i);
            jd_options o;
            o.method = mname == "jd-diag" ? jd_method::diag : jd_method::full;
            o.rank = rank;
            double t_loop = 1e300, t_batch = 1e300, w_loop = 1e300, w_batch = 1e300;
            std::vector<jd_fit> loop, batched, wl, wb;
            for (int rep = 0; rep < repeat; ++rep) {
                auto t0 = std::chrono::steady_clock::now();
                loop.clear();
                for (const auto& g : groups)
                    loop.push_back(be->fit(batch, g, o));
                t_loop = std::min(t_loop, seconds_since(t0));
                t0 = std::chrono::steady_clock::now();
                batched = be->fit_clusters(batch, groups, o, {});
                t_batch = std::min(t_batch, seconds_since(t0));
                std::vector<const jd_basis*> warm;
                for (const auto& f : loop)
                    warm.push_back(&f.basis);
                t0 = std::chrono::steady_clock::now();
                wl.clear();
                for (std::size_t c = 0; c < groups.size(); ++c)
                    wl.push_back(be->fit(batch, groups[c], o, warm[c]));
                w_loop = std::min(w_loop, seconds_since(t0));
                t0 = std::chrono::steady_clock::now();
                wb = be->fit_clusters(batch, groups, o, warm);
                w_batch = std::min(w_batch, seconds_since(t0));
            }
            std::printf("%-8s %4d | %10.3f %10.3f %6.2fx | %10.3f %10.3f %6.2fx | %s\n", mname.c_str(), k,
                        t_loop, t_batch, t_loop / t_batch, w_loop, w_batch, w_loop / w_batch,
                        identical(loop, batched) && identical(wl, wb) ? "yes" : "no");
            std::fflush(stdout);
        }
    }
    return 0;
}
