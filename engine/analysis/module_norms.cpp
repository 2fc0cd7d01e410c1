// update_frobenius_norm (see module_norms.hpp). Gram matrices: G_A = A A^T (r x r, rows of A are
// contiguous), G_B = B^T B (accumulated row by row of B); the trace of G_B G_A is the elementwise sum of
// G_B ∘ G_A because both are symmetric.
#include "engine/analysis/module_norms.hpp"

#include <cmath>
#include <limits>

namespace lorafleet::analysis {

double update_frobenius_norm(const io::lora_module& module) {
    const io::lora_factors f = module.factors_f32(); // b already carries the scale
    const std::size_t r = std::size_t(f.rank);
    const std::size_t din = std::size_t(f.d_in);
    const std::size_t dout = std::size_t(f.d_out);
    if (r == 0) return 0.0;
    std::vector<double> ga(r * r, 0.0);
    for (std::size_t i = 0; i < r; ++i) {
        const float* ai = f.a.data() + i * din;
        for (std::size_t j = i; j < r; ++j) {
            const float* aj = f.a.data() + j * din;
            double s = 0.0;
            for (std::size_t k = 0; k < din; ++k)
                s += double(ai[k]) * double(aj[k]);
            ga[i * r + j] = ga[j * r + i] = s;
        }
    }
    std::vector<double> gb(r * r, 0.0);
    for (std::size_t row = 0; row < dout; ++row) {
        const float* b = f.b.data() + row * r;
        for (std::size_t i = 0; i < r; ++i) {
            const double bi = b[i];
            for (std::size_t j = i; j < r; ++j)
                gb[i * r + j] += bi * double(b[j]);
        }
    }
    double sum = 0.0;
    for (std::size_t i = 0; i < r; ++i) {
        sum += gb[i * r + i] * ga[i * r + i];
        for (std::size_t j = i + 1; j < r; ++j)
            sum += 2.0 * gb[i * r + j] * ga[i * r + j];
    }
    return std::sqrt(std::max(0.0, sum)); // rounding can leave a tiny negative for ΔW ≈ 0
}

std::vector<double> update_frobenius_norms(const io::peft_adapter& adapter,
                                           const std::function<bool()>& keepGoing) {
    std::vector<double> out(adapter.modules.size(), std::numeric_limits<double>::quiet_NaN());
    for (std::size_t i = 0; i < adapter.modules.size(); ++i) {
        if (keepGoing && !keepGoing()) break;
        out[i] = update_frobenius_norm(adapter.modules[i]);
    }
    return out;
}

} // namespace lorafleet::analysis
