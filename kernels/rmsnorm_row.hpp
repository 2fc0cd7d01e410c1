// RMSNorm of one row, as the CPU forward pass computes it (engine/serve/model/transformer.cpp, HuggingFace
// Llama numerics): the sum of squares is accumulated in double, the inverse root is taken in double and
// rounded to float once, and each output is weight * (x * inv) in float. The row function is the
// reference; a GPU kernel splits the sum over threads (rms_norm_partial over a strided slice), adds the
// partial sums and applies rms_norm_inv / rms_norm_element, which gives the same floats up to the
// order of a double sum. Shapes: x, weight, out [d]. x and out may alias. Pure functions: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

#include <cmath>

namespace lorafleet::kernels {

// Sum of x[i]^2 in double over i = first, first + stride, ... < d.
LORAFLEET_HD double rms_norm_partial(const float* x, int d, int first, int stride) {
    double ss = 0;
    for (int i = first; i < d; i += stride)
        ss += double(x[i]) * double(x[i]);
    return ss;
}

// 1 / sqrt(mean square + eps), rounded to float once.
LORAFLEET_HD float rms_norm_inv(double sum_squares, int d, float eps) {
    return static_cast<float>(1.0 / sqrt(sum_squares / d + double(eps)));
}

LORAFLEET_HD float rms_norm_element(float x, float weight, float inv) {
    return weight * (x * inv);
}

// out = weight * x / sqrt(mean(x^2) + eps).
LORAFLEET_HD void rms_norm_row(const float* x, const float* weight, float* out, int d, float eps) {
    const float inv = rms_norm_inv(rms_norm_partial(x, d, 0, 1), d, eps);
    for (int i = 0; i < d; ++i)
        out[i] = rms_norm_element(x[i], weight[i], inv);
}

} // namespace lorafleet::kernels
